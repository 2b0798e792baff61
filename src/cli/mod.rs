//! The `switchboard` command. `serve` runs a peer, `dev` a whole local cluster; every
//! other command is a thin client of the HTTP API (docs/api.md).

mod action;
mod client;
mod cluster;
mod dev;
mod error;
mod object;
mod resource;
mod serve;

use clap::{Parser, Subcommand};

pub use client::Client;
pub use error::CliError;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Raft-replicated edge registry, dispatch and authoritative DNS in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Endpoint {
    /// A peer's HTTP URL; any peer answers any request.
    #[arg(long, global = true, env = "SWITCHBOARD_ENDPOINT", default_value = "http://127.0.0.1:8001")]
    endpoint: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one peer.
    Serve(serve::ServeArgs),
    /// Start a 3- or 5-peer cluster on 127.0.0.1 with example data; Ctrl-C stops it.
    Dev(dev::DevArgs),
    /// Form, inspect and change the cluster.
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Service areas: client networks and fallback order.
    Region {
        #[command(subcommand)]
        command: resource::RegionCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Edge nodes: registration, maintenance, heartbeats.
    Node {
        #[command(subcommand)]
        command: resource::NodeCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Sites: groups of nodes in a region; pins.
    Site {
        #[command(subcommand)]
        command: resource::SiteCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Managed domains: the sites that serve them; locks.
    Domain {
        #[command(subcommand)]
        command: resource::DomainCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// DNS zones this cluster answers for.
    Zone {
        #[command(subcommand)]
        command: resource::ZoneCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// The elected table, resolve, and the scoring policy.
    Dispatch {
        #[command(subcommand)]
        command: resource::DispatchCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Object metadata: versions under vector clocks, conflicts, replicas, placement,
    /// scheduling.
    Object {
        #[command(subcommand)]
        command: object::ObjectCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// A region's change feed: changes, acks, pulls, region heartbeats.
    Sync {
        #[command(subcommand)]
        command: object::FeedCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// The remediation queue: actions, workers' claims and reports, the engine status and
    /// the action policy.
    Action {
        #[command(subcommand)]
        command: action::ActionCommand,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Print every change to the cluster's resources as it happens.
    Watch {
        /// Start after this revision (default: now).
        #[arg(long)]
        since: Option<u64>,
        /// Only these topics, comma-separated (node, dispatch, object, conflict, sync, ...).
        #[arg(long)]
        topics: Option<String>,
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

impl Cli {
    pub async fn run(self) -> Result<(), CliError> {
        match self.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Cluster { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Region { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Node { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Site { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Domain { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Zone { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Dispatch { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Object { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Sync { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Action { command, endpoint } => command.run(&Client::new(&endpoint.endpoint)).await,
            Command::Watch { since, topics, endpoint } => {
                object::watch(&Client::new(&endpoint.endpoint), since, topics).await
            }
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `default`).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
