//! The sync engine's API: each region's change feed (long poll), acks, on-demand pulls,
//! region heartbeats, the sync policy; and the watch stream of every change.

use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::extract::{Flags, JsonBody, Params};
use super::objects::{STRATEGIES, SYNC_MODES};
use super::registry::read;
use super::{ApiError, AppState};
use crate::peer::now_ms;
use crate::state::objects::{RegionState, Strategy, SyncMode, SyncPolicy};
use crate::state::{validate, Command, Detail, RegionReport, TOPICS, UNSTAMPED};

type Answer = Result<Json<Value>, ApiError>;

/// Most events or changes one answer carries; the rest come with the next request.
pub const MAX_PAGE: usize = 1000;
/// A region is active while its last heartbeat is this recent and not `offline`.
pub const REGION_ACTIVE_WINDOW_MS: u64 = 30_000;

/// Calls `f` on the local state until it has something to say or `wait` runs out; the last
/// answer either way.
async fn long_poll<T>(app: &AppState, wait: Duration, mut f: impl FnMut(&crate::raft::Applied) -> (bool, T)) -> T {
    let deadline = Instant::now() + wait;
    let mut applied = app.peer.state.subscribe();
    loop {
        applied.borrow_and_update();
        let (ready, answer) = f(&app.peer.state.read());
        let left = deadline.saturating_duration_since(Instant::now());
        if ready || left.is_zero() {
            return answer;
        }
        if tokio::time::timeout(left, applied.changed()).await.is_err() {
            return f(&app.peer.state.read()).1;
        }
    }
}

/// `?since=ID&wait=S&limit=N`: the region's unacknowledged events after `since`, waiting
/// up to `wait` seconds for one to arrive.
pub async fn changes(State(app): State<AppState>, Path(region): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let params = Params::parse(q.as_deref());
    let since = params.u64("since", 0, u64::MAX)?;
    let wait = Duration::from_secs(params.u64("wait", 0, validate::MAX_WAIT_S)?);
    let limit = params.u64("limit", MAX_PAGE as u64, MAX_PAGE as u64)?.max(1) as usize;
    // Linearizable by default: the feed read is at least as new as any ack the client saw.
    let exists = read(&app, q, |s| s.regions.contains_key(&region)).await?;
    if !exists {
        return Err(ApiError::not_found(format!("region '{region}' does not exist")));
    }
    let answer = long_poll(&app, wait, |applied| {
        let s = &applied.state;
        let Some(feed) = s.meta.feeds.get(&region) else {
            return (false, Ok(json!({"region": region, "events": [], "cursor": since, "pending": 0, "held": 0})));
        };
        if since < feed.dropped_upto {
            return (true, Err(feed.dropped_upto));
        }
        let events: Vec<Value> = feed
            .events
            .range(since + 1..)
            .take(limit)
            .map(|(_, e)| {
                json!({
                    "id": e.id, "object": e.object, "kind": e.kind, "revision": e.revision, "origin": e.origin,
                    "clock": e.clock.0,
                    "versions": e.versions.iter().map(|(h, s)| json!({"hash": h, "size": s})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let cursor = events.last().and_then(|e| e["id"].as_u64()).unwrap_or(since);
        let ready = !events.is_empty();
        (ready, Ok(json!({"region": region, "events": events, "cursor": cursor, "pending": feed.events.len(), "held": feed.held.len()})))
    })
    .await;
    match answer {
        Ok(v) => Ok(Json(v)),
        Err(dropped_upto) => Err(ApiError::new(
            StatusCode::GONE,
            "resync",
            format!(
                "region '{region}' fell more than sync.max_pending events behind and events up to {dropped_upto} \
                 were dropped: re-read the objects (GET /v1/objects), then read changes since={dropped_upto}"
            ),
        )),
    }
}

/// `{"events": [ID, ...], "upto": ID}`: the region has applied these events.
pub async fn ack(State(app): State<AppState>, Path(region): Path<String>, JsonBody(mut body): JsonBody) -> Answer {
    let events = body.u64s("events")?;
    let upto = body.opt_u64("upto")?;
    body.finish()?;
    validate::batch("events", events.len())?;
    if events.is_empty() && upto.is_none() {
        return Err(ApiError::invalid("events", "list the event ids to acknowledge, or give 'upto'"));
    }
    validate::label("region", &region)?;
    let outcome = app.peer.write(Command::AckEvents { region: region.clone(), events, upto, at_ms: UNSTAMPED }).await?;
    let acked = match outcome.detail {
        Some(Detail::Count(n)) => n,
        _ => 0,
    };
    Ok(Json(json!({"region": region, "acked": acked, "revision": outcome.revision})))
}

/// `{"objects": [ID, ...]}`: queue these objects for the region (on-demand sync).
pub async fn pull(State(app): State<AppState>, Path(region): Path<String>, JsonBody(mut body): JsonBody) -> Answer {
    let objects = body.strings("objects")?;
    body.finish()?;
    validate::batch("objects", objects.len())?;
    let outcome = app.peer.write(Command::PullObjects { region: region.clone(), objects }).await?;
    let queued = match outcome.detail {
        Some(Detail::Count(n)) => n,
        _ => 0,
    };
    Ok(Json(json!({"region": region, "queued": queued, "revision": outcome.revision})))
}

/// `{"state": "healthy"|"degraded"|"offline", "sync_lag", "storage_used", "load_level"}`.
pub async fn region_heartbeat(
    State(app): State<AppState>,
    Path(region): Path<String>,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let state: RegionState = serde_json::from_value(Value::String(body.string("state")?))
        .map_err(|_| ApiError::invalid("state", "must be healthy, degraded or offline"))?;
    let sync_lag = body.opt_u64("sync_lag")?.unwrap_or(0);
    let storage_used = body.opt_u64("storage_used")?.unwrap_or(0);
    let load_level = super::steering::optional_in(&mut body, "load_level", 1.0)?.unwrap_or(0.0);
    body.finish()?;
    let report = RegionReport { state, sync_lag, storage_used, load_level };
    let outcome = app.peer.write(Command::RegionHeartbeat { region: region.clone(), report, at_ms: UNSTAMPED }).await?;
    Ok(Json(json!({"region": region, "revision": outcome.revision})))
}

/// Every region's sync state: status, active, pending and held events; and the policy.
/// `?active` lists only the active regions.
pub async fn overview(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let only_active = Params::parse(q.as_deref()).get("active").is_some_and(|v| v != "false");
    let now = now_ms();
    read(&app, q, |s| {
        let regions: Vec<Value> = s
            .regions
            .keys()
            .filter_map(|name| {
                let status = s.meta.region_status.get(name);
                let active = status.is_some_and(|st| {
                    st.state != RegionState::Offline && now.saturating_sub(st.last_seen_ms) <= REGION_ACTIVE_WINDOW_MS
                });
                if only_active && !active {
                    return None;
                }
                let feed = s.meta.feeds.get(name);
                Some(json!({
                    "region": name, "active": active, "status": status,
                    "pending": feed.map(|f| f.events.len()).unwrap_or(0),
                    "held": feed.map(|f| f.held.len()).unwrap_or(0),
                    "next_event": feed.map(|f| f.next_id.max(1)).unwrap_or(1),
                    "dropped_upto": feed.map(|f| f.dropped_upto).unwrap_or(0),
                }))
            })
            .collect();
        Json(json!({"regions": regions, "policy": s.meta.sync}))
    })
    .await
}

pub async fn put_sync_policy(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    // Fields left out keep their current values: read them linearizably.
    let current = read(&app, None, |s| s.meta.sync.clone()).await?;
    let strategy = body.one_of::<Strategy>("default_strategy", STRATEGIES)?.unwrap_or(current.default_strategy);
    let sync = body.one_of::<SyncMode>("default_sync", SYNC_MODES)?.unwrap_or(current.default_sync);
    let small = |v: Option<u64>, name: &str, default: u32| -> Result<u32, ApiError> {
        v.map(|n| u32::try_from(n).map_err(|_| ApiError::invalid(name, "is too large"))).unwrap_or(Ok(default))
    };
    let policy = SyncPolicy {
        default_strategy: strategy,
        default_sync: sync,
        default_replicas: small(body.opt_u64("default_replicas")?, "default_replicas", current.default_replicas)?,
        batch_size: small(body.opt_u64("batch_size")?, "batch_size", current.batch_size)?,
        lazy_interval_ms: body.opt_u64("lazy_interval_ms")?.unwrap_or(current.lazy_interval_ms),
        max_pending: small(body.opt_u64("max_pending")?, "max_pending", current.max_pending)?,
        revision: 0,
    };
    body.finish()?;
    validate::sync_policy(&policy)?;
    let outcome = app.peer.write(Command::PutSyncPolicy { policy: policy.clone() }.guarded(flags.cas)).await?;
    Ok(Json(json!({"policy": SyncPolicy { revision: outcome.revision, ..policy }, "revision": outcome.revision})))
}

/// `?since=REV&wait=S&topics=a,b&limit=N`: every change after revision `since`, waiting up
/// to `wait` seconds for one. A `since` older than this peer's history answers 410: re-read
/// what you need, then watch from the `revision` the reads returned.
pub async fn watch(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let params = Params::parse(q.as_deref());
    let since = params.u64("since", 0, u64::MAX)?;
    let wait = Duration::from_secs(params.u64("wait", 0, validate::MAX_WAIT_S)?);
    let limit = params.u64("limit", MAX_PAGE as u64, MAX_PAGE as u64)?.max(1) as usize;
    let topics = params.list("topics");
    if let Some(t) = topics.iter().find(|t| !TOPICS.contains(&t.as_str())) {
        return Err(ApiError::invalid("topics", format!("unknown topic '{t}'; topics are {}", TOPICS.join(", "))));
    }
    let flags = Flags::parse(q.as_deref())?;
    app.peer.read_barrier(flags.consistency()).await?;
    let answer = long_poll(&app, wait, |applied| {
        let revision = applied.last_applied.map(|l| l.index).unwrap_or(0);
        match applied.history.since(since, limit, |c| topics.is_empty() || topics.iter().any(|t| t == c.topic)) {
            Err(floor) => (true, Err(floor)),
            Ok(changes) => {
                // A full page ends at a whole revision; otherwise every change up to the
                // applied revision was looked at (a topic filter skips some).
                let cursor = match changes.last() {
                    Some(last) if changes.len() >= limit => last.revision,
                    _ => revision.max(since),
                };
                let ready = !changes.is_empty();
                (ready, Ok(json!({"changes": changes, "revision": cursor})))
            }
        }
    })
    .await;
    match answer {
        Ok(v) => Ok(Json(v)),
        Err(floor) => Err(ApiError::new(
            StatusCode::GONE,
            "compacted",
            format!(
                "changes up to revision {floor} are no longer kept on this peer: re-read the resources you \
                 follow, then watch from the revision those reads returned (or from {floor})"
            ),
        )),
    }
}
