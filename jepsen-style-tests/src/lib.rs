//! The fault-injection suite of switchboard: histories, checkers, and a runner that starts
//! real peers in network namespaces and injects faults while clients record a history.
//! See README.md and docs/jepsen.md.

pub mod check;
pub mod checker;
pub mod history;
pub mod run;
