//! Object metadata: objects under vector clocks, conflicts, node replicas and repairs,
//! placement and scheduling.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Map, Value};

use super::extract::{cut_page, page_limit, prefix, Fields, Flags, JsonBody, Params};
use super::registry::{found, read};
use super::{ApiError, AppState};
use crate::peer::now_ms;
use crate::placement::{replicas, schedule};
use crate::state::clock::VClock;
use crate::state::objects::{Object, ObjectWrite, Resolution, SchedulerWeights, Strategy, SyncMode, Version};
use crate::state::{validate, Command, Detail, UNSTAMPED};

type Answer = Result<Json<Value>, ApiError>;

fn object_id(raw: &str) -> Result<String, ApiError> {
    validate::object_id("id", raw)?;
    Ok(raw.to_string())
}

pub(super) const STRATEGIES: &str = "last_writer_wins, merge, manual, fork";
pub(super) const SYNC_MODES: &str = "eager, lazy, on_demand";

/// The version fields of a body: region, clock, size, hash, attrs, timestamp_ms.
fn version_fields(body: &mut Fields, require_clock: bool) -> Result<ObjectWrite, ApiError> {
    let region = body.string("region")?;
    validate::label("region", &region)?;
    let mut clock = VClock::default();
    match body.object("clock")? {
        Some(map) => {
            for (r, n) in map {
                let n =
                    n.as_u64().ok_or_else(|| ApiError::invalid(format!("clock.{r}"), "must be a whole number ≥ 0"))?;
                clock.0.insert(r, n);
            }
        }
        None if require_clock => return Err(ApiError::invalid("clock", "is required")),
        None => {}
    }
    let size = body.u64("size")?;
    let hash = body.string("hash")?;
    let attrs: BTreeMap<String, String> =
        body.object("attrs")?.unwrap_or_default().into_iter().map(|(k, v)| (k, v.to_string())).collect();
    let timestamp_ms = body.opt_u64("timestamp_ms")?.unwrap_or_else(now_ms);
    Ok(ObjectWrite { region, clock, timestamp_ms, size, hash, attrs, strategy: None, sync: None, replicas: None })
}

pub async fn put_object(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let id = object_id(&id)?;
    let mut write = version_fields(&mut body, true)?;
    write.strategy = body.one_of::<Strategy>("strategy", STRATEGIES)?;
    write.sync = body.one_of::<SyncMode>("sync", SYNC_MODES)?;
    write.replicas = body.opt_u64("replicas")?.map(|r| u32::try_from(r).unwrap_or(u32::MAX));
    body.finish()?;
    validate::clock(&write.region, &mut write.clock)?;
    validate::object_write(&id, &write)?;
    let outcome =
        app.peer.write(Command::PutObject { id: id.clone(), write, cas: flags.cas, at_ms: UNSTAMPED }).await?;
    let Some(Detail::Object(detail)) = outcome.detail else {
        return Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the write has no outcome",
        ));
    };
    Ok(Json(json!({
        "id": id, "outcome": detail.outcome, "relation": detail.relation, "settled": detail.settled,
        "versions": detail.versions, "revision": outcome.revision,
    })))
}

pub async fn delete_object(State(app): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let outcome = app.peer.write(Command::DeleteObject { id: id.clone(), cas: flags.cas }).await?;
    Ok(Json(json!({"id": id, "deleted": true, "revision": outcome.revision})))
}

fn version_view(v: &Version) -> Value {
    let attrs: Map<String, Value> =
        v.attrs.iter().map(|(k, a)| (k.clone(), serde_json::from_str(&a.value).unwrap_or(Value::Null))).collect();
    json!({
        "region": v.region, "clock": v.clock.0, "timestamp_ms": v.timestamp_ms, "size": v.size, "hash": v.hash,
        "attrs": attrs,
    })
}

pub(super) fn object_view(o: &Object) -> Value {
    let locations: Vec<Value> = o
        .locations
        .iter()
        .map(
            |(r, l)| json!({"region": r, "state": l.state, "last_sync_ms": l.last_sync_ms, "pending_event": l.pending}),
        )
        .collect();
    let holders: Vec<Value> = o.holders.iter().map(|(n, r)| json!({"node": n, "state": r.state})).collect();
    json!({
        "id": o.id, "clock": o.clock.0, "primary": o.primary, "replicas": o.replicas, "strategy": o.strategy,
        "sync": o.sync, "versions": o.versions.iter().map(version_view).collect::<Vec<_>>(),
        "conflict": o.in_conflict(), "conflict_since": o.conflict_since, "locations": locations,
        "holders": holders,
        "lost": o.lost.as_ref().map(|l| json!({"version": version_view(&l.version), "revision": l.revision})),
        "revision": o.revision,
    })
}

pub async fn get_object(State(app): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let object = read(&app, q, |s| s.meta.objects.get(&id).map(object_view)).await?;
    found(object, "object", &id)
}

/// `?ids=a,b,c`: those objects (a batch get; unknown ids under `missing`); else every
/// object after `?after=ID`, at most `?limit=N`.
pub async fn list_objects(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let params = Params::parse(q.as_deref());
    let ids = params.list("ids");
    validate::batch("ids", ids.len())?;
    let limit = params.u64("limit", validate::MAX_BATCH as u64, validate::MAX_BATCH as u64)?.max(1) as usize;
    let after = params.get("after").unwrap_or("").to_string();
    read(&app, q, |s| {
        if !ids.is_empty() {
            let objects: Vec<Value> = ids.iter().filter_map(|id| s.meta.objects.get(id)).map(object_view).collect();
            let missing: Vec<&String> = ids.iter().filter(|id| !s.meta.objects.contains_key(*id)).collect();
            return Json(json!({"objects": objects, "missing": missing}));
        }
        let range = s.meta.objects.range::<String, _>((std::ops::Bound::Excluded(&after), std::ops::Bound::Unbounded));
        let mut page: Vec<&Object> = range.map(|(_, o)| o).take(limit + 1).collect();
        let next = cut_page(&mut page, limit, |o| o.id.clone());
        let objects: Vec<Value> = page.into_iter().map(object_view).collect();
        Json(json!({"objects": objects, "next": next}))
    })
    .await
}

/// `{"node": ID, "state": "healthy"|"missing"}`: a node holds a copy, or lost it.
pub async fn mark_replica(State(app): State<AppState>, Path(id): Path<String>, JsonBody(mut body): JsonBody) -> Answer {
    let node = body.string("node")?;
    let state = body.string("state")?;
    body.finish()?;
    let healthy = match state.as_str() {
        "healthy" => true,
        "missing" => false,
        _ => return Err(ApiError::invalid("state", "must be 'healthy' or 'missing'")),
    };
    validate::label("node", &node)?;
    let outcome = app.peer.write(Command::MarkReplica { id: id.clone(), node: node.clone(), healthy }).await?;
    Ok(Json(json!({"id": id, "node": node, "state": state, "revision": outcome.revision})))
}

/// A repair to make, as read under the state's lock; turned into JSON after.
struct Repair {
    id: String,
    hash: String,
    replicas: u32,
    healthy: Vec<String>,
    missing: usize,
    targets: Vec<String>,
}

/// Objects with fewer healthy replicas on up nodes than they want, and where to add them:
/// `?limit=N` of them, after the object `?after=ID`.
pub async fn repairs(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let params = Params::parse(q.as_deref());
    let limit = page_limit(&params)?;
    let after = params.get("after").unwrap_or("").to_string();
    let mut page: Vec<Repair> = read(&app, q, |s| {
        let mut out = Vec::new();
        let range = s.meta.objects.range::<String, _>((std::ops::Bound::Excluded(&after), std::ops::Bound::Unbounded));
        for (_, o) in range {
            if out.len() > limit {
                break;
            }
            let healthy: Vec<&String> = o
                .holders
                .iter()
                .filter(|(n, r)| {
                    r.state == crate::state::objects::ReplicaState::Healthy
                        && s.nodes.get(*n).is_some_and(replicas::eligible)
                })
                .map(|(n, _)| n)
                .collect();
            if healthy.len() >= o.replicas as usize {
                continue;
            }
            let hash = o.versions.first().map(|v| v.hash.as_str()).unwrap_or(&o.id);
            let wanted = o.replicas as usize - healthy.len();
            let targets: Vec<&String> = replicas::place(s, hash, o.replicas as usize + o.holders.len())
                .into_iter()
                .map(|n| &n.id)
                .filter(|n| !o.holders.contains_key(*n))
                .take(wanted)
                .collect();
            out.push(Repair {
                id: o.id.clone(),
                hash: hash.to_string(),
                replicas: o.replicas,
                healthy: healthy.into_iter().cloned().collect(),
                missing: wanted,
                targets: targets.into_iter().cloned().collect(),
            });
        }
        out
    })
    .await?;
    let next = cut_page(&mut page, limit, |r| r.id.clone());
    let repairs: Vec<Value> = page
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "hash": r.hash, "replicas": r.replicas, "healthy": r.healthy, "missing": r.missing,
                "targets": r.targets,
            })
        })
        .collect();
    Ok(Json(json!({"repairs": repairs, "next": next})))
}

// ---- conflicts ----

pub async fn list_conflicts(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    read(&app, q, |s| {
        let conflicts: Vec<Value> = s.meta.objects.values().filter(|o| o.in_conflict()).map(object_view).collect();
        Json(json!({"conflicts": conflicts}))
    })
    .await
}

/// `{"pick": N}` keeps version N; `{"version": {region, size, hash, attrs, clock?}}` replaces
/// them all with a merged version.
pub async fn resolve_conflict(
    State(app): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let pick = body.opt_u64("pick")?;
    let version = body.object("version")?;
    body.finish()?;
    let resolution = match (pick, version) {
        (Some(i), None) => Resolution::Pick(i as usize),
        (None, Some(map)) => {
            let mut fields = Fields::from_map(map);
            let mut write = version_fields(&mut fields, false).map_err(|e| prefix("version", e))?;
            fields.finish().map_err(|e| prefix("version", e))?;
            write.clock.0.retain(|_, n| *n > 0);
            validate::object_write(&id, &write).map_err(|e| prefix("version", e.into()))?;
            Resolution::Version(write)
        }
        _ => return Err(ApiError::invalid("pick", "give either 'pick' (a version's position) or 'version'")),
    };
    let outcome = app.peer.write(Command::ResolveConflict { id: id.clone(), resolution, at_ms: UNSTAMPED }).await?;
    Ok(Json(json!({"id": id, "resolved": true, "revision": outcome.revision})))
}

// ---- placement and scheduling ----

pub async fn placement(State(app): State<AppState>, Path(hash): Path<String>, RawQuery(q): RawQuery) -> Answer {
    validate::hash("hash", &hash)?;
    let params = Params::parse(q.as_deref());
    let rf = params.u64("rf", 3, validate::MAX_REPLICAS as u64)?;
    if rf == 0 {
        return Err(ApiError::invalid("rf", format!("must be between 1 and {}", validate::MAX_REPLICAS)));
    }
    read(&app, q, |s| {
        let nodes: Vec<&String> = replicas::place(s, &hash, rf as usize).into_iter().map(|n| &n.id).collect();
        Json(json!({"hash": hash, "rf": rf, "nodes": nodes, "short": rf as usize - nodes.len()}))
    })
    .await
}

pub async fn schedule(State(app): State<AppState>, JsonBody(mut body): JsonBody) -> Answer {
    use super::steering::optional_in;
    let req = schedule::Request {
        cpu_req: optional_in(&mut body, "cpu_req", 1.0)?.unwrap_or(0.0),
        ram_req_mb: optional_in(&mut body, "ram_req_mb", 1e9)?.unwrap_or(0.0),
        gpu_req: optional_in(&mut body, "gpu_req", 1.0)?,
        max_latency_ms: optional_in(&mut body, "max_latency_ms", 600_000.0)?,
        io_tolerance: optional_in(&mut body, "io_tolerance", 1.0)?,
    };
    body.finish()?;
    let metrics = app.peer.leader_metrics(Vec::new()).await?;
    let (choice, candidates) = {
        let applied = app.peer.state.read();
        let s = &applied.state;
        schedule::schedule(s, &metrics, &s.meta.scheduler, &req)
    };
    match choice {
        Some(c) => Ok(Json(json!({"node": c.node, "score": c.score, "candidates": candidates}))),
        None => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no_capacity",
            "no up node with fresh metrics meets the request; relax it or add capacity",
        )),
    }
}

pub async fn put_scheduler(State(app): State<AppState>, RawQuery(q): RawQuery, JsonBody(mut body): JsonBody) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    // Fields left out keep their current values: read them linearizably.
    let current = read(&app, None, |s| s.meta.scheduler.clone()).await?;
    // The weights flat, or under `config` as GET answers them.
    let mut body = match body.object("config")? {
        Some(nested) => {
            body.finish()?;
            let mut nested = Fields::from_map(nested);
            let _read_only = nested.opt_u64("revision").map_err(|e| prefix("config", e))?;
            nested
        }
        None => body,
    };
    let mut w = |name: &str, default: f64| body.f64(name).map(|v| v.unwrap_or(default));
    let weights = SchedulerWeights {
        w_cpu: w("w_cpu", current.w_cpu)?,
        w_ram: w("w_ram", current.w_ram)?,
        w_gpu: w("w_gpu", current.w_gpu)?,
        w_latency: w("w_latency", current.w_latency)?,
        w_io: w("w_io", current.w_io)?,
        revision: 0,
    };
    body.finish()?;
    validate::scheduler(&weights)?;
    let outcome = app.peer.write(Command::PutScheduler { weights: weights.clone() }.guarded(flags.cas)).await?;
    Ok(Json(
        json!({"config": SchedulerWeights { revision: outcome.revision, ..weights }, "revision": outcome.revision}),
    ))
}

pub async fn get_scheduler(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let weights = read(&app, q, |s| s.meta.scheduler.clone()).await?;
    Ok(Json(json!({ "config": weights })))
}
