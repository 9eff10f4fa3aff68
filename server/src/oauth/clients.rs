//! OAuth clients: redirect URI rules, resolution in the spec's order (pre-registered, Client ID
//! Metadata Document, dynamically registered — each behind its admin switch), client
//! authentication at the token endpoint, and Dynamic Client Registration (RFC 7591).

use super::fetch::{FetchPolicy, fetch_client_metadata};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use toolgate_domain::crypto::{hash_password, new_token, verify_password};
use toolgate_domain::model::{AuditDecision, OAuthClientKind, OAuthSettings, Scopes};
use toolgate_domain::store::{ClientRecord, NewOAuthClient};

/// A successful CIMD fetch is reused this long (failures are never kept).
const CIMD_FRESH_MS: i64 = 5 * 60 * 1000;
/// Largest registration request accepted.
const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

pub use toolgate_domain::store::{is_loopback_redirect, redirect_host, validate_redirect_uri};

fn validate_client_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err("client_name must be 1-128 printable characters".into());
    }
    Ok(name.to_string())
}

/// Whether a client id is a Client ID Metadata Document URL.
pub fn is_cimd_id(client_id: &str, settings: &OAuthSettings) -> bool {
    client_id.starts_with("https://")
        || (settings.allow_loopback_cimd && client_id.starts_with("http://"))
}

/// Finds the client an authorization request names, honouring the admin switches; the error is
/// shown to the person (never sent to an unverified redirect URI).
pub async fn resolve_client(state: &AppState, client_id: &str) -> Result<ClientRecord, String> {
    let settings = state
        .store
        .oauth_settings()
        .await
        .map_err(|e| format!("settings unavailable: {e}"))?;
    let stored = state
        .store
        .oauth_client(client_id)
        .await
        .map_err(|e| format!("client lookup failed: {e}"))?;
    if let Some(rec) = &stored
        && rec.client.disabled
    {
        return Err("this client has been disabled by an administrator".into());
    }
    if is_cimd_id(client_id, &settings) {
        if !settings.cimd_enabled {
            return Err("client ID metadata documents are not accepted here".into());
        }
        let now = state.store.clock().now().timestamp_millis();
        if let Some(rec) = stored
            && rec.client.kind == OAuthClientKind::Cimd
            && rec.fetched_at.is_some_and(|at| now - at < CIMD_FRESH_MS)
        {
            return Ok(rec);
        }
        let policy = if settings.allow_loopback_cimd {
            FetchPolicy::dev()
        } else {
            FetchPolicy::production()
        };
        let doc = fetch_client_metadata(client_id, &policy)
            .await
            .map_err(|e| format!("the client's metadata document was refused: {e}"))?;
        for u in &doc.redirect_uris {
            validate_redirect_uri(u)?;
        }
        return state
            .store
            .upsert_cimd_client(
                client_id,
                &doc.client_name,
                &doc.redirect_uris,
                doc.client_uri.as_deref(),
            )
            .await
            .map_err(|e| format!("storing the client failed: {e}"));
    }
    let Some(rec) = stored else {
        return Err("unknown client".into());
    };
    if !kind_allowed(&rec, &settings) {
        return Err("clients of this kind are switched off by an administrator".into());
    }
    Ok(rec)
}

/// Whether the admin switches let this client in: its kind's switch, and a CIMD client (stored
/// from an earlier fetch) only while its URL is still one the current rules would fetch.
fn kind_allowed(rec: &ClientRecord, settings: &OAuthSettings) -> bool {
    match rec.client.kind {
        OAuthClientKind::Preregistered => settings.preregistered_enabled,
        OAuthClientKind::Dcr => settings.dcr_enabled,
        OAuthClientKind::Cimd => settings.cimd_enabled && is_cimd_id(&rec.client.id, settings),
    }
}

/// Client authentication at the token and revocation endpoints: HTTP Basic, or `client_id`
/// (+ `client_secret`) in the form. Confidential clients must prove their secret; public
/// clients must not send one they do not have.
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<String>,
}

/// Reads client credentials from the Authorization header or the form; `None` when the two
/// disagree or none is given.
pub fn client_credentials(
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
) -> Option<ClientCredentials> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let raw =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, rest.trim())
                    .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (id, secret) = text.split_once(':')?;
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some(ClientCredentials {
                client_id: decode(id)?,
                secret: Some(decode(secret)?),
            })
        });
    match basic {
        Some(b) => {
            if form.get("client_id").is_some_and(|id| *id != b.client_id)
                || form.contains_key("client_secret")
            {
                return None;
            }
            Some(b)
        }
        None => Some(ClientCredentials {
            client_id: form.get("client_id")?.clone(),
            secret: form.get("client_secret").cloned(),
        }),
    }
}

/// Authenticates an OAuth client (not a service principal).
pub async fn authenticate_client(
    state: &AppState,
    creds: &ClientCredentials,
) -> Result<ClientRecord, &'static str> {
    let rec = state
        .store
        .oauth_client(&creds.client_id)
        .await
        .map_err(|_| "client lookup failed")?
        .ok_or("unknown client")?;
    if rec.client.disabled {
        return Err("the client is disabled");
    }
    let settings = state
        .store
        .oauth_settings()
        .await
        .map_err(|_| "settings unavailable")?;
    if !kind_allowed(&rec, &settings) {
        return Err("clients of this kind are switched off");
    }
    match (&rec.secret_hash, &creds.secret) {
        (Some(phc), Some(secret)) => {
            if !verify_password(secret.clone(), phc.clone()).await {
                return Err("client authentication failed");
            }
        }
        (Some(_), None) => return Err("client authentication required"),
        (None, Some(_)) => return Err("this public client has no secret"),
        (None, None) => {}
    }
    Ok(rec)
}

#[derive(Debug, Deserialize)]
struct RegistrationRequest {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
}

fn registration_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut res = (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

/// `POST /oauth/register` (RFC 7591): open registration for MCP clients that have neither a
/// pre-registered id nor a metadata document. Public clients (`none`) get no secret.
pub async fn register(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let settings = match state.store.oauth_settings().await {
        Ok(s) => s,
        Err(_) => {
            return registration_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "settings unavailable",
            );
        }
    };
    if !settings.dcr_enabled {
        return registration_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic client registration is switched off",
        );
    }
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !json_ct {
        return registration_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the registration request must be application/json",
        );
    }
    if body.len() > MAX_REGISTRATION_BYTES {
        return registration_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "registration request too large",
        );
    }
    let req: RegistrationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return registration_error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                &format!("not a client metadata object: {e}"),
            );
        }
    };
    let bad = |m: &str| registration_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", m);
    let uris = req.redirect_uris.unwrap_or_default();
    if uris.is_empty() || uris.len() > 20 {
        return registration_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "give 1-20 redirect_uris",
        );
    }
    for u in &uris {
        if let Err(e) = validate_redirect_uri(u) {
            return registration_error(StatusCode::BAD_REQUEST, "invalid_redirect_uri", &e);
        }
    }
    let method = req
        .token_endpoint_auth_method
        .unwrap_or_else(|| "client_secret_basic".into());
    if !matches!(
        method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return bad(
            "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
        );
    }
    let grants = req
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    if grants.is_empty()
        || grants
            .iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return bad("grant_types may contain authorization_code and refresh_token only");
    }
    let responses = req.response_types.unwrap_or_else(|| vec!["code".into()]);
    if responses.iter().any(|r| r != "code") {
        return bad("response_types may contain code only");
    }
    // Scopes the gateway does not know are ignored (RFC 7591 §2: the server may replace them).
    let scope = req
        .scope
        .as_deref()
        .map(|s| Scopes::requested(s).to_string());
    let name = match validate_client_name(req.client_name.as_deref().unwrap_or("Unnamed client")) {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    for u in [&req.client_uri, &req.logo_uri].into_iter().flatten() {
        if !u.starts_with("https://") || u.len() > 2048 {
            return bad("client_uri and logo_uri must be https URLs");
        }
    }
    let confidential = method != "none";
    let (secret, secret_hash) = if confidential {
        let (s, _) = new_token("tgcs");
        match hash_password(s.clone()).await {
            Ok(phc) => (Some(s), Some(phc)),
            Err(_) => {
                return registration_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "hashing failed",
                );
            }
        }
    } else {
        (None, None)
    };
    let created = state
        .store
        .create_oauth_client(NewOAuthClient {
            id: None,
            kind: OAuthClientKind::Dcr,
            name: name.clone(),
            redirect_uris: uris.clone(),
            secret_hash,
            auth_method: method.clone(),
            client_uri: req.client_uri.clone(),
            logo_uri: req.logo_uri.clone(),
            created_by: Some("dcr".into()),
        })
        .await;
    let client = match created {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "client registration failed");
            return registration_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "registration failed",
            );
        }
    };
    super::audit(
        &state,
        "oauth.client_registered",
        &name,
        ("client", None),
        Some((&client.id, &client.name)),
        format!("dynamic registration; redirect_uris {uris:?}; auth {method}"),
        AuditDecision::Allow,
    )
    .await;
    let mut body = json!({
        "client_id": client.id,
        "client_id_issued_at": client.created_at.timestamp(),
        "client_name": client.name,
        "redirect_uris": uris,
        "token_endpoint_auth_method": method,
        "grant_types": grants,
        "response_types": responses,
    });
    if let Some(map) = body.as_object_mut() {
        if let Some(s) = secret {
            map.insert("client_secret".into(), json!(s));
            map.insert("client_secret_expires_at".into(), json!(0));
        }
        if let Some(scope) = scope {
            map.insert("scope".into(), json!(scope));
        }
        if let Some(u) = req.client_uri {
            map.insert("client_uri".into(), json!(u));
        }
    }
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_form_credentials() {
        let mut headers = HeaderMap::new();
        let mut form = std::collections::HashMap::new();
        form.insert("client_id".to_string(), "c1".to_string());
        let c = client_credentials(&headers, &form).unwrap();
        assert_eq!((c.client_id.as_str(), c.secret), ("c1", None));
        let basic =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "c%3A1:s%2B2");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        form.clear();
        let c = client_credentials(&headers, &form).unwrap();
        assert_eq!(c.client_id, "c:1");
        assert_eq!(c.secret.as_deref(), Some("s+2"));
        // Two different client ids: refused.
        form.insert("client_id".to_string(), "other".to_string());
        assert!(client_credentials(&headers, &form).is_none());
    }
}

/// Fuzz targets (`make fuzz`): client credentials from the Authorization header and the form,
/// client names, and redirect URIs a client registers.
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use toolgate_domain::fuzz::{config, hostile_string, short_hostile_string, url_like};
    use toolgate_domain::store::redirect_matches;

    fn encode(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    proptest! {
        #![proptest_config(config(600))]

        /// HTTP Basic as RFC 6749 §2.3.1 builds it (form-encoded id and secret) reads back as
        /// exactly that client; a form naming another client, or a second secret, is refused.
        #[test]
        fn fuzz_oauth_client_credentials(
            id in hostile_string(),
            secret in short_hostile_string(),
            form_id in prop::option::of(short_hostile_string()),
            form_secret in prop::option::of(short_hostile_string()),
            scheme in prop::sample::select(vec!["Basic", "basic", "BASIC"]),
        ) {
            let raw = format!("{}:{}", encode(&id), encode(&secret));
            let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(&format!("{scheme} {basic}"))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            headers.insert(header::AUTHORIZATION, value);
            let mut form = HashMap::new();
            if let Some(f) = &form_id {
                form.insert("client_id".to_string(), f.clone());
            }
            if let Some(s) = &form_secret {
                form.insert("client_secret".to_string(), s.clone());
            }
            let refused = form_id.as_ref().is_some_and(|f| *f != id) || form_secret.is_some();
            match client_credentials(&headers, &form) {
                Some(c) => {
                    prop_assert!(!refused);
                    prop_assert_eq!(&c.client_id, &id);
                    prop_assert_eq!(c.secret.as_deref(), Some(secret.as_str()));
                }
                None => prop_assert!(refused),
            }
        }

        /// Any Authorization header: Basic that does not decode falls back to the form.
        #[test]
        fn fuzz_oauth_client_credentials_raw_header(
            value in prop_oneof![
                hostile_string(),
                "Basic [A-Za-z0-9+/=]{0,40}",
                short_hostile_string().prop_map(|s| format!(
                    "Basic {}",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s)
                )),
            ],
            form_id in prop::option::of(short_hostile_string()),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::AUTHORIZATION, v);
            }
            let mut form = HashMap::new();
            if let Some(f) = &form_id {
                form.insert("client_id".to_string(), f.clone());
            }
            if let Some(c) = client_credentials(&headers, &form) {
                // Whatever the header said, a client id from the form is never overridden.
                if let Some(f) = &form_id {
                    prop_assert_eq!(&c.client_id, f);
                }
            }
        }

        /// Names: accepted ones are trimmed, 1-128 printable characters.
        #[test]
        fn fuzz_oauth_client_names(name in hostile_string()) {
            match validate_client_name(&name) {
                Ok(n) => {
                    prop_assert_eq!(n.as_str(), name.trim());
                    prop_assert!((1..=128).contains(&n.chars().count()));
                    prop_assert!(!n.chars().any(char::is_control));
                }
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }

        /// Redirect URIs: an accepted one has no fragment or credentials and a safe scheme; a
        /// requested URI that matches an accepted one is itself acceptable, and goes to the
        /// same loopback host when it is not the registered string itself.
        #[test]
        fn fuzz_oauth_redirect_uris(registered in url_like(), requested in url_like()) {
            let _ = redirect_host(&registered);
            let _ = is_loopback_redirect(&requested);
            if validate_redirect_uri(&registered).is_err() {
                return Ok(());
            }
            let url = reqwest::Url::parse(&registered).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(url.fragment().is_none() && url.username().is_empty() && url.password().is_none());
            prop_assert!(!matches!(url.scheme(), "javascript" | "data" | "file" | "vbscript"), "{registered}");
            prop_assert!(url.scheme() != "http" || is_loopback_redirect(&registered), "{registered}");
            prop_assert!(redirect_matches(&registered, &registered));
            if redirect_matches(&registered, &requested) && requested != registered {
                prop_assert!(validate_redirect_uri(&requested).is_ok(), "{registered} matched {requested}");
                prop_assert!(is_loopback_redirect(&requested), "{registered} matched {requested}");
                let req = reqwest::Url::parse(&requested).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(req.host_str(), url.host_str());
                prop_assert_eq!(req.path(), url.path());
            }
        }
    }
}
