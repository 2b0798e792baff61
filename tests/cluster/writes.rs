//! Writes through any peer, reads from every peer, bad input, compare-and-set.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use crate::util::{eventually, Cluster};

/// 200 writes spread over all peers are all read back on every peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_every_peer_are_read_back_on_every_peer() {
    let c = Cluster::start(3).await;
    assert_eq!(c.put_region(2, "r1").await.0, 200);
    let ids = c.running();
    let mut expected = BTreeMap::new();
    let mut writes = Vec::new();
    let c = &c;
    for i in 0..200u64 {
        let peer = ids[i as usize % ids.len()];
        expected.insert(format!("n{i}"), i + 1);
        writes.push(async move { (i, c.put_node(peer, &format!("n{i}"), i + 1).await) });
    }
    // Sixteen at a time, so that the leader gathers concurrent writes into shared entries.
    let results: Vec<_> = futures::stream::iter(writes).buffer_unordered(16).collect().await;
    for (i, (status, body)) in results {
        assert_eq!(status, 200, "write {i}: {body}");
        assert!(body["revision"].as_u64().unwrap() > 0);
    }
    for id in ids {
        assert_eq!(c.nodes(id, "").await, expected, "linearizable read on peer {id}");
    }
    // Stale reads catch up too: every peer applies everything.
    for id in c.running() {
        eventually(Duration::from_secs(10), "stale reads to show every write", || async {
            (c.nodes(id, "?stale").await == expected).then_some(())
        })
        .await;
    }
}

/// Bad input answers 400 naming the field (413 for a large body) and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_writes_nothing() {
    let c = Cluster::start(3).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    let before = c.status(1).await.unwrap()["last_log_index"].as_u64().unwrap();

    let raw = |peer: u64, path: &str, body: &'static str| {
        let url = format!("{}{}", c.peer(peer).url(), path);
        let http = c.http.clone();
        async move {
            let r = http.put(url).header("content-type", "application/json").body(body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = raw(2, "/v1/nodes/n1", "{\"ip\": \"192.0.2.1\", ").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid")), "{body}");
    assert_eq!(body["field"], "body");

    let cases = [
        (json!({"ip": "300.1.1.1", "region": "r1", "site": "s1", "capacity": 1}), "ip"),
        (json!({"ip": "192.0.2.1", "region": "r1", "site": "s1"}), "capacity"),
        (json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": 0}), "capacity"),
        (json!({"ip": "192.0.2.1", "region": "r1", "site": "S_1", "capacity": 1}), "site"),
        (json!({"ip": "192.0.2.1", "region": "nowhere", "site": "s1", "capacity": 1}), "region"),
        (json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": 1, "colour": "red"}), "colour"),
        (json!({"ip": 7, "region": "r1", "site": "s1", "capacity": 1}), "ip"),
    ];
    for (body, field) in cases {
        let (status, answer) = c.call(3, Method::PUT, "/v1/nodes/n1", Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
    }
    let long_id = "n".repeat(64);
    let (status, answer) = c.put_node(1, &long_id, 1).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("id")));
    let (status, answer) =
        c.call(1, Method::PUT, "/v1/regions/r2", Some(json!({"cidrs": ["10.0.0.1/8"], "fallback": []}))).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("cidrs[0]")), "{answer}");

    let huge = "x".repeat(70 * 1024);
    let (status, answer) =
        c.call(2, Method::PUT, "/v1/regions/r3", Some(json!({"cidrs": [], "fallback": [], "pad": huge}))).await;
    assert_eq!((status, answer["error"].as_str()), (413, Some("too_large")), "{answer}");

    // Nothing reached the log: the one refusal decided by the state machine ("region"
    // does not exist) is the only entry, and it changed no resource.
    assert!(c.nodes(1, "").await.is_empty());
    let after = c.status(1).await.unwrap()["last_log_index"].as_u64().unwrap();
    assert!(after <= before + 1, "log grew from {before} to {after}");
    let (status, _) = c.call(1, Method::GET, "/v1/regions/r2", None).await;
    assert_eq!(status, 404);
    let (status, answer) = c.call(1, Method::POST, "/v1/regions/r2", None).await;
    assert_eq!((status, answer["error"].as_str()), (405, Some("method_not_allowed")), "{answer}");
}

/// `?cas=REV` applies only at that revision; `cas=0` only when absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_works_both_ways() {
    let c = Cluster::start(3).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    let body = |cap: u64| Some(json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": cap}));

    let (status, created) = c.call(2, Method::PUT, "/v1/nodes/k?cas=0", body(1)).await;
    assert_eq!(status, 200, "{created}");
    let rev = created["revision"].as_u64().unwrap();

    let (status, answer) = c.call(3, Method::PUT, "/v1/nodes/k?cas=0", body(2)).await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("cas_mismatch")), "{answer}");

    let (status, updated) = c.call(3, Method::PUT, &format!("/v1/nodes/k?cas={rev}"), body(3)).await;
    assert_eq!(status, 200, "{updated}");
    let rev2 = updated["revision"].as_u64().unwrap();
    assert!(rev2 > rev);

    let (status, _) = c.call(1, Method::PUT, &format!("/v1/nodes/k?cas={rev}"), body(4)).await;
    assert_eq!(status, 409, "a revision that is no longer current");
    let (status, _) = c.call(1, Method::DELETE, &format!("/v1/nodes/k?cas={rev}"), None).await;
    assert_eq!(status, 409);

    let (_, node) = c.call(1, Method::GET, "/v1/nodes/k", None).await;
    assert_eq!((node["capacity"].as_u64(), node["revision"].as_u64()), (Some(3), Some(rev2)));

    let (status, _) = c.call(2, Method::DELETE, &format!("/v1/nodes/k?cas={rev2}"), None).await;
    assert_eq!(status, 200);
    let (status, _) = c.call(3, Method::GET, "/v1/nodes/k", None).await;
    assert_eq!(status, 404);
    let (status, _) = c.call(3, Method::PUT, "/v1/nodes/k?cas=bogus", body(1)).await;
    assert_eq!(status, 400);
}

/// `?cas=` on a pin, a lock, maintenance and every policy: applied at the resource's
/// revision only. Where it cannot apply (a heartbeat, a submission, any read) it is
/// refused, not ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_guards_pins_locks_maintenance_and_policies() {
    let c = Cluster::start(3).await;
    let setup: [(&str, Value); 5] = [
        ("/v1/regions/r1", json!({"cidrs": []})),
        ("/v1/nodes/n1", json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": 1})),
        ("/v1/sites/s1", json!({"region": "r1"})),
        ("/v1/zones/example.test", json!({"ns": [], "hostmaster": "ops@example.test"})),
        ("/v1/domains/www.example.test", json!({"sites": ["s1"]})),
    ];
    for (path, body) in setup {
        let (status, answer) = c.call(1, Method::PUT, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    // Each: the write, its body, and where GET shows the revision it is guarded by.
    let guarded: [(Method, &str, Value, &str); 9] = [
        (Method::PUT, "/v1/sites/s1/pin", json!({"node": "n1"}), "/v1/sites/s1"),
        (Method::DELETE, "/v1/sites/s1/pin", Value::Null, "/v1/sites/s1"),
        (Method::PUT, "/v1/domains/www.example.test/lock", json!({"site": "s1"}), "/v1/domains/www.example.test"),
        (Method::DELETE, "/v1/domains/www.example.test/lock", Value::Null, "/v1/domains/www.example.test"),
        (Method::PUT, "/v1/nodes/n1/maintenance", json!({"enabled": true}), "/v1/nodes/n1"),
        (Method::PUT, "/v1/policy/scoring", json!({"hysteresis": 0.2}), "/v1/policy/scoring"),
        (Method::PUT, "/v1/policy/sync", json!({"batch_size": 50}), "/v1/sync"),
        (Method::PUT, "/v1/policy/actions", json!({"max_active": 3}), "/v1/status"),
        (Method::PUT, "/v1/scheduler/config", json!({"w_cpu": 2.0}), "/v1/scheduler/config"),
    ];
    for (method, path, body, read_at) in guarded {
        let body = (!body.is_null()).then_some(body);
        let (_, before) = c.call(1, Method::GET, read_at, None).await;
        let rev = revision_in(&before).unwrap_or_else(|| panic!("no revision in GET {read_at}: {before}"));
        let stale = rev + 1000;
        let (status, answer) = c.call(2, method.clone(), &format!("{path}?cas={stale}"), body.clone()).await;
        assert_eq!((status, answer["error"].as_str()), (409, Some("cas_mismatch")), "{method} {path}: {answer}");
        let (_, unchanged) = c.call(1, Method::GET, read_at, None).await;
        assert_eq!(revision_in(&unchanged), Some(rev), "{method} {path} refused, yet {read_at} changed");
        let (status, answer) = c.call(3, method.clone(), &format!("{path}?cas={rev}"), body).await;
        assert_eq!(status, 200, "{method} {path}?cas={rev}: {answer}");
        assert!(answer["revision"].as_u64() > Some(rev), "{method} {path}: {answer}");
    }
    let refused: [(Method, &str, Option<Value>); 4] = [
        (Method::POST, "/v1/nodes/n1/heartbeat?cas=1", Some(json!({}))),
        (Method::POST, "/v1/actions?cas=1", Some(json!({"type": "noop", "target": "x"}))),
        (Method::GET, "/v1/nodes/n1?cas=1", None),
        (Method::GET, "/v1/dispatch?cas=0", None),
    ];
    for (method, path, body) in refused {
        let (status, answer) = c.call(1, method.clone(), path, body).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some("cas")), "{method} {path}: {answer}");
    }
}

/// The revision a GET answers: at the top, or in the one document it wraps.
fn revision_in(v: &Value) -> Option<u64> {
    v["revision"].as_u64().or_else(|| {
        let policy = if v["policy"].is_object() { &v["policy"] } else { &v["config"] };
        policy["revision"].as_u64()
    })
}

/// Concurrent writes of one resource each get their own revision (group commit puts them in
/// separate log entries), so a revision a client holds names exactly the version it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_resource_get_distinct_revisions() {
    let c = Cluster::start(1).await;
    let writes = futures::stream::iter(0..30u64)
        .map(|i| {
            let c = &c;
            async move {
                let body = json!({"cidrs": [format!("10.{i}.0.0/16")], "fallback": []});
                let (status, answer) = c.call(1, Method::PUT, "/v1/regions/apac", Some(body)).await;
                assert_eq!(status, 200, "{answer}");
                (answer["revision"].as_u64().unwrap(), i)
            }
        })
        .buffer_unordered(30)
        .collect::<Vec<_>>()
        .await;
    let revisions: BTreeMap<u64, u64> = writes.iter().copied().collect();
    assert_eq!(revisions.len(), 30, "two writes were answered the same revision: {writes:?}");
    // The last revision is the stored version, and it is the write that was answered it.
    let (last, i) = revisions.iter().next_back().unwrap();
    let (_, region) = c.call(1, Method::GET, "/v1/regions/apac", None).await;
    assert_eq!(region["revision"].as_u64(), Some(*last));
    assert_eq!(region["cidrs"], json!([format!("10.{i}.0.0/16")]));
}

/// With an admin token, writes and cluster calls need it; reads of resources do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_writes_and_cluster_calls() {
    let c = Cluster::start_with_env(3, &[("SWITCHBOARD_ADMIN_TOKEN", "s3cret")]).await;
    let url = |path: &str| format!("{}{}", c.peer(2).url(), path);
    let region = json!({"cidrs": [], "fallback": []});

    let r = c.http.put(url("/v1/regions/r1")).json(&region).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "unauthorized");
    let r = c.http.put(url("/v1/regions/r1")).bearer_auth("wrong").json(&region).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(c.http.get(url("/v1/cluster")).send().await.unwrap().status(), 401);

    let r = c.http.put(url("/v1/regions/r1")).bearer_auth("s3cret").json(&region).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.http.get(url("/v1/regions/r1")).send().await.unwrap().status(), 200, "reads need no token");
    assert_eq!(c.http.get(url("/v1/cluster")).bearer_auth("s3cret").send().await.unwrap().status(), 200);

    let out = crate::util::cli_with_token(&["region", "list", "--endpoint", &c.peer(3).url()], None);
    assert!(out.status.success(), "reads from the CLI need no token");
    let out = crate::util::cli_with_token(&["cluster", "status", "--endpoint", &c.peer(3).url()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = crate::util::cli_with_token(&["cluster", "status", "--endpoint", &c.peer(3).url()], Some("s3cret"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
