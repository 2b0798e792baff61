//! `GET`, list and `DELETE` of the registry's resources (regions, nodes, zones, sites,
//! domains), once for all of them: each resource says where the state keeps it, how its
//! key is written, and what its delete command is. Their `PUT`s, which differ, are in
//! `registry.rs` and `steering.rs`.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::extract::Flags;
use super::registry::{found, read};
use super::{ApiError, AppState};
use crate::state::{self, validate, Command, Domain, Health, Node, Region, Site, Zone};

/// A resource of the registry, one map of the state keyed by its name or id.
pub trait Resource: Send + 'static {
    /// In messages: "zone 'x' does not exist".
    const KIND: &'static str;
    /// The list's field in `GET /v1/<plural>`.
    const PLURAL: &'static str;
    /// The key's field in a delete's answer: `name` or `id`.
    const KEY: &'static str;
    /// What `GET` answers, copied out of the state so that it is serialised after the
    /// state's lock is released.
    type View: Serialize + Send;

    /// The key as stored, from the path: DNS names are stored lowercase without the final dot.
    fn key(raw: &str) -> String {
        raw.to_string()
    }
    fn view(state: &state::State, key: &str) -> Option<Self::View>;
    fn views(state: &state::State) -> Vec<Self::View>;
    fn delete(key: String, cas: Option<u64>) -> Command;
}

pub async fn get<R: Resource>(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let key = R::key(&raw);
    let view = read(&app, q, |s| R::view(s, &key)).await?;
    found(view, R::KIND, &key)
}

pub async fn list<R: Resource>(State(app): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let views = read(&app, q, R::views).await?;
    Ok(Json(json!({ R::PLURAL: views })))
}

pub async fn delete<R: Resource>(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let flags = Flags::parse(q.as_deref())?;
    let key = R::key(&raw);
    let outcome = app.peer.write(R::delete(key.clone(), flags.cas)).await?;
    let mut answer = Map::new();
    answer.insert(R::KEY.into(), json!(key));
    answer.insert("deleted".into(), json!(true));
    answer.insert("revision".into(), json!(outcome.revision));
    Ok(Json(Value::Object(answer)))
}

fn cloned<T: Clone>(map: &BTreeMap<String, T>, key: &str) -> Option<T> {
    map.get(key).cloned()
}

fn all<T: Clone>(map: &BTreeMap<String, T>) -> Vec<T> {
    map.values().cloned().collect()
}

pub struct Regions;

impl Resource for Regions {
    const KIND: &'static str = "region";
    const PLURAL: &'static str = "regions";
    const KEY: &'static str = "name";
    type View = Region;

    fn view(state: &state::State, key: &str) -> Option<Region> {
        cloned(&state.regions, key)
    }
    fn views(state: &state::State) -> Vec<Region> {
        all(&state.regions)
    }
    fn delete(name: String, cas: Option<u64>) -> Command {
        Command::DeleteRegion { name, cas }
    }
}

/// A node as clients see it: `health` is `maintenance` while an operator drains it.
fn node_view(n: &Node) -> Node {
    let health = if n.maintenance.is_some() { Health::Maintenance } else { n.health };
    Node { health, ..n.clone() }
}

pub struct Nodes;

impl Resource for Nodes {
    const KIND: &'static str = "node";
    const PLURAL: &'static str = "nodes";
    const KEY: &'static str = "id";
    type View = Node;

    fn view(state: &state::State, key: &str) -> Option<Node> {
        state.nodes.get(key).map(node_view)
    }
    fn views(state: &state::State) -> Vec<Node> {
        state.nodes.values().map(node_view).collect()
    }
    fn delete(id: String, cas: Option<u64>) -> Command {
        Command::DeleteNode { id, cas }
    }
}

pub struct Zones;

impl Resource for Zones {
    const KIND: &'static str = "zone";
    const PLURAL: &'static str = "zones";
    const KEY: &'static str = "name";
    type View = Zone;

    fn key(raw: &str) -> String {
        validate::normalize_name(raw)
    }
    fn view(state: &state::State, key: &str) -> Option<Zone> {
        cloned(&state.zones, key)
    }
    fn views(state: &state::State) -> Vec<Zone> {
        all(&state.zones)
    }
    fn delete(name: String, cas: Option<u64>) -> Command {
        Command::DeleteZone { name, cas }
    }
}

pub struct Sites;

impl Resource for Sites {
    const KIND: &'static str = "site";
    const PLURAL: &'static str = "sites";
    const KEY: &'static str = "id";
    type View = Site;

    fn view(state: &state::State, key: &str) -> Option<Site> {
        cloned(&state.sites, key)
    }
    fn views(state: &state::State) -> Vec<Site> {
        all(&state.sites)
    }
    fn delete(id: String, cas: Option<u64>) -> Command {
        Command::DeleteSite { id, cas }
    }
}

pub struct Domains;

impl Resource for Domains {
    const KIND: &'static str = "domain";
    const PLURAL: &'static str = "domains";
    const KEY: &'static str = "name";
    type View = Domain;

    fn key(raw: &str) -> String {
        validate::normalize_name(raw)
    }
    fn view(state: &state::State, key: &str) -> Option<Domain> {
        cloned(&state.domains, key)
    }
    fn views(state: &state::State) -> Vec<Domain> {
        all(&state.domains)
    }
    fn delete(name: String, cas: Option<u64>) -> Command {
        Command::DeleteDomain { name, cas }
    }
}
