//! The DNS listeners on `--dns-addr`, UDP and TCP, and the task that keeps the snapshot
//! current.
//!
//! UDP is answered by one dedicated thread on a blocking socket: it takes every datagram
//! waiting (up to [`BATCH`]) in one `recvmmsg`, answers them and sends the replies in one
//! `sendmmsg`. An async loop cost a runtime wake-up per datagram, more than the answer
//! itself. TCP is served by tokio tasks.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{IntCounter, IntCounterVec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::answer::{respond, Context, Transport};
use super::rrl::{self, Limiter, RrlConfig, Verdict};
use super::snapshot::Snapshot;
use crate::net::PerClient;
use crate::peer::Peer;
use crate::supervise::Tasks;

/// TCP connections served at once; more wait in the listen backlog.
const MAX_TCP_CONNECTIONS: usize = 256;
/// TCP connections served at once from one client address; more are closed at once.
const MAX_TCP_PER_CLIENT: usize = 16;
/// A TCP connection idle this long (between queries, or within one) is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Sending one answer over TCP may take this long; a client that does not read is cut off.
const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A TCP connection is closed after this long, however busy (RFC 7766 lets a server
/// close connections to manage its resources).
const TCP_MAX_LIFETIME: Duration = Duration::from_secs(120);
/// Datagrams received, and replies sent, in one system call.
const BATCH: usize = 32;
/// Room for the largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;
/// How often the UDP thread, blocked in a receive, looks at the shutdown token.
const UDP_SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// The response codes this server answers with and the query types most asked, in the
/// order of [`QueryCounters`]' table.
const RCODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::NXDomain,
    ResponseCode::Refused,
    ResponseCode::ServFail,
    ResponseCode::FormErr,
    ResponseCode::NotImp,
    ResponseCode::BADVERS,
];
const QTYPES: [Option<RecordType>; 16] = [
    Some(RecordType::A),
    Some(RecordType::AAAA),
    Some(RecordType::HTTPS),
    Some(RecordType::SOA),
    Some(RecordType::NS),
    Some(RecordType::CNAME),
    Some(RecordType::ANY),
    Some(RecordType::MX),
    Some(RecordType::TXT),
    Some(RecordType::SVCB),
    Some(RecordType::PTR),
    Some(RecordType::SRV),
    Some(RecordType::CAA),
    Some(RecordType::DS),
    Some(RecordType::DNSKEY),
    None,
];

/// `switchboard_dns_queries_total` by (rcode, qtype), with the counter of each common pair
/// looked up once, when first used: formatting and hashing the labels of every query cost
/// more than answering it.
struct QueryCounters {
    by_labels: IntCounterVec,
    table: Vec<OnceLock<IntCounter>>,
}

impl QueryCounters {
    fn new(by_labels: IntCounterVec) -> Self {
        Self { by_labels, table: (0..RCODES.len() * QTYPES.len()).map(|_| OnceLock::new()).collect() }
    }

    fn count(&self, rcode: ResponseCode, qtype: Option<RecordType>) {
        let labelled = || {
            let qtype = qtype.map(|t| t.to_string()).unwrap_or_else(|| "none".into());
            self.by_labels.with_label_values(&[&format!("{rcode:?}"), &qtype])
        };
        match (RCODES.iter().position(|r| *r == rcode), QTYPES.iter().position(|t| *t == qtype)) {
            (Some(r), Some(t)) => self.table[r * QTYPES.len() + t].get_or_init(labelled).inc(),
            _ => labelled().inc(),
        }
    }
}

struct Server {
    peer: Arc<Peer>,
    snapshot: ArcSwap<Snapshot>,
    region: String,
    max_stale: Option<Duration>,
    queries: QueryCounters,
}

impl Server {
    fn answer(&self, request: &[u8], source: SocketAddr, transport: Transport) -> Option<Vec<u8>> {
        let started = Instant::now();
        let stale = self.max_stale.is_some_and(|max| self.peer.since_leader_contact() > max);
        let snapshot = self.snapshot.load();
        let ctx = Context { source: source.ip(), transport, default_region: &self.region, stale };
        let answered = respond(&snapshot, request, &ctx)?;
        let m = &self.peer.metrics;
        self.queries.count(answered.rcode, answered.qtype);
        if stale && answered.rcode == ResponseCode::ServFail {
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
    rrl: RrlConfig,
    tasks: Tasks,
) {
    let shutdown = tasks.shutdown().clone();
    let first = Snapshot::build(&peer.state.read());
    let queries = QueryCounters::new(peer.metrics.dns_queries.clone());
    let server = Arc::new(Server { snapshot: ArcSwap::from_pointee(first), peer, region, max_stale, queries });
    tasks.spawn("DNS snapshot updater", keep_current(server.clone(), shutdown.clone()));
    tasks.spawn("DNS over TCP", serve_tcp(tcp, server.clone(), shutdown.clone()));
    let udp = match blocking(udp) {
        Ok(udp) => udp,
        Err(e) => {
            tracing::error!(error = %e, "DNS over UDP: cannot use the socket");
            return;
        }
    };
    // The thread owns the socket; waiting for it to end means the port is free again.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let (thread_server, thread_shutdown) = (server.clone(), shutdown.clone());
    let spawned = std::thread::Builder::new().name("dns-udp".into()).spawn(move || {
        serve_udp(&udp, &thread_server, &mut Limiter::new(rrl), &thread_shutdown);
        drop(done);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "DNS over UDP: cannot start its thread");
        return;
    }
    // The thread ends at shutdown; ending before it (a panic) ends this task, which fails
    // the peer.
    let mut finished = finished;
    tokio::select! {
        _ = shutdown.cancelled() => {
            let _ = finished.await;
        }
        _ = &mut finished => tracing::error!("DNS over UDP: its thread stopped"),
    }
}

/// The socket in blocking mode, waking up at least every [`UDP_SHUTDOWN_POLL`].
fn blocking(udp: UdpSocket) -> std::io::Result<std::net::UdpSocket> {
    let udp = udp.into_std()?;
    udp.set_nonblocking(false)?;
    udp.set_read_timeout(Some(UDP_SHUTDOWN_POLL))?;
    Ok(udp)
}

/// Answers UDP queries until shutdown: each round receives every datagram waiting (at
/// least one, at most [`BATCH`]), answers them in order and sends the replies together.
/// Each response first passes the response-rate limiter (`rrl.rs`).
fn serve_udp(socket: &std::net::UdpSocket, server: &Server, limiter: &mut Limiter, shutdown: &CancellationToken) {
    let fd = socket.as_raw_fd();
    let mut buffers = vec![0u8; BATCH * MAX_DATAGRAM];
    // SAFETY (all the zeroed values): plain C structs, for which all zeroes is valid.
    let mut sources: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovecs: Vec<libc::iovec> = buffers
        .chunks_exact_mut(MAX_DATAGRAM)
        .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: MAX_DATAGRAM })
        .collect();
    let mut received: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for (i, m) in received.iter_mut().enumerate() {
        m.msg_hdr.msg_name = std::ptr::from_mut(&mut sources[i]).cast();
        m.msg_hdr.msg_iov = &mut iovecs[i];
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut replies: Vec<(usize, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut reply_iovecs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    let mut sent: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    while !shutdown.is_cancelled() {
        for m in &mut received {
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: every header points at its own source slot and buffer, which outlive the
        // call and are not otherwise borrowed during it.
        let n = unsafe {
            libc::recvmmsg(fd, received.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_WAITFORONE, std::ptr::null_mut())
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted => {}
                _ => {
                    tracing::debug!(error = %e, "DNS receive failed");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            continue;
        }
        replies.clear();
        let now = Instant::now();
        for (i, m) in received.iter().enumerate().take(n as usize) {
            let Some(source) = socket_addr(&sources[i], m.msg_hdr.msg_namelen) else { continue };
            let request = &buffers[i * MAX_DATAGRAM..][..m.msg_len as usize];
            let reply = match limiter.check(source.ip(), now) {
                Verdict::Send => server.answer(request, source, Transport::Udp),
                Verdict::Slip => {
                    server.peer.metrics.dns_rrl_slipped.inc();
                    rrl::truncated(request)
                }
                Verdict::Drop => {
                    server.peer.metrics.dns_rrl_dropped.inc();
                    None
                }
            };
            if let Some(reply) = reply {
                replies.push((i, reply));
            }
        }
        reply_iovecs.clear();
        reply_iovecs
            .extend(replies.iter().map(|(_, r)| libc::iovec { iov_base: r.as_ptr() as *mut _, iov_len: r.len() }));
        for (k, (i, _)) in replies.iter().enumerate() {
            let h = &mut sent[k].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut sources[*i]).cast();
            h.msg_namelen = received[*i].msg_hdr.msg_namelen;
            h.msg_iov = &mut reply_iovecs[k];
            h.msg_iovlen = 1;
        }
        let mut next = 0;
        while next < replies.len() {
            // SAFETY: headers `next..` point at the sources and the replies, alive until
            // the end of this round; sendmmsg only reads them.
            let n = unsafe { libc::sendmmsg(fd, sent[next..].as_mut_ptr(), (replies.len() - next) as libc::c_uint, 0) };
            if n <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // This reply cannot be sent (as with send_to before): skip it, send the rest.
                tracing::debug!(error = %e, "DNS reply not sent");
                next += 1;
            } else {
                next += n as usize;
            }
        }
    }
}

/// A `sockaddr_storage` filled by the kernel, as a `SocketAddr`.
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says it is a sockaddr_in, and it is long enough.
            let a = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says it is a sockaddr_in6, and it is long enough.
            let a = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
        }
        _ => None,
    }
}

/// Brings the snapshot up to date after every applied change, from the previous one (see
/// [`Snapshot::update`]); changes that arrive during an update are folded into the next.
async fn keep_current(server: Arc<Server>, shutdown: CancellationToken) {
    let mut applied = server.peer.state.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
        // A full build walks the whole table: off the async workers, so queries are not held up.
        let builder = server.clone();
        let Ok(snapshot) = tokio::task::spawn_blocking(move || {
            let previous = builder.snapshot.load_full();
            previous.update(&builder.peer.state.read())
        })
        .await
        else {
            return;
        };
        server.snapshot.store(Arc::new(snapshot));
    }
}

async fn serve_tcp(listener: TcpListener, server: Arc<Server>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let per_client = PerClient::default();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some((stream, source)) = crate::net::accept(&listener, "DNS over TCP", &shutdown).await else { return };
        let Some(client) = per_client.take(source.ip(), MAX_TCP_PER_CLIENT) else { continue };
        let server = server.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TCP_MAX_LIFETIME, serve_tcp_connection(stream, source, &server)).await;
            drop((slot, client));
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
        tokio::time::timeout(TCP_WRITE_TIMEOUT, stream.write_all(&framed)).await??;
    }
}
