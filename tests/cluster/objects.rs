//! Object metadata on a live cluster: vector clocks and conflict strategies resolved the
//! same way on every peer, the per-region change feed (exactly once across acks,
//! reconnects and a leader kill), lazy sync, watch, placement, repairs and scheduling.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::util::{eventually, Cluster};

async fn regions(c: &Cluster, names: &[&str]) {
    for r in names {
        assert_eq!(c.put_region(1, r).await.0, 200);
    }
}

async fn put(c: &Cluster, peer: u64, id: &str, body: Value) -> Value {
    let (status, answer) = c.call(peer, Method::PUT, &format!("/v1/objects/{id}"), Some(body)).await;
    assert_eq!(status, 200, "PUT /v1/objects/{id}: {answer}");
    answer
}

fn write(region: &str, clock: Value, ts: u64, hash: &str) -> Value {
    json!({"region": region, "clock": clock, "timestamp_ms": ts, "size": 100, "hash": hash})
}

/// The object as every peer holds it, once they agree.
async fn agreed(c: &Cluster, id: &str) -> Value {
    c.agreed(&format!("/v1/objects/{id}")).await
}

fn hashes(object: &Value) -> Vec<&str> {
    object["versions"].as_array().unwrap().iter().map(|v| v["hash"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn clocks_and_strategies_resolve_the_same_on_every_peer() {
    let c = Cluster::start(3).await;
    regions(&c, &["eu", "sea", "us"]).await;

    // Dominating writes apply, dominated and equal ones are stale and change nothing.
    let a = put(&c, 1, "doc", write("sea", json!({"sea": 1}), 10, "h1")).await;
    assert_eq!(a["outcome"], "applied");
    let b = put(&c, 2, "doc", write("eu", json!({"sea": 1, "eu": 1}), 11, "h2")).await;
    assert_eq!((b["outcome"].as_str(), b["relation"].as_str()), (Some("applied"), Some("after")));
    let old = put(&c, 3, "doc", write("sea", json!({"sea": 1}), 99, "h3")).await;
    assert_eq!((old["outcome"].as_str(), old["relation"].as_str()), (Some("stale"), Some("before")));
    let doc = agreed(&c, "doc").await;
    assert_eq!((hashes(&doc), doc["revision"].as_u64()), (vec!["h2"], b["revision"].as_u64()));
    assert_eq!(doc["clock"], json!({"eu": 1, "sea": 1}));
    assert_eq!(doc["primary"], "sea");

    // last_writer_wins: the later timestamp wins, the loser is kept on record.
    put(&c, 1, "lww", write("sea", json!({"sea": 1}), 50, "sea-v")).await;
    let out = put(&c, 2, "lww", write("eu", json!({"eu": 1}), 40, "eu-v")).await;
    assert_eq!((out["outcome"].as_str(), out["settled"].as_str()), (Some("conflict"), Some("stored_won")));
    let lww = agreed(&c, "lww").await;
    assert_eq!(hashes(&lww), vec!["sea-v"]);
    assert_eq!(lww["lost"]["version"]["hash"], "eu-v");

    // merge: pointwise max clock, attributes merged key by key.
    let mut m1 = write("sea", json!({"sea": 2}), 10, "m1");
    m1["strategy"] = json!("merge");
    m1["attrs"] = json!({"owner": "sea", "colour": "red"});
    put(&c, 1, "merged", m1).await;
    let mut m2 = write("eu", json!({"eu": 1, "sea": 1}), 20, "m2");
    m2["attrs"] = json!({"colour": "blue", "tier": 1});
    assert_eq!(put(&c, 3, "merged", m2).await["settled"], "merged");
    let merged = agreed(&c, "merged").await;
    assert_eq!(merged["clock"], json!({"eu": 1, "sea": 2}));
    assert_eq!(merged["versions"][0]["attrs"], json!({"colour": "blue", "owner": "sea", "tier": 1}));

    // manual: both versions wait in /v1/conflicts until resolved.
    let mut x = write("sea", json!({"sea": 1}), 1, "x1");
    x["strategy"] = json!("manual");
    put(&c, 1, "manual", x).await;
    assert_eq!(put(&c, 2, "manual", write("us", json!({"us": 1}), 2, "x2")).await["settled"], "pending");
    let (_, conflicts) = c.call(3, Method::GET, "/v1/conflicts", None).await;
    let listed: Vec<&str> =
        conflicts["conflicts"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec!["manual"]);
    assert_eq!(hashes(&agreed(&c, "manual").await), vec!["x1", "x2"]);
    let merged_by_hand = json!({"version": {"region": "eu", "size": 7, "hash": "x3", "attrs": {"by": "ops"}}});
    let (status, r) = c.call(3, Method::POST, "/v1/conflicts/manual/resolve", Some(merged_by_hand)).await;
    assert_eq!(status, 200, "{r}");
    let manual = agreed(&c, "manual").await;
    assert_eq!((hashes(&manual), manual["conflict"].as_bool()), (vec!["x3"], Some(false)));
    assert_eq!(manual["clock"], json!({"sea": 1, "us": 1}));
    let (status, _) = c.call(1, Method::POST, "/v1/conflicts/manual/resolve", Some(json!({"pick": 0}))).await;
    assert_eq!(status, 409, "nothing left to resolve");

    // fork: siblings appear, and a write that saw them all collapses them.
    let mut f = write("sea", json!({"sea": 1}), 1, "f1");
    f["strategy"] = json!("fork");
    put(&c, 1, "fork", f).await;
    assert_eq!(put(&c, 2, "fork", write("eu", json!({"eu": 1}), 2, "f2")).await["settled"], "forked");
    assert_eq!(hashes(&agreed(&c, "fork").await), vec!["f1", "f2"]);
    let all = put(&c, 3, "fork", write("us", json!({"sea": 1, "eu": 1, "us": 1}), 3, "f3")).await;
    assert_eq!((all["outcome"].as_str(), all["versions"].as_u64()), (Some("applied"), Some(1)));
    assert_eq!(hashes(&agreed(&c, "fork").await), vec!["f3"]);

    // Bad input names the field and writes nothing.
    let leader = c.leader().await;
    let before = c.status(leader).await.unwrap()["last_log_index"].as_u64();
    for (body, field) in [
        (json!({"region": "sea", "clock": {"eu": 1}, "size": 1, "hash": "h"}), "clock.sea"),
        (json!({"region": "sea", "clock": {"sea": "1"}, "size": 1, "hash": "h"}), "clock.sea"),
        (json!({"region": "sea", "clock": {"sea": 1}, "size": -1, "hash": "h"}), "size"),
        (json!({"region": "sea", "clock": {"sea": 1}, "size": 1, "hash": "h", "strategy": "coin"}), "strategy"),
        (json!({"region": "sea", "clock": {"sea": 1}, "size": 1, "hash": "h", "replicas": 17}), "replicas"),
        (json!({"region": "sea", "clock": {"sea": 1}, "size": 1, "hash": "h", "extra": 1}), "extra"),
    ] {
        let (status, answer) = c.call(1, Method::PUT, "/v1/objects/bad", Some(body)).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{answer}");
    }
    let long = "x".repeat(257);
    let (status, answer) =
        c.call(1, Method::PUT, &format!("/v1/objects/{long}"), Some(write("sea", json!({"sea": 1}), 1, "h"))).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("id")));
    assert_eq!(c.status(leader).await.unwrap()["last_log_index"].as_u64(), before, "nothing reached the log");
    let (status, _) =
        c.call(1, Method::PUT, "/v1/objects/ghost", Some(write("mars", json!({"mars": 1}), 1, "h"))).await;
    assert_eq!(status, 400, "an unknown region is refused");
    assert_eq!(c.call(1, Method::GET, "/v1/objects/bad", None).await.0, 404);

    // Batch get.
    let (_, batch) = c.call(2, Method::GET, "/v1/objects?ids=doc,fork,nope", None).await;
    assert_eq!(batch["objects"].as_array().unwrap().len(), 2);
    assert_eq!(batch["missing"], json!(["nope"]));
}

/// Reads region `eu`'s feed like a region's sync agent: long polls from whichever peer
/// answers, remembers its cursor, acks what it applied.
struct Consumer {
    cursor: u64,
    seen: BTreeMap<u64, (String, u64)>,
    turn: u64,
}

impl Consumer {
    async fn poll(&mut self, c: &Cluster, wait: u64) -> usize {
        let running = c.running();
        self.turn += 1;
        let peer = running[self.turn as usize % running.len()];
        let path = format!("/v1/regions/eu/changes?since={}&wait={wait}", self.cursor);
        let Ok((status, body)) =
            tokio::time::timeout(Duration::from_secs(wait + 15), c.call(peer, Method::GET, &path, None)).await
        else {
            return 0;
        };
        if status != 200 {
            return 0;
        }
        let events = body["events"].as_array().unwrap();
        let mut ids = Vec::new();
        for e in events {
            let id = e["id"].as_u64().unwrap();
            let value = (e["object"].as_str().unwrap().to_string(), e["revision"].as_u64().unwrap());
            assert!(self.seen.insert(id, value.clone()).is_none(), "event {id} {value:?} delivered twice");
            ids.push(id);
        }
        self.cursor = body["cursor"].as_u64().unwrap();
        if !ids.is_empty() {
            // Acks may fail across the leader kill; unacked events stay in the feed, and the
            // cursor keeps them from being delivered twice.
            let _ = c.call(peer, Method::POST, "/v1/regions/eu/acks", Some(json!({ "events": ids }))).await;
        }
        events.len()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_change_feed_delivers_every_change_once_across_acks_reconnects_and_a_leader_kill() {
    let mut c = Cluster::start(3).await;
    regions(&c, &["eu", "sea"]).await;
    let mut consumer = Consumer { cursor: 0, seen: BTreeMap::new(), turn: 0 };
    let mut acknowledged: BTreeSet<(String, u64)> = BTreeSet::new();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for i in 0..60u64 {
        if i == 30 {
            let leader = c.leader().await;
            c.kill(leader);
        }
        let id = format!("o{}", i % 7);
        let body = write("sea", json!({"sea": i + 1}), i, &format!("h{i}"));
        for _ in 0..20 {
            let running = c.running();
            let peer = running[i as usize % running.len()];
            let url = format!("{}/v1/objects/{id}", c.peer(peer).url());
            if let Ok(r) = http.put(url).json(&body).send().await {
                if r.status() == 200 {
                    let answer: Value = r.json().await.unwrap();
                    if answer["outcome"] == "applied" {
                        acknowledged.insert((id.clone(), answer["revision"].as_u64().unwrap()));
                    }
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if i % 10 == 0 {
            consumer.poll(&c, 0).await;
        }
    }
    assert!(acknowledged.len() >= 40, "most writes must succeed: {}", acknowledged.len());
    // Drain, reconnecting to a different peer each time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        consumer.poll(&c, 1).await;
        let delivered: BTreeSet<(String, u64)> = consumer.seen.values().cloned().collect();
        let missing: Vec<_> = acknowledged.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "acknowledged writes never delivered: {missing:?}");
    }
    // Every event was acknowledged (retrying acks lost in the kill): nothing stays pending
    // and a fresh reader from the start gets nothing again.
    let ids: Vec<u64> = consumer.seen.keys().copied().collect();
    let (status, _) = c.call(c.running()[0], Method::POST, "/v1/regions/eu/acks", Some(json!({ "events": ids }))).await;
    assert_eq!(status, 200);
    let (_, again) = c.call(c.running()[1], Method::GET, "/v1/regions/eu/changes?since=0", None).await;
    assert_eq!(again["events"], json!([]), "acknowledged events are never delivered again");
    assert_eq!(again["pending"], 0);
    let (_, obj) = c.call(c.running()[0], Method::GET, "/v1/objects/o1", None).await;
    let eu = obj["locations"].as_array().unwrap().iter().find(|l| l["region"] == "eu").unwrap().clone();
    assert_eq!(eu["state"], "synced", "{obj}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lazy_changes_arrive_after_the_interval_and_on_demand_ones_when_pulled() {
    let c = Cluster::start(3).await;
    regions(&c, &["eu", "sea"]).await;
    let policy = json!({"default_sync": "lazy", "lazy_interval_ms": 300, "batch_size": 3});
    assert_eq!(c.call(1, Method::PUT, "/v1/policy/sync", Some(policy)).await.0, 200);
    put(&c, 2, "l1", write("sea", json!({"sea": 1}), 1, "a")).await;
    let (_, now) = c.call(2, Method::GET, "/v1/regions/eu/changes", None).await;
    assert_eq!((now["events"].as_array().unwrap().len(), now["held"].as_u64()), (0, Some(1)));
    // The long poll returns when the leader's timer releases the batch.
    let (_, later) = c.call(3, Method::GET, "/v1/regions/eu/changes?wait=10", None).await;
    assert_eq!(later["events"].as_array().unwrap().len(), 1, "{later}");
    // A full batch is released at once.
    for i in 2..=4 {
        put(&c, 1, &format!("l{i}"), write("sea", json!({"sea": 1}), 1, "b")).await;
    }
    let (_, full) = c.call(1, Method::GET, "/v1/regions/eu/changes?since=1", None).await;
    assert_eq!(full["events"].as_array().unwrap().len(), 3, "{full}");

    let mut cold = write("sea", json!({"sea": 1}), 1, "c");
    cold["sync"] = json!("on_demand");
    put(&c, 1, "cold", cold).await;
    let (_, none) = c.call(1, Method::GET, "/v1/regions/eu/changes?since=4", None).await;
    assert_eq!(none["events"], json!([]));
    let (status, pulled) = c.call(2, Method::POST, "/v1/regions/eu/pull", Some(json!({"objects": ["cold"]}))).await;
    assert_eq!((status, pulled["queued"].as_u64()), (200, Some(1)));
    let (_, got) = c.call(3, Method::GET, "/v1/regions/eu/changes?since=4", None).await;
    assert_eq!(got["events"][0]["object"], "cold");
    let (status, _) = c.call(2, Method::POST, "/v1/regions/eu/pull", Some(json!({"objects": ["nope"]}))).await;
    assert_eq!(status, 400);

    // Region heartbeats and the active list.
    let beat = json!({"state": "healthy", "sync_lag": 3, "storage_used": 1000, "load_level": 0.4});
    assert_eq!(c.call(1, Method::POST, "/v1/regions/eu/heartbeat", Some(beat)).await.0, 200);
    let (_, active) = c.call(2, Method::GET, "/v1/sync?active", None).await;
    let names: Vec<&str> =
        active["regions"].as_array().unwrap().iter().map(|r| r["region"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["eu"]);
    let bad = json!({"state": "sleepy"});
    assert_eq!(c.call(1, Method::POST, "/v1/regions/eu/heartbeat", Some(bad)).await.1["field"], "state");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_changes_and_sends_a_laggard_to_reread() {
    let c = Cluster::start_with_env(3, &[("SWITCHBOARD_HTTP_WATCH_HISTORY", "20")]).await;
    let (_, status) = c.call(1, Method::GET, "/v1/cluster", None).await;
    let from = status["applied_index"].as_u64().unwrap();
    // A watcher waiting on one peer sees a write made through another.
    let watcher = {
        let url = format!("{}/v1/watch?since={from}&wait=10&topics=region", c.peer(2).url());
        tokio::spawn(async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() })
    };
    let (_, put) = c.put_region(3, "eu").await;
    let seen = watcher.await.unwrap();
    assert_eq!(seen["changes"][0]["topic"], "region", "{seen}");
    assert_eq!(seen["changes"][0]["key"], "eu");
    assert_eq!(seen["changes"][0]["revision"], put["revision"]);
    assert!(seen["revision"].as_u64().unwrap() >= put["revision"].as_u64().unwrap());
    // More changes than the history keeps: a watcher from before is told to re-read.
    for i in 0..25 {
        assert_eq!(c.put_region(1, &format!("r{i}")).await.0, 200);
    }
    let (status, body) = c.call(2, Method::GET, &format!("/v1/watch?since={from}"), None).await;
    assert_eq!((status, body["error"].as_str()), (410, Some("compacted")), "{body}");
    let (status, body) = c.call(2, Method::GET, "/v1/watch?topics=nonsense", None).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("topics")));
}

#[tokio::test(flavor = "multi_thread")]
async fn placement_repairs_and_scheduling_follow_the_healthy_nodes() {
    let c = Cluster::start(3).await;
    regions(&c, &["r1"]).await;
    for s in ["s1", "s2", "s3"] {
        assert_eq!(c.call(1, Method::PUT, &format!("/v1/sites/{s}"), Some(json!({"region": "r1"}))).await.0, 200);
    }
    for (i, n) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
        let body = json!({"ip": format!("192.0.2.{}", i + 1), "region": "r1", "site": format!("s{}", i % 3 + 1), "capacity": 10});
        assert_eq!(c.call(1, Method::PUT, &format!("/v1/nodes/{n}"), Some(body)).await.0, 200);
    }
    let beat = |cpu: f64, ram: f64, latency: f64| json!({"cpu": cpu, "load": 0.1, "latency_ms": latency, "error_rate": 0.0, "ram_free_mb": ram, "gpu_free": 0.0, "io_pressure": 0.1});
    let metrics = [
        ("n1", beat(0.9, 8192.0, 2.0)),
        ("n2", beat(0.1, 8192.0, 3.0)),
        ("n3", beat(0.1, 256.0, 1.0)),
        ("n4", beat(0.2, 4096.0, 50.0)),
    ];
    eventually(Duration::from_secs(15), "every node to be up", || async {
        for (n, m) in &metrics {
            c.call(2, Method::POST, &format!("/v1/nodes/{n}/heartbeat"), Some(m.clone())).await;
        }
        let (_, nodes) = c.call(1, Method::GET, "/v1/nodes", None).await;
        nodes["nodes"].as_array().unwrap().iter().all(|n| n["health"] == "up").then_some(())
    })
    .await;

    let (_, placed) = c.call(3, Method::GET, "/v1/placement/abc123?rf=3", None).await;
    let nodes: Vec<String> =
        placed["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    assert_eq!(nodes.len(), 3);
    let (_, again) = c.call(1, Method::GET, "/v1/placement/abc123?rf=3", None).await;
    assert_eq!(placed["nodes"], again["nodes"], "placement is the same on every peer");
    assert_eq!(c.call(1, Method::GET, "/v1/placement/abc123?rf=0", None).await.0, 400);

    // Scheduling: n1 lacks CPU, n3 RAM, n4 is too far; n2 it is.
    let req = json!({"cpu_req": 0.2, "ram_req_mb": 1024.0, "max_latency_ms": 10.0});
    let (status, chosen) = c.call(3, Method::POST, "/v1/schedule", Some(req)).await;
    assert_eq!((status, chosen["node"].as_str()), (200, Some("n2")), "{chosen}");
    let (status, _) = c.call(3, Method::POST, "/v1/schedule", Some(json!({"ram_req_mb": 1e6}))).await;
    assert_eq!(status, 503);
    assert_eq!(c.call(1, Method::PUT, "/v1/scheduler/config", Some(json!({"w_ram": -1}))).await.1["field"], "w_ram");

    // Replicas: an object wanting 2 copies with one missing is listed for repair.
    let mut body = write("r1", json!({"r1": 1}), 1, "abc123");
    body["replicas"] = json!(2);
    put(&c, 1, "blob", body).await;
    for (node, state) in [(&nodes[0], "healthy"), (&nodes[1], "missing")] {
        let r = c.call(2, Method::POST, "/v1/objects/blob/replicas", Some(json!({"node": node, "state": state}))).await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    let (_, repairs) = c.call(3, Method::GET, "/v1/repairs", None).await;
    let blob = &repairs["repairs"][0];
    assert_eq!((blob["id"].as_str(), blob["missing"].as_u64()), (Some("blob"), Some(1)), "{repairs}");
    assert_eq!(blob["targets"].as_array().unwrap().len(), 1);
    assert_eq!(blob["targets"][0].as_str(), Some(nodes[2].as_str()), "the next node by placement");
    c.call(2, Method::POST, "/v1/objects/blob/replicas", Some(json!({"node": nodes[1], "state": "healthy"}))).await;
    let (_, repairs) = c.call(3, Method::GET, "/v1/repairs", None).await;
    assert_eq!(repairs["repairs"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_writes_objects_resolves_conflicts_and_reads_a_feed() {
    use crate::util::cli;
    let c = Cluster::start(1).await;
    regions(&c, &["eu", "sea"]).await;
    let e = c.peer(1).url();
    let run = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--endpoint", &e]);
        let out = cli(&all);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = ["object", "put", "doc", "--region", "sea", "--clock", "sea=1", "--size", "5", "--hash", "h1"];
    let a = run(&[&first[..], &["--strategy", "manual", "--attr", "tier=1", "--attr", "owner=ops"]].concat());
    assert_eq!(a["outcome"], "applied");
    let b = run(&["object", "put", "doc", "--region", "eu", "--clock", "eu=1", "--size", "6", "--hash", "h2"]);
    assert_eq!(b["settled"], "pending");
    assert_eq!(run(&["object", "conflicts"])["conflicts"][0]["id"], "doc");
    run(&["object", "resolve", "doc", "--pick", "1"]);
    let doc = run(&["object", "get", "doc"]);
    assert_eq!(doc["versions"][0]["hash"], "h2");
    let feed = run(&["sync", "changes", "eu"]);
    assert_eq!(feed["events"][0]["object"], "doc");
    let id = feed["events"][0]["id"].to_string();
    assert_eq!(run(&["sync", "ack", "eu", &id])["acked"], 1);
    assert_eq!(run(&["object", "placement", "doc", "--rf", "2"])["rf"], 2);
    let bad = cli(&[
        "object",
        "put",
        "x",
        "--region",
        "sea",
        "--clock",
        "sea",
        "--size",
        "1",
        "--hash",
        "h",
        "--endpoint",
        &e,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--clock"), "{}", String::from_utf8_lossy(&bad.stderr));
}
