//! The one RocksDB database under `--data-dir`, shared by the log store and the state
//! machine store, each with its own column families.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

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

/// The first write that failed (a full or failing disk), once one has. After a failed
/// write RocksDB's log writer is in an error state and must not be used again (builds with
/// assertions abort on it), so every later write fails at once with this error instead,
/// and Raft, which stops at its first storage error, stays stopped. A process opens one
/// database, hence one flag for the process.
static WRITE_FAILURE: OnceLock<String> = OnceLock::new();

/// Writes a batch: every write to the database goes through here (see [`WRITE_FAILURE`]).
pub fn write(db: &DB, batch: WriteBatch, options: &WriteOptions) -> io::Result<()> {
    if let Some(first) = WRITE_FAILURE.get() {
        return Err(io::Error::other(format!("storage stopped after a failed write: {first}")));
    }
    db.write_opt(batch, options).map_err(|e| {
        let message = e.to_string();
        let _ = WRITE_FAILURE.set(message.clone());
        tracing::debug!(error = %message, "a write to the Raft database failed; this peer writes nothing more");
        io::Error::other(message)
    })
}

/// Holds the database open for the life of the peer. When Raft stops on a storage error,
/// openraft drops its stores; closing the database then would sync the failed log writer
/// again (builds with assertions abort on it). After a failed write the database is never
/// closed: the process exits without it, and RocksDB recovers from its log at the next
/// start, as after a crash.
pub struct KeepOpen(Option<Arc<DB>>);

impl KeepOpen {
    pub fn new(db: Arc<DB>) -> Self {
        Self(Some(db))
    }
}

impl Drop for KeepOpen {
    fn drop(&mut self) {
        if WRITE_FAILURE.get().is_some() {
            std::mem::forget(self.0.take());
        }
    }
}

/// Write options for everything Raft depends on: the write is on disk before it returns.
pub fn synced() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}
