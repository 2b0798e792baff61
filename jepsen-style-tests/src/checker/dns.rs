//! The DNS checker: failover, no answer from a dead node, agreement after the final heal,
//! and the share of queries answered under each fault. It judges `dns.jsonl`, the DNS
//! workload's log (one JSON object per line, tagged by `type`; see docs/jepsen.md):
//!
//! ```text
//! {"type":"setup","domain":"www.jepsen.test","peers":[1,2,3],"nodes":{"dn-1":"192.0.2.11"},"down_after_ms":1000}
//! {"type":"query","peer":2,"sent":5100000000,"time":5100800000,"rcode":"NOERROR","answer":["192.0.2.11"]}
//! {"type":"death","node":"dn-1","time":6000000000,"last_ack":5900000000}
//! {"type":"leader","peer":1,"time":6100000000,"leader":3,"term":4}
//! {"type":"fault","index":0,"description":"kill -9 peer 2","start":3000000000,"heal":9000000000,"excluded":[2],"down":[2]}
//! ```
//!
//! Invariants, for every death of a node (its heartbeats stop; `last_ack` is the time its
//! last heartbeat was acknowledged) and every peer on the majority side:
//!
//! - (a) failover: the first answer to a query sent at or after the peer's deadline names
//!   another node;
//! - (b) no flap back: no later answer, until the node is revived, names the dead node;
//! - (c) after the final heal every peer answers the same within the convergence bound;
//! - (d) the share of queries answered (NOERROR with an address) under each fault, reported
//!   per fault window (not a verdict: a peer cut off from the majority answers its last
//!   known table by design, and a killed peer cannot answer).
//!
//! The deadline is `max(last_ack, c) + bound` where `c` is the latest change of leader (or
//! of term) that a majority-side peer reported before the deadline: failure detection runs
//! on the leader, and a new leader grants every node a grace of `down_after_ms` from its
//! takeover, so a failover can only be asked for `bound` after the last of them. A peer that
//! is cut off, killed or paused (a fault's `excluded`) is not judged while it is, nor for
//! `rejoin` after the heal (to catch up); its deadline moves past that.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Anomaly, Report, Validity};

const MS: u64 = 1_000_000;
/// On top of 1.5 x down_after + 200 ms (the issue's bound): the client's query interval
/// (100 ms, so the first query after a change can be that late), the dispatch loop's tick
/// (100 ms, a transition is committed on the next tick), and 100 ms for the commit to reach
/// and be applied by the followers and the DNS snapshot to be rebuilt on a shared 2-core
/// machine with debug builds.
pub const SLACK_MS: u64 = 300;
/// After the final heal: a killed peer restarts (process, store, log replay), a new leader
/// may be elected, every peer applies what it missed and rebuilds its DNS snapshot.
pub const CONVERGENCE_MS: u64 = 3_000;
/// After a fault that cut a peer off is healed: time to catch up before it is judged again.
pub const REJOIN_MS: u64 = 3_000;
/// A heartbeat whose outcome is unknown (sent, not acknowledged: a paused peer may hold it
/// and pass it on when it resumes) within this long before a death makes that death
/// unjudgeable, unless the same peer acknowledged a later heartbeat before the node's last
/// one (then it had handled the request by then): otherwise the leader may hear the node
/// after its last acknowledged heartbeat.
pub const TAINT_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DnsEvent {
    Setup {
        domain: String,
        peers: Vec<u64>,
        /// Node id -> its address.
        nodes: BTreeMap<String, String>,
        down_after_ms: u64,
    },
    /// One UDP query to `peer`, sent at `sent`, completed at `time`.
    Query {
        peer: u64,
        sent: u64,
        time: u64,
        /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ... or absent when no answer came (`error`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rcode: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        answer: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// One heartbeat attempt: `ok` (202), `fail` (certainly not taken: refused, 4xx, 503),
    /// `unknown` (sent, no answer: may still reach the leader later).
    Beat {
        node: String,
        peer: u64,
        sent: u64,
        time: u64,
        outcome: String,
    },
    /// The node's heartbeats stop at `time`; the last one acknowledged at `last_ack`.
    Death {
        node: String,
        time: u64,
        last_ack: Option<u64>,
    },
    /// The node's heartbeats resume at `time`.
    Revive {
        node: String,
        time: u64,
    },
    /// `peer` reported this leader and term at `time` (recorded when either changes).
    Leader {
        peer: u64,
        time: u64,
        leader: Option<u64>,
        term: u64,
    },
    /// A nemesis fault: `excluded` peers are not on the majority side while it is active
    /// (cut off, killed, paused; all peers when the majority side is not well defined);
    /// `down` peers cannot answer at all (killed, paused).
    Fault {
        index: usize,
        description: String,
        start: Option<u64>,
        heal: Option<u64>,
        excluded: Vec<u64>,
        down: Vec<u64>,
    },
    FinalHeal {
        time: u64,
    },
    End {
        time: u64,
    },
}

/// Bounds, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bounds {
    pub failover: u64,
    pub convergence: u64,
    pub rejoin: u64,
}

impl Bounds {
    /// 1.5 x down_after + 200 ms + [`SLACK_MS`].
    pub fn for_down_after(down_after_ms: u64) -> Bounds {
        Bounds {
            failover: (down_after_ms * 3 / 2 + 200 + SLACK_MS) * MS,
            convergence: CONVERGENCE_MS * MS,
            rejoin: REJOIN_MS * MS,
        }
    }
}

pub fn read(reader: impl BufRead) -> Result<Vec<DnsEvent>, String> {
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

pub fn read_file(path: &Path) -> Result<Vec<DnsEvent>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    read(std::io::BufReader::new(file))
}

struct Q<'a> {
    peer: u64,
    sent: u64,
    answered: bool,
    answer: &'a [String],
    what: String,
}

fn secs(t: u64) -> String {
    format!("{:.3}s", t as f64 / 1e9)
}

/// Judges a DNS log with the bounds its setup line implies.
pub fn check(events: &[DnsEvent]) -> Report {
    let down_after = events.iter().find_map(|e| match e {
        DnsEvent::Setup { down_after_ms, .. } => Some(*down_after_ms),
        _ => None,
    });
    match down_after {
        Some(d) => check_with(events, Bounds::for_down_after(d)),
        None => unknown("the DNS log has no setup line"),
    }
}

fn unknown(why: &str) -> Report {
    Report { checker: "dns".into(), valid: Validity::Unknown, summary: why.into(), anomalies: vec![], stats: json!({}) }
}

pub fn check_with(events: &[DnsEvent], b: Bounds) -> Report {
    let Some((domain, peers, nodes)) = events.iter().find_map(|e| match e {
        DnsEvent::Setup { domain, peers, nodes, .. } => Some((domain.clone(), peers.clone(), nodes.clone())),
        _ => None,
    }) else {
        return unknown("the DNS log has no setup line");
    };
    let mut queries: Vec<Q> = events
        .iter()
        .filter_map(|e| match e {
            DnsEvent::Query { peer, sent, rcode, answer, error, .. } => {
                let answered = rcode.as_deref() == Some("NOERROR") && !answer.is_empty();
                let what = match (rcode, error) {
                    (_, Some(e)) => e.clone(),
                    (Some(r), None) if answered => format!("{r} {}", answer.join(",")),
                    (Some(r), None) => format!("{r} (no address)"),
                    (None, None) => "no answer".into(),
                };
                Some(Q { peer: *peer, sent: *sent, answered, answer, what })
            }
            _ => None,
        })
        .collect();
    queries.sort_by_key(|q| q.sent);
    let end = events
        .iter()
        .filter_map(|e| match e {
            DnsEvent::End { time } => Some(*time),
            DnsEvent::Query { time, .. } => Some(*time),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    // Per peer: the intervals during which it is not judged.
    let mut excluded: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut faults = Vec::new();
    for e in events {
        if let DnsEvent::Fault { index, description, start: Some(s), heal, excluded: ex, down } = e {
            for p in ex {
                excluded.entry(*p).or_default().push((*s, heal.map_or(u64::MAX, |h| h + b.rejoin)));
            }
            faults.push((*index, description.clone(), *s, heal.unwrap_or(end), down.clone()));
        }
    }
    let is_excluded = |p: u64, t: u64| excluded.get(&p).is_some_and(|v| v.iter().any(|&(s, e)| s <= t && t < e));
    // Whose reports of the leader count: not a peer that is down or on a minority side
    // while the fault is active (its view is stale); after the heal, every peer's again.
    let mut minority: Vec<(u64, u64, u64)> = Vec::new();
    for e in events {
        if let DnsEvent::Fault { start: Some(s), heal, excluded: ex, down, .. } = e {
            for &p in ex.iter().filter(|p| down.contains(p) || ex.len() < peers.len()) {
                minority.push((p, *s, heal.unwrap_or(u64::MAX)));
            }
        }
    }
    let off_side = |p: u64, t: u64| minority.iter().any(|&(q, s, e)| q == p && s <= t && t < e);
    // Changes of leader or term, as reported by peers on the majority side.
    let mut changes = Vec::new();
    // Changes to no leader (an election under way) and to a leader.
    let (mut to_none, mut to_leader) = (Vec::new(), Vec::new());
    let mut last_seen: BTreeMap<u64, (Option<u64>, u64)> = BTreeMap::new();
    let mut leader_events: Vec<(u64, u64, Option<u64>, u64)> = events
        .iter()
        .filter_map(|e| match e {
            DnsEvent::Leader { peer, time, leader, term } => Some((*time, *peer, *leader, *term)),
            _ => None,
        })
        .collect();
    leader_events.sort();
    for &(time, peer, leader, term) in &leader_events {
        if let Some(prev) = last_seen.insert(peer, (leader, term)) {
            if prev != (leader, term) && !off_side(peer, time) {
                changes.push(time);
                if leader.is_some() { &mut to_leader } else { &mut to_none }.push(time);
            }
        }
    }
    // Times without a working leader, each ending when a majority-side peer next reports a
    // leader: from a report of no leader; from a fault that cuts off, kills or pauses the
    // leader (followers may go on naming it until the next election); from a heal followed
    // by a change within `rejoin` (a peer coming back with a higher term can depose the
    // leader).
    let next_leader = |after: u64| to_leader.iter().copied().find(|&c| c > after);
    let next_change = |after: u64| changes.iter().copied().find(|&c| c > after);
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    for &t in &to_none {
        gaps.push((t, next_leader(t).unwrap_or(u64::MAX)));
    }
    for e in events {
        let DnsEvent::Fault { start: Some(s), heal, excluded: ex, down, .. } = e else { continue };
        let leader = leader_events.iter().rev().find(|o| o.0 <= *s && !off_side(o.1, o.0)).and_then(|o| o.2);
        // A fault that excludes every peer (bridge, ring, netem) does not by itself take
        // the leader away; those peers are not judged during it anyway.
        let cut_off = |l: u64| down.contains(&l) || (ex.contains(&l) && ex.len() < peers.len());
        if leader.is_some_and(cut_off) {
            gaps.push((*s, next_leader(*s).unwrap_or(u64::MAX)));
        }
        if let Some(h) = heal {
            if next_change(*h).is_some_and(|c| c <= h + b.rejoin) {
                gaps.push((*h, next_leader(*h).unwrap_or(u64::MAX)));
            }
        }
    }
    let acks: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            DnsEvent::Beat { peer, time, outcome, .. } if outcome == "ok" => Some((*peer, *time)),
            _ => None,
        })
        .collect();
    let unknown_beats: Vec<(&str, u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            DnsEvent::Beat { node, peer, sent, outcome, .. } if outcome == "unknown" => {
                Some((node.as_str(), *peer, *sent))
            }
            _ => None,
        })
        .collect();

    let mut anomalies = Vec::new();
    let mut deaths_report = Vec::new();
    let (mut judged, mut unjudged) = (0usize, Vec::new());
    let revives: Vec<(&str, u64)> = events
        .iter()
        .filter_map(|e| match e {
            DnsEvent::Revive { node, time } => Some((node.as_str(), *time)),
            _ => None,
        })
        .collect();
    for e in events {
        let DnsEvent::Death { node, time: died, last_ack } = e else { continue };
        let revive = revives.iter().filter(|(n, t)| n == node && t >= died).map(|(_, t)| *t).min().unwrap_or(end);
        let Some(dead_ip) = nodes.get(node) else {
            unjudged.push(format!("{node} died at {}: not a node of the setup", secs(*died)));
            continue;
        };
        let Some(a) = *last_ack else {
            unjudged.push(format!("{node} died at {}: no heartbeat of it was ever acknowledged", secs(*died)));
            continue;
        };
        let handled_later = |p: u64, s: u64| acks.iter().any(|&(q, t)| q == p && t > s && t <= a);
        if let Some((_, p, s)) = unknown_beats.iter().find(|(n, p, s)| {
            n == node && *s <= *died && died.saturating_sub(*s) <= TAINT_MS * MS && !handled_later(*p, *s)
        }) {
            unjudged.push(format!(
                "{node} died at {}: a heartbeat of it sent to peer {p} at {} was never answered and may reach \
                 the leader later than its last acknowledged one",
                secs(*died),
                secs(*s)
            ));
            continue;
        }
        // The deadline, moved past every change of leader before it.
        let mut deadline = a + b.failover;
        loop {
            let latest = changes.iter().copied().filter(|&c| c <= deadline).max().unwrap_or(0);
            let gap_end = gaps.iter().filter(|&&(s, e)| s <= deadline && e > a).map(|&(_, e)| e).max().unwrap_or(0);
            let next = a.max(latest).max(gap_end).saturating_add(b.failover);
            if next == deadline {
                break;
            }
            deadline = next;
        }
        let mut per_peer = BTreeMap::new();
        for &p in &peers {
            // Moved past every exclusion of this peer that overlaps [last_ack, deadline].
            let mut dl = deadline;
            loop {
                let moved = excluded
                    .get(&p)
                    .into_iter()
                    .flatten()
                    .filter(|&&(s, e)| s <= dl && e > a)
                    .map(|&(_, e)| e)
                    .max()
                    .map_or(dl, |e| e.max(dl));
                if moved == dl {
                    break;
                }
                dl = moved;
            }
            if dl >= revive {
                unjudged.push(format!(
                    "{node} died at {}: peer {p}'s deadline {} is past the node's revival at {}",
                    secs(*died),
                    secs(dl),
                    secs(revive)
                ));
                per_peer.insert(p, json!({"deadline": dl as f64 / 1e9, "judged": false}));
                continue;
            }
            let window: Vec<&Q> = queries
                .iter()
                .filter(|q| q.peer == p && q.sent >= dl && q.sent < revive && q.answered && !is_excluded(p, q.sent))
                .collect();
            let Some(first) = window.first() else {
                unjudged.push(format!(
                    "{node} died at {}: peer {p} answered no query between its deadline {} and the revival",
                    secs(*died),
                    secs(dl)
                ));
                continue;
            };
            judged += 1;
            // Observed failover: from the last acknowledged heartbeat to the first query
            // after which this peer never named the dead node again (before the revival).
            let last_dead = queries
                .iter()
                .filter(|q| q.peer == p && q.sent >= a && q.sent < revive && q.answer.contains(dead_ip))
                .map(|q| q.sent)
                .max();
            let observed = last_dead.map_or(0.0, |t| (t.saturating_sub(a)) as f64 / 1e6);
            per_peer.insert(p, json!({"deadline": dl as f64 / 1e9, "judged": true, "last_dead_answer_ms": observed}));
            if first.answer.contains(dead_ip) {
                anomalies.push(Anomaly {
                    kind: "no-failover".into(),
                    key: Some(node.clone()),
                    message: format!(
                        "peer {p} still answered the dead node {node} ({dead_ip}) at {}, {} ms after its last \
                         acknowledged heartbeat at {} (bound {} ms{})",
                        secs(first.sent),
                        (first.sent - a) / MS,
                        secs(a),
                        b.failover / MS,
                        if dl > a + b.failover { format!(", deadline moved to {}", secs(dl)) } else { String::new() }
                    ),
                    ops: vec![format!("peer {p} query at {}: {}", secs(first.sent), first.what)],
                });
                continue;
            }
            let back: Vec<&&Q> = window.iter().filter(|q| q.answer.contains(dead_ip)).collect();
            if let Some(q) = back.first() {
                anomalies.push(Anomaly {
                    kind: "answers-dead-node".into(),
                    key: Some(node.clone()),
                    message: format!(
                        "peer {p} failed over by {}, then answered the dead node {node} ({dead_ip}) again at {} \
                         ({} such answers before its revival at {})",
                        secs(first.sent),
                        secs(q.sent),
                        back.len(),
                        secs(revive)
                    ),
                    ops: back
                        .iter()
                        .take(5)
                        .map(|q| format!("peer {p} query at {}: {}", secs(q.sent), q.what))
                        .collect(),
                });
            }
        }
        deaths_report.push(json!({
            "node": node, "died": *died as f64 / 1e9, "last_ack": a as f64 / 1e9,
            "deadline": deadline as f64 / 1e9, "revived": revive as f64 / 1e9, "peers": per_peer,
        }));
    }

    // (c) agreement after the final heal.
    let final_heal = events.iter().find_map(|e| match e {
        DnsEvent::FinalHeal { time } => Some(*time),
        _ => None,
    });
    let mut convergence = json!(null);
    let mut unknowns = Vec::new();
    match final_heal {
        None => unknowns.push("no final heal in the DNS log".to_string()),
        Some(f) => {
            let after: Vec<&Q> = queries.iter().filter(|q| q.sent >= f).collect();
            let settled = after.last().map(|q| q.answer);
            // From the first query after the last one that did not answer the settled address.
            let agreed_from = match settled {
                Some(s) if after.last().is_some_and(|q| q.answered) => {
                    let last_bad = after.iter().filter(|q| !(q.answered && q.answer == s)).map(|q| q.sent).max();
                    after.iter().map(|q| q.sent).find(|&t| last_bad.is_none_or(|bad| t > bad))
                }
                _ => None,
            };
            let cutoff = f + b.convergence;
            if end < cutoff + 500 * MS {
                unknowns.push(format!("the DNS log ends {} after the final heal", secs(end.saturating_sub(f))));
            } else {
                let silent: Vec<u64> =
                    peers.iter().copied().filter(|p| !after.iter().any(|q| q.peer == *p && q.sent >= cutoff)).collect();
                match agreed_from {
                    Some(t) if t <= cutoff && silent.is_empty() => {
                        convergence = json!({"agreed_after_ms": (t - f) / MS, "answer": settled});
                    }
                    other => {
                        let disagree: Vec<String> = after
                            .iter()
                            .filter(|q| q.sent >= cutoff && !(q.answered && Some(q.answer) == settled))
                            .take(5)
                            .map(|q| format!("peer {} query at {}: {}", q.peer, secs(q.sent), q.what))
                            .collect();
                        anomalies.push(Anomaly {
                            kind: "no-dns-convergence".into(),
                            key: None,
                            message: format!(
                                "the peers did not all answer the same address within {} ms of the final heal at {} \
                                 (all agree from {}; peers that answered nothing after the bound: {silent:?})",
                                b.convergence / MS,
                                secs(f),
                                other.map_or("never".into(), secs)
                            ),
                            ops: disagree,
                        });
                    }
                }
            }
        }
    }

    // (d) the share answered under each fault, and outside faults.
    let share = |qs: &[&Q]| -> serde_json::Value {
        let answered = qs.iter().filter(|q| q.answered).count();
        let mut other: BTreeMap<String, usize> = BTreeMap::new();
        for q in qs.iter().filter(|q| !q.answered) {
            let kind = if q.what.starts_with("NOERROR") { "NOERROR (no address)".into() } else { q.what.clone() };
            *other.entry(kind).or_default() += 1;
        }
        json!({"queries": qs.len(), "answered": answered,
               "share": if qs.is_empty() { 1.0 } else { answered as f64 / qs.len() as f64 }, "unanswered": other})
    };
    let mut windows = Vec::new();
    let mut min_share: Option<f64> = None;
    for (index, description, s, h, down) in &faults {
        let all: Vec<&Q> = queries.iter().filter(|q| q.sent >= *s && q.sent < *h).collect();
        let up: Vec<&Q> = all.iter().copied().filter(|q| !down.contains(&q.peer)).collect();
        let mut by_peer = BTreeMap::new();
        for &p in &peers {
            let mine: Vec<&Q> = all.iter().copied().filter(|q| q.peer == p).collect();
            by_peer.insert(p.to_string(), share(&mine));
        }
        let w = share(&all);
        let sh = w["share"].as_f64().unwrap_or(1.0);
        min_share = Some(min_share.map_or(sh, |m: f64| m.min(sh)));
        windows.push(json!({"fault": index, "description": description, "from": *s as f64 / 1e9,
                            "to": *h as f64 / 1e9, "all": w, "peers_up": share(&up), "by_peer": by_peer}));
    }
    let quiet: Vec<&Q> = queries.iter().filter(|q| !faults.iter().any(|f| q.sent >= f.2 && q.sent < f.3)).collect();

    let deaths = events.iter().filter(|e| matches!(e, DnsEvent::Death { .. })).count();
    if deaths == 0 {
        unknowns.push("no node died: nothing to judge".into());
    } else if judged == 0 {
        unknowns.push("no death could be judged on any peer".into());
    }
    let valid = if !anomalies.is_empty() {
        Validity::Invalid
    } else if !unknowns.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let answered = queries.iter().filter(|q| q.answered).count();
    let summary = match valid {
        Validity::Invalid => {
            format!("{} anomalies ({} deaths, {judged} peer judgements)", anomalies.len(), deaths_report.len())
        }
        Validity::Unknown => unknowns.join("; "),
        Validity::Valid => format!(
            "{} deaths, {judged} peer judgements within {} ms, {} not judged; agreement {} ms after the final heal; \
             {answered}/{} queries answered{}",
            deaths_report.len(),
            b.failover / MS,
            unjudged.len(),
            convergence["agreed_after_ms"],
            queries.len(),
            min_share.map_or(String::new(), |m| format!(", lowest share under a fault {:.1}%", m * 100.0))
        ),
    };
    Report {
        checker: "dns".into(),
        valid,
        summary,
        anomalies,
        stats: json!({
            "domain": domain, "bounds_ms": {"failover": b.failover / MS, "convergence": b.convergence / MS, "rejoin": b.rejoin / MS},
            "queries": queries.len(), "answered": answered, "deaths": deaths_report, "judged": judged,
            "not_judged": unjudged, "leader_changes": changes.iter().map(|&c| c as f64 / 1e9).collect::<Vec<_>>(),
            "leaderless": gaps.iter().map(|&(s, e)| [s as f64 / 1e9, e as f64 / 1e9]).collect::<Vec<_>>(),
            "convergence": convergence, "windows": windows, "outside_faults": share(&quiet),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "192.0.2.11";
    const B: &str = "192.0.2.12";

    fn ms(t: u64) -> u64 {
        t * MS
    }

    /// Three peers; dn-1 dies at 5.0 s (last heartbeat acknowledged 4.9 s), is revived at
    /// 10 s; every peer is queried every 100 ms from 0 to 20 s; the final heal at 14 s.
    /// `answer(peer, t_ms)` gives each answer.
    fn history(answer: impl Fn(u64, u64) -> Option<&'static str>) -> Vec<DnsEvent> {
        let mut ev = vec![DnsEvent::Setup {
            domain: "www.jepsen.test".into(),
            peers: vec![1, 2, 3],
            nodes: [("dn-1".to_string(), A.to_string()), ("dn-2".to_string(), B.to_string())].into(),
            down_after_ms: 1000,
        }];
        for t in (0..20_000).step_by(100) {
            for p in 1..=3 {
                let q = match answer(p, t) {
                    Some(ip) => DnsEvent::Query {
                        peer: p,
                        sent: ms(t),
                        time: ms(t) + MS,
                        rcode: Some("NOERROR".into()),
                        answer: vec![ip.into()],
                        error: None,
                    },
                    None => DnsEvent::Query {
                        peer: p,
                        sent: ms(t),
                        time: ms(t) + ms(500),
                        rcode: None,
                        answer: vec![],
                        error: Some("timeout".into()),
                    },
                };
                ev.push(q);
            }
        }
        ev.push(DnsEvent::Death { node: "dn-1".into(), time: ms(5_000), last_ack: Some(ms(4_900)) });
        ev.push(DnsEvent::Revive { node: "dn-1".into(), time: ms(10_000) });
        ev.push(DnsEvent::FinalHeal { time: ms(14_000) });
        ev.push(DnsEvent::End { time: ms(20_000) });
        ev
    }

    /// Fails over `after` ms past the last acknowledged heartbeat, back to dn-1 at 10.2 s.
    fn failover_after(after: u64) -> impl Fn(u64, u64) -> Option<&'static str> {
        move |_, t| Some(if (4_900 + after..10_200).contains(&t) { B } else { A })
    }

    fn fault(excluded: &[u64], down: &[u64], start: u64, heal: u64) -> DnsEvent {
        DnsEvent::Fault {
            index: 0,
            description: "test".into(),
            start: Some(ms(start)),
            heal: Some(ms(heal)),
            excluded: excluded.to_vec(),
            down: down.to_vec(),
        }
    }

    fn kinds(r: &Report) -> Vec<&str> {
        r.anomalies.iter().map(|a| a.kind.as_str()).collect()
    }

    #[test]
    fn a_timely_failover_passes() {
        let r = check(&history(failover_after(1_600)));
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["judged"], 3);
        assert_eq!(r.stats["bounds_ms"]["failover"], 2_000);
    }

    #[test]
    fn a_late_failover_is_caught() {
        let r = check(&history(failover_after(2_500)));
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(kinds(&r), vec!["no-failover"; 3]);
        assert!(r.anomalies[0].message.contains("bound 2000 ms"), "{}", r.render());
    }

    #[test]
    fn one_lagging_peer_is_caught() {
        let r =
            check(&history(|p, t| Some(if (6_500..10_200).contains(&t) && (p != 3 || t >= 8_000) { B } else { A })));
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.anomalies.len(), 1);
        assert!(r.anomalies[0].message.starts_with("peer 3"), "{}", r.render());
    }

    #[test]
    fn flapping_back_to_the_dead_node_is_caught() {
        let r =
            check(&history(|p, t| Some(if (6_500..10_200).contains(&t) && !(p == 2 && t == 8_000) { B } else { A })));
        assert_eq!(kinds(&r), vec!["answers-dead-node"], "{}", r.render());
    }

    #[test]
    fn a_cut_off_peer_is_not_judged_until_it_rejoined() {
        // Peer 3 is cut off from 4 s to 7 s and answers the dead node until 9.5 s: within
        // heal + rejoin (10 s), so not an anomaly; after 10.2 s everyone answers dn-1.
        let mut h = history(|p, t| Some(if (6_500..10_200).contains(&t) && (p != 3 || t >= 9_500) { B } else { A }));
        h.push(fault(&[3], &[], 4_000, 7_000));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["judged"], 2);
        // The same without the fault is an anomaly.
        let r =
            check(&history(|p, t| Some(if (6_500..10_200).contains(&t) && (p != 3 || t >= 9_500) { B } else { A })));
        assert_eq!(r.valid, Validity::Invalid);
    }

    #[test]
    fn a_change_of_leader_moves_the_deadline() {
        // A new leader at 6 s grants a grace from its takeover: failover at 7.6 s is fine.
        let mut h = history(failover_after(2_700));
        let leader = |peer, time, leader, term| DnsEvent::Leader { peer, time: ms(time), leader: Some(leader), term };
        h.extend([leader(1, 0, 1, 2), leader(2, 0, 1, 2), leader(1, 6_000, 2, 3), leader(2, 6_050, 2, 3)]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        // But not forever: still the dead node at 8.2 s is late.
        let mut h = history(failover_after(3_400));
        h.extend([leader(1, 0, 1, 2), leader(1, 6_000, 2, 3)]);
        assert_eq!(check(&h).valid, Validity::Invalid);
    }

    #[test]
    fn a_leader_killed_before_the_deadline_moves_it_past_the_next_election() {
        // The leader, peer 2, is killed at 4.8 s; peers 1 and 3 name it until peer 1 is
        // elected at 7.5 s; failover at 8.4 s (7.5 + 1.0 + a little) is in time.
        let leader = |peer, time, leader, term| DnsEvent::Leader { peer, time: ms(time), leader: Some(leader), term };
        let mut h = history(failover_after(3_500));
        h.extend([leader(1, 0, 2, 2), leader(3, 0, 2, 2), leader(1, 7_500, 1, 3), leader(3, 7_520, 1, 3)]);
        h.push(fault(&[2], &[2], 4_800, 9_000));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["judged"], 2);
        // Killing a follower moves nothing: the same failover is late.
        let mut h = history(failover_after(3_500));
        h.extend([leader(1, 0, 1, 2), leader(3, 0, 1, 2)]);
        h.push(fault(&[2], &[2], 4_800, 9_000));
        assert_eq!(kinds(&check(&h)), vec!["no-failover"; 2]);
    }

    #[test]
    fn an_election_under_way_moves_the_deadline_past_its_end() {
        // Peer 1 reports no leader at 5.5 s (a rejoining peer forced an election) until
        // 7.0 s; failover at 8.0 s (7.0 + 1.0) is in time.
        let leader = |peer, time, leader, term| DnsEvent::Leader { peer, time: ms(time), leader, term };
        let mut h = history(failover_after(3_100));
        h.extend([leader(1, 0, Some(2), 2), leader(1, 5_500, None, 3), leader(1, 7_000, Some(2), 4)]);
        assert_eq!(check(&h).valid, Validity::Valid, "{}", check(&h).render());
        let mut h = history(failover_after(3_100));
        h.extend([leader(1, 0, Some(2), 2)]);
        assert_eq!(check(&h).valid, Validity::Invalid);
    }

    #[test]
    fn an_unanswered_heartbeat_makes_a_death_unjudgeable() {
        let mut h = history(failover_after(5_000));
        h.push(DnsEvent::Beat {
            node: "dn-1".into(),
            peer: 2,
            sent: ms(4_000),
            time: ms(4_500),
            outcome: "unknown".into(),
        });
        let r = check(&h);
        assert_eq!(r.valid, Validity::Unknown, "{}", r.render());
        assert!(r.summary.contains("no death could be judged"));
        // Unless peer 2 acknowledged a later heartbeat before the last one: it handled it.
        h.push(DnsEvent::Beat { node: "dn-2".into(), peer: 2, sent: ms(4_600), time: ms(4_610), outcome: "ok".into() });
        assert_eq!(check(&h).valid, Validity::Invalid, "judged again: failover after 5 s is late");
    }

    #[test]
    fn disagreement_after_the_final_heal_is_caught() {
        let late =
            check(&history(|p, t| Some(if (6_500..10_200).contains(&t) || (p == 2 && t < 17_500) { B } else { A })));
        assert_eq!(late.valid, Validity::Invalid, "agreement 3.5 s after the heal is past the 3 s bound");
        assert_eq!(kinds(&late), vec!["no-dns-convergence"]);
        let r = check(&history(|p, t| {
            Some(if (6_500..10_200).contains(&t) || (p == 2 && t < 16_900 && t > 14_000) { B } else { A })
        }));
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["convergence"]["agreed_after_ms"], 2_900);
    }

    #[test]
    fn a_silent_peer_after_the_heal_is_caught() {
        let r = check(&history(|p, t| {
            if p == 1 && t >= 15_000 {
                None
            } else {
                Some(if (6_500..10_200).contains(&t) { B } else { A })
            }
        }));
        assert_eq!(kinds(&r), vec!["no-dns-convergence"], "{}", r.render());
    }

    #[test]
    fn availability_is_reported_per_fault_window() {
        // Peer 1 killed from 11 s to 13 s: its queries time out; 2 of 3 answered.
        let mut h = history(|p, t| {
            if p == 1 && (11_000..13_000).contains(&t) {
                None
            } else {
                Some(if (6_500..10_200).contains(&t) { B } else { A })
            }
        });
        h.push(fault(&[1], &[1], 11_000, 13_000));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        let w = &r.stats["windows"][0];
        assert_eq!(w["all"]["queries"], 60);
        assert_eq!(w["all"]["answered"], 40);
        assert_eq!(w["peers_up"]["share"], 1.0);
        assert_eq!(w["by_peer"]["1"]["share"], 0.0);
        assert_eq!(w["by_peer"]["1"]["unanswered"]["timeout"], 20);
    }

    #[test]
    fn no_death_is_no_verdict() {
        let h: Vec<DnsEvent> =
            history(|_, _| Some(A)).into_iter().filter(|e| !matches!(e, DnsEvent::Death { .. })).collect();
        assert_eq!(check(&h).valid, Validity::Unknown);
        assert_eq!(check(&[]).valid, Validity::Unknown);
    }

    #[test]
    fn the_log_format_round_trips() {
        let line = r#"{"type":"query","peer":2,"sent":5,"time":6,"rcode":"NOERROR","answer":["192.0.2.11"]}"#;
        let ev = read(line.as_bytes()).unwrap();
        assert_eq!(serde_json::to_string(&ev[0]).unwrap(), line);
        assert!(read("{\"type\":\"nope\"}".as_bytes()).is_err());
    }
}
