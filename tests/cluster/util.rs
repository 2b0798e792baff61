//! The harness: a cluster of real peer processes in a temporary directory.
//!
//! Every wait is for a condition with a deadline. Peers are killed when the [`Cluster`] is
//! dropped; if the test is failing, each peer's log tail is printed first. At most
//! [`MAX_CLUSTERS`] clusters run at once so that tests in parallel do not starve each
//! other of the machine's cores and fsyncs.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The binary under test: the one cargo built for this test run, or the one named by
/// `TEST_SWITCHBOARD_BIN` (scripts/test runs the hostile-input tests again against a
/// release build, where arithmetic overflow wraps instead of panicking). The name is
/// outside the `SWITCHBOARD_` prefix, which the peers read as settings.
pub fn bin() -> String {
    std::env::var("TEST_SWITCHBOARD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_string())
}
const MAX_CLUSTERS: usize = 2;
pub const SECRET: &str = "test-cluster-secret";

static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A place among the clusters allowed to run at once, given back on drop.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let (lock, cvar) = &RUNNING;
        let mut running = cvar.wait_while(lock.lock().unwrap(), |n| *n >= MAX_CLUSTERS).unwrap();
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cvar) = &RUNNING;
        *lock.lock().unwrap() -= 1;
        cvar.notify_one();
    }
}

/// Waits until `f` returns `Some`, polling, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Peer {
    pub id: u64,
    pub raft_addr: String,
    pub http_addr: String,
    pub dns_addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Peer {
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(bin())
            .arg("serve")
            .args(["--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--raft-addr", &self.raft_addr, "--http-addr", &self.http_addr, "--dns-addr", &self.dns_addr])
            .env("SWITCHBOARD_CLUSTER_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start switchboard serve");
        self.child = Some(child);
    }

    /// `kill -9`, and wait until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again without waiting for it (it may be expected to fail).
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Waits up to `timeout` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// How many file descriptors the process has open (sockets included).
    pub fn open_fds(&self) -> usize {
        let pid = self.pid().expect("the peer runs");
        std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
    }

    /// Fails the test if the process exited by itself.
    pub fn assert_alive(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("peer {} exited on its own ({status}); log:\n{}", self.id, tail(&self.log, 40));
            }
        }
    }
}

fn tail(path: &PathBuf, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub struct Cluster {
    pub peers: Vec<Peer>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
    _slot: Slot,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.peers {
                eprintln!("----- peer {} log (last 60 lines) -----\n{}", p.id, tail(&p.log, 60));
            }
        }
        for p in &mut self.peers {
            p.kill();
        }
    }
}

impl Cluster {
    /// Starts `n` peers and forms a cluster of them with `switchboard cluster init`.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with_env(n, &[]).await
    }

    /// Like [`Cluster::start`], with extra environment (e.g. `SWITCHBOARD_RAFT_SNAPSHOT_EVERY`).
    pub async fn start_with_env(n: u64, env: &[(&str, &str)]) -> Cluster {
        let slot = Slot::take();
        let mut cluster = Cluster {
            peers: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            _slot: slot,
        };
        for _ in 0..n {
            cluster.add_process().await;
        }
        let urls: Vec<String> = cluster.peers.iter().map(|p| p.url()).collect();
        let mut args = vec!["cluster", "init"];
        args.extend(urls.iter().map(|s| s.as_str()));
        let token = cluster.env.iter().find(|(k, _)| k == "SWITCHBOARD_ADMIN_TOKEN").map(|(_, v)| v.as_str());
        let out = cli_with_token(&args, token);
        assert!(out.status.success(), "cluster init failed: {}", String::from_utf8_lossy(&out.stderr));
        cluster.await_ready().await;
        cluster
    }

    /// Starts one more peer process, not yet a member; returns its id.
    pub async fn add_process(&mut self) -> u64 {
        self.add_process_with(&[]).await
    }

    /// Like [`Cluster::add_process`], with extra environment for this peer only.
    pub async fn add_process_with(&mut self, extra: &[(&str, &str)]) -> u64 {
        let id = self.peers.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut peer = Peer {
            id,
            raft_addr: format!("127.0.0.1:{}", free_port()),
            http_addr: format!("127.0.0.1:{}", free_port()),
            dns_addr: format!("127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(format!("peer-{id}")),
            log: self.dir.path().join(format!("peer-{id}.log")),
            child: None,
            env,
        };
        peer.spawn();
        self.peers.push(peer);
        let url = self.peer(id).url();
        let http = self.http.clone();
        eventually(Duration::from_secs(20), &format!("peer {id} to answer /health"), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}/health")).send().await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        id
    }

    pub fn peer(&self, id: u64) -> &Peer {
        self.peers.iter().find(|p| p.id == id).expect("known peer")
    }

    pub fn peer_mut(&mut self, id: u64) -> &mut Peer {
        self.peers.iter_mut().find(|p| p.id == id).expect("known peer")
    }

    pub fn running(&self) -> Vec<u64> {
        self.peers.iter().filter(|p| p.is_running()).map(|p| p.id).collect()
    }

    pub fn kill(&mut self, id: u64) {
        self.peer_mut(id).kill();
    }

    pub async fn restart(&mut self, id: u64) {
        self.restart_with(id, &[]).await;
    }

    /// Like [`Cluster::restart`], with extra environment for this peer from now on.
    pub async fn restart_with(&mut self, id: u64, extra: &[(&str, &str)]) {
        let peer = self.peer_mut(id);
        peer.env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        peer.spawn();
        let url = self.peer(id).url();
        let http = self.http.clone();
        eventually(Duration::from_secs(20), &format!("restarted peer {id} to answer /health"), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}/health")).send().await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }

    /// Waits until every running peer is ready (knows a leader, has applied its commits).
    pub async fn await_ready(&mut self) {
        for id in self.running() {
            let url = self.peer(id).url();
            let http = self.http.clone();
            eventually(Duration::from_secs(30), &format!("peer {id} to become ready"), || {
                let (http, url) = (http.clone(), url.clone());
                async move { http.get(format!("{url}/ready")).send().await.ok().filter(|r| r.status().is_success()) }
            })
            .await;
            self.peer_mut(id).assert_alive();
        }
    }

    /// The leader every running peer agrees on.
    pub async fn leader(&self) -> u64 {
        let running = self.running();
        eventually(Duration::from_secs(30), "the running peers to agree on a leader", || async {
            let mut leaders = Vec::new();
            for &id in &running {
                let status = self.status(id).await?;
                leaders.push(status["leader"].as_u64()?);
            }
            let first = *leaders.first()?;
            (leaders.iter().all(|l| *l == first) && running.contains(&first)).then_some(first)
        })
        .await
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        let r = self.http.get(format!("{}/v1/cluster", self.peer(id).url())).send().await.ok()?;
        r.json().await.ok()
    }

    /// Sends a request to peer `id`; returns the status code and the JSON body.
    pub async fn call(&self, id: u64, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{}", self.peer(id).url(), path));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("peer {id} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn put_region(&self, id: u64, name: &str) -> (u16, Value) {
        self.call(id, reqwest::Method::PUT, &format!("/v1/regions/{name}"), Some(json!({"cidrs": [], "fallback": []})))
            .await
    }

    pub async fn put_node(&self, id: u64, node: &str, capacity: u64) -> (u16, Value) {
        let body = json!({"ip": "192.0.2.1", "region": "r1", "site": "s1", "capacity": capacity});
        self.call(id, reqwest::Method::PUT, &format!("/v1/nodes/{node}"), Some(body)).await
    }

    /// `GET path?stale` as every running peer answers it from its own copy, once they all
    /// answer 200 with the same body.
    pub async fn agreed(&self, path: &str) -> Value {
        eventually(Duration::from_secs(10), &format!("every peer to answer the same GET {path}"), || async {
            let mut seen = Vec::new();
            for p in self.running() {
                let (status, body) = self.call(p, reqwest::Method::GET, &format!("{path}?stale"), None).await;
                if status != 200 {
                    return None;
                }
                seen.push(body);
            }
            seen.windows(2).all(|w| w[0] == w[1]).then(|| seen.remove(0))
        })
        .await
    }

    /// Node id → capacity, as peer `id` reads them (`query`: "" or "?stale").
    pub async fn nodes(&self, id: u64, query: &str) -> std::collections::BTreeMap<String, u64> {
        let (status, body) = self.call(id, reqwest::Method::GET, &format!("/v1/nodes{query}"), None).await;
        assert_eq!(status, 200, "peer {id} GET /v1/nodes: {body}");
        body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap().to_string(), n["capacity"].as_u64().unwrap()))
            .collect()
    }
}

/// Runs the `switchboard` binary with arguments, as an operator would.
pub fn cli(args: &[&str]) -> Output {
    cli_with_token(args, None)
}

/// Like [`cli`], with `SWITCHBOARD_ADMIN_TOKEN` set (or unset).
pub fn cli_with_token(args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(bin());
    command.args(args).env_remove("SWITCHBOARD_ENDPOINT").env_remove("SWITCHBOARD_ADMIN_TOKEN");
    if let Some(t) = token {
        command.env("SWITCHBOARD_ADMIN_TOKEN", t);
    }
    command.output().expect("run switchboard")
}
