//! What a client can hold of a peer is bounded: floods of idle and half-open connections
//! to the HTTP and raft ports are cut off while the peer keeps taking writes and
//! heartbeats, and node heartbeats have a budget that other requests cannot use up.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::util::{eventually, Cluster};

/// Opens a connection to `to` from the loopback address `from`, so that the flood counts
/// against another client address than the test's own requests.
async fn connect_from(from: &str, to: &str) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{from}:0").parse().ok()?).ok()?;
    let to: SocketAddr = to.parse().ok()?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await.ok()?.ok()
}

const FLOOD: usize = 1500;
const PER_CLIENT: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_floods_are_cut_off_while_writes_and_heartbeats_go_on() {
    let per_client = PER_CLIENT.to_string();
    let c = Cluster::start_with_env(
        3,
        &[
            ("SWITCHBOARD_HTTP_HEADER_TIMEOUT_MS", "1000"),
            ("SWITCHBOARD_HTTP_IDLE_TIMEOUT_MS", "2000"),
            ("SWITCHBOARD_HTTP_MAX_CONNECTIONS_PER_CLIENT", &per_client),
            ("SWITCHBOARD_RAFT_HANDSHAKE_TIMEOUT_MS", "1000"),
            ("SWITCHBOARD_RAFT_MAX_CONNECTIONS", "64"),
        ],
    )
    .await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    assert_eq!(c.put_node(1, "n1", 10).await.0, 200);
    let target = c.peer(1);
    let before = target.open_fds();

    // Half of the HTTP flood never sends a byte; the other half sends headers that never end.
    let mut http = Vec::new();
    for i in 0..FLOOD {
        let Some(mut s) = connect_from("127.0.0.2", &target.http_addr).await else { continue };
        if i % 2 == 1 {
            let _ = s.write_all(b"GET /v1/nodes HTTP/1.1\r\nHost: flood\r\n").await;
        }
        http.push(s);
    }
    // Raft-port connections that never answer the handshake.
    let mut raft = Vec::new();
    for _ in 0..FLOOD {
        if let Some(s) = connect_from("127.0.0.3", &target.raft_addr).await {
            raft.push(s);
        }
    }
    assert!(http.len() > PER_CLIENT && raft.len() > 64, "the flood could not open its connections");

    // Past the per-client cap the peer answers 503 with Retry-After and closes.
    let mut refused = String::new();
    let last = http.last_mut().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), last.read_to_string(&mut refused)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "a connection over the cap got: {refused:?}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");

    // Meanwhile writes and heartbeats through the flooded peer go on.
    for i in 0..10 {
        let (status, body) = c.put_region(1, &format!("during-{i}")).await;
        assert_eq!(status, 200, "a write during the flood: {body}");
        let beat = json!({"cpu": 0.1, "load": 0.1, "latency_ms": 5.0, "error_rate": 0.0});
        let (status, body) = c.call(1, Method::POST, "/v1/nodes/n1/heartbeat", Some(beat)).await;
        assert_eq!(status, 202, "a heartbeat during the flood: {body}");
    }

    // The peer times the flood out: its descriptors fall back.
    let fds = eventually(Duration::from_secs(20), "the peer to close the flood's connections", || async {
        let now = target.open_fds();
        (now <= before + 20).then_some(now)
    })
    .await;
    assert!(fds <= before + 20);
    // And the flood's sockets see the end.
    let mut closed = 0;
    for s in http.iter_mut().chain(raft.iter_mut()).take(50) {
        let mut buf = [0u8; 512];
        if let Ok(Ok(0)) | Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "the peer left some flood connections open");
    assert_eq!(c.put_region(1, "after").await.0, 200);
}

/// A request whose body never arrives holds a place among `max_requests` until
/// `body_timeout_ms`; with those places taken, other requests are told to retry, and
/// heartbeats, on their own budget, are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_their_budget_when_other_requests_are_over_theirs() {
    let c = Cluster::start_with_env(
        3,
        &[("SWITCHBOARD_HTTP_MAX_REQUESTS", "2"), ("SWITCHBOARD_HTTP_BODY_TIMEOUT_MS", "10000")],
    )
    .await;
    assert_eq!(c.put_region(2, "r1").await.0, 200);
    assert_eq!(c.put_node(2, "n1", 10).await.0, 200);
    let target = c.peer(2);
    let url = format!("{}/v1/nodes", target.url());
    // Requests whose bodies never arrive, one at a time, until the budget is used up and a
    // read is told to retry. (A stalled request that arrives while a read holds a place is
    // itself told to retry; that is why this opens as many as it takes.)
    let mut stalled = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let busy = loop {
        let mut s = TcpStream::connect(&target.http_addr).await.unwrap();
        s.write_all(b"PUT /v1/regions/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .await
            .unwrap();
        stalled.push(s);
        let r = c.http.get(&url).send().await.unwrap();
        if r.status().as_u16() == 503 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "the request budget was never used up");
    };
    assert_eq!(busy.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()).as_deref(), Some("1"));
    assert_eq!(busy.json::<serde_json::Value>().await.unwrap()["error"], "overloaded");
    let beat = json!({"cpu": 0.1, "load": 0.1, "latency_ms": 5.0, "error_rate": 0.0});
    let (status, body) = c.call(2, Method::POST, "/v1/nodes/n1/heartbeat", Some(beat)).await;
    assert_eq!(status, 202, "a heartbeat while other requests are over budget: {body}");
    let (status, _) = c.call(2, Method::GET, "/health", None).await;
    assert_eq!(status, 200, "/health answers under any load");

    // The stalled bodies time out (408), which frees the budget; a stalled request that came
    // when no place was left was told to retry (503).
    let mut timed_out = 0;
    for s in &mut stalled {
        let mut answer = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_string(&mut answer)).await;
        assert!(
            answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 503"),
            "a stalled body got: {answer:?}"
        );
        timed_out += answer.starts_with("HTTP/1.1 408") as usize;
    }
    assert_eq!(timed_out, 2, "two stalled requests held the two places");
    eventually(Duration::from_secs(5), "requests to be taken again", || async {
        (c.http.get(&url).send().await.ok()?.status().as_u16() == 200).then_some(())
    })
    .await;
}

/// The data directory holds the whole state: only the peer's user may read it. A snapshot
/// file that is corrupt stops the peer at start with one error that names the file and
/// points at the recovery steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_private_and_a_corrupt_snapshot_is_named_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::start_with_env(3, &[("SWITCHBOARD_RAFT_SNAPSHOT_EVERY", "5")]).await;
    for i in 0..20 {
        assert_eq!(c.put_region(1, &format!("r{i}")).await.0, 200);
    }
    let dir = c.peer(3).data_dir.clone();
    let snapshots = dir.join("snapshots");
    let snapshot = eventually(Duration::from_secs(20), "peer 3 to write a snapshot", || async {
        std::fs::read_dir(&snapshots)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "snap"))
    })
    .await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the data directory");
    let mut files = vec![dir.clone()];
    while let Some(d) = files.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                files.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
        }
    }

    c.kill(3);
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&snapshot, &bytes).unwrap();
    let peer = c.peer_mut(3);
    peer.start_again();
    let status = peer.wait_exit(Duration::from_secs(20)).expect("a peer with a corrupt snapshot stops");
    assert!(!status.success());
    let log = std::fs::read_to_string(&peer.log).unwrap();
    let line = log.lines().rev().find(|l| l.contains("corrupt")).expect("one line says the snapshot is corrupt");
    assert!(line.contains(&snapshot.display().to_string()) && line.contains("docs/operations.md"), "{line}");
}
