/// What the command line reports: one line, then exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The peer answered with an error.
    #[error("{status}: {message}")]
    Api { status: u16, message: String },
    /// The peer could not be reached.
    #[error("cannot reach {endpoint}: {reason} (is a peer running there? set --endpoint or SWITCHBOARD_ENDPOINT)")]
    Unreachable { endpoint: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Dev(String),
}
