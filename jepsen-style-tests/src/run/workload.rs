//! The clients: each thread talks to one peer and records every operation. The register
//! workload uses nodes as registers (capacity is the value); the set workload adds unique
//! nodes and reads them back; the changefeed workload's writers write objects (its
//! consumers are in `changefeed.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::changefeed;
use super::http::{self, Response};
use super::recorder::Recorder;
use crate::check::Workload;
use crate::history::{Type, F};

pub const REGION: &str = "jepsen";
/// The history key of the set workload.
pub const SET_KEY: &str = "set";
/// Prefix of the node ids the set workload adds.
pub const SET_PREFIX: &str = "s-";
/// Register keys in use at a time; a fresh group every `KEY_EPOCH` keeps each key's
/// history short enough to check.
const KEYS_AT_ONCE: u64 = 3;
const KEY_EPOCH: Duration = Duration::from_secs(10);
/// Values written are 1..=MAX_VALUE: few values make cas succeed often.
const MAX_VALUE: i64 = 5;

/// The outcome of one request, as the history sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Response),
    /// Certainly not applied.
    Fail(String),
    /// Maybe applied.
    Info(String),
}

/// Maps an answer to an outcome, by the interface's contract: 4xx and 503 `no_leader`
/// change nothing; other 5xx, timeouts and broken connections may have.
pub fn classify(result: Result<Response, http::Error>) -> Outcome {
    match result {
        Err(http::Error::NotSent(m)) => Outcome::Fail(m),
        Err(http::Error::Unknown(m)) => Outcome::Info(m),
        Ok(r) if (200..300).contains(&r.status) => Outcome::Ok(r),
        Ok(r) if (400..500).contains(&r.status) => Outcome::Fail(r.describe()),
        Ok(r) if r.status == 503 && r.error_kind() == "no_leader" => Outcome::Fail(r.describe()),
        Ok(r) => Outcome::Info(r.describe()),
    }
}

pub struct Client {
    pub thread: u64,
    pub concurrency: u64,
    pub workload: Workload,
    pub peer: u64,
    pub addr: SocketAddr,
    pub timeout: Duration,
    pub recorder: Arc<Recorder>,
    pub stop: Arc<AtomicBool>,
    pub start: Instant,
    /// Mean pause between two operations of this client.
    pub pace: Duration,
    pub seed: u64,
    pub next_element: Arc<AtomicU64>,
    /// Read registers with `?stale` (from the local peer): not linearizable, for proving
    /// that the checker catches it.
    pub stale_reads: bool,
}

impl Client {
    pub fn run(self) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (self.thread + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut process = self.thread;
        // The changefeed writer's clock per object: one more for every attempt.
        let mut clocks = [0u64; changefeed::OBJECTS_PER_WRITER as usize];
        while !self.stop.load(Ordering::Relaxed) {
            let indeterminate = match self.workload {
                Workload::Register => self.register_op(&mut rng, process),
                // The DNS workload has threads of its own (run/dns.rs), never an HTTP client;
                // the leadership log is the lossy nemesis's, not a workload's.
                Workload::Dns | Workload::Leadership => return,
                Workload::Changefeed => self.feed_write(&mut rng, process, &mut clocks),
                Workload::Actions => self.submit_action(process),
                Workload::Set => {
                    if rng.gen_bool(0.05) {
                        self.set_read(process)
                    } else {
                        self.set_add(process)
                    }
                }
            };
            // A process whose operation is indeterminate is never reused (its operation
            // may still be in flight); the thread goes on as a new process.
            if indeterminate {
                process += self.concurrency;
            }
            let pace = self.pace.as_millis() as u64;
            if pace > 0 {
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..=2 * pace)));
            }
        }
    }

    fn finish(&self, process: u64, f: F, key: &str, value: Value, outcome: &Outcome) -> bool {
        let (kind, error) = match outcome {
            Outcome::Ok(_) => (Type::Ok, None),
            Outcome::Fail(e) => (Type::Fail, Some(e.clone())),
            Outcome::Info(e) => (Type::Info, Some(e.clone())),
        };
        self.recorder.record(process, kind, f, key, value, self.peer, error);
        kind == Type::Info
    }

    fn register_op(&self, rng: &mut ChaCha8Rng, process: u64) -> bool {
        let epoch = self.start.elapsed().as_secs() / KEY_EPOCH.as_secs();
        let key = format!("r-{}", epoch * KEYS_AT_ONCE + rng.gen_range(0..KEYS_AT_ONCE));
        let path = format!("/v1/nodes/{key}");
        match rng.gen_range(0..4) {
            0 | 1 => {
                self.recorder.invoke(process, F::Read, &key, Value::Null, self.peer);
                let read_path = if self.stale_reads { format!("{path}?stale") } else { path.clone() };
                let outcome = match http::get(self.addr, &read_path, self.timeout) {
                    // Absent: the register holds nothing yet.
                    Ok(r) if r.status == 404 && r.error_kind() == "not_found" => Outcome::Ok(r),
                    other => classify(other),
                };
                let value = match &outcome {
                    Outcome::Ok(r) => capacity(r),
                    _ => Value::Null,
                };
                self.finish(process, F::Read, &key, value, &outcome)
            }
            2 => {
                let v = rng.gen_range(1..=MAX_VALUE);
                self.recorder.invoke(process, F::Write, &key, json!(v), self.peer);
                let outcome = classify(http::put(self.addr, &path, &node_body(v), self.timeout));
                self.finish(process, F::Write, &key, json!(v), &outcome)
            }
            _ => {
                let (expected, new) = (rng.gen_range(1..=MAX_VALUE), rng.gen_range(1..=MAX_VALUE));
                let value = json!([expected, new]);
                self.recorder.invoke(process, F::Cas, &key, value.clone(), self.peer);
                let outcome = self.cas(&path, expected, new);
                self.finish(process, F::Cas, &key, value, &outcome)
            }
        }
    }

    /// A read, then a write conditional on the revision read: applies only if nothing
    /// changed the node in between, so it is one atomic compare-and-set.
    fn cas(&self, path: &str, expected: i64, new: i64) -> Outcome {
        let read = match classify(http::get(self.addr, path, self.timeout)) {
            Outcome::Ok(r) => r,
            Outcome::Fail(e) | Outcome::Info(e) => return Outcome::Fail(format!("read before cas: {e}")),
        };
        if capacity(&read) != json!(expected) {
            return Outcome::Fail(format!("the value is {}, not {expected}", capacity(&read)));
        }
        let Some(revision) = read.body.get("revision").and_then(Value::as_u64) else {
            return Outcome::Fail(format!("the read carries no revision: {}", read.body));
        };
        classify(http::put(self.addr, &format!("{path}?cas={revision}"), &node_body(new), self.timeout))
    }

    fn set_add(&self, process: u64) -> bool {
        let n = self.next_element.fetch_add(1, Ordering::Relaxed);
        self.recorder.invoke(process, F::Add, SET_KEY, json!(n), self.peer);
        let path = format!("/v1/nodes/{SET_PREFIX}{n}");
        let outcome = classify(http::put(self.addr, &path, &node_body(1), self.timeout));
        self.finish(process, F::Add, SET_KEY, json!(n), &outcome)
    }

    /// A write of one of this thread's objects from region `sea`, at a clock above every
    /// earlier attempt's, so each acknowledged write is applied and makes one event in the
    /// feed of every other region; the ok value carries the revision, which the event
    /// must carry too.
    fn feed_write(&self, rng: &mut ChaCha8Rng, process: u64, clocks: &mut [u64]) -> bool {
        let k = rng.gen_range(0..clocks.len());
        clocks[k] += 1;
        let n = clocks[k];
        let key = changefeed::object_key(self.thread, k as u64);
        let clock = json!({"clock": {changefeed::WRITE_REGION: n}});
        self.recorder.invoke(process, F::Write, &key, clock.clone(), self.peer);
        let outcome =
            classify(http::put(self.addr, &format!("/v1/objects/{key}"), &changefeed::write_body(n), self.timeout));
        let outcome = match outcome {
            Outcome::Ok(r) => {
                let (revision, result) = (r.body.get("revision").and_then(Value::as_u64), r.body.get("outcome"));
                match (revision, result.and_then(Value::as_str)) {
                    (Some(revision), Some(result)) => {
                        let value = json!({"clock": clock["clock"], "revision": revision, "outcome": result});
                        self.recorder.record(process, Type::Ok, F::Write, &key, value, self.peer, None);
                        return false;
                    }
                    _ => Outcome::Info(format!("unexpected answer to an object write: {}", r.body)),
                }
            }
            other => other,
        };
        self.finish(process, F::Write, &key, clock, &outcome)
    }

    /// A submission of an action for a target no other submission uses (so no conflict,
    /// dedup or rate limit applies); the ok value carries the id the cluster gave it.
    fn submit_action(&self, process: u64) -> bool {
        let n = self.next_element.fetch_add(1, Ordering::Relaxed);
        let target = format!("job-{process}-{n}");
        let key = crate::checker::actions::QUEUE_KEY;
        let invoke = json!({ "target": target });
        self.recorder.invoke(process, F::Submit, key, invoke.clone(), self.peer);
        let body = json!({"type": super::actions::TYPE, "target": target, "source": "deterministic", "priority": 3,
                          "confidence": 1.0, "parameters": {"n": n}});
        let outcome = match classify(http::post(self.addr, "/v1/actions", &body, self.timeout)) {
            Outcome::Ok(r) => match r.body.get("action_id").and_then(Value::as_u64) {
                Some(id) => {
                    let value = json!({"action_id": id, "status": r.body.get("status"),
                                       "duplicate": r.body.get("duplicate")});
                    self.recorder.record(process, Type::Ok, F::Submit, key, value, self.peer, None);
                    return false;
                }
                None => Outcome::Info(format!("unexpected answer to a submission: {}", r.body)),
            },
            other => other,
        };
        self.finish(process, F::Submit, key, invoke, &outcome)
    }

    pub fn set_read(&self, process: u64) -> bool {
        self.recorder.invoke(process, F::Read, SET_KEY, Value::Null, self.peer);
        let outcome = classify(http::get(self.addr, "/v1/nodes", self.timeout));
        let value = match &outcome {
            Outcome::Ok(r) => match set_elements(&r.body) {
                Some(v) => v,
                None => {
                    let bad = Outcome::Info(format!("unexpected answer to GET /v1/nodes: {}", r.body));
                    return self.finish(process, F::Read, SET_KEY, Value::Null, &bad);
                }
            },
            _ => Value::Null,
        };
        self.finish(process, F::Read, SET_KEY, value, &outcome)
    }
}

/// The body of a node write whose capacity is the register value.
pub fn node_body(capacity: i64) -> Value {
    json!({"ip": "192.0.2.1", "region": REGION, "site": "s1", "capacity": capacity})
}

fn capacity(r: &Response) -> Value {
    if r.status == 404 {
        return Value::Null;
    }
    r.body.get("capacity").cloned().unwrap_or(Value::Null)
}

/// The set's elements in a `GET /v1/nodes` answer: the numbers of the `s-N` nodes.
pub fn set_elements(body: &Value) -> Option<Value> {
    let nodes = body.get("nodes")?.as_array()?;
    let mut out: Vec<u64> =
        nodes.iter().filter_map(|n| n.get("id")?.as_str()?.strip_prefix(SET_PREFIX)?.parse().ok()).collect();
    out.sort_unstable();
    Some(json!(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: Value) -> Result<Response, http::Error> {
        Ok(Response { status, body, date: None })
    }

    #[test]
    fn outcomes_follow_the_contract() {
        assert!(matches!(classify(answer(200, json!({}))), Outcome::Ok(_)));
        assert!(matches!(classify(answer(409, json!({"error": "cas_mismatch"}))), Outcome::Fail(_)));
        assert!(matches!(classify(answer(503, json!({"error": "no_leader"}))), Outcome::Fail(_)));
        assert!(matches!(classify(answer(503, json!({"error": "indeterminate"}))), Outcome::Info(_)));
        assert!(matches!(classify(answer(500, json!({"error": "internal"}))), Outcome::Info(_)));
        assert!(matches!(classify(Err(http::Error::NotSent("refused".into()))), Outcome::Fail(_)));
        assert!(matches!(classify(Err(http::Error::Unknown("timeout".into()))), Outcome::Info(_)));
    }

    #[test]
    fn set_elements_are_the_numbered_nodes() {
        let body = json!({"nodes": [{"id": "s-10"}, {"id": "r-1"}, {"id": "s-2"}, {"id": "s-x"}]});
        assert_eq!(set_elements(&body), Some(json!([2, 10])));
        assert_eq!(set_elements(&json!({"error": "x"})), None);
    }
}
