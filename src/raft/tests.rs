//! The storage against openraft's conformance suite, and against its own disk.

use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use tempfile::TempDir;

use super::types::{Entry, LogId, StorageError, TypeConfig};
use super::{db, LogStore, StateMachineStore};
use crate::metrics::Metrics;
use crate::state::{Batch, Command, RegionSpec};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = open(&dir);
        Ok((dir, log, sm))
    }
}

fn open(dir: &TempDir) -> (LogStore, StateMachineStore) {
    let db = db::open(dir.path()).expect("open rocksdb");
    (LogStore::new(db.clone()), StateMachineStore::open(db, Arc::new(Metrics::new())).expect("open state machine"))
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(Builder)
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn region_entry(index: u64, name: &str) -> Entry {
    let command =
        Command::PutRegion { name: name.into(), spec: RegionSpec { cidrs: vec![], fallback: vec![] }, cas: None };
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(Batch { commands: vec![command] }) }
}

/// What was appended and what a snapshot held is there after the process is gone.
#[tokio::test]
async fn log_vote_and_snapshot_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(&dir);
        let entries: Vec<Entry> = (1..=5).map(|i| region_entry(i, &format!("r{i}"))).collect();
        log.save_vote(&openraft::Vote::new(3, 2)).await.unwrap();
        // Through Raft's own path: `append` reports completion via its callback.
        log.blocking_append(entries.clone()).await.unwrap();
        sm.apply(entries[..3].to_vec()).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        log.purge(log_id(2)).await.unwrap();
    }
    let (mut log, mut sm) = open(&dir);
    assert_eq!(log.read_vote().await.unwrap(), Some(openraft::Vote::new(3, 2)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2)));
    assert_eq!(state.last_log_id, Some(log_id(5)));
    let kept = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(kept.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![3, 4, 5]);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(3)));
    let shared = sm.shared();
    let regions: Vec<String> = shared.read().state.regions.keys().cloned().collect();
    assert_eq!(regions, vec!["r1", "r2", "r3"]);
    assert_eq!(shared.read().state.regions["r3"].revision, 3);
}
