//! Object metadata: versions under vector clocks, conflict strategies, locations per region,
//! node-level replicas, and the per-region sync feed each applied change feeds.
//!
//! Every rule here is a function of the state and the command, so every peer resolves the
//! same conflict the same way. Times (`at_ms`, `timestamp_ms`) travel inside the command:
//! the peer that accepted the request stamps them, nobody reads a clock while applying.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::clock::{Relation, VClock};
use super::{Error, RegionReport, State};

/// Most versions one object may hold while a conflict waits (manual) or siblings live
/// (fork). A write that would add one more is refused until someone resolves.
pub const MAX_VERSIONS: usize = 16;

/// The object side of the replicated state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub objects: BTreeMap<String, Object>,
    /// Per region: the changes it must still receive.
    pub feeds: BTreeMap<String, Feed>,
    /// Per region: what its last heartbeat said.
    pub region_status: BTreeMap<String, RegionStatus>,
    pub sync: SyncPolicy,
    pub scheduler: SchedulerWeights,
}

/// How concurrent writes of one object are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The write with the later writer timestamp wins (then the larger region name); the
    /// loser is recorded on the object.
    LastWriterWins,
    /// One version with the pointwise maximum clock and the attributes merged key by key.
    Merge,
    /// Both versions are kept until `POST /v1/conflicts/ID/resolve` decides.
    Manual,
    /// Both versions are kept as siblings; a write that has seen them all collapses them.
    Fork,
}

/// When a change reaches the other regions' feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// At once.
    Eager,
    /// Held, and released in batches of `batch_size` or every `lazy_interval_ms`.
    Lazy,
    /// Only when the region asks for the object (`POST /v1/regions/R/pull`).
    OnDemand,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub id: String,
    /// One version, or several that no write has superseded yet (fork siblings, or a
    /// manual conflict waiting for a decision).
    pub versions: Vec<Version>,
    /// The pointwise maximum of the versions' clocks.
    pub clock: VClock,
    /// The region of the first write.
    pub primary: String,
    /// Wanted number of node-level replicas.
    pub replicas: u32,
    pub strategy: Strategy,
    pub sync: SyncMode,
    pub locations: BTreeMap<String, Location>,
    /// Nodes that hold (or should hold and lost) a copy.
    pub holders: BTreeMap<String, Replica>,
    /// Set while a manual conflict waits: the revision it arose at.
    pub conflict_since: Option<u64>,
    /// The last version that lost under `last_writer_wins`.
    pub lost: Option<LostWrite>,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// The region that wrote it.
    pub region: String,
    pub clock: VClock,
    /// The writer's wall clock, in milliseconds: the last-writer-wins order.
    pub timestamp_ms: u64,
    pub size: u64,
    pub hash: String,
    pub attrs: BTreeMap<String, Attr>,
}

/// One attribute, with the write it came from so that merging can pick per key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attr {
    pub timestamp_ms: u64,
    pub region: String,
    /// The value as canonical JSON text.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostWrite {
    pub version: Version,
    pub revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationState {
    Synced,
    Syncing,
    Stale,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub state: LocationState,
    pub last_sync_ms: Option<u64>,
    /// The feed event whose acknowledgement makes this location synced.
    pub pending: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    Healthy,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub state: ReplicaState,
    pub revision: u64,
}

/// The changes one region must still receive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    /// The id the next released event gets; ids start at 1 and never repeat.
    pub next_id: u64,
    pub events: BTreeMap<u64, Event>,
    /// Lazy changes not yet released (they get ids when released).
    pub held: Vec<Event>,
    /// Every id up to this one was dropped when the region fell `max_pending` behind: a
    /// reader from before must re-read the objects.
    pub dropped_upto: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Put,
    Delete,
}

/// One change a region must receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub object: String,
    pub kind: EventKind,
    /// The log index of the change.
    pub revision: u64,
    /// The region the change came from; `None` for a resolution or a pull.
    pub origin: Option<String>,
    pub clock: VClock,
    /// Hash and size of each version after the change.
    pub versions: Vec<(String, u64)>,
}

/// Cluster-wide defaults and limits of the sync engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPolicy {
    pub default_strategy: Strategy,
    pub default_sync: SyncMode,
    pub default_replicas: u32,
    pub batch_size: u32,
    pub lazy_interval_ms: u64,
    /// Most unacknowledged events one region may have; past it the region's feed is
    /// dropped and the region must re-read (its locations turn stale).
    pub max_pending: u32,
    pub revision: u64,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            default_strategy: Strategy::LastWriterWins,
            default_sync: SyncMode::Eager,
            default_replicas: 3,
            batch_size: 100,
            lazy_interval_ms: 5_000,
            max_pending: 100_000,
            revision: 0,
        }
    }
}

/// The weights `POST /v1/schedule` scores nodes with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerWeights {
    pub w_cpu: f64,
    pub w_ram: f64,
    pub w_gpu: f64,
    pub w_latency: f64,
    pub w_io: f64,
    pub revision: u64,
}

impl Default for SchedulerWeights {
    fn default() -> Self {
        Self { w_cpu: 1.0, w_ram: 1.5, w_gpu: 0.5, w_latency: 1.0, w_io: 0.8, revision: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionState {
    Healthy,
    Degraded,
    Offline,
}

/// A region's last heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionStatus {
    pub state: RegionState,
    pub sync_lag: u64,
    pub storage_used: u64,
    pub load_level: f64,
    pub last_seen_ms: u64,
    pub revision: u64,
}

/// A write of an object as a region sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectWrite {
    pub region: String,
    pub clock: VClock,
    pub timestamp_ms: u64,
    pub size: u64,
    pub hash: String,
    /// Attribute name → canonical JSON text.
    pub attrs: BTreeMap<String, String>,
    pub strategy: Option<Strategy>,
    pub sync: Option<SyncMode>,
    pub replicas: Option<u32>,
}

/// How a conflict is settled by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Resolution {
    /// Keep the version at this position of `versions`.
    Pick(usize),
    /// Replace all versions with this one (its clock is merged with theirs).
    Version(ObjectWrite),
}

/// What a write of an object did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub outcome: WriteResult,
    /// The write's clock against the stored one (`None` for a new object).
    pub relation: Option<Relation>,
    /// How a conflict was settled: `written_won`, `stored_won`, `merged`, `pending`,
    /// `forked`.
    pub settled: Option<String>,
    pub versions: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteResult {
    Applied,
    Stale,
    Conflict,
}

impl Version {
    fn from_write(w: &ObjectWrite) -> Self {
        let attrs = w
            .attrs
            .iter()
            .map(|(k, v)| {
                (k.clone(), Attr { timestamp_ms: w.timestamp_ms, region: w.region.clone(), value: v.clone() })
            })
            .collect();
        Version {
            region: w.region.clone(),
            clock: w.clock.clone(),
            timestamp_ms: w.timestamp_ms,
            size: w.size,
            hash: w.hash.clone(),
            attrs,
        }
    }

    /// The last-writer-wins order: writer timestamp, then region name, then content.
    fn lww_key(&self) -> (u64, &str, &str, u64) {
        (self.timestamp_ms, &self.region, &self.hash, self.size)
    }

    /// Merges two versions: the pointwise maximum clock, per attribute the later one, and
    /// content (size, hash, writer) from the later version. Commutative, associative and
    /// idempotent, so the order in which peers or regions merge does not matter.
    pub fn merge(&self, other: &Version) -> Version {
        let later = if other.lww_key() > self.lww_key() { other } else { self };
        let mut attrs = self.attrs.clone();
        for (k, v) in &other.attrs {
            match attrs.get(k) {
                Some(mine) if mine >= v => {}
                _ => {
                    attrs.insert(k.clone(), v.clone());
                }
            }
        }
        Version {
            region: later.region.clone(),
            clock: self.clock.merge(&other.clock),
            timestamp_ms: later.timestamp_ms,
            size: later.size,
            hash: later.hash.clone(),
            attrs,
        }
    }
}

impl Object {
    fn merged_clock(versions: &[Version]) -> VClock {
        versions.iter().fold(VClock::default(), |acc, v| acc.merge(&v.clock))
    }

    pub fn in_conflict(&self) -> bool {
        self.versions.len() > 1
    }
}

impl State {
    pub(super) fn put_object(
        &mut self,
        index: u64,
        id: &str,
        write: &ObjectWrite,
        at_ms: u64,
    ) -> Result<WriteOutcome, Error> {
        if !self.regions.contains_key(&write.region) {
            return Err(Error::invalid("region", format!("region '{}' does not exist", write.region)));
        }
        let policy = self.meta.sync.clone();
        let incoming = Version::from_write(write);
        let Some(current) = self.meta.objects.get(id) else {
            let object = Object {
                id: id.to_string(),
                clock: incoming.clock.clone(),
                versions: vec![incoming],
                primary: write.region.clone(),
                replicas: write.replicas.unwrap_or(policy.default_replicas),
                strategy: write.strategy.unwrap_or(policy.default_strategy),
                sync: write.sync.unwrap_or(policy.default_sync),
                locations: BTreeMap::new(),
                holders: BTreeMap::new(),
                conflict_since: None,
                lost: None,
                revision: index,
            };
            self.meta.objects.insert(id.to_string(), object);
            self.after_change(index, id, Some(&write.region), at_ms);
            return Ok(WriteOutcome { outcome: WriteResult::Applied, relation: None, settled: None, versions: 1 });
        };

        let relation = incoming.clock.compare(&current.clock);
        // Seen already: a version at or after this write is stored.
        if current.versions.iter().any(|v| v.clock.dominates(&incoming.clock)) {
            return Ok(WriteOutcome {
                outcome: WriteResult::Stale,
                relation: Some(relation),
                settled: None,
                versions: current.versions.len(),
            });
        }
        let mut object = current.clone();
        if let Some(s) = write.strategy {
            object.strategy = s;
        }
        if let Some(s) = write.sync {
            object.sync = s;
        }
        if let Some(r) = write.replicas {
            object.replicas = r;
        }
        // Versions this write has seen are superseded by it.
        let concurrent: Vec<Version> =
            object.versions.iter().filter(|v| !incoming.clock.dominates(&v.clock)).cloned().collect();
        let (outcome, settled) = if concurrent.is_empty() {
            object.versions = vec![incoming];
            object.conflict_since = None;
            (WriteResult::Applied, None)
        } else {
            match object.strategy {
                Strategy::LastWriterWins => {
                    let clock = concurrent.iter().fold(incoming.clock.clone(), |c, v| c.merge(&v.clock));
                    let best = concurrent.iter().max_by(|a, b| a.lww_key().cmp(&b.lww_key())).cloned();
                    let (mut winner, loser, settled) = match best {
                        Some(best) if best.lww_key() >= incoming.lww_key() => (best, Some(incoming), "stored_won"),
                        best => (incoming, best, "written_won"),
                    };
                    winner.clock = clock;
                    if let Some(version) = loser {
                        object.lost = Some(LostWrite { version, revision: index });
                    }
                    object.versions = vec![winner];
                    object.conflict_since = None;
                    (WriteResult::Conflict, Some(settled))
                }
                Strategy::Merge => {
                    let merged = concurrent.iter().fold(incoming, |acc, v| acc.merge(v));
                    object.versions = vec![merged];
                    object.conflict_since = None;
                    (WriteResult::Conflict, Some("merged"))
                }
                Strategy::Manual | Strategy::Fork => {
                    if concurrent.len() + 1 > MAX_VERSIONS {
                        return Err(Error::Refused {
                            message: format!(
                                "object '{id}' already holds {MAX_VERSIONS} concurrent versions, the limit; \
                                 resolve them (POST /v1/conflicts/{id}/resolve) or write with a clock that \
                                 has seen them"
                            ),
                        });
                    }
                    let mut versions = concurrent;
                    versions.push(incoming);
                    object.versions = versions;
                    if object.strategy == Strategy::Manual {
                        object.conflict_since.get_or_insert(index);
                        (WriteResult::Conflict, Some("pending"))
                    } else {
                        object.conflict_since = None;
                        (WriteResult::Conflict, Some("forked"))
                    }
                }
            }
        };
        object.clock = Object::merged_clock(&object.versions);
        object.revision = index;
        let versions = object.versions.len();
        // The writer holds the result only when its version is all there is; after a lost,
        // merged or forked write it must receive the result like every other region.
        let writer_holds = versions == 1 && matches!(settled, None | Some("written_won"));
        self.meta.objects.insert(id.to_string(), object);
        self.after_change(index, id, writer_holds.then_some(&write.region), at_ms);
        Ok(WriteOutcome { outcome, relation: Some(relation), settled: settled.map(String::from), versions })
    }

    pub(super) fn delete_object(&mut self, index: u64, id: &str) -> Result<(), Error> {
        let object = self.meta.objects.remove(id).ok_or_else(|| Error::not_found("object", id))?;
        for region in object.locations.keys() {
            let event = Event {
                id: 0,
                object: id.to_string(),
                kind: EventKind::Delete,
                revision: index,
                origin: None,
                clock: object.clock.clone(),
                versions: vec![],
            };
            self.meta.feeds.entry(region.clone()).or_default().push(event);
            self.check_overflow(region);
        }
        Ok(())
    }

    pub(super) fn resolve_conflict(
        &mut self,
        index: u64,
        id: &str,
        resolution: &Resolution,
        at_ms: u64,
    ) -> Result<(), Error> {
        let object = self.meta.objects.get(id).ok_or_else(|| Error::not_found("object", id))?;
        if !object.in_conflict() {
            return Err(Error::Refused {
                message: format!("object '{id}' has one version; there is nothing to resolve"),
            });
        }
        let mut chosen = match resolution {
            Resolution::Pick(i) => object.versions.get(*i).cloned().ok_or_else(|| {
                Error::invalid(
                    "pick",
                    format!("object '{id}' has versions 0 to {}", object.versions.len().saturating_sub(1)),
                )
            })?,
            Resolution::Version(w) => {
                if !self.regions.contains_key(&w.region) {
                    return Err(Error::invalid("region", format!("region '{}' does not exist", w.region)));
                }
                Version::from_write(w)
            }
        };
        chosen.clock = chosen.clock.merge(&object.clock);
        let Some(object) = self.meta.objects.get_mut(id) else { return Err(Error::not_found("object", id)) };
        object.clock = chosen.clock.clone();
        object.versions = vec![chosen];
        object.conflict_since = None;
        object.revision = index;
        self.after_change(index, id, None, at_ms);
        Ok(())
    }

    /// Node `node` holds a healthy copy of the object, or lost it.
    pub(super) fn mark_replica(&mut self, index: u64, id: &str, node: &str, healthy: bool) -> Result<(), Error> {
        if !self.nodes.contains_key(node) {
            return Err(Error::invalid("node", format!("node '{node}' does not exist")));
        }
        let object = self.meta.objects.get_mut(id).ok_or_else(|| Error::not_found("object", id))?;
        let state = if healthy { ReplicaState::Healthy } else { ReplicaState::Missing };
        object.holders.insert(node.to_string(), Replica { state, revision: index });
        object.revision = index;
        Ok(())
    }

    /// After an object changed: the writer's region holds it; every other region gets the
    /// change by the object's sync mode.
    fn after_change(&mut self, index: u64, id: &str, origin: Option<&String>, at_ms: u64) {
        let Some(object) = self.meta.objects.get_mut(id) else { return };
        if let Some(origin) = origin {
            object.locations.insert(
                origin.clone(),
                Location { state: LocationState::Synced, last_sync_ms: Some(at_ms), pending: None },
            );
        }
        let event = Event {
            id: 0,
            object: id.to_string(),
            kind: EventKind::Put,
            revision: index,
            origin: origin.cloned(),
            clock: object.clock.clone(),
            versions: object.versions.iter().map(|v| (v.hash.clone(), v.size)).collect(),
        };
        let targets: Vec<String> = self.regions.keys().filter(|r| Some(*r) != origin).cloned().collect();
        let mode = object.sync;
        let batch_size = self.meta.sync.batch_size as usize;
        for region in targets {
            let Some(object) = self.meta.objects.get_mut(id) else { return };
            let feed = self.meta.feeds.entry(region.clone()).or_default();
            match mode {
                SyncMode::Eager => {
                    let event_id = feed.push(event.clone());
                    object.locations.insert(region.clone(), syncing(object.locations.get(&region), Some(event_id)));
                }
                SyncMode::Lazy => {
                    feed.held.push(event.clone());
                    object.locations.insert(region.clone(), syncing(object.locations.get(&region), None));
                    if feed.held.len() >= batch_size {
                        self.release_held(&region);
                    }
                }
                SyncMode::OnDemand => {
                    if let Some(location) = object.locations.get_mut(&region) {
                        location.state = LocationState::Stale;
                        location.pending = None;
                    }
                }
            }
            self.check_overflow(&region);
        }
    }

    /// Gives the held (lazy) changes of a region their ids and makes them readable.
    pub(super) fn release_held(&mut self, region: &str) {
        let Some(feed) = self.meta.feeds.get_mut(region) else { return };
        for event in std::mem::take(&mut feed.held) {
            let object = event.object.clone();
            let event_id = feed.push(event);
            if let Some(location) = self.meta.objects.get_mut(&object).and_then(|o| o.locations.get_mut(region)) {
                if location.state == LocationState::Syncing {
                    location.pending = Some(event_id);
                }
            }
        }
    }

    /// A region more than `max_pending` behind loses its feed and must re-read.
    fn check_overflow(&mut self, region: &str) {
        let max = self.meta.sync.max_pending as usize;
        let Some(feed) = self.meta.feeds.get_mut(region) else { return };
        if feed.events.len() + feed.held.len() <= max {
            return;
        }
        feed.events.clear();
        feed.held.clear();
        feed.dropped_upto = feed.next_id.saturating_sub(1).max(feed.dropped_upto);
        for object in self.meta.objects.values_mut() {
            if let Some(location) = object.locations.get_mut(region) {
                if location.state != LocationState::Synced {
                    location.state = LocationState::Stale;
                    location.pending = None;
                }
            }
        }
    }

    /// A region reports its state; it must exist.
    pub(super) fn region_heartbeat(
        &mut self,
        index: u64,
        region: &str,
        report: &RegionReport,
        at_ms: u64,
    ) -> Result<(), Error> {
        self.require_region(region)?;
        let status = RegionStatus {
            state: report.state,
            sync_lag: report.sync_lag,
            storage_used: report.storage_used,
            load_level: report.load_level,
            last_seen_ms: at_ms,
            revision: index,
        };
        self.meta.region_status.insert(region.into(), status);
        Ok(())
    }

    /// The region has applied these events; their locations become synced.
    pub(super) fn ack_events(&mut self, region: &str, ids: &[u64], upto: Option<u64>, at_ms: u64) -> usize {
        let Some(feed) = self.meta.feeds.get_mut(region) else { return 0 };
        let mut acked: Vec<Event> = ids.iter().filter_map(|id| feed.events.remove(id)).collect();
        if let Some(upto) = upto {
            // Every event up to `upto`; `u64::MAX` (no event after it) takes them all.
            let rest = upto.checked_add(1).map(|after| feed.events.split_off(&after)).unwrap_or_default();
            acked.extend(std::mem::replace(&mut feed.events, rest).into_values());
        }
        for event in &acked {
            if let Some(location) = self.meta.objects.get_mut(&event.object).and_then(|o| o.locations.get_mut(region)) {
                if location.pending == Some(event.id) {
                    *location = Location { state: LocationState::Synced, last_sync_ms: Some(at_ms), pending: None };
                }
            }
        }
        acked.len()
    }

    /// The region asks for objects it does not hold in their current version.
    pub(super) fn pull_objects(&mut self, index: u64, region: &str, ids: &[String]) -> Result<usize, Error> {
        if !self.regions.contains_key(region) {
            return Err(Error::not_found("region", region));
        }
        for (i, id) in ids.iter().enumerate() {
            if !self.meta.objects.contains_key(id) {
                return Err(Error::invalid(format!("objects[{i}]"), format!("object '{id}' does not exist")));
            }
        }
        let mut queued = 0;
        for id in ids {
            let Some(object) = self.meta.objects.get_mut(id) else { continue };
            let location = object.locations.get(region);
            if location.is_some_and(|l| l.state != LocationState::Stale) {
                continue;
            }
            let event = Event {
                id: 0,
                object: id.clone(),
                kind: EventKind::Put,
                revision: index,
                origin: None,
                clock: object.clock.clone(),
                versions: object.versions.iter().map(|v| (v.hash.clone(), v.size)).collect(),
            };
            let event_id = self.meta.feeds.entry(region.to_string()).or_default().push(event);
            object.locations.insert(region.to_string(), syncing(location, Some(event_id)));
            queued += 1;
        }
        self.check_overflow(region);
        Ok(queued)
    }
}

fn syncing(previous: Option<&Location>, pending: Option<u64>) -> Location {
    Location { state: LocationState::Syncing, last_sync_ms: previous.and_then(|l| l.last_sync_ms), pending }
}

impl Feed {
    /// Appends an event with the next id; returns the id.
    fn push(&mut self, mut event: Event) -> u64 {
        self.next_id = self.next_id.max(1);
        event.id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let id = event.id;
        self.events.insert(id, event);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, RegionSpec};
    use proptest::prelude::{prop, prop_assert_eq, proptest};
    use proptest::strategy::Strategy as _;

    fn vc(pairs: &[(&str, u64)]) -> VClock {
        VClock(pairs.iter().map(|(r, n)| (r.to_string(), *n)).collect())
    }

    fn write(region: &str, clock: &[(&str, u64)], ts: u64, hash: &str) -> ObjectWrite {
        ObjectWrite {
            region: region.into(),
            clock: vc(clock),
            timestamp_ms: ts,
            size: 10,
            hash: hash.into(),
            attrs: BTreeMap::new(),
            strategy: None,
            sync: None,
            replicas: None,
        }
    }

    fn world(strategy: Strategy) -> State {
        let mut s = State::default();
        for (i, r) in ["eu", "sea", "us"].iter().enumerate() {
            let spec = RegionSpec { cidrs: vec![], fallback: vec![] };
            s.apply(i as u64 + 1, &Command::PutRegion { name: r.to_string(), spec, cas: None }).unwrap();
        }
        s.meta.sync.default_strategy = strategy;
        s
    }

    fn put(s: &mut State, index: u64, w: ObjectWrite) -> WriteOutcome {
        s.put_object(index, "o1", &w, index * 1000).unwrap()
    }

    #[test]
    fn dominating_writes_apply_and_dominated_ones_are_stale() {
        let mut s = world(Strategy::LastWriterWins);
        assert_eq!(put(&mut s, 10, write("sea", &[("sea", 1)], 5, "h1")).outcome, WriteResult::Applied);
        let newer = put(&mut s, 11, write("eu", &[("sea", 1), ("eu", 1)], 6, "h2"));
        assert_eq!((newer.outcome, newer.relation), (WriteResult::Applied, Some(Relation::After)));
        let before = s.clone();
        let old = put(&mut s, 12, write("sea", &[("sea", 1)], 99, "h3"));
        assert_eq!((old.outcome, old.relation), (WriteResult::Stale, Some(Relation::Before)));
        let again = put(&mut s, 13, write("eu", &[("sea", 1), ("eu", 1)], 6, "h2"));
        assert_eq!((again.outcome, again.relation), (WriteResult::Stale, Some(Relation::Equal)));
        assert_eq!(s, before, "a stale write changes nothing");
        assert_eq!(s.meta.objects["o1"].versions[0].hash, "h2");
        assert_eq!(s.meta.objects["o1"].revision, 11);
    }

    #[test]
    fn last_writer_wins_by_timestamp_then_region_and_records_the_loser() {
        let mut s = world(Strategy::LastWriterWins);
        put(&mut s, 10, write("sea", &[("sea", 1)], 50, "sea-v"));
        let out = put(&mut s, 11, write("eu", &[("eu", 1)], 40, "eu-v"));
        assert_eq!(out.outcome, WriteResult::Conflict);
        assert_eq!(out.settled.as_deref(), Some("stored_won"));
        let o = &s.meta.objects["o1"];
        assert_eq!(o.versions[0].hash, "sea-v");
        assert_eq!(o.clock, vc(&[("sea", 1), ("eu", 1)]));
        assert_eq!(o.lost.as_ref().unwrap().version.hash, "eu-v");
        // The losing writer does not hold the result: it receives it like any other region.
        assert_eq!(o.locations["eu"].state, LocationState::Syncing);
        assert_eq!(s.meta.feeds["eu"].events.values().last().unwrap().revision, 11);
        // Same timestamp: the larger region name wins.
        let mut s = world(Strategy::LastWriterWins);
        put(&mut s, 10, write("eu", &[("eu", 1)], 50, "eu-v"));
        let out = put(&mut s, 11, write("sea", &[("sea", 1)], 50, "sea-v"));
        assert_eq!(out.settled.as_deref(), Some("written_won"));
        assert_eq!(s.meta.objects["o1"].versions[0].hash, "sea-v");
    }

    #[test]
    fn merge_takes_the_max_clock_and_merges_attributes_per_key() {
        let mut s = world(Strategy::Merge);
        let mut a = write("sea", &[("sea", 2)], 10, "a");
        a.attrs = [("colour".into(), "\"red\"".into()), ("owner".into(), "\"sea\"".into())].into();
        let mut b = write("eu", &[("eu", 1), ("sea", 1)], 20, "b");
        b.attrs = [("colour".into(), "\"blue\"".into()), ("tier".into(), "1".into())].into();
        put(&mut s, 10, a);
        let out = put(&mut s, 11, b);
        assert_eq!(out.settled.as_deref(), Some("merged"));
        let v = &s.meta.objects["o1"].versions[0];
        assert_eq!(v.clock, vc(&[("sea", 2), ("eu", 1)]));
        assert_eq!(v.hash, "b");
        let attrs: BTreeMap<_, _> = v.attrs.iter().map(|(k, a)| (k.as_str(), a.value.as_str())).collect();
        assert_eq!(attrs, [("colour", "\"blue\""), ("owner", "\"sea\""), ("tier", "1")].into());
    }

    #[test]
    fn manual_conflicts_wait_and_resolve() {
        let mut s = world(Strategy::Manual);
        put(&mut s, 10, write("sea", &[("sea", 1)], 1, "a"));
        let out = put(&mut s, 11, write("eu", &[("eu", 1)], 2, "b"));
        assert_eq!(out.settled.as_deref(), Some("pending"));
        assert_eq!(s.meta.objects["o1"].conflict_since, Some(11));
        assert_eq!(s.meta.objects["o1"].versions.len(), 2);
        s.resolve_conflict(12, "o1", &Resolution::Pick(0), 0).unwrap();
        let o = &s.meta.objects["o1"];
        assert_eq!((o.versions.len(), o.versions[0].hash.as_str(), o.conflict_since), (1, "a", None));
        assert_eq!(o.clock, vc(&[("sea", 1), ("eu", 1)]));
        assert!(matches!(s.resolve_conflict(13, "o1", &Resolution::Pick(0), 0), Err(Error::Refused { .. })));
    }

    #[test]
    fn fork_siblings_appear_and_a_dominating_write_collapses_them() {
        let mut s = world(Strategy::Fork);
        put(&mut s, 10, write("sea", &[("sea", 1)], 1, "a"));
        put(&mut s, 11, write("eu", &[("eu", 1)], 2, "b"));
        let out = put(&mut s, 12, write("us", &[("us", 1)], 3, "c"));
        assert_eq!((out.settled.as_deref(), out.versions), (Some("forked"), 3));
        // Seen only a and b: c stays a sibling.
        let out = put(&mut s, 13, write("sea", &[("sea", 2), ("eu", 1)], 4, "d"));
        assert_eq!(out.versions, 2);
        let all = put(&mut s, 14, write("eu", &[("sea", 2), ("eu", 2), ("us", 1)], 5, "e"));
        assert_eq!((all.outcome, all.versions), (WriteResult::Applied, 1));
    }

    #[test]
    fn eager_changes_feed_every_other_region_and_acks_sync_them() {
        let mut s = world(Strategy::LastWriterWins);
        put(&mut s, 10, write("sea", &[("sea", 1)], 1, "a"));
        assert!(!s.meta.feeds.contains_key("sea"));
        let eu = &s.meta.feeds["eu"];
        assert_eq!(eu.events.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(s.meta.objects["o1"].locations["eu"].state, LocationState::Syncing);
        put(&mut s, 11, write("sea", &[("sea", 2)], 2, "b"));
        // Acking the older event leaves the location syncing; the newer one syncs it.
        assert_eq!(s.ack_events("eu", &[1], None, 5), 1);
        assert_eq!(s.meta.objects["o1"].locations["eu"].state, LocationState::Syncing);
        assert_eq!(s.ack_events("eu", &[2, 2, 9], None, 6), 1);
        let loc = &s.meta.objects["o1"].locations["eu"];
        assert_eq!((loc.state, loc.last_sync_ms), (LocationState::Synced, Some(6)));
    }

    #[test]
    fn lazy_changes_are_held_until_a_batch_fills() {
        let mut s = world(Strategy::LastWriterWins);
        s.meta.sync.batch_size = 2;
        s.meta.sync.default_sync = SyncMode::Lazy;
        put(&mut s, 10, write("sea", &[("sea", 1)], 1, "a"));
        assert!(s.meta.feeds["eu"].events.is_empty());
        assert_eq!(s.meta.feeds["eu"].held.len(), 1);
        put(&mut s, 11, write("sea", &[("sea", 2)], 2, "b"));
        assert_eq!(s.meta.feeds["eu"].events.len(), 2);
        assert_eq!(s.meta.objects["o1"].locations["eu"].pending, Some(2));
    }

    #[test]
    fn on_demand_changes_wait_for_a_pull_and_overflow_drops_the_feed() {
        let mut s = world(Strategy::LastWriterWins);
        s.meta.sync.default_sync = SyncMode::OnDemand;
        put(&mut s, 10, write("sea", &[("sea", 1)], 1, "a"));
        assert!(s.meta.feeds.get("eu").is_none_or(|f| f.events.is_empty()));
        assert_eq!(s.pull_objects(11, "eu", &["o1".into()]).unwrap(), 1);
        assert_eq!(s.meta.feeds["eu"].events.len(), 1);
        assert!(s.pull_objects(12, "eu", &["nope".into()]).is_err());
        s.meta.sync.max_pending = 1;
        s.meta.objects.get_mut("o1").unwrap().sync = SyncMode::Eager;
        put(&mut s, 13, write("sea", &[("sea", 2)], 2, "b"));
        let eu = &s.meta.feeds["eu"];
        assert!(eu.events.is_empty());
        assert_eq!(eu.dropped_upto, 2);
        assert_eq!(s.meta.objects["o1"].locations["eu"].state, LocationState::Stale);
    }

    #[test]
    fn an_ack_up_to_the_largest_id_takes_every_event() {
        let mut s = world(Strategy::LastWriterWins);
        put(&mut s, 10, write("sea", &[("sea", 1)], 1, "h1"));
        put(&mut s, 11, write("sea", &[("sea", 2)], 2, "h2"));
        assert_eq!(s.meta.feeds["eu"].events.len(), 2);
        assert_eq!(s.ack_events("eu", &[], Some(u64::MAX), 5), 2);
        assert!(s.meta.feeds["eu"].events.is_empty());
    }

    fn version() -> impl proptest::strategy::Strategy<Value = Version> {
        let clock = prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), 1u64..4, 0..3)
            .prop_map(|m| VClock(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
        let attrs = prop::collection::btree_map(prop::sample::select(vec!["x", "y", "z"]), 0u8..3, 0..3);
        (clock, 0u64..3, prop::sample::select(vec!["a", "b", "c"]), attrs).prop_map(|(clock, ts, region, attrs)| {
            Version {
                region: region.into(),
                clock,
                timestamp_ms: ts,
                size: ts * 7,
                hash: format!("h{ts}{region}"),
                attrs: attrs
                    .into_iter()
                    .map(|(k, v)| {
                        (k.to_string(), Attr { timestamp_ms: ts, region: region.into(), value: v.to_string() })
                    })
                    .collect(),
            }
        })
    }

    proptest! {
        #[test]
        fn version_merge_is_commutative_associative_idempotent(a in version(), b in version(), c in version()) {
            prop_assert_eq!(a.merge(&b), b.merge(&a));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
        }
    }
}
