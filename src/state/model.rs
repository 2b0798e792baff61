use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Everything the cluster agrees on. Ordered maps keep iteration, snapshots and digests
/// deterministic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub regions: BTreeMap<String, Region>,
    pub nodes: BTreeMap<String, Node>,
    pub zones: BTreeMap<String, Zone>,
    pub sites: BTreeMap<String, Site>,
    pub domains: BTreeMap<String, Domain>,
    pub policy: Policy,
    /// The elected table: (domain, region) → the node that answers, and why.
    pub dispatch: super::table::DispatchTable,
    /// Objects, their sync feeds and the region status.
    pub meta: super::objects::Meta,
    /// The remediation queue: actions and anomalies.
    pub engine: super::actions::Engine,
}

/// A DNS zone this cluster is authoritative for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub name: String,
    /// Name servers published at the apex; empty: the peers themselves.
    pub ns: Vec<String>,
    pub hostmaster: String,
    pub revision: u64,
}

/// A site: a group of nodes in one region that a domain can be served from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub id: String,
    pub region: String,
    /// Manual pin: the node this site answers with, whatever the scores.
    pub pin: Option<String>,
    pub revision: u64,
}

/// A managed domain: the sites that may serve it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    pub sites: Vec<String>,
    pub ttl: u32,
    /// Manual lock: the site this domain answers from, in every region.
    pub lock: Option<String>,
    /// An alias: the domain answers a CNAME to this name instead of electing a node.
    pub cname: Option<String>,
    pub revision: u64,
}

/// How candidates are scored and when a node counts as down. Replicated, so every leader
/// decides the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub weights: Weights,
    /// A healthy incumbent is replaced only by a challenger whose cost is lower by at
    /// least this fraction (0.1: 10%).
    pub hysteresis: f64,
    /// A node is down after this long without a heartbeat.
    pub down_after_ms: u64,
    pub revision: u64,
}

/// Weights of the normalised metrics in a candidate's cost (lower cost is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub latency: f64,
    pub load: f64,
    pub error_rate: f64,
    pub cpu: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            weights: Weights { latency: 0.6, load: 0.4, error_rate: 0.0, cpu: 0.0 },
            hysteresis: 0.1,
            down_after_ms: 1500,
            revision: 0,
        }
    }
}

/// One row of the elected table, owned. The table stores rows compactly and lends them as
/// [`super::table::Row`]; this is the form they are read from a snapshot in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchRow {
    /// The elected node; `None`: the domain has no answer in this region.
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    /// The node's score when elected (0–100, higher is better), if it had metrics.
    pub score: Option<f64>,
    pub reason: Reason,
    /// Wall-clock milliseconds (leader's clock) when this row last changed.
    pub since_ms: u64,
    /// The log index of the entry that changed it.
    pub revision: u64,
}

/// Why a row of the elected table changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The first election for this row.
    Initial,
    /// The incumbent went down.
    Failover,
    /// A challenger beat the incumbent by more than the hysteresis margin.
    BetterScore,
    /// An operator locked the domain to a site.
    Lock,
    /// An operator pinned the site to a node.
    Pin,
    /// The incumbent entered maintenance.
    Maintenance,
    /// A node became available where there was none, or a lock/pin was lifted.
    Recovery,
    /// The region has no candidate; its fallback region's node answers.
    Fallback,
    /// No candidate in the region or its fallbacks.
    Empty,
}

/// A service area: the client networks it covers, and where its clients go when it has no
/// healthy node of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    pub fallback: Vec<String>,
    pub revision: u64,
}

/// An edge node that can serve traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub ip: IpAddr,
    pub region: String,
    pub site: String,
    pub capacity: u32,
    pub health: Health,
    /// Set while an operator drains the node: why.
    pub maintenance: Option<String>,
    pub revision: u64,
}

/// The health the cluster has committed for a node. Only transitions are written to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Unknown,
    Up,
    Down,
    Maintenance,
}
