//! Dispatch on a live cluster: heartbeats, failover, maintenance, fallback, locks and pins,
//! seen on every peer; and a change of leader that must not fail anyone over.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::util::{eventually, Cluster};

/// Sends a heartbeat for every node every 250 ms, each to the next peer that answers,
/// like an agent on each node would. Nodes in `silenced` stop beating.
struct Beater {
    silenced: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Beater {
    fn start(urls: Vec<String>, nodes: Vec<(&'static str, f64)>) -> Beater {
        let silenced = Arc::new(Mutex::new(HashSet::new()));
        let quiet = silenced.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
            let mut turn = 0usize;
            loop {
                for (node, latency) in &nodes {
                    if quiet.lock().unwrap().contains(*node) {
                        continue;
                    }
                    let body = json!({"cpu": 0.2, "load": 0.3, "latency_ms": latency, "error_rate": 0.0, "bandwidth_mbps": 900});
                    for _ in 0..urls.len() {
                        turn += 1;
                        let url = format!("{}/v1/nodes/{node}/heartbeat", urls[turn % urls.len()]);
                        if let Ok(r) = http.post(url).json(&body).send().await {
                            if r.status().is_success() {
                                break;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Beater { silenced, task }
    }

    fn silence(&self, node: &str) {
        self.silenced.lock().unwrap().insert(node.to_string());
    }
}

impl Drop for Beater {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn setup(c: &Cluster) {
    let requests = [
        ("/v1/regions/sea", json!({"cidrs": ["10.20.0.0/16"], "fallback": ["eu"]})),
        ("/v1/regions/eu", json!({"cidrs": ["10.30.0.0/16"], "fallback": []})),
        ("/v1/zones/example.com", json!({})),
        ("/v1/sites/sg-1", json!({"region": "sea"})),
        ("/v1/sites/sg-2", json!({"region": "sea"})),
        ("/v1/sites/fra-1", json!({"region": "eu"})),
        ("/v1/nodes/sg-a", json!({"ip": "192.0.2.1", "region": "sea", "site": "sg-1", "capacity": 10})),
        ("/v1/nodes/sg-b", json!({"ip": "192.0.2.2", "region": "sea", "site": "sg-1", "capacity": 10})),
        ("/v1/nodes/sg-c", json!({"ip": "192.0.2.3", "region": "sea", "site": "sg-2", "capacity": 10})),
        ("/v1/nodes/fra-a", json!({"ip": "192.0.2.4", "region": "eu", "site": "fra-1", "capacity": 10})),
        ("/v1/domains/Video.Example.com.", json!({"sites": ["sg-1", "sg-2", "fra-1"], "ttl": 30})),
    ];
    for (i, (path, body)) in requests.into_iter().enumerate() {
        let (status, answer) = c.call(1 + i as u64 % 3, Method::PUT, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
}

/// Region → node of video.example.com as peer `id` has it locally.
async fn table(c: &Cluster, id: u64) -> BTreeMap<String, (Option<String>, String)> {
    let (status, body) = c.call(id, Method::GET, "/v1/dispatch?stale", None).await;
    assert_eq!(status, 200);
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["domain"] == "video.example.com")
        .map(|r| {
            let node = r["node"].as_str().map(str::to_string);
            (r["region"].as_str().unwrap().to_string(), (node, r["reason"].as_str().unwrap().to_string()))
        })
        .collect()
}

/// Waits until every running peer answers `node` for `region`, for `reason` if given.
async fn every_peer_answers(c: &Cluster, region: &str, node: Option<&str>, reason: Option<&str>) -> Duration {
    let started = Instant::now();
    eventually(Duration::from_secs(10), &format!("every peer to answer {node:?} in {region} ({reason:?})"), || async {
        for id in c.running() {
            let t = table(c, id).await;
            let (n, r) = t.get(region)?;
            if n.as_deref() != node || reason.is_some_and(|want| want != r) {
                return None;
            }
        }
        Some(())
    })
    .await;
    started.elapsed()
}

async fn health(c: &Cluster, id: u64, node: &str) -> String {
    let (_, body) = c.call(id, Method::GET, &format!("/v1/nodes/{node}?stale"), None).await;
    body["health"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_maintenance_fallback_locks_and_pins_reach_every_peer() {
    let c = Cluster::start(3).await;
    setup(&c).await;
    let urls: Vec<String> = c.running().iter().map(|id| c.peer(*id).url()).collect();
    let beater = Beater::start(urls, vec![("sg-a", 10.0), ("sg-b", 30.0), ("sg-c", 50.0), ("fra-a", 20.0)]);

    every_peer_answers(&c, "sea", Some("sg-a"), None).await;
    every_peer_answers(&c, "eu", Some("fra-a"), None).await;

    // sg-a dies: every peer moves to the next best within a few seconds.
    beater.silence("sg-a");
    let took = every_peer_answers(&c, "sea", Some("sg-b"), Some("failover")).await;
    eprintln!("failover reached every peer {took:?} after the last heartbeat");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    for id in c.running() {
        assert_eq!(health(&c, id, "sg-a").await, "down");
    }

    // Maintenance drains sg-b, then sg-c: sea falls back to eu.
    let maint = |on: bool| Some(json!({"enabled": on, "reason": "kernel upgrade"}));
    assert_eq!(c.call(2, Method::PUT, "/v1/nodes/sg-b/maintenance", maint(true)).await.0, 200);
    every_peer_answers(&c, "sea", Some("sg-c"), Some("maintenance")).await;
    assert_eq!(health(&c, 3, "sg-b").await, "maintenance");
    assert_eq!(c.call(3, Method::PUT, "/v1/nodes/sg-c/maintenance", maint(true)).await.0, 200);
    every_peer_answers(&c, "sea", Some("fra-a"), Some("fallback")).await;
    for node in ["sg-b", "sg-c"] {
        assert_eq!(c.call(1, Method::PUT, &format!("/v1/nodes/{node}/maintenance"), maint(false)).await.0, 200);
    }
    every_peer_answers(&c, "sea", Some("sg-b"), Some("recovery")).await;

    // A lock (g → y) answers from that site everywhere; unlock restores the election.
    let (status, body) =
        c.call(2, Method::PUT, "/v1/domains/video.example.com/lock", Some(json!({"site": "fra-1"}))).await;
    assert_eq!(status, 200, "{body}");
    every_peer_answers(&c, "sea", Some("fra-a"), Some("lock")).await;
    assert_eq!(c.call(3, Method::DELETE, "/v1/domains/video.example.com/lock", None).await.0, 200);
    every_peer_answers(&c, "sea", Some("sg-b"), Some("recovery")).await;

    // A pin (y → IP) beats scores, also to a node that is down: the operator's choice stands.
    assert_eq!(
        c.call(1, Method::PUT, "/v1/domains/video.example.com/lock", Some(json!({"site": "sg-1"}))).await.0,
        200
    );
    every_peer_answers(&c, "sea", Some("sg-b"), Some("lock")).await;
    assert_eq!(c.call(2, Method::PUT, "/v1/sites/sg-1/pin", Some(json!({"node": "sg-a"}))).await.0, 200);
    every_peer_answers(&c, "sea", Some("sg-a"), Some("pin")).await;
    let (_, why) = c.call(3, Method::GET, "/v1/resolve?name=video.example.com&client=10.20.1.1", None).await;
    let trace = why["why"].to_string();
    assert!(
        trace.contains("region sea") && trace.contains("pinned to node sg-a") && trace.contains("the pin stands"),
        "{why}"
    );
    assert_eq!(c.call(3, Method::DELETE, "/v1/sites/sg-1/pin", None).await.0, 200);
    every_peer_answers(&c, "sea", Some("sg-b"), Some("lock")).await;

    // Bad input is refused with the field named.
    let beat = |load: f64| Some(json!({"cpu": 0.1, "load": load, "latency_ms": 5, "error_rate": 0}));
    let (status, body) = c.call(1, Method::POST, "/v1/nodes/sg-b/heartbeat", beat(7.0)).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("load")), "{body}");
    let (status, body) = c.call(1, Method::POST, "/v1/nodes/sg-b/heartbeat", Some(json!({"load": 0.1}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("cpu")), "a missing metric is not a perfect one: {body}");
    let (status, _) = c.call(1, Method::POST, "/v1/nodes/nope/heartbeat", beat(0.1)).await;
    assert_eq!(status, 404);
    // A site's nodes share its region; a site with nodes cannot go.
    let (status, body) = c.call(2, Method::PUT, "/v1/sites/sg-2", Some(json!({"region": "eu"}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("region")), "{body}");
    let (status, body) = c.call(2, Method::DELETE, "/v1/sites/sg-2", None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("in_use")), "{body}");
    let (status, body) = c.call(1, Method::PUT, "/v1/sites/sg-1/pin", Some(json!({"node": "fra-a"}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("node")), "a pin must name a node of the site: {body}");
    let (status, body) = c.call(1, Method::PUT, "/v1/domains/other.org", Some(json!({"sites": ["sg-1"]}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("name")), "no zone for it: {body}");

    let metrics =
        c.http.get(format!("{}/metrics", c.peer(c.leader().await).url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("switchboard_failovers_total") && !l.ends_with(" 0")), "{metrics}");
}

/// A new leader has heard no heartbeat yet; it must give every node a grace period
/// instead of failing them all over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_leader_fails_no_node_over() {
    let mut c = Cluster::start(3).await;
    setup(&c).await;
    let urls: Vec<String> = c.running().iter().map(|id| c.peer(*id).url()).collect();
    let _beater = Beater::start(urls, vec![("sg-a", 10.0), ("sg-b", 30.0), ("sg-c", 50.0), ("fra-a", 20.0)]);
    every_peer_answers(&c, "sea", Some("sg-a"), None).await;
    every_peer_answers(&c, "eu", Some("fra-a"), None).await;
    let before = table(&c, 1).await;

    let leader = c.leader().await;
    c.kill(leader);
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    // Longer than down_after (1.5 s) past the election, while the nodes keep beating.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in c.running() {
        assert_eq!(table(&c, id).await, before, "peer {id}: the table changed across the election");
        for node in ["sg-a", "sg-b", "sg-c", "fra-a"] {
            assert_eq!(health(&c, id, node).await, "up", "peer {id}: {node}");
        }
    }
    let metrics =
        c.http.get(format!("{}/metrics", c.peer(new_leader).url())).send().await.unwrap().text().await.unwrap();
    let failovers: Vec<&str> = metrics.lines().filter(|l| l.starts_with("switchboard_failovers_total")).collect();
    assert_eq!(failovers, vec!["switchboard_failovers_total 0"]);
}

/// The policy is validated and replicated; `resolve` explains candidates with scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_resolve() {
    let c = Cluster::start(3).await;
    setup(&c).await;
    let (status, body) =
        c.call(2, Method::PUT, "/v1/policy/scoring", Some(json!({"latency": 0.5, "cpu": 0.5, "load": 0.0}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, policy) = c.call(3, Method::GET, "/v1/policy/scoring", None).await;
    assert_eq!(policy["weights"]["cpu"], 0.5);
    assert_eq!(policy["hysteresis"], 0.1, "unchanged fields keep their values");
    let (status, body) = c.call(1, Method::PUT, "/v1/policy/scoring", Some(json!({"hysteresis": 1.5}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("hysteresis")));

    let urls: Vec<String> = c.running().iter().map(|id| c.peer(*id).url()).collect();
    let _beater = Beater::start(urls, vec![("sg-a", 10.0), ("sg-b", 30.0), ("sg-c", 50.0), ("fra-a", 20.0)]);
    every_peer_answers(&c, "sea", Some("sg-a"), None).await;
    let (status, why) = c.call(3, Method::GET, "/v1/resolve?name=VIDEO.example.com&client=10.20.9.9", None).await;
    assert_eq!(status, 200, "{why}");
    assert_eq!(why["region"], "sea");
    assert_eq!(why["answer"]["node"], "sg-a");
    assert_eq!(why["answer"]["ttl"], 30);
    let scores: Vec<&Value> = why["candidates"].as_array().unwrap().iter().map(|c| &c["score"]).collect();
    assert_eq!(scores.len(), 3, "{why}");
    assert!(scores.iter().all(|s| s.is_number()), "the leader's metrics give scores: {why}");
    let (_, why) = c.call(2, Method::GET, "/v1/resolve?name=video.example.com&client=192.0.2.200", None).await;
    assert!(why["why"][0].as_str().unwrap().contains("this peer's region default"), "{why}");
}
