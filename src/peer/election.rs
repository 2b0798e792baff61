//! Elections with pre-vote and check-quorum. openraft's own election timer is off
//! (`enable_elect = false`); this module decides when a peer stands for election and when a
//! leader gives up.
//!
//! # Why
//!
//! In plain Raft a follower that stops hearing from the leader, for instance because its
//! own link drops packets, raises its term and asks for votes. The others refuse while the
//! leader is healthy (openraft's leader lease refuses votes for `election_max_ms` after a
//! leader was last heard), but the raised term alone does the harm: the leader's next
//! AppendEntries to that follower is answered with the higher vote and the leader steps
//! down, and a leader whose own lease has run out grants the higher vote outright. One
//! lossy follower then deposes a healthy leader again and again. Pre-vote (Raft thesis
//! §9.6, etcd, TiKV) asks first and raises the term only when a majority would follow.
//!
//! # Rules
//!
//! - **Timer.** A voter that has heard nothing from a leader (an AppendEntries it accepted,
//!   or a vote it granted) for its election timeout runs a pre-vote. The timeout is drawn
//!   anew at each attempt from `lease + heartbeat + [0, election_max - election_min]`,
//!   where `lease` is `election_max_ms`, openraft's leader lease.
//! - **Pre-vote.** It asks every other voter: would you vote for me in `term + 1`, given
//!   my last log id? A voter says yes only if it has not heard from a leader within the
//!   lease (a leader: from a quorum) and the candidate's last log id is at least its own.
//!   Answering changes nothing on the voter.
//! - **Election.** With yeses, its own included, from a majority of every configuration of
//!   the membership (both halves of a joint one), it calls `Raft::trigger().elect()`:
//!   openraft raises the term and asks for the real votes. Without them it draws a new
//!   timeout and asks again later; its term has not moved.
//! - **Check-quorum.** A leader that has led for longer than the lease and has had no
//!   acknowledgement from a quorum for longer than the lease steps down.
//!
//! # Invariants
//!
//! - The term rises only after a majority said it has no leader. A peer cut off from the
//!   leader but not from the others never raises it, so the majority keeps its leader and
//!   term.
//! - Pre-vote is advisory. Safety (one leader per term, a leader holds every committed
//!   entry) is openraft's vote, which checks the log and the lease again.
//! - The pre-vote's "no leader within the lease" and openraft's lease are the same span,
//!   and a candidate waits a heartbeat longer than that: a pre-vote granted is a vote
//!   granted unless a leader spoke in between.
//! - A leader cut off from its quorum steps down after the lease; the majority can elect
//!   only after the lease and a heartbeat, so two peers rarely both claim to lead.
//!
//! # Caveats
//!
//! - openraft 0.9 offers no call that makes a leader step down. Check-quorum hands the
//!   leader's Raft a vote request for `term + 1` from peer 0, which no peer can be (ids are
//!   positive). The leader grants it, as any voter does once its lease has run out, and
//!   becomes a follower of `term + 1` whose vote can never win. It is the lowest vote of that
//!   term, so any real candidate or leader of `term + 1` or later supersedes it. Only the
//!   stepped-down leader's term moves; the majority is already there, or beyond.
//! - Peers of a version without pre-vote do not understand the question; they count as a
//!   no. They still run openraft's own timer, so a mixed cluster keeps electing leaders
//!   while it is upgraded.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::raft::VoteRequest;
use openraft::{ServerState, Vote};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::Peer;
use crate::raft::rpc::{Connection, PreVote, Request, Response};
use crate::raft::types::LogId;
use crate::raft::PeerId;

/// The peer a step-down vote is cast for: no peer has id 0.
const NOBODY: PeerId = 0;

/// When openraft's timer would elect, this module does: the election timeouts and the
/// leader lease come from the same settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often the leader sends AppendEntries (`heartbeat_ms`).
    pub heartbeat: Duration,
    /// openraft's leader lease: `election_max_ms`.
    pub lease: Duration,
    /// `election_max_ms - election_min_ms`: the spread of the random part of the timeout.
    pub spread: Duration,
}

impl Timing {
    pub fn new(heartbeat_ms: u64, election_min_ms: u64, election_max_ms: u64) -> Self {
        Self {
            heartbeat: Duration::from_millis(heartbeat_ms),
            lease: Duration::from_millis(election_max_ms),
            spread: Duration::from_millis(election_max_ms.saturating_sub(election_min_ms)),
        }
    }

    /// The silence after which a voter asks for a pre-vote: past every voter's lease by a
    /// heartbeat, plus a random part so that voters rarely stand at once.
    pub fn election_timeout(&self, rng: &mut impl Rng) -> Duration {
        let jitter = rng.gen_range(0..=self.spread.as_millis() as u64);
        self.lease + self.heartbeat + Duration::from_millis(jitter)
    }

    /// How long the candidate waits for the pre-vote answers: a lost answer is a no.
    pub fn pre_vote_timeout(&self) -> Duration {
        self.lease / 2
    }
}

/// Whether this peer grants a pre-vote: no leader heard within the lease, and the
/// candidate's log at least as up to date as this peer's.
pub fn grant(silence: Duration, lease: Duration, own_last: Option<&LogId>, candidate_last: Option<&LogId>) -> bool {
    silence > lease && candidate_last >= own_last
}

/// Whether `granted` holds a majority of every configuration (one, or both halves of a
/// joint one).
pub fn is_quorum(configs: &[BTreeSet<PeerId>], granted: &BTreeSet<PeerId>) -> bool {
    !configs.is_empty() && configs.iter().all(|voters| voters.intersection(granted).count() * 2 > voters.len())
}

/// Whether a leader must step down: it has led for longer than the lease and no quorum
/// acknowledged it within the lease (`None`: none ever did in this term).
pub fn lost_quorum(led_for: Duration, since_quorum_ack: Option<Duration>, lease: Duration) -> bool {
    led_for > lease && since_quorum_ack.unwrap_or(led_for) > lease
}

/// What this peer's elections did since it started: `GET /v1/cluster` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ElectionStats {
    /// Pre-votes a majority granted; each was followed by an election.
    pub pre_votes_won: u64,
    /// Pre-votes a majority refused (a leader was still heard, or a log was ahead).
    pub pre_votes_lost: u64,
    /// Times this peer stepped down as leader after losing its quorum.
    pub step_downs: u64,
}

/// The election state a [`Peer`] holds.
pub struct Election {
    pub timing: Timing,
    pre_votes_won: AtomicU64,
    pre_votes_lost: AtomicU64,
    step_downs: AtomicU64,
}

impl Election {
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            pre_votes_won: AtomicU64::new(0),
            pre_votes_lost: AtomicU64::new(0),
            step_downs: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> ElectionStats {
        ElectionStats {
            pre_votes_won: self.pre_votes_won.load(Ordering::Relaxed),
            pre_votes_lost: self.pre_votes_lost.load(Ordering::Relaxed),
            step_downs: self.step_downs.load(Ordering::Relaxed),
        }
    }
}

/// Answers another peer's pre-vote.
pub fn answer(peer: &Peer, request: &PreVote) -> bool {
    let own_last = peer.raft.data_metrics().borrow().last_log;
    let granted =
        grant(peer.since_leader_contact(), peer.election.timing.lease, own_last.as_ref(), request.last_log_id.as_ref());
    tracing::debug!(candidate = request.candidate, term = request.term, granted, "pre-vote asked");
    granted
}

/// The election loop, for the life of the peer: stands for election after a pre-vote as a
/// silent follower, steps down as a leader without a quorum.
pub async fn run(peer: Arc<Peer>) {
    let timing = peer.election.timing;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut timeout = timing.election_timeout(&mut rng);
    let mut last_attempt = Instant::now();
    let mut leading_since: Option<Instant> = None;
    loop {
        if peer.raft_fatal().is_some() {
            // Raft has stopped for good: the watcher of the Raft core stops the peer and
            // names the cause; this task has nothing more to do.
            return std::future::pending().await;
        }
        let now = Instant::now();
        let (state, is_voter) = {
            let m = peer.raft.metrics().borrow().clone();
            (m.state, m.membership_config.membership().voter_ids().any(|v| v == peer.id))
        };
        let wake = if state == ServerState::Leader {
            let since = *leading_since.get_or_insert(now);
            if check_quorum(&peer, now.duration_since(since)).await {
                leading_since = None;
                last_attempt = Instant::now();
            }
            now + timing.heartbeat
        } else if is_voter {
            leading_since = None;
            let silence = peer.since_leader_contact().min(now.duration_since(last_attempt));
            if silence >= timeout {
                stand(&peer).await;
                last_attempt = Instant::now();
                timeout = timing.election_timeout(&mut rng);
                last_attempt + timeout
            } else {
                now + (timeout - silence)
            }
        } else {
            // A learner, or not yet a member: nothing to decide until the membership changes.
            leading_since = None;
            now + timing.heartbeat
        };
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// Runs a pre-vote and, with a majority, an election.
async fn stand(peer: &Peer) {
    let (term, configs, addrs) = {
        let m = peer.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let configs: Vec<BTreeSet<PeerId>> = membership.get_joint_config().clone();
        let addrs: Vec<(PeerId, String)> = membership
            .voter_ids()
            .filter(|id| *id != peer.id)
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.raft_addr.clone())))
            .collect();
        (m.current_term, configs, addrs)
    };
    let request =
        PreVote { candidate: peer.id, term: term + 1, last_log_id: peer.raft.data_metrics().borrow().last_log };
    let timeout = peer.election.timing.pre_vote_timeout();
    let asks = addrs.iter().map(|(id, addr)| {
        let request = request.clone();
        async move { ask(addr, peer.secret(), request, timeout).await.then_some(*id) }
    });
    let mut granted: BTreeSet<PeerId> = futures::future::join_all(asks).await.into_iter().flatten().collect();
    granted.insert(peer.id);

    // A leader may have spoken while the answers came in: then this peer has one again.
    let still_silent = peer.since_leader_contact() > peer.election.timing.lease;
    if !(is_quorum(&configs, &granted) && still_silent) {
        peer.election.pre_votes_lost.fetch_add(1, Ordering::Relaxed);
        tracing::info!(term = term + 1, granted = ?granted, "pre-vote lost: no election");
        return;
    }
    peer.election.pre_votes_won.fetch_add(1, Ordering::Relaxed);
    tracing::info!(term = term + 1, granted = ?granted, "pre-vote won: standing for election");
    if let Err(e) = peer.raft.trigger().elect().await {
        tracing::error!(error = %e, "cannot start an election");
    }
}

/// Asks one voter for its pre-vote; no answer in time is a no.
async fn ask(addr: &str, secret: &crate::raft::rpc::Secret, request: PreVote, timeout: Duration) -> bool {
    let exchange = async {
        let mut conn = Connection::connect(addr, secret, timeout).await?;
        conn.call(&Request::PreVote(request)).await
    };
    matches!(tokio::time::timeout(timeout, exchange).await, Ok(Ok(Response::PreVote(true))))
}

/// Steps down if this leader lost its quorum. Returns whether it did.
async fn check_quorum(peer: &Peer, led_for: Duration) -> bool {
    let lease = peer.election.timing.lease;
    let since_ack = peer.raft.data_metrics().borrow().millis_since_quorum_ack.map(Duration::from_millis);
    if !lost_quorum(led_for, since_ack, lease) {
        return false;
    }
    let (term, last_log_id) = {
        let m = peer.raft.metrics().borrow().clone();
        (m.current_term, peer.raft.data_metrics().borrow().last_log)
    };
    let step_down = VoteRequest::new(Vote::new(term + 1, NOBODY), last_log_id);
    match peer.raft.vote(step_down).await {
        Ok(r) if r.vote_granted => {
            peer.election.step_downs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                term = term + 1,
                since_quorum_ack_ms = ?since_ack.map(|d| d.as_millis()),
                "stepped down: no quorum acknowledged this leader within the lease"
            );
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::error!(error = %e, "cannot step down");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn set(ids: &[PeerId]) -> BTreeSet<PeerId> {
        ids.iter().copied().collect()
    }

    const LEASE: Duration = Duration::from_millis(1000);

    #[test]
    fn a_voter_that_hears_a_leader_refuses() {
        assert!(!grant(Duration::from_millis(100), LEASE, log(2, 10).as_ref(), log(2, 10).as_ref()));
        assert!(!grant(LEASE, LEASE, log(2, 10).as_ref(), log(2, 10).as_ref()));
        assert!(grant(LEASE + Duration::from_millis(1), LEASE, log(2, 10).as_ref(), log(2, 10).as_ref()));
    }

    #[test]
    fn a_candidate_behind_is_refused() {
        let silent = Duration::from_secs(5);
        assert!(!grant(silent, LEASE, log(2, 10).as_ref(), log(2, 9).as_ref()));
        assert!(!grant(silent, LEASE, log(3, 5).as_ref(), log(2, 9).as_ref()), "a later term beats a longer log");
        assert!(grant(silent, LEASE, log(2, 10).as_ref(), log(3, 5).as_ref()));
        assert!(grant(silent, LEASE, None, None), "an empty log is as up to date as another");
        assert!(!grant(silent, LEASE, log(1, 1).as_ref(), None));
    }

    #[test]
    fn a_majority_of_every_configuration_is_needed() {
        let three = vec![set(&[1, 2, 3])];
        assert!(!is_quorum(&three, &set(&[1])));
        assert!(is_quorum(&three, &set(&[1, 2])));
        assert!(!is_quorum(&three, &set(&[1, 9])), "a non-voter's yes does not count");
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!is_quorum(&joint, &set(&[1, 2])), "the new half has no majority");
        assert!(is_quorum(&joint, &set(&[1, 3, 4])));
        assert!(is_quorum(&[set(&[1])], &set(&[1])), "a single voter elects itself");
        assert!(!is_quorum(&[], &set(&[1])));
    }

    #[test]
    fn a_leader_steps_down_only_after_a_lease_without_quorum() {
        let ms = Duration::from_millis;
        assert!(!lost_quorum(ms(500), None, LEASE), "a new leader has a lease to hear from a quorum");
        assert!(lost_quorum(ms(1500), None, LEASE));
        assert!(!lost_quorum(ms(60_000), Some(ms(100)), LEASE));
        assert!(lost_quorum(ms(60_000), Some(ms(1001)), LEASE));
    }

    #[test]
    fn the_timeout_is_past_every_lease_and_spread() {
        let timing = Timing::new(100, 500, 1000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let drawn: Vec<Duration> = (0..1000).map(|_| timing.election_timeout(&mut rng)).collect();
        let (min, max) = (drawn.iter().min().unwrap(), drawn.iter().max().unwrap());
        assert!(*min >= Duration::from_millis(1100), "{min:?}");
        assert!(*max <= Duration::from_millis(1600), "{max:?}");
        assert!(*max - *min > Duration::from_millis(400), "the draws spread: {min:?}..{max:?}");
    }
}
