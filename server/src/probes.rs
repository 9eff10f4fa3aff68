//! Operational endpoints: `/healthz` (process up), `/readyz` (database reachable and, on
//! PostgreSQL, the change listener following other replicas), `/metrics`
//! (Prometheus text), and the request counter behind them.

use crate::metrics_names::HTTP_REQUESTS;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Longest `/readyz` waits for the database before it answers 503.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "shutting down"})),
        )
            .into_response();
    }
    // A replica that does not hear other replicas' changes could serve revoked access: not ready
    // until its change listener is back (it reconnects and catches up by itself).
    if state.store.backend() == toolgate_domain::store::Backend::Postgres
        && !state.snapshot.follows_changes()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not following configuration changes"})),
        )
            .into_response();
    }
    // The pool waits up to its acquire timeout (5 s) for a connection while the database is
    // down; a probe must answer "not ready" before the orchestrator's own timeout (3 s in
    // deploy/kubernetes.yaml) turns the wait into a failed probe with no reason given.
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping())
        .await
        .unwrap_or_else(|_| Err(toolgate_domain::Error::Internal("ping timed out".into())))
    {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "database unreachable"})),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts requests by method and status class (bounded label values).
pub async fn count_requests(req: Request, next: Next) -> Response {
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method, "status" => status).increment(1);
    res
}
