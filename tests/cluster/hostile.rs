//! Hostile input against every route of a real cluster: nothing a client sends may stop
//! it, answer 5xx, or write anything when it is refused.
//!
//! Each write route has a valid template body. From it the battery derives broken JSON,
//! bodies that are not objects, an unknown field, every field with the wrong type, every
//! string field over-long, and every number field at the extremes (0, -1, 2^64 - 1, 2^64,
//! 1e308, a fraction). Refusals must be 4xx naming the field (or `body`), and must leave the
//! replicated state exactly as it was. Extremes may be accepted where they are in range, but
//! never answer 5xx. Afterwards every peer is healthy, takes writes, and restarts into ready.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::util::{eventually, Cluster};

/// A write route with a body the peer accepts.
struct Route {
    method: Method,
    path: &'static str,
    body: Value,
}

fn route(method: Method, path: &'static str, body: Value) -> Route {
    Route { method, path, body }
}

/// Every route that takes a JSON body, with a valid body. Membership routes are excluded:
/// a valid body there changes the cluster.
fn write_routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::PUT, "/v1/regions/r2", json!({"cidrs": ["10.9.0.0/16"], "fallback": ["r1"]})),
        route(M::PUT, "/v1/nodes/n2", json!({"ip": "192.0.2.2", "region": "r1", "site": "s1", "capacity": 10})),
        route(
            M::POST,
            "/v1/nodes/n1/heartbeat",
            json!({"cpu": 0.1, "load": 0.2, "latency_ms": 10.0, "error_rate": 0.0, "bandwidth_mbps": 100.0,
                   "ram_free_mb": 1000.0, "gpu_free": 0.5, "io_pressure": 0.1}),
        ),
        route(M::PUT, "/v1/nodes/n1/maintenance", json!({"enabled": false, "reason": "disk swap"})),
        route(M::PUT, "/v1/zones/example.org", json!({"ns": ["ns1.example.org"], "hostmaster": "h@example.org"})),
        route(M::PUT, "/v1/sites/s2", json!({"region": "r1"})),
        route(M::PUT, "/v1/sites/s1/pin", json!({"node": "n1"})),
        route(M::PUT, "/v1/domains/www.example.com", json!({"sites": ["s1"], "ttl": 30})),
        route(M::PUT, "/v1/domains/www.example.com/lock", json!({"site": "s1"})),
        route(
            M::PUT,
            "/v1/policy/scoring",
            json!({"latency": 0.6, "load": 0.4, "error_rate": 0.0, "cpu": 0.0, "hysteresis": 0.1, "down_after_ms": 1500}),
        ),
        route(
            M::PUT,
            "/v1/objects/o2",
            json!({"region": "r1", "clock": {"r1": 1}, "timestamp_ms": 5, "size": 10, "hash": "h2",
                   "attrs": {"k": "v"}, "replicas": 2}),
        ),
        route(M::POST, "/v1/objects/o1/replicas", json!({"node": "n1", "state": "healthy"})),
        route(M::POST, "/v1/conflicts/o1/resolve", json!({"pick": 0})),
        route(
            M::POST,
            "/v1/schedule",
            json!({"cpu_req": 0.1, "ram_req_mb": 100.0, "gpu_req": 0.0, "max_latency_ms": 50.0, "io_tolerance": 0.5}),
        ),
        route(
            M::PUT,
            "/v1/scheduler/config",
            json!({"w_cpu": 1.0, "w_ram": 1.0, "w_gpu": 1.0, "w_latency": 1.0, "w_io": 1.0}),
        ),
        route(M::POST, "/v1/regions/r3/acks", json!({"events": [1], "upto": 1})),
        route(M::POST, "/v1/regions/r1/pull", json!({"objects": ["o1"]})),
        route(
            M::POST,
            "/v1/regions/r1/heartbeat",
            json!({"state": "healthy", "sync_lag": 1, "storage_used": 10, "load_level": 0.5}),
        ),
        route(
            M::PUT,
            "/v1/policy/sync",
            json!({"default_replicas": 3, "batch_size": 100, "lazy_interval_ms": 5000, "max_pending": 1000}),
        ),
        route(
            M::POST,
            "/v1/actions",
            json!({"type": "t1", "target": "x", "source": "ai_driven", "priority": 3, "confidence": 0.9,
                   "parameters": {"p": 1}}),
        ),
        route(M::POST, "/v1/actions/claim", json!({"types": ["t1"], "worker": "w1", "lease_s": 30})),
        route(M::POST, "/v1/actions/1/complete", json!({"worker": "w1", "result": "done", "attempt": 1})),
        route(M::POST, "/v1/actions/1/fail", json!({"worker": "w1", "error": "boom", "attempt": 1})),
        route(
            M::POST,
            "/v1/anomalies",
            json!({"timestamp": "2026-01-01T00:00:00Z", "type": "latency_spike", "severity": "high",
                   "confidence_score": 0.9, "details": {"node": "n1"}, "recommended_action": "drain_node",
                   "source": "ai_driven"}),
        ),
        route(
            M::POST,
            "/v1/alertmanager",
            json!({"version": "4", "alerts": [{"status": "firing", "fingerprint": "f1",
                   "labels": {"alertname": "NodeDown", "node": "n1"}, "annotations": {}}]}),
        ),
        route(
            M::PUT,
            "/v1/policy/actions",
            json!({"confidence_threshold": 0.7, "max_active": 10, "max_attempts": 3, "retry_backoff_ms": 5000,
                   "rate_limit": 5, "rate_window_ms": 60000, "exclusive": [["a", "b"]]}),
        ),
    ]
}

/// GET routes with hostile query strings.
const HOSTILE_QUERIES: &[&str] = &[
    "/v1/dispatch?limit=18446744073709551615",
    "/v1/dispatch?limit=-1&next=%ff%fe",
    "/v1/resolve?name=&client=",
    "/v1/resolve?name=www.example.com&client=999.1.1.1",
    "/v1/resolve?name=www.example.com&client=10.0.0.1&region=%00",
    "/v1/watch?since=18446744073709551615&wait=0",
    "/v1/watch?since=-5&wait=abc",
    "/v1/regions/r1/changes?after=18446744073709551615&wait=0&limit=0",
    "/v1/regions/r1/changes?after=x",
    "/v1/objects?ids=a,b,%2F&limit=18446744073709551616",
    "/v1/objects?after=zzzz&limit=0",
    "/v1/placement/h1?rf=18446744073709551615",
    "/v1/placement/h1?rf=0",
    "/v1/placement/%2e%2e?rf=1",
    "/v1/actions?status=bogus",
    "/v1/actions/18446744073709551615",
    "/v1/actions/-1",
    "/v1/anomalies/99999999999999999999999",
    "/v1/repairs?limit=abc",
    "/v1/nodes?stale=maybe&cas=x",
    "/v1/regions/r1?cas=18446744073709551616",
    "/v1/domains/%00%01",
    "/v1/sync?active=%",
];

/// A wrong-typed replacement for a value.
fn wrong_type(v: &Value) -> Value {
    match v {
        Value::String(_) => json!(12345),
        Value::Number(_) => json!("not a number"),
        Value::Bool(_) => json!("yes"),
        Value::Array(_) => json!({"not": "a list"}),
        Value::Object(_) => json!(["not", "an", "object"]),
        Value::Null => json!([]),
    }
}

/// Extreme numbers, written as JSON text (2^64 does not fit a u64; 1e308 is near f64::MAX).
const EXTREMES: &[&str] =
    &["0", "-1", "18446744073709551615", "18446744073709551616", "1e308", "-1e308", "0.5", "1e-320"];

/// The replicated state as the API lists it: equal before and after a refused battery.
async fn world(c: &Cluster, id: u64) -> Value {
    let mut out = serde_json::Map::new();
    for path in [
        "/v1/regions",
        "/v1/nodes",
        "/v1/sites",
        "/v1/zones",
        "/v1/domains",
        "/v1/objects",
        "/v1/actions",
        "/v1/anomalies",
        "/v1/policy/scoring",
        "/v1/scheduler/config",
        "/v1/sync",
    ] {
        let (status, body) = c.call(id, Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        out.insert(path.into(), body);
    }
    Value::Object(out)
}

/// Sends `body` as raw text; returns the status and the JSON answer (or the text).
async fn send_raw(c: &Cluster, id: u64, method: &Method, path: &str, body: String) -> (u16, Value) {
    let body_text = body.clone();
    let url = format!("{}{}", c.peer(id).url(), path);
    let r = c
        .http
        .request(method.clone(), url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("{method} {path} with {:?}: the peer did not answer: {e:?}", short(&Value::String(body_text)))
        });
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The start of an answer, for a failure message.
fn short(answer: &Value) -> String {
    answer.to_string().chars().take(300).collect()
}

/// Asserts a refusal: 4xx, naming a field that starts with `field`.
fn assert_refused(what: &str, status: u16, answer: &Value, field: &str) {
    let text = short(answer);
    assert!((400..500).contains(&status) && status != 404, "{what}: expected a 4xx refusal, got {status} {text}");
    if status == 400 {
        let named = answer["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{what}: the 400 names another field: {text}");
    }
}

async fn setup(c: &Cluster) {
    let calls = [
        ("/v1/regions/r1", json!({"cidrs": ["10.0.0.0/8"], "fallback": []})),
        // A second region, so that writes from r1 fill r3's change feed.
        ("/v1/regions/r3", json!({"cidrs": ["10.3.0.0/16"], "fallback": []})),
        ("/v1/sites/s1", json!({"region": "r1"})),
        ("/v1/nodes/n1", json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": 10})),
        ("/v1/zones/example.com", json!({"ns": [], "hostmaster": "h@example.com"})),
        ("/v1/domains/www.example.com", json!({"sites": ["s1"], "ttl": 20})),
        ("/v1/objects/o1", json!({"region": "r1", "clock": {"r1": 1}, "size": 1, "hash": "h1"})),
    ];
    for (path, body) in calls {
        let (status, answer) = c.call(1, Method::PUT, path, Some(body)).await;
        assert_eq!(status, 200, "setup PUT {path}: {answer}");
    }
}

/// The battery of refusals: every one 4xx, naming its field, and nothing written.
async fn refusals(c: &Cluster) {
    let before = world(c, 1).await;
    let peers = c.running();
    let mut sent = 0usize;
    for (i, r) in write_routes().iter().enumerate() {
        let id = peers[i % peers.len()];
        let what = |case: &str| format!("{} {} ({case}) via peer {id}", r.method, r.path);
        for raw in ["{", "[1]", "\"text\"", "null", "{\"a\":", "", "{\"\u{0}\": 1}"] {
            let (status, answer) = send_raw(c, id, &r.method, r.path, raw.into()).await;
            assert_refused(&what(&format!("body {raw:?}")), status, &answer, "");
            sent += 1;
        }
        // Alertmanager's payload has fields of its own (receiver, groupLabels, ...) that
        // the webhook reads past; every other route refuses a field it does not know.
        if r.path != "/v1/alertmanager" {
            let mut unknown = r.body.clone();
            unknown["zz_unknown"] = json!(1);
            let (status, answer) = send_raw(c, id, &r.method, r.path, unknown.to_string()).await;
            assert_refused(&what("unknown field"), status, &answer, "zz_unknown");
        }
        // Refused from its Content-Length: the peer may answer 413 and close before the
        // client has sent it all, which the client sees as a reset. Either is a refusal.
        let huge = format!("{{\"x\": \"{}\"}}", "x".repeat(200_000));
        let url = format!("{}{}", c.peer(id).url(), r.path);
        // A client of its own: the peer closes that connection, which a pooled client
        // could pick up again for the next request.
        let once = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        if let Ok(answer) = once.request(r.method.clone(), url).body(huge).send().await {
            assert_eq!(answer.status().as_u16(), 413, "{}", what("body over the limit"));
        }
        sent += 2;

        let fields: Vec<String> = r.body.as_object().unwrap().keys().cloned().collect();
        for f in fields {
            let mut bad = r.body.clone();
            bad[&f] = wrong_type(&r.body[&f]);
            let (status, answer) = send_raw(c, id, &r.method, r.path, bad.to_string()).await;
            assert_refused(&what(&format!("{f} of the wrong type")), status, &answer, &f);
            sent += 1;
            if r.body[&f].is_string() && !["state", "severity", "source", "timestamp"].contains(&f.as_str()) {
                let mut long = r.body.clone();
                long[&f] = json!("a".repeat(5_000));
                let (status, answer) = send_raw(c, id, &r.method, r.path, long.to_string()).await;
                assert_refused(&what(&format!("{f} over-long")), status, &answer, &f);
                sent += 1;
            }
        }
    }
    assert!(sent > 300, "the battery sent only {sent} requests");
    // The refusals wrote nothing, on any peer (linearizable reads on each).
    for id in c.running() {
        assert_eq!(world(c, id).await, before, "a refused request changed the state (seen on peer {id})");
    }
}

/// Extreme numbers in every numeric field, and hostile query strings: anything but 5xx.
async fn extremes(c: &Cluster) {
    let peers = c.running();
    for (i, r) in write_routes().iter().enumerate() {
        let id = peers[i % peers.len()];
        let fields: Vec<String> = r.body.as_object().unwrap().keys().cloned().collect();
        for f in fields.iter().filter(|f| r.body[f.as_str()].is_number()) {
            for x in EXTREMES {
                let mut text = r.body.clone();
                text[f.as_str()] = json!("@@");
                let body = text.to_string().replace("\"@@\"", x);
                let (status, answer) = send_raw(c, id, &r.method, r.path, body).await;
                let what = format!("{} {} with {f} = {x}", r.method, r.path);
                // A schedule nobody can meet is answered `503 no_capacity`, as documented.
                let no_capacity = status == 503 && answer["error"] == "no_capacity";
                assert!(status < 500 || no_capacity, "{what}: {status} {answer}");
                if status == 400 {
                    assert!(answer["field"].is_string(), "{what}: the 400 names no field: {answer}");
                }
            }
        }
    }
    for (i, path) in HOSTILE_QUERIES.iter().enumerate() {
        let id = peers[i % peers.len()];
        let url = format!("{}{}", c.peer(id).url(), path);
        let r = c.http.get(url).send().await.unwrap_or_else(|e| panic!("GET {path}: no answer: {e}"));
        let status = r.status().as_u16();
        assert!(status < 500, "GET {path}: {status} {}", r.text().await.unwrap_or_default());
    }
}

/// After the battery: every peer healthy, writes go on through each, and every peer
/// restarts into ready (no log entry it cannot apply).
async fn still_standing(c: &mut Cluster) {
    for id in c.running() {
        let (status, body) = c.call(id, Method::GET, "/health", None).await;
        assert_eq!(status, 200, "peer {id} /health: {body}");
        let (status, body) = c.put_region(id, &format!("after-{id}")).await;
        assert_eq!(status, 200, "a write through peer {id} after the battery: {body}");
    }
    for id in c.running() {
        c.kill(id);
    }
    for id in [1, 2, 3] {
        c.restart(id).await;
    }
    c.await_ready().await;
    let c = &*c;
    eventually(Duration::from_secs(20), "a write after every peer restarted", || async {
        (c.put_region(2, "after-restart").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_stops_the_cluster_writes_when_refused_or_answers_5xx() {
    let mut c = Cluster::start(3).await;
    setup(&c).await;
    refusals(&c).await;
    extremes(&c).await;
    still_standing(&mut c).await;
}
