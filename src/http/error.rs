use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::peer;
use crate::state;

/// An error as the client sees it: `{"error": kind, "message": text, "field": name}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Sent as `Retry-After` (seconds) with a 429.
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), field: None, retry_after_s: None }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::new(StatusCode::BAD_REQUEST, "invalid", message) }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: self.kind, message: &self.message, field: self.field.as_deref() };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_s {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<state::Error> for ApiError {
    fn from(e: state::Error) -> Self {
        let message = e.to_string();
        match e {
            state::Error::Invalid { field, message } => Self::invalid(field, message),
            state::Error::NotFound { .. } => Self::not_found(message),
            state::Error::CasMismatch { .. } => Self::new(StatusCode::CONFLICT, "cas_mismatch", message),
            state::Error::InUse { .. } => Self::new(StatusCode::CONFLICT, "in_use", message),
            state::Error::Refused { .. } => Self::new(StatusCode::CONFLICT, "refused", message),
            state::Error::RateLimited { retry_after_ms, .. } => Self {
                retry_after_s: Some(retry_after_ms.div_ceil(1000).max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            },
        }
    }
}

impl From<peer::Error> for ApiError {
    fn from(e: peer::Error) -> Self {
        let message = e.to_string();
        match e {
            peer::Error::Rejected(e) => e.into(),
            peer::Error::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            peer::Error::BadRequest { field, message } => Self::invalid(field, message),
            peer::Error::NoLeader(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message),
            peer::Error::Indeterminate(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "indeterminate", message),
            peer::Error::Fatal(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}
