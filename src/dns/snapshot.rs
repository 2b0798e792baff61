//! What DNS answers from: an immutable picture of the zones and the elected table, built
//! from the applied state and swapped in whole after each change (last-known-good). A
//! query reads one `Arc<Snapshot>` and never waits for Raft or for the apply path.
//!
//! Compact, because every peer holds one (and briefly two, while the next is built) next
//! to the state: regions are numbered, each domain keeps one small array with a number per
//! region, and the few distinct node addresses are stored once.
//!
//! Cheap to keep current: after a change the next snapshot is the previous one with only
//! the domains rebuilt whose definition or rows changed since (their revision, a log
//! index, is above the previous serial); a full build walks every domain and row, which
//! at 1,000,000 rows takes a third of a second and, while bulk loading, would follow
//! every applied change on every peer.

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
    /// What the zones and the regions were built from: while it is the same, an update
    /// from this snapshot needs to look at the changed domains only.
    basis: Basis,
}

/// What a snapshot's zones, networks and region numbers depend on.
#[derive(Debug, Clone, Default, PartialEq)]
struct Basis {
    /// The peers' DNS addresses, the default name servers.
    members: Vec<IpAddr>,
    /// How many zones and regions, and their highest revision: a change of either
    /// changes one of these (a put raises the highest revision to its log index, a delete
    /// lowers the count).
    zones: (usize, u64),
    regions: (usize, u64),
}

impl Basis {
    fn of(applied: &Applied) -> Self {
        let state = &applied.state;
        let members = applied
            .membership
            .membership()
            .nodes()
            .filter_map(|(_, info)| info.dns_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
            // A wildcard address is where a peer listens, not where anyone can reach it.
            .filter(|ip| !ip.is_unspecified())
            .collect();
        let zones = (state.zones.len(), state.zones.values().map(|z| z.revision).max().unwrap_or(0));
        let regions = (state.regions.len(), state.regions.values().map(|r| r.revision).max().unwrap_or(0));
        Basis { members, zones, regions }
    }
}

impl Snapshot {
    /// The snapshot of `applied`, from scratch.
    pub fn build(applied: &Applied) -> Self {
        let state = &applied.state;
        let basis = Basis::of(applied);
        let members = &basis.members;
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
            basis,
        };
        let networks = state.regions.values().flat_map(|r| r.cidrs.iter().map(move |c| (*c, r.name.as_str())));
        snapshot.set_networks(networks);
        snapshot.find_interior();
        snapshot
    }

    /// The snapshot of `applied`, from `self`, a snapshot of an earlier state of the same
    /// log: the domains whose definition or rows changed after `self.serial` are rebuilt,
    /// the others kept. The result is the same as [`Snapshot::build`]'s, which it falls
    /// back to when the zones, the regions or the peers changed, when a domain was
    /// deleted, or when `applied` is not later than `self`.
    pub fn update(&self, applied: &Applied) -> Self {
        let state = &applied.state;
        let serial = applied.last_applied.map(|l| l.index).unwrap_or(0);
        if self.serial == 0 || serial < self.serial || Basis::of(applied) != self.basis {
            return Self::build(applied);
        }
        let since = self.serial;
        let mut changed: Vec<&str> =
            state.domains.values().filter(|d| d.revision > since).map(|d| d.name.as_str()).collect();
        changed.extend(state.dispatch.domains_changed_after(since));
        changed.sort_unstable();
        changed.dedup();
        let mut next = self.clone();
        next.serial = serial;
        let mut address_index: HashMap<IpAddr, u32> =
            next.addresses.iter().enumerate().map(|(i, ip)| (*ip, i as u32)).collect();
        for name in changed {
            let Some(d) = state.domains.get(name) else { continue };
            let mut answers = vec![NO_ADDRESS; next.regions.len()].into_boxed_slice();
            for (region, row) in state.dispatch.domain(name) {
                let Some(ip) = row.ip else { continue };
                let Ok(r) = next.regions.binary_search_by(|x| (**x).cmp(region)) else { continue };
                answers[r] = *address_index.entry(ip).or_insert_with(|| {
                    next.addresses.push(ip);
                    (next.addresses.len() - 1) as u32
                });
            }
            let cname = d.cname.as_deref().map(Box::from);
            if next.domains.insert(Box::from(name), DomainData { ttl: d.ttl, answers, cname }).is_none() {
                add_interior(&mut next.interior, &next.zones, name);
            }
        }
        // More domains here than in the state: some were deleted, and names below them
        // may no longer be interior.
        if next.domains.len() != state.domains.len() {
            return Self::build(applied);
        }
        next
    }

    fn find_interior(&mut self) {
        let mut interior = HashSet::new();
        let ns_names = self.zones.values().flat_map(|z| z.ns.iter().map(|(n, _)| n.as_str()));
        for name in self.domains.keys().map(|n| &**n).chain(ns_names) {
            add_interior(&mut interior, &self.zones, name);
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

/// Adds the names between `name` and its zone to `interior`.
fn add_interior(interior: &mut HashSet<Box<str>>, zones: &HashMap<String, ZoneData>, name: &str) {
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        if zones.contains_key(parent) || interior.contains(parent) {
            break;
        }
        interior.insert(Box::from(parent));
        rest = parent;
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
    use std::collections::{BTreeMap, BTreeSet};
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

    /// An applied state at log index `index`.
    fn at(state: &State, index: u64) -> Applied {
        let log_id = crate::raft::types::LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        Applied { state: state.clone(), last_applied: Some(log_id), ..Default::default() }
    }

    /// What a snapshot answers, by name: the same for the same answers, however the
    /// addresses are numbered.
    fn contents(s: &Snapshot) -> String {
        let mut zones: Vec<String> = s.zones.values().map(|z| format!("{z:?}")).collect();
        zones.sort();
        let domains: BTreeMap<&str, _> = s
            .domains
            .iter()
            .map(|(name, d)| {
                let answers: Vec<_> = (0..s.regions.len()).map(|r| s.answer(d, Some(r as RegionIndex))).collect();
                (&**name, (d.ttl, d.cname.as_deref(), answers))
            })
            .collect();
        let interior: BTreeSet<&str> = s.interior.iter().map(|n| &**n).collect();
        format!("{}\n{zones:?}\n{domains:?}\n{interior:?}\n{:?}\n{:?}", s.serial, s.regions, s.networks)
    }

    /// After any sequence of changes, a snapshot kept current by `update` answers exactly
    /// as one built from scratch.
    #[test]
    fn an_update_equals_a_full_build() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut s = State::default();
        let mut index = 0;
        let mut apply = |s: &mut State, c: Command| {
            index += 1;
            // Refused commands (a lock on a deleted domain, ...) change nothing, as on a peer.
            let _ = s.apply(index, &c);
            index
        };
        let spec = ZoneSpec { ns: vec![], hostmaster: "h.ex.test".into() };
        apply(&mut s, Command::PutZone { name: "ex.test".into(), spec, cas: None });
        let mut sites = Vec::new();
        for k in 0..3u8 {
            let spec = RegionSpec { cidrs: vec![format!("10.{k}.0.0/16").parse().unwrap()], fallback: vec![] };
            apply(&mut s, Command::PutRegion { name: format!("r{k}"), spec, cas: None });
            for j in 0..2u8 {
                let site = format!("r{k}-s{j}");
                apply(&mut s, Command::PutSite { id: site.clone(), region: format!("r{k}"), cas: None });
                let spec = NodeSpec {
                    ip: [198, 18, k, j + 1].into(),
                    region: format!("r{k}"),
                    site: site.clone(),
                    capacity: 1,
                };
                apply(&mut s, Command::PutNode { id: format!("n{k}-{j}"), spec, cas: None });
                sites.push(site);
            }
        }
        let nodes: Vec<String> = s.nodes.keys().cloned().collect();
        let index =
            apply(&mut s, Command::SetHealth { changes: nodes.iter().map(|n| (n.clone(), Health::Up)).collect() });
        let mut previous = Snapshot::build(&at(&s, index));
        let metrics = HashMap::new();
        let mut incremental = 0;
        for step in 0..400 {
            let domain = |rng: &mut rand::rngs::StdRng| {
                let i = rng.gen_range(0..30);
                if i % 3 == 0 {
                    format!("w{i}.sub{}.ex.test", i % 2)
                } else {
                    format!("d{i}.ex.test")
                }
            };
            let c = match rng.gen_range(0..100) {
                0..=29 => {
                    let name = domain(&mut rng);
                    let cname = rng.gen_bool(0.1).then(|| "d1.ex.test".to_string());
                    let sites = if cname.is_some() {
                        vec![]
                    } else {
                        sites.iter().filter(|_| rng.gen_bool(0.5)).cloned().collect()
                    };
                    let spec = DomainSpec { sites, ttl: rng.gen_range(1..4) * 100, cname };
                    Command::PutDomain { name, spec, cas: None }
                }
                30..=39 => Command::DeleteDomain { name: domain(&mut rng), cas: None },
                40..=49 => {
                    let site = rng.gen_bool(0.5).then(|| sites[rng.gen_range(0..sites.len())].clone());
                    Command::LockDomain { name: domain(&mut rng), site }
                }
                50..=64 => {
                    let node = nodes[rng.gen_range(0..nodes.len())].clone();
                    Command::SetHealth {
                        changes: vec![(node, if rng.gen_bool(0.5) { Health::Up } else { Health::Down })],
                    }
                }
                65..=94 => Command::Dispatch { changes: analyse::changes(&s, &metrics), at_ms: step },
                95..=96 => {
                    let spec = RegionSpec { cidrs: vec!["192.0.2.0/24".parse().unwrap()], fallback: vec![] };
                    Command::PutRegion { name: "spare".into(), spec, cas: None }
                }
                97 => Command::DeleteRegion { name: "spare".into(), cas: None },
                _ => {
                    let spec = ZoneSpec { ns: vec![], hostmaster: "h.sub0.ex.test".into() };
                    Command::PutZone { name: "sub0.ex.test".into(), spec, cas: None }
                }
            };
            let index = apply(&mut s, c);
            // Sometimes several changes between two snapshots, as when they arrive during one.
            if rng.gen_bool(0.3) {
                continue;
            }
            let applied = at(&s, index);
            if Basis::of(&applied) == previous.basis && previous.domains.keys().all(|d| s.domains.contains_key(&**d)) {
                incremental += 1;
            }
            let updated = previous.update(&applied);
            assert_eq!(contents(&updated), contents(&Snapshot::build(&applied)), "after step {step}");
            previous = updated;
        }
        assert!(incremental > 100, "updates without a full build: {incremental}");
        assert!(previous.domains.len() > 5 && !previous.interior.is_empty(), "{}", contents(&previous));
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
        let log_id = |index| crate::raft::types::LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        let mut applied = Applied { state: s, last_applied: Some(log_id(index)), ..Default::default() };
        let state_heap = heap_bytes().saturating_sub(empty);
        let before = heap_bytes();
        let started = Instant::now();
        let snapshot = Snapshot::build(&applied);
        let built = started.elapsed();
        let grown = heap_bytes().saturating_sub(before);
        assert_eq!(snapshot.domains.len(), domains);
        // One more domain and its rows, as while loading: the snapshot brought up to date.
        let sites = (0..10).map(|k| format!("r{k}-s0")).collect();
        let put = Command::PutDomain {
            name: "e.bench.test".into(),
            spec: DomainSpec { sites, ttl: 300, cname: None },
            cas: None,
        };
        applied.state.apply(index + 1, &put).unwrap();
        // The leader's pass after that change: over the touched domain only.
        let started = Instant::now();
        let changes = analyse::changes_of(&applied.state, &metrics, analyse::touched_since(&applied.state, index));
        let touched = started.elapsed();
        assert_eq!(changes.len(), 10);
        applied.state.apply(index + 2, &Command::Dispatch { changes, at_ms: 0 }).unwrap();
        applied.last_applied = Some(log_id(index + 2));
        let started = Instant::now();
        let updated = snapshot.update(&applied);
        let update = started.elapsed();
        assert_eq!(updated.domains.len(), domains + 1);
        println!(
            "{domains} domains x 10 regions: first analysis {first:.2?}, re-analysis {again:.2?} \
             ({one_by_one:.2?} deciding each row on its own; {touched:.2?} for one more domain), snapshot build {built:.2?}, update after one \
             more domain {update:.2?}, \
             {} MB of heap for the snapshot ({} MB for the state, of which {} MB for the {rows} rows of the \
             elected table: {} bytes per row)",
            grown / 1_000_000,
            state_heap / 1_000_000,
            table_heap / 1_000_000,
            table_heap / rows.max(1),
        );
    }
}
