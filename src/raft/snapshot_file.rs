//! Snapshots on disk: the state in a file of its own under `<data_dir>/snapshots`, and a
//! small record in RocksDB that names the current file.
//!
//! The state is serialised straight into the file and read straight back from it, so a
//! snapshot never needs a second copy of the state in memory (a copy in a buffer, another
//! in a RocksDB write batch and a third in its memtable raised a peer's peak from ~340 MB
//! to ~600 MB at 1,000,000 dispatch rows: docs/benchmarks.md).
//!
//! A new snapshot is written to a temporary file, synced, renamed to its final name and the
//! directory synced; only then does the synced RocksDB record make it current. A crash at
//! any point leaves either the old record and its file, or the new ones: files no record
//! names are removed when the peer starts.

use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use openraft::ErrorSubject;
use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncSeekExt, AsyncWrite, ReadBuf};

use super::checksum;
use super::db::{synced, CF_SNAPSHOT};
use super::log_store::{decode, encode, purge_into, read_err, write_err, PurgeGate};
use super::types::{SnapshotMeta, StorageError};
use crate::state::State;

/// The record of the current snapshot.
const KEY_RECORD: &[u8] = b"record";
/// The whole snapshot inside RocksDB, as the first versions stored it. No longer read: a
/// data dir that holds one is refused with the way out (re-add the peer empty).
const KEY_LEGACY: &[u8] = b"current";

const SUFFIX: &str = ".snap";
const WRITING: &str = ".writing";
const RECEIVING: &str = ".receiving";

/// What RocksDB holds about the current snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    meta: SnapshotMeta,
    /// The file's name in the snapshot directory.
    file: String,
}

/// A snapshot's bytes as Raft reads (to send) and writes (when receiving) them: an open
/// file and where it is.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// Its length in bytes (0 if it cannot be read).
    pub async fn byte_len(&self) -> u64 {
        self.file.metadata().await.map(|m| m.len()).unwrap_or(0)
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// The snapshot directory and the record of which file in it is current.
#[derive(Clone)]
pub struct SnapshotFiles {
    db: Arc<DB>,
    dir: PathBuf,
    gate: PurgeGate,
    /// One snapshot made current at a time (a build may finish while a leader's snapshot
    /// is installed).
    switch: Arc<tokio::sync::Mutex<()>>,
}

fn subject() -> ErrorSubject<u64> {
    ErrorSubject::Snapshot(None)
}

fn io_read(e: io::Error) -> StorageError {
    read_err(subject(), e)
}

fn io_write(e: io::Error) -> StorageError {
    write_err(subject(), e)
}

/// The error, with the file it concerns.
fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl SnapshotFiles {
    /// Opens the directory (creating it), loads the current snapshot if there is one and
    /// removes files no record names (left by a crash while writing or receiving).
    pub fn open(
        db: Arc<DB>,
        dir: &Path,
        gate: PurgeGate,
    ) -> Result<(Self, Option<(SnapshotMeta, State)>), StorageError> {
        fs::create_dir_all(dir).map_err(io_write)?;
        let files = Self { db, dir: dir.to_path_buf(), gate, switch: Arc::default() };
        let record = files.record()?;
        for entry in fs::read_dir(dir).map_err(io_read)? {
            let entry = entry.map_err(io_read)?;
            if record.as_ref().is_none_or(|r| entry.file_name().to_str() != Some(r.file.as_str())) {
                tracing::info!(file = %entry.path().display(), "removing a snapshot file no record names");
                fs::remove_file(entry.path()).map_err(io_write)?;
            }
        }
        let loaded = match record {
            Some(r) => {
                let path = dir.join(&r.file);
                let file = fs::File::open(&path).map_err(io_read)?;
                let len = file.metadata().map_err(io_read)?.len();
                let state = checksum::read_state(file, len).map_err(|e| io_read(named(&path, e)))?;
                Some((r.meta, state))
            }
            None => match files.db.get_cf(files.cf(), KEY_LEGACY).map_err(|e| read_err(subject(), e))? {
                Some(_) => {
                    let e = io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the data dir holds a snapshot in the format of the first versions (inside \
                             RocksDB), which this version no longer reads; {}",
                            checksum::RECOVERY
                        ),
                    );
                    return Err(io_read(e));
                }
                None => None,
            },
        };
        files.gate.durable(loaded.as_ref().and_then(|(meta, _)| meta.last_log_id), false);
        Ok((files, loaded))
    }

    fn cf(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_SNAPSHOT).expect("snapshot column family")
    }

    fn record(&self) -> Result<Option<Record>, StorageError> {
        let bytes = self.db.get_cf(self.cf(), KEY_RECORD).map_err(|e| read_err(subject(), e))?;
        bytes.map(|b| decode(&b).map_err(io_read)).transpose()
    }

    /// A fresh file name for a snapshot up to `index`.
    fn new_name(index: u64) -> String {
        format!("snapshot-{index:020}-{:08x}", rand::random::<u32>())
    }

    /// Writes `state` into a new file (not yet current) and flushes it to the OS; returns
    /// its name and size. Called while the caller holds the state, so it does no more.
    pub fn write(&self, index: u64, state: &State) -> Result<(String, u64), StorageError> {
        let name = Self::new_name(index);
        let path = self.dir.join(format!("{name}{WRITING}"));
        let file = fs::File::create(&path).map_err(io_write)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        checksum::write_state(&mut out, state).map_err(io_write)?;
        let bytes = out.get_ref().metadata().map_err(io_write)?.len();
        Ok((name, bytes))
    }

    /// A new file to receive a leader's snapshot into.
    pub async fn receive(&self) -> Result<SnapshotFile, StorageError> {
        let path = self.dir.join(format!("{}{RECEIVING}", Self::new_name(0)));
        let file = tokio::fs::File::create(&path).await.map_err(io_write)?;
        self.gate.receiving();
        Ok(SnapshotFile { file, path })
    }

    /// Takes a received snapshot: syncs it into this directory (copying it when it is not
    /// one of this directory's receiving files) and reads the state from it. Returns the
    /// name it is kept under (not yet current) and the state.
    pub async fn take_received(&self, index: u64, mut received: SnapshotFile) -> Result<(String, State), StorageError> {
        let name = Self::new_name(index);
        let ours = received.path.parent() == Some(self.dir.as_path())
            && received.path.extension().and_then(|e| e.to_str()) == Some(&RECEIVING[1..]);
        let path = if ours {
            received.file.sync_all().await.map_err(io_write)?;
            received.path.clone()
        } else {
            let path = self.dir.join(format!("{name}{WRITING}"));
            let mut copy = tokio::fs::File::create(&path).await.map_err(io_write)?;
            received.file.seek(io::SeekFrom::Start(0)).await.map_err(io_read)?;
            tokio::io::copy(&mut received.file, &mut copy).await.map_err(io_write)?;
            copy.sync_all().await.map_err(io_write)?;
            path
        };
        let final_path = self.dir.join(format!("{name}{SUFFIX}"));
        let dir = self.dir.clone();
        let state = tokio::task::spawn_blocking(move || -> io::Result<State> {
            let file = fs::File::open(&path)?;
            let len = file.metadata()?.len();
            let state = checksum::read_state(file, len).map_err(|e| named(&path, e))?;
            fs::rename(&path, &final_path)?;
            fs::File::open(&dir)?.sync_all()?;
            Ok(state)
        })
        .await
        .map_err(|e| io_read(io::Error::other(e)))?
        .map_err(io_read)?;
        Ok((format!("{name}{SUFFIX}"), state))
    }

    /// Syncs a file written by [`SnapshotFiles::write`] and gives it its final name.
    pub async fn seal(&self, name: &str) -> Result<String, StorageError> {
        let (from, to) = (self.dir.join(format!("{name}{WRITING}")), self.dir.join(format!("{name}{SUFFIX}")));
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            fs::File::open(&from)?.sync_all()?;
            fs::rename(&from, &to)?;
            fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| io_write(io::Error::other(e)))?
        .map_err(io_write)?;
        Ok(format!("{name}{SUFFIX}"))
    }

    /// Makes a sealed file the current snapshot (one synced RocksDB write, which also
    /// carries out a log purge held back until now: `PurgeGate`) and removes the file it
    /// replaces. `installed`: the snapshot was received from the leader.
    ///
    /// A snapshot older than the current one (a build that finished after a newer snapshot
    /// was installed) is dropped: making it current would tie the state to a log that was
    /// already purged past it.
    pub async fn make_current(&self, meta: &SnapshotMeta, file: String, installed: bool) -> Result<(), StorageError> {
        let _one_at_a_time = self.switch.lock().await;
        let previous = self.record()?;
        if let Some(current) = previous.as_ref().filter(|p| p.meta.last_log_id > meta.last_log_id) {
            tracing::info!(
                current = ?current.meta.last_log_id,
                dropped = ?meta.last_log_id,
                "a newer snapshot became current meanwhile; this one is dropped"
            );
            if let Err(e) = fs::remove_file(self.dir.join(&file)) {
                tracing::warn!(file = %file, error = %e, "could not remove the dropped snapshot file");
            }
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(), KEY_RECORD, encode(&Record { meta: meta.clone(), file: file.clone() }));
        batch.delete_cf(self.cf(), KEY_LEGACY);
        let held = self.gate.covered_by(meta.last_log_id);
        if let Some(upto) = held {
            purge_into(&mut batch, &self.db, upto);
            tracing::info!(upto = upto.index, "purging the log the snapshot covers, with it");
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || super::db::write(&db, batch, &synced()))
            .await
            .map_err(|e| io_write(io::Error::other(e)))?
            .map_err(|e| write_err(subject(), e))?;
        self.gate.durable(meta.last_log_id, installed);
        if let Some(old) = previous.filter(|p| p.file != file) {
            // An open handle (a snapshot being sent) keeps reading the removed file.
            if let Err(e) = fs::remove_file(self.dir.join(&old.file)) {
                tracing::warn!(file = %old.file, error = %e, "could not remove the previous snapshot file");
            }
        }
        Ok(())
    }

    /// The current snapshot: its meta and its file, open for reading.
    pub async fn current(&self) -> Result<Option<(SnapshotMeta, SnapshotFile)>, StorageError> {
        let Some(record) = self.record()? else {
            return Ok(None);
        };
        Ok(Some((record.meta, self.open_file(&record.file).await?)))
    }

    /// A sealed snapshot file, open for reading (the handle keeps working after the file is
    /// replaced and removed).
    pub async fn open_file(&self, name: &str) -> Result<SnapshotFile, StorageError> {
        let path = self.dir.join(name);
        let file = tokio::fs::File::open(&path).await.map_err(io_read)?;
        Ok(SnapshotFile { file, path })
    }
}
