//! Crashes: the leader, a minority, everyone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::util::{eventually, Cluster};

/// Writes acknowledged by the cluster, and the number of attempts that failed.
async fn write_until_ok(c: &Cluster, peer: u64, node: &str, capacity: u64, within: Duration) -> Instant {
    eventually(within, &format!("a write of {node} through peer {peer} to succeed"), || async {
        let (status, _) = c.put_node(peer, node, capacity).await;
        (status == 200).then(Instant::now)
    })
    .await
}

async fn check_three_or_five(n: u64) {
    let mut c = Cluster::start(n).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    let mut acked = BTreeMap::new();
    for i in 0..20u64 {
        let peer = c.running()[i as usize % n as usize];
        assert_eq!(c.put_node(peer, &format!("a{i}"), i + 1).await.0, 200);
        acked.insert(format!("a{i}"), i + 1);
    }

    let leader = c.leader().await;
    let killed_at = Instant::now();
    c.kill(leader);
    let survivor = c.running()[0];
    let resumed = write_until_ok(&c, survivor, "after-kill", 7, Duration::from_secs(15)).await;
    acked.insert("after-kill".into(), 7);
    let took = resumed - killed_at;
    eprintln!("{n} peers: writes resumed {took:?} after the leader was killed");
    assert!(took < Duration::from_secs(10), "writes resumed only after {took:?}");
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);

    for i in 0..20u64 {
        let peer = c.running()[i as usize % c.running().len()];
        assert_eq!(c.put_node(peer, &format!("b{i}"), i + 1).await.0, 200);
        acked.insert(format!("b{i}"), i + 1);
    }

    // The old leader comes back as a follower and catches up from its own disk and the
    // new leader's log.
    c.restart(leader).await;
    c.await_ready().await;
    assert_eq!(c.nodes(leader, "").await, acked);
    eventually(Duration::from_secs(10), "the restarted peer's local copy to catch up", || async {
        (c.nodes(leader, "?stale").await == acked).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_three_peers() {
    check_three_or_five(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_five_peers() {
    check_three_or_five(5).await;
}

/// Five peers keep serving with two of them down, and refuse writes with three down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_peers_tolerate_two_failures_not_three() {
    let mut c = Cluster::start(5).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    let leader = c.leader().await;
    let others: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();
    c.kill(leader);
    c.kill(others[0]);
    write_until_ok(&c, others[1], "two-down", 1, Duration::from_secs(15)).await;
    c.kill(others[1]);
    let (status, body) = c.put_node(others[2], "three-down", 1).await;
    assert_eq!(status, 503, "a minority must not acknowledge writes: {body}");
    // "no_leader" promises the write was never proposed; "indeterminate" that it may have
    // been (appended by a leader that lost its quorum) and may still commit later.
    let never_proposed = body["error"] == "no_leader";
    c.restart(others[1]).await;
    write_until_ok(&c, others[2], "quorum-back", 1, Duration::from_secs(15)).await;
    let nodes = c.nodes(others[3], "").await;
    assert!(nodes.contains_key("two-down") && nodes.contains_key("quorum-back"));
    if never_proposed {
        assert!(!nodes.contains_key("three-down"), "a write refused as no_leader appeared");
    }
}

/// `kill -9` of every peer at once loses no acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_crash_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    let ids = c.running();
    let writes = (0..120u64).map(|i| {
        let c = &c;
        let peer = ids[i as usize % ids.len()];
        async move { (i, c.put_node(peer, &format!("n{i}"), i + 1).await.0) }
    });
    let results = futures::future::join_all(writes).await;
    let acked: BTreeMap<String, u64> =
        results.iter().filter(|(_, s)| *s == 200).map(|(i, _)| (format!("n{i}"), i + 1)).collect();
    assert_eq!(acked.len(), 120, "all writes succeed while the cluster is healthy");

    for id in c.running() {
        c.kill(id);
    }
    for id in ids.clone() {
        c.restart(id).await;
    }
    c.await_ready().await;
    for id in ids {
        assert_eq!(c.nodes(id, "").await, acked, "peer {id} after the restart");
    }
}
