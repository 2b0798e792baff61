//! Leadership stability: a follower on a lossy link must not depose a healthy leader
//! (pre-vote), and the leader and the term stay where they are on the majority side.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{eventually, Cluster};

/// The share of the lossy follower's Raft packets dropped, each way.
const LOSS: f64 = 0.4;
/// How long the loss lasts.
const LOSSY_FOR: Duration = Duration::from_secs(20);
/// How often the majority's view is sampled during the loss.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// iptables rules that drop a share of the packets to and from one raft port on loopback,
/// removed on drop, also when the test fails. Each carries a comment naming the port, so
/// a rule left by a killed test run is recognisable.
struct Lossy {
    rules: Vec<Vec<String>>,
}

impl Lossy {
    /// `None` when iptables cannot be used here (not root, no iptables).
    fn start(raft_addr: &str, probability: f64) -> Option<Lossy> {
        let port = raft_addr.rsplit(':').next().expect("IP:PORT");
        let tag = format!("switchboard-test-lossy-{port}");
        let mut lossy = Lossy { rules: Vec::new() };
        for direction in ["--dport", "--sport"] {
            let rule: Vec<String> = [
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                direction,
                port,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &format!("{probability}"),
                "-m",
                "comment",
                "--comment",
                &tag,
                "-j",
                "DROP",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if !iptables("-A", &rule) {
                return None; // what was added is removed by drop
            }
            lossy.rules.push(rule);
        }
        Some(lossy)
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        for rule in &self.rules {
            iptables("-D", rule);
        }
    }
}

fn iptables(action: &str, rule: &[String]) -> bool {
    Command::new("iptables").arg(action).args(rule).status().is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_follower_does_not_move_the_term() {
    let c = Cluster::start(3).await;
    assert_eq!(c.put_region(1, "r1").await.0, 200);
    let leader = c.leader().await;
    let term = c.status(leader).await.expect("leader status")["term"].as_u64().unwrap();
    let followers: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();
    let (lossy, healthy) = (followers[0], followers[1]);

    let Some(loss) = Lossy::start(&c.peer(lossy).raft_addr, LOSS) else {
        eprintln!("skipped: iptables is not usable here (the test needs root)");
        return;
    };
    let started = Instant::now();
    let mut writes = Vec::new();
    let mut i = 0u64;
    while started.elapsed() < LOSSY_FOR {
        for id in [leader, healthy] {
            let status = c.status(id).await.unwrap_or_else(|| panic!("peer {id} did not answer /v1/cluster"));
            assert_eq!(status["leader"].as_u64(), Some(leader), "peer {id} lost the leader: {status}");
            assert_eq!(status["term"].as_u64(), Some(term), "peer {id}'s term moved: {status}");
        }
        let through = [leader, healthy][i as usize % 2];
        let sent = Instant::now();
        let (code, body) = c.put_node(through, &format!("n{i}"), i + 1).await;
        assert_eq!(code, 200, "write through peer {through}: {body}");
        writes.push(sent.elapsed());
        i += 1;
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let lossy_status = c.status(lossy).await.expect("lossy follower status");
    drop(loss);

    writes.sort();
    let p99 = writes[(writes.len() * 99 / 100).min(writes.len() - 1)];
    eprintln!(
        "{} writes through the majority during {LOSSY_FOR:?} of {:.0}% loss: p99 {p99:?}; lossy follower: {}",
        writes.len(),
        LOSS * 100.0,
        lossy_status["elections"]
    );
    assert_eq!(lossy_status["elections"]["pre_votes_won"], 0, "the lossy follower stood for election");
    assert_eq!(lossy_status["term"].as_u64(), Some(term), "the lossy follower raised its term");

    // Healed, the follower catches up under the same leader and term.
    eventually(Duration::from_secs(10), "the lossy follower to catch up", || async {
        let s = c.status(lossy).await?;
        let l = c.status(leader).await?;
        (s["leader"].as_u64() == Some(leader) && s["applied_index"] == l["applied_index"]).then_some(())
    })
    .await;
    assert_eq!(c.status(leader).await.unwrap()["term"].as_u64(), Some(term));
}

/// A leader that lost its quorum gives up leadership (check-quorum) instead of calling
/// itself leader; with the followers back, the cluster elects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_steps_down() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let followers: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();
    for &id in &followers {
        c.kill(id);
    }
    let stepped_down = eventually(Duration::from_secs(10), "the leader without quorum to step down", || async {
        let s = c.status(leader).await?;
        (s["state"] != "leader" && s["leader"].is_null()).then_some(s)
    })
    .await;
    assert_eq!(stepped_down["elections"]["step_downs"], 1, "{stepped_down}");
    for &id in &followers {
        c.restart(id).await;
    }
    c.await_ready().await;
    c.leader().await;
}
