//! The DNS workload: a zone, a region covering the clients (10.77.0.0/24), three sites with
//! one node each serving one domain, `down_after_ms` of 1000. From the root namespace a
//! heartbeater beats for the nodes every 250 ms and kills and revives them on a seeded
//! schedule; one client per peer queries it over UDP ten times a second; one watcher per
//! peer records its leader and term. Everything goes to `dns.jsonl`, which
//! `checker::dns` judges (see docs/jepsen.md).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::http;
use super::peers::{http_addr, DNS_PORT};
use super::topology::peer_ip;
use crate::checker::dns::DnsEvent;

pub const ZONE: &str = "jepsen.test";
pub const DOMAIN: &str = "www.jepsen.test";
pub const REGION: &str = "dns";
/// The clients' network: the suite's clients come from 10.77.0.1.
pub const CLIENTS: &str = "10.77.0.0/24";
pub const DOWN_AFTER_MS: u64 = 1000;
/// (node, address, site, latency_ms): dn-1 has the lowest latency, so it is elected while up.
pub const NODES: [(&str, &str, &str, f64); 3] =
    [("dn-1", "192.0.2.11", "d1", 10.0), ("dn-2", "192.0.2.12", "d2", 20.0), ("dn-3", "192.0.2.13", "d3", 30.0)];
const BEAT_EVERY: Duration = Duration::from_millis(250);
const BEAT_TIMEOUT: Duration = Duration::from_millis(500);
const QUERY_EVERY: Duration = Duration::from_millis(100);
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// Deaths: the first after this (the nodes are up and elected by then), each 4-6 s, with
/// 2-4 s between them, the last revived this long before the final heal.
const FIRST_DEATH: Duration = Duration::from_secs(5);
const QUIET_BEFORE_HEAL: Duration = Duration::from_secs(3);

/// One node death: heartbeats stop `at`, resume after `length`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Death {
    pub node: String,
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    #[serde(serialize_with = "secs")]
    pub length: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The death schedule of a run of `time`, from the seed: dn-1 (the elected node) dies
/// 60 % of the time, so most deaths are failovers; the others die while not elected.
pub fn deaths(seed: u64, time: Duration) -> Vec<Death> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD15_DEAD);
    let mut out = Vec::new();
    let mut t = FIRST_DEATH + Duration::from_millis(rng.gen_range(0..=2_000));
    loop {
        let length = Duration::from_millis(rng.gen_range(4_000..=6_000));
        if t + length + QUIET_BEFORE_HEAL > time {
            return out;
        }
        let node = if rng.gen_bool(0.6) { NODES[0].0 } else { NODES[rng.gen_range(1..NODES.len())].0 };
        out.push(Death { node: node.to_string(), at: t, length });
        t += length + Duration::from_millis(rng.gen_range(2_000..=4_000));
    }
}

/// Creates the region, zone, sites, nodes, domain and policy through any peer.
pub fn setup(ids: &[u64], interrupted: impl Fn() -> bool) -> Result<(), String> {
    let mut requests = vec![
        ("/v1/policy/scoring".to_string(), json!({"down_after_ms": DOWN_AFTER_MS})),
        (format!("/v1/regions/{REGION}"), json!({"cidrs": [CLIENTS], "fallback": []})),
        (format!("/v1/zones/{ZONE}"), json!({})),
    ];
    for (node, ip, site, _) in NODES {
        requests.push((format!("/v1/sites/{site}"), json!({"region": REGION})));
        requests.push((format!("/v1/nodes/{node}"), json!({"ip": ip, "region": REGION, "site": site, "capacity": 10})));
    }
    let sites: Vec<&str> = NODES.iter().map(|n| n.2).collect();
    requests.push((format!("/v1/domains/{DOMAIN}"), json!({"sites": sites, "ttl": 5})));
    let deadline = Instant::now() + Duration::from_secs(30);
    for (path, body) in requests {
        let mut turn = 0;
        loop {
            let id = ids[turn % ids.len()];
            turn += 1;
            match http::put(http_addr(id), &path, &body, Duration::from_secs(5)) {
                Ok(r) if r.status == 200 => break,
                Ok(r) if (400..500).contains(&r.status) => return Err(format!("PUT {path}: {}", r.describe())),
                Ok(r) if Instant::now() > deadline => return Err(format!("PUT {path}: {}", r.describe())),
                Err(e) if Instant::now() > deadline => return Err(format!("PUT {path}: {e}")),
                _ if interrupted() => return Err("interrupted".into()),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    Ok(())
}

/// `dns.jsonl`, written as events come (flushed, so a crash loses nothing).
pub struct Log {
    start: Instant,
    out: Mutex<(BufWriter<File>, Option<String>)>,
    events: Mutex<Vec<DnsEvent>>,
}

impl Log {
    pub fn create(path: &Path, start: Instant) -> Result<Log, String> {
        let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Log { start, out: Mutex::new((BufWriter::new(file), None)), events: Mutex::new(Vec::new()) })
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn write(&self, event: DnsEvent) {
        if let Ok(mut out) = self.out.lock() {
            let line = serde_json::to_string(&event).unwrap_or_default();
            let written = writeln!(out.0, "{line}").and_then(|_| out.0.flush());
            if let Err(e) = written {
                out.1.get_or_insert(format!("cannot write dns.jsonl: {e}"));
            }
        }
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// Every event, and the first write error (a harness failure).
    pub fn events(&self) -> (Vec<DnsEvent>, Option<String>) {
        let error = self.out.lock().map(|o| o.1.clone()).unwrap_or(Some("dns.jsonl lock poisoned".into()));
        (self.events.lock().map(|e| e.clone()).unwrap_or_default(), error)
    }
}

/// The running workload: its threads and what the fault loop tells them.
pub struct Workload {
    pub log: Arc<Log>,
    /// Peers the heartbeater avoids: cut off from the majority, killed or paused. A beat
    /// such a peer accepts may reach the leader seconds later (a follower's forward waits
    /// up to 1 s per batch; a paused peer handles it when resumed) and would count as
    /// fresh there, later than its acknowledgement.
    excluded: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workload {
    pub fn start(log: Arc<Log>, ids: &[u64], deaths: Vec<Death>) -> Result<Workload, String> {
        let nodes: BTreeMap<String, String> = NODES.iter().map(|n| (n.0.to_string(), n.1.to_string())).collect();
        log.write(DnsEvent::Setup { domain: DOMAIN.into(), peers: ids.to_vec(), nodes, down_after_ms: DOWN_AFTER_MS });
        let excluded = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f).map_err(|e| format!("cannot start a thread: {e}"))
        };
        let beater = Beater { log: log.clone(), ids: ids.to_vec(), excluded: excluded.clone(), stop: stop.clone() };
        threads.push(spawn("dns-heartbeats".into(), Box::new(move || beater.run(deaths)))?);
        for &id in ids {
            let (l, s) = (log.clone(), stop.clone());
            threads.push(spawn(format!("dns-client-{id}"), Box::new(move || query_loop(&l, id, &s)))?);
            let (l, s) = (log.clone(), stop.clone());
            threads.push(spawn(format!("dns-watch-{id}"), Box::new(move || watch_leader(&l, id, &s)))?);
        }
        Ok(Workload { log, excluded, stop, threads })
    }

    /// The peers the heartbeater must avoid from now on (empty when the fault is healed).
    pub fn set_excluded(&self, peers: &[u64]) {
        if let Ok(mut ex) = self.excluded.lock() {
            *ex = peers.iter().copied().collect();
        }
    }

    /// Stops every thread; `false` if one panicked.
    pub fn stop(mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let ok = std::mem::take(&mut self.threads).into_iter().map(|t| t.join()).all(|r| r.is_ok());
        self.log.write(DnsEvent::End { time: self.log.now() });
        ok
    }
}

impl Drop for Workload {
    /// On an error path the threads are told to stop and left to finish on their own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Beater {
    log: Arc<Log>,
    ids: Vec<u64>,
    excluded: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<AtomicBool>,
}

impl Beater {
    /// Beats for every live node each round; applies the death schedule between rounds,
    /// so no beat of a node is in flight when it dies and its last acknowledgement is known.
    fn run(self, deaths: Vec<Death>) {
        let start = self.log.start;
        let mut dead: Option<(String, Instant)> = None;
        let mut pending = deaths.into_iter().peekable();
        let mut last_ack: BTreeMap<String, u64> = BTreeMap::new();
        let mut turn = 0usize;
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if let Some((node, until)) = &dead {
                if Instant::now() >= *until {
                    self.log.write(DnsEvent::Revive { node: node.clone(), time: self.log.now() });
                    dead = None;
                }
            }
            if dead.is_none() && pending.peek().is_some_and(|d| start.elapsed() >= d.at) {
                if let Some(d) = pending.next() {
                    let time = self.log.now();
                    let last = last_ack.get(&d.node).copied();
                    self.log.write(DnsEvent::Death { node: d.node.clone(), time, last_ack: last });
                    dead = Some((d.node, Instant::now() + d.length));
                }
            }
            for (node, _, _, latency) in NODES {
                if dead.as_ref().is_some_and(|(n, _)| n == node) {
                    continue;
                }
                if let Some(t) = self.beat(node, latency, &mut turn) {
                    last_ack.insert(node.to_string(), t);
                }
            }
            next += BEAT_EVERY;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }

    /// One heartbeat, to the next peer in turn that accepts it; the time of the
    /// acknowledgement, if any.
    fn beat(&self, node: &str, latency: f64, turn: &mut usize) -> Option<u64> {
        let body = json!({"cpu": 0.2, "load": 0.3, "latency_ms": latency, "error_rate": 0.0});
        let excluded = self.excluded.lock().map(|e| e.clone()).unwrap_or_default();
        let mut targets: Vec<u64> = self.ids.iter().copied().filter(|id| !excluded.contains(id)).collect();
        if targets.is_empty() {
            targets = self.ids.clone();
        }
        for _ in 0..targets.len() {
            *turn += 1;
            let peer = targets[*turn % targets.len()];
            let sent = self.log.now();
            let result = http::post(http_addr(peer), &format!("/v1/nodes/{node}/heartbeat"), &body, BEAT_TIMEOUT);
            let time = self.log.now();
            // Any HTTP answer is certain: a peer refuses a beat before queueing it.
            let outcome = match &result {
                Ok(r) if r.status == 202 => "ok",
                Ok(_) | Err(http::Error::NotSent(_)) => "fail",
                Err(http::Error::Unknown(_)) => "unknown",
            };
            self.log.write(DnsEvent::Beat { node: node.into(), peer, sent, time, outcome: outcome.into() });
            if outcome == "ok" {
                return Some(time);
            }
        }
        None
    }
}

/// Queries `peer` every 100 ms until stopped.
fn query_loop(log: &Log, peer: u64, stop: &AtomicBool) {
    let server = SocketAddr::from((peer_ip(peer), DNS_PORT));
    let socket = UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(server).map(|_| s));
    let mut rng = ChaCha8Rng::seed_from_u64(peer);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let sent = log.now();
        let (rcode, answer, error) = match &socket {
            Ok(s) => query(s, rng.gen()),
            Err(e) => (None, vec![], Some(format!("socket: {e}"))),
        };
        log.write(DnsEvent::Query { peer, sent, time: log.now(), rcode, answer, error });
        next += QUERY_EVERY;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// One A query for the domain: (rcode, addresses, error).
fn query(socket: &UdpSocket, id: u16) -> (Option<String>, Vec<String>, Option<String>) {
    let mut q = Message::query();
    q.metadata.id = id;
    let name = match Name::from_ascii(format!("{DOMAIN}.")) {
        Ok(n) => n,
        Err(e) => return (None, vec![], Some(format!("bad name: {e}"))),
    };
    q.add_query(Query::query(name, RecordType::A));
    let bytes = match q.to_vec() {
        Ok(b) => b,
        Err(e) => return (None, vec![], Some(format!("cannot encode: {e}"))),
    };
    if let Err(e) = socket.send(&bytes) {
        return (None, vec![], Some(format!("send: {e}")));
    }
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (None, vec![], Some("timeout".into()));
        }
        let _ = socket.set_read_timeout(Some(left));
        let len = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (None, vec![], Some("timeout".into()))
            }
            // A refused port (peer killed) shows as an ICMP error on a connected socket.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return (None, vec![], Some("refused".into()))
            }
            Err(e) => return (None, vec![], Some(format!("recv: {e}"))),
        };
        let Ok(reply) = Message::from_vec(&buf[..len]) else { continue };
        if reply.metadata.id != id {
            continue; // a late answer to an earlier query
        }
        let rcode = match reply.metadata.response_code {
            ResponseCode::NoError => "NOERROR".to_string(),
            other => format!("{other:?}").to_uppercase(),
        };
        let answer = reply
            .answers
            .iter()
            .filter_map(|r| if let RData::A(a) = &r.data { Some(a.0.to_string()) } else { None })
            .collect();
        return (Some(rcode), answer, None);
    }
}

/// Records `peer`'s leader and term whenever either changes.
fn watch_leader(log: &Log, peer: u64, stop: &AtomicBool) {
    let mut last: Option<(Option<u64>, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = http::get(http_addr(peer), "/v1/cluster", Duration::from_millis(300)) {
            if r.status == 200 {
                let leader = r.body.get("leader").and_then(Value::as_u64);
                let term = r.body.get("term").and_then(Value::as_u64).unwrap_or(0);
                if last != Some((leader, term)) {
                    log.write(DnsEvent::Leader { peer, time: log.now(), leader, term });
                    last = Some((leader, term));
                }
            }
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deaths_are_seeded_and_end_before_the_final_heal() {
        let time = Duration::from_secs(40);
        let a = deaths(4, time);
        assert_eq!(a, deaths(4, time));
        assert!(a.len() >= 3, "{a:?}");
        for w in a.windows(2) {
            assert!(w[0].at + w[0].length < w[1].at, "one death at a time: {a:?}");
        }
        let last = a.last().unwrap();
        assert!(last.at + last.length + QUIET_BEFORE_HEAL <= time);
        assert!(a[0].at >= FIRST_DEATH);
    }
}
