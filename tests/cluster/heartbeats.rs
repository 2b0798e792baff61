//! Heartbeats a follower forwards to the leader and that the network delivers late: a batch
//! held up long enough to outlive the node that sent it must never mark that node up again,
//! neither in the term it was sent in nor after the leader was elected again.
//!
//! The delay is the `forwarded-heartbeats-late` failpoint (`src/raft/failpoint.rs`): the
//! first batch of heartbeats a peer receives from another is served 15 s after it arrived,
//! as if a partition, or TCP retransmitting it after the follower gave up, had delivered it
//! that late.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::util::{eventually, Cluster};

const LATE_ENV: [(&str, &str); 1] = [("SWITCHBOARD_FAILPOINT", "forwarded-heartbeats-late")];
const FIRED: &str = "failpoint forwarded-heartbeats-late fired";
const SERVED: &str = "failpoint forwarded-heartbeats-late: the held batch was served";
/// The failure detector's silence; short, so that the node is down long before the held
/// batch is served.
const DOWN_AFTER_MS: u64 = 500;

fn beat() -> Value {
    json!({"cpu": 0.1, "load": 0.1, "latency_ms": 5, "error_rate": 0, "bandwidth_mbps": 1})
}

/// Region, site and node `n1`, with a short `down_after_ms`.
async fn setup(c: &Cluster, through: u64) {
    let requests = [
        ("/v1/policy/scoring", json!({"down_after_ms": DOWN_AFTER_MS})),
        ("/v1/regions/r1", json!({"cidrs": [], "fallback": []})),
        ("/v1/sites/s1", json!({"region": "r1"})),
        ("/v1/nodes/n1", json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": 1})),
    ];
    for (path, body) in requests {
        let (status, answer) = c.call(through, Method::PUT, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
}

async fn health(c: &Cluster, id: u64) -> String {
    let (status, body) = c.call(id, Method::GET, "/v1/nodes/n1?stale", None).await;
    assert_eq!(status, 200, "{body}");
    body["health"].as_str().unwrap().to_string()
}

/// Beats n1 straight at the leader until the leader has it up.
async fn bring_up(c: &Cluster, leader: u64) {
    eventually(Duration::from_secs(10), "n1 to be up", || async {
        assert_eq!(c.call(leader, Method::POST, "/v1/nodes/n1/heartbeat", Some(beat())).await.0, 202);
        (health(c, leader).await == "up").then_some(())
    })
    .await;
}

fn log_line(log: &Path, line: &str) -> Option<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().find(|l| l.contains(line)).map(str::to_string)
}

async fn await_log_line(log: &Path, line: &str, within: Duration) -> String {
    eventually(within, &format!("'{line}' in {}", log.display()), || async { log_line(log, line) }).await
}

/// n1's last heartbeat goes to `follower`, which forwards it; the leader holds the batch.
/// n1 is silent from then on.
async fn last_beat_through(c: &Cluster, follower: u64, leader: u64) {
    assert_eq!(c.call(follower, Method::POST, "/v1/nodes/n1/heartbeat", Some(beat())).await.0, 202);
    await_log_line(&c.peer(leader).log, FIRED, Duration::from_secs(5)).await;
}

/// Once n1 is down, with the held batch not yet served: the batch is served, and n1 stays
/// down on every peer. Returns the leader's log line saying how the batch was answered.
async fn stays_down_after_the_held_batch(c: &Cluster, leader: u64) -> String {
    eventually(Duration::from_secs(8), "the leader to mark n1 down", || async {
        (health(c, leader).await == "down").then_some(())
    })
    .await;
    let log = &c.peer(leader).log;
    assert!(
        log_line(log, SERVED).is_none(),
        "the held batch was served before n1 went down: the test ran too slowly to say anything"
    );
    let served = await_log_line(log, SERVED, Duration::from_secs(20)).await;
    // Several times down_after, so that a beat taken for fresh would have shown.
    for _ in 0..20 {
        for id in c.running() {
            assert_eq!(health(c, id).await, "down", "peer {id}: the late batch marked the silent node up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served
}

async fn metric(c: &Cluster, id: u64, name: &str) -> u64 {
    let text = c.http.get(format!("{}/metrics", c.peer(id).url())).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in the metrics of peer {id}"))
}

/// The batch reaches the same leader in the same term, 15 s after the follower received the
/// beat: it is taken, and counts from when the follower received it, not from when it
/// arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivered_late_in_the_same_term_does_not_mark_a_dead_node_up() {
    let c = Cluster::start_with_env(3, &LATE_ENV).await;
    let leader = c.leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).unwrap();
    setup(&c, leader).await;
    bring_up(&c, leader).await;
    let term = c.status(leader).await.unwrap()["term"].as_u64();

    last_beat_through(&c, follower, leader).await;
    let served = stays_down_after_the_held_batch(&c, leader).await;
    assert!(served.contains("outcome=Ok("), "the leader took the batch: {served}");
    assert_eq!(metric(&c, leader, "switchboard_heartbeats_refused_total").await, 0);
    let now = c.status(leader).await.unwrap();
    assert_eq!((now["leader"].as_u64(), now["term"].as_u64()), (Some(leader), term), "the leader and term held");
}

/// The jepsen anomaly (issue #20, seed 385465196): the batch was meant for a leader whose
/// term ended while the batch was held; the same peer leads again, in a newer term, when it
/// is served. Two peers: with the follower killed, the leader loses its quorum and steps
/// down. The follower comes back with slow elections (it grants a pre-vote after 3.6 s of
/// silence and stands itself only 1.7 s later, longer than the leader waits between two
/// attempts), so the next election is the old leader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_an_earlier_term_does_not_mark_a_dead_node_up() {
    let mut c = Cluster::start_with_env(2, &LATE_ENV).await;
    let leader = c.leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).unwrap();
    setup(&c, leader).await;
    bring_up(&c, leader).await;
    let term = c.status(leader).await.unwrap()["term"].as_u64().unwrap();

    last_beat_through(&c, follower, leader).await;
    c.kill(follower);
    eventually(Duration::from_secs(5), "the leader without quorum to step down", || async {
        let s = c.status(leader).await?;
        (s["state"] != "leader").then_some(())
    })
    .await;
    let slow_elections = [
        ("SWITCHBOARD_RAFT_HEARTBEAT_MS", "1700"),
        ("SWITCHBOARD_RAFT_ELECTION_MIN_MS", "3500"),
        ("SWITCHBOARD_RAFT_ELECTION_MAX_MS", "3600"),
    ];
    c.restart_with(follower, &slow_elections).await;
    eventually(Duration::from_secs(10), "the same peer to lead again in a newer term", || async {
        let s = c.status(leader).await?;
        (s["state"] == "leader" && s["term"].as_u64()? > term).then_some(())
    })
    .await;

    let served = stays_down_after_the_held_batch(&c, leader).await;
    assert!(served.contains("NotLeader"), "the leader refused the batch: {served}");
    assert!(metric(&c, leader, "switchboard_heartbeats_refused_total").await >= 1);
}
