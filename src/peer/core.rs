use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::election::{self, Election, ElectionStats, Timing};
use super::heartbeat::{self, Addressee, Reading, Received, View};
use super::proposer::{self, Pending, ProposeError};
use super::Error;
use crate::config::Config;
use crate::dispatch::{NodeMetrics, Observations};
use crate::metrics::Metrics;
use crate::raft::rpc::{
    AgedHeartbeat, Connection, Forward, ForwardError, Forwarded, Request, Response, Secret, TermHeartbeats,
};
use crate::raft::{self, LogStore, Network, PeerId, PeerInfo, Raft, SharedState, StateMachineStore};
use crate::state::{Command, Outcome};
use crate::supervise::Tasks;

const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest wait between two attempts to reach a leader.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Idle connections kept per leader address for forwarding: at least as many as the
/// concurrent clients a follower serves, or it reconnects (and re-authenticates) under load.
const MAX_IDLE_CONNECTIONS: usize = 256;
/// Heartbeats a follower holds for the leader at most; more are refused (503).
const HEARTBEAT_QUEUE: usize = 65_536;
/// Heartbeats in one message to the leader at most.
const HEARTBEAT_BATCH: usize = 4096;

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began, on any peer.
    Linearizable,
    /// This peer's local copy, however far behind.
    Stale,
}

pub struct Peer {
    pub id: PeerId,
    pub info: PeerInfo,
    pub raft: Raft,
    pub state: SharedState,
    pub metrics: Arc<Metrics>,
    committed: Arc<AtomicU64>,
    secret: Secret,
    proposals: mpsc::Sender<Pending>,
    request_timeout: Duration,
    election_timeout: Duration,
    catch_up_timeout: Duration,
    pool: Mutex<HashMap<String, Vec<Connection>>>,
    http: reqwest::Client,
    /// The dispatch loop's soft state: what this peer heard from nodes as leader.
    pub observations: Arc<Observations>,
    heartbeats: mpsc::Sender<Received>,
    /// The clock forwarded heartbeats are dated on while this peer leads (`heartbeat.rs`).
    heartbeat_clock: heartbeat::Clock,
    /// When this peer last heard from a leader (as follower) or a quorum (as leader).
    leader_contact: Mutex<Instant>,
    /// Pre-vote and check-quorum (`election.rs`).
    pub(super) election: Election,
    /// The database stays open while the peer runs, also after Raft stopped on it.
    _db: raft::db::KeepOpen,
}

/// One member of the cluster as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub id: PeerId,
    #[serde(flatten)]
    pub info: PeerInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The peer that answered.
    pub id: PeerId,
    pub leader: Option<PeerId>,
    pub term: u64,
    pub state: String,
    pub members: Vec<Member>,
    pub learners: Vec<Member>,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    /// Log entries up to here have been purged behind a snapshot.
    pub purged_index: u64,
    /// What this peer's elections did since it started.
    pub elections: ElectionStats,
}

impl Peer {
    /// Opens the peer's storage under `config.data_dir` and starts Raft.
    pub async fn start(
        config: &Config,
        secret: Secret,
        metrics: Arc<Metrics>,
        tasks: &Tasks,
    ) -> Result<Arc<Self>, Error> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::Fatal(format!("cannot create data dir {}: {e}", config.data_dir.display())))?;
        let db = raft::db::open(&config.data_dir)
            .map_err(|e| Error::Fatal(format!("cannot open RocksDB in {}: {e}", config.data_dir.display())))?;
        let keep_open = raft::db::KeepOpen::new(db.clone());
        let log_store = LogStore::new(db.clone());
        let committed = log_store.committed_index();
        let sm =
            StateMachineStore::open(db, &config.data_dir.join("snapshots"), log_store.purge_gate(), metrics.clone())
                .map_err(|e| Error::Fatal(e.to_string()))?;
        let state = sm.shared();

        let rc = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: "switchboard".into(),
            heartbeat_interval: rc.heartbeat_ms,
            election_timeout_min: rc.election_min_ms,
            election_timeout_max: rc.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(rc.snapshot_every),
            max_in_snapshot_log_to_keep: rc.keep_logs,
            // Purge at every snapshot: one range delete, however few entries it drops.
            purge_batch_size: 1,
            install_snapshot_timeout: 10_000,
            // Elections are started by `election.rs`, after a pre-vote (openraft's own timer
            // only under the test hook that turns pre-vote off).
            enable_elect: raft::failpoint::elections_without_pre_vote(),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Fatal(format!("raft configuration: {e}")))?;

        let raft = Raft::new(config.id, Arc::new(raft_config), Network::new(secret.clone()), log_store, sm)
            .await
            .map_err(|e| Error::Fatal(format!("cannot start raft: {e}")))?;
        let commit_timeout = Duration::from_millis(config.http.request_timeout_ms);
        let proposals =
            proposer::spawn(tasks, raft.clone(), metrics.clone(), rc.max_batch, rc.max_in_flight, commit_timeout);
        tasks.spawn("raft core", watch_raft_core(raft.clone(), config.data_dir.clone(), tasks.clone()));

        let (heartbeats, heartbeat_rx) = mpsc::channel(HEARTBEAT_QUEUE);
        let info = PeerInfo {
            raft_addr: config.raft_addr.clone(),
            http_addr: config.http_addr.clone(),
            dns_addr: config.dns_addr.clone(),
            region: config.region.clone(),
        };
        Ok(Arc::new(Self {
            id: config.id,
            info,
            raft,
            state,
            metrics,
            committed,
            secret,
            proposals,
            request_timeout: Duration::from_millis(config.http.request_timeout_ms),
            election_timeout: Duration::from_millis(config.raft.election_max_ms),
            catch_up_timeout: Duration::from_millis(config.raft.catch_up_timeout_ms),
            pool: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client"),
            observations: Arc::new(Observations::default()),
            heartbeats,
            heartbeat_clock: heartbeat::Clock::default(),
            leader_contact: Mutex::new(Instant::now()),
            election: Election::new(Timing::new(rc.heartbeat_ms, rc.election_min_ms, rc.election_max_ms)),
            _db: keep_open,
        }))
        .inspect(|peer| {
            tasks.spawn("heartbeat forwarder", forward_heartbeats(peer.clone(), heartbeat_rx));
            if !raft::failpoint::elections_without_pre_vote() {
                tasks.spawn("elections", election::run(peer.clone()));
            }
        })
    }

    /// A leader's `AppendEntries` reached this peer, or it granted a candidate its vote:
    /// either way it waits a full election timeout before standing itself.
    pub fn touch_leader_contact(&self) {
        *self.leader_contact.lock().expect("contact lock") = Instant::now();
    }

    /// How long since this peer last heard from a leader; for a leader, since a quorum
    /// last acknowledged it.
    pub fn since_leader_contact(&self) -> Duration {
        {
            let rx = self.raft.metrics();
            let m = rx.borrow();
            if m.state == ServerState::Leader {
                // No acknowledgement yet: just elected, by a quorum that heard it.
                return Duration::from_millis(m.millis_since_quorum_ack.unwrap_or(0));
            }
        }
        self.leader_contact.lock().expect("contact lock").elapsed()
    }

    /// Why this peer's Raft stopped for good, or `None` while it runs. openraft stops on
    /// a storage error (a full or failing disk): the peer keeps serving HTTP and DNS from
    /// its last state, takes no part in the cluster, and needs a restart once the disk is
    /// fixed. It never acknowledged what it could not write, so nothing acknowledged is lost.
    pub fn raft_fatal(&self) -> Option<Fatal<PeerId>> {
        self.raft.metrics().borrow().running_state.as_ref().err().cloned()
    }

    /// Whether this peer is the leader now.
    pub fn is_leader(&self) -> bool {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// Proposes a command only if this peer leads: the dispatch loop's decisions must
    /// never be carried out by another peer.
    pub async fn write_as_leader(&self, command: Command) -> Result<Outcome, Error> {
        if !self.is_leader() {
            return Err(Error::NoLeader("this peer is no longer the leader".into()));
        }
        match self.propose(command, Instant::now() + self.request_timeout).await {
            Ok(result) => result.map_err(Error::Rejected),
            Err(Retry::Again(_)) => Err(Error::NoLeader("this peer is no longer the leader".into())),
            Err(Retry::Fail(e)) => Err(e),
        }
    }

    /// Whether this peer belongs to an initialised cluster (it has a membership with voters).
    pub fn is_member_of_a_cluster(&self) -> bool {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().next().is_some()
    }

    /// `NoLeader` for a peer that is not part of an initialised cluster, as every write gets.
    pub fn require_cluster(&self) -> Result<(), Error> {
        if self.is_member_of_a_cluster() {
            Ok(())
        } else {
            Err(Error::NoLeader(self.no_leader_message()))
        }
    }

    /// Accepts a heartbeat: recorded here as leader, else queued for the leader this peer
    /// knows of now, in its term.
    pub fn heartbeat(&self, node: String, metrics: NodeMetrics) -> Result<(), Error> {
        let at = Instant::now();
        let (leading, view) = {
            let rx = self.raft.metrics();
            let m = rx.borrow();
            let leading = m.state == ServerState::Leader && m.current_leader == Some(self.id);
            (leading, m.current_leader.map(|leader| View { leader, term: m.current_term }))
        };
        if leading {
            self.observations.record(&node, metrics, at);
        } else {
            self.heartbeats
                .try_send(Received { node, metrics, at, view })
                .map_err(|_| Error::NoLeader("too many heartbeats are waiting for the leader; try again".into()))?;
        }
        self.metrics.heartbeats.inc();
        Ok(())
    }

    /// The leader's latest metrics of these nodes (all when empty).
    pub async fn leader_metrics(&self, nodes: Vec<String>) -> Result<HashMap<String, NodeMetrics>, Error> {
        let pick = |all: HashMap<String, NodeMetrics>| -> HashMap<String, NodeMetrics> {
            if nodes.is_empty() {
                all
            } else {
                all.into_iter().filter(|(k, _)| nodes.contains(k)).collect()
            }
        };
        let deadline = Instant::now() + self.request_timeout;
        let leader = self.await_leader(None, deadline).await?;
        if leader == self.id {
            return Ok(pick(self.observations.metrics()));
        }
        match self.forward(leader, Forward::Metrics(nodes.clone()), deadline).await {
            Ok(Forwarded::Metrics(m)) => Ok(m.into_iter().collect()),
            Ok(other) => Err(Error::Fatal(format!("leader answered with {other:?}"))),
            Err(Retry::Again(_)) => Err(Error::NoLeader("the leader changed; try again".into())),
            Err(Retry::Fail(e)) => Err(e),
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    pub fn commit_index(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Ready: Raft runs, this peer is a member, a leader is known and was heard lately (by a
    /// leader: a quorum acknowledged it), and everything known to be committed is applied.
    /// "Lately" is the leader lease: a follower cut off from the leader, or removed without
    /// seeing its removal, turns unready after it even though it never raises the term
    /// (pre-vote) and so keeps naming its last leader.
    pub fn is_ready(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let member = m.membership_config.membership().get_node(&self.id).is_some();
        let heard = if m.state == ServerState::Leader {
            m.millis_since_quorum_ack.is_some_and(|ms| ms <= self.election_timeout.as_millis() as u64)
        } else {
            self.leader_contact.lock().expect("contact lock").elapsed() <= self.election_timeout
        };
        let running = m.running_state.is_ok();
        running && member && heard && m.current_leader.is_some() && applied >= self.commit_index()
    }

    /// Writes one command through the leader and returns its outcome once applied there.
    pub async fn write(&self, command: Command) -> Result<Outcome, Error> {
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        let mut hint = None;
        loop {
            let leader = self.await_leader(hint.take(), deadline).await?;
            let attempt = if leader == self.id {
                self.propose(command.clone(), deadline).await
            } else {
                self.metrics.forwarded_writes.inc();
                match self.forward(leader, Forward::Write(command.clone()), deadline).await {
                    Ok(Forwarded::Write(r)) => Ok(r),
                    Ok(other) => Err(Retry::Fail(Error::Fatal(format!("leader answered a write with {other:?}")))),
                    Err(e) => Err(e),
                }
            };
            match attempt {
                Ok(result) => {
                    self.metrics.write_seconds.observe(started.elapsed().as_secs_f64());
                    return result.map_err(Error::Rejected);
                }
                Err(Retry::Again(next)) => hint = next.filter(|l| *l != leader),
                Err(Retry::Fail(e)) => return Err(e),
            }
            self.pause_before_retry(hint, deadline).await?;
        }
    }

    /// Between two attempts: none when a peer named the new leader, else a short wait for
    /// Raft's view to change, so that a peer without a quorum never spins.
    async fn pause_before_retry(&self, hint: Option<PeerId>, deadline: Instant) -> Result<(), Error> {
        if Instant::now() >= deadline {
            return Err(Error::NoLeader(self.no_leader_message()));
        }
        if hint.is_none() {
            let mut rx = self.raft.metrics();
            rx.borrow_and_update();
            let until = std::cmp::min(deadline, Instant::now() + RETRY_PAUSE);
            let _ = tokio::time::timeout_at(until.into(), rx.changed()).await;
            // A change of metrics may come at once (e.g. a heartbeat): wait at least a little.
            tokio::time::sleep_until(std::cmp::min(deadline, Instant::now() + RETRY_PAUSE / 4).into()).await;
        }
        Ok(())
    }

    /// Proposes a command as leader and waits, up to the deadline, for it to be applied.
    async fn propose(
        &self,
        command: Command,
        deadline: Instant,
    ) -> Result<Result<Outcome, crate::state::Error>, Retry> {
        let (reply, rx) = oneshot::channel();
        self.proposals
            .send(Pending { command, reply })
            .await
            .map_err(|_| Retry::Fail(Error::Fatal("the proposer has stopped".into())))?;
        let Ok(reply) = tokio::time::timeout_at(deadline.into(), rx).await else {
            return Err(Retry::Fail(Error::Indeterminate(format!(
                "the write was not committed within {:?} (is a majority of peers reachable?); it may still be applied",
                self.request_timeout
            ))));
        };
        match reply {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ProposeError::NotLeader(l))) => Err(Retry::Again(l)),
            Ok(Err(ProposeError::Failed(e))) => {
                Err(Retry::Fail(Error::Indeterminate(format!("the write may or may not have been applied: {e}"))))
            }
            Err(_) => Err(Retry::Fail(Error::Indeterminate("the write was dropped while in flight".into()))),
        }
    }

    /// Waits until a read at `consistency` may be served from the local state.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), Error> {
        if consistency == Consistency::Stale {
            return Ok(());
        }
        let deadline = Instant::now() + self.request_timeout;
        let mut hint = None;
        loop {
            let leader = self.await_leader(hint.take(), deadline).await?;
            let index = if leader == self.id {
                match self.raft.get_read_log_id().await {
                    Ok((read, _)) => Ok(read.map(|l| l.index).unwrap_or(0)),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(Retry::Again(f.leader_id)),
                    // No quorum confirmed leadership: ask again until the deadline.
                    Err(_) => Err(Retry::Again(None)),
                }
            } else {
                match self.forward(leader, Forward::ReadIndex, deadline).await {
                    Ok(Forwarded::ReadIndex(i)) => Ok(i),
                    Ok(other) => Err(Retry::Fail(Error::Fatal(format!("leader answered a read index with {other:?}")))),
                    Err(e) => Err(e),
                }
            };
            match index {
                Ok(index) => return self.await_applied(index, deadline).await,
                Err(Retry::Again(next)) => hint = next.filter(|l| *l != leader),
                Err(Retry::Fail(e)) => return Err(e),
            }
            self.pause_before_retry(hint, deadline).await?;
        }
    }

    /// Waits until this peer has applied the entry at `index` (e.g. a write it forwarded),
    /// so that its local state shows the write.
    ///
    /// The write is committed already: if this peer does not apply it in time, the answer is
    /// `Indeterminate` (read before retrying), never `NoLeader`, which would promise the
    /// write was not made.
    pub async fn applied_locally(&self, index: u64) -> Result<(), Error> {
        self.await_applied(index, Instant::now() + self.request_timeout).await.map_err(|_| {
            Error::Indeterminate(format!(
                "the write was committed at index {index}, but this peer did not apply it within {:?}; \
                 read it from another peer",
                self.request_timeout
            ))
        })
    }

    async fn await_applied(&self, index: u64, deadline: Instant) -> Result<(), Error> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| Error::NoLeader(format!("this peer did not apply up to index {index} within {timeout:?}")))
    }

    /// The current leader, waiting for one (up to the deadline) while none is known. With
    /// `prefer`, the hint of a peer that just refused is tried first.
    async fn await_leader(&self, prefer: Option<PeerId>, deadline: Instant) -> Result<PeerId, Error> {
        if let Some(l) = prefer {
            return Ok(l);
        }
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = rx.borrow_and_update().current_leader {
                return Ok(l);
            }
            if tokio::time::timeout_at(deadline.into(), rx.changed()).await.is_err() {
                return Err(Error::NoLeader(self.no_leader_message()));
            }
        }
    }

    /// The current leader and its term, waiting for a leader (up to the deadline) while
    /// none is known.
    async fn await_view(&self, deadline: Instant) -> Result<View, Error> {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_and_update();
                if let Some(leader) = m.current_leader {
                    return Ok(View { leader, term: m.current_term });
                }
            }
            if tokio::time::timeout_at(deadline.into(), rx.changed()).await.is_err() {
                return Err(Error::NoLeader(self.no_leader_message()));
            }
        }
    }

    /// This peer and its term while it leads.
    fn leading_view(&self) -> Option<View> {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.id))
            .then_some(View { leader: self.id, term: m.current_term })
    }

    /// Asks the leader of `view` for a reading of its clock, with an empty batch on a fresh
    /// connection. A peer of the previous version cannot decode the question and closes the
    /// connection without an answer (`Forward::TermHeartbeats`): that leader gets heartbeats
    /// with their age for the rest of its term.
    async fn ask_heartbeat_clock(&self, view: View, deadline: Instant) -> Result<Addressee, String> {
        let Some(addr) = self.leader_addr(view.leader) else {
            return Err(format!("peer {} is not a member", view.leader));
        };
        let question = Request::Forward(Forward::TermHeartbeats(TermHeartbeats {
            leader: view.leader,
            term: view.term,
            beats: Vec::new(),
        }));
        let ask = async {
            let mut conn =
                Connection::connect(&addr, &self.secret, FORWARD_CONNECT_TIMEOUT).await.map_err(|e| (false, e))?;
            conn.call(&question).await.map_err(|e| (true, e))
        };
        match tokio::time::timeout_at(deadline.into(), ask).await {
            Ok(Ok(Response::Forward(Ok(Forwarded::HeartbeatClock(leader_us))))) => {
                Ok(Addressee { view, clock: Some(Reading { leader_us, at: Instant::now() }) })
            }
            Ok(Ok(Response::Forward(Err(ForwardError::NotLeader { .. })))) => {
                Err(format!("peer {} is not the leader of term {} any more", view.leader, view.term))
            }
            Ok(Ok(other)) => Err(format!("the leader answered with {other:?}")),
            Ok(Err((true, e)))
                if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) =>
            {
                tracing::info!(
                    leader = view.leader,
                    term = view.term,
                    "the leader does not know dated heartbeats (an earlier version): forwarding them with their age"
                );
                Ok(Addressee { view, clock: None })
            }
            Ok(Err((_, e))) => Err(format!("cannot ask the leader for its clock: {e}")),
            Err(_) => Err("the leader did not answer in time".into()),
        }
    }

    fn no_leader_message(&self) -> String {
        if !self.is_member_of_a_cluster() {
            "this peer is not part of an initialised cluster; run `switchboard cluster init URL...` or `cluster add`"
                .into()
        } else {
            format!("no leader within {:?}: a majority of the peers is not reachable", self.request_timeout)
        }
    }

    fn leader_addr(&self, leader: PeerId) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().get_node(&leader).map(|n| n.raft_addr.clone())
    }

    /// Sends a request to the leader. A connection that cannot be opened means nothing was
    /// sent (retry); a failure after sending leaves the outcome unknown.
    async fn forward(&self, leader: PeerId, request: Forward, deadline: Instant) -> Result<Forwarded, Retry> {
        let Some(addr) = self.leader_addr(leader) else { return Err(Retry::Again(None)) };
        let pooled = self.take_pooled(&addr);
        let mut conn = match pooled {
            Some(c) => c,
            None => match Connection::connect(&addr, &self.secret, FORWARD_CONNECT_TIMEOUT).await {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(Retry::Fail(Error::Fatal(e.to_string())))
                }
                // Leader unreachable, nothing sent: let Raft notice and elect, then try again.
                Err(_) => return Err(Retry::Again(None)),
            },
        };
        let request = Request::Forward(request);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let response = match tokio::time::timeout(timeout, conn.call(&request)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(Retry::Fail(Error::Indeterminate(format!(
                    "lost the leader while it handled the request: {e}"
                ))))
            }
            Err(_) => {
                return Err(Retry::Fail(Error::Indeterminate(format!("the leader did not answer within {timeout:?}"))))
            }
        };
        let mut pool = self.pool.lock().expect("pool lock");
        let idle = pool.entry(addr).or_default();
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
        drop(pool);
        match response {
            Response::Forward(Ok(f)) => Ok(f),
            Response::Forward(Err(ForwardError::NotLeader { leader })) => Err(Retry::Again(leader)),
            Response::Forward(Err(ForwardError::Rejected(m))) => Err(Retry::Fail(Error::Conflict(m))),
            Response::Forward(Err(ForwardError::Unavailable(m))) => Err(Retry::Fail(Error::Indeterminate(m))),
            other => Err(Retry::Fail(Error::Fatal(format!("leader answered with {other:?}")))),
        }
    }

    /// An idle connection to `addr` that the other side has not closed.
    fn take_pooled(&self, addr: &str) -> Option<Connection> {
        let mut pool = self.pool.lock().expect("pool lock");
        let idle = pool.get_mut(addr)?;
        while let Some(conn) = idle.pop() {
            if conn.is_open() {
                return Some(conn);
            }
        }
        None
    }

    /// Serves a request another peer forwarded, as leader.
    pub async fn serve_forwarded(&self, request: Forward) -> Result<Forwarded, ForwardError> {
        let not_leader = |leader| ForwardError::NotLeader { leader };
        match request {
            Forward::Write(command) => match self.propose(command, Instant::now() + self.request_timeout).await {
                Ok(r) => Ok(Forwarded::Write(r)),
                Err(Retry::Again(l)) => Err(not_leader(l)),
                Err(Retry::Fail(e)) => Err(ForwardError::Unavailable(e.to_string())),
            },
            Forward::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(Forwarded::ReadIndex(read.map(|l| l.index).unwrap_or(0))),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(f.leader_id)),
                // Leadership not confirmed by a quorum: the asking peer tries again.
                Err(_) => Err(not_leader(None)),
            },
            Forward::AddPeer { id, info } => self.add_as_leader(id, info).await,
            Forward::Heartbeats(beats) => {
                if !self.is_leader() {
                    return Err(not_leader(None));
                }
                let now = Instant::now();
                for (node, metrics) in beats {
                    self.observations.record(&node, metrics, now);
                }
                Ok(Forwarded::Accepted)
            }
            Forward::AgedHeartbeats(beats) => {
                if !self.is_leader() {
                    return Err(not_leader(None));
                }
                // From a follower of the previous version. The age leaves out the time on
                // the wire, which is unbounded (`TermHeartbeats` has no such gap).
                let now = Instant::now();
                for beat in beats {
                    let at = now.checked_sub(Duration::from_millis(beat.age_ms)).unwrap_or(now);
                    self.observations.record(&beat.node, beat.metrics, at);
                }
                Ok(Forwarded::Accepted)
            }
            Forward::TermHeartbeats(batch) => {
                let to = View { leader: batch.leader, term: batch.term };
                let leading = self.leading_view();
                if !heartbeat::admit(leading, to) {
                    if !batch.beats.is_empty() {
                        self.metrics.heartbeats_refused.inc_by(batch.beats.len() as u64);
                        tracing::debug!(
                            heartbeats = batch.beats.len(),
                            leader = batch.leader,
                            term = batch.term,
                            leading = ?leading,
                            "refused forwarded heartbeats meant for another leader or term"
                        );
                    }
                    return Err(not_leader(self.raft.metrics().borrow().current_leader));
                }
                let now = Instant::now();
                for beat in batch.beats {
                    self.observations.record(&beat.node, beat.metrics, self.heartbeat_clock.moment(beat.at_us, now));
                }
                Ok(Forwarded::HeartbeatClock(self.heartbeat_clock.read(Instant::now())))
            }
            Forward::Metrics(nodes) => {
                if !self.is_leader() {
                    return Err(not_leader(None));
                }
                let all = self.observations.metrics();
                Ok(Forwarded::Metrics(all.into_iter().filter(|(k, _)| nodes.is_empty() || nodes.contains(k)).collect()))
            }
            Forward::RemovePeer { id } => self.remove_as_leader(id).await,
        }
    }

    /// Forms a new cluster from peers given by their HTTP URLs (this one included or not).
    pub async fn init(&self, urls: &[String]) -> Result<BTreeMap<PeerId, PeerInfo>, Error> {
        let mut members = BTreeMap::new();
        members.insert(self.id, self.info.clone());
        for (i, url) in urls.iter().enumerate() {
            let (id, info) = self.discover(&format!("peers[{i}]"), url).await?;
            if let Some(existing) = members.get(&id) {
                if *existing != info {
                    return Err(Error::BadRequest {
                        field: format!("peers[{i}]"),
                        message: format!(
                            "{url} reports id {id}, which {} already has; every peer needs its own --id",
                            existing.http_addr
                        ),
                    });
                }
            }
            members.insert(id, info);
        }
        match self.raft.initialize(members.clone()).await {
            Ok(()) => {
                tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "cluster initialised");
                Ok(members)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                Err(Error::Conflict("this peer already belongs to an initialised cluster".into()))
            }
            Err(e) => Err(Error::Fatal(e.to_string())),
        }
    }

    /// Adds the peer at `url`: as learner until it has caught up, then as voter.
    pub async fn add_peer(&self, url: &str) -> Result<u64, Error> {
        let (id, info) = self.discover("url", url).await?;
        self.membership_op(Forward::AddPeer { id, info }).await
    }

    pub async fn remove_peer(&self, id: PeerId) -> Result<u64, Error> {
        self.membership_op(Forward::RemovePeer { id }).await
    }

    async fn membership_op(&self, op: Forward) -> Result<u64, Error> {
        // Membership changes wait for catch-up: give them more than a write's deadline.
        let deadline = Instant::now() + self.request_timeout + self.catch_up_timeout;
        let mut hint = None;
        loop {
            let leader = self.await_leader(hint.take(), deadline).await?;
            let result = if leader == self.id {
                self.serve_forwarded(op.clone()).await
            } else {
                match self.forward(leader, op.clone(), deadline).await {
                    Ok(f) => Ok(f),
                    Err(Retry::Again(l)) => Err(ForwardError::NotLeader { leader: l }),
                    Err(Retry::Fail(e)) => return Err(e),
                }
            };
            match result {
                Ok(Forwarded::Membership { log_index }) => return Ok(log_index),
                Ok(other) => return Err(Error::Fatal(format!("unexpected answer {other:?}"))),
                Err(ForwardError::Rejected(m)) => return Err(Error::Conflict(m)),
                Err(ForwardError::Unavailable(m)) => return Err(Error::Indeterminate(m)),
                // Nothing was changed: ask the next leader.
                Err(ForwardError::NotLeader { leader: next }) => hint = next.filter(|l| *l != leader),
            }
            self.pause_before_retry(hint, deadline).await?;
        }
    }

    async fn add_as_leader(&self, id: PeerId, info: PeerInfo) -> Result<Forwarded, ForwardError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        if membership.membership().voter_ids().any(|v| v == id) {
            let known = membership.membership().get_node(&id).cloned().unwrap_or_default();
            return if known == info {
                Ok(Forwarded::Membership { log_index: membership.log_id().map(|l| l.index).unwrap_or(0) })
            } else {
                Err(ForwardError::Rejected(format!("peer id {id} is already a member at {}", known.http_addr)))
            };
        }
        tracing::info!(peer = id, %info, "adding peer as learner");
        let deadline = Instant::now() + self.catch_up_timeout;
        if let Err(e) = self.raft.add_learner(id, info.clone(), false).await {
            return Err(membership_error(e));
        }
        // openraft counts a learner as caught up within `replication_lag_threshold`
        // entries; a voter that cannot receive the log must never be promoted, so wait
        // until it holds everything the leader had when it was added.
        let target = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
        let caught_up = self
            .raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .is_some_and(|l| l.index >= target)
                },
                "learner caught up",
            )
            .await;
        if caught_up.is_err() {
            tracing::warn!(peer = id, "learner did not catch up; removing it again");
            let _ = self.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await;
            return Err(ForwardError::Rejected(format!(
                "peer {id} did not catch up within {:?}; check that {} is reachable from the leader and uses the same cluster secret",
                self.catch_up_timeout, info.raft_addr
            )));
        }
        tracing::info!(peer = id, "learner caught up; promoting to voter");
        match self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await {
            Ok(r) => {
                tracing::info!(peer = id, log_index = r.log_id.index, "membership changed: peer added");
                Ok(Forwarded::Membership { log_index: r.log_id.index })
            }
            Err(e) => Err(membership_error(e)),
        }
    }

    async fn remove_as_leader(&self, id: PeerId) -> Result<Forwarded, ForwardError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let m = membership.membership();
        let change = if m.voter_ids().any(|v| v == id) {
            if m.voter_ids().count() == 1 {
                return Err(ForwardError::Rejected(format!(
                    "peer {id} is the only voter; a cluster cannot remove its last member"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if m.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(ForwardError::Rejected(format!("peer {id} is not a member of this cluster")));
        };
        match self.raft.change_membership(change, false).await {
            Ok(r) => {
                tracing::info!(peer = id, log_index = r.log_id.index, "membership changed: peer removed");
                Ok(Forwarded::Membership { log_index: r.log_id.index })
            }
            Err(e) => Err(membership_error(e)),
        }
    }

    /// Asks the peer at `url` who it is (`GET /v1/peer`).
    async fn discover(&self, field: &str, url: &str) -> Result<(PeerId, PeerInfo), Error> {
        #[derive(Deserialize)]
        struct Identity {
            id: PeerId,
            #[serde(flatten)]
            info: PeerInfo,
        }
        let bad = |message: String| Error::BadRequest { field: field.into(), message };
        let endpoint = format!("{}/v1/peer", url.trim_end_matches('/'));
        let response =
            self.http.get(&endpoint).send().await.map_err(|e| bad(format!("cannot reach {endpoint}: {e}")))?;
        if !response.status().is_success() {
            return Err(bad(format!("{endpoint} answered {}", response.status())));
        }
        let identity: Identity =
            response.json().await.map_err(|e| bad(format!("{endpoint} is not a switchboard peer: {e}")))?;
        Ok((identity.id, identity.info))
    }

    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let member = |id: PeerId| Member { id, info: membership.get_node(&id).cloned().unwrap_or_default() };
        ClusterStatus {
            id: self.id,
            leader: m.current_leader,
            term: m.current_term,
            state: format!("{:?}", m.state).to_lowercase(),
            members: membership.voter_ids().map(member).collect(),
            learners: membership.learner_ids().map(member).collect(),
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: self.commit_index(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            elections: self.election.stats(),
        }
    }

    /// Copies Raft's view into the Prometheus gauges; called at scrape time.
    pub fn refresh_metrics(&self) {
        let m = self.raft.metrics().borrow().clone();
        self.metrics.term.set(m.current_term as i64);
        self.metrics.leader_id.set(m.current_leader.unwrap_or(0) as i64);
        self.metrics.is_leader.set((m.state == ServerState::Leader) as i64);
        self.metrics.commit_index.set(self.commit_index() as i64);
        self.metrics.applied_index.set(m.last_applied.map(|l| l.index).unwrap_or(0) as i64);
        self.metrics.last_log_index.set(m.last_log_index.unwrap_or(0) as i64);
        self.metrics.active_actions.set(self.state.read().state.engine.running() as i64);
    }
}

enum Retry {
    /// Nothing was done; try again, at the hinted leader if there is one.
    Again(Option<PeerId>),
    Fail(Error),
}

fn membership_error(e: RaftError<PeerId, ClientWriteError<PeerId, PeerInfo>>) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ForwardError::NotLeader { leader: f.leader_id },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ForwardError::Rejected(c.to_string()),
        other => ForwardError::Unavailable(other.to_string()),
    }
}

/// Passes heartbeats accepted by a follower to the leader, in batches: whatever arrived
/// while the previous batch was on its way, up to `HEARTBEAT_BATCH`, each heartbeat to the
/// leader of the term it was received in, dated on that leader's clock (`heartbeat.rs`).
/// Heartbeats are soft state: a batch the leader does not take is dropped, never offered to
/// another leader, and the next beat replaces it.
async fn forward_heartbeats(peer: Arc<Peer>, mut rx: mpsc::Receiver<Received>) {
    // The leader forwarded to last, with a reading of its clock.
    let mut addressee: Option<Addressee> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < HEARTBEAT_BATCH {
            match rx.try_recv() {
                Ok(beat) => batch.push(beat),
                Err(_) => break,
            }
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let view = match peer.await_view(deadline).await {
            Ok(view) => view,
            Err(e) => {
                not_delivered(&peer, batch.len(), &e.to_string());
                continue;
            }
        };
        let (batch, stale) = heartbeat::for_view(batch, view);
        if stale > 0 {
            peer.metrics.heartbeats_dropped.inc_by(stale as u64);
            tracing::debug!(
                heartbeats = stale,
                leader = view.leader,
                term = view.term,
                "heartbeats received under an earlier leader or term dropped"
            );
        }
        if batch.is_empty() {
            continue;
        }
        let count = batch.len();
        let delivered = if view.leader == peer.id {
            // Elected since: the heartbeats were received on this peer's own clock.
            if heartbeat::admit(peer.leading_view(), view) {
                for beat in batch {
                    peer.observations.record(&beat.node, beat.metrics, beat.at);
                }
                Ok(())
            } else {
                Err(format!("this peer no longer leads in term {}", view.term))
            }
        } else {
            deliver(&peer, &mut addressee, view, batch, deadline).await
        };
        if let Err(e) = delivered {
            not_delivered(&peer, count, &e);
        }
    }
}

fn not_delivered(peer: &Peer, count: usize, error: &str) {
    peer.metrics.heartbeats_dropped.inc_by(count as u64);
    tracing::warn!(heartbeats = count, error = %error, "heartbeats not delivered to the leader");
}

/// Sends heartbeats received under `view` to its leader: dated on the leader's clock, or
/// with their age to a leader of the previous version. Asks for a reading of the clock
/// first when it has none for this view, or an old one.
async fn deliver(
    peer: &Peer,
    addressee: &mut Option<Addressee>,
    view: View,
    beats: Vec<Received>,
    deadline: Instant,
) -> Result<(), String> {
    let to = match addressee {
        Some(a) if a.serves(view, Instant::now()) => a,
        _ => addressee.insert(peer.ask_heartbeat_clock(view, deadline).await?),
    };
    let request = match to.clock {
        Some(reading) => {
            let (beats, early) = heartbeat::date(beats, &reading);
            if early > 0 {
                peer.metrics.heartbeats_dropped.inc_by(early as u64);
                tracing::debug!(heartbeats = early, "heartbeats received before the leader started dropped");
            }
            if beats.is_empty() {
                return Ok(());
            }
            Forward::TermHeartbeats(TermHeartbeats { leader: view.leader, term: view.term, beats })
        }
        None => {
            let now = Instant::now();
            let aged = beats
                .into_iter()
                .map(|b| AgedHeartbeat {
                    node: b.node,
                    metrics: b.metrics,
                    age_ms: now.duration_since(b.at).as_millis() as u64,
                })
                .collect();
            Forward::AgedHeartbeats(aged)
        }
    };
    match peer.forward(view.leader, request, deadline).await {
        Ok(Forwarded::HeartbeatClock(leader_us)) => {
            to.read(Reading { leader_us, at: Instant::now() });
            Ok(())
        }
        Ok(Forwarded::Accepted) => Ok(()),
        Ok(other) => Err(format!("the leader answered with {other:?}")),
        Err(Retry::Fail(e)) => Err(e.to_string()),
        Err(Retry::Again(_)) => {
            Err(format!("peer {} is not the leader of term {} any more, or cannot be reached", view.leader, view.term))
        }
    }
}

/// Watches the Raft core: logs one line per election and membership change, as the
/// operator's record, and fails the peer when the core stops (a storage error such as a
/// full disk, a panic in it, or openraft shutting down on its own) rather than leaving a
/// peer that answers `/health` while its table no longer changes. The cause, with the data
/// directory to look at, is the peer's last log line; systemd starts it again.
async fn watch_raft_core(raft: Raft, data_dir: std::path::PathBuf, tasks: Tasks) {
    log_raft_events(raft.metrics()).await;
    if tasks.shutdown().is_cancelled() {
        return;
    }
    let cause = match &raft.metrics().borrow().running_state {
        Err(fatal) => format!(
            "the Raft core stopped: {fatal}; check the disk of {} (full? see df) and restart the peer",
            data_dir.display()
        ),
        Ok(()) => "the Raft core stopped".to_string(),
    };
    tasks.fail(cause);
}

/// Logs elections and membership changes until the core stops or reports a fatal error.
async fn log_raft_events(mut rx: tokio::sync::watch::Receiver<openraft::RaftMetrics<PeerId, PeerInfo>>) {
    let (mut leader, mut term, mut membership) = {
        let m = rx.borrow_and_update();
        (m.current_leader, m.current_term, m.membership_config.log_id().map(|l| l.index))
    };
    while rx.changed().await.is_ok() {
        let m = rx.borrow_and_update().clone();
        if m.running_state.is_err() {
            return;
        }
        if m.current_leader != leader || m.current_term != term {
            match m.current_leader {
                Some(l) => tracing::info!(term = m.current_term, leader = l, state = ?m.state, "leader elected"),
                None => tracing::info!(term = m.current_term, state = ?m.state, "no leader"),
            }
            leader = m.current_leader;
            term = m.current_term;
        }
        let index = m.membership_config.log_id().map(|l| l.index);
        if index != membership {
            let mm = m.membership_config.membership();
            tracing::info!(
                log_index = index.unwrap_or(0),
                voters = ?mm.voter_ids().collect::<Vec<_>>(),
                learners = ?mm.learner_ids().collect::<Vec<_>>(),
                "membership"
            );
            membership = index;
        }
    }
}
