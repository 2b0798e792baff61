//! Analysis: from the replicated state and the latest metrics, the node each
//! (domain, region) should answer with, and why. Pure and deterministic: the same inputs
//! give the same table, and the trace it records is what `/v1/resolve` shows.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use super::NodeMetrics;
use crate::state::{Domain, Health, Node, Reason, Row, RowChange, State, Weights};

/// One candidate as the election saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub node: String,
    pub ip: IpAddr,
    pub site: String,
    /// 0–100, higher is better; `None` when the leader has no metrics for the node yet,
    /// or the node cannot take traffic.
    pub score: Option<f64>,
    /// Up and not in maintenance. A candidate that is not usable (a pinned node that is
    /// down) wins only where no usable one exists.
    pub usable: bool,
    #[serde(skip)]
    cost: Option<f64>,
}

/// The outcome for one (domain, region), with the chain of reasons behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    pub score: Option<f64>,
    pub reason: Reason,
    /// The region whose sites answered (differs from the asked region on fallback).
    pub served_from: Option<String>,
    pub candidates: Vec<Candidate>,
    pub trace: Vec<String>,
}

/// The latency that costs half of the latency weight: latency maps to `l / (l + this)`,
/// so 0 ms costs nothing and the cost rises steeply over the tens of milliseconds that
/// tell edge nodes apart, then flattens (200 ms costs 0.8, 1 s 0.95) instead of letting
/// one slow outlier dominate the other metrics.
pub const LATENCY_HALF_COST_MS: f64 = 50.0;

/// A node's cost under the policy's weights: 0 (ideal) to 1 (worst).
pub fn cost(weights: &Weights, m: &NodeMetrics) -> f64 {
    let latency = m.latency_ms.max(0.0) / (m.latency_ms.max(0.0) + LATENCY_HALF_COST_MS);
    let parts = [
        (weights.latency, latency),
        (weights.load, m.load.clamp(0.0, 1.0)),
        (weights.error_rate, m.error_rate.clamp(0.0, 1.0)),
        (weights.cpu, m.cpu.clamp(0.0, 1.0)),
    ];
    let total: f64 = parts.iter().map(|(w, _)| w).sum();
    parts.iter().map(|(w, v)| w * v).sum::<f64>() / total
}

fn score_of(cost: f64) -> f64 {
    ((1.0 - cost) * 1000.0).round() / 10.0
}

/// A node may take traffic: the cluster has it up and no operator is draining it.
fn usable(node: &Node) -> bool {
    node.health == Health::Up && node.maintenance.is_none()
}

struct Election<'a> {
    state: &'a State,
    metrics: &'a HashMap<String, NodeMetrics>,
    trace: Vec<String>,
}

impl Election<'_> {
    fn candidate(&self, node: &Node) -> Candidate {
        let usable = usable(node);
        // The last metrics of a node that is down say nothing about it now.
        let cost = self.metrics.get(&node.id).filter(|_| usable).map(|m| cost(&self.state.policy.weights, m));
        Candidate {
            node: node.id.clone(),
            ip: node.ip,
            site: node.site.clone(),
            score: cost.map(score_of),
            usable,
            cost,
        }
    }

    /// Candidates from the given sites, honouring pins; also the pinned nodes among them.
    fn candidates(&mut self, sites: &[&str]) -> (Vec<Candidate>, Vec<String>) {
        let mut out = Vec::new();
        let mut pinned = Vec::new();
        for site_id in sites {
            let Some(site) = self.state.sites.get(*site_id) else { continue };
            if let Some(pin) = &site.pin {
                if let Some(node) = self.state.nodes.get(pin) {
                    pinned.push(pin.clone());
                    self.trace.push(format!("site {site_id} is pinned to node {pin}"));
                    if !usable(node) {
                        self.trace.push(format!("node {pin} is {}; the pin stands", describe(node)));
                    }
                    out.push(self.candidate(node));
                    continue;
                }
            }
            let nodes: Vec<&Node> = nodes_of_site(self.state, site_id).collect();
            for node in &nodes {
                if !usable(node) {
                    self.trace.push(format!("node {} of site {site_id} is {}", node.id, describe(node)));
                }
            }
            let usable_nodes: Vec<Candidate> = nodes.iter().filter(|n| usable(n)).map(|n| self.candidate(n)).collect();
            out.extend(usable_nodes);
        }
        (out, pinned)
    }
}

fn nodes_of_site<'s>(state: &'s State, site: &'s str) -> impl Iterator<Item = &'s Node> + 's {
    state.nodes.values().filter(move |n| n.site == site)
}

fn describe(node: &Node) -> String {
    match (&node.maintenance, node.health) {
        (Some(reason), _) => format!("in maintenance ({reason})"),
        (None, Health::Down) => "down".into(),
        (None, Health::Unknown) => "not yet heard from".into(),
        (None, Health::Up) => "up".into(),
        (None, Health::Maintenance) => "in maintenance".into(),
    }
}

/// Picks among candidates: the incumbent stays unless a challenger costs at least
/// `hysteresis` less; without an incumbent, the cheapest (ties: lowest id); without
/// metrics at all, the lowest id. `None` only when there is no candidate.
fn choose<'c>(
    all: &'c [Candidate],
    incumbent: Option<&str>,
    hysteresis: f64,
    trace: &mut Vec<String>,
) -> Option<(&'c Candidate, bool)> {
    // Usable candidates first; the others (a pinned node that is down) only if alone.
    let any_usable = all.iter().any(|c| c.usable);
    let cands: Vec<&'c Candidate> = all.iter().filter(|c| c.usable || !any_usable).collect();
    // `total_cmp`: a cost is never NaN (metrics are bounded at the door), and if one were,
    // the order would still be total and the same on every leader.
    let best = cands
        .iter()
        .copied()
        .filter_map(|c| Some((c, c.cost?)))
        .min_by(|(a, ac), (b, bc)| ac.total_cmp(bc).then_with(|| a.node.cmp(&b.node)));
    if let Some(inc) = incumbent.and_then(|i| cands.iter().copied().find(|c| c.node == i)) {
        match (best, inc.cost) {
            (Some((b, bc)), Some(ic)) if b.node != inc.node && bc < ic * (1.0 - hysteresis) => {
                trace.push(format!(
                    "node {} (score {}) beats the incumbent {} (score {}) by more than the {}% margin",
                    b.node,
                    b.score.unwrap_or_default(),
                    inc.node,
                    inc.score.unwrap_or_default(),
                    hysteresis * 100.0
                ));
                return Some((b, true));
            }
            (Some((b, _)), _) if b.node != inc.node => trace.push(format!(
                "the incumbent {} stays: no challenger is better by the {}% margin",
                inc.node,
                hysteresis * 100.0
            )),
            _ => {}
        }
        return Some((inc, false));
    }
    match best {
        Some((b, _)) => Some((b, false)),
        None => cands.iter().copied().min_by(|a, b| a.node.cmp(&b.node)).map(|c| (c, false)),
    }
}

/// Decides one (domain, region).
pub fn decide(state: &State, metrics: &HashMap<String, NodeMetrics>, domain: &Domain, region: &str) -> Decision {
    let previous = state.dispatch.get(&domain.name, region);
    decide_after(state, metrics, domain, region, previous)
}

/// Decides one (domain, region) whose current row is `previous`.
fn decide_after(
    state: &State,
    metrics: &HashMap<String, NodeMetrics>,
    domain: &Domain,
    region: &str,
    previous: Option<Row<'_>>,
) -> Decision {
    let incumbent = previous.and_then(|r| r.node.map(String::from));
    let hysteresis = state.policy.hysteresis;
    let mut e = Election { state, metrics, trace: Vec::new() };

    let finish = |e: Election,
                  cands: Vec<Candidate>,
                  chosen: Option<(Candidate, bool)>,
                  lock_or_pin: Option<Reason>,
                  served_from: Option<String>| {
        let mut trace = e.trace;
        let Some((c, beaten)) = chosen else {
            trace.push(format!("no candidate for {} in region {region} or its fallbacks: no answer", domain.name));
            return Decision {
                node: None,
                ip: None,
                score: None,
                reason: Reason::Empty,
                served_from: None,
                candidates: cands,
                trace,
            };
        };
        let changed = incumbent.as_deref() != Some(c.node.as_str());
        let reason = if let Some(r) = lock_or_pin {
            r
        } else if served_from.as_deref() != Some(region) {
            Reason::Fallback
        } else if !changed {
            match previous.map(|p| p.reason) {
                // The same node, no longer by an operator's lock or pin.
                Some(Reason::Lock | Reason::Pin) => Reason::Recovery,
                Some(r) => r,
                None => Reason::Initial,
            }
        } else if previous.is_some_and(|p| matches!(p.reason, Reason::Lock | Reason::Pin)) {
            // An operator's lock or pin was lifted.
            Reason::Recovery
        } else if beaten {
            Reason::BetterScore
        } else {
            match (previous, incumbent.as_ref().and_then(|i| state.nodes.get(i))) {
                (None, _) => Reason::Initial,
                (Some(p), _)
                    if p.node.is_none() || matches!(p.reason, Reason::Lock | Reason::Pin | Reason::Fallback) =>
                {
                    Reason::Recovery
                }
                (Some(_), Some(n)) if n.maintenance.is_some() => Reason::Maintenance,
                (Some(_), _) => Reason::Failover,
            }
        };
        trace.push(format!("answer: node {} ({})", c.node, c.ip));
        Decision {
            node: Some(c.node.clone()),
            ip: Some(c.ip),
            score: c.score,
            reason,
            served_from,
            candidates: cands,
            trace,
        }
    };

    if let Some(lock) = &domain.lock {
        e.trace.push(format!("domain {} is locked to site {lock}", domain.name));
        let (mut cands, pinned) = e.candidates(&[lock.as_str()]);
        if cands.is_empty() {
            // The operator's choice stands: answer from the locked site even if no node
            // there is healthy.
            e.trace.push(format!("no usable node in site {lock}; the lock stands"));
            cands = nodes_of_site(state, lock).map(|n| e.candidate(n)).collect();
        }
        let site_region = state.sites.get(lock).map(|s| s.region.clone());
        let Some((chosen, moved)) = choose(&cands, incumbent.as_deref(), hysteresis, &mut e.trace) else {
            return finish(e, cands, None, Some(Reason::Lock), None);
        };
        let chosen = (chosen.clone(), moved);
        let reason = if pinned.contains(&chosen.0.node) { Reason::Pin } else { Reason::Lock };
        return finish(e, cands.clone(), Some(chosen), Some(reason), site_region);
    }

    let mut regions = vec![region.to_string()];
    if let Some(r) = state.regions.get(region) {
        regions.extend(r.fallback.iter().cloned());
    }
    for (i, r) in regions.iter().enumerate() {
        if i > 0 {
            e.trace.push(format!("falling back to region {r}"));
        }
        let sites: Vec<&str> = domain
            .sites
            .iter()
            .filter(|s| state.sites.get(*s).is_some_and(|site| &site.region == r))
            .map(|s| s.as_str())
            .collect();
        if sites.is_empty() {
            e.trace.push(format!("domain {} has no site in region {r}", domain.name));
            continue;
        }
        let (cands, pinned) = e.candidates(&sites);
        let Some((chosen, moved)) = choose(&cands, incumbent.as_deref(), hysteresis, &mut e.trace) else {
            e.trace.push(format!("no usable node in region {r} ({})", sites.join(", ")));
            continue;
        };
        let chosen = (chosen.clone(), moved);
        let reason = pinned.contains(&chosen.0.node).then_some(Reason::Pin);
        return finish(e, cands.clone(), Some(chosen), reason, Some(r.clone()));
    }
    finish(e, Vec::new(), None, None, None)
}

/// Every row of the elected table that must change: a different node (or none), or a row
/// not elected yet. A changed score alone changes nothing, so noisy metrics cost no log
/// writes.
///
/// A decision depends on the domain only through its sites and lock, and on the table only
/// through the row's current node and reason: domains alike in those (typically most of
/// them: many domains, few site lists) are decided once per pass, by [`decide`]'s rules.
/// The domains, the regions and the table are all ordered by name, so the current rows
/// are found in one walk along the table.
pub fn changes(state: &State, metrics: &HashMap<String, NodeMetrics>) -> Vec<RowChange> {
    let mut pass = Pass::new(state, metrics);
    let mut rows = state.dispatch.iter().peekable();
    for domain in state.domains.values() {
        pass.domain(domain, |region| {
            let wanted = (domain.name.as_str(), region);
            let mut current = None;
            while let Some((d, r, row)) = rows.peek() {
                match (*d, *r).cmp(&wanted) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => current = Some(*row),
                    std::cmp::Ordering::Greater => break,
                }
                rows.next();
            }
            current
        });
    }
    pass.out
}

/// As [`changes`], for some domains only: the rows of other domains are not looked at.
/// With the same state and metrics, the result is `changes`' restricted to these domains.
pub fn changes_of<'s>(
    state: &'s State,
    metrics: &HashMap<String, NodeMetrics>,
    domains: impl IntoIterator<Item = &'s Domain>,
) -> Vec<RowChange> {
    let mut pass = Pass::new(state, metrics);
    for domain in domains {
        // Both in region order, like the walk in `changes`.
        let mut rows = state.dispatch.domain(&domain.name).peekable();
        pass.domain(domain, |region| {
            while let Some((r, row)) = rows.peek() {
                match (*r).cmp(region) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Some(*row),
                    std::cmp::Ordering::Greater => return None,
                }
                rows.next();
            }
            None
        });
    }
    pass.out
}

/// The domains a change since log index `since` may have given other rows: those put or
/// locked after it. Everything else a decision reads is in the [`Basis`].
pub fn touched_since(state: &State, since: u64) -> impl Iterator<Item = &Domain> + '_ {
    state.domains.values().filter(move |d| d.revision > since)
}

/// What decisions depend on besides the domain, its rows and the metrics: the nodes, the
/// sites, the regions and the policy. A change of any of them changes this (a put raises
/// the highest revision to its log index, a delete lowers a count), and then only a pass
/// over every domain is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basis {
    nodes: (usize, u64),
    sites: (usize, u64),
    regions: (usize, u64),
    policy: u64,
}

impl Basis {
    pub fn of(state: &State) -> Self {
        fn of<'a, T: 'a>(values: impl ExactSizeIterator<Item = &'a T>, revision: impl Fn(&T) -> u64) -> (usize, u64) {
            (values.len(), values.map(revision).max().unwrap_or(0))
        }
        Basis {
            nodes: of(state.nodes.values(), |n| n.revision),
            sites: of(state.sites.values(), |s| s.revision),
            regions: of(state.regions.values(), |r| r.revision),
            policy: state.policy.revision,
        }
    }
}

/// One analysis pass: the changes found so far, and the decisions taken per class of alike
/// domains.
struct Pass<'s, 'm> {
    state: &'s State,
    metrics: &'m HashMap<String, NodeMetrics>,
    /// Domains of one class have the same sites and lock.
    classes: HashMap<(&'s [String], Option<&'s str>), usize>,
    /// Per class and region, the decisions taken so far, by the current row's node and
    /// reason (`None`: no row yet).
    decided: Vec<Vec<Vec<Decided<'s>>>>,
    out: Vec<RowChange>,
}

impl<'s, 'm> Pass<'s, 'm> {
    fn new(state: &'s State, metrics: &'m HashMap<String, NodeMetrics>) -> Self {
        Pass { state, metrics, classes: HashMap::new(), decided: Vec::new(), out: Vec::new() }
    }

    /// Decides every region of `domain`; `current` gives its row in a region, asked for
    /// each region in order.
    fn domain(&mut self, domain: &'s Domain, mut current: impl FnMut(&str) -> Option<Row<'s>>) {
        let state = self.state;
        let next = self.classes.len();
        let class = *self.classes.entry((domain.sites.as_slice(), domain.lock.as_deref())).or_insert(next);
        if class == self.decided.len() {
            self.decided.push((0..state.regions.len()).map(|_| Vec::new()).collect());
        }
        for (region_index, region) in state.regions.keys().enumerate() {
            let current = current(region);
            // An alias (CNAME) elects nothing: DNS answers it from its target.
            if domain.cname.is_some() {
                continue;
            }
            let node = current.and_then(|r| r.node);
            let reason = current.map(|r| std::mem::discriminant(&r.reason));
            let seen = &mut self.decided[class][region_index];
            let d = match seen.iter().position(|d| d.node == node && d.reason == reason) {
                Some(i) => &seen[i].elected,
                None => {
                    let d = decide_after(state, self.metrics, domain, region, current);
                    let elected = Elected { node: d.node, ip: d.ip, score: d.score, reason: d.reason };
                    seen.push(Decided { node, reason, elected });
                    &seen[seen.len() - 1].elected
                }
            };
            let manual = |r: Reason| matches!(r, Reason::Lock | Reason::Pin);
            let same = current.is_some_and(|row| {
                row.node == d.node.as_deref() && row.ip == d.ip && manual(row.reason) == manual(d.reason)
            });
            if !same {
                self.out.push(RowChange {
                    domain: domain.name.clone(),
                    region: region.clone(),
                    node: d.node.clone(),
                    ip: d.ip,
                    score: d.score,
                    reason: d.reason,
                });
            }
        }
    }
}

/// A decision taken in a pass, and the current row's node and reason it was taken for:
/// with the domain's sites and lock and the region, all a decision depends on besides the
/// state and the metrics, which the pass shares.
struct Decided<'s> {
    node: Option<&'s str>,
    reason: Option<std::mem::Discriminant<Reason>>,
    elected: Elected,
}

/// A decision without its trace and candidates.
struct Elected {
    node: Option<String>,
    ip: Option<IpAddr>,
    score: Option<f64>,
    reason: Reason,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, DomainSpec, NodeSpec, RegionSpec, ZoneSpec};

    /// Two areas, sea falls back to eu, us has no fallback; three sites; four nodes up.
    fn world() -> State {
        let mut s = State::default();
        let mut i = 0;
        let mut apply = |s: &mut State, c: Command| {
            i += 1;
            s.apply(i, &c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        };
        let region = |name: &str, fallback: &[&str]| Command::PutRegion {
            name: name.into(),
            spec: RegionSpec { cidrs: vec![], fallback: fallback.iter().map(|s| s.to_string()).collect() },
            cas: None,
        };
        apply(&mut s, region("sea", &["eu"]));
        apply(&mut s, region("eu", &[]));
        apply(&mut s, region("us", &[]));
        apply(
            &mut s,
            Command::PutZone {
                name: "example.com".into(),
                spec: ZoneSpec { ns: vec![], hostmaster: "h.example.com".into() },
                cas: None,
            },
        );
        for (site, region) in [("sg-1", "sea"), ("sg-2", "sea"), ("fra-1", "eu")] {
            apply(&mut s, Command::PutSite { id: site.into(), region: region.into(), cas: None });
        }
        for (id, site, region, ip) in [
            ("sg-a", "sg-1", "sea", "192.0.2.1"),
            ("sg-b", "sg-1", "sea", "192.0.2.2"),
            ("sg-c", "sg-2", "sea", "192.0.2.3"),
            ("fra-a", "fra-1", "eu", "192.0.2.4"),
        ] {
            let spec = NodeSpec { ip: ip.parse().unwrap(), region: region.into(), site: site.into(), capacity: 1 };
            apply(&mut s, Command::PutNode { id: id.into(), spec, cas: None });
        }
        apply(
            &mut s,
            Command::SetHealth {
                changes: ["sg-a", "sg-b", "sg-c", "fra-a"].map(|n| (n.to_string(), Health::Up)).to_vec(),
            },
        );
        let spec = DomainSpec { sites: vec!["sg-1".into(), "sg-2".into(), "fra-1".into()], ttl: 20, cname: None };
        apply(&mut s, Command::PutDomain { name: "video.example.com".into(), spec, cas: None });
        s
    }

    fn m(latency_ms: f64, load: f64) -> NodeMetrics {
        NodeMetrics { latency_ms, load, ..NodeMetrics::default() }
    }

    /// Runs the executor's step: commit whatever changes, return the table as node names.
    fn step(s: &mut State, metrics: &HashMap<String, NodeMetrics>) -> Vec<RowChange> {
        let changes = changes(s, metrics);
        let index = s.dispatch.iter().map(|(_, _, r)| r.revision).max().unwrap_or(100) + 1;
        s.apply(index, &Command::Dispatch { changes: changes.clone(), at_ms: 0 }).unwrap();
        changes
    }

    fn answer(s: &State, region: &str) -> (Option<String>, Reason) {
        let row = s.dispatch.get("video.example.com", region).expect("a row");
        (row.node.map(String::from), row.reason)
    }

    fn set(s: &mut State, c: Command) {
        s.apply(10_000 + s.dispatch.len() as u64, &c).unwrap();
    }

    fn metrics(pairs: &[(&str, NodeMetrics)]) -> HashMap<String, NodeMetrics> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    /// `changes` as it reads: every (domain, region) decided on its own.
    fn every_change_one_by_one(state: &State, metrics: &HashMap<String, NodeMetrics>) -> Vec<RowChange> {
        let mut out = Vec::new();
        for domain in state.domains.values().filter(|d| d.cname.is_none()) {
            for region in state.regions.keys() {
                let d = decide(state, metrics, domain, region);
                let current = state.dispatch.get(&domain.name, region);
                let manual = |r: Reason| matches!(r, Reason::Lock | Reason::Pin);
                if !current.is_some_and(|row| {
                    row.node == d.node.as_deref() && row.ip == d.ip && manual(row.reason) == manual(d.reason)
                }) {
                    let (domain, region) = (domain.name.clone(), region.clone());
                    out.push(RowChange { domain, region, node: d.node, ip: d.ip, score: d.score, reason: d.reason });
                }
            }
        }
        out
    }

    /// Domains alike are decided once per pass, with the same outcome as one by one.
    #[test]
    fn deciding_alike_domains_once_changes_nothing() {
        let mut s = world();
        let put = |s: &mut State, name: &str, sites: &[&str], cname: Option<&str>| {
            let sites = sites.iter().map(|x| x.to_string()).collect();
            let spec = DomainSpec { sites, ttl: 20, cname: cname.map(String::from) };
            set(s, Command::PutDomain { name: name.into(), spec, cas: None });
        };
        for i in 0..6 {
            put(&mut s, &format!("d{i}.example.com"), &["sg-1", "sg-2", "fra-1"], None);
            put(&mut s, &format!("e{i}.example.com"), &["sg-2", "fra-1"], None);
            put(&mut s, &format!("f{i}.example.com"), &["fra-1"], None);
        }
        put(&mut s, "a.example.com", &[], Some("d0.example.com"));
        let mx =
            metrics(&[("sg-a", m(40.0, 0.5)), ("sg-b", m(10.0, 0.2)), ("sg-c", m(30.0, 0.3)), ("fra-a", m(20.0, 0.1))]);
        let events = [
            Command::LockDomain { name: "d1.example.com".into(), site: Some("sg-2".into()) },
            Command::SetHealth { changes: vec![("sg-b".into(), Health::Down)] },
            Command::DeleteDomain { name: "f2.example.com".into(), cas: None },
            Command::LockDomain { name: "d1.example.com".into(), site: None },
            Command::SetMaintenance { id: "sg-c".into(), reason: Some("kernel upgrade".into()) },
            Command::SetHealth { changes: vec![("sg-a".into(), Health::Down)] },
            Command::SetHealth { changes: vec![("sg-b".into(), Health::Up)] },
            Command::SetMaintenance { id: "sg-c".into(), reason: None },
            Command::SetHealth { changes: vec![("fra-a".into(), Health::Down)] },
        ];
        let mut changed = 0;
        for event in events {
            let expected = every_change_one_by_one(&s, &mx);
            assert_eq!(changes(&s, &mx), expected, "before {event:?}");
            // Some domains only: the same changes for them.
            let some = |name: &str| name.starts_with('d') || name.starts_with("e1") || name.starts_with('a');
            let of_some: Vec<_> = expected.iter().filter(|c| some(&c.domain)).cloned().collect();
            assert_eq!(changes_of(&s, &mx, s.domains.values().filter(|d| some(&d.name))), of_some, "before {event:?}");
            changed += expected.len();
            step(&mut s, &mx);
            // Some rows only: a partial table must be completed the same way.
            if changed % 2 == 0 {
                let dropped: Vec<String> = s.domains.keys().filter(|d| d.starts_with('e')).cloned().collect();
                dropped.iter().for_each(|d| s.dispatch.remove_domain(d));
            }
            set(&mut s, event);
        }
        assert_eq!(changes(&s, &mx), every_change_one_by_one(&s, &mx));
        assert!(changed > 50, "the events changed rows ({changed})");
    }

    #[test]
    fn the_best_node_per_area_and_fallback_and_sovereignty() {
        let mut s = world();
        let mx =
            metrics(&[("sg-a", m(40.0, 0.5)), ("sg-b", m(10.0, 0.2)), ("sg-c", m(30.0, 0.3)), ("fra-a", m(20.0, 0.1))]);
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-b".into()), Reason::Initial));
        assert_eq!(answer(&s, "eu"), (Some("fra-a".into()), Reason::Initial));
        // us has no site of this domain and no fallback: no foreign node answers there.
        assert_eq!(answer(&s, "us"), (None, Reason::Empty));
        assert!(changes(&s, &mx).is_empty(), "a second pass changes nothing");
    }

    #[test]
    fn hysteresis_keeps_a_healthy_incumbent_against_a_slightly_better_challenger() {
        let mut s = world();
        let base = m(20.0, 0.4);
        let c0 = cost(&s.policy.weights, &base);
        step(&mut s, &metrics(&[("sg-b", base.clone())]));
        assert_eq!(answer(&s, "sea").0.as_deref(), Some("sg-b"));
        // A challenger 5% cheaper does not take over; one 15% cheaper does.
        let five = NodeMetrics {
            load: base.load * 0.95,
            latency_ms: 20.0 * 0.95 / (1.0 + 0.05 * 20.0 / 50.0) * 1.0,
            ..base.clone()
        };
        let c5 = cost(&s.policy.weights, &five);
        assert!(c5 < c0 && c5 > c0 * 0.9, "the 5% challenger: {c5} vs {c0}");
        assert!(step(&mut s, &metrics(&[("sg-b", base.clone()), ("sg-c", five)])).is_empty());
        assert_eq!(answer(&s, "sea").0.as_deref(), Some("sg-b"));
        let much = m(5.0, 0.2);
        assert!(cost(&s.policy.weights, &much) < c0 * 0.85);
        step(&mut s, &metrics(&[("sg-b", base), ("sg-c", much)]));
        assert_eq!(answer(&s, "sea"), (Some("sg-c".into()), Reason::BetterScore));
    }

    #[test]
    fn failover_maintenance_fallback_and_recovery() {
        let mut s = world();
        let mx =
            metrics(&[("sg-a", m(40.0, 0.5)), ("sg-b", m(10.0, 0.2)), ("sg-c", m(30.0, 0.3)), ("fra-a", m(20.0, 0.1))]);
        step(&mut s, &mx);
        set(&mut s, Command::SetHealth { changes: vec![("sg-b".into(), Health::Down)] });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-c".into()), Reason::Failover));
        set(&mut s, Command::SetMaintenance { id: "sg-c".into(), reason: Some("kernel upgrade".into()) });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-a".into()), Reason::Maintenance));
        set(&mut s, Command::SetHealth { changes: vec![("sg-a".into(), Health::Down)] });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("fra-a".into()), Reason::Fallback), "sea is empty: eu answers");
        set(&mut s, Command::SetHealth { changes: vec![("sg-b".into(), Health::Up)] });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-b".into()), Reason::Recovery));
        set(&mut s, Command::SetHealth { changes: vec![("fra-a".into(), Health::Down)] });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "eu"), (None, Reason::Empty));
    }

    #[test]
    fn locks_and_pins_beat_scores_and_stand_when_down() {
        let mut s = world();
        let mx =
            metrics(&[("sg-a", m(40.0, 0.5)), ("sg-b", m(10.0, 0.2)), ("sg-c", m(30.0, 0.3)), ("fra-a", m(20.0, 0.1))]);
        step(&mut s, &mx);
        set(&mut s, Command::LockDomain { name: "video.example.com".into(), site: Some("fra-1".into()) });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("fra-a".into()), Reason::Lock));
        assert_eq!(answer(&s, "us"), (Some("fra-a".into()), Reason::Lock), "a lock answers in every region");
        set(&mut s, Command::LockDomain { name: "video.example.com".into(), site: None });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-b".into()), Reason::Recovery));
        assert_eq!(answer(&s, "eu"), (Some("fra-a".into()), Reason::Recovery), "same node, no longer locked");

        set(&mut s, Command::PinSite { id: "sg-1".into(), node: Some("sg-a".into()) });
        set(&mut s, Command::SetHealth { changes: vec![("sg-a".into(), Health::Down)] });
        let d = decide(&s, &mx, &s.domains["video.example.com"], "sea");
        assert!(d.trace.iter().any(|t| t.contains("pinned to node sg-a")), "{:?}", d.trace);
        assert!(d.trace.iter().any(|t| t.contains("sg-a is down; the pin stands")), "{:?}", d.trace);
        // sg-1's pin offers sg-a only, and it is down; sg-2's usable sg-c answers, and the
        // row is not attributed to the pin.
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-c".into()), Reason::Failover));
        let d = decide(&s, &mx, &s.domains["video.example.com"], "sea");
        assert_eq!(d.candidates.iter().find(|c| c.node == "sg-a").unwrap().score, None, "a down node has no score");
        set(&mut s, Command::LockDomain { name: "video.example.com".into(), site: Some("sg-1".into()) });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-a".into()), Reason::Pin), "lock + pin: the pinned node, though down");
        set(&mut s, Command::SetHealth { changes: vec![("sg-a".into(), Health::Up)] });
        set(&mut s, Command::PinSite { id: "sg-1".into(), node: None });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-b".into()), Reason::Lock), "unpinned: the locked site's best node");
        set(&mut s, Command::LockDomain { name: "video.example.com".into(), site: None });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-b".into()), Reason::Recovery));
        set(&mut s, Command::LockDomain { name: "video.example.com".into(), site: Some("sg-2".into()) });
        set(&mut s, Command::PinSite { id: "sg-2".into(), node: Some("sg-c".into()) });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-c".into()), Reason::Pin));
        set(&mut s, Command::PinSite { id: "sg-2".into(), node: None });
        set(&mut s, Command::LockDomain { name: "video.example.com".into(), site: None });
        step(&mut s, &mx);
        assert_eq!(answer(&s, "sea"), (Some("sg-b".into()), Reason::Recovery), "a lifted pin is a recovery too");
    }

    #[test]
    fn without_metrics_the_incumbent_stays() {
        let mut s = world();
        step(&mut s, &metrics(&[("sg-c", m(10.0, 0.1))]));
        assert_eq!(answer(&s, "sea").0.as_deref(), Some("sg-c"));
        // A new leader has heard nothing yet: no reshuffle.
        assert!(changes(&s, &HashMap::new()).is_empty());
    }
}
