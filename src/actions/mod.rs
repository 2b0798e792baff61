//! The remediation engine at run time: the leader's executor of built-in actions and its
//! lease timer. Every decision about the queue (conflicts, dedup, rate limits, which
//! action a worker gets, retries) is made while applying the log, in `state/actions.rs`;
//! this module only proposes the commands that need a clock or a leader:
//!
//! - **Built-in actions** (`drain_node`, `restore_node`, `failover_domain`, `lock_domain`,
//!   `pin_site`) act on the cluster itself. The leader takes queued ones in queue order
//!   (priority, then age), at most `max_active` minus the running ones, and commits
//!   `RunBuiltins`: each action's effect (maintenance, a lock, a pin) applies in the same
//!   log entry as its completion, so it happens exactly once, on every peer.
//! - **Leases**: an external worker claims an action for a lease; when the lease runs out
//!   by the leader's clock, the leader commits `ExpireLeases` and the action is retried
//!   after a backoff, or failed after `max_attempts`. A worker that dies loses nothing.
//!
//! After a leader change the new leader simply continues: the queue is in the log, and the
//! timer looks at absolute lease deadlines.

mod execute;

pub use execute::run;
