//! `jepsen check`: judge a history file with the checker of its workload.

use std::path::Path;
use std::time::Duration;

use crate::checker::{self, Report};
use crate::history;

/// Which kind of history: which checker applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Keys as registers (read, write, cas): checked for linearizability.
    Register,
    /// Unique adds and reads of a set: checked for completeness.
    Set,
    /// Object writes and the change feeds of other regions: delivered exactly once, in order.
    Changefeed,
    /// The action queue: submissions, workers' claims, runs and reports, a final read; every
    /// accepted action completes or fails, none lost or run twice.
    Actions,
    /// DNS answers around node deaths (`dns.jsonl`): failover, agreement, availability.
    Dns,
    /// The leader and term on the majority side while one follower is lossy
    /// (`leadership.jsonl`, written by the `lossy` nemesis): nobody unseats the leader.
    Leadership,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Set => "set",
            Workload::Changefeed => "changefeed",
            Workload::Actions => "actions",
            Workload::Dns => "dns",
            Workload::Leadership => "leadership",
        }
    }

    /// Whether a history event belongs to this workload (a run's history mixes them): the
    /// set's key is `set`, the change feed's keys start with `cf-`, the action queue's with
    /// `aq-`, the rest are registers.
    pub fn owns(self, key: &str) -> bool {
        let set = key == crate::run::workload::SET_KEY;
        let feed = key.starts_with(checker::changefeed::KEY_PREFIX);
        let queue = key.starts_with(checker::actions::KEY_PREFIX);
        match self {
            Workload::Set => set,
            Workload::Changefeed => feed,
            Workload::Actions => queue,
            Workload::Register => !set && !feed && !queue,
            Workload::Dns | Workload::Leadership => false,
        }
    }
}

/// Judges a list of events.
pub fn check_events(workload: Workload, events: &[history::Event], budget: Duration) -> Result<Report, String> {
    let ops = history::pair(events).map_err(|e| format!("malformed history: {e}"))?;
    Ok(match workload {
        Workload::Register => checker::linearizable::check(&ops, budget),
        Workload::Set => checker::set::check(&ops),
        Workload::Changefeed => checker::changefeed::check(&ops),
        Workload::Actions => checker::actions::check(&ops),
        Workload::Dns => {
            return Err("a DNS log is not an operation history; check dns.jsonl with --workload dns".into())
        }
        Workload::Leadership => {
            return Err(
                "a leadership log is not an operation history; check leadership.jsonl with --workload leadership"
                    .into(),
            )
        }
    })
}

/// Reads and judges a history file; `Err` when the file cannot be read or is malformed.
pub fn check_file(workload: Workload, path: &Path, budget: Duration) -> Result<Report, String> {
    if workload == Workload::Dns {
        let events = checker::dns::read_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(checker::dns::check(&events));
    }
    if workload == Workload::Leadership {
        let events = checker::leadership::read_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(checker::leadership::check(&events));
    }
    let events = history::read_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_events(workload, &events, budget).map_err(|e| format!("{}: {e}", path.display()))
}
