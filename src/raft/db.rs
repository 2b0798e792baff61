//! The one RocksDB database under `--data-dir`, shared by the log store and the state
//! machine store, each with its own column families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

/// Raft log entries, keyed by big-endian index so that key order is log order.
pub const CF_LOG: &str = "log";
/// Vote, committed log id and last purged log id.
pub const CF_META: &str = "meta";
/// The current state-machine snapshot.
pub const CF_SNAPSHOT: &str = "snapshot";

pub fn open(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Log entries are written once and read in order: keep memtables small, let compaction
    // drop purged ranges.
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    let cfs = [CF_LOG, CF_META, CF_SNAPSHOT].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir.join("raft"), cfs)?))
}

/// Write options for everything Raft depends on: the write is on disk before it returns.
pub fn synced() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}
