//! Run-level checks beyond the history: every fault fired and the workload made progress
//! under it (coverage), the cluster converged after the final heal, and no peer panicked.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::faults::Record;
use super::http;
use super::nemesis::Nemesis;
use super::peers::http_addr;
use super::workload::node_body;
use crate::history::{Event, Type, F};

/// Value of the write that convergence makes and reads back from every peer.
const FINAL_VALUE: i64 = 424_242;
const FINAL_NODE: &str = "jepsen-final";
const REQUEST: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub fault: usize,
    pub description: String,
    pub fired: bool,
    pub healed: bool,
    /// Operations that were invoked and acknowledged while the fault was active.
    pub ok_during: usize,
    /// A fault under which no write can succeed (a majority is down): progress is not
    /// asked for, and an acknowledged write under it is an anomaly.
    pub expect_no_writes: bool,
    /// Writes (write, cas, add, ack) invoked and acknowledged while the fault was active.
    pub ok_writes_during: usize,
    pub errors: Vec<String>,
    pub passed: bool,
}

/// `extra_ok`: other successful reads, as (invoked, completed) in nanoseconds: the DNS
/// queries answered, when DNS is the only workload.
pub fn coverage(records: &[Record], events: &[Event], extra_ok: &[(u64, u64)]) -> Vec<Coverage> {
    let ops = crate::history::pair(events).unwrap_or_default();
    records
        .iter()
        .map(|r| {
            let (from, to) = match (r.started, r.healed) {
                (Some(s), Some(h)) => ((s * 1e9) as u64, (h * 1e9) as u64),
                _ => (1, 0),
            };
            let during: Vec<_> = ops
                .iter()
                .filter(|o| o.outcome == Type::Ok && o.invoke_time >= from && o.complete_time.is_some_and(|c| c <= to))
                // A worker's `run` is its own event, not an answer of the cluster.
                .filter(|o| o.f != F::Run)
                .collect();
            let ok_during = during.len() + extra_ok.iter().filter(|&&(i, c)| i >= from && c <= to).count();
            let ok_writes_during = during.iter().filter(|o| !matches!(o.f, F::Read | F::Deliver)).count();
            let expect_no_writes = r.fault.nemesis() == Nemesis::KillMajority;
            let fired = r.started.is_some();
            let healed = r.healed.is_some();
            Coverage {
                fault: r.index,
                description: r.description.clone(),
                fired,
                healed,
                ok_during,
                expect_no_writes,
                ok_writes_during,
                errors: r.errors.clone(),
                passed: fired && healed && r.errors.is_empty() && (ok_during > 0 || expect_no_writes),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    pub converged: bool,
    pub message: String,
    pub leader: Option<u64>,
    pub applied_index: BTreeMap<u64, u64>,
    pub seconds: f64,
}

/// After the final heal: one leader that every peer names, a write that succeeds, reads of
/// it from every peer, and the same applied index everywhere.
pub fn converge(ids: &[u64], timeout: Duration, interrupted: impl Fn() -> bool) -> Convergence {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut out = Convergence {
        converged: false,
        message: String::new(),
        leader: None,
        applied_index: BTreeMap::new(),
        seconds: 0.0,
    };
    let result = (|| -> Result<(), String> {
        let wait = |what: &str, last: &str| -> Result<(), String> {
            if interrupted() {
                return Err("interrupted".into());
            }
            if Instant::now() > deadline {
                return Err(format!("{what} within {timeout:?}; last seen: {last}"));
            }
            std::thread::sleep(POLL);
            Ok(())
        };
        // 1. One leader, named by every peer.
        let leader = loop {
            let status = statuses(ids);
            let leaders: Vec<Option<u64>> = status.values().map(|s| s.get("leader").and_then(Value::as_u64)).collect();
            // Every peer lists the same members: exactly the cluster's peers (a spare the
            // membership nemesis added is gone again), no learner.
            let members_agree = status.values().all(|s| {
                let mut m = member_ids(s, "members");
                m.sort_unstable();
                m == ids && member_ids(s, "learners").is_empty()
            });
            if status.len() == ids.len()
                && leaders[0].is_some()
                && leaders.iter().all(|l| *l == leaders[0])
                && members_agree
            {
                break leaders[0];
            }
            wait("the peers did not agree on one leader and on the members", &format!("{status:?}"))?;
        };
        out.leader = leader;
        // 2. A write goes through.
        let revision = 'write: loop {
            let mut last = String::new();
            for &id in ids {
                match http::put(http_addr(id), &format!("/v1/nodes/{FINAL_NODE}"), &node_body(FINAL_VALUE), REQUEST) {
                    Ok(r) if r.status == 200 => {
                        break 'write r.body.get("revision").and_then(Value::as_u64).unwrap_or(0)
                    }
                    Ok(r) => last = r.describe(),
                    Err(e) => last = e.to_string(),
                }
            }
            wait("no peer accepted a write", &last)?;
        };
        // 3. Every peer reads it back.
        for &id in ids {
            loop {
                match http::get(http_addr(id), &format!("/v1/nodes/{FINAL_NODE}"), REQUEST) {
                    Ok(r) if r.status == 200 => {
                        let got = r.body.get("capacity").cloned().unwrap_or(Value::Null);
                        if got != json!(FINAL_VALUE) {
                            return Err(format!("peer {id} reads {got} after the final write of {FINAL_VALUE}"));
                        }
                        break;
                    }
                    Ok(r) => wait(&format!("peer {id} did not read the final write"), &r.describe())?,
                    Err(e) => wait(&format!("peer {id} did not read the final write"), &e.to_string())?,
                }
            }
        }
        // 4. The same applied index everywhere.
        loop {
            let applied: BTreeMap<u64, u64> =
                statuses(ids).into_iter().filter_map(|(id, s)| Some((id, s.get("applied_index")?.as_u64()?))).collect();
            let first = applied.values().next().copied().unwrap_or(0);
            let same = applied.len() == ids.len() && applied.values().all(|&a| a == first) && first >= revision;
            out.applied_index = applied.clone();
            if same {
                return Ok(());
            }
            wait("the peers did not reach the same applied index", &format!("{applied:?}"))?;
        }
    })();
    out.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            out.converged = true;
            out.message = format!(
                "leader {}, applied index {:?}, final write read back from every peer",
                out.leader.unwrap_or(0),
                out.applied_index.values().next()
            );
        }
        Err(e) => out.message = e,
    }
    out
}

fn member_ids(status: &Value, field: &str) -> Vec<u64> {
    status
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| m.get("id")?.as_u64()).collect())
        .unwrap_or_default()
}

fn statuses(ids: &[u64]) -> BTreeMap<u64, Value> {
    ids.iter()
        .filter_map(|&id| {
            let r = http::get(http_addr(id), "/v1/cluster", REQUEST).ok()?;
            (r.status == 200).then_some((id, r.body))
        })
        .collect()
}

/// Lines of the peers' logs that tell of a panic.
pub fn panics(logs: &[(u64, &Path)]) -> Vec<String> {
    let mut found = Vec::new();
    for (id, path) in logs {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        for line in text.lines() {
            if line.contains("panicked at") || line.contains("fatal runtime error") {
                found.push(format!("peer {id}: {}", line.trim()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::nemesis::{Fault, Target};

    fn record(started: Option<f64>, healed: Option<f64>) -> Record {
        Record {
            index: 0,
            fault: Fault::Kill { target: Target::Node { id: 1 } },
            description: "kill".into(),
            started,
            healed,
            errors: vec![],
            excluded: vec![],
            down: vec![],
            skipped: None,
        }
    }

    fn op(p: u64, t0: f64, t1: f64, kind: Type) -> Vec<Event> {
        vec![
            Event::new(p, Type::Invoke, F::Read, "k", Value::Null, (t0 * 1e9) as u64),
            Event::new(p, kind, F::Read, "k", json!(1), (t1 * 1e9) as u64),
        ]
    }

    #[test]
    fn a_fault_is_covered_only_with_progress_under_it() {
        let mut events = op(1, 1.0, 1.5, Type::Ok);
        events.extend(op(2, 2.5, 3.0, Type::Fail));
        let c = coverage(&[record(Some(2.0), Some(4.0))], &events, &[]);
        assert!(!c[0].passed && c[0].ok_during == 0);
        events.extend(op(3, 3.1, 3.2, Type::Ok));
        assert!(coverage(&[record(Some(2.0), Some(4.0))], &events, &[])[0].passed);
        assert!(!coverage(&[record(None, None)], &events, &[])[0].passed, "a fault that never fired");
        let dns = coverage(&[record(Some(2.0), Some(4.0))], &[], &[(2_500_000_000, 2_600_000_000)]);
        assert!(dns[0].passed && dns[0].ok_during == 1, "an answered DNS query is progress");
    }

    #[test]
    fn a_majority_kill_asks_for_no_progress_and_counts_writes() {
        let mut r = record(Some(2.0), Some(4.0));
        r.fault = Fault::KillMajority { victims: vec![1, 2] };
        let mut events = op(1, 2.5, 3.0, Type::Fail);
        let c = coverage(std::slice::from_ref(&r), &events, &[]);
        assert!(c[0].passed && c[0].expect_no_writes && c[0].ok_writes_during == 0);
        events.extend(vec![
            Event::new(2, Type::Invoke, F::Write, "k", json!(3), 3_100_000_000),
            Event::new(2, Type::Ok, F::Write, "k", json!(3), 3_200_000_000),
        ]);
        assert_eq!(coverage(&[r], &events, &[])[0].ok_writes_during, 1);
    }

    #[test]
    fn panics_are_found_in_logs() {
        let dir = std::env::temp_dir().join(format!("jepsen-panics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.log"), dir.join("b.log"));
        std::fs::write(&a, "INFO ok\nthread 'tokio' panicked at src/x.rs:1:1:\nboom\n").unwrap();
        std::fs::write(&b, "INFO all fine\n").unwrap();
        let found = panics(&[(1, a.as_path()), (2, b.as_path())]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("peer 1:"));
    }
}
