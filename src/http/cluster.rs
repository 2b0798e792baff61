//! The peer itself and cluster membership: health, readiness, metrics, init, add, remove.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::extract::JsonBody;
use super::{ApiError, AppState};

/// 200 while the process serves. A peer whose Raft stopped (a full or failing disk) says so
/// in the body: `"status": "failed"` and the error; its `/ready` is 503.
/// 200 while the peer works; 503 in the moments between its Raft stopping (a full or
/// failing disk) and the process exiting, so that a probe reading only the status sees it.
pub async fn health(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match app.peer.raft_fatal() {
        None => (StatusCode::OK, Json(json!({"status": "ok", "id": app.peer.id}))),
        Some(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "id": app.peer.id, "error": format!("raft stopped: {fatal}")})),
        ),
    }
}

pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let status = app.peer.status();
    let ready = app.peer.is_ready();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready, "leader": status.leader,
        "commit_index": status.commit_index, "applied_index": status.applied_index,
    });
    (code, Json(body))
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    app.peer.refresh_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.peer.metrics.render())
}

pub async fn whoami(State(app): State<AppState>) -> Json<Value> {
    let info = &app.peer.info;
    Json(json!({
        "id": app.peer.id, "raft_addr": info.raft_addr, "http_addr": info.http_addr,
        "dns_addr": info.dns_addr, "region": info.region,
    }))
}

pub async fn status(State(app): State<AppState>) -> Json<Value> {
    Json(json!(app.peer.status()))
}

pub async fn init(State(app): State<AppState>, JsonBody(mut body): JsonBody) -> Result<Json<Value>, ApiError> {
    let peers = body.strings("peers")?;
    body.finish()?;
    if peers.is_empty() {
        return Err(ApiError::invalid("peers", "list at least one peer URL"));
    }
    let members = app.peer.init(&peers).await?;
    let members: Vec<Value> = members
        .into_iter()
        .map(|(id, info)| json!({"id": id, "http_addr": info.http_addr, "raft_addr": info.raft_addr}))
        .collect();
    Ok(Json(json!({ "members": members })))
}

pub async fn add_peer(State(app): State<AppState>, JsonBody(mut body): JsonBody) -> Result<Json<Value>, ApiError> {
    let url = body.string("url")?;
    body.finish()?;
    let log_index = app.peer.add_peer(&url).await?;
    Ok(Json(json!({ "added": url, "log_index": log_index, "cluster": app.peer.status() })))
}

pub async fn remove_peer(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::invalid("id", format!("'{id}' is not a peer id")))?;
    let log_index = app.peer.remove_peer(id).await?;
    Ok(Json(json!({ "removed": id, "log_index": log_index })))
}
