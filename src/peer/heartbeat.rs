//! Heartbeats a follower forwards to the leader: which leader and term each batch is for,
//! and how each heartbeat is dated. The rules, without I/O; the forwarding task and the
//! leader's side are in `core.rs`.
//!
//! # Term
//!
//! A follower notes, with every heartbeat it accepts, the leader and term it believes in at
//! that moment (a [`View`]; none while no leader is known, and such a beat goes to the next
//! leader it learns of). It forwards a heartbeat only to that leader in that term: each
//! batch holds the heartbeats of one view and names it. The leader takes a batch only while
//! it leads in that very term ([`admit`]); any other batch, for instance one a partition
//! held up until after an election, even an election this same peer won again, is refused
//! and counted, and the follower drops it. Heartbeats received under an earlier view are
//! dropped by the follower too. Nothing is retried with another leader: the node beats again
//! within its interval, and a new leader grants every node a grace of `down_after_ms` from
//! its takeover, which a beat from before the takeover could not extend.
//!
//! # Dating
//!
//! The leader's failure detector holds a node up for `down_after_ms` after its last beat, so
//! a heartbeat must never be dated later than it was received. The follower knows how long
//! a beat waited in its queue, but nobody knows how long a batch then spent on the network
//! (in a socket buffer, retransmitted after a partition heals), and the two peers' clocks
//! cannot be compared. So the follower dates every heartbeat on the leader's own clock
//! ([`Clock`]: microseconds of the leader's monotonic clock since it started), by a lower
//! bound:
//!
//! - each answer of the leader to a batch carries its clock `L`, read just before it
//!   answered; the follower notes the moment `R` the answer arrived ([`Reading`]). At `R`
//!   the leader's clock was past `L`;
//! - a heartbeat the follower received at `r` is dated `L + (r - R)` (`r` may be before or
//!   after `R`), which is at or before the leader's clock at `r`, however long the batch
//!   takes afterwards;
//! - the leader records it at that moment of its clock (never later than now).
//!
//! The date errs early, by the answer's trip from the leader, never late. Of the readings of
//! one view the follower keeps the one that gives the latest dates (a slow answer gives
//! earlier ones), and it takes a new one at least every [`REFRESH`] / 2 while it forwards,
//! so that the two clocks' drift (some parts per million) stays far below a millisecond.
//! The first batch of a view, or one after [`REFRESH`] without a reading, is preceded by an
//! empty batch, which the leader answers with its clock only. A reading is bound to its
//! view: a leader that restarts starts a new clock, and it can lead again only in a newer
//! term, whose batches need a reading of their own.

use std::time::{Duration, Instant};

use crate::dispatch::NodeMetrics;
use crate::raft::rpc::DatedHeartbeat;
use crate::raft::PeerId;

/// A follower's readings of a leader's clock serve this long at most.
pub const REFRESH: Duration = Duration::from_secs(10);

/// A leader and its term, as a peer saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub leader: PeerId,
    pub term: u64,
}

/// Whether a leader takes a batch of heartbeats addressed to `to`. `leading` is its own
/// view while it leads (itself, its current term), `None` while it does not.
pub fn admit(leading: Option<View>, to: View) -> bool {
    leading == Some(to)
}

/// A heartbeat a follower accepted, waiting to be forwarded.
#[derive(Debug, Clone)]
pub struct Received {
    pub node: String,
    pub metrics: NodeMetrics,
    /// When this peer received it.
    pub at: Instant,
    /// The leader and term this peer knew of then.
    pub view: Option<View>,
}

/// Splits a batch into the heartbeats that may go to the leader of `view` (received under
/// it, or while no leader was known) and the number of others, received under an earlier
/// leader or term.
pub fn for_view(batch: Vec<Received>, view: View) -> (Vec<Received>, usize) {
    let all = batch.len();
    let kept: Vec<Received> = batch.into_iter().filter(|b| b.view.is_none_or(|v| v == view)).collect();
    let stale = all - kept.len();
    (kept, stale)
}

/// The leader's clock for forwarded heartbeats: microseconds since this peer started, on
/// its monotonic clock. Only this process can turn a reading back into a moment.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self { epoch: Instant::now() }
    }
}

impl Clock {
    /// The clock at `now`, rounded down.
    pub fn read(&self, now: Instant) -> u64 {
        micros_down(now.saturating_duration_since(self.epoch))
    }

    /// The moment a reading names, never later than `now`.
    pub fn moment(&self, reading: u64, now: Instant) -> Instant {
        self.epoch.checked_add(Duration::from_micros(reading)).map_or(now, |m| m.min(now))
    }
}

/// A follower's reading of a leader's clock: when this peer got it (`at`), the leader's
/// clock was at least `leader_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub leader_us: u64,
    pub at: Instant,
}

impl Reading {
    /// The leader's clock at `t` (a moment of this peer), as a lower bound; `None` for a
    /// moment before the leader's clock began.
    pub fn date(&self, t: Instant) -> Option<u64> {
        if t >= self.at {
            Some(self.leader_us.saturating_add(micros_down(t - self.at)))
        } else {
            self.leader_us.checked_sub(micros_up(self.at - t))
        }
    }
}

/// What a follower knows of the leader of one view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressee {
    pub view: View,
    /// The best recent reading of its clock; `None` for a leader of an earlier version,
    /// which does not understand dated batches (it gets heartbeats with their age, as that
    /// version expects).
    pub clock: Option<Reading>,
}

impl Addressee {
    /// Whether batches for `view` can be dated with this at `now`: the same view, and a
    /// reading younger than [`REFRESH`].
    pub fn serves(&self, view: View, now: Instant) -> bool {
        self.view == view && self.clock.is_none_or(|r| now.saturating_duration_since(r.at) < REFRESH)
    }

    /// Takes a new reading, unless the one held gives later dates and is younger than
    /// [`REFRESH`] / 2.
    pub fn read(&mut self, new: Reading) {
        let Some(held) = &mut self.clock else { return };
        let better = held.date(new.at).is_some_and(|d| d > new.leader_us);
        let recent = new.at.saturating_duration_since(held.at) < REFRESH / 2;
        if !(better && recent) {
            *held = new;
        }
    }
}

/// Dates each heartbeat on the leader's clock, from `reading`; also returns how many were
/// received before the leader's clock began (dropped: older than the leader itself).
pub fn date(beats: Vec<Received>, reading: &Reading) -> (Vec<DatedHeartbeat>, usize) {
    let all = beats.len();
    let dated: Vec<DatedHeartbeat> = beats
        .into_iter()
        .filter_map(|b| reading.date(b.at).map(|at_us| DatedHeartbeat { node: b.node, metrics: b.metrics, at_us }))
        .collect();
    let early = all - dated.len();
    (dated, early)
}

fn micros_down(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn micros_up(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn view(leader: PeerId, term: u64) -> View {
        View { leader, term }
    }

    fn received(node: &str, at: Instant, view: Option<View>) -> Received {
        Received { node: node.into(), metrics: NodeMetrics::default(), at, view }
    }

    #[test]
    fn a_leader_takes_only_batches_for_itself_in_its_current_term() {
        assert!(admit(Some(view(1, 5)), view(1, 5)));
        assert!(!admit(Some(view(1, 7)), view(1, 5)), "the same peer, leading again in a newer term");
        assert!(!admit(Some(view(1, 5)), view(1, 6)));
        assert!(!admit(Some(view(1, 5)), view(2, 5)), "meant for another peer");
        assert!(!admit(None, view(1, 5)), "no longer leading");
    }

    #[test]
    fn heartbeats_of_an_earlier_view_are_not_forwarded() {
        let t = Instant::now();
        let batch = vec![
            received("a", t, Some(view(1, 4))),
            received("b", t, Some(view(1, 5))),
            received("c", t, None),
            received("d", t, Some(view(2, 5))),
        ];
        let (kept, stale) = for_view(batch, view(1, 5));
        assert_eq!(kept.iter().map(|b| b.node.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(stale, 2);
    }

    #[test]
    fn a_date_is_never_later_than_the_receipt_however_long_the_batch_takes() {
        let leader = Clock::default();
        let t0 = leader.epoch + Duration::from_secs(100);
        // The leader answers at t0 (its clock read then); the answer takes 3 ms to arrive.
        let reading = Reading { leader_us: leader.read(t0), at: t0 + 3 * MS };
        for offset_ms in [-5000i64, -1, 0, 1, 250, 5000] {
            let r = if offset_ms < 0 {
                reading.at - Duration::from_millis(offset_ms.unsigned_abs())
            } else {
                reading.at + Duration::from_millis(offset_ms as u64)
            };
            let us = reading.date(r).unwrap();
            // However late the batch arrives, the leader records at most the moment of receipt.
            for arrival in [r + MS, r + Duration::from_secs(10), r + Duration::from_secs(3600)] {
                let at = leader.moment(us, arrival);
                assert!(at <= r, "received at {r:?}, dated {at:?}");
                assert!(r - at <= 3 * MS + Duration::from_micros(2), "errs early by the answer's trip only");
            }
        }
    }

    #[test]
    fn a_moment_is_never_in_the_leaders_future_nor_before_its_clock() {
        let clock = Clock::default();
        let now = clock.epoch + Duration::from_secs(1);
        assert_eq!(clock.moment(clock.read(now) + 5_000_000, now), now);
        assert_eq!(clock.moment(u64::MAX, now), now);
        let reading = Reading { leader_us: 1_000, at: now };
        assert_eq!(reading.date(now - 2 * MS), None, "before the leader started");
        assert_eq!(reading.date(now - Duration::from_nanos(999_500)), Some(0));
        assert_eq!(reading.date(now - Duration::from_nanos(1_000_500)), None);
    }

    #[test]
    fn a_batch_is_dated_on_the_leaders_clock_and_beats_older_than_it_are_dropped() {
        let now = Instant::now() + Duration::from_secs(10);
        let reading = Reading { leader_us: 2_000_000, at: now };
        let beats = vec![received("a", now - Duration::from_millis(1500), None), received("b", now - 3 * MS, None)];
        let (dated, early) = date(beats.clone(), &reading);
        assert_eq!(
            dated.iter().map(|b| (b.node.as_str(), b.at_us)).collect::<Vec<_>>(),
            [("a", 500_000), ("b", 1_997_000)]
        );
        assert_eq!(early, 0);
        let young = Reading { leader_us: 1_000_000, at: now };
        let (dated, early) = date(beats, &young);
        assert_eq!(dated.len(), 1);
        assert_eq!(early, 1);
    }

    #[test]
    fn the_reading_with_the_latest_dates_is_kept_until_it_ages() {
        let t = Instant::now();
        let first = Reading { leader_us: 1_000_000, at: t };
        let mut a = Addressee { view: view(1, 5), clock: Some(first) };
        // An answer that took 400 ms to come back: it gives earlier dates; kept out.
        let slow = Reading { leader_us: 1_100_000, at: t + 500 * MS };
        a.read(slow);
        assert_eq!(a.clock, Some(first));
        // A quick one gives later dates (the first answer had been slow too): taken.
        let quick = Reading { leader_us: 1_999_000, at: t + 700 * MS };
        a.read(quick);
        assert_eq!(a.clock, Some(quick));
        // Past REFRESH / 2 any new reading replaces it, so that clock drift cannot add up.
        let later = Reading { leader_us: 1_999_000 + 5_000_000, at: t + 700 * MS + REFRESH / 2 + 100 * MS };
        a.read(later);
        assert_eq!(a.clock, Some(later));

        assert!(a.serves(view(1, 5), later.at + REFRESH - MS));
        assert!(!a.serves(view(1, 5), later.at + REFRESH), "too old: ask for a new reading");
        assert!(!a.serves(view(1, 6), later.at), "another term");
        let legacy = Addressee { view: view(2, 6), clock: None };
        assert!(legacy.serves(view(2, 6), later.at + REFRESH * 100));
        assert!(!legacy.serves(view(2, 7), later.at));
    }
}
