//! The remediation queue from the command line: submit and inspect actions, act as a
//! worker (claim, complete, fail), the engine status and the action policy.
//!
//! Required options are checked here rather than by clap, so that a usage error is one
//! line on stderr and exit status 1, like every other error of the command.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{print, Client};
use super::resource::{read_query, write_query, ReadFlags, WriteFlags};
use super::CliError;

fn required<T>(value: Option<T>, flag: &str, example: &str) -> Result<T, CliError> {
    value.ok_or_else(|| CliError::Usage(format!("{flag} is required (e.g. {flag} {example})")))
}

fn action_id(raw: &str) -> Result<u64, CliError> {
    raw.parse().map_err(|_| CliError::Usage(format!("action id '{raw}' is not a whole number")))
}

/// `--param key=value`: the value as JSON when it parses (numbers, true, objects), else a string.
fn parse_params(raw: &[String]) -> Result<Value, CliError> {
    let mut map = Map::new();
    for pair in raw {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| CliError::Usage(format!("--param: '{pair}' is not KEY=VALUE (e.g. --param reason=disk)")))?;
        map.insert(k.to_string(), serde_json::from_str(v).unwrap_or_else(|_| json!(v)));
    }
    Ok(Value::Object(map))
}

/// `--exclusive a,b` → `["a", "b"]`.
fn parse_pair(raw: &str) -> Result<Value, CliError> {
    match raw.split_once(',') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(',') => Ok(json!([a, b])),
        _ => Err(CliError::Usage(format!(
            "--exclusive: '{raw}' is not TYPE,TYPE (e.g. --exclusive node_remediation,resource_scaling)"
        ))),
    }
}

#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// Queue an action (conflicts, dedup and the rate limit are decided by the cluster).
    Submit {
        /// The action type, e.g. drain_node (built-in) or restart_service (for a worker).
        #[arg(long = "type")]
        kind: Option<String>,
        /// What it acts on: a node id, a domain, a site, or any name a worker understands.
        #[arg(long)]
        target: Option<String>,
        /// deterministic (default) or ai_driven.
        #[arg(long)]
        source: Option<String>,
        /// 1 (highest) to 5; default 3.
        #[arg(long)]
        priority: Option<u64>,
        /// 0.0 to 1.0; default 1.0.
        #[arg(long)]
        confidence: Option<f64>,
        /// A parameter KEY=VALUE (repeat for more); VALUE is JSON or a string.
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// Every action, or those in one status (queued ones in queue order).
    List {
        /// queued, running, completed, failed or superseded.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        read: ReadFlags,
    },
    /// One action.
    Show {
        id: String,
        #[command(flatten)]
        read: ReadFlags,
    },
    /// As a worker: take the first queued action of these types, under a lease.
    Claim {
        /// An action type this worker handles (repeat for more).
        #[arg(long = "type")]
        kinds: Vec<String>,
        #[arg(long)]
        worker: Option<String>,
        /// The lease in seconds (default 30): report before it runs out.
        #[arg(long)]
        lease_s: Option<u64>,
    },
    /// As the worker holding it: the action succeeded.
    Complete {
        id: String,
        #[arg(long)]
        worker: Option<String>,
        #[arg(long)]
        result: Option<String>,
    },
    /// As the worker holding it: the action failed (it is retried while attempts remain).
    Fail {
        id: String,
        #[arg(long)]
        worker: Option<String>,
        #[arg(long)]
        error: Option<String>,
    },
    /// The engine status: queue sizes, conflicts, layers, the policy.
    Status {
        #[command(flatten)]
        read: ReadFlags,
    },
    /// Change the action policy (the options given); without options, print it.
    Policy {
        /// An AI-driven action below this confidence loses a conflict (0.0 to 1.0).
        #[arg(long)]
        confidence_threshold: Option<f64>,
        /// Most actions running at once.
        #[arg(long)]
        max_active: Option<u64>,
        /// Attempts before an action is failed.
        #[arg(long)]
        max_attempts: Option<u64>,
        /// Wait before the first retry, doubled for each further one.
        #[arg(long)]
        retry_backoff_ms: Option<u64>,
        /// At most this many actions per target within the rate window.
        #[arg(long)]
        rate_limit: Option<u64>,
        #[arg(long)]
        rate_window_ms: Option<u64>,
        /// A pair of mutually exclusive types TYPE,TYPE (repeat for more); replaces the list.
        #[arg(long)]
        exclusive: Vec<String>,
        /// Empty the list of exclusive pairs.
        #[arg(long, conflicts_with = "exclusive")]
        no_exclusive: bool,
        #[command(flatten)]
        write: WriteFlags,
    },
}

impl ActionCommand {
    pub async fn run(self, client: &Client) -> Result<(), CliError> {
        let answer = match self {
            ActionCommand::Submit { kind, target, source, priority, confidence, params } => {
                let mut body = json!({
                    "type": required(kind, "--type", "drain_node")?,
                    "target": required(target, "--target", "sg-edge-1")?,
                });
                let parameters = parse_params(&params)?;
                for (k, v) in [
                    ("source", source.map(Value::from)),
                    ("priority", priority.map(Value::from)),
                    ("confidence", confidence.map(Value::from)),
                    ("parameters", (!params.is_empty()).then_some(parameters)),
                ] {
                    if let Some(v) = v {
                        body[k] = v;
                    }
                }
                client.call(Method::POST, "/v1/actions", Some(&body)).await?
            }
            ActionCommand::List { status, read } => {
                let mut query: Vec<String> = Vec::new();
                query.extend(status.map(|s| format!("status={s}")));
                if read.stale {
                    query.push("stale".into());
                }
                let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
                client.get_all(&format!("/v1/actions{query}"), "actions").await?
            }
            ActionCommand::Show { id, read } => {
                client.get(&format!("/v1/actions/{}{}", action_id(&id)?, read_query(&read))).await?
            }
            ActionCommand::Claim { kinds, worker, lease_s } => {
                if kinds.is_empty() {
                    return Err(CliError::Usage(
                        "--type is required: the action types this worker handles (repeat for more)".into(),
                    ));
                }
                let mut body = json!({"types": kinds, "worker": required(worker, "--worker", "w1")?});
                if let Some(l) = lease_s {
                    body["lease_s"] = json!(l);
                }
                client.call(Method::POST, "/v1/actions/claim", Some(&body)).await?
            }
            ActionCommand::Complete { id, worker, result } => {
                let id = action_id(&id)?;
                let mut body = json!({"worker": required(worker, "--worker", "w1")?});
                if let Some(r) = result {
                    body["result"] = json!(r);
                }
                client.call(Method::POST, &format!("/v1/actions/{id}/complete"), Some(&body)).await?
            }
            ActionCommand::Fail { id, worker, error } => {
                let id = action_id(&id)?;
                let mut body = json!({"worker": required(worker, "--worker", "w1")?});
                if let Some(e) = error {
                    body["error"] = json!(e);
                }
                client.call(Method::POST, &format!("/v1/actions/{id}/fail"), Some(&body)).await?
            }
            ActionCommand::Status { read } => client.get(&format!("/v1/status{}", read_query(&read))).await?,
            ActionCommand::Policy {
                confidence_threshold,
                max_active,
                max_attempts,
                retry_backoff_ms,
                rate_limit,
                rate_window_ms,
                exclusive,
                no_exclusive,
                write,
            } => {
                let mut body = Map::new();
                for (k, v) in [
                    ("confidence_threshold", confidence_threshold.map(Value::from)),
                    ("max_active", max_active.map(Value::from)),
                    ("max_attempts", max_attempts.map(Value::from)),
                    ("retry_backoff_ms", retry_backoff_ms.map(Value::from)),
                    ("rate_limit", rate_limit.map(Value::from)),
                    ("rate_window_ms", rate_window_ms.map(Value::from)),
                ] {
                    if let Some(v) = v {
                        body.insert(k.into(), v);
                    }
                }
                if no_exclusive {
                    body.insert("exclusive".into(), json!([]));
                } else if !exclusive.is_empty() {
                    let pairs = exclusive.iter().map(|p| parse_pair(p)).collect::<Result<Vec<_>, _>>()?;
                    body.insert("exclusive".into(), Value::Array(pairs));
                }
                if body.is_empty() {
                    // There is no GET of the policy alone: it is part of the status.
                    let status = client.get("/v1/status").await?;
                    json!({"policy": status["policy"]})
                } else {
                    let path = format!("/v1/policy/actions{}", write_query(&write));
                    client.call(Method::PUT, &path, Some(&Value::Object(body))).await?
                }
            }
        };
        print(&answer);
        Ok(())
    }
}
