//! What an applied command changed, as the watch stream reports it: a topic per kind of
//! resource and the key of each resource that changed.
//!
//! A resource changed by the entry at `index` carries `revision == index`, so the changes
//! are read off the state after the command applied; nothing is recorded while applying.

use serde::Serialize;

use super::{Command, State};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub revision: u64,
    pub topic: &'static str,
    pub key: String,
    pub op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Put,
    Delete,
}

/// Every topic a change can have, for validating `?topics=`.
pub const TOPICS: &[&str] = &[
    "region",
    "node",
    "zone",
    "site",
    "domain",
    "dispatch",
    "policy",
    "object",
    "conflict",
    "sync",
    "region_status",
    "action",
    "anomaly",
];

impl State {
    /// The changes a command that applied successfully at `index` made.
    pub fn changes(&self, index: u64, command: &Command) -> Vec<Change> {
        if let Command::Guarded { command, .. } = command {
            return self.changes(index, command);
        }
        let mut out = Vec::new();
        let mut put = |topic: &'static str, key: &str| {
            out.push(Change { revision: index, topic, key: key.to_string(), op: Op::Put })
        };
        match command {
            Command::PutRegion { name, .. } => put("region", name),
            Command::PutNode { id, .. } | Command::SetMaintenance { id, .. } => put("node", id),
            Command::PutZone { name, .. } => put("zone", name),
            Command::PutSite { id, .. } | Command::PinSite { id, .. } => put("site", id),
            Command::PutDomain { name, .. } | Command::LockDomain { name, .. } => put("domain", name),
            Command::PutPolicy { .. } => put("policy", "scoring"),
            Command::PutSyncPolicy { .. } => put("policy", "sync"),
            Command::PutScheduler { .. } => put("policy", "scheduler"),
            Command::SetHealth { changes } => {
                for (id, _) in changes {
                    if self.nodes.get(id).is_some_and(|n| n.revision == index) {
                        put("node", id);
                    }
                }
            }
            Command::Dispatch { changes, .. } => {
                for c in changes {
                    if self.dispatch.get(&c.domain, &c.region).is_some_and(|r| r.revision == index) {
                        put("dispatch", &format!("{}/{}", c.domain, c.region));
                    }
                }
            }
            Command::PutObject { id, .. } | Command::MarkReplica { id, .. } | Command::ResolveConflict { id, .. } => {
                if let Some(object) = self.meta.objects.get(id).filter(|o| o.revision == index) {
                    put("object", id);
                    if object.in_conflict() || matches!(command, Command::ResolveConflict { .. }) {
                        put("conflict", id);
                    }
                }
            }
            Command::AckEvents { region, .. } | Command::PullObjects { region, .. } => put("sync", region),
            Command::ReleaseLazy { regions } => regions.iter().for_each(|r| put("sync", r)),
            Command::RegionHeartbeat { region, .. } => put("region_status", region),
            Command::SubmitAction { .. }
            | Command::ClaimAction { .. }
            | Command::ReportAction { .. }
            | Command::ExpireLeases { .. }
            | Command::RunBuiltins { .. }
            | Command::ReportAnomaly { .. }
            | Command::ResolveAlert { .. } => {
                for a in self.engine.actions.values().filter(|a| a.revision == index) {
                    put("action", &a.id.to_string());
                }
                for a in self.engine.anomalies.values().filter(|a| a.revision == index) {
                    put("anomaly", &a.id.to_string());
                }
                if let Command::RunBuiltins { ids, .. } = command {
                    for a in ids.iter().filter_map(|id| self.engine.actions.get(id)) {
                        let topic = match a.kind.as_str() {
                            "drain_node" | "restore_node" => "node",
                            "pin_site" => "site",
                            _ => "domain",
                        };
                        put(topic, &a.target);
                    }
                }
            }
            Command::PutActionPolicy { .. } => put("policy", "actions"),
            Command::DeleteRegion { .. }
            | Command::DeleteNode { .. }
            | Command::DeleteZone { .. }
            | Command::DeleteSite { .. }
            | Command::DeleteDomain { .. }
            | Command::DeleteObject { .. } => {}
            // Forgetting finished history is retention, not a change a watcher acts on.
            Command::PruneFinished { .. } => {}
            Command::Guarded { .. } => {}
        }
        let deleted = match command {
            Command::DeleteRegion { name, .. } => Some(("region", name)),
            Command::DeleteNode { id, .. } => Some(("node", id)),
            Command::DeleteZone { name, .. } => Some(("zone", name)),
            Command::DeleteSite { id, .. } => Some(("site", id)),
            Command::DeleteDomain { name, .. } => Some(("domain", name)),
            Command::DeleteObject { id, .. } => Some(("object", id)),
            _ => None,
        };
        if let Some((topic, key)) = deleted {
            out.push(Change { revision: index, topic, key: key.clone(), op: Op::Delete });
        }
        // Objects written with an eager or lazy sync also feed other regions.
        if matches!(command, Command::PutObject { .. } | Command::ResolveConflict { .. } | Command::DeleteObject { .. })
            && !out.is_empty()
        {
            for (region, feed) in &self.meta.feeds {
                if feed.events.values().next_back().is_some_and(|e| e.revision == index) {
                    out.push(Change { revision: index, topic: "sync", key: region.clone(), op: Op::Put });
                }
            }
        }
        out
    }
}
