//! Cluster tests: real `switchboard serve` processes on 127.0.0.1, formed and changed the
//! way an operator does it (the CLI and the HTTP API), with `kill -9` for crashes.

mod actions;
mod cli;
mod dispatch;
mod dns;
mod dns_hostile;
mod elections;
mod failover;
mod heartbeats;
mod hostile;
mod limits;
mod membership;
mod objects;
mod operations;
mod paging;
mod util;
mod writes;
