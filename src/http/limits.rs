//! Request budgets: how many requests run at once, how long one may take, and a budget of
//! their own for node heartbeats, so that a flood of API calls can never starve the
//! heartbeats and get nodes declared down.
//!
//! | requests | budget (setting of `[http]`) | time limit |
//! |---|---|---|
//! | node heartbeats (`POST /v1/nodes/ID/heartbeat`) | `max_heartbeats` | `handler_timeout_ms` |
//! | long polls (`/v1/watch`, `/v1/regions/R/changes`) | `max_long_polls` | their own `wait` (at most 60 s) |
//! | `/health`, `/ready` | none: they must answer under any load | `handler_timeout_ms` |
//! | every other request | `max_requests` | `handler_timeout_ms` |
//!
//! A request over its budget is answered at once, `503 overloaded` with `Retry-After`,
//! rather than queued. A request past its time limit is answered `503 timeout`; a write
//! may still be applied after that, as with any request whose answer was lost.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::{ApiError, AppState};
use crate::config::HttpConfig;

/// The request budgets of one peer.
pub struct RequestLimits {
    pub handler_timeout: Duration,
    pub body_timeout: Duration,
    requests: Arc<Semaphore>,
    heartbeats: Arc<Semaphore>,
    long_polls: Arc<Semaphore>,
}

impl RequestLimits {
    pub fn from_config(c: &HttpConfig) -> Self {
        Self {
            handler_timeout: Duration::from_millis(c.handler_timeout_ms),
            body_timeout: Duration::from_millis(c.body_timeout_ms),
            requests: Arc::new(Semaphore::new(c.max_requests)),
            heartbeats: Arc::new(Semaphore::new(c.max_heartbeats)),
            long_polls: Arc::new(Semaphore::new(c.max_long_polls)),
        }
    }
}

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Heartbeat,
    LongPoll,
    Probe,
    Other,
}

fn kind(path: &str) -> Kind {
    let mut parts = path.trim_start_matches('/').split('/');
    let parts: [Option<&str>; 5] = std::array::from_fn(|_| parts.next());
    match parts {
        [Some("health" | "ready"), None, ..] => Kind::Probe,
        [Some("v1"), Some("nodes"), Some(_), Some("heartbeat"), None] => Kind::Heartbeat,
        [Some("v1"), Some("watch"), None, ..] | [Some("v1"), Some("regions"), Some(_), Some("changes"), None] => {
            Kind::LongPoll
        }
        _ => Kind::Other,
    }
}

fn overloaded(what: &str) -> Response {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!("this peer is running its limit of {what} at once; retry shortly, or on another peer"),
    );
    e.retry_after_s = Some(1);
    e.into_response()
}

/// The middleware: takes a place in the request's budget, and bounds its time.
pub async fn limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let limits = &app.limits;
    let kind = kind(request.uri().path());
    let (budget, what) = match kind {
        Kind::Probe => (None, ""),
        Kind::Heartbeat => (Some(&limits.heartbeats), "heartbeats"),
        Kind::LongPoll => (Some(&limits.long_polls), "long polls"),
        Kind::Other => (Some(&limits.requests), "requests"),
    };
    let _permit = match budget.map(|b| b.clone().try_acquire_owned()) {
        Some(Err(_)) => return overloaded(what),
        Some(Ok(permit)) => Some(permit),
        None => None,
    };
    if kind == Kind::LongPoll {
        // Bounded by their own `wait`.
        return next.run(request).await;
    }
    match tokio::time::timeout(limits.handler_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "no answer within {} ms; a write may still be applied: read before retrying it",
                    limits.handler_timeout.as_millis()
                ),
            );
            e.retry_after_s = Some(1);
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_draw_on_their_own_budget() {
        assert_eq!(kind("/v1/nodes/n1/heartbeat"), Kind::Heartbeat);
        assert_eq!(kind("/v1/watch"), Kind::LongPoll);
        assert_eq!(kind("/v1/regions/eu/changes"), Kind::LongPoll);
        assert_eq!(kind("/health"), Kind::Probe);
        assert_eq!(kind("/v1/nodes/n1"), Kind::Other);
        assert_eq!(kind("/v1/nodes/heartbeat"), Kind::Other);
        assert_eq!(kind("/v1/regions/eu/acks"), Kind::Other);
        assert_eq!(kind("/v1/nodes/n1/heartbeat/x"), Kind::Other);
        assert_eq!(kind("/healthz"), Kind::Other);
        assert_eq!(kind("/health/x"), Kind::Other);
    }
}
