//! The MCP endpoint `/mcp` (streamable HTTP): bearer-token authentication in front, the gateway
//! handler behind it, and the pool of upstream connections it relays to.

pub mod gateway;
pub mod sessions;
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
use toolgate_domain::model::Scopes;

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

/// Origins a browser may call `/mcp` from (the MCP transport spec asks servers to check it
/// against DNS rebinding): the public URL's own, and any port of the extra host names. Requests
/// without `Origin` (agents are not browsers) are not affected.
pub fn allowed_origins(public_url: &str, extra_hosts: &[String]) -> Vec<String> {
    let mut origins = Vec::new();
    if let Ok(url) = reqwest::Url::parse(public_url)
        && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
    {
        origins.push(format!("{}://{host}:{port}", url.scheme()));
    }
    for h in extra_hosts {
        let h = h.to_ascii_lowercase();
        origins.push(format!("https://{h}:*"));
        origins.push(format!("http://{h}:*"));
    }
    origins
}

/// The `/mcp` routes. On shutdown `streams` ends the open GET streams at once (so the listener
/// can drain) while calls in flight finish; `sessions` ends the sessions after that.
pub fn router(
    state: &AppState,
    streams: CancellationToken,
    sessions: CancellationToken,
) -> Router<AppState> {
    let shared = GatewayShared {
        snapshot: state.snapshot.clone(),
        upstreams: state.upstreams.clone(),
        audit: state.audit.clone(),
        clock: state.store.clock().clone(),
        fail_open: state.config.audit_fail_open,
        catalog: state.catalog.clone(),
        exposed: Arc::default(),
        workflow: state.workflow.clone(),
        public_url: state.config.public_url(),
    };
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts({
            let mut hosts = allowed_hosts(&state.config.public_url());
            hosts.extend(
                state
                    .config
                    .mcp_allowed_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase()),
            );
            hosts
        })
        .with_allowed_origins(allowed_origins(
            &state.config.public_url(),
            &state.config.mcp_allowed_hosts,
        ))
        .with_cancellation_token(sessions);
    // Sessions are kept in the database too, so any replica can serve them.
    let stored = |service| {
        let mut config = config.clone();
        config.session_store = Some(Arc::new(sessions::DbSessionStore::new(
            state.store.clone(),
            service,
        )));
        config
    };
    let aggregate_shared = shared.clone();
    let service = StreamableHttpService::new(
        move || Ok(Gateway::new(aggregate_shared.clone())),
        Arc::new(LocalSessionManager::default()),
        stored(sessions::Service::Aggregate),
    );
    // One connector alone, its tools under their own names; sessions of their own.
    let scoped = StreamableHttpService::new(
        move || Ok(Gateway::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        stored(sessions::Service::Connector),
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
        .route_layer(middleware::from_fn_with_state(
            McpAuth {
                app: state.clone(),
                owners: Arc::new(sessions::SessionOwners::new(state.store.clone())),
                streams,
            },
            authenticate,
        ))
}

/// How often an open stream re-checks its credential when nothing else wakes it.
const RECHECK_MS: u64 = 15_000;

/// Largest JSON-RPC body read to find out which scope a request needs.
const MAX_PEEK_BYTES: usize = 4 * 1024 * 1024;

/// Resolves the bearer credential to a principal (personal token, Toolgate access token, or an
/// Entra app-only token of a registered service principal) from the snapshot, then checks the
/// scope the request needs: `mcp:read` for everything, `mcp:tools` for `tools/call`.
async fn authenticate(State(auth): State<McpAuth>, mut req: Request, next: Next) -> Response {
    let state = auth.app;
    let metadata = crate::oauth::resource_metadata_url(state.oauth.issuer());
    // Refused attempts count per address, so guessing tokens is throttled.
    let refused_attempt = |req: &Request| {
        let ip = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        state.rate_limits.check_mcp_refused(&ip)
    };
    let Some(token) = bearer_token(req.headers()).map(str::to_string) else {
        if let Some(throttled) = refused_attempt(&req) {
            return throttled;
        }
        return unauthorized(&metadata, None);
    };
    let (principal, credential) = match crate::oauth::authenticate(&state, &token).await {
        Ok(found) => found,
        Err(refused) => {
            if let Some(throttled) = refused_attempt(&req) {
                return throttled;
            }
            return unauthorized(&metadata, Some(refused.0));
        }
    };
    let owner = format!("{}:{}", principal.kind.as_str(), principal.user_id);
    if let Some(throttled) = state.rate_limits.check_mcp(&owner) {
        return throttled;
    }
    if !principal.scopes.contains(Scopes::READ) {
        return insufficient_scope(&metadata, Scopes::READ);
    }
    if !principal.scopes.contains(Scopes::TOOLS) && req.method() == axum::http::Method::POST {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_PEEK_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        };
        if calls_a_tool(&bytes) {
            return insufficient_scope(&metadata, Scopes::ALL);
        }
        req = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(id) = &session
        && auth.owners.check(id, &owner).await == sessions::Access::Refused
    {
        // Someone else's session: the same answer as for a session that does not exist.
        return (StatusCode::NOT_FOUND, "session not found").into_response();
    }
    let ending = req.method() == axum::http::Method::DELETE;
    let listening = req.method() == axum::http::Method::GET;
    req.extensions_mut().insert(principal);
    let res = next.run(req).await;
    match (
        &session,
        res.headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok()),
    ) {
        (None, Some(new)) => auth.owners.record(new, owner).await,
        (Some(id), _) if ending && res.status().is_success() => auth.owners.forget(id),
        _ => {}
    }
    let shutdown = listening.then(|| auth.streams.clone());
    cut_off_when_revoked(res, state, credential, shutdown)
}

const SESSION_HEADER: &str = "mcp-session-id";

/// The middleware's state: the app and who opened which MCP session.
#[derive(Clone)]
struct McpAuth {
    app: AppState,
    owners: Arc<sessions::SessionOwners>,
    /// Cancelled when shutdown begins: GET streams end then.
    streams: CancellationToken,
}

/// Whether a JSON-RPC message (or batch) is a `tools/call` request.
pub(crate) fn calls_a_tool(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    if let Ok(m) = serde_json::from_slice::<Message>(body) {
        return m.method.as_deref() == Some("tools/call");
    }
    if let Ok(batch) = serde_json::from_slice::<Vec<Message>>(body) {
        return batch
            .iter()
            .any(|m| m.method.as_deref() == Some("tools/call"));
    }
    false
}

/// Streams (SSE) stay open for as long as the caller is allowed: when a snapshot change revokes
/// the credential (user disabled or deleted, token or grant revoked, service principal disabled),
/// the stream ends at once.
/// A GET stream (server-to-client notifications) also ends when `shutdown` is cancelled; the
/// stream answering a POST ends with its answer, so a call in flight is not cut.
fn cut_off_when_revoked(
    res: Response,
    state: AppState,
    credential: crate::oauth::Credential,
    shutdown: Option<CancellationToken>,
) -> Response {
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
    let clock = state.store.clock().clone();
    let revoked = async move {
        loop {
            // Woken by a snapshot change, at the token's own expiry, or every few seconds for
            // expiries the snapshot keeps (personal tokens, service principals, secrets).
            let now = clock.now().timestamp_millis();
            let until_expiry = credential
                .expires_ms()
                .map(|at| u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                .unwrap_or(u64::MAX);
            let wait = std::time::Duration::from_millis(until_expiry.min(RECHECK_MS));
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The snapshot handle is gone (shutdown): the stream ends with the server.
                        std::future::pending::<()>().await;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
            let now = clock.now().timestamp_millis();
            if credential.resolve(&snapshot.get(), now).is_none() {
                tracing::info!("access revoked or expired: closing an open MCP stream");
                return;
            }
        }
    };
    let ended = async move {
        match shutdown {
            Some(token) => {
                tokio::select! {
                    () = revoked => {}
                    () = token.cancelled_owned() => {}
                }
            }
            None => revoked.await,
        }
    };
    let (parts, body) = res.into_parts();
    let stream = futures::StreamExt::take_until(body.into_data_stream(), Box::pin(ended));
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

fn challenge_response(status: StatusCode, body: serde_json::Value, challenge: String) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// 401 as RFC 6750 and the MCP authorization spec word it: where the Protected Resource
/// Metadata is and which scopes to ask for; `invalid_token` when the presented one is not valid.
fn unauthorized(metadata: &str, invalid: Option<&str>) -> Response {
    let scope = Scopes::ALL.to_string();
    match invalid {
        Some(description) => challenge_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "invalid_token", "error_description": description}),
            format!(
                "Bearer error=\"invalid_token\", error_description=\"{description}\", resource_metadata=\"{metadata}\", scope=\"{scope}\""
            ),
        ),
        None => challenge_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
            format!("Bearer resource_metadata=\"{metadata}\", scope=\"{scope}\""),
        ),
    }
}

/// 403 for a valid token without the scope the request needs (step-up authorization).
fn insufficient_scope(metadata: &str, needed: Scopes) -> Response {
    challenge_response(
        StatusCode::FORBIDDEN,
        serde_json::json!({"error": "insufficient_scope", "error_description": format!("this request needs the scope {needed}")}),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"{needed}\", resource_metadata=\"{metadata}\""
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::allowed_hosts;

    #[test]
    fn origins_from_public_url_and_extra_hosts() {
        assert_eq!(
            super::allowed_origins("http://127.0.0.1:8080", &[]),
            vec!["http://127.0.0.1:8080"]
        );
        assert_eq!(
            super::allowed_origins("https://TG.example.com/base", &["tg.svc".into()]),
            vec![
                "https://tg.example.com:443",
                "https://tg.svc:*",
                "http://tg.svc:*"
            ]
        );
    }

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
