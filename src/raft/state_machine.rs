//! The state machine: the [`State`] in memory, snapshots in files (`snapshot_file.rs`).
//!
//! Applying is a pure function of the log (see `state/`), so the state itself is not
//! written on every apply. A snapshot is taken every `snapshot_every` applied entries and
//! persisted (synced) before Raft may purge the log it covers; a restarting peer loads the
//! snapshot and Raft re-applies the committed entries after it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Instant;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::failpoint;
use super::log_store::PurgeGate;
use super::snapshot_file::{SnapshotFile, SnapshotFiles};
use super::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::metrics::Metrics;
use crate::state::{BatchResult, Change, State};

/// The applied state, as readers see it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: State,
    /// The recent changes, for `GET /v1/watch`. Not replicated: each peer records what it
    /// applies, from its last snapshot on.
    #[serde(skip)]
    pub history: History,
}

/// The last `limit` changes this peer applied, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    /// Changes at or below this revision are no longer here (never seen by this peer, or
    /// dropped): a watcher from before must re-read.
    pub floor: u64,
    pub changes: VecDeque<Change>,
    pub limit: usize,
}

/// Default of `http.watch_history`.
pub const DEFAULT_WATCH_HISTORY: usize = 100_000;

impl Default for History {
    fn default() -> Self {
        Self { floor: 0, changes: VecDeque::new(), limit: DEFAULT_WATCH_HISTORY }
    }
}

impl History {
    fn restart(&mut self, floor: u64) {
        self.floor = floor;
        self.changes.clear();
    }

    fn record(&mut self, changes: Vec<Change>) {
        for change in changes {
            while self.changes.len() >= self.limit.max(1) {
                if let Some(old) = self.changes.pop_front() {
                    self.floor = old.revision;
                }
            }
            self.changes.push_back(change);
        }
    }

    /// Wanted changes after `since`: about `limit`, always whole revisions (a page that
    /// reaches the limit is completed with the rest of its last revision). `Err(floor)` when
    /// some are gone.
    pub fn since(&self, since: u64, limit: usize, wanted: impl Fn(&Change) -> bool) -> Result<Vec<Change>, u64> {
        if since < self.floor {
            return Err(self.floor);
        }
        let start = self.changes.partition_point(|c| c.revision <= since);
        let mut out: Vec<Change> = Vec::new();
        for c in self.changes.range(start..).filter(|c| wanted(c)) {
            if out.len() >= limit && out.last().is_some_and(|l| l.revision != c.revision) {
                break;
            }
            out.push(c.clone());
        }
        Ok(out)
    }
}
/// A handle on the applied state, shared by the state machine (writer) and the HTTP and
/// DNS layers (readers).
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<RwLock<Applied>>,
    applied_tx: Arc<watch::Sender<u64>>,
}

impl SharedState {
    fn new(applied: Applied) -> Self {
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        Self { inner: Arc::new(RwLock::new(applied)), applied_tx: Arc::new(watch::channel(index).0) }
    }

    /// Keep this many changes for watchers (`http.watch_history`).
    pub fn set_history_limit(&self, limit: usize) {
        self.inner.write().expect("state lock poisoned").history.limit = limit;
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.inner.read().expect("state lock poisoned")
    }

    /// The applied index, updated after every apply and snapshot install.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn replace(&self, f: impl FnOnce(&mut Applied)) {
        let index = {
            let mut guard = self.inner.write().expect("state lock poisoned");
            f(&mut guard);
            guard.last_applied.map(|l| l.index).unwrap_or(0)
        };
        self.applied_tx.send_replace(index);
    }
}

#[derive(Clone)]
pub struct StateMachineStore {
    snapshots: SnapshotFiles,
    shared: SharedState,
    metrics: Arc<Metrics>,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the last snapshot (from `snapshot_dir`) if there
    /// is one.
    pub fn open(
        db: Arc<DB>,
        snapshot_dir: &Path,
        gate: PurgeGate,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StorageError> {
        let (snapshots, loaded) = SnapshotFiles::open(db, snapshot_dir, gate)?;
        let applied = match loaded {
            None => Applied::default(),
            Some((meta, state)) => {
                let (term, index) = meta.last_log_id.map(|l| (l.leader_id.term, l.index)).unwrap_or_default();
                tracing::info!(last_applied_term = term, last_applied_index = index, "restored state from snapshot");
                let mut history = History::default();
                history.restart(meta.last_log_id.map(|l| l.index).unwrap_or(0));
                Applied { last_applied: meta.last_log_id, membership: meta.last_membership, state, history }
            }
        };
        failpoint::armed();
        Ok(Self { shared: SharedState::new(applied), snapshots, metrics })
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// Writes the state into a new file while holding it (the state is serialised straight
    /// into the file), then syncs the file and makes it current.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = Instant::now();
        let (meta, name, bytes) = {
            let applied = self.shared.read();
            let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
            let id = match applied.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, rand::random::<u32>()),
                None => format!("empty-{}", rand::random::<u32>()),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id: id,
            };
            let (name, bytes) = self.snapshots.write(index, &applied.state)?;
            (meta, name, bytes)
        };
        let file = self.snapshots.seal(&name).await?;
        let snapshot = self.snapshots.open_file(&file).await?;
        failpoint::hit("snapshot-build-before-persist");
        self.snapshots.make_current(&meta, file, false).await?;
        failpoint::hit("snapshot-build-after-persist");
        self.metrics.snapshots_built.inc();
        let (term, index) = meta.last_log_id.map(|l| (l.leader_id.term, l.index)).unwrap_or_default();
        tracing::info!(
            last_applied_term = term,
            last_applied_index = index,
            bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(Snapshot { meta, snapshot: Box::new(snapshot) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let started = Instant::now();
        let mut results = Vec::new();
        self.shared.replace(|applied| {
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                results.push(match entry.payload {
                    EntryPayload::Blank => BatchResult::default(),
                    EntryPayload::Normal(batch) => {
                        let index = entry.log_id.index;
                        let result = applied.state.apply_batch(index, &batch);
                        for (command, outcome) in batch.commands.iter().zip(&result.results) {
                            if outcome.is_ok() {
                                let changes = applied.state.changes(index, command);
                                applied.history.record(changes);
                            }
                        }
                        result
                    }
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        BatchResult::default()
                    }
                });
            }
        });
        self.metrics.apply_seconds.observe(started.elapsed().as_secs_f64());
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        Ok(Box::new(self.snapshots.receive().await?))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotFile>) -> Result<(), StorageError> {
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let bytes = snapshot.byte_len().await;
        let (file, state) = self.snapshots.take_received(index, *snapshot).await?;
        failpoint::hit("snapshot-install-before-persist");
        self.snapshots.make_current(meta, file, true).await?;
        failpoint::hit("snapshot-install-after-persist");
        self.shared.replace(|applied| {
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            applied.state = state;
            applied.history.restart(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        });
        self.metrics.snapshots_installed.inc();
        let (term, index) = meta.last_log_id.map(|l| (l.leader_id.term, l.index)).unwrap_or_default();
        tracing::info!(last_applied_term = term, last_applied_index = index, bytes, "snapshot installed from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshots.current().await?.map(|(meta, snapshot)| Snapshot { meta, snapshot: Box::new(snapshot) }))
    }
}
