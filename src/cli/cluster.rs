use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{print, Client};
use super::CliError;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Form a new cluster. The first URL runs the init; the others are asked who they are.
    Init {
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// Leader, term, members and log positions, as seen by the endpoint.
    Status,
    /// Add the peer at URL: as learner, caught up, then promoted to voter.
    Add { url: String },
    /// Remove peer ID from the cluster.
    Remove { id: u64 },
}

impl ClusterCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let answer = match self {
            ClusterCommand::Init { urls } => {
                let first = Client::new(&urls[0]);
                first.call(Method::POST, "/v1/cluster/init", Some(&json!({ "peers": urls }))).await?
            }
            ClusterCommand::Status => client.get("/v1/cluster").await?,
            ClusterCommand::Add { url } => {
                client.call(Method::POST, "/v1/cluster/peers", Some(&json!({ "url": url }))).await?
            }
            ClusterCommand::Remove { id } => {
                client.call(Method::DELETE, &format!("/v1/cluster/peers/{id}"), None).await?
            }
        };
        print(&answer);
        Ok(())
    }
}
