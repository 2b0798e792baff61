//! Thin clients of the resource endpoints: each subcommand is one HTTP call.

use clap::Subcommand;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::client::{print, Client};
use super::CliError;
use crate::api::registry::{DomainBody, NodeBody, RegionBody, SiteBody, ZoneBody};

#[derive(Debug, clap::Args)]
pub struct ReadFlags {
    /// Read this peer's local copy instead of a linearizable read.
    #[arg(long)]
    pub stale: bool,
}

#[derive(Debug, clap::Args)]
pub struct WriteFlags {
    /// Apply only if the resource (for a pin, the site; a lock, the domain; maintenance,
    /// the node; a policy, the policy) is still at this revision (0: must not exist).
    #[arg(long)]
    cas: Option<u64>,
}

pub fn read_query(f: &ReadFlags) -> &'static str {
    if f.stale {
        "?stale"
    } else {
        ""
    }
}

pub fn write_query(f: &WriteFlags) -> String {
    f.cas.map(|c| format!("?cas={c}")).unwrap_or_default()
}

/// One collection of the HTTP API (`/v1/regions`, `/v1/objects`, ...): the put, get, list
/// and delete every resource's subcommands make, with `--stale` and `--cas` carried over.
pub struct Collection<'a> {
    client: &'a Client,
    path: &'static str,
}

impl<'a> Collection<'a> {
    pub fn new(client: &'a Client, path: &'static str) -> Self {
        Self { client, path }
    }

    /// `body`: one of the API's documents (`crate::api`), or JSON built by hand.
    pub async fn put(&self, id: &str, body: &impl Serialize, write: &WriteFlags) -> Result<Value, CliError> {
        let body = serde_json::to_value(body).expect("the API's documents serialise to JSON");
        self.client.call(Method::PUT, &format!("{}/{id}{}", self.path, write_query(write)), Some(&body)).await
    }

    pub async fn get(&self, id: &str, read: &ReadFlags) -> Result<Value, CliError> {
        self.client.get(&format!("{}/{id}{}", self.path, read_query(read))).await
    }

    pub async fn list(&self, read: &ReadFlags) -> Result<Value, CliError> {
        self.client.get(&format!("{}{}", self.path, read_query(read))).await
    }

    pub async fn delete(&self, id: &str, write: &WriteFlags) -> Result<Value, CliError> {
        self.client.call(Method::DELETE, &format!("{}/{id}{}", self.path, write_query(write)), None).await
    }
}

#[derive(Debug, Subcommand)]
pub enum RegionCommand {
    /// Create or replace a region.
    Put {
        name: String,
        /// A client network of the region (repeat for more).
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
        /// A region to fall back to, in order (repeat for more).
        #[arg(long)]
        fallback: Vec<String>,
        #[command(flatten)]
        write: WriteFlags,
    },
    Get {
        name: String,
        #[command(flatten)]
        read: ReadFlags,
    },
    List {
        #[command(flatten)]
        read: ReadFlags,
    },
    Delete {
        name: String,
        #[command(flatten)]
        write: WriteFlags,
    },
}

impl RegionCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let api = Collection::new(client, "/v1/regions");
        let answer = match self {
            RegionCommand::Put { name, cidrs, fallback, write } => {
                api.put(&name, &RegionBody { cidrs, fallback, ..Default::default() }, &write).await?
            }
            RegionCommand::Get { name, read } => api.get(&name, &read).await?,
            RegionCommand::List { read } => api.list(&read).await?,
            RegionCommand::Delete { name, write } => api.delete(&name, &write).await?,
        };
        print(&answer);
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Register or replace a node.
    Put {
        id: String,
        #[arg(long)]
        ip: String,
        #[arg(long)]
        region: String,
        #[arg(long)]
        site: String,
        #[arg(long, default_value_t = 100)]
        capacity: u64,
        #[command(flatten)]
        write: WriteFlags,
    },
    Get {
        id: String,
        #[command(flatten)]
        read: ReadFlags,
    },
    List {
        #[command(flatten)]
        read: ReadFlags,
    },
    Delete {
        id: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Drain the node (DNS moves off it) or return it to service.
    Maintenance {
        id: String,
        #[arg(long, conflicts_with = "off")]
        on: bool,
        #[arg(long)]
        off: bool,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Send one heartbeat for the node (agents normally do this every 500 ms).
    Heartbeat {
        id: String,
        #[arg(long)]
        cpu: f64,
        #[arg(long)]
        load: f64,
        #[arg(long)]
        latency_ms: f64,
        #[arg(long)]
        error_rate: f64,
        #[arg(long, default_value_t = 0.0)]
        bandwidth_mbps: f64,
    },
}

impl NodeCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let api = Collection::new(client, "/v1/nodes");
        let answer = match self {
            NodeCommand::Put { id, ip, region, site, capacity, write } => {
                let body =
                    NodeBody { ip, region, site, capacity, id: None, health: None, maintenance: None, revision: None };
                api.put(&id, &body, &write).await?
            }
            NodeCommand::Get { id, read } => api.get(&id, &read).await?,
            NodeCommand::List { read } => api.list(&read).await?,
            NodeCommand::Delete { id, write } => api.delete(&id, &write).await?,
            NodeCommand::Maintenance { id, on, off, reason, write } => {
                if on == off {
                    return Err(CliError::Usage("give --on or --off".into()));
                }
                let body = json!({ "enabled": on, "reason": reason });
                let path = format!("/v1/nodes/{id}/maintenance{}", write_query(&write));
                client.call(Method::PUT, &path, Some(&body)).await?
            }
            NodeCommand::Heartbeat { id, cpu, load, latency_ms, error_rate, bandwidth_mbps } => {
                let body = json!({ "cpu": cpu, "load": load, "latency_ms": latency_ms, "error_rate": error_rate, "bandwidth_mbps": bandwidth_mbps });
                client.call(Method::POST, &format!("/v1/nodes/{id}/heartbeat"), Some(&body)).await?
            }
        };
        print(&answer);
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Create or replace a zone this cluster answers for.
    Put {
        name: String,
        /// A name server for the apex (repeat for more); none: the peers themselves.
        #[arg(long)]
        ns: Vec<String>,
        #[arg(long)]
        hostmaster: Option<String>,
        #[command(flatten)]
        write: WriteFlags,
    },
    Get {
        name: String,
        #[command(flatten)]
        read: ReadFlags,
    },
    List {
        #[command(flatten)]
        read: ReadFlags,
    },
    Delete {
        name: String,
        #[command(flatten)]
        write: WriteFlags,
    },
}

impl ZoneCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let api = Collection::new(client, "/v1/zones");
        let answer = match self {
            ZoneCommand::Put { name, ns, hostmaster, write } => {
                api.put(&name, &ZoneBody { ns, hostmaster, ..Default::default() }, &write).await?
            }
            ZoneCommand::Get { name, read } => api.get(&name, &read).await?,
            ZoneCommand::List { read } => api.list(&read).await?,
            ZoneCommand::Delete { name, write } => api.delete(&name, &write).await?,
        };
        print(&answer);
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Create or replace a site in a region.
    Put {
        id: String,
        #[arg(long)]
        region: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    Get {
        id: String,
        #[command(flatten)]
        read: ReadFlags,
    },
    List {
        #[command(flatten)]
        read: ReadFlags,
    },
    Delete {
        id: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Pin the site to one of its nodes, whatever the scores.
    Pin {
        id: String,
        node: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Lift the pin.
    Unpin {
        id: String,
        #[command(flatten)]
        write: WriteFlags,
    },
}

impl SiteCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let api = Collection::new(client, "/v1/sites");
        let answer = match self {
            SiteCommand::Put { id, region, write } => {
                api.put(&id, &SiteBody { region, id: None, pin: None, revision: None }, &write).await?
            }
            SiteCommand::Get { id, read } => api.get(&id, &read).await?,
            SiteCommand::List { read } => api.list(&read).await?,
            SiteCommand::Delete { id, write } => api.delete(&id, &write).await?,
            SiteCommand::Pin { id, node, write } => {
                let path = format!("/v1/sites/{id}/pin{}", write_query(&write));
                client.call(Method::PUT, &path, Some(&json!({ "node": node }))).await?
            }
            SiteCommand::Unpin { id, write } => {
                client.call(Method::DELETE, &format!("/v1/sites/{id}/pin{}", write_query(&write)), None).await?
            }
        };
        print(&answer);
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Create or replace a managed domain served by sites.
    Put {
        name: String,
        /// A site that may serve it (repeat for more).
        #[arg(long = "site", required_unless_present = "cname")]
        sites: Vec<String>,
        /// Make the domain an alias of another name (answered as a CNAME), instead of sites.
        #[arg(long, conflicts_with = "sites")]
        cname: Option<String>,
        /// Seconds resolvers may cache the answer.
        #[arg(long)]
        ttl: Option<u64>,
        #[command(flatten)]
        write: WriteFlags,
    },
    Get {
        name: String,
        #[command(flatten)]
        read: ReadFlags,
    },
    List {
        #[command(flatten)]
        read: ReadFlags,
    },
    Delete {
        name: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Lock the domain to a site in every region.
    Lock {
        name: String,
        site: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Lift the lock.
    Unlock {
        name: String,
        #[command(flatten)]
        write: WriteFlags,
    },
}

impl DomainCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let api = Collection::new(client, "/v1/domains");
        let answer = match self {
            DomainCommand::Put { name, sites, ttl, cname, write } => {
                api.put(&name, &DomainBody { sites, ttl, cname, ..Default::default() }, &write).await?
            }
            DomainCommand::Get { name, read } => api.get(&name, &read).await?,
            DomainCommand::List { read } => api.list(&read).await?,
            DomainCommand::Delete { name, write } => api.delete(&name, &write).await?,
            DomainCommand::Lock { name, site, write } => {
                let path = format!("/v1/domains/{name}/lock{}", write_query(&write));
                client.call(Method::PUT, &path, Some(&json!({ "site": site }))).await?
            }
            DomainCommand::Unlock { name, write } => {
                client.call(Method::DELETE, &format!("/v1/domains/{name}/lock{}", write_query(&write)), None).await?
            }
        };
        print(&answer);
        Ok(())
    }
}

/// The elected table, one domain's answer for one client, and the scoring policy.
#[derive(Debug, Subcommand)]
pub enum DispatchCommand {
    /// The elected table: one row per (domain, region).
    Table {
        #[command(flatten)]
        read: ReadFlags,
    },
    /// The answer a client would get for a name, and why.
    Resolve {
        name: String,
        /// The client's address (default: this peer's own region).
        #[arg(long)]
        client: Option<String>,
    },
    /// Show the scoring policy.
    Policy,
    /// Change the scoring policy; fields not given keep their values.
    SetPolicy {
        #[arg(long)]
        latency: Option<f64>,
        #[arg(long)]
        load: Option<f64>,
        #[arg(long)]
        error_rate: Option<f64>,
        #[arg(long)]
        cpu: Option<f64>,
        /// A challenger must cost this fraction less than a healthy incumbent (0.1 = 10%).
        #[arg(long)]
        hysteresis: Option<f64>,
        /// A node is down after this many milliseconds without a heartbeat.
        #[arg(long)]
        down_after_ms: Option<u64>,
        #[command(flatten)]
        write: WriteFlags,
    },
}

impl DispatchCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let answer = match self {
            DispatchCommand::Table { read } => {
                client.get_all(&format!("/v1/dispatch{}", read_query(&read)), "rows").await?
            }
            DispatchCommand::Resolve { name, client: addr } => {
                let query = addr.map(|a| format!("&client={a}")).unwrap_or_default();
                client.get(&format!("/v1/resolve?name={name}{query}")).await?
            }
            DispatchCommand::Policy => client.get("/v1/policy/scoring").await?,
            DispatchCommand::SetPolicy { latency, load, error_rate, cpu, hysteresis, down_after_ms, write } => {
                let mut body = serde_json::Map::new();
                let fields = [
                    ("latency", latency),
                    ("load", load),
                    ("error_rate", error_rate),
                    ("cpu", cpu),
                    ("hysteresis", hysteresis),
                ];
                for (k, v) in fields {
                    if let Some(v) = v {
                        body.insert(k.into(), json!(v));
                    }
                }
                if let Some(d) = down_after_ms {
                    body.insert("down_after_ms".into(), json!(d));
                }
                let path = format!("/v1/policy/scoring{}", write_query(&write));
                client.call(Method::PUT, &path, Some(&serde_json::Value::Object(body))).await?
            }
        };
        print(&answer);
        Ok(())
    }
}
