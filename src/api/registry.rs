//! The bodies of `PUT` on the registry's resources: regions, nodes, zones, sites and
//! domains. Each turns into the spec its command carries, normalised (DNS names
//! lowercase without the final dot) and validated by `state::validate`.

use serde::{Deserialize, Serialize};

use super::{nullable_list, same_key, ReadOnly};
use crate::state::{validate, DomainSpec, Error, NodeSpec, RegionSpec, ZoneSpec};

/// `PUT /v1/regions/NAME`: the client networks of a service area and the regions to fall
/// back on, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionBody {
    #[serde(default, deserialize_with = "nullable_list")]
    pub cidrs: Vec<String>,
    #[serde(default, deserialize_with = "nullable_list")]
    pub fallback: Vec<String>,
    /// The key of the path, as `GET` answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing)]
    pub revision: ReadOnly,
}

impl RegionBody {
    pub fn spec(self, name: &str) -> Result<RegionSpec, Error> {
        same_key("name", self.name.as_deref(), name)?;
        let cidrs = self
            .cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| validate::cidr(&format!("cidrs[{i}]"), c))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = RegionSpec { cidrs, fallback: self.fallback };
        validate::region_spec(name, &spec)?;
        Ok(spec)
    }
}

/// `PUT /v1/nodes/ID`: an edge node. Its health comes from heartbeats and its maintenance
/// from `PUT .../maintenance`: a `GET` shows them, a `PUT` leaves them as they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBody {
    pub ip: String,
    pub region: String,
    pub site: String,
    pub capacity: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub health: ReadOnly,
    #[serde(default, skip_serializing)]
    pub maintenance: ReadOnly,
    #[serde(default, skip_serializing)]
    pub revision: ReadOnly,
}

impl NodeBody {
    pub fn spec(self, id: &str) -> Result<NodeSpec, Error> {
        same_key("id", self.id.as_deref(), id)?;
        let ip = validate::ip("ip", &self.ip)?;
        let capacity = u32::try_from(self.capacity)
            .map_err(|_| Error::invalid("capacity", format!("must be between 1 and {}", validate::MAX_CAPACITY)))?;
        let spec = NodeSpec { ip, region: self.region, site: self.site, capacity };
        validate::node_spec(id, &spec)?;
        Ok(spec)
    }
}

/// `PUT /v1/zones/NAME`: a zone this cluster answers for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneBody {
    /// Name servers published at the apex; empty: the peers themselves.
    #[serde(default, deserialize_with = "nullable_list")]
    pub ns: Vec<String>,
    /// Default: `hostmaster.ZONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostmaster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing)]
    pub revision: ReadOnly,
}

impl ZoneBody {
    /// `name`: the zone's name, normalised.
    pub fn spec(self, name: &str) -> Result<ZoneSpec, Error> {
        same_key("name", self.name.map(|n| validate::normalize_name(&n)).as_deref(), name)?;
        let ns = self.ns.iter().map(|n| validate::normalize_name(n)).collect();
        let hostmaster = self.hostmaster.unwrap_or_else(|| format!("hostmaster.{name}"));
        let spec = ZoneSpec { ns, hostmaster: validate::normalize_name(&hostmaster) };
        validate::zone_spec(name, &spec)?;
        Ok(spec)
    }
}

/// `PUT /v1/sites/ID`: a group of nodes in one region. Its pin is set with
/// `PUT .../pin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteBody {
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub pin: ReadOnly,
    #[serde(default, skip_serializing)]
    pub revision: ReadOnly,
}

impl SiteBody {
    /// The site's region.
    pub fn region(self, id: &str) -> Result<String, Error> {
        same_key("id", self.id.as_deref(), id)?;
        validate::label("id", id)?;
        validate::label("region", &self.region)?;
        Ok(self.region)
    }
}

/// `PUT /v1/domains/NAME`: a managed name and the sites that may serve it, or an alias.
/// Its lock is set with `PUT .../lock`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainBody {
    #[serde(default, deserialize_with = "nullable_list")]
    pub sites: Vec<String>,
    /// Seconds; default [`validate::DEFAULT_TTL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing)]
    pub lock: ReadOnly,
    #[serde(default, skip_serializing)]
    pub revision: ReadOnly,
}

impl DomainBody {
    /// `name`: the domain's name, normalised.
    pub fn spec(self, name: &str) -> Result<DomainSpec, Error> {
        same_key("name", self.name.map(|n| validate::normalize_name(&n)).as_deref(), name)?;
        let ttl = match self.ttl {
            Some(t) => validate::ttl("ttl", t)?,
            None => validate::DEFAULT_TTL,
        };
        let cname = self.cname.map(|c| validate::normalize_name(&c));
        let spec = DomainSpec { sites: self.sites, ttl, cname };
        validate::domain_spec(name, &spec)?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse;

    #[test]
    fn a_document_read_back_is_accepted_and_its_read_only_fields_ignored() {
        let node: NodeBody = parse(
            br#"{"id": "n1", "ip": "192.0.2.1", "region": "r", "site": "s", "capacity": 5,
                 "health": "up", "maintenance": null, "revision": 7}"#,
        )
        .unwrap();
        assert_eq!(node.spec("n1").unwrap().capacity, 5);
        let other: NodeBody =
            parse(br#"{"id": "n2", "ip": "192.0.2.1", "region": "r", "site": "s", "capacity": 5}"#).unwrap();
        assert!(matches!(other.spec("n1"), Err(Error::Invalid { field, .. }) if field == "id"));
    }

    #[test]
    fn names_are_normalised_and_defaults_filled() {
        let zone: ZoneBody = parse(br#"{"ns": ["NS1.Example.COM."], "name": "Example.com."}"#).unwrap();
        let spec = zone.spec("example.com").unwrap();
        assert_eq!((spec.ns[0].as_str(), spec.hostmaster.as_str()), ("ns1.example.com", "hostmaster.example.com"));
        let domain: DomainBody = parse(br#"{"sites": ["s1"]}"#).unwrap();
        assert_eq!(domain.spec("www.example.com").unwrap().ttl, validate::DEFAULT_TTL);
    }

    #[test]
    fn what_the_cli_sends_is_what_the_api_reads() {
        let body = RegionBody { cidrs: vec!["10.0.0.0/8".into()], fallback: vec!["eu".into()], ..Default::default() };
        let sent = serde_json::to_vec(&body).unwrap();
        let read: RegionBody = parse(&sent).unwrap();
        assert_eq!(read.spec("r1").unwrap().fallback, ["eu"]);
    }
}
