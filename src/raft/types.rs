use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{Batch, BatchResult};

/// A peer's numeric Raft id (`--id`).
pub type PeerId = u64;

/// What the cluster records about each member: where to reach it. Kept in the Raft
/// membership, so every peer knows every other peer's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub raft_addr: String,
    pub http_addr: String,
    pub dns_addr: String,
    pub region: String,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={}", self.raft_addr, self.http_addr)
    }
}

openraft::declare_raft_types!(
    /// The types switchboard's Raft is built from.
    pub TypeConfig:
        D = Batch,
        R = BatchResult,
        NodeId = PeerId,
        Node = PeerInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot_file::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<PeerId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<PeerId>;
pub type StorageError = openraft::StorageError<PeerId>;
pub type SnapshotMeta = openraft::SnapshotMeta<PeerId, PeerInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<PeerId, PeerInfo>;
