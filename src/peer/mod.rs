//! A running peer: its Raft instance, its copy of the state, and the operations every entry
//! point (HTTP, CLI through HTTP) uses: writes forwarded to the leader and batched there,
//! linearizable or stale reads, and membership changes.

// openraft's error types are large by design and cross this module.
#![allow(clippy::result_large_err)]

mod core;
mod election;
mod error;
mod heartbeat;
mod proposer;
mod rpc_server;

pub use core::{ClusterStatus, Consistency, Member, Peer};
pub use election::ElectionStats;
pub use error::Error;
pub use rpc_server::{serve_rpc, RpcLimits};

/// This peer's wall clock, in milliseconds since the Unix epoch: the time commands carry.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
