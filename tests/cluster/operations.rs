//! What an operator relies on: answers that do not mislead, and documents read from the
//! API that can be written back as they are (a backup is a GET, a restore a PUT).

use reqwest::Method;
use serde_json::{json, Value};

use crate::util::Cluster;

/// A heartbeat to a peer that is not (yet) in a cluster is told what every write is told,
/// 503 no_leader, not that its node does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_to_a_peer_outside_a_cluster_is_told_no_leader() {
    let mut c = Cluster::start(3).await;
    let outsider = c.add_process().await;
    let beat = json!({"cpu": 0.1, "load": 0.1, "latency_ms": 5.0, "error_rate": 0.0});
    let (status, body) = c.call(outsider, Method::POST, "/v1/nodes/n1/heartbeat", Some(beat.clone())).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("no_leader")), "{body}");
    let (status, body) = c.call(outsider, Method::PUT, "/v1/regions/r1", Some(json!({}))).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("no_leader")), "a write gets the same: {body}");
    // A member of the cluster still says when the node does not exist.
    let (status, _) = c.call(1, Method::POST, "/v1/nodes/n1/heartbeat", Some(beat)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_read_from_the_api_can_be_written_back_as_it_is() {
    let c = Cluster::start(3).await;
    let setup = [
        ("/v1/regions/eu", json!({"cidrs": ["10.1.0.0/16"], "fallback": []})),
        ("/v1/regions/us", json!({"cidrs": ["10.2.0.0/16"], "fallback": ["eu"]})),
        ("/v1/zones/example.com", json!({"ns": ["ns1.example.com"], "hostmaster": "ops@example.com"})),
        ("/v1/sites/s1", json!({"region": "eu"})),
        ("/v1/nodes/n1", json!({"ip": "192.0.2.1", "region": "eu", "site": "s1", "capacity": 10})),
        ("/v1/domains/www.example.com", json!({"sites": ["s1"], "ttl": 30})),
        ("/v1/policy/scoring", json!({"latency": 0.5, "load": 0.5, "hysteresis": 0.2, "down_after_ms": 2000})),
        ("/v1/scheduler/config", json!({"w_cpu": 2.0})),
        ("/v1/policy/sync", json!({"batch_size": 50})),
        ("/v1/policy/actions", json!({"max_active": 7})),
    ];
    for (path, body) in &setup {
        let (status, answer) = c.call(1, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let reads = [
        ("/v1/regions/eu", "/v1/regions/eu"),
        ("/v1/regions/us", "/v1/regions/us"),
        ("/v1/zones/example.com", "/v1/zones/example.com"),
        ("/v1/sites/s1", "/v1/sites/s1"),
        ("/v1/nodes/n1", "/v1/nodes/n1"),
        ("/v1/domains/www.example.com", "/v1/domains/www.example.com"),
        ("/v1/policy/scoring", "/v1/policy/scoring"),
        ("/v1/scheduler/config", "/v1/scheduler/config"),
    ];
    let mut refused = Vec::new();
    for (get, put) in reads {
        let (status, doc) = c.call(1, Method::GET, get, None).await;
        assert_eq!(status, 200, "GET {get}: {doc}");
        // The read-only fields (`revision`, the name in the path) are accepted and ignored.
        let (status, answer) = c.call(1, Method::PUT, put, Some(doc.clone())).await;
        if status != 200 {
            refused.push(format!("PUT {put} of its own GET: {status} {answer}"));
            continue;
        }
        let (_, again) = c.call(1, Method::GET, get, None).await;
        let strip = |mut v: Value| {
            if let Some(o) = v.as_object_mut() {
                o.remove("revision");
                if let Some(config) = o.get_mut("config").and_then(|c| c.as_object_mut()) {
                    config.remove("revision");
                }
            }
            v
        };
        assert_eq!(strip(again), strip(doc), "{get} changed when written back");
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}
