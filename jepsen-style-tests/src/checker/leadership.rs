//! The leadership checker: a follower on a lossy link must not unseat a healthy leader. It
//! judges `leadership.jsonl`, the log the `lossy` nemesis writes while one follower loses a
//! share of its Raft packets (one JSON object per line, tagged by `type`; times in
//! nanoseconds since the workload started; see docs/jepsen.md):
//!
//! ```text
//! {"type":"lossy","fault":0,"peer":3,"percent":40,"leader":1,"term":2,"peers":[1,2,3],"time":3010000000}
//! {"type":"sample","fault":0,"peer":1,"time":3200000000,"term":2,"leader":1,"pre_votes_lost":0}
//! {"type":"sample","fault":0,"peer":2,"time":3210000000,"error":"timeout"}
//! {"type":"heal","fault":0,"time":33000000000}
//! {"type":"end","fault":0,"time":35000000000}
//! ```
//!
//! `lossy` is written when the fault fires: every member named `leader` in `term` just
//! before the follower `peer` started losing `percent` % of its Raft packets. `sample` is one
//! answer of `GET /v1/cluster` (or why none came), polled on every member about five times a
//! second until `end`, 2 s after `heal`, when the packets flow again.
//!
//! The invariant: while the fault is active, every member but the lossy follower (the
//! majority side, which hears the leader on intact links) answers the same leader in the
//! same term. With pre-vote the lossy follower asks before it raises its term and is
//! refused, and check-quorum keeps the leader, whose quorum is intact; without pre-vote its
//! raised term reaches the leader, which steps down. A sample with a higher term, or naming
//! another leader or none, is an anomaly (`leader-unseated`). The window runs from the
//! fault to `end`: a term the follower raised reaches the leader with the first of its
//! answers that gets through, and that may be only once the packets flow again (as in runs
//! without pre-vote, where the leader stepped down 0.1 s after the heal). Only one fault is
//! active at a time and the next one fires 3 s after a heal at the earliest, so nothing
//! else may change leadership during the window; the run waits for every member to agree
//! on one leader and term before it fires the fault, so that an election a previous fault
//! started is over.
//!
//! Verdict: invalid on any anomaly; unknown when a majority-side peer never answered
//! during a window (it could not be judged) or the log has no window; else valid.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Anomaly, Report, Validity};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LeadershipEvent {
    /// Fault `fault` fired at `time`: follower `peer` loses `percent` % of its Raft packets;
    /// every one of `peers` (the members) named `leader` in `term` just before.
    Lossy { fault: usize, peer: u64, percent: u32, leader: u64, term: u64, peers: Vec<u64>, time: u64 },
    /// What `peer` answered at `time` (`GET /v1/cluster`), or why it did not (`error`).
    Sample {
        fault: usize,
        peer: u64,
        time: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        term: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pre_votes_lost: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Fault `fault` was healed at `time`: the packets flow again.
    Heal { fault: usize, time: u64 },
    /// The members were polled for the last time for fault `fault`, at `time`.
    End { fault: usize, time: u64 },
}

pub fn read(reader: impl BufRead) -> Result<Vec<LeadershipEvent>, String> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        out.push(serde_json::from_str(t).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

pub fn read_file(path: &Path) -> Result<Vec<LeadershipEvent>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    read(std::io::BufReader::new(file))
}

fn secs(t: u64) -> String {
    format!("{:.1}s", t as f64 / 1e9)
}

/// One answer of a peer during a window.
#[derive(Debug, Clone, Copy)]
struct Answer {
    time: u64,
    term: u64,
    leader: Option<u64>,
    pre_votes_lost: Option<u64>,
}

impl Answer {
    fn describe(&self, peer: u64) -> String {
        let leader = self.leader.map_or("no leader".to_string(), |l| format!("leader {l}"));
        format!("peer {peer} at {}: term {}, {leader}", secs(self.time), self.term)
    }
}

/// Whether the log holds at least one lossy-follower window.
pub fn has_window(events: &[LeadershipEvent]) -> bool {
    events.iter().any(|e| matches!(e, LeadershipEvent::Lossy { .. }))
}

/// Judges a leadership log.
pub fn check(events: &[LeadershipEvent]) -> Report {
    let mut anomalies = Vec::new();
    let mut not_judged = Vec::new();
    let mut windows = Vec::new();
    for e in events {
        let LeadershipEvent::Lossy { fault, peer: lossy, percent, leader, term, peers, time: start } = e else {
            continue;
        };
        let heal = events.iter().find_map(|e| match e {
            LeadershipEvent::Heal { fault: f, time } if f == fault => Some(*time),
            _ => None,
        });
        let end = events.iter().find_map(|e| match e {
            LeadershipEvent::End { fault: f, time } if f == fault => Some(*time),
            _ => None,
        });
        // Per peer: its answers in order.
        let mut answers: BTreeMap<u64, Vec<Answer>> = BTreeMap::new();
        let mut unanswered: BTreeMap<u64, usize> = BTreeMap::new();
        for e in events {
            if let LeadershipEvent::Sample { fault: f, peer, time, term, leader, pre_votes_lost, error } = e {
                if f != fault || end.is_some_and(|h| *time > h) {
                    continue;
                }
                match (term, error) {
                    (Some(term), None) => answers.entry(*peer).or_default().push(Answer {
                        time: *time,
                        term: *term,
                        leader: *leader,
                        pre_votes_lost: *pre_votes_lost,
                    }),
                    _ => *unanswered.entry(*peer).or_default() += 1,
                }
            }
        }
        let window = format!("lossy fault {fault} on peer {lossy} ({percent}% loss, from {})", secs(*start));
        for &p in peers.iter().filter(|&&p| p != *lossy) {
            let seen = answers.get(&p).map(Vec::as_slice).unwrap_or(&[]);
            if seen.is_empty() {
                not_judged.push(format!("peer {p} never answered during {window}"));
                continue;
            }
            let bad = seen.iter().position(|a| a.term != *term || a.leader != Some(*leader));
            if let Some(i) = bad {
                let a = seen[i];
                let time = a.time;
                let when = match heal {
                    Some(h) if time > h => format!("{} ({:.1} s after the heal)", secs(time), (time - h) as f64 / 1e9),
                    _ => secs(time),
                };
                let message = match a.term {
                    t if t != *term => format!(
                        "leader unseated by a lossy follower: term {term} -> {t} on peer {p} during lossy fault on peer \
                         {lossy} at t={when}"
                    ),
                    _ => format!(
                        "leader unseated by a lossy follower: peer {p} names {} instead of leader {leader} (term {term}) \
                         during lossy fault on peer {lossy} at t={when}",
                        a.leader.map_or("no leader".to_string(), |l| format!("leader {l}")),
                    ),
                };
                let mut ops =
                    vec![format!("every member at {} (the fault fired): term {term}, leader {leader}", secs(*start))];
                if i > 0 {
                    ops.push(seen[i - 1].describe(p));
                }
                ops.push(a.describe(p));
                anomalies.push(Anomaly { kind: "leader-unseated".into(), key: None, message, ops });
            }
        }
        let own = answers.get(lossy).map(Vec::as_slice).unwrap_or(&[]);
        let lost = |s: &[Answer]| Some(s.last()?.pre_votes_lost?.saturating_sub(s.first()?.pre_votes_lost?));
        windows.push(json!({
            "fault": fault, "lossy": lossy, "percent": percent, "leader": leader, "term": term,
            "start": *start as f64 / 1e9, "heal": heal.map(|h| h as f64 / 1e9), "end": end.map(|e| e as f64 / 1e9),
            "answers": answers.iter().map(|(p, s)| (p.to_string(), s.len())).collect::<BTreeMap<_, _>>(),
            "unanswered": unanswered.iter().map(|(p, n)| (p.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "lossy_final_term": own.last().map(|a| a.term),
            "lossy_pre_votes_lost": lost(own),
        }));
    }
    let polls: usize = windows
        .iter()
        .filter_map(|w| w["answers"].as_object())
        .flat_map(|m| m.values().filter_map(|v| v.as_u64()))
        .sum::<u64>() as usize;
    let (valid, summary) = if windows.is_empty() {
        (Validity::Unknown, "no lossy-follower window in the log".to_string())
    } else if !anomalies.is_empty() {
        (Validity::Invalid, format!("{} peers saw the leader unseated by a lossy follower", anomalies.len()))
    } else if !not_judged.is_empty() {
        (Validity::Unknown, format!("not judged: {}", not_judged.join("; ")))
    } else {
        (
            Validity::Valid,
            format!(
                "{} lossy-follower windows: the majority side kept its leader and term ({polls} answers)",
                windows.len()
            ),
        )
    };
    Report {
        checker: "leadership".into(),
        valid,
        summary,
        anomalies,
        stats: json!({"windows": windows, "not_judged": not_judged}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn lossy() -> LeadershipEvent {
        LeadershipEvent::Lossy { fault: 0, peer: 3, percent: 40, leader: 1, term: 3, peers: vec![1, 2, 3], time: 3 * S }
    }

    fn sample(peer: u64, time: u64, term: u64, leader: Option<u64>) -> LeadershipEvent {
        LeadershipEvent::Sample {
            fault: 0,
            peer,
            time,
            term: Some(term),
            leader,
            pre_votes_lost: Some(time / S),
            error: None,
        }
    }

    fn held() -> Vec<LeadershipEvent> {
        let mut events = vec![lossy()];
        for t in 4..30 {
            events.push(sample(1, t * S, 3, Some(1)));
            events.push(sample(2, t * S, 3, Some(1)));
            // The lossy follower's own view is not judged: it may lag.
            events.push(sample(3, t * S, 3, if t % 3 == 0 { None } else { Some(1) }));
        }
        events.push(LeadershipEvent::Heal { fault: 0, time: 33 * S });
        for t in [33, 34] {
            for p in [1, 2, 3] {
                events.push(sample(p, t * S + S / 2, 3, Some(1)));
            }
        }
        events.push(LeadershipEvent::End { fault: 0, time: 35 * S });
        events
    }

    #[test]
    fn a_majority_that_keeps_its_leader_and_term_is_valid() {
        let r = check(&held());
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["windows"][0]["lossy_pre_votes_lost"], 30);
    }

    #[test]
    fn a_higher_term_on_the_majority_side_is_caught() {
        let mut events = held();
        events.insert(28, sample(2, 12 * S + S / 3, 5, Some(2)));
        let r = check(&events);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.render());
        assert_eq!(r.anomalies.len(), 1);
        assert_eq!(
            r.anomalies[0].message,
            "leader unseated by a lossy follower: term 3 -> 5 on peer 2 during lossy fault on peer 3 at t=12.3s"
        );
        assert_eq!(r.anomalies[0].ops.len(), 3, "{:?}", r.anomalies[0].ops);
    }

    #[test]
    fn a_leader_lost_without_a_term_change_is_caught_too() {
        let mut events = held();
        events.insert(5, sample(1, 5 * S, 3, None));
        let r = check(&events);
        assert_eq!(r.valid, Validity::Invalid);
        assert!(r.anomalies[0].message.contains("peer 1 names no leader instead of leader 1"), "{}", r.render());
    }

    #[test]
    fn the_leader_unseated_just_after_the_heal_is_caught() {
        let mut events = held();
        let end = events.len() - 1;
        events.insert(end, sample(1, 33 * S + S / 10 * 7, 9, None));
        let r = check(&events);
        assert_eq!(r.valid, Validity::Invalid);
        assert!(
            r.anomalies[0]
                .message
                .ends_with("term 3 -> 9 on peer 1 during lossy fault on peer 3 at t=33.7s (0.7 s after the heal)"),
            "{}",
            r.render()
        );
    }

    #[test]
    fn samples_after_the_end_and_of_other_faults_do_not_count() {
        let mut events = held();
        events.push(sample(2, 36 * S, 4, Some(2)));
        events.push(LeadershipEvent::Sample {
            fault: 1,
            peer: 2,
            time: 20 * S,
            term: Some(7),
            leader: Some(2),
            pre_votes_lost: None,
            error: None,
        });
        assert_eq!(check(&events).valid, Validity::Valid);
    }

    #[test]
    fn a_majority_peer_that_never_answered_is_not_judged() {
        let events: Vec<LeadershipEvent> = held()
            .into_iter()
            .map(|e| match e {
                LeadershipEvent::Sample { fault, peer: 2, time, .. } => LeadershipEvent::Sample {
                    fault,
                    peer: 2,
                    time,
                    term: None,
                    leader: None,
                    pre_votes_lost: None,
                    error: Some("timeout".into()),
                },
                e => e,
            })
            .collect();
        let r = check(&events);
        assert_eq!(r.valid, Validity::Unknown, "{}", r.render());
        assert!(r.summary.contains("peer 2 never answered"));
        assert_eq!(check(&[]).valid, Validity::Unknown);
    }

    #[test]
    fn the_log_round_trips() {
        let text: String = held().iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
        assert_eq!(read(text.as_bytes()).unwrap(), held());
    }
}
