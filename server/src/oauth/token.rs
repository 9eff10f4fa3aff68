//! The token endpoint (authorization code with PKCE, refresh-token rotation with reuse
//! detection, client credentials for service principals) and revocation (RFC 7009). Errors are
//! RFC 6749 §5.2 JSON.

use super::access::AccessClaims;
use super::clients::{ClientCredentials, authenticate_client, client_credentials};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use toolgate_domain::model::{AuditDecision, Scopes};
use toolgate_domain::store::{GrantRefusal, Issued};

fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// An RFC 6749 error response.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut res = no_store(
        (
            status,
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response(),
    );
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"toolgate\""),
        );
    }
    res
}

fn server_error() -> Response {
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "try again",
    )
}

fn invalid_request(d: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d)
}

fn invalid_grant(d: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d)
}

fn invalid_client(d: &str) -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", d)
}

/// Parses a form body; a parameter given twice is an error (RFC 6749 §3.2).
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, Box<Response>> {
    let form_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_ct {
        return Err(Box::new(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )));
    }
    if body.len() > 64 * 1024 {
        return Err(Box::new(invalid_request("request too large")));
    }
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(Box::new(invalid_request(&format!(
                "{k} was given more than once"
            ))));
        }
    }
    Ok(out)
}

/// `code_verifier` per RFC 7636 §4.1 and its S256 transform.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !shaped {
        return false;
    }
    let digest = Sha256::digest(verifier.as_bytes());
    let computed =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest);
    computed.len() == challenge.len()
        && computed
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn check_resource(state: &AppState, form: &HashMap<String, String>) -> Result<(), Box<Response>> {
    match form.get("resource") {
        Some(r) if r.trim_end_matches('/') != state.oauth.tokens.resource => {
            Err(Box::new(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "this server issues tokens only for its own MCP endpoint",
            )))
        }
        _ => Ok(()),
    }
}

fn refusal_text(r: GrantRefusal) -> &'static str {
    r.describe()
}

/// `POST /oauth/token`.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match parse_form(&headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let Some(creds) = client_credentials(&headers, &form) else {
        return invalid_client("client authentication is missing or ambiguous");
    };
    if let Err(res) = check_resource(&state, &form) {
        return *res;
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => authorization_code(&state, &creds, &form).await,
        Some("refresh_token") => refresh(&state, &creds, &form).await,
        Some("client_credentials") => client_credentials_grant(&state, &creds, &form).await,
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other} is not supported"),
        ),
        None => invalid_request("grant_type is missing"),
    }
}

async fn authorization_code(
    state: &AppState,
    creds: &ClientCredentials,
    form: &HashMap<String, String>,
) -> Response {
    let client = match authenticated(state, creds).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let Some(code) = form.get("code") else {
        return invalid_request("code is missing");
    };
    let found = match state.store.peek_code(code).await {
        Ok(Ok(c)) => c,
        Ok(Err(r)) => {
            if r == GrantRefusal::Replayed {
                replay_detected(
                    state,
                    &client,
                    "oauth.code_replayed",
                    "an authorization code was presented twice; its tokens are revoked",
                )
                .await;
            }
            return invalid_grant(refusal_text(r));
        }
        Err(e) => {
            tracing::error!(error = %e, "code lookup failed");
            return server_error();
        }
    };
    let problem = if found.client_id != client.client.id {
        Some("the code was issued to another client")
    } else if form.get("redirect_uri") != Some(&found.redirect_uri) {
        Some("redirect_uri does not match the authorization request")
    } else if !form
        .get("code_verifier")
        .is_some_and(|v| pkce_matches(v, &found.code_challenge))
    {
        Some("PKCE verification failed (code_verifier missing or wrong)")
    } else if form
        .get("resource")
        .is_some_and(|r| r.trim_end_matches('/') != found.resource)
    {
        Some("resource differs from the authorization request")
    } else {
        None
    };
    if let Some(p) = problem {
        // A failed attempt uses the code up: it cannot be tried again with other guesses.
        let _ = state.store.burn_code(code).await;
        super::audit(
            state,
            "oauth.code_refused",
            &client.client.name,
            ("client", None),
            Some((&client.client.id, &client.client.name)),
            p.to_string(),
            AuditDecision::Deny,
        )
        .await;
        return invalid_grant(p);
    }
    let days = state
        .store
        .oauth_settings()
        .await
        .map(|s| s.refresh_token_days)
        .unwrap_or(30);
    let refresh_expires =
        state.store.clock().now().timestamp_millis() + i64::from(days) * 86_400_000;
    let issued = match state
        .store
        .exchange_code(code, &client.client.name, refresh_expires)
        .await
    {
        Ok(Ok(i)) => i,
        Ok(Err(r)) => {
            publish(state).await;
            return invalid_grant(refusal_text(r));
        }
        Err(e) => {
            tracing::error!(error = %e, "code exchange failed");
            return server_error();
        }
    };
    // The new grant must be in the snapshot (on every replica) before the token is used.
    publish(state).await;
    let who = state
        .store
        .get_user(&issued.grant.user_id)
        .await
        .map(|u| u.user_name)
        .unwrap_or_else(|_| issued.grant.user_id.clone());
    super::audit(
        state,
        "oauth.token_issued",
        &who,
        ("person", Some(&issued.grant.user_id)),
        Some((&issued.grant.client_id, &issued.grant.client_name)),
        format!(
            "authorization code exchanged; grant {}; scopes {}",
            issued.grant.grant_id, issued.grant.scopes
        ),
        AuditDecision::Allow,
    )
    .await;
    grant_response(state, &issued, issued.grant.scopes).await
}

async fn refresh(
    state: &AppState,
    creds: &ClientCredentials,
    form: &HashMap<String, String>,
) -> Response {
    let client = match authenticated(state, creds).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let Some(token) = form.get("refresh_token") else {
        return invalid_request("refresh_token is missing");
    };
    let settings = state.store.oauth_settings().await.unwrap_or_default();
    let refresh_expires = state.store.clock().now().timestamp_millis()
        + i64::from(settings.refresh_token_days) * 86_400_000;
    // Asked-for scopes narrow the grant; unknown names are ignored (RFC 6749 §6 and §3.3).
    let narrow = form.get("scope").map(|s| Scopes::requested(s));
    let issued = match state
        .store
        .rotate_refresh_token(
            token,
            &client.client.id,
            &state.oauth.tokens.resource,
            narrow,
            refresh_expires,
        )
        .await
    {
        Ok(Ok(i)) => i,
        Ok(Err(GrantRefusal::ScopeNotGranted)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                GrantRefusal::ScopeNotGranted.describe(),
            );
        }
        Ok(Err(r)) => {
            if r == GrantRefusal::Replayed {
                replay_detected(
                    state,
                    &client,
                    "oauth.refresh_reused",
                    "a used refresh token was presented again; the whole grant is revoked",
                )
                .await;
            }
            return invalid_grant(refusal_text(r));
        }
        Err(e) => {
            tracing::error!(error = %e, "refresh failed");
            return server_error();
        }
    };
    let scopes = issued.grant.scopes;
    grant_response(state, &issued, scopes).await
}

async fn grant_response(state: &AppState, issued: &Issued, scopes: Scopes) -> Response {
    let settings = state.store.oauth_settings().await.unwrap_or_default();
    let now = state.store.clock().now().timestamp();
    let ttl = i64::from(settings.access_token_secs);
    let access = state.oauth.tokens.mint(&AccessClaims {
        iss: state.oauth.issuer().to_string(),
        aud: issued.grant.resource.clone(),
        sub: issued.grant.user_id.clone(),
        client_id: issued.grant.client_id.clone(),
        scope: scopes.to_string(),
        iat: now,
        exp: now + ttl,
        jti: uuid::Uuid::new_v4().to_string(),
        sub_kind: "person".into(),
        cred: issued.grant.grant_id.clone(),
    });
    no_store(
        Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": issued.refresh_token,
            "scope": scopes.to_string(),
        }))
        .into_response(),
    )
}

async fn client_credentials_grant(
    state: &AppState,
    creds: &ClientCredentials,
    form: &HashMap<String, String>,
) -> Response {
    let Some(secret) = &creds.secret else {
        return invalid_client("client_credentials needs the service principal's secret");
    };
    let secret_id = match state.store.verify_sp_secret(&creds.client_id, secret).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            super::audit(
                state,
                "oauth.client_credentials_refused",
                &creds.client_id,
                ("service_principal", None),
                None,
                "unknown, disabled or expired service principal, or a wrong or expired secret"
                    .into(),
                AuditDecision::Deny,
            )
            .await;
            return invalid_client("client authentication failed");
        }
        Err(e) => {
            tracing::error!(error = %e, "secret check failed");
            return server_error();
        }
    };
    let scopes = Scopes::requested(form.get("scope").map(String::as_str).unwrap_or(""));
    let now_ms = state.store.clock().now().timestamp_millis();
    let mut principal = state.snapshot.get().principal_for_service(
        &creds.client_id,
        Some(&secret_id),
        now_ms,
        scopes,
    );
    if principal.is_none() {
        // Created a moment ago (maybe on another replica): rebuild once.
        let _ = state.snapshot.reload().await;
        principal = state.snapshot.get().principal_for_service(
            &creds.client_id,
            Some(&secret_id),
            now_ms,
            scopes,
        );
    }
    let Some(principal) = principal else {
        return invalid_client("client authentication failed");
    };
    let settings = state.store.oauth_settings().await.unwrap_or_default();
    let now = now_ms / 1000;
    let ttl = i64::from(settings.access_token_secs);
    let access = state.oauth.tokens.mint(&AccessClaims {
        iss: state.oauth.issuer().to_string(),
        aud: state.oauth.tokens.resource.clone(),
        sub: principal.user_id.clone(),
        client_id: principal.user_id.clone(),
        scope: scopes.to_string(),
        iat: now,
        exp: now + ttl,
        jti: uuid::Uuid::new_v4().to_string(),
        sub_kind: "service_principal".into(),
        cred: secret_id,
    });
    super::audit(
        state,
        "oauth.token_issued",
        &principal.user_name,
        ("service_principal", Some(&principal.user_id)),
        Some((&principal.user_id, &principal.user_name)),
        format!("client credentials; scopes {scopes}"),
        AuditDecision::Allow,
    )
    .await;
    no_store(
        Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scopes.to_string(),
        }))
        .into_response(),
    )
}

/// `POST /oauth/revoke` (RFC 7009): a refresh token or access token of the calling client ends
/// its whole grant. Unknown tokens are answered 200 too.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match parse_form(&headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let Some(creds) = client_credentials(&headers, &form) else {
        return invalid_client("client authentication is missing or ambiguous");
    };
    let Some(token) = form.get("token") else {
        return invalid_request("token is missing");
    };
    // Service principals revoke nothing here (their access tokens are short-lived; rotate or
    // revoke the secret instead), but the call must not tell them apart from clients.
    let client = match authenticated(&state, &creds).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let mut revoked = None;
    if token.starts_with("tgr_") {
        match state
            .store
            .revoke_refresh_token(token, Some(&client.client.id))
            .await
        {
            Ok(g) => revoked = g,
            Err(e) => {
                tracing::error!(error = %e, "revocation failed");
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again",
                );
            }
        }
    } else if let Ok(claims) = state.oauth.tokens.verify(token, i64::MIN + 1)
        && !claims.is_service()
        && claims.client_id == client.client.id
    {
        match state
            .store
            .revoke_grant(&claims.cred, "revoked by the client")
            .await
        {
            Ok(true) => revoked = Some(claims.cred.clone()),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "revocation failed");
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again",
                );
            }
        }
    }
    if let Some(grant) = revoked {
        publish(&state).await;
        super::audit(
            &state,
            "oauth.revoked",
            &client.client.name,
            ("client", None),
            Some((&client.client.id, &client.client.name)),
            format!("grant {grant} revoked by the client"),
            AuditDecision::Allow,
        )
        .await;
    }
    no_store(StatusCode::OK.into_response())
}

/// Authenticates the calling OAuth client; a failure is audited (who tried, which client id)
/// and answered `invalid_client`.
async fn authenticated(
    state: &AppState,
    creds: &ClientCredentials,
) -> Result<toolgate_domain::store::ClientRecord, Box<Response>> {
    match authenticate_client(state, creds).await {
        Ok(c) => Ok(c),
        Err(e) => {
            super::audit(
                state,
                "oauth.client_auth_failed",
                &creds.client_id,
                ("client", None),
                None,
                e.to_string(),
                AuditDecision::Deny,
            )
            .await;
            Err(Box::new(invalid_client(e)))
        }
    }
}

/// A code or refresh token came back a second time: its grant is revoked already; every replica
/// must drop it now, and the attempt is audited.
async fn replay_detected(
    state: &AppState,
    client: &toolgate_domain::store::ClientRecord,
    kind: &str,
    detail: &str,
) {
    publish(state).await;
    super::audit(
        state,
        kind,
        &client.client.name,
        ("client", None),
        Some((&client.client.id, &client.client.name)),
        detail.into(),
        AuditDecision::Deny,
    )
    .await;
}

/// Rebuilds the snapshot (and tells the other replicas).
async fn publish(state: &AppState) {
    if let Err(e) = state.snapshot.publish().await {
        tracing::error!(error = %e, "snapshot rebuild failed");
    }
}

#[cfg(test)]
mod tests {
    use super::pkce_matches;

    #[test]
    fn pkce_s256() {
        // Computed independently: base64url(SHA-256(verifier)) without padding.
        let verifier = "dBjftJeZ4CVP-mJ92K9qRwAf0dQvm-jZvRK0-Lcx0ZJpeM";
        let challenge = "EUmJlnQYoG_getnPOWu-IrxSf53-P7phk8KZP-ZpgS8";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "EUmJlnQYoG_getnPOWu-IrxSf53-P7phk8KZP-ZpgS9"
        ));
        // Shape rules of RFC 7636 §4.1: 43-128 unreserved characters.
        assert!(!pkce_matches("short", challenge));
        assert!(!pkce_matches(&"a".repeat(129), challenge));
        assert!(!pkce_matches(&format!("{}!", "a".repeat(43)), challenge));
        // "plain" (verifier == challenge) never passes.
        assert!(!pkce_matches(challenge, challenge));
    }
}

/// Fuzz targets (`make fuzz`): token and revocation form bodies, and PKCE verifiers.
#[cfg(test)]
mod fuzz_tests {
    use super::{parse_form, pkce_matches};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use toolgate_domain::fuzz::{config, hostile_string, raw_bytes, short_hostile_string};

    const FORM: &str = "application/x-www-form-urlencoded";

    /// The parameters of a token request, and others.
    fn param_name() -> BoxedStrategy<String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "grant_type", "code", "redirect_uri", "code_verifier", "client_id",
                "client_secret", "refresh_token", "resource", "scope", "token",
            ])
            .prop_map(str::to_string),
            1 => short_hostile_string(),
        ]
        .boxed()
    }

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h
    }

    proptest! {
        #![proptest_config(config(600))]

        /// A form written by a client reads back as exactly its parameters; a parameter given
        /// twice, a body over 64 KiB or another content type is `invalid_request`.
        #[test]
        fn fuzz_oauth_token_forms(
            pairs in prop::collection::vec((param_name(), hostile_string()), 0..8),
            content_type in prop_oneof![
                3 => Just(FORM.to_string()),
                1 => Just(format!("{}; charset=UTF-8", FORM.to_uppercase())),
                1 => short_hostile_string(),
            ],
        ) {
            let mut body = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                body.append_pair(k, v);
            }
            let body = body.finish();
            let h = headers(Some(&content_type));
            let is_form = h
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(FORM));
            let mut expected = HashMap::new();
            let duplicated = pairs.iter().any(|(k, v)| expected.insert(k.clone(), v.clone()).is_some());
            match parse_form(&h, body.as_bytes()) {
                Ok(form) => {
                    prop_assert!(is_form && !duplicated && body.len() <= 64 * 1024);
                    prop_assert_eq!(form, expected);
                }
                Err(res) => {
                    prop_assert_eq!(res.status(), StatusCode::BAD_REQUEST);
                    prop_assert!(!is_form || duplicated || body.len() > 64 * 1024);
                }
            }
        }

        /// Arbitrary bytes as a form body.
        #[test]
        fn fuzz_oauth_token_raw_forms(body in raw_bytes()) {
            let h = headers(Some(FORM));
            if let Err(res) = parse_form(&h, &body) {
                prop_assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            }
        }

        /// A verifier matches exactly its own S256 challenge, and only when it has the shape
        /// RFC 7636 requires; "plain" (the verifier as its own challenge) never passes.
        #[test]
        fn fuzz_oauth_pkce(
            verifier in prop_oneof!["[A-Za-z0-9._~-]{43,128}", "[A-Za-z0-9._~-]{0,140}", hostile_string()],
            other in prop_oneof!["[A-Za-z0-9_-]{43}", hostile_string()],
        ) {
            let digest = Sha256::digest(verifier.as_bytes());
            let challenge = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest);
            let shaped = (43..=128).contains(&verifier.len())
                && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            prop_assert_eq!(pkce_matches(&verifier, &challenge), shaped);
            prop_assert!(!pkce_matches(&verifier, &verifier));
            prop_assert_eq!(pkce_matches(&verifier, &other), shaped && other == challenge);
        }
    }
}
