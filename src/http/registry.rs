//! The registry: regions and nodes.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::extract::{Flags, Typed};
use super::{ApiError, AppState};
use crate::api::registry::{NodeBody, RegionBody};
use crate::state::Command;

pub async fn put_region(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    Typed(body): Typed<RegionBody>,
) -> Result<Json<Value>, ApiError> {
    let flags = Flags::parse(query.as_deref())?;
    let spec = body.spec(&name)?;
    let outcome = app.peer.write(Command::PutRegion { name: name.clone(), spec: spec.clone(), cas: flags.cas }).await?;
    Ok(Json(json!({"name": name, "cidrs": spec.cidrs, "fallback": spec.fallback, "revision": outcome.revision})))
}

pub async fn put_node(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    Typed(body): Typed<NodeBody>,
) -> Result<Json<Value>, ApiError> {
    let flags = Flags::parse(query.as_deref())?;
    let spec = body.spec(&id)?;
    let outcome = app.peer.write(Command::PutNode { id: id.clone(), spec: spec.clone(), cas: flags.cas }).await?;
    Ok(Json(json!({
        "id": id, "ip": spec.ip, "region": spec.region, "site": spec.site,
        "capacity": spec.capacity, "revision": outcome.revision,
    })))
}

/// Serves a read at the consistency the query asks for, from this peer's state.
pub(super) async fn read<T>(
    app: &AppState,
    query: Option<String>,
    f: impl FnOnce(&crate::state::State) -> T,
) -> Result<T, ApiError> {
    let flags = Flags::parse(query.as_deref())?;
    app.peer.read_barrier(flags.consistency()).await?;
    Ok(f(&app.peer.state.read().state))
}

/// The resource, or 404 naming it.
pub(super) fn found<T: serde::Serialize>(value: Option<T>, kind: &str, id: &str) -> Result<Json<Value>, ApiError> {
    value.map(|v| Json(json!(v))).ok_or_else(|| ApiError::not_found(format!("{kind} '{id}' does not exist")))
}
