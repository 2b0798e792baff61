//! Object metadata from the command line: objects, conflicts, replicas and repairs,
//! placement and scheduling; a region's change feed; and the watch stream.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{print, Client};
use super::resource::{read_query, Collection, ReadFlags, WriteFlags};
use super::CliError;

/// `sea=3,eu=1` → `{"sea": 3, "eu": 1}`.
fn parse_clock(raw: &str) -> Result<Value, CliError> {
    let mut map = Map::new();
    for pair in raw.split(',').filter(|p| !p.is_empty()) {
        let (region, n) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--clock: '{pair}' is not REGION=N (e.g. --clock sea=3,eu=1)")))?;
        let n: u64 = n.parse().map_err(|_| CliError::Usage(format!("--clock: '{n}' is not a whole number")))?;
        map.insert(region.to_string(), json!(n));
    }
    Ok(Value::Object(map))
}

/// `key=value`: the value as JSON when it parses (numbers, true, objects), else a string.
fn parse_attrs(raw: &[String]) -> Result<Value, CliError> {
    let mut map = Map::new();
    for pair in raw {
        let (k, v) =
            pair.split_once('=').ok_or_else(|| CliError::Usage(format!("--attr: '{pair}' is not KEY=VALUE")))?;
        map.insert(k.to_string(), serde_json::from_str(v).unwrap_or_else(|_| json!(v)));
    }
    Ok(Value::Object(map))
}

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Write a version of an object from a region, with that region's vector clock.
    Put {
        id: String,
        /// The writing region.
        #[arg(long)]
        region: String,
        /// The write's vector clock, e.g. `sea=3,eu=1`.
        #[arg(long)]
        clock: String,
        #[arg(long)]
        size: u64,
        #[arg(long)]
        hash: String,
        /// An attribute KEY=VALUE (repeat for more); VALUE is JSON or a string.
        #[arg(long = "attr")]
        attrs: Vec<String>,
        /// last_writer_wins, merge, manual or fork.
        #[arg(long)]
        strategy: Option<String>,
        /// eager, lazy or on_demand.
        #[arg(long)]
        sync: Option<String>,
        /// Wanted node replicas.
        #[arg(long)]
        replicas: Option<u64>,
        /// The writer's clock in ms (default: now); orders last-writer-wins.
        #[arg(long)]
        timestamp_ms: Option<u64>,
        #[command(flatten)]
        write: WriteFlags,
    },
    Get {
        id: String,
        #[command(flatten)]
        read: ReadFlags,
    },
    /// Every object (paged with --after), or the ones named with --ids.
    List {
        /// Comma-separated ids: a batch get.
        #[arg(long)]
        ids: Option<String>,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        read: ReadFlags,
    },
    Delete {
        id: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Objects whose concurrent versions wait for a decision (and fork siblings).
    Conflicts {
        #[command(flatten)]
        read: ReadFlags,
    },
    /// Settle a conflict: keep version N (--pick), or replace all with a new version.
    Resolve {
        id: String,
        #[arg(long, conflicts_with_all = ["region", "hash"])]
        pick: Option<u64>,
        #[arg(long, requires_all = ["hash", "size"])]
        region: Option<String>,
        #[arg(long)]
        hash: Option<String>,
        #[arg(long)]
        size: Option<u64>,
        #[arg(long = "attr")]
        attrs: Vec<String>,
    },
    /// A node holds a healthy copy (--healthy) or lost it (--missing).
    Replica {
        id: String,
        node: String,
        #[arg(long, conflicts_with = "missing")]
        healthy: bool,
        #[arg(long)]
        missing: bool,
    },
    /// Objects under their replication factor, with where to copy them.
    Repairs {
        #[command(flatten)]
        read: ReadFlags,
    },
    /// The nodes a content hash belongs on.
    Placement {
        hash: String,
        #[arg(long, default_value_t = 3)]
        rf: u64,
    },
    /// The best node for a workload.
    Schedule {
        #[arg(long)]
        cpu: Option<f64>,
        #[arg(long)]
        ram_mb: Option<f64>,
        #[arg(long)]
        gpu: Option<f64>,
        #[arg(long)]
        max_latency_ms: Option<f64>,
        #[arg(long)]
        io_tolerance: Option<f64>,
    },
}

impl ObjectCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let objects = Collection::new(client, "/v1/objects");
        let answer = match self {
            ObjectCommand::Put {
                id,
                region,
                clock,
                size,
                hash,
                attrs,
                strategy,
                sync,
                replicas,
                timestamp_ms,
                write,
            } => {
                let mut body = json!({
                    "region": region, "clock": parse_clock(&clock)?, "size": size, "hash": hash,
                    "attrs": parse_attrs(&attrs)?,
                });
                for (k, v) in [
                    ("strategy", strategy.map(Value::from)),
                    ("sync", sync.map(Value::from)),
                    ("replicas", replicas.map(Value::from)),
                    ("timestamp_ms", timestamp_ms.map(Value::from)),
                ] {
                    if let Some(v) = v {
                        body[k] = v;
                    }
                }
                objects.put(&id, &body, &write).await?
            }
            ObjectCommand::Get { id, read } => objects.get(&id, &read).await?,
            ObjectCommand::List { ids, after, read } => {
                let mut query: Vec<String> = Vec::new();
                if read.stale {
                    query.push("stale".into());
                }
                query.extend(ids.map(|i| format!("ids={i}")));
                query.extend(after.map(|a| format!("after={a}")));
                client.get(&format!("/v1/objects?{}", query.join("&"))).await?
            }
            ObjectCommand::Delete { id, write } => objects.delete(&id, &write).await?,
            ObjectCommand::Conflicts { read } => Collection::new(client, "/v1/conflicts").list(&read).await?,
            ObjectCommand::Resolve { id, pick, region, hash, size, attrs } => {
                let body = match (pick, region) {
                    (Some(n), _) => json!({ "pick": n }),
                    (None, Some(region)) => json!({"version": {
                        "region": region, "hash": hash, "size": size, "attrs": parse_attrs(&attrs)?,
                    }}),
                    (None, None) => {
                        return Err(CliError::Usage("give --pick N, or --region, --hash and --size".into()))
                    }
                };
                client.call(Method::POST, &format!("/v1/conflicts/{id}/resolve"), Some(&body)).await?
            }
            ObjectCommand::Replica { id, node, healthy, missing } => {
                let state = match (healthy, missing) {
                    (true, false) => "healthy",
                    (false, true) => "missing",
                    _ => return Err(CliError::Usage("give --healthy or --missing".into())),
                };
                let body = json!({"node": node, "state": state});
                client.call(Method::POST, &format!("/v1/objects/{id}/replicas"), Some(&body)).await?
            }
            ObjectCommand::Repairs { read } => {
                client.get_all(&format!("/v1/repairs{}", read_query(&read)), "repairs").await?
            }
            ObjectCommand::Placement { hash, rf } => client.get(&format!("/v1/placement/{hash}?rf={rf}")).await?,
            ObjectCommand::Schedule { cpu, ram_mb, gpu, max_latency_ms, io_tolerance } => {
                let body = json!({
                    "cpu_req": cpu, "ram_req_mb": ram_mb, "gpu_req": gpu, "max_latency_ms": max_latency_ms,
                    "io_tolerance": io_tolerance,
                });
                client.call(Method::POST, "/v1/schedule", Some(&body)).await?
            }
        };
        print(&answer);
        Ok(())
    }
}

/// A region's side of the sync engine.
#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// The region's unacknowledged changes after a cursor (long poll with --wait).
    Changes {
        region: String,
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Seconds to wait for a change when there is none.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// The region has applied these events (ids), or every one up to --upto.
    Ack {
        region: String,
        events: Vec<u64>,
        #[arg(long)]
        upto: Option<u64>,
    },
    /// Queue objects for the region (on-demand sync).
    Pull { region: String, objects: Vec<String> },
    /// Report the region's state (healthy, degraded, offline).
    Heartbeat {
        region: String,
        #[arg(long, default_value = "healthy")]
        state: String,
        #[arg(long, default_value_t = 0)]
        sync_lag: u64,
        #[arg(long, default_value_t = 0)]
        storage_used: u64,
        #[arg(long, default_value_t = 0.0)]
        load_level: f64,
    },
    /// Every region's sync state and the sync policy.
    Status {
        /// Only regions with a recent heartbeat that are not offline.
        #[arg(long)]
        active: bool,
    },
}

impl FeedCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let answer = match self {
            FeedCommand::Changes { region, since, wait } => {
                client.get(&format!("/v1/regions/{region}/changes?since={since}&wait={wait}")).await?
            }
            FeedCommand::Ack { region, events, upto } => {
                let body = json!({"events": events, "upto": upto});
                client.call(Method::POST, &format!("/v1/regions/{region}/acks"), Some(&body)).await?
            }
            FeedCommand::Pull { region, objects } => {
                let body = json!({ "objects": objects });
                client.call(Method::POST, &format!("/v1/regions/{region}/pull"), Some(&body)).await?
            }
            FeedCommand::Heartbeat { region, state, sync_lag, storage_used, load_level } => {
                let body = json!({
                    "state": state, "sync_lag": sync_lag, "storage_used": storage_used, "load_level": load_level,
                });
                client.call(Method::POST, &format!("/v1/regions/{region}/heartbeat"), Some(&body)).await?
            }
            FeedCommand::Status { active } => client.get(if active { "/v1/sync?active" } else { "/v1/sync" }).await?,
        };
        print(&answer);
        Ok(())
    }
}

/// Prints every change after a revision as it happens, one JSON line each, until Ctrl-C.
pub async fn watch(client: &Client, since: Option<u64>, topics: Option<String>) -> Result<(), CliError> {
    let mut since = match since {
        Some(s) => s,
        None => client.get("/v1/cluster").await?["applied_index"].as_u64().unwrap_or(0),
    };
    let topics = topics.map(|t| format!("&topics={t}")).unwrap_or_default();
    loop {
        let answer = client.get(&format!("/v1/watch?since={since}&wait=30{topics}")).await?;
        for change in answer["changes"].as_array().into_iter().flatten() {
            println!("{change}");
        }
        since = answer["revision"].as_u64().unwrap_or(since);
    }
}
