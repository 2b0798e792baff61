//! What DNS answers from: an immutable picture of the zones and the elected table, built
//! from the applied state and swapped in whole after each change (last-known-good). A
//! query reads one `Arc<Snapshot>` and never waits for Raft or for the apply path.
//!
//! Compact, because every peer holds one (and briefly two, while the next is built) next
//! to the state: regions are numbered, each domain keeps one small array with a number per
//! region, and the few distinct node addresses are stored once.

use std::collections::{HashMap, HashSet};
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

/// A region's number in a snapshot: its position in [`Snapshot::regions`].
pub type RegionIndex = u32;

/// In [`DomainData`]'s answers: this region has no address.
const NO_ADDRESS: u32 = u32::MAX;

/// One managed domain: its TTL and, per region, the elected address.
#[derive(Debug, Clone)]
pub struct DomainData {
    pub ttl: u32,
    /// By region index: the position of the address in [`Snapshot::addresses`], or
    /// `NO_ADDRESS`. Regions created after the snapshot was built are past the end.
    answers: Box<[u32]>,
    /// For an alias: the name its CNAME points at.
    pub cname: Option<Box<str>>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The applied log index this snapshot reflects; the SOA serial.
    pub serial: u64,
    pub zones: HashMap<String, ZoneData>,
    pub domains: HashMap<Box<str>, DomainData>,
    /// Names that exist only because a longer name below them does (empty non-terminals).
    pub interior: HashSet<Box<str>>,
    /// Client networks, longest prefix first, with their region.
    networks: Vec<(IpNet, RegionIndex)>,
    /// Region names, sorted; a region's index is its position here.
    regions: Vec<Box<str>>,
    /// Every distinct elected address.
    addresses: Vec<IpAddr>,
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
        // Both the regions and the table are ordered by name, and the table by (domain,
        // region): one pass over each, without looking names up.
        let regions: Vec<Box<str>> = state.regions.keys().map(|r| Box::from(r.as_str())).collect();
        let mut addresses = Vec::new();
        let mut address_index: HashMap<IpAddr, u32> = HashMap::new();
        let mut rows = state.dispatch.iter().peekable();
        let mut domains = HashMap::with_capacity(state.domains.len());
        for (name, d) in &state.domains {
            let mut answers = vec![NO_ADDRESS; regions.len()].into_boxed_slice();
            while let Some((domain, _, _)) = rows.peek() {
                if *domain > name.as_str() {
                    break;
                }
                let (domain, region, row) = rows.next().expect("peeked");
                let (Some(ip), true) = (row.ip, domain == name) else { continue };
                let Ok(r) = regions.binary_search_by(|x| (**x).cmp(region)) else { continue };
                answers[r] = *address_index.entry(ip).or_insert_with(|| {
                    addresses.push(ip);
                    (addresses.len() - 1) as u32
                });
            }
            let cname = d.cname.as_deref().map(Box::from);
            domains.insert(Box::from(name.as_str()), DomainData { ttl: d.ttl, answers, cname });
        }
        let mut snapshot = Snapshot {
            serial: applied.last_applied.map(|l| l.index).unwrap_or(0),
            zones,
            domains,
            interior: HashSet::new(),
            networks: Vec::new(),
            regions,
            addresses,
        };
        let networks = state.regions.values().flat_map(|r| r.cidrs.iter().map(move |c| (*c, r.name.as_str())));
        snapshot.set_networks(networks);
        snapshot.find_interior();
        snapshot
    }

    fn find_interior(&mut self) {
        let mut interior = HashSet::new();
        let ns_names = self.zones.values().flat_map(|z| z.ns.iter().map(|(n, _)| n.as_str()));
        for name in self.domains.keys().map(|n| &**n).chain(ns_names) {
            let mut rest = name;
            while let Some((_, parent)) = rest.split_once('.') {
                if self.zones.contains_key(parent) || interior.contains(parent) {
                    break;
                }
                interior.insert(Box::from(parent));
                rest = parent;
            }
        }
        self.interior = interior;
    }

    fn set_networks<'a>(&mut self, networks: impl Iterator<Item = (IpNet, &'a str)>) {
        let mut networks: Vec<(IpNet, &str)> = networks.collect();
        networks.sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then_with(|| a.1.cmp(b.1)));
        self.networks = networks.into_iter().filter_map(|(net, r)| Some((net, self.region_index(r)?))).collect();
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
    pub fn region_of(&self, addr: IpAddr) -> Option<(RegionIndex, u8)> {
        self.networks.iter().find(|(net, _)| net.contains(&addr)).map(|(net, r)| (*r, net.prefix_len()))
    }

    /// A region's index, if the region existed when the snapshot was built.
    pub fn region_index(&self, name: &str) -> Option<RegionIndex> {
        self.regions.binary_search_by(|r| (**r).cmp(name)).ok().map(|i| i as RegionIndex)
    }

    /// The address elected for a domain in a region, if any.
    pub fn answer(&self, domain: &DomainData, region: Option<RegionIndex>) -> Option<IpAddr> {
        let i = *domain.answers.get(region? as usize)?;
        self.addresses.get(i as usize).copied()
    }
}

/// Snapshots put together by hand, for the tests of the answers.
#[cfg(test)]
impl Snapshot {
    /// Adds (or replaces) a domain with its address per region, creating the regions.
    pub fn add_domain(&mut self, name: &str, ttl: u32, cname: Option<&str>, answers: &[(&str, Option<IpAddr>)]) {
        for (region, _) in answers {
            if self.region_index(region).is_none() {
                let at = self.regions.binary_search_by(|r| (**r).cmp(region)).unwrap_err();
                self.regions.insert(at, Box::from(*region));
                // Indexes after `at` moved by one.
                for d in self.domains.values_mut() {
                    let mut v = d.answers.to_vec();
                    if at <= v.len() {
                        v.insert(at, NO_ADDRESS);
                    }
                    d.answers = v.into_boxed_slice();
                }
                for (_, r) in &mut self.networks {
                    if *r as usize >= at {
                        *r += 1;
                    }
                }
            }
        }
        let mut slots = vec![NO_ADDRESS; self.regions.len()].into_boxed_slice();
        for (region, ip) in answers {
            let Some(ip) = ip else { continue };
            self.addresses.push(*ip);
            slots[self.region_index(region).expect("added") as usize] = (self.addresses.len() - 1) as u32;
        }
        self.domains.insert(Box::from(name), DomainData { ttl, answers: slots, cname: cname.map(Box::from) });
        self.find_interior();
    }

    /// Sets the client networks; their regions must exist (see `add_domain`).
    pub fn networks(&mut self, networks: &[(&str, &str)]) {
        self.set_networks(networks.iter().map(|(net, r)| (net.parse().expect("a network"), *r)));
        assert_eq!(self.networks.len(), networks.len(), "every region exists");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::dispatch::analyse;
    use crate::state::{Command, DomainSpec, Health, NodeSpec, RegionSpec, State, ZoneSpec};

    /// Bytes allocated from the heap now (glibc's count).
    fn heap_bytes() -> u64 {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks + info.hblkhd) as u64
    }

    /// The work after each change at the scale of the issue: 100,000 domains × 10 regions,
    /// as `scripts/bench-dns scale` loads them. Not a check: `cargo test --lib scale_cost --
    /// --ignored --nocapture` (SCALE_DOMAINS=N for another size).
    #[test]
    #[ignore]
    fn scale_cost() {
        let domains: usize = std::env::var("SCALE_DOMAINS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
        let empty = heap_bytes();
        let mut s = State::default();
        let mut index = 0;
        let mut apply = |s: &mut State, c: Command| {
            index += 1;
            s.apply(index, &c).unwrap_or_else(|e| panic!("{e}"));
        };
        let spec = ZoneSpec { ns: vec![], hostmaster: "h.bench.test".into() };
        apply(&mut s, Command::PutZone { name: "bench.test".into(), spec, cas: None });
        let mut nodes = Vec::new();
        for k in 0..10 {
            let cidrs = vec![format!("10.{k}.0.0/16").parse().unwrap()];
            let spec = RegionSpec { cidrs, fallback: vec![] };
            apply(&mut s, Command::PutRegion { name: format!("r{k}"), spec, cas: None });
            for j in 0..4 {
                let site = format!("r{k}-s{j}");
                apply(&mut s, Command::PutSite { id: site.clone(), region: format!("r{k}"), cas: None });
                let spec = NodeSpec { ip: [198, 18, k, j + 1].into(), region: format!("r{k}"), site, capacity: 1 };
                apply(&mut s, Command::PutNode { id: format!("n{k}-{j}"), spec, cas: None });
                nodes.push((format!("n{k}-{j}"), Health::Up));
            }
        }
        apply(&mut s, Command::SetHealth { changes: nodes });
        for i in 0..domains {
            let sites = (0..10).map(|k| format!("r{k}-s{}", i % 4)).collect();
            let spec = DomainSpec { sites, ttl: 300, cname: None };
            apply(&mut s, Command::PutDomain { name: format!("d{i:06}.bench.test"), spec, cas: None });
        }
        let without_table = heap_bytes();
        let metrics = HashMap::new();
        let started = Instant::now();
        let changes = analyse::changes(&s, &metrics);
        let first = started.elapsed();
        let rows = changes.len() as u64;
        apply(&mut s, Command::Dispatch { changes, at_ms: 0 });
        // The analysis and the changes are dropped by now: what grew is the table.
        let table_heap = heap_bytes().saturating_sub(without_table);
        let started = Instant::now();
        let none = analyse::changes(&s, &metrics);
        let again = started.elapsed();
        assert!(none.is_empty());
        // The same pass deciding every (domain, region) on its own.
        let started = Instant::now();
        for d in s.domains.values() {
            for r in s.regions.keys() {
                std::hint::black_box(analyse::decide(&s, &metrics, d, r));
            }
        }
        let one_by_one = started.elapsed();
        let applied = Applied { state: s, ..Default::default() };
        let state_heap = heap_bytes().saturating_sub(empty);
        let before = heap_bytes();
        let started = Instant::now();
        let snapshot = Snapshot::build(&applied);
        let built = started.elapsed();
        let grown = heap_bytes().saturating_sub(before);
        assert_eq!(snapshot.domains.len(), domains);
        println!(
            "{domains} domains x 10 regions: first analysis {first:.2?}, re-analysis {again:.2?} \
             ({one_by_one:.2?} deciding each row on its own), snapshot build {built:.2?}, \
             {} MB of heap for the snapshot ({} MB for the state, of which {} MB for the {rows} rows of the \
             elected table: {} bytes per row)",
            grown / 1_000_000,
            state_heap / 1_000_000,
            table_heap / 1_000_000,
            table_heap / rows.max(1),
        );
    }
}
