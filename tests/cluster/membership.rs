//! Membership from the CLI: grow 3 → 5, shrink back, and catch-up by snapshot.

use std::time::Duration;

use crate::util::{cli, eventually, Cluster};

fn members(status: &serde_json::Value) -> Vec<u64> {
    status["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_three_to_five_and_shrink_back() {
    let mut c = Cluster::start(3).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    for i in 0..10 {
        assert_eq!(c.put_node(1 + i % 3, &format!("before{i}"), 5).await.0, 200);
    }
    let endpoint = c.peer(2).url();
    for _ in 0..2 {
        let id = c.add_process().await;
        let url = c.peer(id).url();
        let out = cli(&["cluster", "add", &url, "--endpoint", &endpoint]);
        assert!(out.status.success(), "cluster add {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let status = c.status(3).await.unwrap();
    assert_eq!(members(&status), vec![1, 2, 3, 4, 5], "{status}");
    c.await_ready().await;
    assert_eq!(c.put_node(5, "after-grow", 5).await.0, 200);
    let everything = c.nodes(1, "").await;
    assert_eq!(everything.len(), 11);
    assert_eq!(c.nodes(4, "").await, everything);

    // Shrink back, removing the leader among others.
    let leader = c.leader().await;
    let mut removed = vec![leader];
    removed.push(*c.running().iter().find(|id| **id != leader).unwrap());
    for id in &removed {
        let keep = *c.running().iter().find(|p| !removed.contains(p)).unwrap();
        let out = cli(&["cluster", "remove", &id.to_string(), "--endpoint", &c.peer(keep).url()]);
        assert!(out.status.success(), "cluster remove {id}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A removed peer says it is not ready, so load balancers stop sending to it.
    for id in &removed {
        let url = format!("{}/ready", c.peer(*id).url());
        eventually(Duration::from_secs(10), "a removed peer to report not ready", || async {
            let r = c.http.get(&url).send().await.ok()?;
            (r.status() == 503).then_some(())
        })
        .await;
    }
    for id in &removed {
        c.kill(*id);
    }
    let remaining = c.running();
    let status = c.status(remaining[0]).await.unwrap();
    assert_eq!(members(&status), remaining, "{status}");
    let (status, body) = c.put_node(remaining[1], "after-shrink", 5).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.nodes(remaining[2], "").await.len(), 12);

    let out = cli(&["cluster", "remove", "99", "--endpoint", &c.peer(remaining[0]).url()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"));
}

/// A peer that missed more than the log keeps gets the leader's snapshot, also as a new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_behind_peers_catch_up_by_snapshot() {
    let env = [("SWITCHBOARD_RAFT_SNAPSHOT_EVERY", "20"), ("SWITCHBOARD_RAFT_KEEP_LOGS", "5")];
    let mut c = Cluster::start_with_env(3, &env).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    let leader = c.leader().await;
    let lagging = *c.running().iter().find(|id| **id != leader).unwrap();
    c.kill(lagging);
    // One write per entry, so the log moves far past the snapshot interval.
    for i in 0..80 {
        assert_eq!(c.put_node(leader, &format!("n{i}"), 1 + i).await.0, 200);
    }
    // The leader snapshots and purges its log even while a follower is away. A purge waits
    // while the entries are in flight to a follower, so it may come a moment later.
    eventually(Duration::from_secs(10), "the leader to purge its log behind a snapshot", || async {
        let status = c.status(leader).await?;
        (status["snapshot_index"].as_u64()? >= 60 && status["purged_index"].as_u64()? >= 40).then_some(())
    })
    .await;

    c.restart(lagging).await;
    c.await_ready().await;
    let expected = c.nodes(leader, "").await;
    eventually(Duration::from_secs(15), "the lagging peer to catch up", || async {
        (c.nodes(lagging, "?stale").await == expected).then_some(())
    })
    .await;
    let metrics = c.http.get(format!("{}/metrics", c.peer(lagging).url())).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("switchboard_raft_snapshots_installed_total") && !l.ends_with(" 0")),
        "the lagging peer should have installed a snapshot:\n{metrics}"
    );

    let id = c.add_process().await;
    let out = cli(&["cluster", "add", &c.peer(id).url(), "--endpoint", &c.peer(leader).url()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(Duration::from_secs(15), "the new peer to hold everything", || async {
        (c.nodes(id, "?stale").await == expected).then_some(())
    })
    .await;
}

/// A peer that cannot receive the log (here: a different cluster secret) is never
/// promoted to voter; `cluster add` fails and leaves the membership as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_cannot_catch_up_is_not_added() {
    let mut c = Cluster::start_with_env(3, &[("SWITCHBOARD_RAFT_CATCH_UP_TIMEOUT_MS", "2000")]).await;
    let stranger = c.add_process_with(&[("SWITCHBOARD_CLUSTER_SECRET", "another-secret")]).await;
    let out = cli(&["cluster", "add", &c.peer(stranger).url(), "--endpoint", &c.peer(1).url()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not catch up") && stderr.contains("cluster secret"), "{stderr}");
    let status = c.status(1).await.unwrap();
    assert_eq!(members(&status), vec![1, 2, 3], "{status}");
    assert!(status["learners"].as_array().unwrap().is_empty(), "{status}");
    // The refused peer's attempts are logged by the cluster for the operator.
    let leader = status["leader"].as_u64().unwrap();
    let log = std::fs::read_to_string(&c.peer(leader).log).unwrap();
    assert!(log.contains("learner did not catch up"), "leader log lacks the removal");
    assert_eq!(c.put_region(2, "r1").await.0, 200, "the cluster keeps working");
}
