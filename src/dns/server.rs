//! The DNS listeners on `--dns-addr`, UDP and TCP, and the task that keeps the snapshot
//! current.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::answer::{respond, Context, Transport};
use super::snapshot::Snapshot;
use crate::peer::Peer;

/// TCP connections served at once; more wait in the listen backlog.
const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

struct Server {
    peer: Arc<Peer>,
    snapshot: ArcSwap<Snapshot>,
    region: String,
    max_stale: Option<Duration>,
}

impl Server {
    fn answer(&self, request: &[u8], source: SocketAddr, transport: Transport) -> Option<Vec<u8>> {
        let started = Instant::now();
        let stale = self.max_stale.is_some_and(|max| self.peer.since_leader_contact() > max);
        let snapshot = self.snapshot.load();
        let ctx = Context { source: source.ip(), transport, default_region: &self.region, stale };
        let answered = respond(&snapshot, request, &ctx)?;
        let m = &self.peer.metrics;
        let qtype = answered.qtype.map(|t| t.to_string()).unwrap_or_else(|| "none".into());
        m.dns_queries.with_label_values(&[&format!("{:?}", answered.rcode), &qtype]).inc();
        if stale && answered.rcode == hickory_proto::op::ResponseCode::ServFail {
            m.dns_stale_answers.inc();
        }
        m.dns_answer_seconds.observe(started.elapsed().as_secs_f64());
        Some(answered.bytes)
    }
}

/// Serves DNS on the bound sockets until shutdown.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    peer: Arc<Peer>,
    region: String,
    max_stale: Option<Duration>,
    shutdown: CancellationToken,
) {
    let first = Snapshot::build(&peer.state.read());
    let server = Arc::new(Server { snapshot: ArcSwap::from_pointee(first), peer, region, max_stale });
    tokio::spawn(keep_current(server.clone(), shutdown.clone()));
    tokio::spawn(serve_tcp(tcp, server.clone(), shutdown.clone()));
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, source) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = udp.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS receive failed");
                    continue;
                }
            },
        };
        if let Some(reply) = server.answer(&buf[..len], source, Transport::Udp) {
            let _ = udp.send_to(&reply, source).await;
        }
    }
}

/// Rebuilds the snapshot after every applied change; changes that arrive during a build
/// are folded into the next one.
async fn keep_current(server: Arc<Server>, shutdown: CancellationToken) {
    let mut applied = server.peer.state.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
        // Building walks the whole table: off the async workers, so queries are not held up.
        let builder = server.clone();
        let Ok(snapshot) = tokio::task::spawn_blocking(move || Snapshot::build(&builder.peer.state.read())).await
        else {
            return;
        };
        server.snapshot.store(Arc::new(snapshot));
    }
}

async fn serve_tcp(listener: TcpListener, server: Arc<Server>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (stream, source) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _ = serve_tcp_connection(stream, source, &server).await;
            drop(slot);
        });
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, source: SocketAddr, server: &Server) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            _ => return Ok(()),
        };
        let mut request = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request)).await??;
        let Some(reply) = server.answer(&request, source, Transport::Tcp) else { return Ok(()) };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
