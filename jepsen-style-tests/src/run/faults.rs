//! Executes scheduled faults against the peers and the network, and records when each one
//! really started and was healed: the fault timeline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::nemesis::{grudges, Fault, Scheduled, SnapshotStep, Target};
use super::peers::{self, Peers};
use super::topology::{peer_ip, peer_ns};
use super::{clock, http, lossy, membership, sh, snapshot};

/// What happened to one scheduled fault.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub index: usize,
    pub fault: Fault,
    /// What it did, with "the leader" resolved, e.g. "isolate peer 2 (leader)".
    pub description: String,
    /// Seconds since the workload started; `None` when it never fired.
    pub started: Option<f64>,
    pub healed: Option<f64>,
    pub errors: Vec<String>,
    /// Peers not on the majority side while it is active: cut off, killed or paused, the
    /// lossy follower; every peer when the majority side is not well defined (bridge, ring,
    /// netem, kill-majority).
    pub excluded: Vec<u64>,
    /// Peers that cannot answer at all while it is active (killed, paused).
    pub down: Vec<u64>,
    /// Why it was not fired, when a peer it needs is not running (one that exited on its
    /// own: every peer the nemesis took down is back before the next fault).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The active fault and how to undo it.
enum Undo {
    Firewall(Vec<u64>),
    Restart(u64),
    Resume(u64),
    Netem,
    /// Remove the spare that was added, through this member, and stop it.
    RemoveSpare {
        spare: u64,
        via: u64,
    },
    /// Add the removed member `victim` back fresh through `via`, then remove `spare`.
    Restore {
        victim: u64,
        spare: u64,
        via: u64,
    },
    /// Restart the peer and wait until it caught up.
    RestartCaughtUp(u64),
    /// Restart the peer once the leader purged past `last`, crash it as it installs the
    /// snapshot (kill -9 right after, or abort at `failpoint`), restart it again and wait
    /// until it caught up.
    InstallCrash {
        id: u64,
        last: u64,
        failpoint: Option<&'static str>,
    },
    /// Put these peers' clocks back to the true time.
    Clock(Vec<u64>),
    /// Restart these peers, those that were killed.
    RestartAll(Vec<u64>),
    /// Delete exactly these iptables rules (a lossy follower), then stop polling the
    /// members' leader and term ([`lossy::AFTERMATH`] later).
    Lossy {
        rules: Vec<lossy::Rule>,
        watch: lossy::Watch,
    },
    /// Nothing to undo.
    Nothing,
}

/// How long a peer brought back after a fault may take to answer.
const BACK_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Injector {
    start: Instant,
    active: Option<(Record, Undo)>,
    pub records: Vec<Record>,
    /// Where the lossy nemesis records the members' leader and term (`leadership.jsonl`).
    pub leadership: Option<std::sync::Arc<lossy::Log>>,
}

impl Injector {
    pub fn new(start: Instant) -> Self {
        Injector { start, active: None, records: Vec::new(), leadership: None }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Fires a fault. A failure to inject is recorded (and makes coverage fail), not fatal:
    /// what it did half way is undone at once, and every peer it took down is brought back,
    /// so a later fault or heal finds the cluster whole. A fault that needs a peer which is
    /// not running is skipped, with the reason.
    pub fn fire(&mut self, scheduled: &Scheduled, peers: &mut Peers) {
        let ids = peers.ids();
        // A fault is active from the moment its injection begins (adding a peer takes a while).
        let began = self.now();
        let mut record = Record {
            index: scheduled.index,
            fault: scheduled.fault.clone(),
            description: String::new(),
            started: None,
            healed: None,
            errors: Vec::new(),
            excluded: Vec::new(),
            down: Vec::new(),
            skipped: None,
        };
        if let Some(reason) = not_running(&scheduled.fault, peers) {
            record.description = format!("skipped: {reason}");
            record.skipped = Some(reason);
            self.records.push(record);
            return;
        }
        // What undoes a fault that fired also cleans up after one that failed half way.
        let mut cleanup = Undo::Nothing;
        let result = match &scheduled.fault {
            Fault::Kill { target } => {
                let (id, how) = resolve(*target, &ids);
                record.description = format!("kill -9 peer {id}{how}");
                (record.excluded, record.down) = (vec![id], vec![id]);
                peers.kill(id).map(|_| Undo::Restart(id))
            }
            Fault::Pause { target } => {
                let (id, how) = resolve(*target, &ids);
                record.description = format!("SIGSTOP peer {id}{how}");
                (record.excluded, record.down) = (vec![id], vec![id]);
                peers.pause(id).map(|_| Undo::Resume(id))
            }
            Fault::Netem { delay_ms, jitter_ms, loss_percent } => {
                record.excluded = ids.clone();
                cleanup = Undo::Netem;
                netem(&ids, *delay_ms, *jitter_ms, *loss_percent).map(|how| {
                    record.description = how;
                    Undo::Netem
                })
            }
            Fault::Membership { spare, via } => {
                record.description =
                    format!("add spare peer {spare} through peer {via} ({} -> {} voters)", ids.len(), ids.len() + 1);
                cleanup = Undo::RemoveSpare { spare: *spare, via: *via };
                membership::add(peers, *spare, *via).map(|index| {
                    record.description.push_str(&format!(", membership entry {index}"));
                    Undo::RemoveSpare { spare: *spare, via: *via }
                })
            }
            Fault::Replace { spare, victim, via } => {
                let (victim, how) = resolve(*victim, &ids);
                // Through a member that stays; the seeded one unless it is the one removed.
                let via = if *via == victim { other(victim, &ids) } else { *via };
                record.description = format!(
                    "replace peer {victim}{how} by spare {spare} through peer {via}: add the spare ({} -> {} voters), \
                     remove peer {victim}, stop it and wipe its data",
                    ids.len(),
                    ids.len() + 1
                );
                (record.excluded, record.down) = (vec![victim], vec![victim]);
                cleanup = Undo::Restore { victim, spare: *spare, via };
                membership::replace(peers, *spare, victim, via).map(|what| {
                    record.description.push_str(&format!(": {what}"));
                    Undo::Restore { victim, spare: *spare, via }
                })
            }
            Fault::SnapshotCrash { target, during } => {
                let id = snapshot::follower(*target, &ids);
                let how = if id == *target { String::new() } else { format!(" (peer {target} leads)") };
                (record.excluded, record.down) = (vec![id], vec![id]);
                cleanup = Undo::RestartCaughtUp(id);
                match during {
                    SnapshotStep::BuildBeforePersist | SnapshotStep::BuildAfterPersist => {
                        let point = during.failpoint().unwrap_or_default();
                        record.description =
                            format!("kill -9 follower {id}{how}, restart it with failpoint {point} armed");
                        snapshot::crash_at_build(peers, id, point).map(|what| {
                            record.description.push_str(&format!(": {what}"));
                            Undo::RestartCaughtUp(id)
                        })
                    }
                    SnapshotStep::Build => {
                        record.description = format!("kill -9 follower {id}{how} right after it builds a snapshot");
                        let wait = scheduled.duration.saturating_sub(Duration::from_secs(1));
                        snapshot::kill_after_build(peers, id, wait).map(|what| {
                            record.description.push_str(&format!(": {what}"));
                            Undo::RestartCaughtUp(id)
                        })
                    }
                    _ => {
                        let failpoint = during.failpoint();
                        let crash = match failpoint {
                            Some(point) => format!("with failpoint {point} armed, until it aborts there"),
                            None => "kill -9 it right after it installs the leader's snapshot".to_string(),
                        };
                        record.description =
                            format!("kill -9 follower {id}{how}, restart it once the log it needs is purged, {crash}");
                        snapshot::kill_for_install(peers, id).map(|last| Undo::InstallCrash { id, last, failpoint })
                    }
                }
            }
            Fault::Clock { skews } => {
                let list: Vec<String> =
                    skews.iter().map(|s| format!("peer {} {:+} s", s.peer, s.offset_secs)).collect();
                record.description = format!("clock skew: {}", list.join(", "));
                cleanup = Undo::Clock(skews.iter().map(|s| s.peer).collect());
                skew(peers, skews).map(|seen| {
                    record.description.push_str(&format!(" (confirmed: {seen})"));
                    Undo::Clock(skews.iter().map(|s| s.peer).collect())
                })
            }
            Fault::LossyFollower { pick, percent } => {
                // The majority side must agree on one leader and term first: what it sees
                // during the fault is compared with that.
                let plan = lossy::settled(&ids, lossy::SETTLE_TIMEOUT).and_then(|(leader, term)| {
                    let f = lossy::follower(&ids, leader, *pick).ok_or("a single member has no follower")?;
                    Ok((leader, term, f))
                });
                let (leader, term, f) = match plan {
                    Ok(plan) => plan,
                    Err(reason) => {
                        record.description = format!("skipped: {reason}");
                        record.skipped = Some(reason);
                        self.records.push(record);
                        return;
                    }
                };
                record.description = format!(
                    "drop {percent}% of follower {f}'s Raft packets, both ways (every member: leader {leader}, term {term})"
                );
                (record.excluded, record.down) = (vec![f], vec![]);
                let rules = lossy::rules(&ids, f, *percent);
                // The window starts as the packets start to drop.
                let from = self.now();
                let log =
                    self.leadership.clone().ok_or("the lossy nemesis runs without its leadership log".to_string());
                log.and_then(|log| lossy::inject(&rules).map(|_| log)).and_then(|log| {
                    match lossy::Watch::start(log, scheduled.index, &ids, f, *percent, leader, term) {
                        Ok(watch) => {
                            record.started = Some(from);
                            Ok(Undo::Lossy { rules, watch })
                        }
                        Err(e) => Err(lossy::remove(&rules).err().map_or(e.clone(), |r| format!("{e}; {r}"))),
                    }
                })
            }
            Fault::KillMajority { victims } => {
                record.description = format!("kill -9 a majority: peers {victims:?} (of {})", ids.len());
                (record.excluded, record.down) = (ids.clone(), victims.clone());
                cleanup = Undo::RestartAll(victims.clone());
                let killed = victims.iter().try_for_each(|&id| peers.kill(id));
                // No write can be acknowledged from here on: the window starts once all are down.
                let down = self.now();
                killed.map(|_| {
                    record.started = Some(down);
                    Undo::RestartAll(victims.clone())
                })
            }
            partition => {
                let leader = leader(&ids);
                let cut = grudges(partition, &ids, leader);
                record.description = describe_partition(partition, &cut, leader);
                record.excluded = match partition {
                    Fault::IsolateLeader { fallback } => vec![leader.unwrap_or(*fallback)],
                    Fault::Halves { minority } => minority.clone(),
                    _ => ids.clone(),
                };
                cleanup = Undo::Firewall(ids.clone());
                firewall(&cut).map(|_| Undo::Firewall(ids.clone()))
            }
        };
        match result {
            Ok(undo) => {
                record.started = Some(record.started.unwrap_or(began));
                self.active = Some((record, undo));
            }
            Err(e) => {
                record.errors.push(e);
                if let Err(e) = self.undo(cleanup, &mut record, peers) {
                    record.errors.push(format!("cleaning up: {e}"));
                }
                bring_back(&mut record, peers);
                self.records.push(record);
            }
        }
    }

    /// The active fault, if one is active.
    pub fn active_record(&self) -> Option<&Record> {
        self.active.as_ref().map(|(r, _)| r)
    }

    /// What the active fault does, if one is active.
    pub fn active(&self) -> Option<&str> {
        self.active.as_ref().map(|(r, _)| r.description.as_str())
    }

    /// Heals the active fault, if any, then brings back every peer still down (a heal that
    /// failed half way), so that the next fault finds every peer up.
    pub fn heal(&mut self, peers: &mut Peers) {
        let Some((mut record, undo)) = self.active.take() else { return };
        // For a majority kill the window ends when the first peer is started again.
        let before = self.now();
        let restarts_majority = matches!(undo, Undo::RestartAll(_));
        match self.undo(undo, &mut record, peers) {
            // A lossy follower's heal sets the time the packets flowed again itself: it goes
            // on watching the members for a while after.
            Ok(()) => record.healed = record.healed.or(Some(if restarts_majority { before } else { self.now() })),
            Err(e) => record.errors.push(format!("heal: {e}")),
        }
        bring_back(&mut record, peers);
        self.records.push(record);
    }

    /// Undoes a fault (one that fired, or one that failed half way); what it did is added
    /// to the record's description.
    fn undo(&self, undo: Undo, record: &mut Record, peers: &mut Peers) -> Result<(), String> {
        match undo {
            Undo::Firewall(ids) => clear_firewall(&ids),
            Undo::Restart(id) => restart_killed(peers, &[id]),
            Undo::Resume(id) => peers.resume(id),
            Undo::Netem => clear_netem(&peers.ids()).and(clear_firewall(&peers.ids())),
            Undo::RemoveSpare { spare, via } => membership::remove(peers, spare, via).map(|index| {
                record.description.push_str(&match index {
                    Some(index) => format!("; removed at entry {index}"),
                    None => format!("; spare {spare} stopped (it was no member)"),
                });
            }),
            Undo::Restore { victim, spare, via } => membership::restore(peers, victim, spare, via).map(|what| {
                record.description.push_str(&format!("; {what}"));
            }),
            Undo::RestartCaughtUp(id) => snapshot::restart_and_catch_up(peers, id),
            Undo::InstallCrash { id, last, failpoint } => snapshot::crash_during_install(peers, id, last, failpoint)
                .map(|what| {
                    record.description.push_str(&format!(": {what}"));
                }),
            Undo::Clock(ids) => unskew(peers, &ids),
            Undo::RestartAll(ids) => restart_killed(peers, &ids),
            Undo::Lossy { rules, watch } => {
                let removed = lossy::remove(&rules);
                if removed.is_ok() {
                    record.healed = Some(self.now());
                }
                let what = watch.stop();
                record.description.push_str(&format!("; {what}"));
                removed
            }
            Undo::Nothing => Ok(()),
        }
    }
}

/// Restarts those of `ids` that were killed (a fault that failed half way killed only some).
fn restart_killed(peers: &mut Peers, ids: &[u64]) -> Result<(), String> {
    for &id in ids {
        if peers.state(id) == Some(peers::State::Killed) {
            peers.start(id)?;
        }
    }
    Ok(())
}

/// Brings back every peer the nemesis took down and that is still down, and waits until
/// each answers; says so in the record. After a heal that worked there are none.
fn bring_back(record: &mut Record, peers: &mut Peers) {
    let back = match peers.heal_all() {
        Ok(back) => back,
        Err(e) => {
            record.errors.push(format!("bringing the peers back: {e}"));
            return;
        }
    };
    if back.is_empty() {
        return;
    }
    record.description.push_str(&format!("; peers {back:?} were still down, brought back"));
    for id in back {
        if let Err(e) = peers.await_answer(id, BACK_TIMEOUT) {
            record.errors.push(format!("bringing the peers back: {e}"));
        }
    }
}

/// Why `fault` cannot fire now: a peer it names is not running. The nemesis brings back
/// every peer it took down before the next fault, so this is a peer that exited on its own
/// or a member a failed heal left out of the cluster.
fn not_running(fault: &Fault, peers: &Peers) -> Option<String> {
    let node = |t: &Target| match t {
        Target::Node { id } => vec![*id],
        Target::Leader { .. } => vec![],
    };
    let needed = match fault {
        Fault::Kill { target } | Fault::Pause { target } => node(target),
        Fault::SnapshotCrash { target, .. } => vec![*target],
        Fault::Clock { skews } => skews.iter().map(|s| s.peer).collect(),
        Fault::KillMajority { victims } => victims.clone(),
        Fault::Membership { via, .. } => vec![*via],
        Fault::Replace { victim, via, .. } => [node(victim), vec![*via]].concat(),
        _ => vec![],
    };
    let down: Vec<String> = needed
        .into_iter()
        .filter(|&id| !peers.is_running(id))
        .map(|id| format!("peer {id} is not running ({:?})", peers.state(id)))
        .collect();
    (!down.is_empty()).then(|| down.join(", "))
}

/// Undoes every kind of fault on every peer, whatever is active: the final heal. The
/// network first (flushing `INPUT` also removes a lossy follower's rules), then every
/// peer is brought back and answers, and only then is the membership repaired (a member a
/// failed `replace` heal left out is added back, a spare whose removal failed is removed):
/// that needs a quorum.
pub fn heal_everything(peers: &mut Peers) -> Result<(), String> {
    let ids = peers.ids();
    let mut errors = Vec::new();
    if let Err(e) = clear_firewall(&ids) {
        errors.push(e);
    }
    if let Err(e) = clear_netem(&ids) {
        errors.push(e);
    }
    match peers.heal_all() {
        Ok(back) => {
            for id in back {
                if let Err(e) = peers.await_answer(id, BACK_TIMEOUT) {
                    errors.push(e);
                }
            }
        }
        Err(e) => errors.push(e),
    }
    if let Err(e) = unskew(peers, &ids) {
        errors.push(e);
    }
    let left_out: Vec<u64> = ids.iter().copied().filter(|&id| peers.state(id) == Some(peers::State::Spare)).collect();
    for victim in left_out {
        if let Err(e) = membership::readd(peers, victim, other(victim, &ids)) {
            errors.push(e);
        }
    }
    for spare in peers.all_ids().into_iter().filter(|id| !ids.contains(id)) {
        if peers.state(spare) != Some(peers::State::Spare) {
            if let Err(e) = membership::remove(peers, spare, ids[0]) {
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Moves the peers' clocks and confirms each one moved; returns how they were seen.
fn skew(peers: &Peers, skews: &[super::nemesis::Skew]) -> Result<String, String> {
    let lib = peers.faketime().ok_or("the clock nemesis runs only with libfaketime preloaded")?;
    for s in skews {
        clock::set(peers.dir(), s.peer, s.offset_secs)?;
    }
    let mut seen = Vec::new();
    for s in skews {
        let pid = peers.pid(s.peer).ok_or_else(|| format!("peer {} is not running", s.peer))?;
        seen.push(clock::confirm(&lib, peers.dir(), s.peer, pid, s.offset_secs, CLOCK_TIMEOUT)?);
    }
    Ok(seen.join("; "))
}

/// Puts the peers' clocks back to the true time.
fn unskew(peers: &Peers, ids: &[u64]) -> Result<(), String> {
    let Some(lib) = peers.faketime() else { return Ok(()) };
    for &id in ids {
        clock::set(peers.dir(), id, 0)?;
    }
    for &id in ids {
        if let Some(pid) = peers.pid(id) {
            clock::confirm(&lib, peers.dir(), id, pid, 0, CLOCK_TIMEOUT)?;
        }
    }
    Ok(())
}

/// libfaketime re-reads its file every second; the Date header has whole seconds.
const CLOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The member after `id`, for a request that must not go through `id`.
fn other(id: u64, ids: &[u64]) -> u64 {
    let at = ids.iter().position(|&i| i == id).unwrap_or(0);
    ids[(at + 1) % ids.len()]
}

fn resolve(target: Target, ids: &[u64]) -> (u64, &'static str) {
    match target {
        Target::Node { id } => (id, ""),
        Target::Leader { fallback } => match leader(ids) {
            Some(id) => (id, " (leader)"),
            None => (fallback, " (no leader known; seeded fallback)"),
        },
    }
}

/// The leader most peers name, asking each briefly.
pub fn leader(ids: &[u64]) -> Option<u64> {
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    for &id in ids {
        if let Ok(r) = http::get(peers::http_addr(id), "/v1/cluster", Duration::from_millis(500)) {
            if let Some(l) = r.body.get("leader").and_then(Value::as_u64) {
                *votes.entry(l).or_default() += 1;
            }
        }
    }
    votes.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
}

fn describe_partition(
    fault: &Fault,
    cut: &BTreeMap<u64, std::collections::BTreeSet<u64>>,
    leader: Option<u64>,
) -> String {
    let what = match fault {
        Fault::IsolateLeader { fallback } => match leader {
            Some(l) => format!("isolate the leader, peer {l}"),
            None => format!("isolate peer {fallback} (no leader known)"),
        },
        Fault::Halves { minority } => format!("cut minority {minority:?} from the rest"),
        Fault::Bridge { bridge, left, right } => format!("{left:?} | {right:?}, bridged by peer {bridge}"),
        Fault::Ring { order } => format!("ring {order:?}"),
        _ => String::new(),
    };
    let links: Vec<String> = cut.iter().map(|(a, bs)| format!("{a}x{bs:?}")).collect();
    format!("partition: {what} (drops: {})", links.join(" "))
}

/// Each peer drops what comes from the peers it holds a grudge against. Clients talk from
/// the host address, which no rule names, so they still reach every peer.
fn firewall(cut: &BTreeMap<u64, std::collections::BTreeSet<u64>>) -> Result<(), String> {
    for (peer, from) in cut {
        for other in from {
            let src = peer_ip(*other).to_string();
            sh::in_netns(&peer_ns(*peer), "iptables", &["-w", "-A", "INPUT", "-s", &src, "-j", "DROP"])?;
        }
    }
    Ok(())
}

fn clear_firewall(ids: &[u64]) -> Result<(), String> {
    for &id in ids {
        sh::in_netns(&peer_ns(id), "iptables", &["-w", "-F", "INPUT"])?;
    }
    Ok(())
}

/// Delay and loss on every peer's link with tc netem. Kernels built without netem get the
/// nearest thing: a slow link (tc tbf, which queues up to `delay_ms`) and random loss of
/// peer-to-peer packets (iptables statistic). Returns what was done.
fn netem(ids: &[u64], delay_ms: u32, jitter_ms: u32, loss: u32) -> Result<String, String> {
    let (d, j, l) = (format!("{delay_ms}ms"), format!("{jitter_ms}ms"), format!("{loss}%"));
    let mut fallback = false;
    for &id in ids {
        let args = ["qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &d, &j, "loss", &l];
        match sh::in_netns(&peer_ns(id), "tc", &args) {
            Ok(_) => {}
            Err(e) if e.contains("qdisc kind is unknown") => {
                fallback = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if !fallback {
        return Ok(format!("netem delay {d} ±{j}, loss {l} on every peer"));
    }
    let probability = format!("{:.3}", f64::from(loss.max(1)) / 100.0);
    for &id in ids {
        let ns = peer_ns(id);
        let args = ["qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "2mbit", "burst", "16kb", "latency", &d];
        sh::in_netns(&ns, "tc", &args)?;
        for &other in ids.iter().filter(|&&o| o != id) {
            let src = peer_ip(other).to_string();
            let rule = ["-w", "-A", "INPUT", "-s", &src, "-m", "statistic", "--mode", "random", "--probability"];
            let mut rule = rule.to_vec();
            rule.extend_from_slice(&[&probability, "-j", "DROP"]);
            sh::in_netns(&ns, "iptables", &rule)?;
        }
    }
    Ok(format!(
        "slow link (tbf 2mbit, queue up to {d}) and {}% peer-to-peer loss on every peer (this kernel has no netem)",
        loss.max(1)
    ))
}

fn clear_netem(ids: &[u64]) -> Result<(), String> {
    for &id in ids {
        let current = sh::in_netns(&peer_ns(id), "tc", &["qdisc", "show", "dev", "eth0"])?;
        if current.contains("netem") || current.contains("tbf") {
            sh::in_netns(&peer_ns(id), "tc", &["qdisc", "del", "dev", "eth0", "root"])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::nemesis::Skew;
    use crate::run::peers::PeerConfig;

    /// Peers that were never started: the members count as killed, the spare as a spare.
    fn stopped_peers() -> Peers {
        let dir = std::env::temp_dir().join(format!("jepsen-faults-{}", std::process::id()));
        let config =
            PeerConfig { binary: "/nonexistent".into(), dir, secret: String::new(), env: Vec::new(), faketime: None };
        Peers::new(config, &[1, 2, 3], &[4]).unwrap()
    }

    #[test]
    fn a_fault_naming_a_peer_that_is_down_is_skipped_with_the_reason() {
        let peers = stopped_peers();
        let kill = Fault::Kill { target: Target::Node { id: 2 } };
        assert_eq!(not_running(&kill, &peers).unwrap(), "peer 2 is not running (Some(Killed))");
        let majority = Fault::KillMajority { victims: vec![1, 3] };
        assert!(not_running(&majority, &peers).unwrap().contains("peer 3 is not running"));
        let clock = Fault::Clock { skews: vec![Skew { peer: 1, offset_secs: 5 }] };
        assert!(not_running(&clock, &peers).is_some());
        // The leader is resolved when the fault fires; partitions and netem name no peer.
        assert_eq!(not_running(&Fault::Kill { target: Target::Leader { fallback: 1 } }, &peers), None);
        assert_eq!(not_running(&Fault::Halves { minority: vec![1] }, &peers), None);
        let _ = std::fs::remove_dir_all(peers.dir());
    }
}
