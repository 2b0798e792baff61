use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = match switchboard::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print and succeed.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line that says what is wrong, as for every other error.
            let text = e.render().to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("switchboard: {} (see --help)", line.trim_start_matches("error: "));
            std::process::exit(1);
        }
    };
    if let Err(e) = cli.run().await {
        eprintln!("switchboard: {e}");
        std::process::exit(1);
    }
}
