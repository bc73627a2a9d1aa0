//! Operations endpoints: liveness, readiness, Prometheus metrics, the JWKS, the OpenAPI
//! document and the offline API reference at `/docs`.

pub mod docs;
pub mod stats;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/.well-known/jwks.json", get(jwks))
}

/// GET /healthz — the process is up.
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// GET /readyz — the database answers (and, in cluster mode, Redis answers and this node is
/// subscribed to the cluster channel): 200 with each one's state; otherwise 503, a problem
/// document with the same members.
async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.db.ping().await;
    if let Err(e) = &database {
        tracing::warn!(error = %e, "readiness check: the database does not answer");
    }
    let mut body = serde_json::json!({
        "status": "ready",
        "database": if database.is_ok() { "ok" } else { "unreachable" },
    });
    let mut ready = database.is_ok();
    if let Some(c) = &state.cluster {
        let redis = match (c.ping().await, c.subscribed()) {
            (true, true) => "ok",
            // Answers, but this node does not hear the others yet.
            (true, false) => "subscribing",
            (false, _) => "unreachable",
        };
        if redis != "ok" {
            tracing::warn!(redis, "readiness check: Redis is not usable");
        }
        body["redis"] = redis.into();
        body["node"] = c.node().into();
        ready &= redis == "ok";
    }
    if ready {
        return axum::Json(body).into_response();
    }
    // A problem document whose extension members say which dependency is away.
    body["status"] = 503.into();
    body["type"] = "/docs#error-unavailable".into();
    body["title"] = "Service Unavailable".into();
    body["code"] = "unavailable".into();
    body["detail"] = "a dependency does not answer; see the members of this document".into();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// GET /metrics — Prometheus text format; with `PALAVER_METRICS_TOKEN` set, only for
/// `Authorization: Bearer <token>` (401 otherwise).
async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let given = crate::http::bearer_token(&headers).unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            return crate::error::AppError::new(
                crate::error::Code::Unauthorized,
                "/metrics needs the metrics bearer token",
            )
            .into_response();
        }
    }
    for (pool, size, idle) in state.db.pool_stats() {
        metrics::gauge!("db_pool_connections", "pool" => pool).set(size as f64);
        metrics::gauge!("db_pool_idle_connections", "pool" => pool).set(idle as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// GET /.well-known/jwks.json — the public keys that verify access tokens.
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(state.keys.jwks()),
    )
}
