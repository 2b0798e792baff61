//! The HTTP listener: connections accepted under caps, and closed when a client stalls.
//!
//! What a client can hold of a peer is bounded, each by a named setting of `[http]`
//! (docs/operations.md lists them with their defaults):
//!
//! | limit | setting | past it |
//! |---|---|---|
//! | connections open at once | `max_connections` | `503` + `Retry-After`, then closed |
//! | connections from one client address | `max_connections_per_client` | the same |
//! | from a request's first byte to the end of its headers | `header_timeout_ms` | closed |
//! | a kept-alive connection that starts no request | `idle_timeout_ms` | closed |
//! | receiving a request's body | `body_timeout_ms` (in the body extractor) | `408` |
//!
//! Accept errors (out of file descriptors, say) back off instead of spinning. Request
//! level limits (handler time, concurrent requests, long polls) are in `limits.rs`.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::net::{self, ClientPlace, PerClient};

/// How long a refused client gets to read its 503 before the connection is dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a connection's header deadline is checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The connection limits of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    pub fn from_config(c: &HttpConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            max_per_client: c.max_connections_per_client,
            header_timeout: Duration::from_millis(c.header_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
        }
    }
}

/// A place among the open connections, overall and of its client, given back on drop.
struct Admitted {
    _total: OwnedSemaphorePermit,
    _client: ClientPlace,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Full,
    ClientFull,
}

fn admit(
    total: &Arc<Semaphore>,
    clients: &PerClient,
    limits: &ConnectionLimits,
    client: IpAddr,
) -> Result<Admitted, Refusal> {
    let total = total.clone().try_acquire_owned().map_err(|_| Refusal::Full)?;
    let client = clients.take(client, limits.max_per_client).ok_or(Refusal::ClientFull)?;
    Ok(Admitted { _total: total, _client: client })
}

/// Serves `app` on `listener` until `shutdown`; open requests are then finished.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits, shutdown: CancellationToken) {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let clients = PerClient::default();
    let connections = tokio_util::task::TaskTracker::new();
    while let Some((stream, addr)) = net::accept(&listener, "HTTP", &shutdown).await {
        match admit(&total, &clients, &limits, addr.ip()) {
            Ok(admitted) => {
                connections.spawn(connection(stream, addr, app.clone(), limits.clone(), admitted, shutdown.clone()));
            }
            Err(refusal) => {
                connections.spawn(refuse(stream, refusal, &limits));
            }
        }
    }
    connections.close();
    connections.wait().await;
}

/// Answers `503` with `Retry-After` to a connection over a cap, and closes it.
fn refuse(mut stream: TcpStream, refusal: Refusal, limits: &ConnectionLimits) -> impl std::future::Future<Output = ()> {
    let message = match refusal {
        Refusal::Full => format!("this peer has its limit of {} connections open; retry", limits.max_connections),
        Refusal::ClientFull => {
            format!("this client address has {} connections open, the limit per client; retry", limits.max_per_client)
        }
    };
    let body = serde_json::json!({"error": "overloaded", "message": message}).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    async move {
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// What a connection is doing, for its header deadline. Touched on every read, so it is
/// two atomics rather than a lock.
struct Activity {
    /// When the connection was opened: `head_since` counts from here.
    opened: Instant,
    /// Requests handed to the router and not yet answered.
    in_flight: AtomicUsize,
    /// When (milliseconds after `opened`, plus one; 0 for none) the first byte arrived of
    /// a request that has not reached the router yet.
    head_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { opened: Instant::now(), in_flight: AtomicUsize::new(0), head_since: AtomicU64::new(0) }
    }

    /// A request's head has been read and handed to the router.
    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Bytes arrived: if no request is being served, they start a request's head.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            let now = self.opened.elapsed().as_millis() as u64 + 1;
            let _ = self.head_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Whether a request's head has been arriving for longer than `limit`.
    fn head_stalled(&self, limit: Duration) -> bool {
        match self.head_since.load(Ordering::Relaxed) {
            0 => false,
            since => self.opened.elapsed().saturating_sub(Duration::from_millis(since - 1)) > limit,
        }
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    admitted: Admitted,
    shutdown: CancellationToken,
) {
    let _admitted = admitted;
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let activity = service_activity.clone();
        activity.request_started();
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        let answer = app.clone().oneshot(request);
        async move {
            let response = answer.await;
            activity.request_finished();
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper's header timer runs from when the connection waits for a request: with
        // keep-alive, that is the idle timeout. The header deadline proper is watched
        // below, from the request's first byte.
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let header_timeout = limits.header_timeout;
    let stalled = async {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            if activity.head_stalled(header_timeout) {
                return;
            }
        }
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stalled => tracing::debug!(client = %addr, "HTTP: closed a connection whose request headers stalled"),
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A TCP stream that notes when the first byte of a request arrives.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_overall_and_per_client_and_free_on_drop() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_per_client: 2,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        let (total, clients) = (Arc::new(Semaphore::new(limits.max_connections)), PerClient::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admit(&total, &clients, &limits, a).unwrap();
        let _second = admit(&total, &clients, &limits, a).unwrap();
        assert_eq!(admit(&total, &clients, &limits, a).err(), Some(Refusal::ClientFull));
        let _third = admit(&total, &clients, &limits, b).unwrap();
        assert_eq!(admit(&total, &clients, &limits, b).err(), Some(Refusal::Full));
        drop(first);
        assert!(admit(&total, &clients, &limits, b).is_ok());
    }

    #[test]
    fn a_head_counts_from_its_first_byte_until_the_router_has_it() {
        let a = Activity::new();
        assert!(!a.head_stalled(Duration::ZERO), "no bytes, no head");
        a.bytes_read();
        std::thread::sleep(Duration::from_millis(3));
        assert!(a.head_stalled(Duration::ZERO));
        assert!(!a.head_stalled(Duration::from_secs(60)));
        a.request_started();
        assert!(!a.head_stalled(Duration::ZERO), "the router has the request");
        a.bytes_read();
        assert!(!a.head_stalled(Duration::ZERO), "a body being read is not a head");
        a.request_finished();
        a.bytes_read();
        std::thread::sleep(Duration::from_millis(3));
        assert!(a.head_stalled(Duration::ZERO), "the next request's head");
    }
}
