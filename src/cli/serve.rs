use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::config::Config;
use crate::server::{self, Secrets};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// This peer's Raft id (a positive number, unique, never reused).
    #[arg(long)]
    id: Option<u64>,
    /// Where the peer keeps its RocksDB data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// IP:PORT for peer-to-peer Raft traffic.
    #[arg(long)]
    raft_addr: Option<String>,
    /// IP:PORT for the HTTP API.
    #[arg(long)]
    http_addr: Option<String>,
    /// IP:PORT for DNS (UDP and TCP).
    #[arg(long)]
    dns_addr: Option<String>,
    /// A TOML file of settings (see cluster/peer.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The region this peer's DNS clients default to.
    #[arg(long)]
    region: Option<String>,
    /// Allow running without SWITCHBOARD_CLUSTER_SECRET (peer RPC unauthenticated).
    #[arg(long)]
    insecure: bool,
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    // openraft reports every vote that arrives after the vote changed as a warning, at each
    // election; its errors are what an operator needs. RUST_LOG overrides this.
    super::init_logging("info,openraft=error");
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(id) = args.id {
        config.id = id;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.raft_addr {
        config.raft_addr = a;
    }
    if let Some(a) = args.http_addr {
        config.http_addr = a;
    }
    if let Some(a) = args.dns_addr {
        config.dns_addr = a;
    }
    if let Some(r) = args.region {
        config.region = r;
    }
    config.insecure |= args.insecure;
    let secrets = Secrets {
        cluster: std::env::var("SWITCHBOARD_CLUSTER_SECRET").ok(),
        admin_token: std::env::var("SWITCHBOARD_ADMIN_TOKEN").ok(),
    };

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        on_signal.cancel();
    });
    match server::run(config, secrets, shutdown).await {
        // One line, in the peer's log, naming the cause; the exit status says it failed.
        Err(server::ServeError::Failed(cause)) => {
            tracing::error!(%cause, "peer stopped after a failure; exiting with status 1");
            std::process::exit(1);
        }
        other => Ok(other?),
    }
}
