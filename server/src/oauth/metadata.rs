//! The discovery documents MCP clients start from: Protected Resource Metadata (RFC 9728) for
//! `/mcp`, and Authorization Server Metadata (RFC 8414; also served as OpenID configuration,
//! where MCP clients look second).

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use toolgate_domain::model::Scopes;

/// Where the Protected Resource Metadata of `/mcp` lives (named in every 401 from `/mcp`).
pub fn resource_metadata_url(issuer: &str) -> String {
    format!("{issuer}/.well-known/oauth-protected-resource/mcp")
}

/// RFC 9728 for the MCP endpoint (the same document at the root and under `/mcp`).
pub async fn protected_resource(State(state): State<AppState>) -> Response {
    let issuer = state.oauth.issuer();
    cacheable(json!({
        "resource": state.oauth.tokens.resource,
        "authorization_servers": [issuer],
        "scopes_supported": Scopes::SUPPORTED,
        "bearer_methods_supported": ["header"],
        "resource_name": "Toolgate MCP gateway",
        "resource_documentation": format!("{issuer}/connect"),
    }))
}

/// The authorization server's metadata document.
pub fn authorization_server_document(
    issuer: &str,
    settings: &toolgate_domain::model::OAuthSettings,
) -> Value {
    let auth_methods = ["none", "client_secret_basic", "client_secret_post"];
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "scopes_supported": Scopes::SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": settings.cimd_enabled,
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": format!("{issuer}/connect"),
    });
    if settings.dcr_enabled
        && let Some(map) = doc.as_object_mut()
    {
        map.insert(
            "registration_endpoint".into(),
            Value::String(format!("{issuer}/oauth/register")),
        );
    }
    doc
}

pub async fn authorization_server(State(state): State<AppState>) -> Response {
    let settings = match state.store.oauth_settings().await {
        Ok(s) => s,
        // Unknown switches: advertise neither self-registration path (fail closed).
        Err(_) => toolgate_domain::model::OAuthSettings {
            cimd_enabled: false,
            dcr_enabled: false,
            ..Default::default()
        },
    };
    cacheable(authorization_server_document(
        state.oauth.issuer(),
        &settings,
    ))
}

fn cacheable(doc: Value) -> Response {
    let mut res = Json(doc).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=300"),
    );
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    res
}
