//! The SCIM 2.0 server at `/scim/v2` (RFC 7643/7644) as Microsoft Entra and general SCIM clients
//! use it: Users, Groups, discovery endpoints, filters, PATCH, ETags. Every change is audited and
//! takes effect on the proxy before the response goes out (the policy snapshot is rebuilt).

mod document;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod handlers;
mod patch;
mod query;
mod schema;

pub use error::ScimError;

use crate::http::auth::bearer_token;
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::time::Instant;
use toolgate_domain::model::TokenKind;

/// The SCIM client behind a request (from its bearer token).
#[derive(Clone, Debug)]
pub struct ScimClient {
    pub token_name: String,
}

/// Routes below `/scim/v2`.
pub fn router(state: &AppState) -> Router<AppState> {
    use handlers::*;
    Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/.search", post(search_all))
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .fallback(|| async { ScimError::not_found("endpoint") })
        .method_not_allowed_fallback(|| async { ScimError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authenticate_and_log,
        ))
}

/// Checks the SCIM bearer token, then logs the request (method, path, status, duration) for the
/// provisioning page and the structured log.
async fn authenticate_and_log(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let client = match bearer_token(req.headers()) {
        Some(token) => match state.store.find_token(token).await {
            // Why: only SCIM tokens; an admin or personal token here is treated like an unknown one.
            Ok(Some(g)) if g.kind == TokenKind::Scim => Some(ScimClient {
                token_name: g.token_name,
            }),
            Ok(_) => None,
            Err(e) => return ScimError::from(e).into_response(),
        },
        None => None,
    };
    let Some(client) = client else {
        tracing::warn!(%method, %path, "SCIM request without a valid SCIM token");
        return ScimError::unauthorized().into_response();
    };
    req.extensions_mut().insert(client.clone());
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let micros = started.elapsed().as_micros() as i64;
    tracing::info!(client = %client.token_name, %method, %path, status, duration_us = micros, "SCIM request");
    state
        .scim_log
        .record(client.token_name, method, path, status, micros);
    res
}

/// A JSON response with the SCIM media type.
pub(crate) fn scim_json(
    status: StatusCode,
    body: &serde_json::Value,
    etag: Option<&str>,
) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(error::SCIM_JSON),
    );
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
        res.headers_mut().insert(header::ETAG, tag);
    }
    res
}

/// Parses a request body as JSON when its content type is SCIM's or plain JSON.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ScimError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !(essence == "application/scim+json" || essence == "application/json" || essence.is_empty())
    {
        return Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            "send application/scim+json or application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("body is not valid: {e}")))
}

/// The version an `If-Match` header asks for (`W/"3"` or `"3"`); `*` means any.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimError> {
    let Some(v) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let v = v.trim();
    if v == "*" {
        return Ok(None);
    }
    let inner = v.trim_start_matches("W/").trim_matches('"');
    inner.parse::<i64>().map(Some).map_err(|_| {
        ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("unknown version {v}"),
        )
    })
}

/// The SCIM request log writer: requests are logged off the request path, in batches.
#[derive(Clone, Debug)]
pub struct ScimLog {
    tx: tokio::sync::mpsc::Sender<toolgate_domain::store::ScimRequestLog>,
}

impl ScimLog {
    pub fn start(store: toolgate_domain::store::Store) -> Self {
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<toolgate_domain::store::ScimRequestLog>(4096);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while rx.recv_many(&mut batch, 256).await > 0 {
                if let Err(e) = store.log_scim_requests(&batch).await {
                    tracing::warn!(error = %e, "SCIM request log not written");
                }
                batch.clear();
            }
        });
        ScimLog { tx }
    }

    fn record(&self, client: String, method: String, path: String, status: u16, duration_us: i64) {
        let entry = toolgate_domain::store::ScimRequestLog {
            client,
            method,
            path,
            status,
            duration_us,
        };
        // A full queue drops the log line rather than slow provisioning; the tracing log has it.
        let _ = self.tx.try_send(entry);
    }
}
