//! Authoritative DNS in every peer, answered from the peer's own copy of the elected table.
//!
//! After every applied change a builder task turns the state into an immutable
//! [`Snapshot`] (zones, domains with their answer per region, the client networks) and
//! swaps it in whole. A query loads the current snapshot, never waits for Raft and never
//! takes a lock the apply path holds, so DNS keeps answering, from the last known good
//! table, while there is no leader or no quorum. The SOA serial is the applied log index
//! the snapshot reflects, so an answer can be tied to a state of the cluster.
//!
//! The client's region comes from the EDNS Client Subnet option when present (echoed with
//! its scope, RFC 7871), else the source address, matched against the regions' networks by
//! longest prefix, else the peer's own `--region`. Answers are authoritative (AA) inside the
//! zones and REFUSED outside them; SOA and NS at the apex; NXDOMAIN only when nothing
//! exists at or below the name, NODATA otherwise, both with the SOA (RFC 2308); ANY is
//! answered minimally (RFC 8482); EDNS versions other than 0 get BADVERS; an answer too
//! large for UDP has TC set and is available over TCP.
//!
//! UDP is answered by one dedicated thread, in batches (`recvmmsg`/`sendmmsg`); the common
//! query (one A or AAAA question for a managed name) is answered without decoding and
//! encoding whole messages, with the same bytes the general path produces.

mod answer;
pub mod rrl;
mod server;
mod snapshot;

pub use answer::{respond, Answered, Context, Transport};
pub use server::serve;
pub use snapshot::Snapshot;
