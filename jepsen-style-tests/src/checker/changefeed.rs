//! The change feed, exactly once: every acknowledged write of an object reaches the feed of
//! every region that follows it, once, in order, and nothing else does.
//!
//! The history (see docs/jepsen.md) holds three kinds of operation:
//!
//! - `write` of an object (key `cf-obj-…`): invoked with `{"clock": {...}}`, the object's
//!   vector clock, strictly increasing per object, so the clock names the write; `ok` with
//!   `{"clock", "revision", "outcome"}`, the log index of the change and `applied`,
//!   `conflict` or `stale`.
//! - `deliver` (key `cf-feed-REGION-N`, consumer N of REGION): a read of the region's feed
//!   invoked with `{"since": C}`; `ok` with `{"events": [{"id", "object", "revision",
//!   "clock", "kind"}], "cursor", "pending"}`. The drain's last read of a region is invoked
//!   with `{"since": 0, "final": true}`: it lists every event still unacknowledged.
//! - `ack` (same key): invoked with the event ids; `ok` once they are acknowledged.
//!
//! Per region, over all its consumers: every write acknowledged as applied (or conflict)
//! is delivered under exactly one event id, whose revision is the write's; an event names a
//! write that was invoked before it was read (ok or indeterminate, never a failed one);
//! per object the revisions rise with the event ids. Per consumer: a read returns only ids
//! above its `since`, rising, and no id twice. No read invoked after an acknowledgement
//! completed returns the acknowledged event. The final read returns only events that were
//! delivered and not acknowledged, and its `pending` counts exactly them (so it is 0 once
//! everything delivered was acknowledged).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};

use super::{Anomaly, Report, Validity};
use crate::history::{Operation, Type, F};

/// History keys of the objects the workload writes.
pub const OBJECT_PREFIX: &str = "cf-obj-";
/// History keys of the consumers: `cf-feed-REGION-N`.
pub const FEED_PREFIX: &str = "cf-feed-";
/// Every key of the workload starts with this.
pub const KEY_PREFIX: &str = "cf-";
/// The largest page a read asks for; a final read with fewer events lists them all.
pub const PAGE: usize = 1000;

/// The history key of consumer `n` of `region`.
pub fn feed_key(region: &str, n: u64) -> String {
    format!("{FEED_PREFIX}{region}-{n}")
}

/// The region a consumer key names.
pub fn region_of(key: &str) -> Option<&str> {
    key.strip_prefix(FEED_PREFIX)?.rsplit_once('-').map(|(region, _)| region).filter(|r| !r.is_empty())
}

/// One event as a read returned it.
#[derive(Debug, Clone, PartialEq)]
struct Delivered {
    id: u64,
    object: String,
    revision: u64,
    /// The clock, as JSON text (maps serialise with sorted keys).
    clock: String,
    /// The clock's counters.
    counters: BTreeMap<String, u64>,
}

/// Whether clock `a` is later than clock `b`: at least as high in every region, and not equal.
fn later(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> bool {
    a != b && b.iter().all(|(region, n)| a.get(region).is_some_and(|m| m >= n))
}

struct Read<'a> {
    op: &'a Operation,
    consumer: &'a str,
    since: u64,
    last: bool,
    events: Vec<Delivered>,
    pending: Option<u64>,
}

/// What the history says about one write (one object at one clock).
#[derive(Default)]
struct Write<'a> {
    /// Acknowledged as applied or conflict: exactly one event, with this revision.
    applied: Vec<&'a Operation>,
    /// Indeterminate, or acknowledged as stale (the write may have been applied by an
    /// earlier attempt): at most one event, any revision.
    maybe: Vec<&'a Operation>,
    fail: Vec<&'a Operation>,
}

impl Write<'_> {
    fn first_invoke(&self) -> Option<usize> {
        self.applied.iter().chain(&self.maybe).map(|o| o.invoke_index).min()
    }
}

pub fn check(ops: &[Operation]) -> Report {
    match judge(ops) {
        Ok((anomalies, stats, regions)) => {
            let valid = if !anomalies.is_empty() {
                Validity::Invalid
            } else if regions == 0 {
                Validity::Unknown
            } else {
                Validity::Valid
            };
            let summary = match valid {
                Validity::Valid => {
                    "every acknowledged write was delivered once per region, in order, and nothing else".to_string()
                }
                Validity::Invalid => format!("{} anomalies", anomalies.len()),
                Validity::Unknown => "the history holds no read of a change feed".to_string(),
            };
            Report { checker: "changefeed".into(), valid, summary, anomalies, stats }
        }
        Err(why) => Report {
            checker: "changefeed".into(),
            valid: Validity::Unknown,
            summary: format!("no verdict: {why}"),
            anomalies: Vec::new(),
            stats: Value::Null,
        },
    }
}

fn as_u64(v: &Value, field: &str, op: &Operation) -> Result<u64, String> {
    v.get(field).and_then(Value::as_u64).ok_or_else(|| format!("malformed history: no '{field}' in {op}"))
}

fn parse_event(v: &Value, op: &Operation) -> Result<Delivered, String> {
    Ok(Delivered {
        id: as_u64(v, "id", op)?,
        object: v
            .get("object")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("an event without object in {op}"))?
            .into(),
        revision: as_u64(v, "revision", op)?,
        clock: v.get("clock").map(Value::to_string).ok_or_else(|| format!("an event without clock in {op}"))?,
        counters: v
            .get("clock")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(r, n)| Some((r.clone(), n.as_u64()?))).collect())
            .ok_or_else(|| format!("an event's clock is not a map of counters in {op}"))?,
    })
}

fn span(op: &Operation) -> String {
    let end = match op.complete_time {
        Some(t) => format!("{:.6}s", t as f64 / 1e9),
        None => "?".into(),
    };
    format!("[{:.6}s .. {end}]", op.invoke_time as f64 / 1e9)
}

fn show_read(r: &Read, e: &Delivered) -> String {
    let what = if r.last { "final read".to_string() } else { format!("read since {}", r.since) };
    format!(
        "p{} {} {what} -> event {} {} revision {} clock {} {}",
        r.op.process,
        r.consumer,
        e.id,
        e.object,
        e.revision,
        e.clock,
        span(r.op)
    )
}

/// The acknowledgement of event `id` that completed before `op` was invoked, if any.
fn acked_before<'a>(acked: &HashMap<u64, &'a Operation>, id: u64, op: &Operation) -> Option<&'a Operation> {
    acked.get(&id).copied().filter(|a| a.complete_index.is_some_and(|c| c < op.invoke_index))
}

type Judged = (Vec<Anomaly>, Value, usize);

fn judge(ops: &[Operation]) -> Result<Judged, String> {
    let mut writes: HashMap<(String, String), Write> = HashMap::new();
    let mut reads: BTreeMap<&str, Vec<Read>> = BTreeMap::new();
    // Per region: each event id's first ok acknowledgement (its completion index).
    let mut acked: BTreeMap<&str, HashMap<u64, &Operation>> = BTreeMap::new();
    let mut resyncs: Vec<&Operation> = Vec::new();
    for op in ops {
        match op.f {
            F::Write => {
                if !op.key.starts_with(OBJECT_PREFIX) {
                    return Err(format!("'{}' is not an object of the changefeed workload, in {op}", op.key));
                }
                let clock = op.invoke_value.get("clock").ok_or_else(|| format!("a write without clock: {op}"))?;
                let w = writes.entry((op.key.clone(), clock.to_string())).or_default();
                match op.outcome {
                    Type::Ok if op.value.get("outcome").and_then(Value::as_str) == Some("stale") => w.maybe.push(op),
                    Type::Ok => {
                        as_u64(&op.value, "revision", op)?;
                        w.applied.push(op)
                    }
                    Type::Fail => w.fail.push(op),
                    _ => w.maybe.push(op),
                }
            }
            F::Deliver | F::Ack => {
                let region = region_of(&op.key)
                    .ok_or_else(|| format!("'{}' is not a consumer key (cf-feed-REGION-N), in {op}", op.key))?;
                if op.f == F::Ack {
                    if op.outcome != Type::Ok {
                        continue;
                    }
                    let ids = op.invoke_value.as_array().ok_or_else(|| format!("an ack without ids: {op}"))?;
                    let map = acked.entry(region).or_default();
                    for id in ids {
                        let id = id.as_u64().ok_or_else(|| format!("an ack of a non-number: {op}"))?;
                        map.entry(id).or_insert(op);
                    }
                    continue;
                }
                let list = reads.entry(region).or_default();
                if op.outcome == Type::Fail && op.error.as_deref().is_some_and(|e| e.contains("resync")) {
                    resyncs.push(op);
                }
                if op.outcome != Type::Ok {
                    continue;
                }
                let events = op
                    .value
                    .get("events")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("a read without events: {op}"))?;
                list.push(Read {
                    op,
                    consumer: &op.key,
                    since: as_u64(&op.invoke_value, "since", op)?,
                    last: op.invoke_value.get("final").and_then(Value::as_bool) == Some(true),
                    events: events.iter().map(|e| parse_event(e, op)).collect::<Result<_, _>>()?,
                    pending: op.value.get("pending").and_then(Value::as_u64),
                });
            }
            f => return Err(format!("'{f}' is not an operation of the changefeed workload, in {op}")),
        }
    }
    let mut anomalies = Vec::new();
    for op in &resyncs {
        anomalies.push(Anomaly {
            kind: "resync".into(),
            key: Some(op.key.clone()),
            message: "the feed dropped events and asked the consumer to re-read (more than max_pending behind)".into(),
            ops: vec![op.to_string()],
        });
    }
    let mut stats = serde_json::Map::new();
    let no_acks = HashMap::new();
    for (region, list) in &reads {
        let acked = acked.get(region).unwrap_or(&no_acks);
        let s = check_region(region, list, &writes, acked, &mut anomalies);
        stats.insert(region.to_string(), s);
    }
    let count = |f: fn(&Write) -> bool| writes.values().filter(|w| f(w)).count();
    let stats = json!({
        "writes": {
            "attempted": writes.len(),
            "acknowledged": count(|w| !w.applied.is_empty()),
            "stale": count(|w| w.applied.is_empty() && w.maybe.iter().any(|o| o.outcome == Type::Ok)),
            "indeterminate": count(|w| w.applied.is_empty() && !w.maybe.is_empty()),
            "failed": count(|w| w.applied.is_empty() && w.maybe.is_empty()),
        },
        "regions": stats,
    });
    Ok((anomalies, stats, reads.len()))
}

fn check_region(
    region: &str,
    reads: &[Read],
    writes: &HashMap<(String, String), Write>,
    acked: &HashMap<u64, &Operation>,
    anomalies: &mut Vec<Anomaly>,
) -> Value {
    let mut push = |kind: &str, message: String, ops: Vec<String>| {
        anomalies.push(Anomaly { kind: kind.into(), key: Some(region.to_string()), message, ops })
    };
    // Every event id delivered (by cursor reads), with the first read that returned it.
    let mut delivered: BTreeMap<u64, (&Read, &Delivered)> = BTreeMap::new();
    let mut per_consumer: BTreeMap<&str, HashSet<u64>> = BTreeMap::new();
    let mut deliveries = 0;
    for r in reads.iter().filter(|r| !r.last) {
        let seen = per_consumer.entry(r.consumer).or_default();
        let mut previous = r.since;
        for e in &r.events {
            deliveries += 1;
            if e.id <= previous {
                let why =
                    if e.id <= r.since { format!("at or below since {}", r.since) } else { "out of order".into() };
                push("cursor", format!("a read returned event {} {why}", e.id), vec![show_read(r, e)]);
            }
            previous = previous.max(e.id);
            if !seen.insert(e.id) {
                let first = delivered.get(&e.id).map(|(r0, e0)| show_read(r0, e0)).unwrap_or_default();
                push(
                    "duplicate-delivery",
                    format!("event {} was delivered twice to {}", e.id, r.consumer),
                    vec![first, show_read(r, e)],
                );
            }
            match delivered.get(&e.id) {
                Some((r0, e0)) if *e0 != e => push(
                    "id-reused",
                    format!("event id {} names two different changes", e.id),
                    vec![show_read(r0, e0), show_read(r, e)],
                ),
                Some(_) => {}
                None => {
                    delivered.insert(e.id, (r, e));
                }
            }
            if let Some(ack) = acked_before(acked, e.id, r.op) {
                push(
                    "acked-redelivered",
                    format!("event {} was delivered by a read invoked after its acknowledgement completed", e.id),
                    vec![format!("ack: {ack}"), show_read(r, e)],
                );
            }
        }
    }
    // Each delivered event against the writes.
    let mut events_of: HashMap<(&str, &str), Vec<u64>> = HashMap::new();
    for (&id, (r, e)) in &delivered {
        events_of.entry((e.object.as_str(), e.clock.as_str())).or_default().push(id);
        let Some(w) = writes.get(&(e.object.clone(), e.clock.clone())) else {
            push("unexpected", format!("event {id} names a write that was never invoked"), vec![show_read(r, e)]);
            continue;
        };
        match w.first_invoke() {
            None => push(
                "failed-write-delivered",
                format!("event {id} is a write that definitely failed"),
                w.fail.iter().map(|o| format!("failed: {o}")).chain([show_read(r, e)]).collect(),
            ),
            Some(i) if r.op.complete_index.is_some_and(|c| c < i) => push(
                "unexpected",
                format!("event {id} was read before its write was invoked"),
                vec![show_read(r, e), format!("write: {}", w.applied.iter().chain(&w.maybe).next().unwrap())],
            ),
            Some(_) => {}
        }
        for ok in &w.applied {
            let revision = ok.value.get("revision").and_then(Value::as_u64);
            if revision != Some(e.revision) {
                push(
                    "revision-mismatch",
                    format!(
                        "event {id} carries revision {}, the write was acknowledged at {}",
                        e.revision,
                        revision.map_or("?".into(), |r| r.to_string())
                    ),
                    vec![format!("write: {ok}"), show_read(r, e)],
                );
            }
        }
    }
    for ((object, clock), ids) in &events_of {
        if ids.len() > 1 {
            let shown = ids.iter().map(|id| show_read(delivered[id].0, delivered[id].1)).collect();
            push(
                "duplicate-event",
                format!("the write of {object} at clock {clock} was delivered under {} event ids {ids:?}", ids.len()),
                shown,
            );
        }
    }
    // Every acknowledged write delivered.
    let mut lost: Vec<&Operation> = Vec::new();
    let (mut maybe_delivered, mut maybe_absent) = (0, 0);
    for ((object, clock), w) in writes {
        let there = events_of.contains_key(&(object.as_str(), clock.as_str()));
        match (w.applied.first(), there) {
            (Some(ok), false) => lost.push(ok),
            (None, true) => maybe_delivered += 1,
            (None, false) if !w.maybe.is_empty() => maybe_absent += 1,
            _ => {}
        }
    }
    lost.sort_by_key(|o| o.invoke_index);
    if !lost.is_empty() {
        push(
            "lost",
            format!("{} acknowledged writes were never delivered to region {region}", lost.len()),
            lost.iter().map(|o| format!("lost: {o}")).collect(),
        );
    }
    // Per object, in event-id order: revisions never fall and clocks rise. Two changes of
    // one object may share a revision (the leader batches commands into one log entry,
    // and a revision is the entry's index); they are counted, and their clocks must
    // still be in order.
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut shared_revisions = Vec::new();
    for (&id, (r, e)) in &delivered {
        if let Some(&prev_id) = last.get(e.object.as_str()) {
            let (r0, e0) = delivered[&prev_id];
            if e.revision < e0.revision || !later(&e.counters, &e0.counters) {
                push(
                    "order",
                    format!(
                        "{}: event {id} (revision {}, clock {}) does not follow event {prev_id} (revision {}, clock {})",
                        e.object, e.revision, e.clock, e0.revision, e0.clock
                    ),
                    vec![show_read(r0, e0), show_read(r, e)],
                );
            } else if e.revision == e0.revision {
                shared_revisions.push(format!("{} revision {}: events {prev_id} and {id}", e.object, e.revision));
            }
        }
        last.insert(&e.object, id);
    }
    // The drain's final read: only delivered, unacknowledged events, and pending counts them.
    let last_read = reads.iter().rfind(|r| r.last);
    let mut final_stats = Value::Null;
    if let Some(r) = last_read {
        let highest_cursor = reads
            .iter()
            .filter(|x| !x.last && x.op.complete_index.is_some_and(|c| c < r.op.invoke_index))
            .flat_map(|x| x.events.iter().map(|e| e.id).chain([x.since]))
            .max()
            .unwrap_or(0);
        let mut beyond = 0;
        for e in &r.events {
            if let Some(ack) = acked_before(acked, e.id, r.op) {
                push(
                    "acked-redelivered",
                    format!("event {} is still pending after its acknowledgement completed", e.id),
                    vec![format!("ack: {ack}"), show_read(r, e)],
                );
            } else if !delivered.contains_key(&e.id) {
                if e.id <= highest_cursor {
                    push(
                        "skipped",
                        format!("event {} is pending but no consumer received it, though they read past it", e.id),
                        vec![show_read(r, e)],
                    );
                } else {
                    beyond += 1;
                }
            }
        }
        let unacked = delivered.keys().filter(|&&id| acked_before(acked, id, r.op).is_none()).count();
        if r.events.len() < PAGE && r.pending != Some(r.events.len() as u64) {
            push(
                "pending",
                format!(
                    "the final read lists {} unacknowledged events but says pending {} ({unacked} delivered events \
                     were not acknowledged before it)",
                    r.events.len(),
                    r.pending.map_or("?".into(), |p| p.to_string())
                ),
                vec![format!("p{} {} final read {} pending {:?}", r.op.process, r.consumer, span(r.op), r.pending)],
            );
        }
        final_stats = json!({"events": r.events.len(), "pending": r.pending, "unacknowledged_delivered": unacked,
                             "undelivered_beyond_cursors": beyond});
    }
    json!({
        "consumers": per_consumer.len(),
        "reads": reads.iter().filter(|r| !r.last).count(),
        "deliveries": deliveries,
        "events": delivered.len(),
        "acknowledged_events": delivered.keys().filter(|id| acked.contains_key(id)).count(),
        "lost": lost.len(),
        "indeterminate_delivered": maybe_delivered,
        "indeterminate_absent": maybe_absent,
        "final_read": final_stats,
        "shared_revisions": shared_revisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{pair, Event};

    /// A history builder: writes of objects, reads and acks of consumers.
    #[derive(Default)]
    struct H {
        events: Vec<Event>,
    }

    impl H {
        fn op(&mut self, p: u64, f: F, key: &str, invoke: Value, outcome: Type, value: Value) {
            let t = self.events.len() as u64 * 1000;
            self.events.push(Event::new(p, Type::Invoke, f, key, invoke, t));
            self.events.push(Event::new(p, outcome, f, key, value, t + 500));
        }
        fn write(&mut self, p: u64, object: &str, n: u64, outcome: Type, revision: u64) {
            let invoke = json!({"clock": {"sea": n}});
            let value = match outcome {
                Type::Ok => json!({"clock": {"sea": n}, "revision": revision, "outcome": "applied"}),
                _ => invoke.clone(),
            };
            self.op(p, F::Write, &format!("{OBJECT_PREFIX}{object}"), invoke, outcome, value);
        }
        /// A read by consumer `c` of region eu returning `(id, object, revision, n)`s.
        fn read(&mut self, c: u64, since: u64, events: &[(u64, &str, u64, u64)], pending: u64) {
            let list: Vec<Value> = events
                .iter()
                .map(|&(id, o, rev, n)| {
                    json!({"id": id, "object": format!("{OBJECT_PREFIX}{o}"), "revision": rev,
                           "clock": {"sea": n}, "kind": "put"})
                })
                .collect();
            let cursor = events.last().map_or(since, |e| e.0);
            let value = json!({"events": list, "cursor": cursor, "pending": pending});
            self.op(100 + c, F::Deliver, &feed_key("eu", c), json!({"since": since}), Type::Ok, value);
        }
        fn ack(&mut self, c: u64, ids: &[u64], outcome: Type) {
            let n = ids.len();
            self.op(100 + c, F::Ack, &feed_key("eu", c), json!(ids), outcome, json!({"acked": n}));
        }
        fn final_read(&mut self, events: &[(u64, &str, u64, u64)], pending: u64) {
            let list: Vec<Value> = events
                .iter()
                .map(|&(id, o, rev, n)| {
                    json!({"id": id, "object": format!("{OBJECT_PREFIX}{o}"), "revision": rev,
                           "clock": {"sea": n}, "kind": "put"})
                })
                .collect();
            let value = json!({"events": list, "cursor": 0, "pending": pending});
            let invoke = json!({"since": 0, "final": true});
            self.op(900, F::Deliver, &feed_key("eu", 1), invoke, Type::Ok, value);
        }
        fn check(&self) -> Report {
            check(&pair(&self.events).unwrap())
        }
    }

    /// Two acknowledged writes of one object and one of another, delivered, acked, drained.
    fn good() -> H {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.write(2, "b", 1, Type::Ok, 11);
        h.read(1, 0, &[(1, "a", 10, 1), (2, "b", 11, 1)], 2);
        h.write(1, "a", 2, Type::Ok, 14);
        h.ack(1, &[1, 2], Type::Ok);
        h.read(1, 2, &[(3, "a", 14, 2)], 1);
        h.ack(1, &[3], Type::Ok);
        h.read(1, 3, &[], 0);
        h.final_read(&[], 0);
        h
    }

    fn kinds(r: &Report) -> Vec<&str> {
        r.anomalies.iter().map(|a| a.kind.as_str()).collect()
    }

    #[test]
    fn a_clean_feed_is_valid() {
        let r = good().check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["regions"]["eu"]["events"], 3);
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        let mut h = good();
        h.write(3, "c", 1, Type::Ok, 20);
        let r = h.check();
        assert_eq!((r.valid, kinds(&r)), (Validity::Invalid, vec!["lost"]), "{}", r.render());
        assert!(r.anomalies[0].ops[0].contains("cf-obj-c"), "{}", r.render());
    }

    #[test]
    fn a_duplicated_delivery_is_found() {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.read(1, 0, &[(1, "a", 10, 1)], 1);
        h.read(1, 0, &[(1, "a", 10, 1)], 1);
        let r = h.check();
        assert_eq!(kinds(&r), vec!["duplicate-delivery"], "{}", r.render());
        // The same change under two ids.
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.read(1, 0, &[(1, "a", 10, 1), (2, "a", 10, 1)], 2);
        let r = h.check();
        assert_eq!(kinds(&r), vec!["duplicate-event", "order"], "{}", r.render());
        // A read that goes back behind its cursor.
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.write(1, "a", 2, Type::Ok, 12);
        h.read(1, 0, &[(2, "a", 12, 2)], 1);
        h.read(1, 2, &[(1, "a", 10, 1)], 1);
        let r = h.check();
        assert!(kinds(&r).contains(&"cursor"), "{}", r.render());
    }

    #[test]
    fn a_delivered_failed_write_is_found() {
        let mut h = good();
        h.write(4, "d", 1, Type::Fail, 0);
        h.read(2, 0, &[(4, "d", 30, 1)], 1);
        let r = h.check();
        assert_eq!(kinds(&r), vec!["failed-write-delivered"], "{}", r.render());
        let mut h = good();
        h.read(2, 0, &[(4, "z", 30, 1)], 1);
        assert_eq!(kinds(&h.check()), vec!["unexpected"]);
    }

    #[test]
    fn out_of_order_revisions_are_found() {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.write(1, "a", 2, Type::Ok, 14);
        h.read(1, 0, &[(1, "a", 14, 2), (2, "a", 10, 1)], 2);
        let r = h.check();
        assert_eq!(kinds(&r), vec!["order"], "{}", r.render());
    }

    #[test]
    fn two_changes_of_one_object_in_one_log_entry_share_its_revision() {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Info, 0);
        h.write(2, "a", 2, Type::Ok, 14);
        h.read(1, 0, &[(1, "a", 14, 1), (2, "a", 14, 2)], 2);
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(r.stats["regions"]["eu"]["shared_revisions"].as_array().unwrap().len(), 1);
        // The same revision with the clocks the wrong way round is out of order.
        let mut h = H::default();
        h.write(1, "a", 1, Type::Info, 0);
        h.write(2, "a", 2, Type::Ok, 14);
        h.read(1, 0, &[(1, "a", 14, 2), (2, "a", 14, 1)], 2);
        assert_eq!(kinds(&h.check()), vec!["order"], "{}", h.check().render());
    }

    #[test]
    fn a_wrong_revision_is_found() {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.read(1, 0, &[(1, "a", 11, 1)], 1);
        assert_eq!(kinds(&h.check()), vec!["revision-mismatch"]);
    }

    #[test]
    fn indeterminate_writes_may_be_delivered_or_not() {
        let mut h = good();
        h.write(5, "e", 1, Type::Info, 0);
        h.write(6, "f", 1, Type::Info, 0);
        h.read(2, 3, &[(4, "e", 40, 1)], 1);
        h.ack(2, &[4], Type::Ok);
        h.final_read(&[], 0);
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{}", r.render());
        assert_eq!(
            (&r.stats["regions"]["eu"]["indeterminate_delivered"], &r.stats["regions"]["eu"]["indeterminate_absent"]),
            (&json!(1), &json!(1))
        );
    }

    #[test]
    fn a_second_consumer_with_an_older_cursor_may_see_unacked_events_but_not_acked_ones() {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.read(1, 0, &[(1, "a", 10, 1)], 1);
        h.read(2, 0, &[(1, "a", 10, 1)], 1);
        h.ack(1, &[1], Type::Ok);
        h.ack(2, &[1], Type::Ok);
        h.final_read(&[], 0);
        assert_eq!(h.check().valid, Validity::Valid, "{}", h.check().render());
        h.read(2, 0, &[(1, "a", 10, 1)], 1);
        assert!(kinds(&h.check()).contains(&"acked-redelivered"), "{}", h.check().render());
    }

    #[test]
    fn failed_acks_leave_events_pending_and_the_count_must_match() {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.read(1, 0, &[(1, "a", 10, 1)], 1);
        h.ack(1, &[1], Type::Info);
        h.final_read(&[(1, "a", 10, 1)], 1);
        assert_eq!(h.check().valid, Validity::Valid, "{}", h.check().render());
        // Acknowledged, yet still there.
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        h.read(1, 0, &[(1, "a", 10, 1)], 1);
        h.ack(1, &[1], Type::Ok);
        h.final_read(&[], 1);
        assert_eq!(kinds(&h.check()), vec!["pending"], "{}", h.check().render());
        // An event below the cursor that nobody received.
        let mut h = H::default();
        h.write(1, "a", 1, Type::Info, 0);
        h.write(2, "b", 1, Type::Ok, 11);
        h.read(1, 0, &[(2, "b", 11, 1)], 2);
        h.ack(1, &[2], Type::Ok);
        h.final_read(&[(1, "a", 10, 1)], 1);
        assert_eq!(kinds(&h.check()), vec!["skipped"], "{}", h.check().render());
    }

    #[test]
    fn no_read_of_a_feed_is_no_verdict() {
        let mut h = H::default();
        h.write(1, "a", 1, Type::Ok, 10);
        assert_eq!(h.check().valid, Validity::Unknown);
        let mut h = H::default();
        h.op(1, F::Add, "set", json!(1), Type::Ok, json!(1));
        assert_eq!(h.check().valid, Validity::Unknown);
    }

    #[test]
    fn consumer_keys_name_their_region() {
        assert_eq!(region_of(&feed_key("eu-west", 2)), Some("eu-west"));
        assert_eq!(region_of("cf-feed-eu"), None);
        assert_eq!(region_of("cf-obj-1"), None);
    }
}
