use super::{Batch, BatchResult, Command, Error, Health, Node, Outcome, Region, State};

impl State {
    /// Applies every command of a batch committed at log index `index`.
    pub fn apply_batch(&mut self, index: u64, batch: &Batch) -> BatchResult {
        BatchResult { results: batch.commands.iter().map(|c| self.apply(index, c)).collect() }
    }

    /// Applies one command committed at log index `index`. Deterministic: it reads nothing
    /// but `self`, `index` and `command`.
    pub fn apply(&mut self, index: u64, command: &Command) -> Result<Outcome, Error> {
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
                Ok(Outcome { revision: index })
            }
            Command::DeleteRegion { name, cas } => {
                check_cas("region", name, self.regions.get(name).map(|r| r.revision), *cas)?;
                if let Some(node) = self.nodes.values().find(|n| &n.region == name) {
                    return Err(Error::InUse {
                        kind: "region".into(),
                        id: name.clone(),
                        user: format!("node '{}'", node.id),
                    });
                }
                self.regions.remove(name).ok_or_else(|| Error::not_found("region", name))?;
                Ok(Outcome { revision: index })
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
                let health = current.map(|n| n.health).unwrap_or(Health::Unknown);
                let node = Node {
                    id: id.clone(),
                    ip: spec.ip,
                    region: spec.region.clone(),
                    site: spec.site.clone(),
                    capacity: spec.capacity,
                    health,
                    revision: index,
                };
                self.nodes.insert(id.clone(), node);
                Ok(Outcome { revision: index })
            }
            Command::DeleteNode { id, cas } => {
                check_cas("node", id, self.nodes.get(id).map(|n| n.revision), *cas)?;
                self.nodes.remove(id).ok_or_else(|| Error::not_found("node", id))?;
                Ok(Outcome { revision: index })
            }
        }
    }
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
    fn a_batch_applies_each_command_on_its_own() {
        let mut s = State::default();
        let batch = Batch { commands: vec![node("n1", "nowhere", None), region("sea"), node("n2", "sea", None)] };
        let r = s.apply_batch(9, &batch);
        assert!(r.results[0].is_err());
        assert_eq!(r.results[1], Ok(Outcome { revision: 9 }));
        assert!(r.results[2].is_ok());
        assert_eq!(s.nodes.len(), 1);
    }
}
