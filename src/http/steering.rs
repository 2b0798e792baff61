//! Steering: zones, sites and domains, the manual controls (lock, pin, maintenance),
//! node heartbeats, the elected table, `resolve` and the scoring policy.

use std::net::IpAddr;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::extract::{cut_page, page_limit, prefix, Fields, Flags, JsonBody, Params, Typed};
use super::registry::read;
use super::{ApiError, AppState};
use crate::api::registry::{DomainBody, SiteBody, ZoneBody};
use crate::dispatch::{analyse, NodeMetrics};
use crate::state::{self, validate, Command, Weights};

type Answer = Result<Json<Value>, ApiError>;

/// Parses `?cas` and proposes the command; answers with the new revision and `extra`.
async fn write(app: &AppState, command: Command, mut extra: Value) -> Answer {
    let outcome = app.peer.write(command).await?;
    extra["revision"] = json!(outcome.revision);
    Ok(Json(extra))
}

fn domain_name(raw: &str) -> Result<String, ApiError> {
    let name = validate::normalize_name(raw);
    validate::name("name", &name)?;
    Ok(name)
}

fn optional_f64(body: &mut Fields, name: &str) -> Result<Option<f64>, ApiError> {
    body.f64(name)
}

/// The scoring weights of a body; those not given keep their `current` values.
fn weights(body: &mut Fields, current: &Weights) -> Result<Weights, ApiError> {
    Ok(Weights {
        latency: optional_f64(body, "latency")?.unwrap_or(current.latency),
        load: optional_f64(body, "load")?.unwrap_or(current.load),
        error_rate: optional_f64(body, "error_rate")?.unwrap_or(current.error_rate),
        cpu: optional_f64(body, "cpu")?.unwrap_or(current.cpu),
    })
}

/// An optional number within 0..=max.
pub(super) fn optional_in(body: &mut Fields, name: &str, max: f64) -> Result<Option<f64>, ApiError> {
    match body.f64(name)? {
        Some(v) if !(0.0..=max).contains(&v) => Err(ApiError::invalid(name, format!("must be between 0 and {max}"))),
        v => Ok(v),
    }
}

// ---- zones ----

pub async fn put_zone(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    Typed(body): Typed<ZoneBody>,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let name = domain_name(&name)?;
    let spec = body.spec(&name)?;
    let extra = json!({"name": name, "ns": spec.ns, "hostmaster": spec.hostmaster});
    write(&app, Command::PutZone { name, spec, cas: flags.cas }, extra).await
}

// ---- sites ----

pub async fn put_site(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    Typed(body): Typed<SiteBody>,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let region = body.region(&id)?;
    write(
        &app,
        Command::PutSite { id: id.clone(), region: region.clone(), cas: flags.cas },
        json!({"id": id, "region": region}),
    )
    .await
}

pub async fn pin_site(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let node = body.string("node")?;
    body.finish()?;
    validate::label("node", &node)?;
    let command = Command::PinSite { id: id.clone(), node: Some(node.clone()) }.guarded(flags.cas);
    write(&app, command, json!({"id": id, "pin": node})).await
}

pub async fn unpin_site(State(app): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let command = Command::PinSite { id: id.clone(), node: None }.guarded(flags.cas);
    write(&app, command, json!({"id": id, "pin": null})).await
}

// ---- domains ----

pub async fn put_domain(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    Typed(body): Typed<DomainBody>,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let name = domain_name(&name)?;
    let spec = body.spec(&name)?;
    let extra = json!({"name": name, "sites": spec.sites, "ttl": spec.ttl, "cname": spec.cname});
    write(&app, Command::PutDomain { name, spec, cas: flags.cas }, extra).await
}

pub async fn lock_domain(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let site = body.string("site")?;
    body.finish()?;
    validate::label("site", &site)?;
    let name = validate::normalize_name(&name);
    let command = Command::LockDomain { name: name.clone(), site: Some(site.clone()) }.guarded(flags.cas);
    write(&app, command, json!({"name": name, "lock": site})).await
}

pub async fn unlock_domain(State(app): State<AppState>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let name = validate::normalize_name(&name);
    let command = Command::LockDomain { name: name.clone(), site: None }.guarded(flags.cas);
    write(&app, command, json!({"name": name, "lock": null})).await
}

// ---- nodes: maintenance and heartbeats ----

pub async fn maintenance(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let enabled = body.bool("enabled")?;
    let reason = body.opt_string("reason")?.unwrap_or_else(|| "maintenance".into());
    body.finish()?;
    if reason.len() > validate::MAX_REASON_LEN {
        return Err(ApiError::invalid("reason", format!("is over {} characters", validate::MAX_REASON_LEN)));
    }
    let reason = enabled.then_some(reason);
    let command = Command::SetMaintenance { id: id.clone(), reason: reason.clone() }.guarded(flags.cas);
    write(&app, command, json!({"id": id, "maintenance": reason})).await
}

pub async fn heartbeat(
    State(app): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Every metric but bandwidth is required: a missing one must not read as "perfect".
    let mut metric = |name: &str, max: f64| -> Result<f64, ApiError> {
        let v = match body.f64(name)? {
            Some(v) => v,
            None if name == "bandwidth_mbps" => 0.0,
            None => return Err(ApiError::invalid(name, "is required")),
        };
        if !(0.0..=max).contains(&v) {
            return Err(ApiError::invalid(name, format!("must be between 0 and {max}")));
        }
        Ok(v)
    };
    let metrics = NodeMetrics {
        cpu: metric("cpu", 1.0)?,
        load: metric("load", 1.0)?,
        latency_ms: metric("latency_ms", 600_000.0)?,
        error_rate: metric("error_rate", 1.0)?,
        bandwidth_mbps: metric("bandwidth_mbps", 1e9)?,
        ram_free_mb: optional_in(&mut body, "ram_free_mb", 1e9)?,
        gpu_free: optional_in(&mut body, "gpu_free", 1.0)?,
        io_pressure: optional_in(&mut body, "io_pressure", 1.0)?,
    };
    body.finish()?;
    // A peer not yet in a cluster knows no nodes: say so as every write does (503), not 404,
    // which an agent could take as a reason to register its node again.
    app.peer.require_cluster()?;
    if !app.peer.state.read().state.nodes.contains_key(&id) {
        return Err(ApiError::not_found(format!("node '{id}' does not exist; register it with PUT /v1/nodes/{id}")));
    }
    app.peer.heartbeat(id, metrics)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": true}))))
}

// ---- the table, resolve, policy ----

/// The elected table, a page at a time: `?limit=N` rows after `?after=DOMAIN/REGION`.
/// Only the page is copied while the state is read; it is turned into JSON after.
pub async fn table(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let params = Params::parse(q.as_deref());
    let limit = page_limit(&params)?;
    let after = match params.get("after") {
        None => None,
        Some(a) => Some(
            a.split_once('/')
                .map(|(d, r)| (d.to_string(), r.to_string()))
                .ok_or_else(|| ApiError::invalid("after", "must be DOMAIN/REGION: the 'next' of the previous page"))?,
        ),
    };
    let mut page: Vec<(String, String, state::DispatchRow)> = read(&app, q, |s| {
        s.dispatch
            .iter_after(after.as_ref().map(|(d, r)| (d.as_str(), r.as_str())))
            .take(limit + 1)
            .map(|(d, r, row)| (d.to_string(), r.to_string(), row.to_owned_row()))
            .collect()
    })
    .await?;
    let next = cut_page(&mut page, limit, |(d, r, _)| format!("{d}/{r}"));
    let rows: Vec<Value> = page
        .into_iter()
        .map(|(domain, region, row)| {
            json!({
                "domain": domain, "region": region, "node": row.node, "ip": row.ip, "score": row.score,
                "reason": row.reason, "since_ms": row.since_ms, "revision": row.revision,
            })
        })
        .collect();
    Ok(Json(json!({ "rows": rows, "next": next })))
}

/// The region a client address belongs to: the longest matching prefix over all regions'
/// networks; `None` when no region lists it.
pub fn region_for(state: &state::State, client: IpAddr) -> Option<(String, String)> {
    state
        .regions
        .values()
        .flat_map(|r| r.cidrs.iter().filter(|net| net.contains(&client)).map(move |net| (net.prefix_len(), r, net)))
        .max_by_key(|(len, r, _)| (*len, std::cmp::Reverse(r.name.clone())))
        .map(|(_, r, net)| (r.name.clone(), net.to_string()))
}

pub async fn resolve(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let query = q.unwrap_or_default();
    let param = |key: &str| {
        query.split('&').find_map(|p| p.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
    };
    let name = domain_name(&param("name").ok_or_else(|| ApiError::invalid("name", "is required"))?)?;
    let client: Option<IpAddr> = match param("client") {
        Some(c) => Some(c.parse().map_err(|_| ApiError::invalid("client", format!("'{c}' is not an IP address")))?),
        None => None,
    };
    let flags = Flags::parse(Some(&query))?;
    app.peer.read_barrier(flags.consistency()).await?;
    let metrics = if flags.stale { Default::default() } else { app.peer.leader_metrics(Vec::new()).await? };
    let applied = app.peer.state.read();
    let state = &applied.state;
    let mut trace = Vec::new();
    let region = match client.and_then(|c| region_for(state, c)) {
        Some((region, net)) => {
            trace.push(format!("client {} is in {net}: region {region}", client.expect("matched a client")));
            region
        }
        None => {
            let own = app.peer.info.region.clone();
            match client {
                Some(c) => trace.push(format!("no region lists {c}: this peer's region {own}")),
                None => trace.push(format!("no client given: this peer's region {own}")),
            }
            own
        }
    };
    let Some(domain) = state.domains.get(&name) else {
        return Err(ApiError::not_found(format!("'{name}' is not a managed domain")));
    };
    let row = state.dispatch.get(&name, &region);
    let decision = analyse::decide(state, &metrics, domain, &region);
    trace.extend(decision.trace.iter().cloned());
    Ok(Json(json!({
        "name": name,
        "client": client,
        "region": region,
        "answer": row.map(|r| json!({"node": r.node, "ip": r.ip, "ttl": domain.ttl, "reason": r.reason, "since_ms": r.since_ms, "revision": r.revision})),
        "candidates": decision.candidates,
        "served_from": decision.served_from,
        "why": trace,
        "metrics": if flags.stale { "omitted with ?stale" } else { "the leader's latest" },
    })))
}

pub async fn get_policy(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let policy = read(&app, q, |s| s.policy.clone()).await?;
    Ok(Json(json!(policy)))
}

pub async fn put_policy(State(app): State<AppState>, RawQuery(q): RawQuery, JsonBody(mut body): JsonBody) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    // Fields not given keep their values: merge with the current policy, not a stale copy.
    let current = read(&app, None, |s| s.policy.clone()).await?;
    // The weights flat, or nested under `weights` as GET answers them, so that a policy
    // read from the API can be written back as it is (`revision` is read-only: ignored).
    let weights = match body.object("weights")? {
        Some(nested) => {
            let mut nested = Fields::from_map(nested);
            let w = weights(&mut nested, &current.weights).map_err(|e| prefix("weights", e))?;
            nested.finish().map_err(|e| prefix("weights", e))?;
            w
        }
        None => weights(&mut body, &current.weights)?,
    };
    let hysteresis = optional_f64(&mut body, "hysteresis")?.unwrap_or(current.hysteresis);
    let down_after_ms = body.opt_u64("down_after_ms")?.unwrap_or(current.down_after_ms);
    let _read_only = body.opt_u64("revision")?;
    body.finish()?;
    validate::policy(&weights, hysteresis, down_after_ms)?;
    let extra = json!({"weights": weights, "hysteresis": hysteresis, "down_after_ms": down_after_ms});
    write(&app, Command::PutPolicy { weights, hysteresis, down_after_ms }.guarded(flags.cas), extra).await
}
