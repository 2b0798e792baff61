use super::actions::ActionPolicy;
use super::objects::{RegionStatus, SchedulerWeights, SyncPolicy};
use super::validate;
use super::{
    Batch, BatchResult, Command, Detail, Domain, Error, Health, Node, Outcome, Region, Row, Site, State, Zone,
};

impl State {
    /// Applies every command of a batch committed at log index `index`.
    pub fn apply_batch(&mut self, index: u64, batch: &Batch) -> BatchResult {
        BatchResult { results: batch.commands.iter().map(|c| self.apply(index, c)).collect() }
    }

    /// Applies one command committed at log index `index`. Deterministic: it reads nothing
    /// but `self`, `index` and `command`. Total: whatever the command holds, it returns (a
    /// command that breaks a rule of [`validate::command`] is refused here as well as where
    /// it was received), and it changes nothing when it returns an error.
    pub fn apply(&mut self, index: u64, command: &Command) -> Result<Outcome, Error> {
        validate::command(command)?;
        match command {
            Command::PutRegion { name, spec, cas } => {
                check_cas("region", name, self.regions.get(name).map(|r| r.revision), *cas)?;
                let region = Region {
                    name: name.clone(),
                    cidrs: spec.cidrs.clone(),
                    fallback: spec.fallback.clone(),
                    revision: index,
                };
                self.regions.insert(name.clone(), region);
                Ok(Outcome::at(index))
            }
            Command::DeleteRegion { name, cas } => {
                check_cas("region", name, self.regions.get(name).map(|r| r.revision), *cas)?;
                if let Some(node) = self.nodes.values().find(|n| &n.region == name) {
                    return Err(in_use("region", name, format!("node '{}'", node.id)));
                }
                if let Some(site) = self.sites.values().find(|s| &s.region == name) {
                    return Err(in_use("region", name, format!("site '{}'", site.id)));
                }
                self.regions.remove(name).ok_or_else(|| Error::not_found("region", name))?;
                self.dispatch.remove_region(name);
                self.meta.feeds.remove(name);
                self.meta.region_status.remove(name);
                for object in self.meta.objects.values_mut() {
                    object.locations.remove(name);
                }
                Ok(Outcome::at(index))
            }
            Command::PutNode { id, spec, cas } => {
                let current = self.nodes.get(id);
                check_cas("node", id, current.map(|n| n.revision), *cas)?;
                if !self.regions.contains_key(&spec.region) {
                    return Err(Error::invalid(
                        "region",
                        format!(
                            "region '{}' does not exist; create it first with PUT /v1/regions/{}",
                            spec.region, spec.region
                        ),
                    ));
                }
                if let Some(site) = self.sites.get(&spec.site) {
                    if site.region != spec.region {
                        return Err(Error::invalid(
                            "region",
                            format!("site '{}' is in region '{}', not '{}'", site.id, site.region, spec.region),
                        ));
                    }
                }
                let health = current.map(|n| n.health).unwrap_or(Health::Unknown);
                let maintenance = current.and_then(|n| n.maintenance.clone());
                let node = Node {
                    id: id.clone(),
                    ip: spec.ip,
                    region: spec.region.clone(),
                    site: spec.site.clone(),
                    capacity: spec.capacity,
                    health,
                    maintenance,
                    revision: index,
                };
                self.nodes.insert(id.clone(), node);
                Ok(Outcome::at(index))
            }
            Command::DeleteNode { id, cas } => {
                check_cas("node", id, self.nodes.get(id).map(|n| n.revision), *cas)?;
                if let Some(site) = self.sites.values().find(|s| s.pin.as_ref() == Some(id)) {
                    return Err(in_use("node", id, format!("the pin of site '{}'", site.id)));
                }
                self.nodes.remove(id).ok_or_else(|| Error::not_found("node", id))?;
                Ok(Outcome::at(index))
            }
            Command::PutZone { name, spec, cas } => {
                check_cas("zone", name, self.zones.get(name).map(|z| z.revision), *cas)?;
                let zone = Zone {
                    name: name.clone(),
                    ns: spec.ns.clone(),
                    hostmaster: spec.hostmaster.clone(),
                    revision: index,
                };
                self.zones.insert(name.clone(), zone);
                Ok(Outcome::at(index))
            }
            Command::DeleteZone { name, cas } => {
                check_cas("zone", name, self.zones.get(name).map(|z| z.revision), *cas)?;
                if let Some(d) = self.domains.keys().find(|d| self.zone_of(d).map(|z| &z.name) == Some(name)) {
                    return Err(in_use("zone", name, format!("domain '{d}'")));
                }
                self.zones.remove(name).ok_or_else(|| Error::not_found("zone", name))?;
                Ok(Outcome::at(index))
            }
            Command::PutSite { id, region, cas } => {
                let current = self.sites.get(id);
                check_cas("site", id, current.map(|s| s.revision), *cas)?;
                if !self.regions.contains_key(region) {
                    return Err(Error::invalid("region", format!("region '{region}' does not exist")));
                }
                if let Some(node) = self.nodes.values().find(|n| &n.site == id && &n.region != region) {
                    return Err(Error::invalid(
                        "region",
                        format!(
                            "node '{}' of this site is in region '{}'; a site's nodes share its region",
                            node.id, node.region
                        ),
                    ));
                }
                let pin = current.and_then(|s| s.pin.clone());
                self.sites.insert(id.clone(), Site { id: id.clone(), region: region.clone(), pin, revision: index });
                Ok(Outcome::at(index))
            }
            Command::DeleteSite { id, cas } => {
                check_cas("site", id, self.sites.get(id).map(|s| s.revision), *cas)?;
                if let Some(d) = self.domains.values().find(|d| d.sites.contains(id) || d.lock.as_ref() == Some(id)) {
                    return Err(in_use("site", id, format!("domain '{}'", d.name)));
                }
                if let Some(n) = self.nodes.values().find(|n| &n.site == id) {
                    return Err(in_use("site", id, format!("node '{}'", n.id)));
                }
                self.sites.remove(id).ok_or_else(|| Error::not_found("site", id))?;
                Ok(Outcome::at(index))
            }
            Command::PinSite { id, node } => {
                if let Some(n) = node {
                    let Some(target) = self.nodes.get(n) else {
                        return Err(Error::invalid("node", format!("node '{n}' does not exist")));
                    };
                    if target.site != *id {
                        return Err(Error::invalid(
                            "node",
                            format!("node '{n}' belongs to site '{}', not '{id}'", target.site),
                        ));
                    }
                }
                let site = self.sites.get_mut(id).ok_or_else(|| Error::not_found("site", id))?;
                site.pin = node.clone();
                site.revision = index;
                Ok(Outcome::at(index))
            }
            Command::PutDomain { name, spec, cas } => {
                let current = self.domains.get(name);
                check_cas("domain", name, current.map(|d| d.revision), *cas)?;
                if self.zone_of(name).is_none() {
                    return Err(Error::invalid(
                        "name",
                        format!("no zone contains '{name}'; create the zone first (PUT /v1/zones/NAME)"),
                    ));
                }
                for (i, site) in spec.sites.iter().enumerate() {
                    if !self.sites.contains_key(site) {
                        return Err(Error::invalid(format!("sites[{i}]"), format!("site '{site}' does not exist")));
                    }
                }
                let lock = current.and_then(|d| d.lock.clone());
                let domain = Domain {
                    name: name.clone(),
                    sites: spec.sites.clone(),
                    ttl: spec.ttl,
                    lock,
                    cname: spec.cname.clone(),
                    revision: index,
                };
                self.domains.insert(name.clone(), domain);
                Ok(Outcome::at(index))
            }
            Command::DeleteDomain { name, cas } => {
                check_cas("domain", name, self.domains.get(name).map(|d| d.revision), *cas)?;
                self.domains.remove(name).ok_or_else(|| Error::not_found("domain", name))?;
                self.dispatch.remove_domain(name);
                Ok(Outcome::at(index))
            }
            Command::LockDomain { name, site } => {
                if let Some(s) = site {
                    if !self.sites.contains_key(s) {
                        return Err(Error::invalid("site", format!("site '{s}' does not exist")));
                    }
                }
                let domain = self.domains.get_mut(name).ok_or_else(|| Error::not_found("domain", name))?;
                domain.lock = site.clone();
                domain.revision = index;
                Ok(Outcome::at(index))
            }
            Command::SetMaintenance { id, reason } => {
                let node = self.nodes.get_mut(id).ok_or_else(|| Error::not_found("node", id))?;
                node.maintenance = reason.clone();
                node.revision = index;
                Ok(Outcome::at(index))
            }
            Command::PutPolicy { weights, hysteresis, down_after_ms } => {
                self.policy.weights = weights.clone();
                self.policy.hysteresis = *hysteresis;
                self.policy.down_after_ms = *down_after_ms;
                self.policy.revision = index;
                Ok(Outcome::at(index))
            }
            Command::SetHealth { changes } => {
                for (id, health) in changes {
                    // A node deleted meanwhile has no health to change.
                    if let Some(node) = self.nodes.get_mut(id) {
                        if node.health != *health {
                            node.health = *health;
                            node.revision = index;
                        }
                    }
                }
                Ok(Outcome::at(index))
            }
            Command::Dispatch { changes, at_ms } => {
                for c in changes {
                    // Rows of a domain or region deleted meanwhile are dropped.
                    if !self.domains.contains_key(&c.domain) || !self.regions.contains_key(&c.region) {
                        continue;
                    }
                    let row = Row {
                        node: c.node.as_deref(),
                        ip: c.ip,
                        score: c.score,
                        reason: c.reason,
                        since_ms: *at_ms,
                        revision: index,
                    };
                    self.dispatch.insert(&c.domain, &c.region, row);
                }
                Ok(Outcome::at(index))
            }
            Command::PutObject { id, write, cas, at_ms } => {
                check_cas("object", id, self.meta.objects.get(id).map(|o| o.revision), *cas)?;
                let outcome = self.put_object(index, id, write, *at_ms)?;
                Ok(Outcome { revision: index, detail: Some(Detail::Object(outcome)) })
            }
            Command::DeleteObject { id, cas } => {
                check_cas("object", id, self.meta.objects.get(id).map(|o| o.revision), *cas)?;
                self.delete_object(index, id)?;
                Ok(Outcome::at(index))
            }
            Command::ResolveConflict { id, resolution, at_ms } => {
                self.resolve_conflict(index, id, resolution, *at_ms)?;
                Ok(Outcome::at(index))
            }
            Command::MarkReplica { id, node, healthy } => {
                self.mark_replica(index, id, node, *healthy)?;
                Ok(Outcome::at(index))
            }
            Command::AckEvents { region, events, upto, at_ms } => {
                if !self.regions.contains_key(region) {
                    return Err(Error::not_found("region", region));
                }
                let acked = self.ack_events(region, events, *upto, *at_ms);
                Ok(Outcome { revision: index, detail: Some(Detail::Count(acked)) })
            }
            Command::PullObjects { region, objects } => {
                let queued = self.pull_objects(index, region, objects)?;
                Ok(Outcome { revision: index, detail: Some(Detail::Count(queued)) })
            }
            Command::ReleaseLazy { regions } => {
                for region in regions {
                    self.release_held(region);
                }
                Ok(Outcome::at(index))
            }
            Command::RegionHeartbeat { region, report, at_ms } => {
                if !self.regions.contains_key(region) {
                    return Err(Error::not_found("region", region));
                }
                let status = RegionStatus {
                    state: report.state,
                    sync_lag: report.sync_lag,
                    storage_used: report.storage_used,
                    load_level: report.load_level,
                    last_seen_ms: *at_ms,
                    revision: index,
                };
                self.meta.region_status.insert(region.clone(), status);
                Ok(Outcome::at(index))
            }
            Command::PutSyncPolicy { policy } => {
                self.meta.sync = SyncPolicy { revision: index, ..policy.clone() };
                Ok(Outcome::at(index))
            }
            Command::PutScheduler { weights } => {
                self.meta.scheduler = SchedulerWeights { revision: index, ..weights.clone() };
                Ok(Outcome::at(index))
            }
            Command::SubmitAction { spec, at_ms } => {
                let submitted = self.submit_action(index, spec, *at_ms)?;
                Ok(Outcome { revision: index, detail: Some(Detail::Submitted(submitted)) })
            }
            Command::ClaimAction { worker, kinds, lease_ms, at_ms } => {
                let claimed = self.claim_action(index, worker, kinds, *lease_ms, *at_ms);
                Ok(Outcome { revision: index, detail: Some(Detail::Claimed(claimed)) })
            }
            Command::ReportAction { id, worker, attempt, ok, message, at_ms } => {
                self.report_action(index, *id, worker, *attempt, *ok, message.clone(), *at_ms)?;
                Ok(Outcome::at(index))
            }
            Command::ExpireLeases { at_ms } => {
                self.expire_leases(index, *at_ms);
                Ok(Outcome::at(index))
            }
            Command::RunBuiltins { ids, at_ms } => {
                let ran = self.run_builtins(index, ids, *at_ms);
                Ok(Outcome { revision: index, detail: Some(Detail::Count(ran)) })
            }
            Command::ReportAnomaly { report, action, at_ms } => {
                let (id, submitted) = self.report_anomaly(index, report, action.as_ref(), *at_ms)?;
                Ok(Outcome { revision: index, detail: Some(Detail::Anomaly { id, submitted }) })
            }
            Command::ResolveAlert { fingerprint, at_ms } => {
                let closed = self.resolve_alert(index, fingerprint, *at_ms);
                Ok(Outcome { revision: index, detail: Some(Detail::Count(closed.is_some() as usize)) })
            }
            Command::PutActionPolicy { policy } => {
                self.engine.policy = ActionPolicy { revision: index, ..policy.clone() };
                Ok(Outcome::at(index))
            }
            Command::PruneFinished { at_ms, keep_ms, keep_max } => {
                let pruned = self.engine.prune_finished(*at_ms, *keep_ms, *keep_max);
                Ok(Outcome { revision: index, detail: Some(Detail::Count(pruned)) })
            }
        }
    }

    /// The zone a name belongs to: the longest zone name that is the name or a suffix of
    /// it at a label boundary.
    pub fn zone_of(&self, name: &str) -> Option<&Zone> {
        let mut candidate = name;
        loop {
            if let Some(zone) = self.zones.get(candidate) {
                return Some(zone);
            }
            candidate = candidate.split_once('.')?.1;
        }
    }
}

fn in_use(kind: &str, id: &str, user: String) -> Error {
    Error::InUse { kind: kind.into(), id: id.into(), user }
}

/// `cas`: the revision the client expects; 0 means "must not exist".
fn check_cas(kind: &str, id: &str, current: Option<u64>, cas: Option<u64>) -> Result<(), Error> {
    let Some(expected) = cas else { return Ok(()) };
    let current = current.unwrap_or(0);
    if current == expected {
        Ok(())
    } else {
        Err(Error::CasMismatch { kind: kind.into(), id: id.into(), expected, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{NodeSpec, RegionSpec};

    fn region(name: &str) -> Command {
        Command::PutRegion {
            name: name.into(),
            spec: RegionSpec { cidrs: vec!["10.0.0.0/8".parse().unwrap()], fallback: vec![] },
            cas: None,
        }
    }

    fn node(id: &str, region: &str, cas: Option<u64>) -> Command {
        Command::PutNode {
            id: id.into(),
            spec: NodeSpec {
                ip: "192.0.2.1".parse().unwrap(),
                region: region.into(),
                site: "s1".into(),
                capacity: 100,
            },
            cas,
        }
    }

    #[test]
    fn revision_is_the_log_index() {
        let mut s = State::default();
        assert_eq!(s.apply(3, &region("sea")).unwrap().revision, 3);
        s.apply(7, &node("n1", "sea", None)).unwrap();
        assert_eq!(s.nodes["n1"].revision, 7);
        assert_eq!(s.nodes["n1"].health, Health::Unknown);
    }

    #[test]
    fn cas_zero_means_absent_and_a_mismatch_changes_nothing() {
        let mut s = State::default();
        s.apply(1, &region("sea")).unwrap();
        s.apply(2, &node("n1", "sea", Some(0))).unwrap();
        let before = s.clone();
        let err = s.apply(3, &node("n1", "sea", Some(0))).unwrap_err();
        assert_eq!(err, Error::CasMismatch { kind: "node".into(), id: "n1".into(), expected: 0, current: 2 });
        assert_eq!(s, before);
        s.apply(4, &node("n1", "sea", Some(2))).unwrap();
        assert_eq!(s.nodes["n1"].revision, 4);
    }

    #[test]
    fn a_node_needs_its_region_and_a_used_region_stays() {
        let mut s = State::default();
        assert!(matches!(s.apply(1, &node("n1", "sea", None)), Err(Error::Invalid { field, .. }) if field == "region"));
        assert!(s.nodes.is_empty());
        s.apply(2, &region("sea")).unwrap();
        s.apply(3, &node("n1", "sea", None)).unwrap();
        let err = s.apply(4, &Command::DeleteRegion { name: "sea".into(), cas: None }).unwrap_err();
        assert!(matches!(err, Error::InUse { .. }));
        s.apply(5, &Command::DeleteNode { id: "n1".into(), cas: None }).unwrap();
        s.apply(6, &Command::DeleteRegion { name: "sea".into(), cas: None }).unwrap();
        assert!(s.regions.is_empty());
        let err = s.apply(7, &Command::DeleteRegion { name: "sea".into(), cas: None }).unwrap_err();
        assert_eq!(err, Error::not_found("region", "sea"));
    }

    #[test]
    fn a_site_and_its_nodes_stay_in_one_region() {
        let mut s = State::default();
        s.apply(1, &region("sea")).unwrap();
        s.apply(2, &region("eu")).unwrap();
        s.apply(3, &Command::PutSite { id: "s1".into(), region: "sea".into(), cas: None }).unwrap();
        s.apply(4, &node("n1", "sea", None)).unwrap();
        let moved = s.apply(5, &Command::PutSite { id: "s1".into(), region: "eu".into(), cas: None });
        assert!(matches!(moved, Err(Error::Invalid { field, .. }) if field == "region"));
        assert!(matches!(s.apply(6, &node("n2", "eu", None)), Err(Error::Invalid { field, .. }) if field == "region"));
        let gone = s.apply(7, &Command::DeleteSite { id: "s1".into(), cas: None });
        assert!(matches!(gone, Err(Error::InUse { .. })));
        assert_eq!(s.sites["s1"].region, "sea");
    }

    #[test]
    fn a_batch_applies_each_command_on_its_own() {
        let mut s = State::default();
        let batch = Batch { commands: vec![node("n1", "nowhere", None), region("sea"), node("n2", "sea", None)] };
        let r = s.apply_batch(9, &batch);
        assert!(r.results[0].is_err());
        assert_eq!(r.results[1], Ok(Outcome::at(9)));
        assert!(r.results[2].is_ok());
        assert_eq!(s.nodes.len(), 1);
    }
}
