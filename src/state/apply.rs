use super::actions::ActionPolicy;
use super::objects::{SchedulerWeights, SyncPolicy};
use super::validate;
use super::{Batch, BatchResult, Command, Detail, Error, Outcome, State};

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
        let at = |()| Outcome::at(index);
        let with = |detail: Detail| Outcome { revision: index, detail: Some(detail) };
        match command {
            // The registry and the dispatch table: registry.rs.
            Command::PutRegion { name, spec, cas } => self.put_region(index, name, spec, *cas).map(at),
            Command::DeleteRegion { name, cas } => self.delete_region(name, *cas).map(at),
            Command::PutNode { id, spec, cas } => self.put_node(index, id, spec, *cas).map(at),
            Command::DeleteNode { id, cas } => self.delete_node(id, *cas).map(at),
            Command::SetMaintenance { id, reason } => self.set_maintenance(index, id, reason).map(at),
            Command::SetHealth { changes } => {
                self.set_health(index, changes);
                Ok(at(()))
            }
            Command::PutZone { name, spec, cas } => self.put_zone(index, name, spec, *cas).map(at),
            Command::DeleteZone { name, cas } => self.delete_zone(name, *cas).map(at),
            Command::PutSite { id, region, cas } => self.put_site(index, id, region, *cas).map(at),
            Command::DeleteSite { id, cas } => self.delete_site(id, *cas).map(at),
            Command::PinSite { id, node } => self.pin_site(index, id, node).map(at),
            Command::PutDomain { name, spec, cas } => self.put_domain(index, name, spec, *cas).map(at),
            Command::DeleteDomain { name, cas } => self.delete_domain(name, *cas).map(at),
            Command::LockDomain { name, site } => self.lock_domain(index, name, site).map(at),
            Command::PutPolicy { weights, hysteresis, down_after_ms } => {
                self.put_policy(index, weights, *hysteresis, *down_after_ms);
                Ok(at(()))
            }
            Command::Dispatch { changes, at_ms } => {
                self.set_dispatch(index, changes, *at_ms);
                Ok(at(()))
            }
            // Objects, their change feeds and regions: objects.rs.
            Command::PutObject { id, write, cas, at_ms } => {
                check_cas("object", id, self.meta.objects.get(id).map(|o| o.revision), *cas)?;
                self.put_object(index, id, write, *at_ms).map(|o| with(Detail::Object(o)))
            }
            Command::DeleteObject { id, cas } => {
                check_cas("object", id, self.meta.objects.get(id).map(|o| o.revision), *cas)?;
                self.delete_object(index, id).map(at)
            }
            Command::ResolveConflict { id, resolution, at_ms } => {
                self.resolve_conflict(index, id, resolution, *at_ms).map(at)
            }
            Command::MarkReplica { id, node, healthy } => self.mark_replica(index, id, node, *healthy).map(at),
            Command::AckEvents { region, events, upto, at_ms } => {
                self.require_region(region)?;
                Ok(with(Detail::Count(self.ack_events(region, events, *upto, *at_ms))))
            }
            Command::PullObjects { region, objects } => {
                self.pull_objects(index, region, objects).map(|n| with(Detail::Count(n)))
            }
            Command::ReleaseLazy { regions } => {
                regions.iter().for_each(|region| self.release_held(region));
                Ok(at(()))
            }
            Command::RegionHeartbeat { region, report, at_ms } => {
                self.region_heartbeat(index, region, report, *at_ms).map(at)
            }
            Command::PutSyncPolicy { policy } => {
                self.meta.sync = SyncPolicy { revision: index, ..policy.clone() };
                Ok(at(()))
            }
            Command::PutScheduler { weights } => {
                self.meta.scheduler = SchedulerWeights { revision: index, ..weights.clone() };
                Ok(at(()))
            }
            // Actions and anomalies: actions.rs.
            Command::SubmitAction { spec, at_ms } => {
                self.submit_action(index, spec, *at_ms).map(|s| with(Detail::Submitted(s)))
            }
            Command::ClaimAction { worker, kinds, lease_ms, at_ms } => {
                Ok(with(Detail::Claimed(self.claim_action(index, worker, kinds, *lease_ms, *at_ms))))
            }
            Command::ReportAction { id, worker, attempt, ok, message, at_ms } => {
                self.report_action(index, *id, worker, *attempt, *ok, message.clone(), *at_ms).map(at)
            }
            Command::ExpireLeases { at_ms } => {
                self.expire_leases(index, *at_ms);
                Ok(at(()))
            }
            Command::RunBuiltins { ids, at_ms } => Ok(with(Detail::Count(self.run_builtins(index, ids, *at_ms)))),
            Command::ReportAnomaly { report, action, at_ms } => self
                .report_anomaly(index, report, action.as_ref(), *at_ms)
                .map(|(id, submitted)| with(Detail::Anomaly { id, submitted })),
            Command::ResolveAlert { fingerprint, at_ms } => {
                let closed = self.resolve_alert(index, fingerprint, *at_ms);
                Ok(with(Detail::Count(closed.is_some() as usize)))
            }
            Command::PutActionPolicy { policy } => {
                self.engine.policy = ActionPolicy { revision: index, ..policy.clone() };
                Ok(at(()))
            }
            Command::PruneFinished { at_ms, keep_ms, keep_max } => {
                Ok(with(Detail::Count(self.engine.prune_finished(*at_ms, *keep_ms, *keep_max))))
            }
            Command::Guarded { cas, command } => {
                let (kind, id, current) = self.revision_of(command);
                check_cas(kind, &id, current, Some(*cas))?;
                self.apply(index, command)
            }
        }
    }

    /// The resource a guardable command writes, and its revision (`None`: it does not
    /// exist). Only called for what [`Command::guardable`] accepts, as validated.
    fn revision_of(&self, command: &Command) -> (&'static str, String, Option<u64>) {
        match command {
            Command::PinSite { id, .. } => ("site", id.clone(), self.sites.get(id).map(|s| s.revision)),
            Command::LockDomain { name, .. } => ("domain", name.clone(), self.domains.get(name).map(|d| d.revision)),
            Command::SetMaintenance { id, .. } => ("node", id.clone(), self.nodes.get(id).map(|n| n.revision)),
            Command::PutPolicy { .. } => ("policy", "scoring".into(), Some(self.policy.revision)),
            Command::PutSyncPolicy { .. } => ("policy", "sync".into(), Some(self.meta.sync.revision)),
            Command::PutScheduler { .. } => ("policy", "scheduler".into(), Some(self.meta.scheduler.revision)),
            Command::PutActionPolicy { .. } => ("policy", "actions".into(), Some(self.engine.policy.revision)),
            // Not reached: `validate::command` refuses any other command under a guard.
            _ => ("resource", String::new(), None),
        }
    }
}

/// `cas`: the revision the client expects; 0 means "must not exist".
pub(super) fn check_cas(kind: &str, id: &str, current: Option<u64>, cas: Option<u64>) -> Result<(), Error> {
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
    use crate::state::{Health, NodeSpec, RegionSpec};

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
    fn a_guarded_write_applies_at_its_revision_only() {
        let mut s = State::default();
        s.apply(1, &region("sea")).unwrap();
        s.apply(2, &Command::PutSite { id: "s1".into(), region: "sea".into(), cas: None }).unwrap();
        s.apply(3, &node("n1", "sea", None)).unwrap();
        let pin = |cas| Command::PinSite { id: "s1".into(), node: Some("n1".into()) }.guarded(Some(cas));
        let before = s.clone();
        let err = s.apply(4, &pin(1)).unwrap_err();
        assert_eq!(err, Error::CasMismatch { kind: "site".into(), id: "s1".into(), expected: 1, current: 2 });
        assert_eq!(s, before);
        assert_eq!(s.apply(5, &pin(2)).unwrap().revision, 5);
        assert_eq!(s.sites["s1"].pin.as_deref(), Some("n1"));
        // Singletons: the policy never written is at revision 0.
        let policy = |cas| {
            Command::PutPolicy { weights: s.policy.weights.clone(), hysteresis: 0.1, down_after_ms: 1500 }
                .guarded(Some(cas))
        };
        let (at_0, at_6) = (policy(0), policy(6));
        s.apply(6, &at_0).unwrap();
        assert!(matches!(s.apply(7, &at_0), Err(Error::CasMismatch { current: 6, .. })));
        s.apply(8, &at_6).unwrap();
        // Nothing else may be guarded: those commands carry `cas` of their own, or none applies.
        let nested = pin(8).guarded(Some(8));
        assert!(matches!(s.apply(9, &nested), Err(Error::Invalid { field, .. }) if field == "cas"));
        let heartbeat = Command::SetHealth { changes: vec![] }.guarded(Some(0));
        assert!(matches!(s.apply(9, &heartbeat), Err(Error::Invalid { field, .. }) if field == "cas"));
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
