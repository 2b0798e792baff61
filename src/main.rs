use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = switchboard::cli::Cli::parse();
    if let Err(e) = cli.run().await {
        eprintln!("switchboard: {e}");
        std::process::exit(1);
    }
}
