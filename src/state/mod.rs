//! The replicated model: what every peer holds, and the deterministic rules that change it.
//!
//! Nothing here does I/O. A [`Command`] is validated at the edge (HTTP, CLI), travels through
//! the Raft log inside a [`Batch`], and is applied by [`State::apply`] on every peer in log
//! order. Given the same log, every peer ends with the same [`State`], byte for byte; the
//! state machine in `raft/` only persists and snapshots it.
//!
//! Every resource carries `revision`: the log index of the entry that last changed it. A
//! command may carry `cas`, the revision it expects (0: the resource must not exist); a
//! mismatch is a deterministic [`Error::CasMismatch`] and changes nothing.

pub mod actions;
mod apply;
#[cfg(test)]
mod apply_props;
mod changes;
pub mod clock;
mod command;
mod error;
mod model;
pub mod objects;
mod registry;
mod table;
pub mod validate;

pub use changes::{Change, Op, TOPICS};
pub use command::{
    Batch, BatchResult, Command, Detail, DomainSpec, NodeSpec, Outcome, RegionReport, RegionSpec, RowChange, ZoneSpec,
    UNSTAMPED,
};
pub use error::Error;
pub use model::{DispatchRow, Domain, Health, Node, Policy, Reason, Region, Site, State, Weights, Zone};
pub use table::{DispatchTable, Row};
