//! Where objects live and where work runs, read from the replicated state, and the
//! leader's timer that releases lazy sync batches.
//!
//! The rules that change objects (clocks, conflicts, feeds) are part of the replicated
//! model in `state/`; this module only reads the state and, on the leader, proposes
//! commands.
//!
//! - [`replicas`]: rendezvous hashing of a content hash over the healthy nodes, spread
//!   across sites. Stable: when a node leaves, only the hashes it held move.
//! - [`schedule`]: the best node for a workload by the metrics the heartbeats carry and the
//!   replicated scheduler weights.
//! - [`release`]: lazy changes wait in each region's feed until `sync.batch_size` of them
//!   gather (released while applying) or `sync.lazy_interval_ms` passes since the first
//!   (released by this timer, on the leader).

mod release;
pub mod replicas;
pub mod schedule;

pub use release::run;
