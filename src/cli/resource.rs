//! Thin clients of the resource endpoints: each subcommand is one HTTP call.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{print, Client};
use super::CliError;

#[derive(Debug, clap::Args)]
pub struct ReadFlags {
    /// Read this peer's local copy instead of a linearizable read.
    #[arg(long)]
    stale: bool,
}

#[derive(Debug, clap::Args)]
pub struct WriteFlags {
    /// Apply only if the resource is still at this revision (0: must not exist).
    #[arg(long)]
    cas: Option<u64>,
}

fn read_query(f: &ReadFlags) -> &'static str {
    if f.stale {
        "?stale"
    } else {
        ""
    }
}

fn write_query(f: &WriteFlags) -> String {
    f.cas.map(|c| format!("?cas={c}")).unwrap_or_default()
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
        let answer = match self {
            RegionCommand::Put { name, cidrs, fallback, write } => {
                let body = json!({ "cidrs": cidrs, "fallback": fallback });
                client.call(Method::PUT, &format!("/v1/regions/{name}{}", write_query(&write)), Some(&body)).await?
            }
            RegionCommand::Get { name, read } => {
                client.get(&format!("/v1/regions/{name}{}", read_query(&read))).await?
            }
            RegionCommand::List { read } => client.get(&format!("/v1/regions{}", read_query(&read))).await?,
            RegionCommand::Delete { name, write } => {
                client.call(Method::DELETE, &format!("/v1/regions/{name}{}", write_query(&write)), None).await?
            }
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
}

impl NodeCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let answer = match self {
            NodeCommand::Put { id, ip, region, site, capacity, write } => {
                let body = json!({ "ip": ip, "region": region, "site": site, "capacity": capacity });
                client.call(Method::PUT, &format!("/v1/nodes/{id}{}", write_query(&write)), Some(&body)).await?
            }
            NodeCommand::Get { id, read } => client.get(&format!("/v1/nodes/{id}{}", read_query(&read))).await?,
            NodeCommand::List { read } => client.get(&format!("/v1/nodes{}", read_query(&read))).await?,
            NodeCommand::Delete { id, write } => {
                client.call(Method::DELETE, &format!("/v1/nodes/{id}{}", write_query(&write)), None).await?
            }
        };
        print(&answer);
        Ok(())
    }
}
