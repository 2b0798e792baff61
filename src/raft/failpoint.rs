//! Crash points for the fault-injection suite (`jepsen-style-tests`, snapshot-crash
//! nemesis): a test hook, not a feature. `SWITCHBOARD_FAILPOINT=<name>` in a peer's
//! environment, read once at start, makes the peer log `failpoint <name> fired` and abort
//! (as a crash would: no shutdown, nothing flushed) the first time it reaches that point.
//! Unset, or naming no point, it does nothing.
//!
//! The points, in `state_machine.rs` (a snapshot is written to its own file, synced and
//! renamed, then made current by one synced RocksDB write naming it: `snapshot_file.rs`):
//!
//! - `snapshot-build-before-persist`: a snapshot of the peer's own state is in its file,
//!   synced, but not current (the file is removed at restart; the previous snapshot stays);
//! - `snapshot-build-after-persist`: current, not yet handed to Raft (which would then purge
//!   the log before it);
//! - `snapshot-install-before-persist`: the leader's snapshot is received into its file,
//!   synced, but not current;
//! - `snapshot-install-after-persist`: current, not yet the state in memory, and Raft has
//!   not learned of it (its log and vote are as before the install).
//!
//! One name is not a crash point but a mode, for the suite's `lossy` nemesis to show that
//! its checker catches a leader unseated by a lossy follower:
//!
//! - `elections-without-pre-vote`: elections the plain Raft way: openraft's own election
//!   timer, no pre-vote and no check-quorum (`peer/election.rs` does not run).
//!
//! One point delays instead of aborting, for the cluster tests (`tests/cluster/`):
//!
//! - `forwarded-heartbeats-late`: the first batch of heartbeats another peer forwards to
//!   this one (as leader) is held for [`LATE`] after it arrived, then served, as if the
//!   network had delivered it that late (a partition, TCP retransmitting it after the
//!   sender gave up). The sender's wait for the answer ends long before. The peer logs
//!   `failpoint forwarded-heartbeats-late fired` when it starts holding the batch and
//!   `failpoint forwarded-heartbeats-late: the held batch was served outcome=...` after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub const ENV: &str = "SWITCHBOARD_FAILPOINT";

pub const POINTS: &[&str] = &[
    "snapshot-build-before-persist",
    "snapshot-build-after-persist",
    "snapshot-install-before-persist",
    "snapshot-install-after-persist",
    ELECTIONS_WITHOUT_PRE_VOTE,
    FORWARDED_HEARTBEATS_LATE,
];

/// The mode that turns pre-vote and check-quorum off (see the module's documentation).
pub const ELECTIONS_WITHOUT_PRE_VOTE: &str = "elections-without-pre-vote";
/// The point that serves one forwarded batch of heartbeats late.
pub const FORWARDED_HEARTBEATS_LATE: &str = "forwarded-heartbeats-late";
/// How long `forwarded-heartbeats-late` holds its batch.
pub const LATE: Duration = Duration::from_secs(15);

static ARMED: OnceLock<Option<String>> = OnceLock::new();
static REACHED: AtomicBool = AtomicBool::new(false);

/// Reads `SWITCHBOARD_FAILPOINT` (once; later calls return the first answer) and warns when
/// a point is armed.
pub fn armed() -> Option<&'static str> {
    ARMED
        .get_or_init(|| {
            let name = std::env::var(ENV).ok().filter(|n| !n.is_empty())?;
            if name == ELECTIONS_WITHOUT_PRE_VOTE {
                tracing::warn!(failpoint = %name, "failpoint armed: elections without pre-vote (a test hook)");
            } else if name == FORWARDED_HEARTBEATS_LATE {
                tracing::warn!(failpoint = %name, "failpoint armed: one forwarded batch of heartbeats is served late (a test hook)");
            } else if POINTS.contains(&name.as_str()) {
                tracing::warn!(failpoint = %name, "failpoint armed: this peer aborts when it gets there (a test hook)");
            } else {
                tracing::warn!(failpoint = %name, known = ?POINTS, "unknown failpoint; nothing is armed");
            }
            Some(name)
        })
        .as_deref()
}

/// Aborts the process here when `name` is the armed point.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        tracing::error!("failpoint {name} fired");
        std::process::abort();
    }
}

/// Whether this peer elects the plain Raft way (`elections-without-pre-vote`).
pub fn elections_without_pre_vote() -> bool {
    armed() == Some(ELECTIONS_WITHOUT_PRE_VOTE)
}

/// Whether `name` is the armed point and this is the first time it is reached; false ever
/// after. For the points that delay instead of aborting.
pub fn first_time(name: &str) -> bool {
    armed() == Some(name) && !REACHED.swap(true, Ordering::SeqCst)
}
