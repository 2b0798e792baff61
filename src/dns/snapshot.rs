//! What DNS answers from: an immutable picture of the zones and the elected table, built
//! from the applied state and swapped in whole after each change (last-known-good). A
//! query reads one `Arc<Snapshot>` and never waits for Raft or for the apply path.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::raft::Applied;

/// One zone as DNS serves it.
#[derive(Debug, Clone)]
pub struct ZoneData {
    pub name: String,
    /// Name servers at the apex, with glue addresses when they are inside the zone.
    pub ns: Vec<(String, Option<IpAddr>)>,
    pub hostmaster: String,
}

/// One managed domain: its TTL and, per region, the elected address (`None`: no answer).
#[derive(Debug, Clone)]
pub struct DomainData {
    pub ttl: u32,
    pub answers: HashMap<String, Option<IpAddr>>,
    /// For an alias: the name its CNAME points at.
    pub cname: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The applied log index this snapshot reflects; the SOA serial.
    pub serial: u64,
    pub zones: HashMap<String, ZoneData>,
    pub domains: HashMap<String, DomainData>,
    /// Names that exist only because a longer name below them does (empty non-terminals).
    pub interior: std::collections::HashSet<String>,
    /// Client networks, longest prefix first, with their region.
    pub networks: Vec<(IpNet, String)>,
}

impl Snapshot {
    pub fn build(applied: &Applied) -> Self {
        let state = &applied.state;
        let members: Vec<IpAddr> = applied
            .membership
            .membership()
            .nodes()
            .filter_map(|(_, info)| info.dns_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
            // A wildcard address is where a peer listens, not where anyone can reach it.
            .filter(|ip| !ip.is_unspecified())
            .collect();
        let zones = state
            .zones
            .values()
            .map(|z| {
                let ns = if z.ns.is_empty() {
                    // No name servers configured: the peers themselves, as ns1.ZONE, ns2.ZONE, …
                    members.iter().enumerate().map(|(i, ip)| (format!("ns{}.{}", i + 1, z.name), Some(*ip))).collect()
                } else {
                    z.ns.iter().map(|n| (n.clone(), None)).collect()
                };
                (z.name.clone(), ZoneData { name: z.name.clone(), ns, hostmaster: z.hostmaster.clone() })
            })
            .collect::<HashMap<_, _>>();
        let mut domains: HashMap<String, DomainData> = state
            .domains
            .values()
            .map(|d| (d.name.clone(), DomainData { ttl: d.ttl, answers: HashMap::new(), cname: d.cname.clone() }))
            .collect();
        for ((domain, region), row) in &state.dispatch {
            if let Some(d) = domains.get_mut(domain) {
                d.answers.insert(region.clone(), row.ip);
            }
        }
        let mut interior = std::collections::HashSet::new();
        let in_zone_names =
            domains.keys().cloned().chain(zones.values().flat_map(|z| z.ns.iter().map(|(n, _)| n.clone())));
        for name in in_zone_names {
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if zones.contains_key(parent) {
                    break;
                }
                interior.insert(parent.to_string());
                rest = parent;
            }
        }
        let mut networks: Vec<(IpNet, String)> =
            state.regions.values().flat_map(|r| r.cidrs.iter().map(move |c| (*c, r.name.clone()))).collect();
        networks.sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then_with(|| a.1.cmp(&b.1)));
        Snapshot { serial: applied.last_applied.map(|l| l.index).unwrap_or(0), zones, domains, interior, networks }
    }

    /// The zone a (lowercase, dotless) name falls in.
    pub fn zone_of(&self, name: &str) -> Option<&ZoneData> {
        let mut candidate = name;
        loop {
            if let Some(z) = self.zones.get(candidate) {
                return Some(z);
            }
            candidate = candidate.split_once('.')?.1;
        }
    }

    /// The region of a client address, and the prefix length that matched.
    pub fn region_of(&self, addr: IpAddr) -> Option<(&str, u8)> {
        self.networks.iter().find(|(net, _)| net.contains(&addr)).map(|(net, r)| (r.as_str(), net.prefix_len()))
    }
}
