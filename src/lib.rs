//! switchboard: a self-contained traffic coordinator.
//!
//! Three or five peers replicate, through Raft on RocksDB, a registry of edge nodes and
//! the dispatch state derived from it; every peer answers the HTTP API and, from its
//! local copy, DNS. See docs/architecture.md for the map of the modules:
//!
//! - [`state`]: the pure, deterministic model (commands and `apply`);
//! - [`raft`]: consensus, storage and the peer-to-peer network;
//! - [`peer`]: a running peer (writes through the leader, reads, membership);
//! - [`dispatch`]: failure detection, scoring and election of the node for each domain;
//! - [`dns`]: authoritative DNS from the local copy of the elected table;
//! - [`placement`]: object placement, workload scheduling and the lazy-sync timer;
//! - [`actions`]: the leader's executor of built-in remediation actions and lease timer;
//! - [`api`]: the documents of the API, typed, shared by [`http`] and [`cli`];
//! - [`http`]: the API;
//! - [`cli`]: the `switchboard` command, including `serve` and `dev`;
//! - [`supervise`]: a peer's background tasks, none of which may end unnoticed;
//! - [`net`]: what every TCP listener shares (accept backoff, places per client).

pub mod actions;
pub mod api;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod dns;
pub mod http;
pub mod metrics;
pub mod net;
pub mod peer;
pub mod placement;
pub mod raft;
pub mod server;
pub mod state;
pub mod supervise;
