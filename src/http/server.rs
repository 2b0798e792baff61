use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

use super::resource::{delete, get as get_one, list, Domains, Nodes, Regions, Sites, Zones};
use super::{actions, cluster, objects, registry, steering, sync, ApiError};
use crate::peer::Peer;

#[derive(Clone)]
pub struct AppState {
    pub peer: Arc<Peer>,
    /// `$SWITCHBOARD_ADMIN_TOKEN`: when set, writes and cluster calls need it.
    pub admin_token: Option<Arc<str>>,
    pub max_body_bytes: usize,
    pub limits: Arc<super::RequestLimits>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(cluster::health))
        .route("/ready", get(cluster::ready))
        .route("/metrics", get(cluster::metrics))
        .route("/v1/peer", get(cluster::whoami))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/init", post(cluster::init))
        .route("/v1/cluster/peers", post(cluster::add_peer))
        .route("/v1/cluster/peers/{id}", axum::routing::delete(cluster::remove_peer))
        .route("/v1/regions", get(list::<Regions>))
        .route("/v1/regions/{name}", put(registry::put_region).get(get_one::<Regions>).delete(delete::<Regions>))
        .route("/v1/nodes", get(list::<Nodes>))
        .route("/v1/nodes/{id}", put(registry::put_node).get(get_one::<Nodes>).delete(delete::<Nodes>))
        .route("/v1/nodes/{id}/heartbeat", post(steering::heartbeat))
        .route("/v1/nodes/{id}/maintenance", put(steering::maintenance))
        .route("/v1/zones", get(list::<Zones>))
        .route("/v1/zones/{name}", put(steering::put_zone).get(get_one::<Zones>).delete(delete::<Zones>))
        .route("/v1/sites", get(list::<Sites>))
        .route("/v1/sites/{id}", put(steering::put_site).get(get_one::<Sites>).delete(delete::<Sites>))
        .route("/v1/sites/{id}/pin", put(steering::pin_site).delete(steering::unpin_site))
        .route("/v1/domains", get(list::<Domains>))
        .route("/v1/domains/{name}", put(steering::put_domain).get(get_one::<Domains>).delete(delete::<Domains>))
        .route("/v1/domains/{name}/lock", put(steering::lock_domain).delete(steering::unlock_domain))
        .route("/v1/dispatch", get(steering::table))
        .route("/v1/resolve", get(steering::resolve))
        .route("/v1/policy/scoring", put(steering::put_policy).get(steering::get_policy))
        .route("/v1/objects", get(objects::list_objects))
        .route("/v1/objects/{id}", put(objects::put_object).get(objects::get_object).delete(objects::delete_object))
        .route("/v1/objects/{id}/replicas", post(objects::mark_replica))
        .route("/v1/repairs", get(objects::repairs))
        .route("/v1/conflicts", get(objects::list_conflicts))
        .route("/v1/conflicts/{id}/resolve", post(objects::resolve_conflict))
        .route("/v1/placement/{hash}", get(objects::placement))
        .route("/v1/schedule", post(objects::schedule))
        .route("/v1/scheduler/config", put(objects::put_scheduler).get(objects::get_scheduler))
        .route("/v1/regions/{name}/changes", get(sync::changes))
        .route("/v1/regions/{name}/acks", post(sync::ack))
        .route("/v1/regions/{name}/pull", post(sync::pull))
        .route("/v1/regions/{name}/heartbeat", post(sync::region_heartbeat))
        .route("/v1/sync", get(sync::overview))
        .route("/v1/policy/sync", put(sync::put_sync_policy))
        .route("/v1/watch", get(sync::watch))
        .route("/v1/actions", post(actions::submit_action).get(actions::list_actions))
        .route("/v1/actions/claim", post(actions::claim))
        .route("/v1/actions/{id}", get(actions::get_action))
        .route("/v1/actions/{id}/complete", post(actions::complete))
        .route("/v1/actions/{id}/fail", post(actions::fail))
        .route("/v1/anomalies", post(actions::report_anomaly).get(actions::list_anomalies))
        .route("/v1/anomalies/{id}", get(actions::get_anomaly))
        .route("/v1/alertmanager", post(actions::alertmanager))
        .route("/v1/status", get(actions::engine_status))
        .route("/v1/policy/actions", put(actions::put_action_policy))
        .route_layer(middleware::from_fn(cas_only_where_it_applies))
        .fallback(|| async { ApiError::not_found("no such endpoint; see docs/api.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see docs/api.md",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), super::limits::limit))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// The writes that honour `?cas=REV`: each writes one resource that carries a revision.
/// Anywhere else `?cas=` would be ignored, so it is refused (400) instead.
const CAS_ROUTES: &[(&str, &[Method])] = &[
    ("/v1/regions/{name}", &[Method::PUT, Method::DELETE]),
    ("/v1/nodes/{id}", &[Method::PUT, Method::DELETE]),
    ("/v1/nodes/{id}/maintenance", &[Method::PUT]),
    ("/v1/zones/{name}", &[Method::PUT, Method::DELETE]),
    ("/v1/sites/{id}", &[Method::PUT, Method::DELETE]),
    ("/v1/sites/{id}/pin", &[Method::PUT, Method::DELETE]),
    ("/v1/domains/{name}", &[Method::PUT, Method::DELETE]),
    ("/v1/domains/{name}/lock", &[Method::PUT, Method::DELETE]),
    ("/v1/objects/{id}", &[Method::PUT, Method::DELETE]),
    ("/v1/policy/scoring", &[Method::PUT]),
    ("/v1/policy/sync", &[Method::PUT]),
    ("/v1/policy/actions", &[Method::PUT]),
    ("/v1/scheduler/config", &[Method::PUT]),
];

fn cas_applies(method: &Method, route: &str) -> bool {
    CAS_ROUTES.iter().any(|(r, methods)| *r == route && methods.contains(method))
}

async fn cas_only_where_it_applies(request: Request, next: Next) -> Result<Response, ApiError> {
    let asks_cas = super::extract::Params::parse(request.uri().query()).get("cas").is_some();
    if asks_cas {
        let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str()).unwrap_or("");
        if !cas_applies(request.method(), route) {
            return Err(ApiError::invalid(
                "cas",
                format!(
                    "{} {route} does not take ?cas: it writes no single resource with a revision \
                     (docs/api.md lists the writes that do)",
                    request.method()
                ),
            ));
        }
    }
    Ok(next.run(request).await)
}

/// With an admin token set, every /v1 write and every /v1/cluster call needs it.
async fn authorize(State(app): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(token) = &app.admin_token else { return Ok(next.run(request).await) };
    let path = request.uri().path();
    let is_write = !matches!(*request.method(), Method::GET | Method::HEAD);
    let guarded = path.starts_with("/v1/cluster") || (path.starts_with("/v1/") && is_write);
    if guarded {
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this call needs 'Authorization: Bearer <token>' with the peer's SWITCHBOARD_ADMIN_TOKEN",
            ));
        }
    }
    Ok(next.run(request).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn count(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let response = next.run(request).await;
    app.peer.metrics.http_requests.with_label_values(&[method, response.status().as_str()]).inc();
    response
}

/// The method as a metrics label: the methods of HTTP, and `other` for any a client makes
/// up, so that the label set stays bounded.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN.iter().find(|m| *m == method).map(|m| m.as_str()).unwrap_or("other")
}
