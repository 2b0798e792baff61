//! Consensus: switchboard's replicated log, built on [openraft](https://docs.rs/openraft).
//!
//! # How a write becomes everyone's state
//!
//! Raft keeps one ordered log on every peer. One peer at a time is the *leader*, elected by
//! a majority for a *term*; only the leader appends. A client's write, whichever peer it
//! reaches, is handed to the leader (`peer/`), which gathers the writes that arrive while
//! its previous entry is in flight into one entry (group commit), appends it to its own log,
//! and sends it to the followers with `AppendEntries`. Each follower writes the entry to disk
//! and answers; once a majority (the leader counts) has it on disk the entry is *committed*:
//! no future leader can be elected without it, because a candidate needs a majority's vote
//! and a voter refuses a candidate whose log is behind its own. Committed entries are applied
//! in order to the state machine on every peer; applying is deterministic (`state/`), so
//! every peer computes the same state. The client is answered after the leader has applied
//! the entry, with the entry's index: the resource's new `revision`.
//!
//! A follower that hears nothing from a leader for an election timeout stands as candidate
//! in the next term, but first asks the other voters whether they would vote for it
//! (*pre-vote*): only when a majority has not heard from a leader either does it raise the
//! term. A follower on a bad link therefore cannot depose a leader the others still hear,
//! and a leader that has not heard from a quorum for a lease steps down (*check-quorum*).
//! openraft's own election timer is off; the rules and their invariants are in
//! `peer/election.rs`. Timeouts are sized for a disk that fsyncs: a heartbeat every 100 ms
//! and a leader lease of `election_max_ms` (1 s) by default, so that a slow fsync under
//! load does not cost a leader its term, while a dead leader is replaced in about 1.3 s.
//!
//! # Reads
//!
//! By default a read is linearizable: the leader confirms with a quorum that it is still
//! leader and notes its commit index (the *read index*); the peer answering the read waits
//! until it has applied that index, then reads its local state. A follower asks the leader
//! for the read index over the peer RPC. `?stale` skips this and reads the local state.
//!
//! # Storage
//!
//! One RocksDB database under `--data-dir` (`db.rs`). The log and the vote (`log_store.rs`)
//! are written with one synced `WriteBatch` per append before Raft is told they are durable.
//! The state machine (`state_machine.rs`) lives in memory; every `snapshot_every` applied
//! entries it is serialised into a snapshot file, synced (`snapshot_file.rs`), and the log before it is
//! purged (keeping `keep_logs` entries for followers that are a little behind), so the disk
//! stays bounded under endless writes. A restarting peer loads its snapshot and re-applies
//! the committed log after it; a peer too far behind receives the leader's snapshot.
//!
//! # Network
//!
//! Peers talk over their own TCP port (`--raft-addr`), separate from the HTTP API, in
//! bincode frames (`rpc.rs`), after an HMAC challenge on the cluster secret.
//!
//! # Caveats
//!
//! - Membership changes go through openraft's joint consensus. A peer is added as a
//!   learner, caught up, then promoted; removing the leader makes it step down after the
//!   change commits.
//! - Reads on a follower cost one round trip to the leader plus a quorum heartbeat.
//! - Leases are not used for reads: correctness never depends on clocks.
//! - openraft 0.9 has no call to make a leader step down; check-quorum makes the leader
//!   grant a vote for the next term to peer 0, which no peer is (`peer/election.rs`).
//! - A write whose forwarding to the leader fails mid-way is reported as unavailable with
//!   an unknown outcome; it may have been applied. `?cas=` makes retries safe.
//! - The state machine must fit in memory; snapshots are sent whole (in chunks).

// openraft's error types are large by design; boxing them at every boundary buys nothing.
#![allow(clippy::result_large_err)]

mod checksum;
pub mod db;
pub mod failpoint;
pub mod log_store;
pub mod network;
pub mod rpc;
pub mod snapshot_file;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use network::Network;
pub use state_machine::{Applied, SharedState, StateMachineStore};
pub use types::{PeerId, PeerInfo, Raft, TypeConfig};

#[cfg(test)]
mod tests;
