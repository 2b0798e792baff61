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
