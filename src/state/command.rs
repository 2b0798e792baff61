use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::actions::{ActionPolicy, ActionSpec, AnomalyReport, Submitted};
use super::model::{Health, Reason, Weights};
use super::objects::{ObjectWrite, RegionState, Resolution, SchedulerWeights, SyncPolicy, WriteOutcome};
use super::Error;

/// One change to the [`State`](super::State). Commands are validated before they are
/// proposed; `apply` checks only what depends on the state (references, `cas`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    PutRegion {
        name: String,
        spec: RegionSpec,
        cas: Option<u64>,
    },
    DeleteRegion {
        name: String,
        cas: Option<u64>,
    },
    PutNode {
        id: String,
        spec: NodeSpec,
        cas: Option<u64>,
    },
    DeleteNode {
        id: String,
        cas: Option<u64>,
    },
    PutZone {
        name: String,
        spec: ZoneSpec,
        cas: Option<u64>,
    },
    DeleteZone {
        name: String,
        cas: Option<u64>,
    },
    PutSite {
        id: String,
        region: String,
        cas: Option<u64>,
    },
    DeleteSite {
        id: String,
        cas: Option<u64>,
    },
    /// Pin a site to a node, or unpin it with `None`.
    PinSite {
        id: String,
        node: Option<String>,
    },
    PutDomain {
        name: String,
        spec: DomainSpec,
        cas: Option<u64>,
    },
    DeleteDomain {
        name: String,
        cas: Option<u64>,
    },
    /// Lock a domain to a site, or unlock it with `None`.
    LockDomain {
        name: String,
        site: Option<String>,
    },
    /// Drain a node (`Some(reason)`) or return it to service (`None`).
    SetMaintenance {
        id: String,
        reason: Option<String>,
    },
    PutPolicy {
        weights: Weights,
        hysteresis: f64,
        down_after_ms: u64,
    },
    /// Health transitions decided by the leader's failure detector.
    SetHealth {
        changes: Vec<(String, Health)>,
    },
    /// Changes of the elected table decided by the leader, applied together.
    Dispatch {
        changes: Vec<RowChange>,
        at_ms: u64,
    },
    /// A region's write of an object; `at_ms` is the leader's clock when it proposed it.
    PutObject {
        id: String,
        write: ObjectWrite,
        cas: Option<u64>,
        at_ms: u64,
    },
    DeleteObject {
        id: String,
        cas: Option<u64>,
    },
    ResolveConflict {
        id: String,
        resolution: Resolution,
        at_ms: u64,
    },
    /// A node holds a healthy copy of the object (`healthy`), or lost it.
    MarkReplica {
        id: String,
        node: String,
        healthy: bool,
    },
    /// A region has applied these events of its feed (and, with `upto`, every one up to it).
    AckEvents {
        region: String,
        events: Vec<u64>,
        upto: Option<u64>,
        at_ms: u64,
    },
    /// A region asks for objects it does not hold (on-demand sync).
    PullObjects {
        region: String,
        objects: Vec<String>,
    },
    /// Release the held lazy changes of these regions (the leader's timer).
    ReleaseLazy {
        regions: Vec<String>,
    },
    RegionHeartbeat {
        region: String,
        report: RegionReport,
        at_ms: u64,
    },
    PutSyncPolicy {
        policy: SyncPolicy,
    },
    PutScheduler {
        weights: SchedulerWeights,
    },
    /// A request for a remediation action; `at_ms` is the leader's clock when it proposed it.
    SubmitAction {
        spec: ActionSpec,
        at_ms: u64,
    },
    /// A worker asks for the next queued action of these types.
    ClaimAction {
        worker: String,
        kinds: Vec<String>,
        lease_ms: u64,
        at_ms: u64,
    },
    /// The worker holding an action reports it completed (`ok`) or failed.
    ReportAction {
        id: u64,
        worker: String,
        /// The attempt the worker was handed (from its claim); `None`: whichever it holds.
        attempt: Option<u32>,
        ok: bool,
        message: Option<String>,
        at_ms: u64,
    },
    /// The leader's timer: leases that ran out by `at_ms`.
    ExpireLeases {
        at_ms: u64,
    },
    /// The leader's executor: carry out these queued built-in actions.
    RunBuiltins {
        ids: Vec<u64>,
        at_ms: u64,
    },
    /// An anomaly report, with the action it maps to.
    ReportAnomaly {
        report: AnomalyReport,
        action: Option<ActionSpec>,
        at_ms: u64,
    },
    /// An Alertmanager alert with this fingerprint resolved.
    ResolveAlert {
        fingerprint: String,
        at_ms: u64,
    },
    PutActionPolicy {
        policy: ActionPolicy,
    },
    /// The leader's timer: forget finished actions and done anomalies older than
    /// `keep_ms` at `at_ms`, and all but the newest `keep_max` of them.
    PruneFinished {
        at_ms: u64,
        keep_ms: u64,
        keep_max: u32,
    },
    /// `command` applied only if the resource it writes is at revision `cas` (0: never
    /// written), as `?cas=` asks. For the commands that carry no `cas` of their own: a
    /// pin, a lock, maintenance and the policies ([`Command::guardable`]).
    Guarded {
        cas: u64,
        command: Box<Command>,
    },
}

/// The `at_ms` of a command built by a request handler: the leader replaces it with its own
/// clock as it proposes the command ([`Command::stamp`]).
pub const UNSTAMPED: u64 = 0;

impl Command {
    /// Sets the time the command carries to the leader's clock, `now_ms`. Commands are
    /// stamped by the leader as it proposes them, so every time that decides something
    /// (lease ends, backoffs, rate windows, sync times) comes from one clock, whichever
    /// peer took the request.
    pub fn stamp(&mut self, now_ms: u64) {
        match self {
            Command::PutObject { at_ms, .. }
            | Command::ResolveConflict { at_ms, .. }
            | Command::AckEvents { at_ms, .. }
            | Command::RegionHeartbeat { at_ms, .. }
            | Command::SubmitAction { at_ms, .. }
            | Command::ClaimAction { at_ms, .. }
            | Command::ReportAction { at_ms, .. }
            | Command::ReportAnomaly { at_ms, .. }
            | Command::ResolveAlert { at_ms, .. } => *at_ms = now_ms,
            Command::Guarded { command, .. } => command.stamp(now_ms),
            _ => {}
        }
    }

    /// The one resource this command writes and answers a revision for, as `kind/id`;
    /// `None` for commands that write several, or none a client holds a revision of.
    pub fn resource(&self) -> Option<String> {
        let (kind, id): (&str, String) = match self {
            Command::Guarded { command, .. } => return command.resource(),
            Command::PutRegion { name, .. } | Command::DeleteRegion { name, .. } => ("region", name.clone()),
            Command::PutNode { id, .. } | Command::DeleteNode { id, .. } | Command::SetMaintenance { id, .. } => {
                ("node", id.clone())
            }
            Command::PutZone { name, .. } | Command::DeleteZone { name, .. } => ("zone", name.clone()),
            Command::PutSite { id, .. } | Command::DeleteSite { id, .. } | Command::PinSite { id, .. } => {
                ("site", id.clone())
            }
            Command::PutDomain { name, .. } | Command::DeleteDomain { name, .. } | Command::LockDomain { name, .. } => {
                ("domain", name.clone())
            }
            Command::PutObject { id, .. }
            | Command::DeleteObject { id, .. }
            | Command::ResolveConflict { id, .. }
            | Command::MarkReplica { id, .. } => ("object", id.clone()),
            Command::ReportAction { id, .. } => ("action", id.to_string()),
            Command::RegionHeartbeat { region, .. } => ("region_status", region.clone()),
            Command::PutPolicy { .. } => ("policy", "scoring".into()),
            Command::PutSyncPolicy { .. } => ("policy", "sync".into()),
            Command::PutScheduler { .. } => ("policy", "scheduler".into()),
            Command::PutActionPolicy { .. } => ("policy", "actions".into()),
            _ => return None,
        };
        Some(format!("{kind}/{id}"))
    }
}

impl Command {
    /// Whether [`Command::Guarded`] may wrap this command: it writes one resource that
    /// carries a revision, and has no `cas` of its own.
    pub fn guardable(&self) -> bool {
        matches!(
            self,
            Command::PinSite { .. }
                | Command::LockDomain { .. }
                | Command::SetMaintenance { .. }
                | Command::PutPolicy { .. }
                | Command::PutSyncPolicy { .. }
                | Command::PutScheduler { .. }
                | Command::PutActionPolicy { .. }
        )
    }

    /// This command under `?cas=`, if one was given.
    pub fn guarded(self, cas: Option<u64>) -> Command {
        match cas {
            Some(cas) => Command::Guarded { cas, command: Box::new(self) },
            None => self,
        }
    }
}

/// What a region reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionReport {
    pub state: RegionState,
    pub sync_lag: u64,
    pub storage_used: u64,
    pub load_level: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneSpec {
    pub ns: Vec<String>,
    pub hostmaster: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSpec {
    pub sites: Vec<String>,
    pub ttl: u32,
    /// Set for an alias; then `sites` is empty.
    pub cname: Option<String>,
}

/// The new content of one row of the elected table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub domain: String,
    pub region: String,
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    pub score: Option<f64>,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionSpec {
    pub cidrs: Vec<IpNet>,
    pub fallback: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub ip: IpAddr,
    pub region: String,
    pub site: String,
    pub capacity: u32,
}

/// The payload of one Raft log entry: the commands the leader gathered while the previous
/// entry was being committed (group commit). They apply in order, each on its own: one
/// command failing does not fail its neighbours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub commands: Vec<Command>,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The log index of the entry that carried the command: the resource's new revision.
    pub revision: u64,
    /// What the command did beyond "applied", for commands that say more.
    pub detail: Option<Detail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detail {
    Object(WriteOutcome),
    /// How many events an ack removed, a pull queued, or built-in actions ran.
    Count(usize),
    Submitted(Submitted),
    /// The action a worker got, if any, as the claim left it.
    Claimed(Option<super::actions::Claim>),
    Anomaly {
        id: u64,
        submitted: Option<Submitted>,
    },
}

impl Outcome {
    pub fn at(revision: u64) -> Self {
        Self { revision, detail: None }
    }
}

/// The answer to a [`Batch`], one result per command, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    pub results: Vec<Result<Outcome, Error>>,
}
