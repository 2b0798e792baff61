//! Dispatch: which node answers for each domain in each region, kept current by a loop
//! of observation, analysis and execution that runs on the leader.
//!
//! # Observe
//!
//! Nodes send heartbeats (`POST /v1/nodes/ID/heartbeat`, every 500 ms is the
//! expectation) with their latency, load, error rate, CPU and bandwidth. Any peer accepts
//! them and passes them on to the leader in batches; the leader keeps the latest metrics
//! and the time it heard each node as *soft state* ([`Observations`]): nothing about a
//! heartbeat is written to the Raft log. Only health *transitions* are: a node is
//! declared down after `down_after_ms` (default 1500) without a heartbeat, and up again on
//! its next one. 10,000 nodes beating twice a second therefore cost no log writes while
//! nothing changes. A leader starts with no soft state; it grants every node a grace
//! period of `down_after_ms` from the moment it took over, so a change of leader never
//! fails a node over.
//!
//! # Analyse
//!
//! For every (domain, region), [`analyse::decide`] picks one node, deterministically:
//!
//! 1. A domain locked to a site answers from that site in every region.
//! 2. Otherwise the candidates are the usable nodes (committed up, not in maintenance) of
//!    the domain's sites in that region; a site pinned to a node offers only that
//!    node, usable or not: locks and pins are the operator's choice and beat scores.
//! 3. Candidates are scored by the replicated policy (`PUT /v1/policy/scoring`): a cost
//!    from 0 to 1 weighting normalised latency, load, error rate and CPU (default 0.6
//!    latency + 0.4 load), shown as a score from 0 to 100. A healthy incumbent keeps its
//!    place unless a challenger costs less by the hysteresis margin (default 10%), so
//!    noisy metrics never flap the answer.
//! 4. A region with no candidate tries its fallback regions in order; with none, the
//!    domain has no answer there (data sovereignty) rather than a foreign node.
//!
//! # Execute
//!
//! The leader compares the decisions with the committed table and commits every
//! difference as one `Dispatch` command, each row with its reason (initial, failover,
//! better score, lock, pin, maintenance, recovery, fallback, empty). Every peer applies it
//! in log order, so every peer's table is identical and changes atomically; DNS answers
//! from that table. A changed score alone is not a change.
//!
//! # Caveats
//!
//! - Failure detection runs on the leader only: during an election no node changes
//!   health, and after it the grace period delays a real failure by up to `down_after_ms`.
//! - Metrics are the leader's soft state; `/v1/resolve` on a follower asks the leader for
//!   the current scores.
//! - Health is judged on heartbeats alone: a node that beats but serves errors is steered
//!   away from by its error rate, not declared down.

pub mod analyse;
mod execute;
mod observe;

pub use execute::run;
pub use observe::Observations;

use serde::{Deserialize, Serialize};

/// The metrics a heartbeat carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    pub cpu: f64,
    pub load: f64,
    pub latency_ms: f64,
    pub error_rate: f64,
    pub bandwidth_mbps: f64,
    /// For scheduling (`POST /v1/schedule`); absent from nodes that do not report them.
    pub ram_free_mb: Option<f64>,
    pub gpu_free: Option<f64>,
    pub io_pressure: Option<f64>,
}
