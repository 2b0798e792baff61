//! The network: one namespace per peer, joined by a bridge that lives in a namespace of
//! its own ("the switch"), and one veth pair from the switch to the root namespace where
//! the clients run. Nothing is added to the root namespace but that one interface, so the
//! host's own firewall and routes stay untouched.
//!
//! ```text
//!  root ns: jepsen-host 10.77.0.1/24 ──┐
//!                                       │   ns jepsen-sw: bridge br0
//!  ns jepsen-n1: eth0 10.77.0.11/24 ────┤
//!  ns jepsen-n2: eth0 10.77.0.12/24 ────┤
//!  ns jepsen-n3: eth0 10.77.0.13/24 ────┘
//! ```

use std::net::Ipv4Addr;

use super::sh;

/// Every name the runner creates starts with this, so `jepsen cleanup` can find leftovers.
pub const PREFIX: &str = "jepsen-";
pub const SWITCH_NS: &str = "jepsen-sw";
pub const HOST_LINK: &str = "jepsen-host";
pub const SUBNET: &str = "10.77.0.0/24";
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

pub fn peer_ns(id: u64) -> String {
    format!("{PREFIX}n{id}")
}

pub fn peer_ip(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 10 + id as u8)
}

/// The namespaces and links of one run; dropping it removes them all.
pub struct Topology {
    pub peers: Vec<u64>,
    created: Vec<String>,
}

impl Topology {
    /// Builds the network for `peers`. Refuses to start when a previous run left
    /// namespaces behind or when the subnet is already routed on this host.
    pub fn create(peers: &[u64]) -> Result<Topology, String> {
        let existing = sh::run("ip", &["netns", "list"])?;
        if existing.lines().any(|l| l.starts_with(PREFIX)) {
            return Err(format!(
                "network namespaces of an earlier run still exist ({}); run `jepsen cleanup` first",
                existing.lines().filter(|l| l.starts_with(PREFIX)).collect::<Vec<_>>().join(", ")
            ));
        }
        let routes = sh::run("ip", &["-4", "route", "show", "to", "match", "10.77.0.1"])?;
        if routes.lines().any(|l| !l.starts_with("default")) {
            return Err(format!(
                "{SUBNET} is already routed on this host ({}); the runner only uses a subnet nobody else does",
                routes.trim()
            ));
        }
        let mut topo = Topology { peers: peers.to_vec(), created: Vec::new() };
        topo.build()?;
        Ok(topo)
    }

    fn build(&mut self) -> Result<(), String> {
        self.add_ns(SWITCH_NS)?;
        let sw = |args: &[&str]| sh::in_netns(SWITCH_NS, "ip", args);
        sw(&["link", "add", "br0", "type", "bridge"])?;
        sw(&["link", "set", "br0", "up"])?;
        sw(&["link", "set", "lo", "up"])?;

        // Root namespace <-> switch.
        sh::run("ip", &["link", "add", HOST_LINK, "type", "veth", "peer", "name", "host-sw", "netns", SWITCH_NS])?;
        self.created.push(format!("link:{HOST_LINK}"));
        sw(&["link", "set", "host-sw", "master", "br0", "up"])?;
        sh::run("ip", &["addr", "add", &format!("{HOST_IP}/24"), "dev", HOST_LINK])?;
        sh::run("ip", &["link", "set", HOST_LINK, "up"])?;

        for &id in &self.peers.clone() {
            let ns = peer_ns(id);
            self.add_ns(&ns)?;
            let sw_end = format!("n{id}-sw");
            sh::run(
                "ip",
                &["-n", SWITCH_NS, "link", "add", &sw_end, "type", "veth", "peer", "name", "eth0", "netns", &ns],
            )?;
            sw(&["link", "set", &sw_end, "master", "br0", "up"])?;
            let p = |args: &[&str]| sh::in_netns(&ns, "ip", args);
            p(&["link", "set", "lo", "up"])?;
            p(&["addr", "add", &format!("{}/24", peer_ip(id)), "dev", "eth0"])?;
            p(&["link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        sh::run("ip", &["netns", "add", name])?;
        self.created.push(format!("ns:{name}"));
        Ok(())
    }

    /// Removes everything this run created; errors are collected, not fatal.
    pub fn destroy(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some(item) = self.created.pop() {
            let result = match item.split_once(':') {
                Some(("ns", name)) => remove_ns(name),
                Some(("link", name)) => remove_link(name),
                _ => Ok(()),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for e in self.destroy() {
            eprintln!("jepsen: cleanup: {e}");
        }
    }
}

/// Kills whatever still runs in the namespace, then deletes it.
pub fn remove_ns(name: &str) -> Result<(), String> {
    if let Ok(pids) = sh::run("ip", &["netns", "pids", name]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: signals to processes inside a namespace this runner created.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    sh::run("ip", &["netns", "del", name]).map(|_| ())
}

/// Deletes a link if it still exists (a veth goes away with its namespace'd other end).
pub fn remove_link(name: &str) -> Result<(), String> {
    let exists = sh::run("ip", &["link", "show", name]).is_ok();
    if exists {
        sh::run("ip", &["link", "del", name]).map(|_| ())
    } else {
        Ok(())
    }
}

/// `jepsen cleanup`: removes every namespace and link an earlier run left behind.
pub fn cleanup_leftovers() -> Result<Vec<String>, String> {
    let mut removed = Vec::new();
    let list = sh::run("ip", &["netns", "list"])?;
    let mut names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect();
    // Peers first, the switch last.
    names.sort_by_key(|n| n == SWITCH_NS);
    for name in names {
        remove_ns(&name)?;
        removed.push(format!("namespace {name}"));
    }
    if sh::run("ip", &["link", "show", HOST_LINK]).is_ok() {
        remove_link(HOST_LINK)?;
        removed.push(format!("link {HOST_LINK}"));
    }
    Ok(removed)
}
