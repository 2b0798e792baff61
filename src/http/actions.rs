//! The remediation queue: actions, workers' claims and reports, anomalies, Alertmanager's
//! webhook, the engine status and policy.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::extract::{after_id, cut_page, page_limit, Fields, Flags, JsonBody, Params};
use super::registry::{found, read};
use super::{ApiError, AppState};
use crate::state::actions::{Action, ActionPolicy, ActionSpec, Anomaly, AnomalyReport, Source, Status, Submitted};
use crate::state::{self, validate, Command, Detail, UNSTAMPED};

type Answer = Result<Json<Value>, ApiError>;

/// Most alerts in one Alertmanager notification.
pub const MAX_ALERTS: usize = 100;

fn text(field: &str, value: String) -> Result<String, ApiError> {
    validate::text(field, &value)?;
    Ok(value)
}

fn json_map(field: &str, map: Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    if map.len() > validate::MAX_PARAMETERS {
        // Refused before each value is turned into text.
        return Err(ApiError::invalid(
            field,
            format!("has {} entries; the limit is {}", map.len(), validate::MAX_PARAMETERS),
        ));
    }
    let map: BTreeMap<String, String> = map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    validate::parameters(field, &map)?;
    Ok(map)
}

fn source(field: &str, raw: Option<String>, default: Source) -> Result<Source, ApiError> {
    match raw.as_deref() {
        None => Ok(default),
        Some("deterministic") => Ok(Source::Deterministic),
        Some("ai_driven") => Ok(Source::AiDriven),
        Some(other) => Err(ApiError::invalid(field, format!("'{other}' is not deterministic or ai_driven"))),
    }
}

fn parse_json(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or(Value::Null)
}

pub(super) fn action_view(a: &Action) -> Value {
    let parameters: Map<String, Value> = a.parameters.iter().map(|(k, v)| (k.clone(), parse_json(v))).collect();
    json!({
        "action_id": a.id, "type": a.kind, "target": a.target, "source": a.source, "priority": a.priority,
        "confidence": a.confidence, "parameters": parameters, "status": a.status,
        "superseded_by": a.superseded_by.as_ref().map(|(id, rule)| json!({"action_id": id, "rule": rule})),
        "attempts": a.attempts, "worker": a.worker, "lease_until_ms": a.lease_until_ms,
        "not_before_ms": a.not_before_ms, "created_ms": a.created_ms, "started_ms": a.started_ms,
        "finished_ms": a.finished_ms, "message": a.message, "anomaly_id": a.anomaly, "builtin": a.is_builtin(),
        "revision": a.revision,
    })
}

fn submitted_view(s: &Submitted) -> Value {
    json!({
        "action_id": s.id, "status": s.status, "position_in_queue": s.position, "duplicate": s.duplicate,
        "conflicts": s.conflicts.iter().map(|c| json!({
            "conflict_type": c.conflict_type, "with": c.other, "loser": c.loser, "rule": c.rule,
        })).collect::<Vec<_>>(),
    })
}

/// Submits through the log and counts what happened in this peer's metrics.
async fn submit(app: &AppState, command: Command) -> Result<state::Outcome, ApiError> {
    let started = Instant::now();
    let spec = match &command {
        Command::SubmitAction { spec, .. } => Some(spec.clone()),
        Command::ReportAnomaly { action, .. } => action.clone(),
        _ => None,
    };
    let outcome = app.peer.write(command).await?;
    let submitted = match &outcome.detail {
        Some(Detail::Submitted(s)) => Some(s),
        Some(Detail::Anomaly { submitted, .. }) => submitted.as_ref(),
        _ => None,
    };
    if let (Some(spec), Some(s)) = (spec, submitted) {
        if !s.duplicate {
            let source = if spec.source == Source::Deterministic { "deterministic" } else { "ai_driven" };
            let kind = app.peer.metrics.action_type_label(&spec.kind);
            app.peer.metrics.actions.with_label_values(&[kind, source]).inc();
            for c in &s.conflicts {
                app.peer.metrics.action_conflicts.with_label_values(&[&c.conflict_type]).inc();
            }
            if !s.conflicts.is_empty() {
                app.peer.metrics.resolution_seconds.observe(started.elapsed().as_secs_f64());
            }
        }
    }
    Ok(outcome)
}

/// `{"type", "target", "source", "priority", "confidence", "parameters"}` → 202.
pub async fn submit_action(State(app): State<AppState>, JsonBody(mut body): JsonBody) -> Result<Response, ApiError> {
    let kind = text("type", body.string("type")?)?;
    let target = text("target", body.string("target")?)?;
    let source = source("source", body.opt_string("source")?, Source::Deterministic)?;
    // Out of u8's range is out of the priorities' too: validate names the range.
    let priority = body.opt_u64("priority")?.map_or(3, |p| u8::try_from(p).unwrap_or(u8::MAX));
    let confidence = body.f64("confidence")?.unwrap_or(1.0);
    let parameters = json_map("parameters", body.object("parameters")?.unwrap_or_default())?;
    body.finish()?;
    let spec = ActionSpec { kind, target, source, priority, confidence, parameters };
    validate::action_spec(&spec)?;
    let outcome = submit(&app, Command::SubmitAction { spec, at_ms: UNSTAMPED }).await?;
    let Some(Detail::Submitted(s)) = outcome.detail else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the submission has no outcome"));
    };
    let mut answer = submitted_view(&s);
    answer["revision"] = json!(outcome.revision);
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

pub async fn list_actions(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let params = Params::parse(q.as_deref());
    let status: Option<Status> = match params.get("status") {
        None => None,
        Some(s) => Some(
            serde_json::from_value(json!(s))
                .map_err(|_| ApiError::invalid("status", "must be queued, running, completed, failed or superseded"))?,
        ),
    };
    let limit = page_limit(&params)?;
    let after = after_id(&params)?;
    // Queued actions come in queue order, and `after` resumes after that action if it is
    // still queued; every other list is in id order.
    let mut page: Vec<Action> = read(&app, q, |s| match status {
        Some(Status::Queued) => {
            let queue = s.engine.queue();
            let start = queue.iter().position(|a| a.id == after).map_or(0, |i| i + 1);
            queue.into_iter().skip(start).take(limit + 1).cloned().collect()
        }
        _ => s
            .engine
            .actions
            .range(after.saturating_add(1)..)
            .map(|(_, a)| a)
            .filter(|a| status.is_none_or(|st| a.status == st))
            .take(limit + 1)
            .cloned()
            .collect(),
    })
    .await?;
    let next = cut_page(&mut page, limit, |a| a.id);
    let actions: Vec<Value> = page.iter().map(action_view).collect();
    Ok(Json(json!({ "actions": actions, "next": next })))
}

pub async fn get_action(State(app): State<AppState>, Path(id): Path<u64>, RawQuery(q): RawQuery) -> Answer {
    let action = read(&app, q, |s| s.engine.actions.get(&id).map(action_view)).await?;
    found(action, "action", &id.to_string())
}

/// `{"types": [...], "worker": "w1", "lease_s": 30}` → the action to run, or `{"action": null}`.
pub async fn claim(State(app): State<AppState>, JsonBody(mut body): JsonBody) -> Answer {
    let kinds = body.strings("types")?;
    let worker = text("worker", body.string("worker")?)?;
    let lease_s = body.opt_u64("lease_s")?.unwrap_or(30);
    body.finish()?;
    if kinds.is_empty() {
        return Err(ApiError::invalid("types", "list the action types this worker handles"));
    }
    validate::batch("types", kinds.len())?;
    let lease_ms = lease_s.saturating_mul(1000);
    validate::lease_ms("lease_s", lease_ms)?;
    let command = Command::ClaimAction { worker, kinds, lease_ms, at_ms: UNSTAMPED };
    let outcome = app.peer.write(command).await?;
    let claimed = match outcome.detail {
        Some(Detail::Claimed(c)) => c,
        _ => None,
    };
    app.peer.applied_locally(outcome.revision).await?;
    // The action as the claim left it: a later change (e.g. its lease already expired)
    // must not make the worker doubt what it was handed.
    let action = claimed.and_then(|c| {
        let mut view = app.peer.state.read().state.engine.actions.get(&c.id).map(action_view)?;
        view["status"] = json!("running");
        view["worker"] = json!(c.worker);
        view["attempts"] = json!(c.attempt);
        view["started_ms"] = json!(c.started_ms);
        view["lease_until_ms"] = json!(c.lease_until_ms);
        Some(view)
    });
    Ok(Json(json!({"action": action, "revision": outcome.revision})))
}

async fn report(app: AppState, id: u64, mut body: Fields, ok: bool) -> Answer {
    let worker = text("worker", body.string("worker")?)?;
    let message = body.opt_string(if ok { "result" } else { "error" })?;
    let attempt = body.opt_u64("attempt")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    body.finish()?;
    if let Some(m) = &message {
        validate::short_text(if ok { "result" } else { "error" }, m, validate::MAX_MESSAGE_LEN)?;
    }
    let outcome = app.peer.write(Command::ReportAction { id, worker, attempt, ok, message, at_ms: UNSTAMPED }).await?;
    app.peer.applied_locally(outcome.revision).await?;
    let action = app.peer.state.read().state.engine.actions.get(&id).map(action_view);
    Ok(Json(json!({"action": action, "revision": outcome.revision})))
}

pub async fn complete(State(app): State<AppState>, Path(id): Path<u64>, JsonBody(body): JsonBody) -> Answer {
    report(app, id, body, true).await
}

pub async fn fail(State(app): State<AppState>, Path(id): Path<u64>, JsonBody(body): JsonBody) -> Answer {
    report(app, id, body, false).await
}

// ---- anomalies ----

fn priority_of(severity: &str) -> u8 {
    match severity {
        "critical" => 1,
        "high" | "error" => 2,
        "medium" | "warning" => 3,
        _ => 4,
    }
}

fn anomaly_view(a: &Anomaly, actions: &BTreeMap<u64, Action>) -> Value {
    let details: Map<String, Value> = a.report.details.iter().map(|(k, v)| (k.clone(), parse_json(v))).collect();
    let action = a.action.and_then(|id| actions.get(&id));
    let status = match (a.status, action.map(|x| x.status)) {
        (crate::state::actions::AnomalyStatus::Resolved, _) => "resolved",
        (_, Some(Status::Queued)) => "accepted",
        (_, Some(Status::Running)) => "in_progress",
        (_, Some(Status::Completed)) => "remediated",
        (_, Some(Status::Failed)) => "failed",
        (_, Some(Status::Superseded)) => "superseded",
        (_, None) => "recorded",
    };
    json!({
        "anomaly_id": a.id, "status": status, "timestamp": a.report.timestamp, "type": a.report.kind,
        "severity": a.report.severity, "confidence_score": a.report.confidence, "details": details,
        "recommended_action": a.report.recommended_action, "source": a.report.source,
        "fingerprint": a.report.fingerprint, "action": action.map(action_view), "revision": a.revision,
    })
}

/// The node or resource an anomaly's details name.
fn target_of(details: &BTreeMap<String, String>) -> Option<String> {
    ["node", "target", "instance", "pod", "deployment", "domain", "site"]
        .iter()
        .find_map(|k| details.get(*k))
        .map(|v| serde_json::from_str::<String>(v).unwrap_or_else(|_| v.clone()))
}

/// The seed's anomaly: `{"timestamp", "type", "severity", "confidence_score", "details",
/// "recommended_action", "source"}` → 201 with the anomaly and its action.
pub async fn report_anomaly(State(app): State<AppState>, JsonBody(mut body): JsonBody) -> Result<Response, ApiError> {
    let timestamp = text("timestamp", body.string("timestamp")?)?;
    let kind = text("type", body.string("type")?)?;
    let severity = body.string("severity")?;
    // A report's own scale; alerts from Alertmanager carry theirs (e.g. `warning`).
    if !["low", "medium", "high", "critical"].contains(&severity.as_str()) {
        return Err(ApiError::invalid("severity", "must be low, medium, high or critical"));
    }
    let confidence =
        body.f64("confidence_score")?.ok_or_else(|| ApiError::invalid("confidence_score", "is required"))?;
    let details = json_map("details", body.object("details")?.unwrap_or_default())?;
    let recommended_action =
        body.opt_string("recommended_action")?.map(|a| text("recommended_action", a)).transpose()?;
    let source = source("source", body.opt_string("source")?, Source::AiDriven)?;
    body.finish()?;
    let action = match &recommended_action {
        None => None,
        Some(kind) => {
            let target = target_of(&details).ok_or_else(|| {
                ApiError::invalid(
                    "details",
                    "name what to act on: details.node, details.target (or instance, pod, deployment, domain, site)",
                )
            })?;
            Some(ActionSpec {
                kind: kind.clone(),
                target: text("details", target)?,
                source,
                priority: priority_of(&severity),
                confidence,
                parameters: BTreeMap::new(),
            })
        }
    };
    let priority = priority_of(&severity);
    let report =
        AnomalyReport { timestamp, kind, severity, confidence, details, recommended_action, source, fingerprint: None };
    validate::anomaly_report(&report)?;
    let outcome = submit(&app, Command::ReportAnomaly { report, action, at_ms: UNSTAMPED }).await?;
    let Some(Detail::Anomaly { id, submitted }) = outcome.detail else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the report has no outcome"));
    };
    let answer = json!({
        "anomaly_id": id, "status": "accepted", "assigned_layer": source, "priority": priority,
        "action_id": submitted.as_ref().map(|s| s.id), "action": submitted.as_ref().map(submitted_view),
        "revision": outcome.revision,
    });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub async fn get_anomaly(State(app): State<AppState>, Path(id): Path<u64>, RawQuery(q): RawQuery) -> Answer {
    let anomaly = read(&app, q, |s| s.engine.anomalies.get(&id).map(|a| anomaly_view(a, &s.engine.actions))).await?;
    found(anomaly, "anomaly", &id.to_string())
}

pub async fn list_anomalies(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let params = Params::parse(q.as_deref());
    let limit = page_limit(&params)?;
    let after = after_id(&params)?;
    let (mut page, actions): (Vec<Anomaly>, BTreeMap<u64, Action>) = read(&app, q, |s| {
        let page: Vec<Anomaly> =
            s.engine.anomalies.range(after.saturating_add(1)..).map(|(_, a)| a.clone()).take(limit + 1).collect();
        let actions = page
            .iter()
            .filter_map(|a| a.action)
            .filter_map(|id| s.engine.actions.get(&id).map(|x| (id, x.clone())))
            .collect();
        (page, actions)
    })
    .await?;
    let next = cut_page(&mut page, limit, |a| a.id);
    let all: Vec<Value> = page.iter().map(|a| anomaly_view(a, &actions)).collect();
    Ok(Json(json!({ "anomalies": all, "next": next })))
}

/// Alertmanager's webhook (payload version 4): each firing alert becomes an anomaly (one
/// per fingerprint while open) and an action; each resolved alert closes its anomaly.
pub async fn alertmanager(State(app): State<AppState>, JsonBody(mut body): JsonBody) -> Answer {
    let version = body.value("version").and_then(|v| v.as_str().map(String::from));
    if version.as_deref() != Some("4") {
        return Err(ApiError::invalid("version", "this endpoint takes Alertmanager's webhook payload version \"4\""));
    }
    let Some(Value::Array(alerts)) = body.value("alerts") else {
        return Err(ApiError::invalid("alerts", "must be a list of alerts"));
    };
    // The rest of the payload (receiver, groupKey, common labels, ...) is not needed.
    if alerts.len() > MAX_ALERTS {
        return Err(ApiError::invalid("alerts", format!("has {} alerts; the limit is {MAX_ALERTS}", alerts.len())));
    }
    let mut parsed = Vec::new();
    for (i, alert) in alerts.iter().enumerate() {
        parsed.push(parse_alert(alert).map_err(|mut e| {
            e.field = Some(format!("alerts[{i}].{}", e.field.unwrap_or_default()));
            e
        })?);
    }
    let mut results = Vec::new();
    for (firing, report, action) in parsed {
        let fingerprint = report.fingerprint.clone().unwrap_or_default();
        if firing {
            let outcome = submit(&app, Command::ReportAnomaly { report, action, at_ms: UNSTAMPED }).await?;
            if let Some(Detail::Anomaly { id, submitted }) = outcome.detail {
                results.push(json!({
                    "fingerprint": fingerprint, "status": "firing", "anomaly_id": id,
                    "action_id": submitted.as_ref().map(|s| s.id), "new": submitted.is_some(),
                }));
            }
        } else {
            let outcome =
                app.peer.write(Command::ResolveAlert { fingerprint: fingerprint.clone(), at_ms: UNSTAMPED }).await?;
            let closed = matches!(outcome.detail, Some(Detail::Count(1)));
            results.push(json!({"fingerprint": fingerprint, "status": "resolved", "closed": closed}));
        }
    }
    Ok(Json(json!({ "alerts": results })))
}

fn parse_alert(alert: &Value) -> Result<(bool, AnomalyReport, Option<ActionSpec>), ApiError> {
    let firing = match alert["status"].as_str() {
        Some("firing") => true,
        Some("resolved") => false,
        _ => return Err(ApiError::invalid("status", "must be firing or resolved")),
    };
    let labels = alert["labels"].as_object().cloned().unwrap_or_default();
    let annotations = alert["annotations"].as_object().cloned().unwrap_or_default();
    let label = |k: &str| labels.get(k).and_then(|v| v.as_str()).map(String::from);
    let alertname = label("alertname").ok_or_else(|| ApiError::invalid("labels.alertname", "is required"))?;
    let fingerprint = match alert["fingerprint"].as_str() {
        Some(f) if !f.is_empty() => f.to_string(),
        // Alertmanager always sends one; without it, the sorted labels identify the alert.
        _ => {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for (k, v) in &labels {
                h.update(format!("{k}={v};"));
            }
            h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
        }
    };
    let severity = label("severity").unwrap_or_else(|| "warning".into());
    let mut all = labels.clone();
    for (k, v) in &annotations {
        all.entry(format!("annotation_{k}")).or_insert_with(|| v.clone());
    }
    let mut details = json_map("labels", all)?;
    if let Some(instance) = details.get("instance").cloned() {
        // Prometheus instances are host:port; the node is the host.
        let host: String = serde_json::from_str::<String>(&instance).unwrap_or(instance);
        let host = host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(host);
        details.insert("instance".into(), json!(host).to_string());
    }
    let kind = label("action")
        .or_else(|| annotations.get("recommended_action").and_then(|v| v.as_str()).map(String::from))
        .unwrap_or_else(|| snake_case(&alertname));
    let report = AnomalyReport {
        timestamp: alert["startsAt"].as_str().unwrap_or("").to_string(),
        kind: text("labels.alertname", alertname)?,
        severity: severity.clone(),
        confidence: 1.0,
        details: details.clone(),
        recommended_action: Some(kind.clone()),
        source: Source::Deterministic,
        fingerprint: Some(fingerprint),
    };
    validate::anomaly_report(&report)?;
    let action = match target_of(&details) {
        Some(target) if firing => Some(ActionSpec {
            kind: text("labels.action", kind)?,
            target: text("labels.node", target)?,
            source: Source::Deterministic,
            priority: priority_of(&severity),
            confidence: 1.0,
            parameters: BTreeMap::new(),
        }),
        None if firing => {
            return Err(ApiError::invalid(
                "labels",
                "name the node or target: labels node, target, instance, pod, deployment, domain or site",
            ))
        }
        _ => None,
    };
    Ok((firing, report, action))
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out
}

// ---- status and policy ----

/// The engine status of seed 002. Read at the consistency asked for; when no leader can
/// confirm the read, answered from this peer's own state with `engine_status: no_leader`,
/// because this is what an operator looks at during an outage.
pub async fn engine_status(State(app): State<AppState>, RawQuery(q): RawQuery) -> Answer {
    let known = if app.peer.status().leader.is_some() { "operational" } else { "no_leader" };
    match read(&app, q, |s| status_view(s, known)).await {
        Err(e) if e.kind == "no_leader" => Ok(status_view(&app.peer.state.read().state, "no_leader")),
        answer => answer,
    }
}

fn status_view(s: &state::State, engine_status: &str) -> Json<Value> {
    let e = &s.engine;
    let queued = e.actions.values().filter(|a| a.status == Status::Queued).count();
    let layer = |name: &str, source: Source| {
        json!({
            "status": "healthy",
            "actions_processed": e.stats.processed.get(name).copied().unwrap_or(0),
            "open": e.actions.values().filter(|a| a.is_open() && a.source == source).count(),
        })
    };
    Json(json!({
        "engine_status": engine_status,
        "active_actions": e.running(), "queued_actions": queued,
        "conflicts_detected": e.stats.conflicts_detected, "conflicts_resolved": e.stats.conflicts_resolved,
        "layers": {"deterministic": layer("deterministic", Source::Deterministic), "ai_driven": layer("ai_driven", Source::AiDriven)},
        "policy": e.policy,
    }))
}

pub async fn put_action_policy(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
    JsonBody(mut body): JsonBody,
) -> Answer {
    let flags = Flags::parse(q.as_deref())?;
    let current = read(&app, None, |s| s.engine.policy.clone()).await?;
    let confidence_threshold = body.f64("confidence_threshold")?.unwrap_or(current.confidence_threshold);
    // Out of u32's range is out of every limit's: validate::action_policy names the range.
    let mut small = |name: &str, current: u32| -> Result<u32, ApiError> {
        Ok(body.opt_u64(name)?.map_or(current, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    };
    let max_active = small("max_active", current.max_active)?;
    let max_attempts = small("max_attempts", current.max_attempts)?;
    let rate_limit = small("rate_limit", current.rate_limit)?;
    let retry_backoff_ms = body.opt_u64("retry_backoff_ms")?.unwrap_or(current.retry_backoff_ms);
    let rate_window_ms = body.opt_u64("rate_window_ms")?.unwrap_or(current.rate_window_ms);
    let exclusive = match body.value("exclusive") {
        None => current.exclusive,
        Some(Value::Array(pairs)) => pairs
            .iter()
            .enumerate()
            .map(|(i, p)| match p.as_array().map(|a| a.as_slice()) {
                Some([Value::String(a), Value::String(b)]) => Ok((a.clone(), b.clone())),
                _ => Err(ApiError::invalid(format!("exclusive[{i}]"), "must be a pair of action types")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::invalid("exclusive", "must be a list of [type, type] pairs")),
    };
    body.finish()?;
    let policy = ActionPolicy {
        confidence_threshold,
        max_active,
        max_attempts,
        retry_backoff_ms,
        rate_limit,
        rate_window_ms,
        exclusive,
        revision: 0,
    };
    validate::action_policy(&policy)?;
    let outcome = app.peer.write(Command::PutActionPolicy { policy: policy.clone() }.guarded(flags.cas)).await?;
    Ok(Json(json!({"policy": ActionPolicy { revision: outcome.revision, ..policy }, "revision": outcome.revision})))
}
