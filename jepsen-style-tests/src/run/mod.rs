//! `jepsen run`: real peers in network namespaces, clients recording a history, faults from
//! a seeded schedule, then the checks. See docs/jepsen.md.

pub mod actions;
pub mod changefeed;
pub mod checks;
pub mod clock;
pub mod dns;
pub mod faults;
pub mod filler;
pub mod http;
pub mod logwatch;
pub mod lossy;
pub mod membership;
pub mod nemesis;
pub mod peers;
pub mod recorder;
pub mod results;
pub mod sh;
pub mod signals;
pub mod snapshot;
pub mod timeline;
pub mod topology;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::check::Workload;
use nemesis::Nemesis;
use peers::{http_addr, http_url, PeerConfig, Peers};
use recorder::Recorder;
use topology::Topology;

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Seconds of workload under faults (set-up, recovery and checks come on top).
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// Faults to inject, comma-separated: partition, kill, pause, netem (delay, loss),
    /// membership, snapshot-crash, clock, kill-majority, lossy, all, none.
    #[arg(long, default_value = "partition,kill,pause")]
    pub nemesis: String,
    /// Workloads, comma-separated: register, set, changefeed, actions, dns.
    #[arg(long, default_value = "register,set")]
    pub workload: String,
    /// Seed of the fault schedule and of the operations; random when not given.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of peers: 3 or 5.
    #[arg(long, default_value_t = 3)]
    pub peers: u64,
    /// The switchboard binary to test; default: target/debug/switchboard of this workspace.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where run folders go; default: jepsen-style-tests/jepsen-runs.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Client threads.
    #[arg(long, default_value_t = 6)]
    pub concurrency: u64,
    /// Target operations per second over all clients.
    #[arg(long, default_value_t = 40)]
    pub rate: u64,
    /// The peers' request timeout (SWITCHBOARD_HTTP_REQUEST_TIMEOUT_MS); clients wait 2 s more.
    #[arg(long, default_value_t = 3000)]
    pub request_timeout_ms: u64,
    /// Snapshot every this many entries (SWITCHBOARD_RAFT_SNAPSHOT_EVERY); small values make
    /// lagging peers catch up by snapshot. Default: 500, or 40 with the snapshot-crash nemesis.
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Read registers with `?stale`: expected to be found non-linearizable under partitions.
    #[arg(long)]
    pub stale_reads: bool,
    /// Run the peers with switchboard's test hook that turns pre-vote and check-quorum off
    /// (SWITCHBOARD_FAILPOINT=elections-without-pre-vote): the lossy nemesis is expected to
    /// be caught unseating the leader.
    #[arg(long)]
    pub without_pre_vote: bool,
    /// Seconds the linearizability search may take before it answers "unknown".
    #[arg(long, default_value_t = 60)]
    pub check_budget: u64,
    /// Keep the peers' data folders even when the run passes.
    #[arg(long)]
    pub keep_data: bool,
}

/// Seconds the clients go on after the final heal.
const RECOVERY: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the action-queue workers may take to empty the queue after the final heal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// Runs the test; returns the exit code (0 valid, 1 anomaly, 2 unknown or harness failure).
pub fn run(args: RunArgs) -> i32 {
    signals::install();
    let seed = args.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let reproduce = reproduce_line(&args, seed);
    let dir = match prepare_dir(&args, seed) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("jepsen run: {e}");
            return 2;
        }
    };
    println!("jepsen run: seed {seed}, results in {}", dir.display());
    let code = match execute(&args, seed, &dir) {
        Ok(outcome) => {
            let code = outcome.valid.exit_code();
            results::print(&outcome);
            if let Err(e) = results::write(&dir, &outcome, &args, seed) {
                eprintln!("jepsen run: {e}");
                return 2;
            }
            code
        }
        Err(e) => {
            eprintln!("jepsen run: harness failure (this is never a pass): {e}");
            let body = json!({"valid": "unknown", "seed": seed, "harness_error": e, "reproduce": reproduce});
            let _ = std::fs::write(dir.join("results.json"), format!("{body:#}\n"));
            2
        }
    };
    if code != 0 {
        println!("results: {}", dir.display());
        println!("reproduce with: {reproduce}");
    }
    code
}

fn reproduce_line(args: &RunArgs, seed: u64) -> String {
    let mut line = format!(
        "jepsen run --seed {seed} --time {} --nemesis {} --workload {} --peers {}",
        args.time, args.nemesis, args.workload, args.peers
    );
    if let Some(b) = &args.binary {
        line.push_str(&format!(" --binary {}", b.display()));
    }
    if args.stale_reads {
        line.push_str(" --stale-reads");
    }
    if args.without_pre_vote {
        line.push_str(" --without-pre-vote");
    }
    if args.concurrency != 6 {
        line.push_str(&format!(" --concurrency {}", args.concurrency));
    }
    if args.rate != 40 {
        line.push_str(&format!(" --rate {}", args.rate));
    }
    if args.request_timeout_ms != 3000 {
        line.push_str(&format!(" --request-timeout-ms {}", args.request_timeout_ms));
    }
    if let Some(n) = args.snapshot_every {
        line.push_str(&format!(" --snapshot-every {n}"));
    }
    line
}

fn prepare_dir(args: &RunArgs, seed: u64) -> Result<PathBuf, String> {
    let base = args.out.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("jepsen-runs"));
    let dir = base.join(format!("{}-seed{seed}", results::timestamp()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the run folder {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The workload lists and the binary, checked before anything is started.
struct Plan {
    workloads: Vec<Workload>,
    nemeses: Vec<Nemesis>,
    binary: PathBuf,
    ids: Vec<u64>,
    snapshot_every: u64,
    /// libfaketime, when the clock nemesis runs.
    faketime: Option<PathBuf>,
    /// The DNS workload runs (besides the HTTP clients of `workloads`).
    dns: bool,
}

fn plan(args: &RunArgs) -> Result<Plan, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the runner needs root: it creates network namespaces, veth pairs and iptables rules".into());
    }
    if args.peers != 3 && args.peers != 5 {
        return Err(format!("--peers must be 3 or 5, not {}", args.peers));
    }
    if args.time < 10 {
        return Err(format!("--time {} is too short; give at least 10 seconds", args.time));
    }
    if args.concurrency == 0 || args.rate == 0 {
        return Err("--concurrency and --rate must be positive".into());
    }
    let mut workloads = Vec::new();
    let mut dns = false;
    for name in args.workload.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let w = match name {
            "register" => Workload::Register,
            "set" => Workload::Set,
            "changefeed" => Workload::Changefeed,
            "actions" => Workload::Actions,
            "dns" => {
                dns = true;
                continue;
            }
            other => {
                return Err(format!("unknown workload '{other}'; choose from register, set, changefeed, actions, dns"))
            }
        };
        if !workloads.contains(&w) {
            workloads.push(w);
        }
    }
    if workloads.is_empty() && !dns {
        return Err("--workload names no workload; choose from register, set, changefeed, actions, dns".into());
    }
    if args.concurrency < workloads.len() as u64 {
        return Err(format!("--concurrency {} is less than the {} workloads", args.concurrency, workloads.len()));
    }
    let nemeses = Nemesis::parse_list(&args.nemesis)?;
    if args.without_pre_vote && nemeses.contains(&Nemesis::SnapshotCrash) {
        return Err("--without-pre-vote cannot be combined with the snapshot-crash nemesis: both set the peers' \
                    SWITCHBOARD_FAILPOINT"
            .into());
    }
    let faketime = if nemeses.contains(&Nemesis::Clock) { Some(clock::find_libfaketime()?) } else { None };
    let default_snapshot_every = if nemeses.contains(&Nemesis::SnapshotCrash) { 40 } else { 500 };
    let snapshot_every = args.snapshot_every.unwrap_or(default_snapshot_every);
    if snapshot_every == 0 {
        return Err("--snapshot-every must be positive".into());
    }
    let binary = args
        .binary
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/switchboard"));
    if !binary.is_file() {
        return Err(format!(
            "no switchboard binary at {}; build it with `cargo build --bin switchboard` or pass --binary PATH",
            binary.display()
        ));
    }
    let binary = binary.canonicalize().map_err(|e| format!("{}: {e}", binary.display()))?;
    Ok(Plan { workloads, nemeses, binary, ids: (1..=args.peers).collect(), snapshot_every, faketime, dns })
}

fn execute(args: &RunArgs, seed: u64, dir: &Path) -> Result<results::Outcome, String> {
    let plan = plan(args)?;
    let time = Duration::from_secs(args.time);
    let schedule = nemesis::schedule(seed, &plan.nemeses, &plan.ids, time);
    write_json(&dir.join("schedule.json"), &json!(schedule))?;
    println!("  {} faults scheduled over {}s ({:?})", schedule.len(), args.time, plan.nemeses);

    let spares = nemesis::spares(&schedule);
    let all_ids: Vec<u64> = plan.ids.iter().chain(&spares).copied().collect();
    let mut topology = Topology::create(&all_ids)?;
    let config = PeerConfig {
        binary: plan.binary.clone(),
        dir: dir.to_path_buf(),
        secret: format!("{:032x}", rand::random::<u128>()),
        env: vec![
            ("SWITCHBOARD_HTTP_REQUEST_TIMEOUT_MS".into(), args.request_timeout_ms.to_string()),
            ("SWITCHBOARD_RAFT_SNAPSHOT_EVERY".into(), plan.snapshot_every.to_string()),
            ("SWITCHBOARD_RAFT_KEEP_LOGS".into(), (plan.snapshot_every / 5).max(1).to_string()),
        ]
        .into_iter()
        .chain(
            args.without_pre_vote
                .then(|| ("SWITCHBOARD_FAILPOINT".to_string(), "elections-without-pre-vote".to_string())),
        )
        .collect(),
        faketime: plan.faketime.clone(),
    };
    let mut peers = Peers::new(config, &plan.ids, &spares)?;
    for &id in &plan.ids {
        peers.start(id)?;
    }
    let mut regions = vec![workload::REGION];
    if plan.workloads.contains(&Workload::Changefeed) {
        regions.extend(changefeed::REGIONS);
    }
    bring_up(&mut peers, &regions)?;
    if plan.workloads.contains(&Workload::Actions) {
        actions::setup(&plan.ids, START_TIMEOUT)?;
    }
    println!("  cluster of {} peers is up", plan.ids.len());
    let deaths = if plan.dns { dns::deaths(seed, time) } else { Vec::new() };
    if plan.dns {
        dns::setup(&plan.ids, signals::interrupted)?;
        write_json(&dir.join("dns-deaths.json"), &json!(deaths))?;
        let list: Vec<String> = deaths
            .iter()
            .map(|d| format!("{} at {:.1}s for {:.1}s", d.node, d.at.as_secs_f64(), d.length.as_secs_f64()))
            .collect();
        println!("  dns: {DOMAIN} on {} nodes; deaths: {}", dns::NODES.len(), list.join(", "), DOMAIN = dns::DOMAIN);
    }

    let start = Instant::now();
    let recorder = Arc::new(Recorder::create(&dir.join("history.jsonl"), start)?);
    let leadership_log = if plan.nemeses.contains(&Nemesis::Lossy) {
        Some(Arc::new(lossy::Log::create(&dir.join("leadership.jsonl"), start)?))
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let next_element = Arc::new(AtomicU64::new(1));
    let client_timeout = Duration::from_millis(args.request_timeout_ms) + Duration::from_secs(2);
    let mut threads = Vec::new();
    let dns_workload = if plan.dns {
        let log = Arc::new(dns::Log::create(&dir.join("dns.jsonl"), start)?);
        Some(dns::Workload::start(log, &plan.ids, deaths)?)
    } else {
        None
    };
    let feeds = if plan.workloads.contains(&Workload::Changefeed) {
        Some(changefeed::Feeds::start(recorder.clone(), &plan.ids, client_timeout)?)
    } else {
        None
    };
    let workers = if plan.workloads.contains(&Workload::Actions) {
        let clock = plan.nemeses.contains(&Nemesis::Clock);
        Some(actions::Workers::start(recorder.clone(), &plan.ids, client_timeout, seed, clock)?)
    } else {
        None
    };
    let http_clients = if plan.workloads.is_empty() { 0 } else { args.concurrency };
    for t in 0..http_clients {
        let peer = plan.ids[(t % plan.ids.len() as u64) as usize];
        let client = workload::Client {
            thread: t,
            concurrency: args.concurrency,
            workload: plan.workloads[(t % plan.workloads.len() as u64) as usize],
            peer,
            addr: http_addr(peer),
            timeout: client_timeout,
            recorder: recorder.clone(),
            stop: stop.clone(),
            start,
            pace: Duration::from_millis(1000 * args.concurrency / args.rate),
            seed,
            next_element: next_element.clone(),
            stale_reads: args.stale_reads,
        };
        let handle = std::thread::Builder::new()
            .name(format!("client-{t}"))
            .spawn(move || client.run())
            .map_err(|e| format!("cannot start a client thread: {e}"))?;
        threads.push(handle);
    }
    // From here on, the clients must be stopped whatever happens.
    let stop_clients = |threads: Vec<std::thread::JoinHandle<()>>| {
        stop.store(true, Ordering::SeqCst);
        threads.into_iter().map(|t| t.join()).filter(|r| r.is_err()).count()
    };

    let mut injector = faults::Injector::new(start);
    injector.leadership = leadership_log;
    let mut unexpected_exits = Vec::new();
    let phase = (|| -> Result<(), String> {
        for fault in &schedule {
            wait_until(start + fault.at, &mut peers, &mut unexpected_exits)?;
            injector.fire(fault, &mut peers);
            if let (Some(w), Some(r)) = (&dns_workload, injector.active_record()) {
                w.set_excluded(&r.excluded);
            }
            match (injector.active(), injector.records.last()) {
                (Some(what), _) => println!("  {:>5.1}s fault {}: {what}", start.elapsed().as_secs_f64(), fault.index),
                (None, Some(r)) => match &r.skipped {
                    Some(why) => println!("  fault {} skipped: {why}", fault.index),
                    None => println!("  fault {} failed to fire: {}", fault.index, r.errors.join("; ")),
                },
                (None, None) => {}
            }
            wait_until(start + fault.at + fault.duration, &mut peers, &mut unexpected_exits)?;
            injector.heal(&mut peers);
            if let Some(w) = &dns_workload {
                w.set_excluded(&[]);
            }
        }
        wait_until(start + time, &mut peers, &mut unexpected_exits)
    })();
    injector.heal(&mut peers);
    let healed = faults::heal_everything(&mut peers);
    let final_heal = start.elapsed().as_secs_f64();
    // Written now too, so that a run that ends in a harness failure still shows its faults.
    if let Err(e) = write_json(&dir.join("faults.json"), &json!(injector.records)) {
        eprintln!("jepsen run: {e}");
    }
    if let Some(w) = &dns_workload {
        w.set_excluded(&[]);
        w.log.write(crate::checker::dns::DnsEvent::FinalHeal { time: w.log.now() });
    }
    if let Err(e) = phase.and(healed) {
        stop_clients(threads);
        return Err(e);
    }
    println!("  {:>5.1}s final heal; clients go on for {RECOVERY:?}", final_heal);
    if let Err(e) = wait_until(Instant::now() + RECOVERY, &mut peers, &mut unexpected_exits) {
        stop_clients(threads);
        return Err(e);
    }
    if stop_clients(threads) > 0 {
        return Err("a client thread panicked".into());
    }

    let convergence = checks::converge(&plan.ids, CONVERGE_TIMEOUT, signals::interrupted);
    println!("  convergence: {}", convergence.message);
    if signals::interrupted() {
        return Err("interrupted".into());
    }
    // The DNS clients went on through convergence; their log gets the fault windows.
    let dns_events = match dns_workload {
        Some(w) => {
            let log = w.log.clone();
            if !w.stop() {
                return Err("a DNS workload thread panicked".into());
            }
            for r in &injector.records {
                let ns = |s: f64| (s * 1e9) as u64;
                log.write(crate::checker::dns::DnsEvent::Fault {
                    index: r.index,
                    description: r.description.clone(),
                    start: r.started.map(ns),
                    heal: r.healed.map(ns),
                    excluded: r.excluded.clone(),
                    down: r.down.clone(),
                });
            }
            let (events, error) = log.events();
            if let Some(e) = error {
                return Err(e);
            }
            Some(events)
        }
        None => None,
    };
    let leadership_events = match &injector.leadership {
        Some(log) => {
            let (events, error) = log.events();
            if let Some(e) = error {
                return Err(e);
            }
            Some(events)
        }
        None => None,
    };
    if plan.workloads.contains(&Workload::Set) {
        final_set_read(&recorder, &plan.ids, client_timeout, &mut peers, &mut unexpected_exits)?;
    }
    if let Some(feeds) = feeds {
        println!("  changefeed: {}", feeds.drain(CONVERGE_TIMEOUT)?);
    }
    if let Some(workers) = workers {
        println!("  actions: {}", workers.drain(DRAIN_TIMEOUT)?);
    }
    unexpected_exits.extend(peers.reap_exited().into_iter().map(|(id, s)| format!("peer {id} exited on its own: {s}")));
    peers.stop_all(Duration::from_secs(5));
    drop(peers);
    let teardown = topology.destroy();
    if !teardown.is_empty() {
        eprintln!("jepsen run: cleanup left something behind ({}); run `jepsen cleanup`", teardown.join("; "));
    }

    let (events, record_error) = recorder.events();
    if let Some(e) = record_error {
        return Err(e);
    }
    let logs: Vec<(u64, PathBuf)> = all_ids.iter().map(|&id| (id, peers::log_path(dir, id))).collect();
    let log_refs: Vec<(u64, &Path)> = logs.iter().map(|(id, p)| (*id, p.as_path())).collect();
    let outcome = results::Outcome::judge(results::Inputs {
        workloads: &plan.workloads,
        events: &events,
        faults: &injector.records,
        convergence,
        panics: checks::panics(&log_refs),
        unexpected_exits,
        budget: Duration::from_secs(args.check_budget),
        final_heal,
        dns: dns_events.as_deref(),
        leadership: leadership_events.as_deref(),
    });
    let html = timeline::render(&events, &injector.records, args.concurrency, &format!("jepsen run, seed {seed}"));
    std::fs::write(dir.join("timeline.html"), html).map_err(|e| format!("cannot write timeline.html: {e}"))?;
    if let Err(e) = write_json(&dir.join("faults.json"), &json!(injector.records)) {
        eprintln!("jepsen run: {e}");
    }
    if outcome.valid == crate::checker::Validity::Valid && !args.keep_data {
        for &id in &all_ids {
            let _ = std::fs::remove_dir_all(dir.join("peers").join(format!("n{id}")));
        }
    }
    Ok(outcome)
}

/// Waits for every peer to answer, forms the cluster, waits until every peer is ready and
/// creates the workloads' regions.
fn bring_up(peers: &mut Peers, regions: &[&str]) -> Result<(), String> {
    let ids = peers.ids();
    let deadline = Instant::now() + START_TIMEOUT;
    let short = Duration::from_secs(1);
    let waiting = |what: &str, peers: &mut Peers| -> Result<(), String> {
        if signals::interrupted() {
            return Err("interrupted".into());
        }
        if let Some((id, status)) = peers.reap_exited().into_iter().next() {
            return Err(format!("peer {id} exited ({status}) during start-up; see {}", peers.log_path(id).display()));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} within {START_TIMEOUT:?}; see the logs in {}", peers.log_path(1).display()));
        }
        std::thread::sleep(POLL);
        Ok(())
    };
    for &id in &ids {
        while !http::get(http_addr(id), "/health", short).is_ok_and(|r| r.status == 200) {
            waiting(&format!("peer {id} did not answer on {}", http_url(id)), peers)?;
        }
    }
    let urls: Vec<String> = ids.iter().map(|&id| http_url(id)).collect();
    let init = http::post(http_addr(ids[0]), "/v1/cluster/init", &json!({ "peers": urls }), Duration::from_secs(10))
        .map_err(|e| format!("POST /v1/cluster/init: {e}"))?;
    if init.status != 200 {
        return Err(format!("POST /v1/cluster/init answered {}", init.describe()));
    }
    for &id in &ids {
        while !http::get(http_addr(id), "/ready", short).is_ok_and(|r| r.status == 200) {
            waiting(&format!("peer {id} did not become ready"), peers)?;
        }
    }
    let body = json!({"cidrs": [], "fallback": []});
    for region in regions {
        loop {
            match http::put(http_addr(ids[0]), &format!("/v1/regions/{region}"), &body, Duration::from_secs(5)) {
                Ok(r) if r.status == 200 => break,
                Ok(r) => waiting(&format!("creating region {region} failed: {}", r.describe()), peers)?,
                Err(e) => waiting(&format!("creating region {region} failed: {e}"), peers)?,
            }
        }
    }
    Ok(())
}

/// The set's final read, from each peer in turn until one succeeds.
fn final_set_read(
    recorder: &Arc<Recorder>,
    ids: &[u64],
    timeout: Duration,
    peers: &mut Peers,
    exits: &mut Vec<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut process = 1_000_000;
    loop {
        for &id in ids {
            let client = workload::Client {
                thread: process,
                concurrency: 1,
                workload: Workload::Set,
                peer: id,
                addr: http_addr(id),
                timeout,
                recorder: recorder.clone(),
                stop: Arc::new(AtomicBool::new(true)),
                start: Instant::now(),
                pace: Duration::ZERO,
                seed: 0,
                next_element: Arc::new(AtomicU64::new(0)),
                stale_reads: false,
            };
            client.set_read(process);
            let (events, _) = recorder.events();
            if events.last().is_some_and(|e| e.kind == crate::history::Type::Ok) {
                return Ok(());
            }
            process += 1;
        }
        if Instant::now() > deadline {
            return Err(format!("no peer answered the final read of the set within {CONVERGE_TIMEOUT:?}"));
        }
        wait_until(Instant::now() + Duration::from_millis(500), peers, exits)?;
    }
}

/// Sleeps until `until`, watching for Ctrl-C and for peers that die on their own.
fn wait_until(until: Instant, peers: &mut Peers, exits: &mut Vec<String>) -> Result<(), String> {
    loop {
        if signals::interrupted() {
            return Err("interrupted".into());
        }
        for (id, status) in peers.reap_exited() {
            println!("  peer {id} exited on its own ({status}); see {}", peers.log_path(id).display());
            exits.push(format!("peer {id} exited on its own: {status}"));
        }
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep(POLL.min(until - now));
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    std::fs::write(path, format!("{value:#}\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
