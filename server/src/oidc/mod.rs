//! Sign-in with an OpenID Provider (Microsoft Entra ID first-class, any OIDC provider works):
//! authorization code + PKCE S256 + state + nonce, the ID token verified (signature, audience,
//! nonce, expiry, exact issuer with `{tenantid}` substituted), the person matched to a provisioned
//! user, the dashboard role from group mappings. Every sign-in and refusal is audited.

mod provider;
pub mod signin;

use crate::state::AppState;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use provider::{PendingLogin, Provider};
use serde::Deserialize;
use std::sync::Arc;
use toolgate_app::auth::{DashboardUser, SESSION_USER_KEY, SignInSource};
use toolgate_domain::identity;
use toolgate_domain::model::{AuditDecision, Outcome};
use toolgate_domain::store::NewAuditEvent;
use tower_sessions::Session;

/// Session key of the sign-in in progress (state, nonce, PKCE verifier).
const PENDING_KEY: &str = "oidc_pending";
/// Session key of where to go after sign-in (an agent authorization waiting for consent).
const RETURN_KEY: &str = "oidc_return_to";

/// Only the consent step of an agent authorization may be returned to: never another site.
fn safe_return_to(path: &str) -> bool {
    path.starts_with("/oauth/consent?request=")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'?' | b'=' | b'-' | b'_'))
}
/// How long a started sign-in may take.
const PENDING_TTL_SECS: i64 = 600;
/// How long discovery metadata and keys are reused.
const PROVIDER_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The discovered provider, cached per settings (any change of the settings, from the API or
/// the dashboard, on any replica, means a fresh discovery).
#[derive(Default)]
pub struct OidcRuntime {
    cached: tokio::sync::RwLock<Option<(std::time::Instant, String, Arc<Provider>)>>,
}

impl std::fmt::Debug for OidcRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OidcRuntime")
    }
}

impl OidcRuntime {
    async fn provider(&self, state: &AppState) -> Result<Option<Arc<Provider>>, String> {
        let Some((settings, secret)) = identity::oidc(&state.store)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let fingerprint = toolgate_domain::crypto::sha256_hex(
            format!("{settings:?}|{}", secret.as_deref().unwrap_or_default()).as_bytes(),
        );
        if let Some((at, fp, p)) = self.cached.read().await.as_ref()
            && at.elapsed() < PROVIDER_TTL
            && *fp == fingerprint
        {
            return Ok(Some(p.clone()));
        }
        let redirect = format!("{}/auth/oidc/callback", state.config.public_url());
        let p = Arc::new(Provider::discover(settings, secret, redirect).await?);
        *self.cached.write().await = Some((std::time::Instant::now(), fingerprint, p.clone()));
        Ok(Some(p))
    }
}

/// `/auth/oidc/*`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/oidc/login", get(login))
        .route("/auth/oidc/callback", get(callback))
}

fn to_login(error: &str) -> Response {
    Redirect::to(&format!("/login?error={error}")).into_response()
}

#[derive(Debug, Deserialize)]
struct LoginParams {
    /// `1`: an admin's test of the configuration (the admin stays signed in; the result is shown).
    test: Option<String>,
    /// Where to continue after sign-in (the consent page of an agent authorization).
    return_to: Option<String>,
}

/// Starts a sign-in: redirects to the provider with PKCE, state and nonce kept in the session.
async fn login(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<LoginParams>,
) -> Response {
    let test = params.test.as_deref() == Some("1");
    if test {
        let me: Option<DashboardUser> = session.get(SESSION_USER_KEY).await.ok().flatten();
        if me.is_none_or(|u| u.role != toolgate_app::auth::DashboardRole::Admin) {
            return to_login("admins_only");
        }
    }
    let provider = match state.oidc.provider(&state).await {
        Ok(Some(p)) => p,
        Ok(None) => return to_login("sso_not_configured"),
        Err(e) => {
            tracing::error!(error = %e, "OpenID Provider discovery failed");
            return to_login("sso_unavailable");
        }
    };
    let (url, mut pending) = provider.authorize_url(state.store.clock().now().timestamp());
    pending.test = test;
    match params.return_to.filter(|r| safe_return_to(r)) {
        Some(r) if !test => {
            if session.insert(RETURN_KEY, r).await.is_err() {
                return to_login("session");
            }
        }
        _ => {
            let _ = session.remove::<String>(RETURN_KEY).await;
        }
    }
    if session.insert(PENDING_KEY, &pending).await.is_err() {
        return to_login("session");
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Finishes a sign-in: checks the single-use state, exchanges the code, verifies the ID token,
/// finds the person, sets the session.
async fn callback(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    // Single use: the pending sign-in is taken out of the session whatever happens next.
    let pending: Option<PendingLogin> = session.remove(PENDING_KEY).await.ok().flatten();
    let fail = |reason: &str, who: &str| {
        let state = state.clone();
        let (reason, who) = (reason.to_string(), who.to_string());
        let request_id = request_id(&headers);
        async move {
            tracing::warn!(%reason, %who, "OIDC sign-in refused");
            audit(
                &state,
                "signin.failed",
                &who,
                &reason,
                AuditDecision::Deny,
                request_id,
            )
            .await;
        }
    };
    if let Some(e) = params.error {
        fail(
            &format!(
                "provider error {e}: {}",
                params.error_description.unwrap_or_default()
            ),
            "?",
        )
        .await;
        return to_login("provider_error");
    }
    let (Some(code), Some(returned_state), Some(pending)) = (params.code, params.state, pending)
    else {
        fail("callback without a pending sign-in, code or state", "?").await;
        return to_login("expired");
    };
    let now = state.store.clock().now().timestamp();
    if !pending.matches_state(&returned_state) || now - pending.started_at > PENDING_TTL_SECS {
        fail("state mismatch or sign-in too old", "?").await;
        return to_login("expired");
    }
    let provider = match state.oidc.provider(&state).await {
        Ok(Some(p)) => p,
        _ => return to_login("sso_unavailable"),
    };
    let claims = match provider
        .finish(code, &pending, state.store.clock().now())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            fail(&format!("token rejected: {e}"), "?").await;
            return to_login("token_rejected");
        }
    };
    let who = claims
        .preferred_username
        .clone()
        .unwrap_or_else(|| claims.subject_key());
    if pending.test {
        return test_report(&state, &provider, &claims).await;
    }
    let user = match signin::resolve_person(&state.store, provider.settings(), &claims).await {
        Ok(Ok(u)) => u,
        Ok(Err(refusal)) => {
            fail(&refusal.to_string(), &who).await;
            let code = match refusal {
                signin::Refusal::NotProvisioned => "not_provisioned",
                signin::Refusal::Disabled => "disabled",
                _ => "refused",
            };
            return to_login(code);
        }
        Err(e) => {
            tracing::error!(error = %e, "OIDC sign-in failed");
            return to_login("internal");
        }
    };
    let roles = identity::role_mappings(&state.store)
        .await
        .unwrap_or_default();
    let role =
        match signin::role_for(&state.store, &roles, provider.settings(), &user, &claims).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "role lookup failed");
                return to_login("internal");
            }
        };
    // A fresh session id at sign-in: a session fixed before sign-in is worthless after it.
    if session.cycle_id().await.is_err() {
        return to_login("session");
    }
    let dash = DashboardUser {
        id: user.id.clone(),
        username: user.user_name.clone(),
        role,
        source: SignInSource::Oidc,
    };
    if session.insert(SESSION_USER_KEY, &dash).await.is_err() {
        return to_login("session");
    }
    audit(
        &state,
        "signin.oidc",
        &user.user_name,
        &format!("signed in as {} via {}", role.as_str(), claims.issuer),
        AuditDecision::Allow,
        request_id(&headers),
    )
    .await;
    let next: Option<String> = session.remove(RETURN_KEY).await.ok().flatten();
    match next.filter(|r| safe_return_to(r)) {
        Some(r) => Redirect::to(&r).into_response(),
        None => Redirect::to("/").into_response(),
    }
}

/// The result of an admin's test sign-in, as a small page: what the provider sent and what
/// Toolgate would do with it. Nothing is changed (no binding, no session, no just-in-time user).
async fn test_report(
    state: &AppState,
    provider: &Provider,
    claims: &signin::VerifiedClaims,
) -> Response {
    let existing = state
        .store
        .user_by_oidc_subject(&claims.subject_key())
        .await
        .ok()
        .flatten();
    let by_name = match &claims.preferred_username {
        Some(n) => state
            .store
            .directory_users(Some((toolgate_domain::store::DirectoryKey::Name, n)))
            .await
            .ok()
            .and_then(|mut v| v.pop())
            .map(|d| d.user),
        None => None,
    };
    let user = existing.or(by_name);
    let role = match &user {
        Some(u) => {
            let roles = identity::role_mappings(&state.store)
                .await
                .unwrap_or_default();
            signin::role_for(&state.store, &roles, provider.settings(), u, claims)
                .await
                .map(|r| r.as_str())
                .unwrap_or("?")
        }
        None => "-",
    };
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let groups = match (&claims.groups, claims.groups_overage) {
        (_, true) => "overage: SCIM memberships will be used".to_string(),
        (Some(g), _) => format!("{} group ids", g.len()),
        (None, _) => "not sent".to_string(),
    };
    let matched = user
        .as_ref()
        .map(|u| {
            format!(
                "{} ({})",
                u.user_name,
                if u.active { "active" } else { "disabled" }
            )
        })
        .unwrap_or_else(|| "none: would be refused unless just-in-time creation is on".into());
    let rows = [
        ("Issuer", claims.issuer.clone()),
        ("Stable key", claims.subject_key()),
        (
            "preferred_username",
            claims.preferred_username.clone().unwrap_or_default(),
        ),
        ("Groups claim", groups),
        ("Matched user", matched),
        ("Dashboard role", role.to_string()),
    ];
    let body: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v)))
        .collect();
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Test sign-in</title>\
         <link rel=\"stylesheet\" href=\"/pkg/toolgate.css\"></head><body><main class=\"narrow\">\
         <h1>Test sign-in succeeded</h1><p>The provider's answer was verified. Nothing was changed.</p>\
         <table id=\"test-result\">{body}</table><p><a href=\"/settings\">Back to Settings</a></p>\
         </main></body></html>"
    );
    axum::response::Html(html).into_response()
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn audit(
    state: &AppState,
    kind: &str,
    who: &str,
    detail: &str,
    decision: AuditDecision,
    request_id: Option<String>,
) {
    let event = NewAuditEvent {
        subject_kind: Some("person".into()),
        decision,
        outcome: if decision == AuditDecision::Allow {
            Outcome::Ok
        } else {
            Outcome::Denied
        },
        request_id,
        detail: Some(detail.into()),
        ..NewAuditEvent::new(state.store.clock().now(), kind, who)
    };
    state.audit.record_after_the_fact(event).await;
}
