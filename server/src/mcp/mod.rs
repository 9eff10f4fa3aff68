//! The MCP endpoint `/mcp` (streamable HTTP): bearer-token authentication in front, the gateway
//! handler behind it, and the pool of upstream connections it relays to.

pub mod gateway;
pub mod upstream;

use crate::http::auth::bearer_token;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use gateway::{Gateway, GatewayShared};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Host names (without port) the MCP endpoint answers to: the public URL's host and loopback.
/// Requests naming any other Host are refused (DNS-rebinding protection).
pub fn allowed_hosts(public_url: &str) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let authority = public_url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(public_url)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default().to_string()
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
            .to_string()
    };
    if !host.is_empty() && !hosts.contains(&host.to_ascii_lowercase()) {
        hosts.push(host.to_ascii_lowercase());
    }
    hosts
}

/// The `/mcp` routes. `shutdown` ends open sessions and streams on graceful shutdown.
pub fn router(state: &AppState, shutdown: CancellationToken) -> Router<AppState> {
    let shared = GatewayShared {
        snapshot: state.snapshot.clone(),
        upstreams: state.upstreams.clone(),
        audit: state.audit.clone(),
        clock: state.store.clock().clone(),
        fail_open: state.config.audit_fail_open,
        catalog: state.catalog.clone(),
        exposed: Arc::default(),
    };
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts(&state.config.public_url()))
        .with_cancellation_token(shutdown);
    let aggregate_shared = shared.clone();
    let service = StreamableHttpService::new(
        move || Ok(Gateway::new(aggregate_shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config.clone(),
    );
    // One connector alone, its tools under their own names; sessions of their own.
    let scoped = StreamableHttpService::new(
        move || Ok(Gateway::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let one_connector = move |Path(connector): Path<String>, mut req: Request| {
        let svc = scoped.clone();
        async move {
            req.extensions_mut()
                .insert(gateway::ConnectorScope(connector));
            match tower::ServiceExt::oneshot(svc, req).await {
                Ok(res) => res.into_response(),
                Err(never) => match never {},
            }
        }
    };
    Router::new()
        .route_service("/mcp", service)
        .route("/mcp/{connector}", axum::routing::any(one_connector))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
}

/// Resolves the bearer token to a principal from the snapshot (no database round trip); on a
/// miss the store is asked once, for tokens created since the snapshot was built.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer_token(req.headers()).map(str::to_string) else {
        return unauthorized(None);
    };
    let mut found = state.snapshot.get().principal_for_token(&token);
    if found.is_none()
        && let Ok(Some(_)) = state.store.find_token(&token).await
    {
        if let Err(e) = state.snapshot.reload().await {
            tracing::error!(error = %e, "snapshot reload failed");
        }
        found = state.snapshot.get().principal_for_token(&token);
    }
    let Some(principal) = found else {
        return unauthorized(Some("invalid, revoked or expired token"));
    };
    req.extensions_mut().insert(principal);
    let res = next.run(req).await;
    cut_off_when_revoked(res, state, token)
}

/// Streams (SSE) stay open for as long as the caller is allowed: when a snapshot change revokes
/// the token (user disabled or deleted, token revoked), the stream ends at once.
fn cut_off_when_revoked(res: Response, state: AppState, token: String) -> Response {
    let is_stream = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_stream {
        return res;
    }
    let mut changes = state.snapshot.subscribe();
    let snapshot = state.snapshot.clone();
    let revoked = async move {
        while changes.changed().await.is_ok() {
            if snapshot.get().principal_for_token(&token).is_none() {
                tracing::info!("access revoked: closing an open MCP stream");
                return;
            }
        }
        // The snapshot handle is gone (shutdown): let the stream end with the server.
        std::future::pending::<()>().await
    };
    let (parts, body) = res.into_parts();
    let stream = futures::StreamExt::take_until(body.into_data_stream(), Box::pin(revoked));
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// 401 as RFC 6750 words it: no error code when no credentials were sent, `invalid_token` when
/// the presented one is not valid.
fn unauthorized(invalid: Option<&str>) -> Response {
    let (body, challenge) = match invalid {
        Some(description) => (
            serde_json::json!({"error": "invalid_token", "error_description": description}),
            "Bearer realm=\"toolgate\", error=\"invalid_token\"",
        ),
        None => (
            serde_json::json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
            "Bearer realm=\"toolgate\"",
        ),
    };
    let mut res = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::allowed_hosts;

    #[test]
    fn hosts_from_public_url() {
        assert_eq!(
            allowed_hosts("http://127.0.0.1:8080"),
            vec!["localhost", "127.0.0.1", "::1"]
        );
        assert!(
            allowed_hosts("https://TG.example.com/base").contains(&"tg.example.com".to_string())
        );
        assert!(allowed_hosts("http://[fd00::1]:80").contains(&"fd00::1".to_string()));
    }
}
