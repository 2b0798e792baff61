use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Error;

/// One change to the [`State`](super::State). Commands are validated before they are
/// proposed; `apply` checks only what depends on the state (references, `cas`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    PutRegion { name: String, spec: RegionSpec, cas: Option<u64> },
    DeleteRegion { name: String, cas: Option<u64> },
    PutNode { id: String, spec: NodeSpec, cas: Option<u64> },
    DeleteNode { id: String, cas: Option<u64> },
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
}

/// The answer to a [`Batch`], one result per command, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    pub results: Vec<Result<Outcome, Error>>,
}
