//! Running one peer: bind the listeners, start Raft, serve until shut down.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::http::listener::serve as serve_http;
use crate::http::{router, AppState, ConnectionLimits, RequestLimits};
use crate::metrics::Metrics;
use crate::peer::{self, serve_rpc, Peer, RpcLimits};
use crate::raft::rpc::Secret;
use crate::supervise::Tasks;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind { what: &'static str, addr: String, source: std::io::Error },
    #[error(transparent)]
    Peer(#[from] peer::Error),
    #[error("data directory {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    /// A part of the running peer failed; the peer stopped.
    #[error("the peer stopped: {0}")]
    Failed(String),
    #[error("refusing to start without a cluster secret: set SWITCHBOARD_CLUSTER_SECRET (the same on every peer), or pass --insecure on a trusted test machine")]
    NoSecret,
}

/// What a peer needs besides its configuration.
pub struct Secrets {
    pub cluster: Option<String>,
    pub admin_token: Option<String>,
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { what, addr: addr.into(), source })
}

/// Makes the data directory readable by this user alone: the directory 0700, what is in it
/// 0600 (0700 for directories), and everything the peer creates from now on the same (a
/// umask of 077). It holds the whole replicated state and the log.
fn private_data_dir(dir: &std::path::Path) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |source: std::io::Error| ServeError::DataDir { dir: dir.display().to_string(), source };
    // SAFETY: umask only sets the process's file creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
        for entry in std::fs::read_dir(&d).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            let kind = entry.file_type().map_err(failed)?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
            }
        }
    }
    Ok(())
}

/// Longest wait for the peer's tasks to finish once it stops after a failure.
const DRAIN_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a peer until `shutdown` is cancelled, or until one of its parts fails
/// ([`ServeError::Failed`], see [`crate::supervise`]).
pub async fn run(config: Config, secrets: Secrets, shutdown: CancellationToken) -> Result<(), ServeError> {
    config.check()?;
    let secret: Secret = match (secrets.cluster.filter(|s| !s.is_empty()), config.insecure) {
        (Some(s), _) => Some(Arc::from(s.into_bytes())),
        (None, true) => {
            tracing::warn!("running with --insecure: peer RPC is not authenticated");
            None
        }
        (None, false) => return Err(ServeError::NoSecret),
    };
    let raft_listener = bind("peer RPC (--raft-addr)", &config.raft_addr).await?;
    let http_listener = bind("HTTP (--http-addr)", &config.http_addr).await?;
    let dns_tcp = bind("DNS over TCP (--dns-addr)", &config.dns_addr).await?;
    let dns_udp = tokio::net::UdpSocket::bind(&config.dns_addr).await.map_err(|source| ServeError::Bind {
        what: "DNS over UDP (--dns-addr)",
        addr: config.dns_addr.clone(),
        source,
    })?;

    private_data_dir(&config.data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let tasks = Tasks::new(shutdown.clone());
    let peer = Peer::start(&config, secret, metrics, &tasks).await?;
    peer.state.set_history_limit(config.http.watch_history);
    tracing::info!(id = config.id, raft = %config.raft_addr, http = %config.http_addr, data_dir = %config.data_dir.display(), "peer started");

    let max_stale = (config.dns.max_stale_ms > 0).then(|| std::time::Duration::from_millis(config.dns.max_stale_ms));
    let mut handles = vec![
        tasks.spawn(
            "peer RPC listener",
            serve_rpc(raft_listener, peer.clone(), RpcLimits::from_config(&config.raft), shutdown.clone()),
        ),
        tasks.spawn("dispatch", crate::dispatch::run(peer.clone(), shutdown.clone())),
        tasks.spawn("lazy release", crate::placement::run(peer.clone(), shutdown.clone())),
        tasks.spawn("action executor", crate::actions::run(peer.clone(), config.actions.clone(), shutdown.clone())),
        tasks.spawn(
            "DNS server",
            crate::dns::serve(
                dns_udp,
                dns_tcp,
                peer.clone(),
                config.region.clone(),
                max_stale,
                crate::dns::rrl::RrlConfig::from_config(&config.dns),
                tasks.clone(),
            ),
        ),
    ];
    let app = router(AppState {
        peer: peer.clone(),
        admin_token: secrets.admin_token.filter(|t| !t.is_empty()).map(Arc::from),
        max_body_bytes: config.http.max_body_bytes,
        limits: Arc::new(RequestLimits::from_config(&config.http)),
    });
    let connection_limits = ConnectionLimits::from_config(&config.http);
    handles.push(tasks.spawn("HTTP server", serve_http(http_listener, app, connection_limits, shutdown.clone())));

    shutdown.cancelled().await;
    let failure = tasks.failure();
    if failure.is_none() {
        tracing::info!("shutting down");
    }
    let drain = async {
        let _ = peer.raft.shutdown().await;
        for handle in handles {
            let _ = handle.await;
        }
    };
    match failure {
        None => {
            drain.await;
            Ok(())
        }
        Some(cause) => {
            let _ = tokio::time::timeout(DRAIN_AFTER_FAILURE, drain).await;
            Err(ServeError::Failed(cause))
        }
    }
}
