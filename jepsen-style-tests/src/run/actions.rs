//! The action-queue workload's workers and drain. The submitters are ordinary client
//! threads (`workload::Client::submit_action`). Here, workers claim actions with a short
//! lease, each first from its own peer and moving to the next one on an error; they record
//! a `run` when they start executing what they claimed, then report: mostly `complete`,
//! sometimes `fail` (retried by the cluster), sometimes nothing at all (the worker "dies",
//! so the lease must expire), sometimes `complete` after the lease ran out (refused, the
//! action runs again). After the final heal the drain lets them go on, always completing,
//! until no action is queued or running, then reads every action.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::http;
use super::peers::{http_addr, Rotation};
use super::recorder::Recorder;
use super::signals;
use super::workload::{classify, Outcome};
use crate::checker::actions::{action_key, QUEUE_KEY};
use crate::history::{Type, F};

/// The action type submitted and claimed.
pub const TYPE: &str = "job";
/// The policy of the run: few attempts and a short backoff make retries and final failures
/// happen within the run.
pub const MAX_ATTEMPTS: u64 = 3;
const RETRY_BACKOFF_MS: u64 = 200;
const MAX_ACTIVE: u64 = 50;
/// Workers per peer.
const WORKERS_PER_PEER: usize = 2;
/// The lease a worker asks for, in seconds; a slow run takes longer than this.
const LEASE_S: u64 = 2;
const SLOW_RUN: Duration = Duration::from_millis(2_500);
/// Processes of the workers start here; one whose request is indeterminate moves on by one.
const PROCESS_BASE: u64 = 4_000_000;
const PROCESS_STRIDE: u64 = 100_000;
/// The final read's processes.
const FINAL_PROCESS: u64 = 5_000_000;

/// The timeline lane of a worker's process.
pub fn worker_lane(process: u64) -> Option<u64> {
    let k = process.checked_sub(PROCESS_BASE)? / PROCESS_STRIDE;
    (k < 10).then_some(k)
}

/// Sets the run's action policy, through any peer.
pub fn setup(ids: &[u64], within: Duration) -> Result<(), String> {
    let body = json!({"max_attempts": MAX_ATTEMPTS, "retry_backoff_ms": RETRY_BACKOFF_MS, "max_active": MAX_ACTIVE});
    let deadline = Instant::now() + within;
    let mut last = String::new();
    for at in 0.. {
        let peer = ids[at % ids.len()];
        match http::put(http_addr(peer), "/v1/policy/actions", &body, Duration::from_secs(5)) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last = r.describe(),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline || signals::interrupted() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("cannot set the action policy: {last}"))
}

#[derive(Default)]
struct Shared {
    /// Set when the drain begins: workers then always complete.
    draining: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || signals::interrupted()
    }
}

pub struct Workers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    recorder: Arc<Recorder>,
    ids: Vec<u64>,
    timeout: Duration,
    clock_faults: bool,
}

impl Workers {
    pub fn start(
        recorder: Arc<Recorder>,
        ids: &[u64],
        timeout: Duration,
        seed: u64,
        clock_faults: bool,
    ) -> Result<Workers, String> {
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for i in 0..ids.len() * WORKERS_PER_PEER {
            let worker = Worker {
                name: format!("w{}", i + 1),
                peers: Rotation::new(ids, i),
                process: PROCESS_BASE + i as u64 * PROCESS_STRIDE,
                recorder: recorder.clone(),
                shared: shared.clone(),
                timeout,
                rng: ChaCha8Rng::seed_from_u64(seed ^ (0xA11C_E000 + i as u64)),
            };
            let handle = std::thread::Builder::new()
                .name(format!("worker-{}", i + 1))
                .spawn(move || worker.run())
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            threads.push(handle);
        }
        Ok(Workers { shared, threads, recorder, ids: ids.to_vec(), timeout, clock_faults })
    }

    /// After the final heal (the submitters have stopped): lets the workers go on until no
    /// action is queued or running, or `within` passes; then reads every action. Returns a
    /// line for the run's output.
    pub fn drain(mut self, within: Duration) -> Result<String, String> {
        let started = Instant::now();
        let deadline = started + within;
        self.shared.draining.store(true, Ordering::SeqCst);
        let mut open = None;
        while Instant::now() < deadline {
            if signals::interrupted() {
                return Err("interrupted".into());
            }
            std::thread::sleep(Duration::from_millis(300));
            let peer = self.ids[(started.elapsed().as_millis() / 300) as usize % self.ids.len()];
            let count = |status: &str| -> Option<usize> {
                let r = all_pages(http_addr(peer), &format!("/v1/actions?status={status}"), self.timeout).ok()?;
                (r.status == 200).then(|| r.body.get("actions").and_then(Value::as_array).map(Vec::len))?
            };
            if let (Some(q), Some(r)) = (count("queued"), count("running")) {
                open = Some(q + r);
                if q + r == 0 {
                    break;
                }
            }
        }
        let drained = started.elapsed();
        self.shared.stop.store(true, Ordering::SeqCst);
        if self.join() > 0 {
            return Err("a worker thread panicked".into());
        }
        let mut process = FINAL_PROCESS;
        let mut at = 0;
        let read_deadline = Instant::now() + within;
        let final_status = loop {
            let peer = self.ids[at % self.ids.len()];
            self.recorder.invoke(process, F::Read, QUEUE_KEY, json!({"final": true}), peer);
            let outcome = classify(all_pages(http_addr(peer), "/v1/actions", self.timeout));
            let outcome = match outcome {
                Outcome::Ok(r) => match r.body.get("actions").and_then(Value::as_array) {
                    Some(list) => {
                        let actions: Vec<Value> = list
                            .iter()
                            .map(|a| {
                                json!({"action_id": a["action_id"], "target": a["target"], "status": a["status"],
                                       "attempts": a["attempts"], "message": a["message"]})
                            })
                            .collect();
                        let n = actions.len();
                        let value = json!({"max_attempts": MAX_ATTEMPTS, "clock_faults": self.clock_faults, "actions": actions});
                        self.recorder.record(process, Type::Ok, F::Read, QUEUE_KEY, value, peer, None);
                        break n;
                    }
                    None => Outcome::Info(format!("unexpected answer to GET /v1/actions: {}", r.body)),
                },
                other => other,
            };
            let (kind, e) = match outcome {
                Outcome::Fail(e) => (Type::Fail, e),
                Outcome::Info(e) => (Type::Info, e),
                Outcome::Ok(r) => (Type::Info, r.describe()),
            };
            self.recorder.record(process, kind, F::Read, QUEUE_KEY, Value::Null, peer, Some(e));
            process += 1;
            at += 1;
            if Instant::now() > read_deadline || signals::interrupted() {
                return Err("no peer answered the final read of the actions".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let left = match open {
            Some(0) => "none left open".to_string(),
            Some(n) => format!("{n} still queued or running at the deadline"),
            None => "no peer answered the count".to_string(),
        };
        Ok(format!("drained in {:.1}s ({left}); final read: {final_status} actions", drained.as_secs_f64()))
    }

    fn join(&mut self) -> usize {
        std::mem::take(&mut self.threads).into_iter().map(|t| t.join()).filter(|r| r.is_err()).count()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.join();
    }
}

/// What a worker does with an action it claimed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    Complete,
    /// Reports a failure: the cluster retries it or gives up.
    Fail,
    /// Stops without reporting: the lease must expire.
    Die,
    /// Runs longer than the lease, then completes: usually refused.
    Slow,
}

struct Worker {
    name: String,
    peers: Rotation,
    process: u64,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    timeout: Duration,
    rng: ChaCha8Rng,
}

impl Worker {
    fn run(mut self) {
        while !self.shared.stopping() {
            let Some((id, attempt)) = self.claim() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let run = json!({"action_id": id, "worker": self.name, "attempt": attempt});
            let (peer, _) = self.peers.current();
            self.recorder.invoke(self.process, F::Run, &action_key(id), run.clone(), peer);
            self.recorder.record(self.process, Type::Ok, F::Run, &action_key(id), run, peer, None);
            let plan = if self.shared.draining.load(Ordering::SeqCst) {
                Plan::Complete
            } else {
                match self.rng.gen_range(0..100) {
                    0..=7 => Plan::Die,
                    8..=19 => Plan::Fail,
                    20..=25 => Plan::Slow,
                    _ => Plan::Complete,
                }
            };
            match plan {
                Plan::Die => {
                    // Comes back after a while, under the same name.
                    std::thread::sleep(Duration::from_millis(self.rng.gen_range(100..500)));
                }
                Plan::Slow => {
                    std::thread::sleep(SLOW_RUN);
                    self.report(F::Complete, id, attempt);
                }
                Plan::Fail => {
                    std::thread::sleep(Duration::from_millis(self.rng.gen_range(0..50)));
                    self.report(F::Fail, id, attempt);
                }
                Plan::Complete => {
                    std::thread::sleep(Duration::from_millis(self.rng.gen_range(0..100)));
                    self.report(F::Complete, id, attempt);
                }
            }
        }
    }

    /// Claims an action; its id and attempt when the cluster handed one over.
    fn claim(&mut self) -> Option<(u64, u64)> {
        let (peer, addr) = self.peers.current();
        let invoke = json!({"worker": self.name, "lease_s": LEASE_S});
        self.recorder.invoke(self.process, F::Claim, QUEUE_KEY, invoke, peer);
        let body = json!({"types": [TYPE], "worker": self.name, "lease_s": LEASE_S});
        let outcome = classify(http::post(addr, "/v1/actions/claim", &body, self.timeout));
        let (kind, value, error, claimed) = match outcome {
            Outcome::Ok(r) => match r.body.get("action") {
                Some(Value::Null) => (Type::Ok, Value::Null, None, None),
                Some(a) => {
                    match (a.get("action_id").and_then(Value::as_u64), a.get("attempts").and_then(Value::as_u64)) {
                        (Some(id), Some(attempts)) => {
                            let v = json!({"action_id": id, "worker": a["worker"], "attempts": attempts,
                                       "status": a["status"], "started_ms": a["started_ms"],
                                       "lease_until_ms": a["lease_until_ms"]});
                            (Type::Ok, v, None, Some((id, attempts)))
                        }
                        _ => (Type::Info, Value::Null, Some(format!("unexpected answer to a claim: {}", r.body)), None),
                    }
                }
                None => (Type::Info, Value::Null, Some(format!("unexpected answer to a claim: {}", r.body)), None),
            },
            Outcome::Fail(e) => (Type::Fail, Value::Null, Some(e), None),
            Outcome::Info(e) => (Type::Info, Value::Null, Some(e), None),
        };
        self.recorder.record(self.process, kind, F::Claim, QUEUE_KEY, value, peer, error);
        match kind {
            Type::Info => {
                self.process += 1;
                self.peers.advance();
            }
            Type::Fail => self.peers.advance(),
            _ => {}
        }
        claimed
    }

    /// Reports the end of a run; one retry on another peer when the report certainly did
    /// not arrive (so a partition alone does not make every run expire).
    fn report(&mut self, f: F, id: u64, attempt: u64) {
        for _ in 0..2 {
            let (peer, addr) = self.peers.current();
            let invoke = json!({"worker": self.name, "attempt": attempt});
            self.recorder.invoke(self.process, f, &action_key(id), invoke.clone(), peer);
            let (path, body) = if f == F::Complete {
                (format!("/v1/actions/{id}/complete"), json!({"worker": self.name, "result": "done"}))
            } else {
                (format!("/v1/actions/{id}/fail"), json!({"worker": self.name, "error": "jepsen worker failure"}))
            };
            let outcome = classify(http::post(addr, &path, &body, self.timeout));
            let (kind, value, error) = match outcome {
                Outcome::Ok(r) => {
                    (Type::Ok, json!({"status": r.body.get("action").and_then(|a| a.get("status"))}), None)
                }
                Outcome::Fail(e) => (Type::Fail, invoke, Some(e)),
                Outcome::Info(e) => (Type::Info, invoke, Some(e)),
            };
            let refused = error.as_deref().is_some_and(|e| e.contains("409"));
            self.recorder.record(self.process, kind, f, &action_key(id), value, peer, error);
            match kind {
                Type::Ok => return,
                Type::Info => {
                    self.process += 1;
                    self.peers.advance();
                    return;
                }
                _ if refused => return,
                _ => self.peers.advance(),
            }
        }
    }
}

/// Every page of a list of actions (`?limit`, `?after`, `next`), as one answer whose
/// `actions` hold them all; the first answer that is not a page is returned as it is.
/// After the drain nothing changes the queue, so the pages read one state.
fn all_pages(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> Result<http::Response, http::Error> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut all: Vec<Value> = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let mut r = http::get(addr, &format!("{path}{sep}limit=10000{cursor}"), timeout)?;
        let Some(page) = r.body.get("actions").and_then(Value::as_array) else { return Ok(r) };
        if r.status != 200 {
            return Ok(r);
        }
        all.extend(page.iter().cloned());
        match r.body.get("next").and_then(Value::as_u64) {
            Some(next) => after = Some(next),
            None => {
                r.body = json!({"actions": all});
                return Ok(r);
            }
        }
    }
}
