//! The admin and data HTTP API on `--http-addr` (docs/api.md). Handlers parse and validate
//! input, then call the [`Peer`](crate::peer::Peer); they hold no state of their own.

mod actions;
mod cluster;
mod error;
mod extract;
mod limits;
pub mod listener;
mod objects;
mod registry;
mod resource;
mod server;
mod steering;
mod sync;

pub use error::ApiError;
pub use limits::RequestLimits;
pub use listener::ConnectionLimits;
pub use server::{router, AppState};
