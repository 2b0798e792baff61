//! The remediation queue on a live cluster: conflict rules decided the same on every
//! peer, dedup, the rate limit, built-in actions that move DNS, worker leases that expire,
//! Alertmanager's webhook, and a leader kill that loses no queued action.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::dns::short;
use crate::util::{eventually, Cluster};

async fn submit(c: &Cluster, peer: u64, body: Value) -> Value {
    let (status, answer) = c.call(peer, Method::POST, "/v1/actions", Some(body.clone())).await;
    assert_eq!(status, 202, "POST /v1/actions {body}: {answer}");
    answer
}

fn action(kind: &str, target: &str, source: &str, priority: u64, confidence: f64) -> Value {
    json!({"type": kind, "target": target, "source": source, "priority": priority, "confidence": confidence})
}

/// The action as every running peer holds it, once they agree.
async fn status_everywhere(c: &Cluster, id: u64) -> Value {
    c.agreed(&format!("/v1/actions/{id}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicts_dedup_and_the_rate_limit_decide_the_same_everywhere() {
    let c = Cluster::start(3).await;
    // Rule 1: deterministic beats AI-driven, whatever the priority.
    let ai = submit(&c, 1, action("restart_service", "web-1", "ai_driven", 1, 0.99)).await;
    let det = submit(&c, 2, action("reboot", "web-1", "deterministic", 4, 1.0)).await;
    assert_eq!(det["conflicts"][0]["rule"], "deterministic_over_ai");
    let loser = status_everywhere(&c, ai["action_id"].as_u64().unwrap()).await;
    assert_eq!(loser["status"], "superseded");
    assert_eq!(loser["superseded_by"], json!({"action_id": det["action_id"], "rule": "deterministic_over_ai"}));
    // Rule 2: the higher priority wins (1 is highest).
    let urgent = submit(&c, 3, action("scale_up", "api-1", "ai_driven", 1, 0.9)).await;
    let later = submit(&c, 1, action("scale_down", "api-1", "ai_driven", 3, 0.9)).await;
    assert_eq!(
        (later["status"].as_str(), later["conflicts"][0]["rule"].as_str()),
        (Some("superseded"), Some("higher_priority"))
    );
    assert_eq!(status_everywhere(&c, urgent["action_id"].as_u64().unwrap()).await["status"], "queued");
    // Rule 3: an AI action under the confidence threshold loses.
    let sure = submit(&c, 2, action("clear_cache", "cdn-1", "ai_driven", 2, 0.9)).await;
    let unsure = submit(&c, 3, action("purge", "cdn-1", "ai_driven", 2, 0.4)).await;
    assert_eq!(
        (unsure["status"].as_str(), unsure["conflicts"][0]["rule"].as_str()),
        (Some("superseded"), Some("low_confidence"))
    );
    // A tie keeps both, in order.
    let tie = submit(&c, 1, action("warm", "cdn-1", "ai_driven", 2, 0.8)).await;
    assert_eq!((tie["status"].as_str(), tie["conflicts"][0]["loser"].clone()), (Some("queued"), Value::Null));
    assert!(tie["position_in_queue"].as_u64() > sure["position_in_queue"].as_u64());
    // Mutually exclusive types conflict across targets.
    let a = submit(&c, 1, action("node_remediation", "n9", "deterministic", 2, 1.0)).await;
    let b = submit(&c, 2, action("resource_scaling", "deploy-z", "deterministic", 3, 1.0)).await;
    assert_eq!(
        (b["status"].as_str(), b["conflicts"][0]["conflict_type"].as_str()),
        (Some("superseded"), Some("exclusive_types"))
    );
    assert_eq!(status_everywhere(&c, a["action_id"].as_u64().unwrap()).await["status"], "queued");

    // Dedup: the same type, target and parameters return the open action's id.
    let mut p = action("rotate_logs", "db-1", "deterministic", 3, 1.0);
    p["parameters"] = json!({"keep": 3});
    let first = submit(&c, 1, p.clone()).await;
    let again = submit(&c, 3, p).await;
    assert_eq!((again["action_id"].clone(), again["duplicate"].as_bool()), (first["action_id"].clone(), Some(true)));

    // The rate limit per target: 429 with Retry-After, nothing queued.
    let policy = json!({"rate_limit": 2, "rate_window_ms": 60_000});
    assert_eq!(c.call(1, Method::PUT, "/v1/policy/actions", Some(policy)).await.0, 200);
    submit(&c, 1, action("a1", "hot", "deterministic", 3, 1.0)).await;
    submit(&c, 2, action("a2", "hot", "deterministic", 3, 1.0)).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/actions", c.peer(3).url()))
        .json(&action("a3", "hot", "deterministic", 3, 1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let (_, list) = c.call(1, Method::GET, "/v1/actions", None).await;
    assert!(!list["actions"].as_array().unwrap().iter().any(|a| a["type"] == "a3"));

    // Bad input names the field.
    for (body, field) in [
        (json!({"type": "x", "target": "t", "priority": 0}), "priority"),
        (json!({"type": "x", "target": "t", "confidence": 1.5}), "confidence"),
        (json!({"type": "x", "target": "t", "source": "oracle"}), "source"),
        (json!({"target": "t"}), "type"),
    ] {
        let (status, answer) = c.call(2, Method::POST, "/v1/actions", Some(body)).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{answer}");
    }
    let (_, st) = c.call(3, Method::GET, "/v1/status", None).await;
    assert_eq!(st["engine_status"], "operational");
    assert!(st["conflicts_detected"].as_u64().unwrap() >= 5, "{st}");
    let (_, metrics) = c.call(1, Method::GET, "/metrics", None).await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("coordination_actions_total{source=\"ai_driven\",type=\"restart_service\"} 1"), "{text}");
    assert!(text.contains("coordination_conflicts_total{conflict_type=\"same_target\"}"));
    assert!(text.contains("coordination_active_actions"));
    assert!(text.contains("coordination_resolution_time_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_action_whose_worker_vanishes_is_retried_then_fails() {
    let c = Cluster::start(3).await;
    let policy = json!({"max_attempts": 2, "retry_backoff_ms": 200});
    assert_eq!(c.call(1, Method::PUT, "/v1/policy/actions", Some(policy)).await.0, 200);
    let a = submit(&c, 1, action("reindex", "search-1", "deterministic", 2, 1.0)).await;
    let id = a["action_id"].as_u64().unwrap();
    let claim = json!({"types": ["reindex"], "worker": "w1", "lease_s": 1});
    let (_, got) = c.call(2, Method::POST, "/v1/actions/claim", Some(claim)).await;
    assert_eq!(got["action"]["action_id"].as_u64(), Some(id), "{got}");
    assert_eq!(got["action"]["status"], "running");
    // Nobody else gets it while the lease holds.
    let (_, none) =
        c.call(3, Method::POST, "/v1/actions/claim", Some(json!({"types": ["reindex"], "worker": "w2"}))).await;
    assert_eq!(none["action"], Value::Null);
    // w1 never reports: after the lease and the backoff, w2 gets it.
    let second = eventually(Duration::from_secs(10), "the action to be handed out again", || async {
        let (_, got) = c
            .call(
                3,
                Method::POST,
                "/v1/actions/claim",
                Some(json!({"types": ["reindex"], "worker": "w2", "lease_s": 1})),
            )
            .await;
        got["action"]["action_id"].as_u64().filter(|x| *x == id).map(|_| got)
    })
    .await;
    assert_eq!(second["action"]["attempts"], 2);
    // w2 naming the attempt it no longer holds (the first) is refused too.
    let stale = json!({"worker": "w2", "attempt": 1});
    assert_eq!(c.call(2, Method::POST, &format!("/v1/actions/{id}/complete"), Some(stale)).await.0, 409);
    // w1 reporting late is refused; the action stays w2's.
    let (status, _) =
        c.call(1, Method::POST, &format!("/v1/actions/{id}/complete"), Some(json!({"worker": "w1"}))).await;
    assert_eq!(status, 409);
    // w2 vanishes too: after max_attempts the action is failed, on every peer.
    let failed = eventually(Duration::from_secs(10), "the action to fail after its attempts", || async {
        let a = status_everywhere(&c, id).await;
        (a["status"] == "failed").then_some(a)
    })
    .await;
    assert!(failed["message"].as_str().unwrap().contains("gave up after 2 attempts"), "{failed}");

    // A worker that reports success completes its action.
    submit(&c, 2, action("compact", "db-2", "deterministic", 3, 1.0)).await;
    let (_, got) =
        c.call(1, Method::POST, "/v1/actions/claim", Some(json!({"types": ["compact"], "worker": "w3"}))).await;
    let cid = got["action"]["action_id"].as_u64().unwrap();
    let (status, done) = c
        .call(2, Method::POST, &format!("/v1/actions/{cid}/complete"), Some(json!({"worker": "w3", "result": "ok"})))
        .await;
    assert_eq!((status, done["action"]["status"].as_str()), (200, Some("completed")));
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_node_moves_dns_off_the_node_on_every_peer() {
    let c = Cluster::start(3).await;
    for (path, body) in [
        ("/v1/policy/scoring", json!({"down_after_ms": 600_000})),
        ("/v1/regions/sea", json!({"cidrs": ["10.20.0.0/16"], "fallback": []})),
        ("/v1/zones/example.com", json!({})),
        ("/v1/sites/sg-1", json!({"region": "sea"})),
        ("/v1/nodes/sg-a", json!({"ip": "192.0.2.1", "region": "sea", "site": "sg-1", "capacity": 10})),
        ("/v1/nodes/sg-b", json!({"ip": "192.0.2.2", "region": "sea", "site": "sg-1", "capacity": 10})),
        ("/v1/domains/video.example.com", json!({"sites": ["sg-1"]})),
    ] {
        assert_eq!(c.call(1, Method::PUT, path, Some(body)).await.0, 200, "{path}");
    }
    for (node, latency) in [("sg-a", 5), ("sg-b", 20)] {
        let beat = json!({"cpu": 0.1, "load": 0.1, "latency_ms": latency, "error_rate": 0});
        assert_eq!(c.call(2, Method::POST, &format!("/v1/nodes/{node}/heartbeat"), Some(beat)).await.0, 202);
    }
    let every_peer_answers = |ip: &'static str| {
        let c = &c;
        async move {
            eventually(Duration::from_secs(10), &format!("every peer to answer {ip}"), || async {
                c.running()
                    .iter()
                    .all(|p| short(&c.peer(*p).dns_addr, &["+subnet=10.20.0.1/32", "video.example.com", "A"]) == ip)
                    .then_some(())
            })
            .await
        }
    };
    every_peer_answers("192.0.2.1").await;
    let drain = json!({"type": "drain_node", "target": "sg-a", "source": "deterministic", "priority": 1, "parameters": {"reason": "disk errors"}});
    let id = submit(&c, 3, drain).await["action_id"].as_u64().unwrap();
    every_peer_answers("192.0.2.2").await;
    assert_eq!(status_everywhere(&c, id).await["status"], "completed");
    let (_, node) = c.call(1, Method::GET, "/v1/nodes/sg-a", None).await;
    assert_eq!((node["health"].as_str(), node["maintenance"].as_str()), (Some("maintenance"), Some("disk errors")));
    // restore_node brings it back.
    submit(&c, 2, json!({"type": "restore_node", "target": "sg-a", "priority": 1})).await;
    every_peer_answers("192.0.2.1").await;
    // A built-in action on something that does not exist fails with the reason.
    let bad = submit(&c, 1, json!({"type": "drain_node", "target": "ghost"})).await;
    let failed = eventually(Duration::from_secs(10), "the action on a missing node to fail", || async {
        let a = status_everywhere(&c, bad["action_id"].as_u64().unwrap()).await;
        (a["status"] == "failed").then_some(a)
    })
    .await;
    assert!(failed["message"].as_str().unwrap().contains("ghost"), "{failed}");
}

/// A notification as Alertmanager 0.27 sends it (webhook payload version 4).
fn alertmanager_body(status: &str) -> Value {
    json!({
        "receiver": "switchboard",
        "status": status,
        "alerts": [{
            "status": status,
            "labels": {"alertname": "EdgeNodeDiskFull", "instance": "edge-7:9100", "job": "node", "severity": "critical", "action": "drain_node"},
            "annotations": {"summary": "Disk almost full on edge-7", "description": "/ is 97% full"},
            "startsAt": "2026-11-24T03:00:00.000Z",
            "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-11-24T03:10:00.000Z" },
            "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes",
            "fingerprint": "c3a1f0b2d4e5f607"
        }],
        "groupLabels": {"alertname": "EdgeNodeDiskFull"},
        "commonLabels": {"alertname": "EdgeNodeDiskFull", "severity": "critical"},
        "commonAnnotations": {"summary": "Disk almost full on edge-7"},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"EdgeNodeDiskFull\"}",
        "truncatedAlerts": 0
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_firing_then_resolved_and_a_leader_kill_loses_no_action() {
    let mut c = Cluster::start(3).await;
    // Hold built-in actions back (none may run) so the alert's action stays queued.
    assert_eq!(c.call(1, Method::PUT, "/v1/policy/actions", Some(json!({"max_active": 1}))).await.0, 200);
    let blocker = submit(&c, 1, action("long_job", "elsewhere", "deterministic", 5, 1.0)).await;
    let (_, got) = c
        .call(1, Method::POST, "/v1/actions/claim", Some(json!({"types": ["long_job"], "worker": "w", "lease_s": 600})))
        .await;
    assert_eq!(got["action"]["action_id"], blocker["action_id"]);

    let (status, fired) = c.call(2, Method::POST, "/v1/alertmanager", Some(alertmanager_body("firing"))).await;
    assert_eq!(status, 200, "{fired}");
    let anomaly = fired["alerts"][0]["anomaly_id"].as_u64().unwrap();
    let action_id = fired["alerts"][0]["action_id"].as_u64().unwrap();
    // The same alert again (Alertmanager repeats notifications): no second anomaly.
    let (_, repeat) = c.call(3, Method::POST, "/v1/alertmanager", Some(alertmanager_body("firing"))).await;
    assert_eq!(
        (repeat["alerts"][0]["anomaly_id"].as_u64(), repeat["alerts"][0]["new"].as_bool()),
        (Some(anomaly), Some(false))
    );
    let (_, a) = c.call(3, Method::GET, &format!("/v1/anomalies/{anomaly}"), None).await;
    assert_eq!(
        (a["status"].as_str(), a["action"]["type"].as_str(), a["action"]["target"].as_str()),
        (Some("accepted"), Some("drain_node"), Some("edge-7"))
    );
    assert_eq!(a["action"]["priority"], 1);

    // Queue more actions, then kill the leader: every one survives on the new leader.
    let mut ids = vec![action_id];
    for i in 0..10 {
        ids.push(
            submit(&c, 1 + i % 3, action(&format!("job{i}"), &format!("t{i}"), "deterministic", 3, 1.0)).await
                ["action_id"]
                .as_u64()
                .unwrap(),
        );
    }
    let leader = c.leader().await;
    c.kill(leader);
    c.leader().await;
    for id in &ids {
        let a = status_everywhere(&c, *id).await;
        assert_eq!(a["status"], "queued", "action {id} after the leader kill: {a}");
    }
    let survivor = c.running()[0];
    let (_, st) = c.call(survivor, Method::GET, "/v1/status", None).await;
    assert_eq!(
        (st["queued_actions"].as_u64(), st["active_actions"].as_u64()),
        (Some(ids.len() as u64), Some(1)),
        "{st}"
    );

    // Resolved: the anomaly closes and its still-queued action is withdrawn.
    let (status, resolved) =
        c.call(survivor, Method::POST, "/v1/alertmanager", Some(alertmanager_body("resolved"))).await;
    assert_eq!((status, resolved["alerts"][0]["closed"].as_bool()), (200, Some(true)), "{resolved}");
    let (_, a) = c.call(survivor, Method::GET, &format!("/v1/anomalies/{anomaly}"), None).await;
    assert_eq!(a["status"], "resolved");
    assert_eq!(a["action"]["status"], "superseded");

    // The seed's anomaly shape, with validation naming the field.
    let body = json!({
        "timestamp": "2026-11-24T03:30:00Z", "type": "resource_exhaustion", "severity": "high",
        "confidence_score": 0.92, "details": {"node": "worker-1", "metric": "memory_usage", "current_value": 95},
        "recommended_action": "scale_down_pods", "source": "ai_driven"
    });
    let (status, created) = c.call(survivor, Method::POST, "/v1/anomalies", Some(body.clone())).await;
    assert_eq!(
        (status, created["assigned_layer"].as_str(), created["priority"].as_u64()),
        (201, Some("ai_driven"), Some(2)),
        "{created}"
    );
    assert!(created["action_id"].as_u64().is_some());
    let mut bad = body;
    bad["confidence_score"] = json!(1.5);
    let (status, err) = c.call(survivor, Method::POST, "/v1/anomalies", Some(bad)).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("confidence_score")));
    let (status, err) =
        c.call(survivor, Method::POST, "/v1/alertmanager", Some(json!({"version": "3", "alerts": []}))).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("version")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_submits_lists_claims_and_completes_actions() {
    use crate::util::cli;
    let c = Cluster::start(1).await;
    let e = c.peer(1).url();
    let run = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--endpoint", &e]);
        let out = cli(&all);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let submitted = run(&[
        "action",
        "submit",
        "--type",
        "restart_service",
        "--target",
        "web-1",
        "--priority",
        "2",
        "--param",
        "service=nginx",
        "--param",
        "grace_s=5",
    ]);
    assert_eq!((submitted["status"].as_str(), submitted["position_in_queue"].as_u64()), (Some("queued"), Some(1)));
    let id = submitted["action_id"].as_u64().unwrap();
    let listed = run(&["action", "list", "--status", "queued"]);
    assert_eq!(listed["actions"][0]["action_id"].as_u64(), Some(id), "{listed}");
    assert_eq!(listed["actions"][0]["parameters"], json!({"service": "nginx", "grace_s": 5}));
    let claimed = run(&["action", "claim", "--type", "restart_service", "--worker", "w1", "--lease-s", "60"]);
    assert_eq!(
        (claimed["action"]["action_id"].as_u64(), claimed["action"]["status"].as_str()),
        (Some(id), Some("running"))
    );
    let id = id.to_string();
    let done = run(&["action", "complete", &id, "--worker", "w1", "--result", "restarted"]);
    assert_eq!(
        (done["action"]["status"].as_str(), done["action"]["message"].as_str()),
        (Some("completed"), Some("restarted"))
    );
    assert_eq!(run(&["action", "show", &id])["status"], "completed");
    assert_eq!(run(&["action", "status"])["layers"]["deterministic"]["actions_processed"], 1);
    assert_eq!(run(&["action", "policy", "--max-attempts", "5"])["policy"]["max_attempts"], 5);
    // A late report is refused by the cluster: exit 1, one line.
    let late = cli(&["action", "fail", &id, "--worker", "w1", "--endpoint", &e]);
    assert_eq!(late.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&late.stderr).contains("409"), "{}", String::from_utf8_lossy(&late.stderr));
    // A usage error: exit 1, one line naming the option, and nothing sent.
    let bad = cli(&["action", "submit", "--type", "x", "--target", "t", "--param", "oops", "--endpoint", &e]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr.contains("--param") && stderr.trim().lines().count() == 1, "{stderr}");
    assert_eq!(run(&["action", "list"])["actions"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_answers_from_the_local_copy_when_there_is_no_leader() {
    let mut c = Cluster::start_with_env(3, &[("SWITCHBOARD_HTTP_REQUEST_TIMEOUT_MS", "1500")]).await;
    submit(&c, 1, action("restart_service", "web-1", "deterministic", 5, 1.0)).await;
    c.agreed("/v1/status").await;
    let leader = c.leader().await;
    let survivor = (1..=3).find(|&id| id != leader).unwrap();
    for id in (1..=3).filter(|&id| id != survivor) {
        c.kill(id);
    }
    let (status, st) = c.call(survivor, Method::GET, "/v1/status", None).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["engine_status"], "no_leader", "{st}");
    assert_eq!(st["queued_actions"].as_u64().unwrap() + st["active_actions"].as_u64().unwrap(), 1, "{st}");
}
