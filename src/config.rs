//! A peer's configuration, in layers: built-in defaults, then the `--config` TOML file, then
//! `SWITCHBOARD_*` environment variables, then command-line flags. `cluster/peer.toml` is a
//! fully commented example.
//!
//! Environment variables name a key as `SWITCHBOARD_<KEY>` for top-level keys and
//! `SWITCHBOARD_<SECTION>_<KEY>` for keys of a section, e.g. `SWITCHBOARD_RAFT_SNAPSHOT_EVERY=500`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Variables that are not configuration keys: secrets and the CLI's endpoint.
const NOT_KEYS: &[&str] =
    &["SWITCHBOARD_CLUSTER_SECRET", "SWITCHBOARD_ADMIN_TOKEN", "SWITCHBOARD_ENDPOINT", crate::raft::failpoint::ENV];
const SECTIONS: &[&str] = &["raft", "http", "dns", "actions"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This peer's Raft id: a positive number, unique in the cluster, never reused.
    pub id: u64,
    pub data_dir: PathBuf,
    pub raft_addr: String,
    pub http_addr: String,
    pub dns_addr: String,
    /// The region this peer's own DNS clients default to.
    pub region: String,
    /// Run without a cluster secret: peer RPC unauthenticated. For tests on one machine only.
    pub insecure: bool,
    pub raft: RaftConfig,
    pub http: HttpConfig,
    pub dns: DnsConfig,
    pub actions: ActionsConfig,
}

/// How long the remediation queue's history is kept. The leader prunes by its own
/// settings; set the same on every peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    /// Finished actions and done anomalies are forgotten this long after they finished.
    pub retain_ms: u64,
    /// At most this many finished actions (and as many done anomalies) are kept.
    pub retain_max: u32,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self { retain_ms: 7 * 24 * 3600 * 1000, retain_max: 10_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Answer SERVFAIL (so that resolvers try another server) once this peer has heard
    /// nothing from a leader for this many milliseconds; 0: never, answer from the last
    /// known table however old.
    pub max_stale_ms: u64,
    /// UDP responses per second to one client prefix (response-rate limiting); 0: off.
    pub rrl_rate: u32,
    /// Past the rate, every this many responses one is sent truncated (TC=1) so that a
    /// real resolver retries over TCP; the others are dropped. 0: drop them all.
    pub rrl_slip: u32,
    /// The prefix lengths clients are counted by.
    pub rrl_ipv4_prefix: u8,
    pub rrl_ipv6_prefix: u8,
    /// Networks never rate-limited: a local resolver that asks for every client.
    pub rrl_exempt: Vec<ipnet::IpNet>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            max_stale_ms: 0,
            rrl_rate: 100,
            rrl_slip: 2,
            rrl_ipv4_prefix: 24,
            rrl_ipv6_prefix: 56,
            rrl_exempt: vec!["127.0.0.1/32".parse().expect("a network"), "::1/128".parse().expect("a network")],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Take a snapshot (and purge the log before it) every this many applied entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot for followers that are a little behind.
    pub keep_logs: u64,
    /// Most client writes carried by one log entry (group commit).
    pub max_batch: usize,
    /// Log entries proposed but not yet committed, at most.
    pub max_in_flight: usize,
    /// How long `cluster add` waits for a new peer to receive the log before it gives up
    /// and removes it again.
    pub catch_up_timeout_ms: u64,
    /// A connection to the raft port must finish its handshake within this.
    pub handshake_timeout_ms: u64,
    /// A raft-port connection that carries no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Raft-port connections open at once; past it a new one is closed at once.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// How long a write or a linearizable read may wait for a leader before it fails with 503.
    pub request_timeout_ms: u64,
    /// Changes kept for `GET /v1/watch`; a watcher further behind is told to re-read.
    pub watch_history: usize,
    /// From a request's first byte to the end of its headers, at most (slow-header clients).
    pub header_timeout_ms: u64,
    /// A kept-alive connection that starts no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Receiving a request's body, at most; past it `408`.
    pub body_timeout_ms: u64,
    /// Any request but a long poll, at most; past it `503 timeout`. Above
    /// `request_timeout_ms`, so that a write's own wait for the leader ends first.
    pub handler_timeout_ms: u64,
    /// Connections open at once; past it `503 overloaded` and closed.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// Requests being answered at once, other than heartbeats, long polls and probes.
    pub max_requests: usize,
    /// Node heartbeats being answered at once: their own budget, so that a flood of other
    /// requests cannot hold them back and get nodes declared down.
    pub max_heartbeats: usize,
    /// Long polls (`/v1/watch`, change feeds) waiting at once.
    pub max_long_polls: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            id: 0,
            data_dir: PathBuf::new(),
            raft_addr: String::new(),
            http_addr: String::new(),
            dns_addr: String::new(),
            region: "default".into(),
            insecure: false,
            raft: RaftConfig::default(),
            http: HttpConfig::default(),
            dns: DnsConfig::default(),
            actions: ActionsConfig::default(),
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            snapshot_every: 10_000,
            keep_logs: 1_000,
            max_batch: 1024,
            max_in_flight: 2,
            catch_up_timeout_ms: 60_000,
            handshake_timeout_ms: 5_000,
            idle_timeout_ms: 60_000,
            max_connections: 256,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            watch_history: crate::raft::state_machine::DEFAULT_WATCH_HISTORY,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            handler_timeout_ms: 30_000,
            max_connections: 4096,
            max_connections_per_client: 512,
            max_requests: 1024,
            max_heartbeats: 4096,
            max_long_polls: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut value = toml::Value::try_from(Config::default()).expect("defaults serialize");
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
            let from_file: toml::Value = text
                .parse::<toml::Table>()
                .map(toml::Value::Table)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            merge(&mut value, from_file);
        }
        for (name, raw) in env {
            if !name.starts_with("SWITCHBOARD_") || NOT_KEYS.contains(&name.as_str()) {
                continue;
            }
            let key = name["SWITCHBOARD_".len()..].to_ascii_lowercase();
            let table = value.as_table_mut().expect("config is a table");
            // A top-level key wins over a section prefix: SWITCHBOARD_RAFT_ADDR is `raft_addr`.
            let (target, key) = match SECTIONS.iter().find(|s| key.starts_with(&format!("{s}_"))) {
                Some(s) if !table.contains_key(&key) => (
                    table.get_mut(*s).and_then(|t| t.as_table_mut()).expect("section exists"),
                    key[s.len() + 1..].to_string(),
                ),
                _ => (table, key),
            };
            let parsed = match target.get(&key) {
                Some(toml::Value::Integer(_)) => raw.parse().map(toml::Value::Integer).ok(),
                Some(toml::Value::Boolean(_)) => raw.parse().map(toml::Value::Boolean).ok(),
                Some(toml::Value::String(_)) => Some(toml::Value::String(raw.clone())),
                _ => return Err(ConfigError::Invalid(format!("{name}: no such setting (see cluster/peer.toml)"))),
            };
            let parsed =
                parsed.ok_or_else(|| ConfigError::Invalid(format!("{name}='{raw}': not a valid value for `{key}`")))?;
            target.insert(key, parsed);
        }
        value.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))
    }

    /// Checks what the peer needs before it starts, with messages that say what to set.
    pub fn check(&self) -> Result<(), ConfigError> {
        let missing = |what: &str| {
            Err(ConfigError::Invalid(format!(
                "{what} is not set: give --{} or set it in the config file",
                what.replace('_', "-")
            )))
        };
        if self.id == 0 {
            return Err(ConfigError::Invalid("id must be a positive number (--id N)".into()));
        }
        if self.data_dir.as_os_str().is_empty() {
            return missing("data_dir");
        }
        for (name, addr) in
            [("raft_addr", &self.raft_addr), ("http_addr", &self.http_addr), ("dns_addr", &self.dns_addr)]
        {
            if addr.is_empty() {
                return missing(name);
            }
            match addr.parse::<std::net::SocketAddr>() {
                Err(_) => return Err(ConfigError::Invalid(format!("{name} '{addr}' is not IP:PORT"))),
                Ok(a) if a.ip().is_unspecified() && name != "dns_addr" => {
                    return Err(ConfigError::Invalid(format!(
                    "{name} '{addr}' is a wildcard; the other peers dial this address, so give the one they can reach"
                )))
                }
                Ok(_) => {}
            }
        }
        crate::state::validate::label("region", &self.region).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_min_ms <= r.heartbeat_ms * 2 || r.election_max_ms <= r.election_min_ms {
            return Err(ConfigError::Invalid(
                "raft timeouts need 0 < heartbeat_ms, 2 × heartbeat_ms < election_min_ms < election_max_ms".into(),
            ));
        }
        let h = &self.http;
        let positive = [
            ("header_timeout_ms", h.header_timeout_ms as usize),
            ("idle_timeout_ms", h.idle_timeout_ms as usize),
            ("body_timeout_ms", h.body_timeout_ms as usize),
            ("handler_timeout_ms", h.handler_timeout_ms as usize),
            ("max_connections", h.max_connections),
            ("max_connections_per_client", h.max_connections_per_client),
            ("max_requests", h.max_requests),
            ("max_heartbeats", h.max_heartbeats),
            ("max_long_polls", h.max_long_polls),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("http.{name} must be positive")));
        }
        if h.handler_timeout_ms <= h.request_timeout_ms {
            return Err(ConfigError::Invalid(
                "http.handler_timeout_ms must be above http.request_timeout_ms, so that a write's wait for the leader ends first".into(),
            ));
        }
        let d = &self.dns;
        if d.rrl_ipv4_prefix > 32 || d.rrl_ipv6_prefix > 128 {
            return Err(ConfigError::Invalid(
                "dns.rrl_ipv4_prefix is at most 32, dns.rrl_ipv6_prefix at most 128".into(),
            ));
        }
        if r.handshake_timeout_ms == 0 || r.idle_timeout_ms == 0 || r.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "raft.handshake_timeout_ms, idle_timeout_ms and max_connections must be positive".into(),
            ));
        }
        if r.snapshot_every == 0 || r.max_batch == 0 || r.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "raft.snapshot_every, max_batch and max_in_flight must be positive".into(),
            ));
        }
        Ok(())
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("peer.toml");
        std::fs::write(&file, "id = 2\nregion = \"eu\"\n[raft]\nsnapshot_every = 50\nkeep_logs = 7\n").unwrap();
        let c = Config::load(
            Some(&file),
            env(&[("SWITCHBOARD_RAFT_KEEP_LOGS", "9"), ("SWITCHBOARD_CLUSTER_SECRET", "x"), ("HOME", "/")]),
        )
        .unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(c.region, "eu");
        assert_eq!(c.raft.snapshot_every, 50);
        assert_eq!(c.raft.keep_logs, 9);
        assert_eq!(c.raft.heartbeat_ms, RaftConfig::default().heartbeat_ms);
    }

    #[test]
    fn environment_names_top_level_keys_first_and_keeps_types() {
        let c = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_RAFT_ADDR", "127.0.0.1:7001"),
                ("SWITCHBOARD_REGION", "123"),
                ("SWITCHBOARD_INSECURE", "true"),
            ]),
        )
        .unwrap();
        assert_eq!((c.raft_addr.as_str(), c.region.as_str(), c.insecure), ("127.0.0.1:7001", "123", true));
        let err = Config::load(None, env(&[("SWITCHBOARD_RAFT_HEARTBEAT_MS", "fast")])).unwrap_err().to_string();
        assert!(err.contains("SWITCHBOARD_RAFT_HEARTBEAT_MS"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::load(None, env(&[("SWITCHBOARD_RAFT_SNAPSHOT_EVRY", "1")])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("peer.toml");
        std::fs::write(&file, "idd = 2\n").unwrap();
        assert!(Config::load(Some(&file), env(&[])).unwrap_err().to_string().contains("idd"));
    }

    #[test]
    fn check_names_what_is_missing() {
        let c = Config { id: 1, ..Config::default() };
        assert!(c.check().unwrap_err().to_string().contains("data_dir"));
        let c = Config {
            id: 1,
            data_dir: "/tmp/x".into(),
            raft_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
            dns_addr: "nope".into(),
            ..Config::default()
        };
        assert!(c.check().unwrap_err().to_string().contains("dns_addr"));
    }
}
