//! The fault schedule: which faults, when and for how long, drawn from a seed before the
//! run starts, so that the same seed gives the same schedule. Only "the leader" is
//! resolved when the fault fires; the schedule carries a seeded fallback for when no
//! leader is known.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A family of faults, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Nemesis {
    /// Network partitions between peers (iptables); clients still reach every peer.
    Partition,
    /// kill -9 a peer, restart it at the heal.
    Kill,
    /// SIGSTOP a peer, SIGCONT at the heal.
    Pause,
    /// Delay and loss on every peer's link (tc netem).
    Netem,
    /// Add a spare peer to the cluster under load, remove it at the heal.
    Membership,
    /// Crash a follower at a snapshot it builds or installs.
    #[serde(rename = "snapshot-crash")]
    SnapshotCrash,
    /// Skew peers' wall clocks (libfaketime).
    Clock,
    /// kill -9 a majority at once, restart them at the heal.
    #[serde(rename = "kill-majority")]
    KillMajority,
    /// One follower loses a share of its Raft packets for 30 s; the others must keep their
    /// leader and term.
    Lossy,
}

impl Nemesis {
    pub const ALL: [Nemesis; 9] = [
        Nemesis::Partition,
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Netem,
        Nemesis::Membership,
        Nemesis::SnapshotCrash,
        Nemesis::Clock,
        Nemesis::KillMajority,
        Nemesis::Lossy,
    ];

    pub fn parse_list(list: &str) -> Result<Vec<Nemesis>, String> {
        let mut out = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "partition" => out.insert(Nemesis::Partition),
                "kill" => out.insert(Nemesis::Kill),
                "pause" => out.insert(Nemesis::Pause),
                "netem" | "delay" | "loss" => out.insert(Nemesis::Netem),
                "membership" => out.insert(Nemesis::Membership),
                "snapshot-crash" => out.insert(Nemesis::SnapshotCrash),
                "clock" => out.insert(Nemesis::Clock),
                "kill-majority" => out.insert(Nemesis::KillMajority),
                "lossy" => out.insert(Nemesis::Lossy),
                "all" => {
                    out.extend(Nemesis::ALL);
                    true
                }
                "none" => true,
                other => {
                    return Err(format!(
                        "unknown nemesis '{other}'; choose from partition, kill, pause, netem (or delay, loss), \
                         membership, snapshot-crash, clock, kill-majority, lossy, all, none"
                    ))
                }
            };
        }
        Ok(out.into_iter().collect())
    }
}

/// Which peer a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The leader when the fault fires (`fallback` when none is known).
    Leader {
        fallback: u64,
    },
    Node {
        id: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// The leader (when it fires) alone on one side.
    IsolateLeader {
        fallback: u64,
    },
    /// A minority cut off from the majority.
    Halves {
        minority: Vec<u64>,
    },
    /// Two halves that cannot talk, and one peer that talks to both.
    Bridge {
        bridge: u64,
        left: Vec<u64>,
        right: Vec<u64>,
    },
    /// Each peer talks to its two neighbours in a ring only (5 peers).
    Ring {
        order: Vec<u64>,
    },
    Kill {
        target: Target,
    },
    Pause {
        target: Target,
    },
    Netem {
        delay_ms: u32,
        jitter_ms: u32,
        loss_percent: u32,
    },
    /// Start `spare` (a fresh peer, not a member), add it through member `via`
    /// (`POST /v1/cluster/peers`), remove it at the heal (`DELETE /v1/cluster/peers/ID`).
    Membership {
        spare: u64,
        via: u64,
    },
    /// Replace an original member under load: start `spare` and add it through `via`,
    /// remove `victim` (`DELETE /v1/cluster/peers/ID`), stop it and wipe its data; at the
    /// heal add it back fresh and remove `spare`, so the cluster ends with its original ids.
    Replace {
        spare: u64,
        victim: Target,
        via: u64,
    },
    /// kill -9 `target` (or, when it leads, the next follower) right after its log shows
    /// the snapshot step, or restart it with a crash point armed until it aborts there;
    /// then restart it and wait until it caught up.
    SnapshotCrash {
        target: u64,
        during: SnapshotStep,
    },
    /// Set these peers' wall clocks this many seconds off; back to true time at the heal.
    Clock {
        skews: Vec<Skew>,
    },
    /// kill -9 a majority; while they are down no write can be acknowledged.
    KillMajority {
        victims: Vec<u64>,
    },
    /// Drop `percent` % of one follower's Raft packets, both ways, for [`LOSSY_DURATION`]:
    /// the follower is chosen when the fault fires (the leader is known only then), the
    /// `pick`-th of the followers in id order (modulo their number).
    LossyFollower {
        pick: u64,
        percent: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotStep {
    /// The follower builds a snapshot of its own (`snapshot built`).
    Build,
    /// The follower, kept down until the leader purged its log, receives the leader's
    /// snapshot on restart (`snapshot installed from leader`).
    Install,
    /// Crash points inside switchboard (`SWITCHBOARD_FAILPOINT`): the follower is restarted
    /// with one armed and aborts there. Building its own snapshot, before or after it is
    /// written;
    BuildBeforePersist,
    BuildAfterPersist,
    /// installing the leader's (kept down first, as for `Install`), before or after it is
    /// written.
    InstallBeforePersist,
    InstallAfterPersist,
}

impl SnapshotStep {
    pub const ALL: [SnapshotStep; 6] = [
        SnapshotStep::Build,
        SnapshotStep::Install,
        SnapshotStep::BuildBeforePersist,
        SnapshotStep::BuildAfterPersist,
        SnapshotStep::InstallBeforePersist,
        SnapshotStep::InstallAfterPersist,
    ];

    /// The crash point armed in switchboard, for the failpoint shapes.
    pub fn failpoint(self) -> Option<&'static str> {
        match self {
            SnapshotStep::Build | SnapshotStep::Install => None,
            SnapshotStep::BuildBeforePersist => Some("snapshot-build-before-persist"),
            SnapshotStep::BuildAfterPersist => Some("snapshot-build-after-persist"),
            SnapshotStep::InstallBeforePersist => Some("snapshot-install-before-persist"),
            SnapshotStep::InstallAfterPersist => Some("snapshot-install-after-persist"),
        }
    }

    /// Whether the follower must receive the leader's snapshot (kept down until the leader
    /// purged past its log).
    pub fn installs(self) -> bool {
        matches!(self, SnapshotStep::Install | SnapshotStep::InstallBeforePersist | SnapshotStep::InstallAfterPersist)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Skew {
    pub peer: u64,
    pub offset_secs: i64,
}

impl Fault {
    pub fn nemesis(&self) -> Nemesis {
        match self {
            Fault::IsolateLeader { .. } | Fault::Halves { .. } | Fault::Bridge { .. } | Fault::Ring { .. } => {
                Nemesis::Partition
            }
            Fault::Kill { .. } => Nemesis::Kill,
            Fault::Pause { .. } => Nemesis::Pause,
            Fault::Netem { .. } => Nemesis::Netem,
            Fault::Membership { .. } | Fault::Replace { .. } => Nemesis::Membership,
            Fault::SnapshotCrash { .. } => Nemesis::SnapshotCrash,
            Fault::Clock { .. } => Nemesis::Clock,
            Fault::KillMajority { .. } => Nemesis::KillMajority,
            Fault::LossyFollower { .. } => Nemesis::Lossy,
        }
    }
}

/// One fault of the schedule: it fires `at` after the workload starts and is healed
/// `duration` later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scheduled {
    pub index: usize,
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub fault: Fault,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Quiet time at the start, so the workload has a baseline.
const LEAD_IN: Duration = Duration::from_secs(3);
/// Faults last 5-9 s: long enough for an election (1.5-2 s) and some progress after it.
const MIN_FAULT_MS: u64 = 5_000;
const MAX_FAULT_MS: u64 = 9_000;
/// Healthy gaps of 3-5 s between faults.
const MIN_GAP_MS: u64 = 3_000;
const MAX_GAP_MS: u64 = 5_000;
/// A lossy follower lasts longer than the other faults: long enough for many of its
/// election timeouts to pass (each 1.1-1.6 s), and for TCP's retransmissions to back off.
pub const LOSSY_DURATION: Duration = Duration::from_secs(30);
/// The share of the lossy follower's Raft packets dropped, each way, in percent.
pub const LOSSY_PERCENT: std::ops::RangeInclusive<u32> = 30..=50;

/// The faults of a run of `time`, from `seed`. Families take turns in a seeded order, so
/// even a short run has every family requested. Faults never overlap. A lossy follower
/// that no longer fits in what is left of the run is left out (the next family may still
/// fit).
pub fn schedule(seed: u64, nemeses: &[Nemesis], peers: &[u64], time: Duration) -> Vec<Scheduled> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    if nemeses.is_empty() || peers.is_empty() {
        return out;
    }
    let mut turn: Vec<Nemesis> = Vec::new();
    let mut t = LEAD_IN;
    // Spare peers get fresh ids after the members', one per membership fault: a removed
    // peer is never started again.
    let mut next_spare = peers.iter().max().copied().unwrap_or(0) + 1;
    loop {
        let duration = Duration::from_millis(rng.gen_range(MIN_FAULT_MS..=MAX_FAULT_MS));
        if t + duration + Duration::from_secs(1) > time {
            break;
        }
        if turn.is_empty() {
            turn = nemeses.to_vec();
            turn.shuffle(&mut rng);
        }
        let nemesis = turn.pop().unwrap_or(Nemesis::Partition);
        let duration = if nemesis == Nemesis::Lossy { LOSSY_DURATION } else { duration };
        if t + duration + Duration::from_secs(1) > time {
            if nemeses.iter().all(|&n| n == Nemesis::Lossy) {
                break;
            }
            continue;
        }
        let fault = draw(&mut rng, nemesis, peers, &mut next_spare);
        out.push(Scheduled { index: out.len(), at: t, duration, fault });
        t += duration + Duration::from_millis(rng.gen_range(MIN_GAP_MS..=MAX_GAP_MS));
    }
    out
}

fn draw(rng: &mut ChaCha8Rng, nemesis: Nemesis, peers: &[u64], next_spare: &mut u64) -> Fault {
    let any = |rng: &mut ChaCha8Rng| peers[rng.gen_range(0..peers.len())];
    let target = |rng: &mut ChaCha8Rng| {
        let fallback = any(rng);
        if rng.gen_bool(0.5) {
            Target::Leader { fallback }
        } else {
            Target::Node { id: fallback }
        }
    };
    match nemesis {
        Nemesis::Partition => {
            let kinds = if peers.len() >= 5 { 4 } else { 3 };
            let mut shuffled = peers.to_vec();
            shuffled.shuffle(rng);
            match rng.gen_range(0..kinds) {
                0 => Fault::IsolateLeader { fallback: any(rng) },
                1 => {
                    let mut minority = shuffled[..(peers.len() - 1) / 2].to_vec();
                    minority.sort();
                    Fault::Halves { minority }
                }
                2 => {
                    let bridge = shuffled[0];
                    let rest = &shuffled[1..];
                    let (mut left, mut right) = (rest[..rest.len() / 2].to_vec(), rest[rest.len() / 2..].to_vec());
                    left.sort();
                    right.sort();
                    Fault::Bridge { bridge, left, right }
                }
                _ => Fault::Ring { order: shuffled },
            }
        }
        Nemesis::Kill => Fault::Kill { target: target(rng) },
        Nemesis::Pause => Fault::Pause { target: target(rng) },
        Nemesis::Netem => Fault::Netem {
            delay_ms: rng.gen_range(20..=150),
            jitter_ms: rng.gen_range(0..=50),
            loss_percent: rng.gen_range(2..=15),
        },
        Nemesis::SnapshotCrash => Fault::SnapshotCrash {
            target: any(rng),
            during: SnapshotStep::ALL[rng.gen_range(0..SnapshotStep::ALL.len())],
        },
        Nemesis::Clock => {
            // One or two peers; small and large skews, ahead and behind.
            let mut shuffled = peers.to_vec();
            shuffled.shuffle(rng);
            let n = rng.gen_range(1..=2).min(peers.len());
            let mut skews: Vec<Skew> = shuffled[..n]
                .iter()
                .map(|&peer| {
                    let magnitude = [5, 30, 120, 3_600, 86_400][rng.gen_range(0..5)];
                    let sign = if rng.gen_bool(0.5) { 1 } else { -1 };
                    Skew { peer, offset_secs: sign * magnitude }
                })
                .collect();
            skews.sort_by_key(|s| s.peer);
            Fault::Clock { skews }
        }
        Nemesis::KillMajority => {
            let mut shuffled = peers.to_vec();
            shuffled.shuffle(rng);
            let mut victims = shuffled[..peers.len() / 2 + 1].to_vec();
            victims.sort_unstable();
            Fault::KillMajority { victims }
        }
        Nemesis::Lossy => {
            Fault::LossyFollower { pick: rng.gen_range(0..peers.len() as u64), percent: rng.gen_range(LOSSY_PERCENT) }
        }
        Nemesis::Membership => {
            let spare = *next_spare;
            *next_spare += 1;
            if rng.gen_bool(0.5) {
                Fault::Membership { spare, via: any(rng) }
            } else {
                Fault::Replace { spare, victim: target(rng), via: any(rng) }
            }
        }
    }
}

/// The spare peers a schedule starts (beyond the members), in order.
pub fn spares(schedule: &[Scheduled]) -> Vec<u64> {
    schedule
        .iter()
        .filter_map(|s| match s.fault {
            Fault::Membership { spare, .. } | Fault::Replace { spare, .. } => Some(spare),
            _ => None,
        })
        .collect()
}

/// For a partition: which peers each peer refuses traffic from. Symmetric.
pub fn grudges(fault: &Fault, peers: &[u64], leader: Option<u64>) -> BTreeMap<u64, BTreeSet<u64>> {
    let mut cut: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut sever = |a: u64, b: u64| {
        if a != b {
            cut.entry(a).or_default().insert(b);
            cut.entry(b).or_default().insert(a);
        }
    };
    match fault {
        Fault::IsolateLeader { fallback } => {
            let alone = leader.unwrap_or(*fallback);
            for &p in peers {
                sever(alone, p);
            }
        }
        Fault::Halves { minority } => {
            for &a in minority {
                for &b in peers.iter().filter(|p| !minority.contains(p)) {
                    sever(a, b);
                }
            }
        }
        Fault::Bridge { left, right, .. } => {
            for &a in left {
                for &b in right {
                    sever(a, b);
                }
            }
        }
        Fault::Ring { order } => {
            let n = order.len();
            for i in 0..n {
                for j in 0..n {
                    let distance = (i + n - j) % n;
                    if distance != 0 && distance != 1 && distance != n - 1 {
                        sever(order[i], order[j]);
                    }
                }
            }
        }
        _ => {}
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let peers = [1, 2, 3, 4, 5];
        let all = Nemesis::ALL;
        let a = schedule(7, &all, &peers, Duration::from_secs(120));
        assert_eq!(a, schedule(7, &all, &peers, Duration::from_secs(120)));
        assert_ne!(a, schedule(8, &all, &peers, Duration::from_secs(120)));
        for s in &a {
            assert!(s.at + s.duration <= Duration::from_secs(120));
        }
        for w in a.windows(2) {
            assert!(w[0].at + w[0].duration < w[1].at, "faults overlap: {w:?}");
        }
    }

    #[test]
    fn a_short_run_has_every_family_asked_for() {
        let nemeses = [Nemesis::Partition, Nemesis::Kill, Nemesis::Pause];
        for seed in 0..20 {
            let s = schedule(seed, &nemeses, &[1, 2, 3], Duration::from_secs(60));
            for n in nemeses {
                assert!(s.iter().any(|f| f.fault.nemesis() == n), "seed {seed} lacks {n:?}: {s:?}");
            }
        }
    }

    #[test]
    fn partitions_keep_a_majority_and_are_symmetric() {
        let peers = [1, 2, 3, 4, 5];
        let halves = grudges(&Fault::Halves { minority: vec![2, 4] }, &peers, None);
        assert_eq!(halves[&2], BTreeSet::from([1, 3, 5]));
        assert_eq!(halves[&1], BTreeSet::from([2, 4]));
        let leader = grudges(&Fault::IsolateLeader { fallback: 1 }, &peers, Some(3));
        assert_eq!(leader[&3], BTreeSet::from([1, 2, 4, 5]));
        assert_eq!(leader[&1], BTreeSet::from([3]));
        let ring = grudges(&Fault::Ring { order: vec![1, 2, 3, 4, 5] }, &peers, None);
        assert_eq!(ring[&1], BTreeSet::from([3, 4]));
        assert_eq!(ring[&3], BTreeSet::from([1, 5]));
        let bridge = grudges(&Fault::Bridge { bridge: 2, left: vec![1], right: vec![3] }, &[1, 2, 3], None);
        assert!(!bridge.contains_key(&2));
        assert_eq!(bridge[&1], BTreeSet::from([3]));
        for (a, bs) in ring.iter().chain(&halves) {
            for b in bs {
                assert!(ring.get(b).is_some_and(|s| s.contains(a)) || halves[b].contains(a));
            }
        }
    }

    #[test]
    fn nemesis_lists() {
        assert_eq!(Nemesis::parse_list("kill, partition,kill").unwrap(), vec![Nemesis::Partition, Nemesis::Kill]);
        assert_eq!(Nemesis::parse_list("delay").unwrap(), vec![Nemesis::Netem]);
        assert_eq!(Nemesis::parse_list("lossy").unwrap(), vec![Nemesis::Lossy]);
        assert!(Nemesis::parse_list("all").unwrap().contains(&Nemesis::Lossy));
        assert_eq!(Nemesis::parse_list("clock,snapshot-crash").unwrap(), vec![Nemesis::SnapshotCrash, Nemesis::Clock]);
        assert!(Nemesis::parse_list("clocks").unwrap_err().contains("unknown nemesis 'clocks'"));
    }

    #[test]
    fn a_lossy_follower_lasts_30_s_and_fits_in_the_run() {
        let s = schedule(1, &[Nemesis::Lossy], &[1, 2, 3], Duration::from_secs(45));
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].at, s[0].duration), (LEAD_IN, LOSSY_DURATION));
        assert!(schedule(1, &[Nemesis::Lossy], &[1, 2, 3], Duration::from_secs(30)).is_empty());
        for seed in 0..20 {
            let s = schedule(seed, &Nemesis::ALL, &[1, 2, 3, 4, 5], Duration::from_secs(150));
            for f in &s {
                assert!(f.at + f.duration + Duration::from_secs(1) <= Duration::from_secs(150), "{f:?}");
                if let Fault::LossyFollower { percent, .. } = f.fault {
                    assert!(LOSSY_PERCENT.contains(&percent) && f.duration == LOSSY_DURATION, "{f:?}");
                }
            }
            for w in s.windows(2) {
                assert!(w[0].at + w[0].duration < w[1].at, "faults overlap: {w:?}");
            }
            let families: BTreeSet<Nemesis> = s.iter().map(|f| f.fault.nemesis()).collect();
            assert_eq!(families.len(), Nemesis::ALL.len(), "seed {seed}: {families:?}");
        }
    }

    #[test]
    fn snapshot_crashes_come_in_every_shape() {
        let mut seen = BTreeSet::new();
        for seed in 0..20 {
            for s in schedule(seed, &[Nemesis::SnapshotCrash], &[1, 2, 3], Duration::from_secs(40)) {
                if let Fault::SnapshotCrash { during, .. } = s.fault {
                    seen.insert(format!("{during:?}"));
                }
            }
        }
        assert_eq!(seen.len(), SnapshotStep::ALL.len(), "{seen:?}");
    }

    #[test]
    fn membership_faults_use_a_fresh_spare_each() {
        let s = schedule(3, &[Nemesis::Membership, Nemesis::Kill], &[1, 2, 3], Duration::from_secs(120));
        assert_eq!(spares(&s), (4..4 + spares(&s).len() as u64).collect::<Vec<_>>());
        assert!(spares(&s).len() >= 2, "{s:?}");
        for f in &s {
            if let Fault::Membership { via, .. } | Fault::Replace { via, .. } = f.fault {
                assert!([1, 2, 3].contains(&via));
            }
        }
        let both = (0..10)
            .flat_map(|seed| schedule(seed, &[Nemesis::Membership], &[1, 2, 3], Duration::from_secs(40)))
            .map(|f| matches!(f.fault, Fault::Replace { .. }))
            .collect::<BTreeSet<bool>>();
        assert_eq!(both.len(), 2, "both a spare added and removed, and a member replaced");
    }
}
