//! The registry: regions and nodes.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::extract::{Flags, Typed};
use super::{ApiError, AppState};
use crate::api::registry::{NodeBody, RegionBody};
use crate::state::{Command, Health, Node};

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

pub async fn delete_region(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let flags = Flags::parse(query.as_deref())?;
    let outcome = app.peer.write(Command::DeleteRegion { name: name.clone(), cas: flags.cas }).await?;
    Ok(Json(json!({"name": name, "deleted": true, "revision": outcome.revision})))
}

pub async fn delete_node(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let flags = Flags::parse(query.as_deref())?;
    let outcome = app.peer.write(Command::DeleteNode { id: id.clone(), cas: flags.cas }).await?;
    Ok(Json(json!({"id": id, "deleted": true, "revision": outcome.revision})))
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

pub async fn list_regions(State(app): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let regions = read(&app, q, |s| s.regions.values().cloned().collect::<Vec<_>>()).await?;
    Ok(Json(json!({ "regions": regions })))
}

pub async fn get_region(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let region = read(&app, q, |s| s.regions.get(&name).cloned()).await?;
    found(region, "region", &name)
}

/// A node as clients see it: `health` is `maintenance` while an operator drains it.
fn node_view(n: &Node) -> Value {
    let health = if n.maintenance.is_some() { Health::Maintenance } else { n.health };
    json!({
        "id": n.id, "ip": n.ip, "region": n.region, "site": n.site, "capacity": n.capacity,
        "health": health, "maintenance": n.maintenance, "revision": n.revision,
    })
}

pub async fn list_nodes(State(app): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let nodes = read(&app, q, |s| s.nodes.values().map(node_view).collect::<Vec<_>>()).await?;
    Ok(Json(json!({ "nodes": nodes })))
}

pub async fn get_node(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let node = read(&app, q, |s| s.nodes.get(&id).map(node_view)).await?;
    found(node, "node", &id)
}
