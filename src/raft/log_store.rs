//! The Raft log and vote in RocksDB.
//!
//! Durability: `append` and `save_vote` return only after one synced `WriteBatch` reached
//! the disk, so an acknowledged entry or a granted vote survives `kill -9` and power loss.
//! The write runs on a blocking thread so that an fsync never stalls the async runtime.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::db::{synced, CF_LOG, CF_META};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// The committed index as last reported by Raft, for `/ready` and `/metrics`.
    committed: Arc<AtomicU64>,
    gate: PurgeGate,
}

/// Holds back a purge of the log that runs ahead of the snapshot covering it.
///
/// When a follower receives a leader's snapshot, Raft (openraft 0.9) purges the log up to
/// the snapshot as soon as it hands the snapshot to the state machine, without waiting for
/// the state machine to make it durable. A crash in between would leave the peer with
/// neither the purged entries nor the snapshot: it could not start again. So while a
/// snapshot is being received, a purge beyond the durable snapshot is held here, and the
/// state machine carries it out in the same RocksDB write that makes the snapshot current.
#[derive(Clone, Default)]
pub struct PurgeGate(Arc<Mutex<Gate>>);

#[derive(Default)]
struct Gate {
    /// The last log id the current (durable) snapshot covers.
    durable: Option<LogId>,
    receiving: bool,
    held: Option<LogId>,
}

impl PurgeGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.0.lock().expect("purge gate lock")
    }

    /// Whether a purge up to `upto` may run now; if not, it is held.
    fn admit(&self, upto: LogId) -> bool {
        let mut gate = self.lock();
        if !gate.receiving || Some(upto) <= gate.durable {
            return true;
        }
        gate.held = gate.held.max(Some(upto));
        false
    }

    /// A snapshot is being received from the leader.
    pub fn receiving(&self) {
        self.lock().receiving = true;
    }

    /// The held purge a snapshot covering up to `last` makes safe, to carry out with it.
    pub fn covered_by(&self, last: Option<LogId>) -> Option<LogId> {
        let mut gate = self.lock();
        let held = gate.held.filter(|h| Some(*h) <= last)?;
        gate.held = None;
        Some(held)
    }

    /// The snapshot covering up to `last` is durable (and one being received, if any, is
    /// installed).
    pub fn durable(&self, last: Option<LogId>, installed: bool) {
        let mut gate = self.lock();
        gate.durable = gate.durable.max(last);
        if installed {
            gate.receiving = false;
        }
    }
}

/// Adds the purge of the log up to `upto` to `batch`.
pub(crate) fn purge_into(batch: &mut WriteBatch, db: &DB, upto: LogId) {
    batch.put_cf(db.cf_handle(CF_META).expect("meta"), KEY_LAST_PURGED, encode(&upto));
    batch.delete_range_cf(db.cf_handle(CF_LOG).expect("log"), 0u64.to_be_bytes(), (upto.index + 1).to_be_bytes());
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db, committed: Arc::new(AtomicU64::new(0)), gate: PurgeGate::default() }
    }

    /// The gate the state machine opens when a snapshot is durable.
    pub fn purge_gate(&self) -> PurgeGate {
        self.gate.clone()
    }

    /// A shared view of the committed index, updated as Raft advances it.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let cf = self.db.cf_handle(CF_META).expect("meta column family");
        let bytes = self.db.get_cf(cf, key).map_err(|e| read_err(ErrorSubject::Store, e))?;
        bytes.map(|b| decode(&b).map_err(|e| read_err(ErrorSubject::Store, e))).transpose()
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let cf = self.db.cf_handle(CF_LOG).expect("log column family");
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| read_err(ErrorSubject::Logs, e))?;
                let entry: Entry = decode(&value).map_err(|e| read_err(ErrorSubject::Logs, e))?;
                Ok(Some(entry.log_id))
            }
        }
    }

    /// Writes a batch synchronously on a blocking thread.
    async fn write(&self, batch: WriteBatch, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || super::db::write(&db, batch, &synced()))
            .await
            .map_err(|e| write_err(subject.clone(), io::Error::other(e)))?
            .map_err(|e| write_err(subject, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let cf = self.db.cf_handle(CF_LOG).expect("log column family");
        let mut entries = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::From(&start.to_be_bytes(), Direction::Forward)) {
            let (key, value) = item.map_err(|e| read_err(ErrorSubject::Logs, e))?;
            let index = u64::from_be_bytes(key.as_ref().try_into().expect("8-byte log key"));
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&value).map_err(|e| read_err(ErrorSubject::Logs, e))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_log_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf_handle(CF_META).expect("meta"), KEY_VOTE, encode(vote));
        self.write(batch, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: after a crash Raft re-learns the commit index from the leader; the
        // saved value only lets a restarted peer re-apply sooner.
        let cf = self.db.cf_handle(CF_META).expect("meta");
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, KEY_COMMITTED, encode(&committed));
        super::db::write(&self.db, batch, &rocksdb::WriteOptions::default())
            .map_err(|e| write_err(ErrorSubject::Store, e))?;
        self.committed.store(committed.map(|c| c.index).unwrap_or(0), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = self.get_meta(KEY_COMMITTED)?;
        let committed = committed.flatten();
        self.committed.store(committed.map(|c| c.index).unwrap_or(0), Ordering::Release);
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = self.db.cf_handle(CF_LOG).expect("log");
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(cf, entry.log_id.index.to_be_bytes(), encode(&entry));
        }
        let result = self.write(batch, ErrorSubject::Logs).await;
        callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| io::Error::other(e.to_string())));
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(from = log_id.index, "truncating log");
        let cf = self.db.cf_handle(CF_LOG).expect("log");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(cf, u64::MAX.to_be_bytes());
        self.write(batch, ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if !self.gate.admit(log_id) {
            tracing::info!(upto = log_id.index, "log purge held until the received snapshot is durable");
            return Ok(());
        }
        tracing::debug!(upto = log_id.index, "purging log");
        let mut batch = WriteBatch::default();
        purge_into(&mut batch, &self.db, log_id);
        self.write(batch, ErrorSubject::Logs).await
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("in-memory values always serialize")
}

/// Decodes a value stored in RocksDB (a log entry, the vote, a snapshot record). Bounded by
/// the stored bytes; a value that does not decode is corruption, and the error says where
/// to go from there.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, io::Error> {
    bincode::deserialize(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a value in the data directory's database is corrupt ({e}); the peer cannot start from it; \
                 see 'Recovering a peer that lost its disk' in docs/operations.md"
            ),
        )
    })
}

pub(crate) fn read_err(subject: ErrorSubject<u64>, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Read, openraft::AnyError::new(&e)).into()
}

pub(crate) fn write_err(subject: ErrorSubject<u64>, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Write, openraft::AnyError::new(&e)).into()
}
