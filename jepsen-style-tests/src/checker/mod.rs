//! Checkers: each one judges a history against one invariant and returns a [`Report`].
//!
//! - [`linearizable`]: every key behaves as one atomic register (read, write, cas).
//! - [`set`]: a final read holds every acknowledged add and nothing never added.
//! - [`changefeed`]: every acknowledged write reaches each region's change feed once, in order.
//! - [`actions`]: every accepted action completes or fails, none lost, completed twice or
//!   handed out under overlapping leases.
//! - [`dns`]: every peer fails over from a dead node in time, and agrees after the final heal.
//! - [`leadership`]: while one follower is lossy, the others keep their leader and term.

pub mod actions;
pub mod changefeed;
pub mod dns;
pub mod leadership;
pub mod linearizable;
pub mod register;
pub mod set;

use serde::Serialize;
use serde_json::Value;

/// The verdict of a checker. Ordered so that the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    /// No verdict: the search ran out of time, or the history lacks what the checker needs.
    Unknown,
    /// An anomaly was found.
    Invalid,
}

impl Validity {
    /// `jepsen check` and `jepsen run` exit with this: 0 valid, 1 anomaly, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

/// One thing that is wrong, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub message: String,
    /// The offending operations, one per line as `Operation`'s display.
    pub ops: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub checker: String,
    pub valid: Validity,
    pub summary: String,
    pub anomalies: Vec<Anomaly>,
    /// Checker-specific numbers (counts per outcome, per key).
    pub stats: Value,
}

impl Report {
    /// Human-readable: the verdict, the summary and each anomaly with its operations.
    pub fn render(&self) -> String {
        self.render_limited(usize::MAX)
    }

    /// Like [`Report::render`], with at most `max` anomalies.
    pub fn render_limited(&self, max: usize) -> String {
        let verdict = match self.valid {
            Validity::Valid => "valid",
            Validity::Unknown => "unknown",
            Validity::Invalid => "INVALID",
        };
        let mut out = format!("{}: {verdict} - {}\n", self.checker, self.summary);
        for a in self.anomalies.iter().take(max) {
            match &a.key {
                Some(k) => out.push_str(&format!("  [{}] key {k}: {}\n", a.kind, a.message)),
                None => out.push_str(&format!("  [{}] {}\n", a.kind, a.message)),
            }
            for op in &a.ops {
                out.push_str(&format!("      {op}\n"));
            }
        }
        if self.anomalies.len() > max {
            out.push_str(&format!("  ... and {} more anomalies (all in results.json)\n", self.anomalies.len() - max));
        }
        out
    }
}
