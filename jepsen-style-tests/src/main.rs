use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jepsen::check::{check_file, Workload};

/// The fault-injection suite of switchboard.
#[derive(Parser)]
#[command(name = "jepsen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a history file. Exit 0: valid, 1: anomaly found, 2: no verdict.
    Check {
        /// Which checker: register (linearizability per key), set (completeness), changefeed
        /// (exactly-once delivery), actions (the action queue), dns (a run's dns.jsonl) or
        /// leadership (a run's leadership.jsonl, written by the lossy nemesis).
        #[arg(long, value_enum)]
        workload: Workload,
        /// Give up with "unknown" after this many seconds of search.
        #[arg(long, default_value_t = 60)]
        budget: u64,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// A history in JSON lines (see docs/jepsen.md).
        file: PathBuf,
    },
    /// Start peers in network namespaces, run the workloads under faults, check. Needs root.
    Run(jepsen::run::RunArgs),
    /// Remove network namespaces and links that an interrupted run left behind.
    Cleanup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { workload, budget, json, file } => {
            match check_file(workload, &file, Duration::from_secs(budget)) {
                Ok(report) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                    } else {
                        print!("{}", report.render());
                    }
                    ExitCode::from(report.valid.exit_code() as u8)
                }
                Err(e) => {
                    eprintln!("jepsen check: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(args) => ExitCode::from(jepsen::run::run(args) as u8),
        Command::Cleanup => match jepsen::run::topology::cleanup_leftovers() {
            Ok(removed) if removed.is_empty() => {
                println!("jepsen cleanup: nothing to remove");
                ExitCode::SUCCESS
            }
            Ok(removed) => {
                for r in removed {
                    println!("jepsen cleanup: removed {r}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jepsen cleanup: {e}");
                ExitCode::from(1)
            }
        },
    }
}
