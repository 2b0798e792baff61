use serde::{Deserialize, Serialize};

/// Why a command was refused. Every variant is deterministic: the same command against the
/// same state fails the same way on every peer, so these are answers to the client, never
/// reasons to stop a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// The input is malformed; `field` names the offending part of the request.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The resource named does not exist.
    #[error("{kind} '{id}' does not exist")]
    NotFound { kind: String, id: String },
    /// `?cas=` named a revision that is no longer current.
    #[error("{kind} '{id}' is at revision {current}, not {expected}; re-read it and retry")]
    CasMismatch { kind: String, id: String, expected: u64, current: u64 },
    /// The resource is still referenced and cannot be removed.
    #[error("{kind} '{id}' is still used by {user}; remove that first")]
    InUse { kind: String, id: String, user: String },
    /// The command cannot apply in the current state; the message says what to do first.
    #[error("{message}")]
    Refused { message: String },
    /// Too many actions for one target lately.
    #[error("target '{target}' already had {limit} actions in the last {window_ms} ms; retry in {retry_after_ms} ms")]
    RateLimited { target: String, limit: u32, window_ms: u64, retry_after_ms: u64 },
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), message: message.into() }
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        Error::NotFound { kind: kind.into(), id: id.into() }
    }
}
