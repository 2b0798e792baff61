/// Why a peer could not carry out a request, grouped by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command was refused by the state machine: answer the client, change nothing.
    #[error(transparent)]
    Rejected(#[from] crate::state::Error),
    /// The request is not valid for the cluster as it is (e.g. init twice, removing a
    /// peer that is not a member).
    #[error("{0}")]
    Conflict(String),
    /// Bad input that only the peer can judge, e.g. an unreachable peer URL.
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    /// No leader could be reached in time: the request was never handed to a leader, so
    /// nothing was written.
    #[error("{0}")]
    NoLeader(String),
    /// The request reached the leader but its outcome is unknown (a connection broke or a
    /// deadline passed after it was sent). Retry with `?cas=` to be safe.
    #[error("{0}")]
    Indeterminate(String),
    /// The peer cannot go on (storage failure): it should be restarted.
    #[error("{0}")]
    Fatal(String),
}
