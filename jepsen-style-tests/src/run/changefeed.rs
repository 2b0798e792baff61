//! The change-feed workload's consumers and drain. The writers are ordinary client threads
//! (`workload::Client::feed_write`): each owns a few objects and writes them from region
//! `sea` with a strictly increasing clock. Here, consumers follow the feeds of the other
//! regions like a region's sync agent: a long poll from one peer with a cursor, moving to
//! the next peer on an error or a timeout, acknowledging what they received (and retrying
//! acknowledgements that failed). After the final heal the drain lets them go on until
//! every acknowledged write was delivered to each followed region, then reads what each
//! feed still holds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http;
use super::peers::{http_addr, Rotation};
use super::recorder::Recorder;
use super::signals;
use super::workload::{classify, Outcome};
use crate::checker::changefeed::{feed_key, PAGE};
use crate::history::{Event, Type, F};

/// The region every object is written from.
pub const WRITE_REGION: &str = "sea";
/// The consumers: two share region `eu` (what one acknowledges the other no longer
/// receives), one follows `ap` alone (so it must receive every change).
pub const CONSUMERS: [(&str, u64); 3] = [("eu", 1), ("eu", 2), ("ap", 1)];
/// Every region the workload needs.
pub const REGIONS: [&str; 3] = [WRITE_REGION, "eu", "ap"];
/// Objects each writer thread owns.
pub const OBJECTS_PER_WRITER: u64 = 4;
/// The long poll's wait, in seconds, and the page size of a consumer's read.
const WAIT_S: u64 = 2;
const LIMIT: usize = 100;
/// Processes of the consumers start here (writers count up from 0, the set's final read
/// from 1 000 000); a consumer whose request is indeterminate moves on by one.
const PROCESS_BASE: u64 = 2_000_000;
const PROCESS_STRIDE: u64 = 100_000;
/// The final reads' processes.
const FINAL_PROCESS: u64 = 3_000_000;

/// The timeline lane of a consumer's process: its index in [`CONSUMERS`].
pub fn consumer_lane(process: u64) -> Option<u64> {
    let k = process.checked_sub(PROCESS_BASE)? / PROCESS_STRIDE;
    (k < CONSUMERS.len() as u64).then_some(k)
}

/// The history key of object `k` of writer thread `t`.
pub fn object_key(thread: u64, k: u64) -> String {
    format!("{}{thread}-{k}", crate::checker::changefeed::OBJECT_PREFIX)
}

/// The body of a write of an object at clock `{"sea": n}`.
pub fn write_body(n: u64) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64);
    json!({"region": WRITE_REGION, "clock": {WRITE_REGION: n}, "size": 1, "hash": format!("h{n}"),
           "timestamp_ms": now.unwrap_or(0)})
}

/// One write's identity: the object and its clock (as JSON text).
type WriteId = (String, String);

/// What the consumers share with the runner.
#[derive(Default)]
struct Shared {
    /// Per region, the writes delivered so far.
    delivered: Mutex<HashMap<String, HashSet<WriteId>>>,
    /// Set when the drain begins: the acknowledged writes every region must receive, and
    /// the deadline.
    drain: Mutex<Option<(HashSet<WriteId>, Instant)>>,
    stop: AtomicBool,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || signals::interrupted()
    }

    /// `None` while not draining; else whether the region has everything and the deadline.
    fn drained(&self, region: &str) -> Option<(bool, Instant)> {
        let drain = self.drain.lock().ok()?;
        let (target, deadline) = drain.as_ref()?;
        let delivered = self.delivered.lock().ok()?;
        let have = delivered.get(region);
        Some((target.iter().all(|w| have.is_some_and(|h| h.contains(w))), *deadline))
    }
}

pub struct Feeds {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    recorder: Arc<Recorder>,
    ids: Vec<u64>,
    timeout: Duration,
}

impl Feeds {
    /// Starts one consumer thread per entry of [`CONSUMERS`], each first talking to a
    /// different peer.
    pub fn start(recorder: Arc<Recorder>, ids: &[u64], timeout: Duration) -> Result<Feeds, String> {
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for (i, &(region, n)) in CONSUMERS.iter().enumerate() {
            let consumer = Consumer {
                region,
                key: feed_key(region, n),
                peers: Rotation::new(ids, i + 1),
                process: PROCESS_BASE + i as u64 * PROCESS_STRIDE,
                recorder: recorder.clone(),
                shared: shared.clone(),
                timeout,
            };
            let handle = std::thread::Builder::new()
                .name(format!("feed-{region}-{n}"))
                .spawn(move || consumer.run())
                .map_err(|e| format!("cannot start a consumer thread: {e}"))?;
            threads.push(handle);
        }
        Ok(Feeds { shared, threads, recorder, ids: ids.to_vec(), timeout })
    }

    /// After the final heal (the writers have stopped): lets the consumers go on until each
    /// region received every acknowledged write, or `within` passes; then reads, from each
    /// region, every event it still holds (`{"since": 0, "final": true}`). Returns a line
    /// for the run's output.
    pub fn drain(mut self, within: Duration) -> Result<String, String> {
        let started = Instant::now();
        let deadline = started + within;
        let (events, _) = self.recorder.events();
        let target = acknowledged_writes(&events);
        let wanted = target.len();
        if let Ok(mut d) = self.shared.drain.lock() {
            *d = Some((target, deadline));
        }
        let panicked = self.join();
        if signals::interrupted() {
            return Err("interrupted".into());
        }
        if panicked > 0 {
            return Err("a consumer thread panicked".into());
        }
        let drained = started.elapsed();
        let regions: Vec<&str> = REGIONS.iter().copied().filter(|r| *r != WRITE_REGION).collect();
        let mut process = FINAL_PROCESS;
        let mut finals = Vec::new();
        for region in regions {
            let key = feed_key(region, 0);
            let path = format!("/v1/regions/{region}/changes?since=0&wait=0&limit={PAGE}");
            let mut at = 0;
            loop {
                let peer = self.ids[at % self.ids.len()];
                let invoke = json!({"since": 0, "final": true});
                self.recorder.invoke(process, F::Deliver, &key, invoke, peer);
                let outcome = classify(http::get(http_addr(peer), &path, self.timeout));
                match record_read(&self.recorder, process, &key, peer, outcome) {
                    Read::Ok { events, .. } => {
                        finals.push(format!("{region} {} pending", events.len()));
                        break;
                    }
                    Read::Indeterminate => process += 1,
                    Read::Failed | Read::Resync => {}
                }
                at += 1;
                if Instant::now() > deadline + within || signals::interrupted() {
                    return Err(format!("no peer answered the final read of region {region}'s feed"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            process += 1;
        }
        Ok(format!(
            "{wanted} acknowledged writes drained in {:.1}s; final reads: {}",
            drained.as_secs_f64(),
            finals.join(", ")
        ))
    }

    fn join(&mut self) -> usize {
        std::mem::take(&mut self.threads).into_iter().map(|t| t.join()).filter(|r| r.is_err()).count()
    }
}

impl Drop for Feeds {
    /// On every way out (an error, Ctrl-C), the consumers stop.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.join();
    }
}

/// The writes acknowledged as applied (or conflict): the ones every region must receive.
fn acknowledged_writes(events: &[Event]) -> HashSet<WriteId> {
    let ops = crate::history::pair(events).unwrap_or_default();
    ops.iter()
        .filter(|o| {
            o.f == F::Write && o.outcome == Type::Ok && o.key.starts_with(crate::checker::changefeed::OBJECT_PREFIX)
        })
        .filter(|o| o.value.get("outcome").and_then(Value::as_str) != Some("stale"))
        .filter_map(|o| Some((o.key.clone(), o.invoke_value.get("clock")?.to_string())))
        .collect()
}

enum Read {
    Ok { events: Vec<Value>, cursor: u64 },
    Failed,
    Indeterminate,
    Resync,
}

/// Records the completion of a feed read; the events are kept with their id, object,
/// revision, clock and kind.
fn record_read(recorder: &Recorder, process: u64, key: &str, peer: u64, outcome: Outcome) -> Read {
    match outcome {
        Outcome::Ok(r) => {
            let Some(list) = r.body.get("events").and_then(Value::as_array) else {
                let why = format!("unexpected answer to a feed read: {}", r.body);
                recorder.record(process, Type::Info, F::Deliver, key, Value::Null, peer, Some(why));
                return Read::Indeterminate;
            };
            let events: Vec<Value> = list
                .iter()
                .map(|e| {
                    json!({"id": e["id"], "object": e["object"], "revision": e["revision"], "clock": e["clock"],
                           "kind": e["kind"]})
                })
                .collect();
            let cursor = r.body.get("cursor").and_then(Value::as_u64).unwrap_or(0);
            let value = json!({"events": events, "cursor": cursor, "pending": r.body.get("pending")});
            recorder.record(process, Type::Ok, F::Deliver, key, value, peer, None);
            Read::Ok { events, cursor }
        }
        Outcome::Fail(e) => {
            let resync = e.contains("410") && e.contains("resync");
            recorder.record(process, Type::Fail, F::Deliver, key, Value::Null, peer, Some(e));
            if resync {
                Read::Resync
            } else {
                Read::Failed
            }
        }
        Outcome::Info(e) => {
            recorder.record(process, Type::Info, F::Deliver, key, Value::Null, peer, Some(e));
            Read::Indeterminate
        }
    }
}

struct Consumer {
    region: &'static str,
    key: String,
    peers: Rotation,
    process: u64,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl Consumer {
    fn run(mut self) {
        let mut cursor = 0;
        let mut unacked: Vec<u64> = Vec::new();
        loop {
            if self.shared.stopping() {
                return;
            }
            let drain = self.shared.drained(self.region);
            if drain.is_some_and(|(_, deadline)| Instant::now() > deadline) {
                return;
            }
            if !unacked.is_empty() {
                let batch: Vec<u64> = unacked.iter().take(PAGE).copied().collect();
                if self.ack(&batch) {
                    unacked.drain(..batch.len());
                } else {
                    self.peers.advance();
                }
            }
            let (peer, addr) = self.peers.current();
            self.recorder.invoke(self.process, F::Deliver, &self.key, json!({"since": cursor}), peer);
            let path = format!("/v1/regions/{}/changes?since={cursor}&wait={WAIT_S}&limit={LIMIT}", self.region);
            let outcome = classify(http::get(addr, &path, self.timeout + Duration::from_secs(WAIT_S)));
            match record_read(&self.recorder, self.process, &self.key, peer, outcome) {
                Read::Ok { events, cursor: next } => {
                    let ids: Vec<u64> = events.iter().filter_map(|e| e["id"].as_u64()).collect();
                    cursor = cursor.max(next).max(ids.iter().copied().max().unwrap_or(0));
                    unacked.extend(&ids);
                    if let Ok(mut d) = self.shared.delivered.lock() {
                        let set = d.entry(self.region.to_string()).or_default();
                        set.extend(
                            events
                                .iter()
                                .map(|e| (e["object"].as_str().unwrap_or("").to_string(), e["clock"].to_string())),
                        );
                    }
                    let done = self.shared.drained(self.region).is_some_and(|(all, _)| all);
                    if events.is_empty() && unacked.is_empty() && done {
                        return;
                    }
                }
                // The feed dropped events: the checker reports it; following it on would
                // only repeat the answer.
                Read::Resync => return,
                Read::Failed => {
                    self.peers.advance();
                    std::thread::sleep(Duration::from_millis(100));
                }
                Read::Indeterminate => {
                    self.process += 1;
                    self.peers.advance();
                }
            }
        }
    }

    /// Acknowledges a batch; true when the acknowledgement is certain.
    fn ack(&mut self, ids: &[u64]) -> bool {
        let (peer, addr) = self.peers.current();
        self.recorder.invoke(self.process, F::Ack, &self.key, json!(ids), peer);
        let path = format!("/v1/regions/{}/acks", self.region);
        let outcome = classify(http::post(addr, &path, &json!({ "events": ids }), self.timeout));
        let (kind, value, error) = match outcome {
            Outcome::Ok(r) => (Type::Ok, json!({"acked": r.body.get("acked")}), None),
            Outcome::Fail(e) => (Type::Fail, json!(ids), Some(e)),
            Outcome::Info(e) => (Type::Info, json!(ids), Some(e)),
        };
        self.recorder.record(self.process, kind, F::Ack, &self.key, value, peer, error);
        if kind == Type::Info {
            self.process += 1;
        }
        kind == Type::Ok
    }
}
