//! Toolgate as the MCP OAuth 2.1 authorization server: metadata (RFC 8414 / RFC 9728),
//! authorization code + PKCE with sign-in delegated to the OpenID Provider, consent, tokens,
//! revocation, client registration (pre-registered, Client ID Metadata Documents, RFC 7591), and
//! service principals (client credentials, Entra app-only tokens). `authenticate` turns any
//! bearer credential `/mcp` accepts into a [`Principal`] from the snapshot.

pub mod access;
mod authorize;
pub mod clients;
pub mod entra;
pub mod fetch;
mod metadata;
pub use metadata::{authorization_server_document, resource_metadata_url};
mod token;

use crate::state::AppState;
use access::{AccessTokens, TokenRefusal, looks_like_jwt};
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use toolgate_domain::model::{AuditDecision, Outcome, Scopes};
use toolgate_domain::snapshot::{Principal, Snapshot};
use toolgate_domain::store::NewAuditEvent;

/// Signing keys, the Entra validator (rebuilt when its settings change) and an HTTP client.
pub struct OAuthRuntime {
    pub tokens: AccessTokens,
    entra: tokio::sync::RwLock<Option<(entra::EntraAppSettings, Arc<entra::EntraValidator>)>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OAuthRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthRuntime")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl OAuthRuntime {
    pub fn new(key: [u8; 32], issuer: String) -> Self {
        Self {
            tokens: AccessTokens::new(key, issuer),
            entra: tokio::sync::RwLock::new(None),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.tokens.issuer
    }

    /// The Entra validator for the snapshot's settings (`None` when switched off); rebuilt
    /// when the settings change (they travel with the snapshot: no database read per call).
    async fn entra(&self, snap: &Snapshot) -> Option<Arc<entra::EntraValidator>> {
        let settings = snap.entra_settings();
        if !settings.enabled {
            return None;
        }
        if let Some((s, v)) = self.entra.read().await.as_ref()
            && s == settings.as_ref()
        {
            return Some(v.clone());
        }
        let v = Arc::new(entra::EntraValidator::new(
            settings.as_ref().clone(),
            self.http.clone(),
        ));
        *self.entra.write().await = Some((settings.as_ref().clone(), v.clone()));
        Some(v)
    }
}

/// `/.well-known/*` and `/oauth/*`. The interactive routes share the dashboard's session.
pub fn router(state: &AppState) -> Router<AppState> {
    let interactive = Router::new()
        .route("/oauth/authorize", get(authorize::authorize))
        .route(
            "/oauth/consent",
            get(authorize::consent_page).post(authorize::consent_decision),
        )
        .layer(crate::web::session_layer(state));
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata::protected_resource),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server),
        )
        .route(
            "/.well-known/openid-configuration",
            get(metadata::authorization_server),
        )
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
        .route("/oauth/register", post(clients::register))
        .merge(interactive)
}

/// What a bearer credential was, so an open stream can check it again when the snapshot changes.
#[derive(Clone, Debug)]
pub enum Credential {
    Personal(String),
    Grant {
        grant_id: String,
        user_id: String,
        client_id: String,
        scopes: Scopes,
        /// The access token's expiry (unix ms).
        expires_ms: i64,
    },
    Service {
        sp_id: String,
        secret_id: Option<String>,
        scopes: Scopes,
        /// The access token's expiry (unix ms).
        expires_ms: i64,
    },
}

impl Credential {
    /// The principal this credential stands for in `snap` at `now_ms`, if it still does.
    pub fn resolve(&self, snap: &Snapshot, now_ms: i64) -> Option<Principal> {
        if self.expires_ms().is_some_and(|at| at <= now_ms) {
            return None;
        }
        match self {
            Self::Personal(token) => snap.principal_for_token(token, now_ms),
            Self::Grant {
                grant_id,
                user_id,
                client_id,
                scopes,
                ..
            } => snap.principal_for_grant(grant_id, user_id, client_id, *scopes),
            Self::Service {
                sp_id,
                secret_id,
                scopes,
                ..
            } => snap.principal_for_service(sp_id, secret_id.as_deref(), now_ms, *scopes),
        }
    }
}

impl Credential {
    /// When the presented token itself expires (personal tokens: their expiry is in the
    /// snapshot, checked by `resolve`).
    pub fn expires_ms(&self) -> Option<i64> {
        match self {
            Self::Personal(_) => None,
            Self::Grant { expires_ms, .. } | Self::Service { expires_ms, .. } => Some(*expires_ms),
        }
    }
}

/// Why `/mcp` refused a bearer credential (the text goes to `error_description`).
#[derive(Debug)]
pub struct Refused(pub &'static str);

/// Resolves a bearer credential: a personal access token, one of our access tokens, or an Entra
/// app-only token mapped to a service principal. The snapshot answers; the store is asked only
/// for credentials newer than the snapshot.
pub async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<(Principal, Credential), Refused> {
    let now = state.store.clock().now();
    let now_ms = now.timestamp_millis();
    let credential = if looks_like_jwt(token) {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused("malformed token"))?;
        if header.alg == jsonwebtoken::Algorithm::HS256 {
            let claims =
                state
                    .oauth
                    .tokens
                    .verify(token, now.timestamp())
                    .map_err(|e| match e {
                        TokenRefusal::Expired => Refused("the access token has expired"),
                        TokenRefusal::WrongAudience => {
                            Refused("the access token was issued for another resource")
                        }
                        TokenRefusal::Malformed => Refused("invalid access token"),
                    })?;
            if claims.is_service() {
                Credential::Service {
                    sp_id: claims.sub.clone(),
                    secret_id: Some(claims.cred.clone()),
                    scopes: claims.scopes(),
                    expires_ms: claims.exp.saturating_mul(1000),
                }
            } else {
                Credential::Grant {
                    grant_id: claims.cred.clone(),
                    user_id: claims.sub.clone(),
                    client_id: claims.client_id.clone(),
                    scopes: claims.scopes(),
                    expires_ms: claims.exp.saturating_mul(1000),
                }
            }
        } else if entra::looks_like_entra_token(token) {
            let Some(validator) = state.oauth.entra(&state.snapshot.get()).await else {
                return Err(Refused("Entra application tokens are not accepted here"));
            };
            let app = validator
                .validate(token, now.timestamp())
                .await
                .map_err(|e| {
                    tracing::info!(error = %e, "Entra app-only token refused");
                    Refused("the Entra token was refused")
                })?;
            let snap = state.snapshot.get();
            let Some(sp_id) = snap.service_principal_for_app(&app.app_id) else {
                tracing::info!(app = %app.app_id, "Entra app-only token of an unregistered application");
                return Err(Refused(
                    "this application is not a registered service principal",
                ));
            };
            Credential::Service {
                sp_id: sp_id.to_string(),
                secret_id: None,
                scopes: Scopes::ALL,
                expires_ms: app.expires_at.saturating_mul(1000),
            }
        } else {
            return Err(Refused("unsupported token"));
        }
    } else {
        Credential::Personal(token.to_string())
    };
    if let Some(p) = credential.resolve(&state.snapshot.get(), now_ms) {
        return Ok((p, credential));
    }
    // Newer than the snapshot (another replica issued it a moment ago)? Ask the store once.
    let newer = match &credential {
        Credential::Personal(t) => matches!(state.store.find_token(t).await, Ok(Some(_))),
        Credential::Grant { grant_id, .. } => {
            matches!(state.store.grant(grant_id).await, Ok(Some(_)))
        }
        Credential::Service { .. } => false,
    };
    if newer {
        if let Err(e) = state.snapshot.reload().await {
            tracing::error!(error = %e, "snapshot reload failed");
        }
        if let Some(p) = credential.resolve(&state.snapshot.get(), now_ms) {
            return Ok((p, credential));
        }
    }
    Err(Refused("invalid, revoked or expired token"))
}

/// Records an authorization-server event (consent, code exchange, refusal, registration);
/// `subject` is (subject kind, principal id).
pub(crate) async fn audit(
    state: &AppState,
    kind: &str,
    who: &str,
    subject: (&str, Option<&str>),
    client: Option<(&str, &str)>,
    detail: String,
    decision: AuditDecision,
) {
    let event = NewAuditEvent {
        subject_kind: Some(subject.0.into()),
        principal_id: subject.1.map(str::to_string),
        decision,
        outcome: if decision == AuditDecision::Allow {
            Outcome::Ok
        } else {
            Outcome::Denied
        },
        client_id: client.map(|c| c.0.to_string()),
        client_name: client.map(|c| c.1.to_string()),
        detail: Some(detail),
        ..NewAuditEvent::new(state.store.clock().now(), kind, who)
    };
    state.audit.record_after_the_fact(event).await;
}
