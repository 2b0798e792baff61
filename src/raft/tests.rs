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
    let log = LogStore::new(db.clone());
    let sm = StateMachineStore::open(db, &dir.path().join("snapshots"), log.purge_gate(), Arc::new(Metrics::new()))
        .expect("open state machine");
    (log, sm)
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

fn snapshot_files(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// One file per snapshot, the previous one removed; files a crash left behind (a file
/// being written, one written but never made current) are removed at start, and the
/// state comes from the current file.
#[tokio::test]
async fn snapshot_files_replace_each_other_and_strays_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = open(&dir);
        sm.apply((1..=2).map(|i| region_entry(i, &format!("r{i}")))).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let first = snapshot_files(&dir);
        assert_eq!(first.len(), 1, "{first:?}");
        sm.apply([region_entry(3, "r3")]).await.unwrap();
        let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id(3)));
        let second = snapshot_files(&dir);
        assert_eq!(second.len(), 1, "{second:?}");
        assert_ne!(first, second);
    }
    let snapshots = dir.path().join("snapshots");
    std::fs::write(snapshots.join("snapshot-00000000000000000009-00000000.writing"), b"half").unwrap();
    std::fs::write(snapshots.join("snapshot-00000000000000000009-00000001.snap"), b"never current").unwrap();
    let (_log, mut sm) = open(&dir);
    assert_eq!(snapshot_files(&dir).len(), 1, "{:?}", snapshot_files(&dir));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(3)));
    let regions: Vec<String> = sm.shared().read().state.regions.keys().cloned().collect();
    assert_eq!(regions, vec!["r1", "r2", "r3"]);
    let current = sm.get_current_snapshot().await.unwrap().expect("a current snapshot");
    assert_eq!(current.meta.last_log_id, Some(log_id(3)));
}

/// A snapshot stored inside RocksDB, as the first versions did, is refused with the way
/// out, not read.
#[tokio::test]
async fn a_snapshot_stored_inside_rocksdb_is_refused_with_the_way_out() {
    #[derive(serde::Serialize)]
    struct Legacy {
        meta: super::types::SnapshotMeta,
        data: Vec<u8>,
    }
    let dir = tempfile::tempdir().unwrap();
    let mut state = crate::state::State::default();
    state
        .apply(
            1,
            &Command::PutRegion { name: "old".into(), spec: RegionSpec { cidrs: vec![], fallback: vec![] }, cas: None },
        )
        .unwrap();
    let meta = super::types::SnapshotMeta {
        last_log_id: Some(log_id(1)),
        last_membership: Default::default(),
        snapshot_id: "1-1-7".into(),
    };
    {
        let db = db::open(dir.path()).unwrap();
        let legacy = Legacy { meta, data: bincode::serialize(&state).unwrap() };
        let cf = db.cf_handle(db::CF_SNAPSHOT).unwrap();
        db.put_cf(cf, b"current", bincode::serialize(&legacy).unwrap()).unwrap();
    }
    let db = db::open(dir.path()).unwrap();
    let log = LogStore::new(db.clone());
    let opened = StateMachineStore::open(db, &dir.path().join("snapshots"), log.purge_gate(), Arc::new(Metrics::new()));
    let e = opened.err().expect("the old format is refused").to_string();
    assert!(e.contains("first versions") && e.contains("docs/operations.md"), "{e}");
}

/// While a leader's snapshot is being received, Raft's purge of the log it covers waits
/// until the snapshot is durable, and is then done in the same write: a crash before that
/// leaves the log as it was.
#[tokio::test]
async fn a_purge_ahead_of_a_received_snapshot_waits_for_it() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_leader_log, mut leader) = open(&leader_dir);
    let entries: Vec<Entry> = (1..=5).map(|i| region_entry(i, &format!("r{i}"))).collect();
    leader.apply(entries.clone()).await.unwrap();
    let built = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(&dir);
        log.blocking_append(entries[..3].to_vec()).await.unwrap();
        let _receiving = sm.begin_receiving_snapshot().await.unwrap();
        log.purge(log_id(5)).await.unwrap();
        // The process dies here, before the snapshot is installed.
    }
    let (mut log, mut sm) = open(&dir);
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, None);
    assert_eq!(log.try_get_log_entries(0..100).await.unwrap().len(), 3, "the entries were purged");

    let mut receiving = sm.begin_receiving_snapshot().await.unwrap();
    log.purge(log_id(5)).await.unwrap();
    assert_eq!(log.try_get_log_entries(0..100).await.unwrap().len(), 3);
    let current = leader.get_current_snapshot().await.unwrap().unwrap();
    *receiving = *current.snapshot;
    sm.install_snapshot(&built.meta, receiving).await.unwrap();
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(5)));
    assert!(log.try_get_log_entries(0..100).await.unwrap().is_empty());
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(5)));
}

/// A snapshot build that finishes after a newer snapshot became current (installed from
/// the leader meanwhile) does not replace it.
#[tokio::test]
async fn an_older_snapshot_never_replaces_a_newer_one() {
    use super::snapshot_file::SnapshotFiles;
    let dir = tempfile::tempdir().unwrap();
    let db = db::open(dir.path()).unwrap();
    let (files, _) = SnapshotFiles::open(db, &dir.path().join("snapshots"), Default::default()).unwrap();
    let meta = |index: u64| super::types::SnapshotMeta {
        last_log_id: Some(log_id(index)),
        last_membership: Default::default(),
        snapshot_id: format!("1-{index}"),
    };
    let state = crate::state::State::default();
    let (newer, _) = files.write(5, &state).unwrap();
    let (older, _) = files.write(3, &state).unwrap();
    let newer = files.seal(&newer).await.unwrap();
    let older = files.seal(&older).await.unwrap();
    files.make_current(&meta(5), newer, true).await.unwrap();
    files.make_current(&meta(3), older, false).await.unwrap();
    assert_eq!(files.current().await.unwrap().unwrap().0.last_log_id, Some(log_id(5)));
    assert_eq!(snapshot_files(&dir).len(), 1, "{:?}", snapshot_files(&dir));
}
