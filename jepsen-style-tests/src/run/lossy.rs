//! The `lossy` nemesis: one follower loses a share of its Raft packets, both ways, while
//! every member's leader and term are polled into `leadership.jsonl` for the leadership
//! checker (`checker/leadership.rs`).
//!
//! The loss is iptables `-m statistic --mode random --probability P -j DROP` in `INPUT`
//! chains, so that a dropped packet is lost on the wire (a `DROP` in `OUTPUT` would fail
//! the sender's `connect` at once instead): in the follower's namespace for every packet
//! from or to a raft port (the others' requests to its listener and their answers on the
//! connections it opened), and in each other member's namespace for what comes from the
//! follower's address to or from a raft port. Each rule carries the comment
//! `jepsen-lossy`; the undo deletes exactly the rules it added.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;
use super::peers::{http_addr, RAFT_PORT};
use super::sh;
use super::topology::{peer_ip, peer_ns};
use crate::checker::leadership::LeadershipEvent;

/// The comment on every rule of this nemesis.
pub const TAG: &str = "jepsen-lossy";
/// How long the members may take to agree on one leader and term before the fault fires.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often each member is asked for its leader and term while the fault is active.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// How long the members are still watched after the heal: a term the lossy follower raised
/// reaches the leader as soon as one of its answers gets through, which may be only once
/// the packets flow again. The next fault comes 3 s after the heal at the earliest.
pub const AFTERMATH: Duration = Duration::from_secs(2);
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// `leadership.jsonl`: the lossy windows and what every member answered during them.
pub struct Log {
    start: Instant,
    out: Mutex<(BufWriter<File>, Option<String>)>,
    events: Mutex<Vec<LeadershipEvent>>,
}

impl Log {
    pub fn create(path: &Path, start: Instant) -> Result<Log, String> {
        let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Log { start, out: Mutex::new((BufWriter::new(file), None)), events: Mutex::new(Vec::new()) })
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn write(&self, event: LeadershipEvent) {
        if let Ok(mut out) = self.out.lock() {
            let line = serde_json::to_string(&event).unwrap_or_default();
            let written = writeln!(out.0, "{line}").and_then(|_| out.0.flush());
            if let Err(e) = written {
                out.1.get_or_insert(format!("cannot write leadership.jsonl: {e}"));
            }
        }
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// Every event, and the first write error (a harness failure).
    pub fn events(&self) -> (Vec<LeadershipEvent>, Option<String>) {
        let error = self.out.lock().map(|o| o.1.clone()).unwrap_or(Some("leadership.jsonl lock poisoned".into()));
        (self.events.lock().map(|e| e.clone()).unwrap_or_default(), error)
    }
}

/// One member's answer to `GET /v1/cluster`: term, leader, pre-votes lost.
fn ask(id: u64) -> Result<(u64, Option<u64>, Option<u64>), String> {
    let r = http::get(http_addr(id), "/v1/cluster", POLL_TIMEOUT).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(r.describe());
    }
    let term = r.body.get("term").and_then(Value::as_u64).ok_or("no term in the answer")?;
    let leader = r.body.get("leader").and_then(Value::as_u64);
    let lost = r.body.pointer("/elections/pre_votes_lost").and_then(Value::as_u64);
    Ok((term, leader, lost))
}

/// Waits until every member answers and all name the same leader in the same term; returns
/// them. Fails, saying what was last seen, when they do not within `timeout`.
pub fn settled(ids: &[u64], timeout: Duration) -> Result<(u64, u64), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen: BTreeMap<u64, Result<(u64, Option<u64>), String>> =
            ids.iter().map(|&id| (id, ask(id).map(|(term, leader, _)| (term, leader)))).collect();
        let first = seen.values().next().and_then(|r| r.as_ref().ok()).copied();
        if let Some((term, Some(leader))) = first {
            if seen.values().all(|r| r.as_ref().ok() == Some(&(term, Some(leader)))) {
                return Ok((leader, term));
            }
        }
        if Instant::now() > deadline {
            let seen: Vec<String> = seen
                .iter()
                .map(|(id, r)| match r {
                    Ok((term, Some(l))) => format!("peer {id}: term {term}, leader {l}"),
                    Ok((term, None)) => format!("peer {id}: term {term}, no leader"),
                    Err(e) => format!("peer {id}: {e}"),
                })
                .collect();
            return Err(format!(
                "the members did not agree on one leader and term within {timeout:?} ({})",
                seen.join("; ")
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// The follower the fault hits: the `pick`-th follower in id order, modulo their number.
pub fn follower(ids: &[u64], leader: u64, pick: u64) -> Option<u64> {
    let followers: Vec<u64> = ids.iter().copied().filter(|&id| id != leader).collect();
    (!followers.is_empty()).then(|| followers[(pick % followers.len() as u64) as usize])
}

/// One iptables rule, in the namespace of peer `ns`: the `INPUT` rule spec without `-A`/`-D`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub ns: u64,
    pub spec: Vec<String>,
}

/// The rules that drop `percent` % of `lossy`'s Raft packets both ways.
pub fn rules(ids: &[u64], lossy: u64, percent: u32) -> Vec<Rule> {
    let probability = format!("{:.2}", f64::from(percent) / 100.0);
    let port = RAFT_PORT.to_string();
    let spec = |from: Option<String>| {
        let mut spec: Vec<String> = vec!["INPUT".into()];
        if let Some(src) = from {
            spec.extend(["-s".into(), src]);
        }
        for word in ["-p", "tcp", "-m", "multiport", "--ports", &port, "-m", "statistic", "--mode", "random"] {
            spec.push(word.into());
        }
        for word in ["--probability", &probability, "-m", "comment", "--comment", TAG, "-j", "DROP"] {
            spec.push(word.into());
        }
        spec
    };
    let mut out = vec![Rule { ns: lossy, spec: spec(None) }];
    for &other in ids.iter().filter(|&&id| id != lossy) {
        out.push(Rule { ns: other, spec: spec(Some(format!("{}/32", peer_ip(lossy)))) });
    }
    out
}

fn iptables(rule: &Rule, action: &str) -> Result<(), String> {
    let mut args: Vec<&str> = vec!["-w", action];
    args.extend(rule.spec.iter().map(String::as_str));
    sh::in_netns(&peer_ns(rule.ns), "iptables", &args).map(|_| ())
}

/// Adds the rules; on a failure, removes those it added and fails.
pub fn inject(rules: &[Rule]) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        if let Err(e) = iptables(rule, "-A") {
            let _ = remove(&rules[..i]);
            return Err(e);
        }
    }
    Ok(())
}

/// Deletes exactly these rules; tries every one, and fails naming those it could not delete.
pub fn remove(rules: &[Rule]) -> Result<(), String> {
    let errors: Vec<String> = rules
        .iter()
        .filter_map(|r| iptables(r, "-D").err().map(|e| format!("peer {}'s namespace: {e}", r.ns)))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("cannot delete lossy rules: {}", errors.join("; ")))
    }
}

/// Threads that poll every member's leader and term into the log until stopped.
pub struct Watch {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    log: Arc<Log>,
    fault: usize,
    lossy: u64,
}

impl Watch {
    /// Writes the `lossy` line (the fault fired: every member named `leader` in `term`), then
    /// starts one poller per member.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        log: Arc<Log>,
        fault: usize,
        ids: &[u64],
        lossy: u64,
        percent: u32,
        leader: u64,
        term: u64,
    ) -> Result<Watch, String> {
        log.write(LeadershipEvent::Lossy {
            fault,
            peer: lossy,
            percent,
            leader,
            term,
            peers: ids.to_vec(),
            time: log.now(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut watch = Watch { stop: stop.clone(), threads: Vec::new(), log: log.clone(), fault, lossy };
        for &id in ids {
            let (log, stop) = (log.clone(), stop.clone());
            let poll = move || {
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let answer = ask(id);
                    let (term, leader, pre_votes_lost, error) = match answer {
                        Ok((t, l, p)) => (Some(t), l, p, None),
                        Err(e) => (None, None, None, Some(e)),
                    };
                    log.write(LeadershipEvent::Sample {
                        fault,
                        peer: id,
                        time: log.now(),
                        term,
                        leader,
                        pre_votes_lost,
                        error,
                    });
                    std::thread::sleep(POLL_EVERY.saturating_sub(asked.elapsed()));
                }
            };
            match std::thread::Builder::new().name(format!("lossy-watch-{id}")).spawn(poll) {
                Ok(t) => watch.threads.push(t),
                Err(e) => {
                    watch.stop();
                    return Err(format!("cannot start a watcher thread: {e}"));
                }
            }
        }
        Ok(watch)
    }

    /// Writes the `heal` line (the packets flow again), goes on polling for
    /// [`AFTERMATH`], stops the pollers and writes the `end` line; returns what the lossy
    /// follower did meanwhile, for the fault's description.
    pub fn stop(mut self) -> String {
        self.log.write(LeadershipEvent::Heal { fault: self.fault, time: self.log.now() });
        std::thread::sleep(AFTERMATH);
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.log.write(LeadershipEvent::End { fault: self.fault, time: self.log.now() });
        let (events, _) = self.log.events();
        let own: Vec<(u64, Option<u64>)> = events
            .iter()
            .filter_map(|e| match e {
                LeadershipEvent::Sample { fault, peer, term: Some(t), pre_votes_lost, .. }
                    if *fault == self.fault && *peer == self.lossy =>
                {
                    Some((*t, *pre_votes_lost))
                }
                _ => None,
            })
            .collect();
        match (own.first(), own.last()) {
            (Some((t0, Some(l0))), Some((t1, Some(l1)))) => {
                format!("peer {} lost {} pre-votes, its term {t0} -> {t1}", self.lossy, l1.saturating_sub(*l0))
            }
            _ => format!("peer {} did not answer", self.lossy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_cover_both_directions_and_carry_the_tag() {
        let r = rules(&[1, 2, 3], 2, 40);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].ns, 2);
        assert_eq!(
            r[0].spec.join(" "),
            "INPUT -p tcp -m multiport --ports 7000 -m statistic --mode random --probability 0.40 -m comment \
             --comment jepsen-lossy -j DROP"
        );
        assert_eq!((r[1].ns, r[2].ns), (1, 3));
        assert!(r[1].spec.join(" ").starts_with("INPUT -s 10.77.0.12/32 -p tcp -m multiport --ports 7000"));
    }

    #[test]
    fn the_follower_is_never_the_leader() {
        for pick in 0..6 {
            let f = follower(&[1, 2, 3], 2, pick).unwrap();
            assert_ne!(f, 2);
        }
        assert_eq!(follower(&[1, 2, 3], 2, 0), Some(1));
        assert_eq!(follower(&[1, 2, 3], 2, 1), Some(3));
        assert_eq!(follower(&[1], 1, 0), None);
    }
}
