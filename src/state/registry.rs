//! The registry and the dispatch table: regions, nodes and their health, zones, sites,
//! domains, the scoring policy, and the rows the leader elects. One method per command,
//! called by [`State::apply`], which has validated the command; each checks what only the
//! state can tell (references, `cas`) before it changes anything.

use super::apply::check_cas;
use super::{
    Domain, DomainSpec, Error, Health, Node, NodeSpec, Region, RegionSpec, Row, RowChange, Site, State, Weights, Zone,
    ZoneSpec,
};

impl State {
    pub(super) fn put_region(
        &mut self,
        index: u64,
        name: &str,
        spec: &RegionSpec,
        cas: Option<u64>,
    ) -> Result<(), Error> {
        check_cas("region", name, self.regions.get(name).map(|r| r.revision), cas)?;
        let region =
            Region { name: name.into(), cidrs: spec.cidrs.clone(), fallback: spec.fallback.clone(), revision: index };
        self.regions.insert(name.into(), region);
        Ok(())
    }

    pub(super) fn delete_region(&mut self, name: &str, cas: Option<u64>) -> Result<(), Error> {
        check_cas("region", name, self.regions.get(name).map(|r| r.revision), cas)?;
        if let Some(node) = self.nodes.values().find(|n| n.region == name) {
            return Err(in_use("region", name, format!("node '{}'", node.id)));
        }
        if let Some(site) = self.sites.values().find(|s| s.region == name) {
            return Err(in_use("region", name, format!("site '{}'", site.id)));
        }
        self.regions.remove(name).ok_or_else(|| Error::not_found("region", name))?;
        self.dispatch.remove_region(name);
        self.meta.feeds.remove(name);
        self.meta.region_status.remove(name);
        for object in self.meta.objects.values_mut() {
            object.locations.remove(name);
        }
        Ok(())
    }

    /// A command about a region that must exist.
    pub(super) fn require_region(&self, name: &str) -> Result<(), Error> {
        match self.regions.contains_key(name) {
            true => Ok(()),
            false => Err(Error::not_found("region", name)),
        }
    }

    pub(super) fn put_node(&mut self, index: u64, id: &str, spec: &NodeSpec, cas: Option<u64>) -> Result<(), Error> {
        let current = self.nodes.get(id);
        check_cas("node", id, current.map(|n| n.revision), cas)?;
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
        let node = Node {
            id: id.into(),
            ip: spec.ip,
            region: spec.region.clone(),
            site: spec.site.clone(),
            capacity: spec.capacity,
            health: current.map(|n| n.health).unwrap_or(Health::Unknown),
            maintenance: current.and_then(|n| n.maintenance.clone()),
            revision: index,
        };
        self.nodes.insert(id.into(), node);
        Ok(())
    }

    pub(super) fn delete_node(&mut self, id: &str, cas: Option<u64>) -> Result<(), Error> {
        check_cas("node", id, self.nodes.get(id).map(|n| n.revision), cas)?;
        if let Some(site) = self.sites.values().find(|s| s.pin.as_deref() == Some(id)) {
            return Err(in_use("node", id, format!("the pin of site '{}'", site.id)));
        }
        self.nodes.remove(id).ok_or_else(|| Error::not_found("node", id))?;
        Ok(())
    }

    pub(super) fn set_maintenance(&mut self, index: u64, id: &str, reason: &Option<String>) -> Result<(), Error> {
        let node = self.nodes.get_mut(id).ok_or_else(|| Error::not_found("node", id))?;
        node.maintenance = reason.clone();
        node.revision = index;
        Ok(())
    }

    pub(super) fn set_health(&mut self, index: u64, changes: &[(String, Health)]) {
        for (id, health) in changes {
            // A node deleted meanwhile has no health to change.
            if let Some(node) = self.nodes.get_mut(id) {
                if node.health != *health {
                    node.health = *health;
                    node.revision = index;
                }
            }
        }
    }

    pub(super) fn put_zone(&mut self, index: u64, name: &str, spec: &ZoneSpec, cas: Option<u64>) -> Result<(), Error> {
        check_cas("zone", name, self.zones.get(name).map(|z| z.revision), cas)?;
        let zone =
            Zone { name: name.into(), ns: spec.ns.clone(), hostmaster: spec.hostmaster.clone(), revision: index };
        self.zones.insert(name.into(), zone);
        Ok(())
    }

    pub(super) fn delete_zone(&mut self, name: &str, cas: Option<u64>) -> Result<(), Error> {
        check_cas("zone", name, self.zones.get(name).map(|z| z.revision), cas)?;
        if let Some(d) = self.domains.keys().find(|d| self.zone_of(d).map(|z| z.name.as_str()) == Some(name)) {
            return Err(in_use("zone", name, format!("domain '{d}'")));
        }
        self.zones.remove(name).ok_or_else(|| Error::not_found("zone", name))?;
        Ok(())
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

    pub(super) fn put_site(&mut self, index: u64, id: &str, region: &str, cas: Option<u64>) -> Result<(), Error> {
        let current = self.sites.get(id);
        check_cas("site", id, current.map(|s| s.revision), cas)?;
        if !self.regions.contains_key(region) {
            return Err(Error::invalid("region", format!("region '{region}' does not exist")));
        }
        if let Some(node) = self.nodes.values().find(|n| n.site == id && n.region != region) {
            return Err(Error::invalid(
                "region",
                format!(
                    "node '{}' of this site is in region '{}'; a site's nodes share its region",
                    node.id, node.region
                ),
            ));
        }
        let pin = current.and_then(|s| s.pin.clone());
        self.sites.insert(id.into(), Site { id: id.into(), region: region.into(), pin, revision: index });
        Ok(())
    }

    pub(super) fn delete_site(&mut self, id: &str, cas: Option<u64>) -> Result<(), Error> {
        check_cas("site", id, self.sites.get(id).map(|s| s.revision), cas)?;
        if let Some(d) =
            self.domains.values().find(|d| d.sites.iter().any(|s| s == id) || d.lock.as_deref() == Some(id))
        {
            return Err(in_use("site", id, format!("domain '{}'", d.name)));
        }
        if let Some(n) = self.nodes.values().find(|n| n.site == id) {
            return Err(in_use("site", id, format!("node '{}'", n.id)));
        }
        self.sites.remove(id).ok_or_else(|| Error::not_found("site", id))?;
        Ok(())
    }

    pub(super) fn pin_site(&mut self, index: u64, id: &str, node: &Option<String>) -> Result<(), Error> {
        if let Some(n) = node {
            let Some(target) = self.nodes.get(n) else {
                return Err(Error::invalid("node", format!("node '{n}' does not exist")));
            };
            if target.site != id {
                return Err(Error::invalid(
                    "node",
                    format!("node '{n}' belongs to site '{}', not '{id}'", target.site),
                ));
            }
        }
        let site = self.sites.get_mut(id).ok_or_else(|| Error::not_found("site", id))?;
        site.pin = node.clone();
        site.revision = index;
        Ok(())
    }

    pub(super) fn put_domain(
        &mut self,
        index: u64,
        name: &str,
        spec: &DomainSpec,
        cas: Option<u64>,
    ) -> Result<(), Error> {
        let current = self.domains.get(name);
        check_cas("domain", name, current.map(|d| d.revision), cas)?;
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
        let domain = Domain {
            name: name.into(),
            sites: spec.sites.clone(),
            ttl: spec.ttl,
            lock: current.and_then(|d| d.lock.clone()),
            cname: spec.cname.clone(),
            revision: index,
        };
        self.domains.insert(name.into(), domain);
        Ok(())
    }

    pub(super) fn delete_domain(&mut self, name: &str, cas: Option<u64>) -> Result<(), Error> {
        check_cas("domain", name, self.domains.get(name).map(|d| d.revision), cas)?;
        self.domains.remove(name).ok_or_else(|| Error::not_found("domain", name))?;
        self.dispatch.remove_domain(name);
        Ok(())
    }

    pub(super) fn lock_domain(&mut self, index: u64, name: &str, site: &Option<String>) -> Result<(), Error> {
        if let Some(s) = site {
            if !self.sites.contains_key(s) {
                return Err(Error::invalid("site", format!("site '{s}' does not exist")));
            }
        }
        let domain = self.domains.get_mut(name).ok_or_else(|| Error::not_found("domain", name))?;
        domain.lock = site.clone();
        domain.revision = index;
        Ok(())
    }

    pub(super) fn put_policy(&mut self, index: u64, weights: &Weights, hysteresis: f64, down_after_ms: u64) {
        self.policy.weights = weights.clone();
        self.policy.hysteresis = hysteresis;
        self.policy.down_after_ms = down_after_ms;
        self.policy.revision = index;
    }

    /// The leader's election results; rows of a domain or region deleted meanwhile are
    /// dropped.
    pub(super) fn set_dispatch(&mut self, index: u64, changes: &[RowChange], at_ms: u64) {
        for c in changes {
            if !self.domains.contains_key(&c.domain) || !self.regions.contains_key(&c.region) {
                continue;
            }
            let row = Row {
                node: c.node.as_deref(),
                ip: c.ip,
                score: c.score,
                reason: c.reason,
                since_ms: at_ms,
                revision: index,
            };
            self.dispatch.insert(&c.domain, &c.region, row);
        }
    }
}

fn in_use(kind: &str, id: &str, user: String) -> Error {
    Error::InUse { kind: kind.into(), id: id.into(), user }
}
