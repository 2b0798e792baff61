//! `switchboard dev`: the embedded default. Starts the peers as child processes on
//! 127.0.0.1 (peer i: raft 7000+i, http 8000+i, dns 5300+i), forms the cluster, loads
//! cluster/example/dataset.json, and stops every child on Ctrl-C or when one dies.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::{CliError, Client};

const DATASET: &str = include_str!("../../cluster/example/dataset.json");
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often start-up checks whether a peer answers yet: quick, as it is on loopback.
const START_POLL: Duration = Duration::from_millis(50);
/// How often a running dev cluster checks that none of its peers has exited.
const EXIT_POLL: Duration = Duration::from_millis(200);
/// How often the example nodes heartbeat: well inside the policy's `down_after_ms`.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// The example region whose clients the peers assume when no region lists the client
/// (as for `dig` from 127.0.0.1).
const DEV_REGION: &str = "sea";

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// How many peers: 3 or 5.
    #[arg(long, default_value_t = 3)]
    peers: u8,
    /// Keep the peers' data here (kept between runs); default: a temporary directory
    /// removed on exit.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Do not send heartbeats for the example nodes (they then go down after
    /// `down_after_ms`, and the dispatch table empties).
    #[arg(long)]
    no_heartbeats: bool,
}

struct Peers {
    children: Vec<Child>,
}

impl Peers {
    fn stop(&mut self) {
        for child in &mut self.children {
            if let Some(pid) = child.id() {
                // SAFETY: sending a signal to our own child process.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn run(args: DevArgs) -> Result<(), CliError> {
    if args.peers != 3 && args.peers != 5 {
        return Err(CliError::Usage(format!("--peers must be 3 or 5, not {}", args.peers)));
    }
    let (dir, temporary) = match args.dir {
        Some(d) => (d, false),
        None => (std::env::temp_dir().join(format!("switchboard-dev-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir).map_err(|e| CliError::Dev(format!("cannot create {}: {e}", dir.display())))?;
    let exe = std::env::current_exe().map_err(|e| CliError::Dev(format!("cannot find own binary: {e}")))?;
    // Kept in the directory so that peers started by hand can join (`cluster add`).
    let secret_file = dir.join("cluster-secret");
    let secret = match std::fs::read_to_string(&secret_file) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let s = format!("{:032x}", rand::random::<u128>());
            std::fs::write(&secret_file, &s)
                .map_err(|e| CliError::Dev(format!("cannot write {}: {e}", secret_file.display())))?;
            s
        }
    };

    let mut peers = Peers { children: Vec::new() };
    let ids: Vec<u32> = (1..=args.peers as u32).collect();
    for &i in &ids {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("peer-{i}.log")))
            .map_err(|e| CliError::Dev(format!("cannot create log file: {e}")))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .args(["--id", &i.to_string()])
            .arg("--data-dir")
            .arg(dir.join(format!("peer-{i}")))
            .args(["--raft-addr", &format!("127.0.0.1:{}", 7000 + i)])
            .args(["--http-addr", &format!("127.0.0.1:{}", 8000 + i)])
            .args(["--dns-addr", &format!("127.0.0.1:{}", 5300 + i)])
            .args(["--region", DEV_REGION])
            .env("SWITCHBOARD_CLUSTER_SECRET", &secret)
            .env_remove("SWITCHBOARD_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| CliError::Dev(e.to_string()))?)
            .stderr(log);
        // SAFETY: prctl in the child before exec; asks the kernel to stop the peer if
        // `switchboard dev` itself dies, so no peer outlives it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        peers.children.push(cmd.spawn().map_err(|e| CliError::Dev(format!("cannot start peer {i}: {e}")))?);
    }

    let urls: Vec<String> = ids.iter().map(|i| format!("http://127.0.0.1:{}", 8000 + i)).collect();
    let result = bring_up(&urls, &mut peers, &dir).await;
    if let Err(e) = result {
        peers.stop();
        return Err(e);
    }

    println!("switchboard dev: {} peers on 127.0.0.1, data and logs in {}", ids.len(), dir.display());
    for &i in &ids {
        println!(
            "  peer {i}: http http://127.0.0.1:{}  raft 127.0.0.1:{}  dns 127.0.0.1:{}",
            8000 + i,
            7000 + i,
            5300 + i
        );
    }
    println!("cluster secret: {} (for peers you add by hand)", dir.join("cluster-secret").display());
    if !args.no_heartbeats {
        println!("the example nodes are simulated: heartbeats every 500 ms (--no-heartbeats to stop them)");
        tokio::spawn(simulate_heartbeats(urls.clone()));
    }
    println!("try:");
    println!("  dig @127.0.0.1 -p 5301 video.example.com A                          # a client of region {DEV_REGION}");
    println!("  dig @127.0.0.1 -p 5302 video.example.com A +subnet=10.30.0.0/24     # a client in eu");
    println!("  switchboard cluster status");
    println!("  curl -s http://127.0.0.1:8002/v1/dispatch");
    println!("  curl -s 'http://127.0.0.1:8003/v1/resolve?name=video.example.com&client=10.30.1.1'");
    println!("Ctrl-C stops every peer.");

    let exited = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        i = first_exit(&mut peers) => Some(i),
    };
    peers.stop();
    for child in &mut peers.children {
        let _ = child.wait().await;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match exited {
        None => Ok(()),
        Some(i) => Err(CliError::Dev(format!(
            "peer {} exited; see {}",
            i + 1,
            dir.join(format!("peer-{}.log", i + 1)).display()
        ))),
    }
}

async fn first_exit(peers: &mut Peers) -> usize {
    loop {
        for (i, child) in peers.children.iter_mut().enumerate() {
            if let Ok(Some(_)) = child.try_wait() {
                return i;
            }
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// Waits for every peer to answer, forms the cluster (unless the data dir already holds
/// one), waits for a leader and loads the example data.
async fn bring_up(urls: &[String], peers: &mut Peers, dir: &std::path::Path) -> Result<(), CliError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let clients: Vec<Client> = urls.iter().map(|u| Client::new(u)).collect();
    for (i, client) in clients.iter().enumerate() {
        while client.get("/health").await.is_err() {
            if let Ok(Some(status)) = peers.children[i].try_wait() {
                return Err(CliError::Dev(format!(
                    "peer {} exited ({status}) during start-up; see {}",
                    i + 1,
                    dir.join(format!("peer-{}.log", i + 1)).display()
                )));
            }
            if Instant::now() > deadline {
                return Err(CliError::Dev(format!("peer {} did not answer within {START_TIMEOUT:?}", i + 1)));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }
    let status = clients[0].get("/v1/cluster").await?;
    let fresh = status["members"].as_array().is_none_or(|m| m.is_empty());
    if fresh {
        clients[0].call(Method::POST, "/v1/cluster/init", Some(&json!({ "peers": urls }))).await?;
    }
    for client in &clients {
        while client.get("/ready").await.is_err() {
            if Instant::now() > deadline {
                return Err(CliError::Dev(format!(
                    "{} did not become ready within {START_TIMEOUT:?}",
                    client.endpoint()
                )));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }
    if fresh {
        let dataset: Value = serde_json::from_str(DATASET).expect("the embedded data set is valid JSON");
        for request in dataset["requests"].as_array().expect("requests") {
            let method = Method::from_bytes(request["method"].as_str().expect("method").as_bytes()).expect("method");
            clients[0].call(method, request["path"].as_str().expect("path"), Some(&request["body"])).await?;
        }
    }
    Ok(())
}

/// Heartbeats for the example nodes, each to the next peer in turn, with steady metrics
/// that differ per node, so that the elected table is stable and explainable.
async fn simulate_heartbeats(urls: Vec<String>) {
    let dataset: Value = serde_json::from_str(DATASET).expect("the embedded data set is valid JSON");
    let nodes: Vec<String> = dataset["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["path"].as_str()?.strip_prefix("/v1/nodes/").map(str::to_string))
        .collect();
    let clients: Vec<Client> = urls.iter().map(|u| Client::new(u)).collect();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    let mut turn = 0usize;
    loop {
        tick.tick().await;
        for (i, node) in nodes.iter().enumerate() {
            let body = json!({
                "cpu": 0.2 + 0.1 * i as f64, "load": 0.3 + 0.05 * i as f64,
                "latency_ms": 10.0 + 7.0 * i as f64, "error_rate": 0.0, "bandwidth_mbps": 800.0,
            });
            turn += 1;
            let client = &clients[turn % clients.len()];
            let _ = client.call(Method::POST, &format!("/v1/nodes/{node}/heartbeat"), Some(&body)).await;
        }
    }
}
