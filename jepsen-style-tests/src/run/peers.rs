//! The switchboard processes: one per network namespace, started with `ip netns exec`
//! (which execs, so the child's pid is the peer's), logging to `peers/peer-N.log`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::topology::{peer_ip, peer_ns};

pub const RAFT_PORT: u16 = 7000;
pub const HTTP_PORT: u16 = 8000;
pub const DNS_PORT: u16 = 5300;

pub fn http_addr(id: u64) -> SocketAddr {
    SocketAddr::from((peer_ip(id), HTTP_PORT))
}

/// The peer a client talks to, and the next one it tries after an error or a timeout.
#[derive(Debug, Clone)]
pub struct Rotation {
    ids: Vec<u64>,
    /// Index in `ids` of the current peer.
    at: usize,
}

impl Rotation {
    /// Starts at `ids[start % ids.len()]`.
    pub fn new(ids: &[u64], start: usize) -> Self {
        Self { ids: ids.to_vec(), at: start % ids.len() }
    }

    /// The current peer and its HTTP address.
    pub fn current(&self) -> (u64, SocketAddr) {
        let peer = self.ids[self.at];
        (peer, http_addr(peer))
    }

    /// Moves on to the next peer.
    pub fn advance(&mut self) {
        self.at = (self.at + 1) % self.ids.len();
    }
}

pub fn http_url(id: u64) -> String {
    format!("http://{}", http_addr(id))
}

/// How the peers are started.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub binary: PathBuf,
    /// The run folder; peers keep data in `peers/nN/` and log to `peers/peer-N.log`.
    pub dir: PathBuf,
    pub secret: String,
    /// Extra `SWITCHBOARD_*` settings (e.g. a short request timeout).
    pub env: Vec<(String, String)>,
    /// libfaketime, preloaded into every peer so the clock nemesis can skew its wall clock
    /// (see clock.rs); `None` runs the peers on the true clock.
    pub faketime: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    /// Killed by the nemesis, to be restarted.
    Killed,
    /// Exited on its own.
    Exited(Option<i32>),
    /// A spare: not started yet, or stopped for good after its removal from the cluster.
    Spare,
}

struct Peer {
    child: Option<Child>,
    state: State,
}

/// Every peer process of the run. Must be driven from one thread: the peers are tied to the
/// thread that started them (they get SIGKILL when it ends).
pub struct Peers {
    config: PeerConfig,
    peers: BTreeMap<u64, Peer>,
    members: Vec<u64>,
}

impl Peers {
    /// `ids` form the cluster; `spares` are peers the membership nemesis starts and adds
    /// later.
    pub fn new(config: PeerConfig, ids: &[u64], spares: &[u64]) -> Result<Peers, String> {
        std::fs::create_dir_all(config.dir.join("peers"))
            .map_err(|e| format!("cannot create {}: {e}", config.dir.join("peers").display()))?;
        let mut peers: BTreeMap<u64, Peer> =
            ids.iter().map(|&id| (id, Peer { child: None, state: State::Killed })).collect();
        peers.extend(spares.iter().map(|&id| (id, Peer { child: None, state: State::Spare })));
        Ok(Peers { config, peers, members: ids.to_vec() })
    }

    /// The peers that form the cluster (spares are not among them).
    pub fn ids(&self) -> Vec<u64> {
        self.members.clone()
    }

    /// Every peer, spares included.
    pub fn all_ids(&self) -> Vec<u64> {
        self.peers.keys().copied().collect()
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// libfaketime, when the peers run under it.
    pub fn faketime(&self) -> Option<PathBuf> {
        self.config.faketime.clone()
    }

    /// The process id of a running (or paused) peer.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.peers.get(&id)?.child.as_ref().map(|c| c.id())
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        log_path(&self.config.dir, id)
    }

    pub fn state(&self, id: u64) -> Option<State> {
        self.peers.get(&id).map(|p| p.state)
    }

    /// Whether the peer's process runs and is not paused: it can answer.
    pub fn is_running(&self, id: u64) -> bool {
        self.state(id) == Some(State::Running)
    }

    /// Starts (or restarts) a peer; its log is appended to.
    pub fn start(&mut self, id: u64) -> Result<(), String> {
        self.start_with(id, &[])
    }

    /// Restarts a peer with a crash point armed (`SWITCHBOARD_FAILPOINT`, see
    /// switchboard's `src/raft/failpoint.rs`): it aborts when it gets there.
    pub fn start_armed(&mut self, id: u64, failpoint: &str) -> Result<(), String> {
        self.start_with(id, &[("SWITCHBOARD_FAILPOINT", failpoint)])
    }

    /// Waits (up to `timeout`) for a peer to exit, as an armed one does; it is then marked
    /// killed (to be restarted), not exited on its own. On timeout it is killed and the
    /// wait fails.
    pub fn await_exit(&mut self, id: u64, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let peer = self.peers.get_mut(&id).ok_or_else(|| format!("no peer {id}"))?;
            let Some(child) = peer.child.as_mut() else { return Err(format!("peer {id} is not running")) };
            if let Some(status) = child.try_wait().map_err(|e| format!("cannot wait for peer {id}: {e}"))? {
                peer.child = None;
                peer.state = State::Killed;
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill(id)?;
                return Err(format!("peer {id} was still running after {timeout:?}; killed"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_with(&mut self, id: u64, extra_env: &[(&str, &str)]) -> Result<(), String> {
        // A second process on the same data folder and addresses would fail, or worse.
        if self.peers.get(&id).is_some_and(|p| p.child.is_some()) {
            return Err(format!("peer {id} is already running"));
        }
        let dir = &self.config.dir;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(dir, id))
            .map_err(|e| format!("cannot open {}: {e}", log_path(dir, id).display()))?;
        let log2 = log.try_clone().map_err(|e| format!("cannot open log of peer {id}: {e}"))?;
        let ip = peer_ip(id);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &peer_ns(id)])
            .arg(&self.config.binary)
            .arg("serve")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(dir.join("peers").join(format!("n{id}")))
            .args(["--raft-addr", &format!("{ip}:{RAFT_PORT}")])
            .args(["--http-addr", &format!("{ip}:{HTTP_PORT}")])
            .args(["--dns-addr", &format!("{ip}:{DNS_PORT}")])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        for (name, _) in std::env::vars() {
            if name.starts_with("SWITCHBOARD_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("SWITCHBOARD_CLUSTER_SECRET", &self.config.secret);
        for (k, v) in &self.config.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        if let Some(lib) = &self.config.faketime {
            for (k, v) in super::clock::preload_env(lib, dir, id)? {
                cmd.env(k, v);
            }
        }
        // SAFETY: prctl between fork and exec; the peer gets SIGKILL if this thread ends,
        // so no peer outlives the runner even when the runner itself is killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child =
            cmd.spawn().map_err(|e| format!("cannot start peer {id} ({}): {e}", self.config.binary.display()))?;
        let peer = self.peers.get_mut(&id).ok_or_else(|| format!("no peer {id}"))?;
        peer.child = Some(child);
        peer.state = State::Running;
        Ok(())
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self, id: u64) -> Result<(), String> {
        let peer = self.peers.get_mut(&id).ok_or_else(|| format!("no peer {id}"))?;
        let Some(child) = peer.child.as_mut() else { return Err(format!("peer {id} is not running")) };
        child.kill().map_err(|e| format!("cannot kill peer {id}: {e}"))?;
        child.wait().map_err(|e| format!("cannot reap peer {id}: {e}"))?;
        peer.child = None;
        peer.state = State::Killed;
        Ok(())
    }

    /// Stops a spare for good (after its removal from the cluster): SIGTERM, SIGKILL after
    /// `grace`. Its log and data stay.
    pub fn retire(&mut self, id: u64, grace: Duration) -> Result<(), String> {
        let peer = self.peers.get_mut(&id).ok_or_else(|| format!("no peer {id}"))?;
        if let Some(child) = peer.child.as_mut() {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            child.wait().map_err(|e| format!("cannot reap peer {id}: {e}"))?;
        }
        peer.child = None;
        peer.state = State::Spare;
        Ok(())
    }

    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        self.signal(id, libc::SIGSTOP)?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.state = State::Paused;
        }
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        self.signal(id, libc::SIGCONT)?;
        if let Some(p) = self.peers.get_mut(&id) {
            if p.state == State::Paused {
                p.state = State::Running;
            }
        }
        Ok(())
    }

    fn signal(&self, id: u64, signal: i32) -> Result<(), String> {
        let pid = self.peers.get(&id).and_then(|p| p.child.as_ref()).map(|c| c.id());
        let Some(pid) = pid else { return Err(format!("peer {id} is not running")) };
        // SAFETY: a signal to our own child.
        if unsafe { libc::kill(pid as i32, signal) } == 0 {
            Ok(())
        } else {
            Err(format!("cannot signal peer {id}: {}", std::io::Error::last_os_error()))
        }
    }

    /// Peers that exited on their own since the last look (the nemesis never does that).
    pub fn reap_exited(&mut self) -> Vec<(u64, ExitStatus)> {
        let mut exited = Vec::new();
        for (&id, peer) in &mut self.peers {
            if let Some(child) = peer.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push((id, status));
                    peer.child = None;
                    peer.state = State::Exited(status.code());
                }
            }
        }
        exited
    }

    /// Resumes paused peers and restarts killed ones: every peer the nemesis took down.
    /// Returns them. A peer that exited on its own stays down (the run is invalid anyway),
    /// and so does a spare or a retired member.
    pub fn heal_all(&mut self) -> Result<Vec<u64>, String> {
        let mut back = Vec::new();
        for id in self.all_ids() {
            match self.state(id) {
                Some(State::Paused) => self.resume(id)?,
                Some(State::Killed) => self.start(id)?,
                _ => continue,
            }
            back.push(id);
        }
        Ok(back)
    }

    /// SIGTERM to every peer, then SIGKILL to what is left after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        for id in self.all_ids() {
            let _ = self.signal(id, libc::SIGCONT);
            let _ = self.signal(id, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for peer in self.peers.values_mut() {
            if let Some(child) = peer.child.as_mut() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            peer.child = None;
        }
    }

    /// Waits until peer `id` answers `/health`.
    pub fn await_answer(&self, id: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !super::http::get(http_addr(id), "/health", Duration::from_secs(1)).is_ok_and(|r| r.status == 200) {
            if self.peers.get(&id).is_none_or(|p| p.child.is_none()) {
                return Err(format!("peer {id} is not running"));
            }
            if Instant::now() > deadline {
                return Err(format!("peer {id} did not answer /health within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.config.dir.join("peers").join(format!("n{id}"))
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(2));
    }
}

pub fn log_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("peers").join(format!("peer-{id}.log"))
}
