//! `/api/v1/settings/identity`: sign-in with the OpenID Provider and the group-to-role mappings.
//! The client secret is write-only.

use super::changed;
use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use toolgate_domain::model::{OidcMatch, OidcSettings, RoleMappings};

use toolgate_domain::store::setting_keys::{
    OIDC as OIDC_KEY, OIDC_SECRET as OIDC_SECRET_KEY, ROLES as ROLES_KEY,
};

/// The identity settings as shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentitySettingsView {
    pub oidc: Option<OidcSettings>,
    pub role_mappings: RoleMappings,
    /// Paste this into the app registration's redirect URIs (Entra: Web platform).
    pub redirect_uri: String,
    /// Paste this into Entra's provisioning "Tenant URL".
    pub scim_tenant_url: String,
}

/// OIDC settings as written; `client_secret` is kept when omitted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcInput {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub match_by: OidcMatch,
    #[serde(default)]
    pub jit_provisioning: bool,
    #[serde(default)]
    pub use_groups_claim: bool,
}

/// A change of the identity settings; `oidc: null` turns sign-in with the provider off.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettingsInput {
    pub oidc: Option<OidcInput>,
    #[serde(default)]
    pub role_mappings: RoleMappings,
}

/// The OpenID Provider settings and client secret, when sign-in with it is configured.
pub async fn load_oidc(
    state: &AppState,
) -> toolgate_domain::Result<Option<(OidcSettings, Option<String>)>> {
    let Some(settings) = state
        .store
        .setting::<Option<OidcSettings>>(OIDC_KEY)
        .await?
        .flatten()
    else {
        return Ok(None);
    };
    let secret = state.store.secret_setting(OIDC_SECRET_KEY).await?;
    Ok(Some((settings, secret)))
}

pub async fn load_roles(state: &AppState) -> toolgate_domain::Result<RoleMappings> {
    Ok(state
        .store
        .setting::<RoleMappings>(ROLES_KEY)
        .await?
        .unwrap_or_default())
}

async fn view(state: &AppState) -> ApiResult<IdentitySettingsView> {
    let base = state.config.public_url();
    Ok(IdentitySettingsView {
        oidc: load_oidc(state).await?.map(|(s, _)| s),
        role_mappings: load_roles(state).await?,
        redirect_uri: format!("{base}/auth/oidc/callback"),
        scim_tenant_url: format!("{base}/scim/v2"),
    })
}

#[utoipa::path(get, path = "/api/v1/settings/identity", responses((status = 200, body = IdentitySettingsView)))]
pub(super) async fn get_identity(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<IdentitySettingsView>> {
    Ok(ApiJson(view(&state).await?))
}

/// An issuer is an https URL (http only for loopback, as in tests), possibly with `{tenantid}`.
fn validate_issuer(issuer: &str) -> Result<(), String> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let ok_scheme =
        issuer.starts_with("https://") || loopback.iter().any(|p| issuer.starts_with(p));
    if !ok_scheme
        || issuer.len() > 512
        || issuer.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("issuer must be an https URL (http only for loopback addresses)".into());
    }
    if issuer.contains('{') && !issuer.contains("{tenantid}") {
        return Err("the only placeholder an issuer may hold is {tenantid}".into());
    }
    Ok(())
}

#[utoipa::path(put, path = "/api/v1/settings/identity", request_body = IdentitySettingsInput,
    responses((status = 200, body = IdentitySettingsView), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_identity(
    _admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<IdentitySettingsInput>,
) -> ApiResult<ApiJson<IdentitySettingsView>> {
    let invalid =
        |m: String| ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
    // Every mapped group must exist: a typo would silently grant nothing (or the wrong thing).
    let groups = state.store.list_groups().await?;
    let m = &input.role_mappings;
    for id in m.admin.iter().chain(&m.approver).chain(&m.auditor) {
        if !groups.iter().any(|g| &g.id == id) {
            return Err(invalid(format!("role mapping names unknown group {id:?}")));
        }
    }
    match input.oidc {
        Some(o) => {
            validate_issuer(&o.issuer).map_err(invalid)?;
            if o.client_id.trim().is_empty() || o.client_id.len() > 256 {
                return Err(invalid("client_id must be 1-256 characters".into()));
            }
            if let Some(secret) = o.client_secret.as_deref().filter(|s| !s.is_empty()) {
                state
                    .store
                    .put_secret_setting(OIDC_SECRET_KEY, secret)
                    .await?;
            }
            let secret_set = state.store.secret_setting(OIDC_SECRET_KEY).await?.is_some();
            let settings = OidcSettings {
                issuer: o.issuer.trim().to_string(),
                client_id: o.client_id.trim().to_string(),
                client_secret_set: secret_set,
                display_name: o
                    .display_name
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or_else(|| "Microsoft Entra ID".into()),
                match_by: o.match_by,
                jit_provisioning: o.jit_provisioning,
                use_groups_claim: o.use_groups_claim,
            };
            state.store.put_setting(OIDC_KEY, &settings).await?;
        }
        None => {
            state
                .store
                .put_setting(OIDC_KEY, &serde_json::Value::Null)
                .await?;
        }
    }
    state
        .store
        .put_setting(ROLES_KEY, &input.role_mappings)
        .await?;
    state.oidc.forget().await;
    changed(&state).await;
    Ok(ApiJson(view(&state).await?))
}

#[cfg(test)]
mod tests {
    use super::validate_issuer;

    #[test]
    fn issuers() {
        assert!(
            validate_issuer("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0")
                .is_ok()
        );
        assert!(validate_issuer("https://login.microsoftonline.com/{tenantid}/v2.0").is_ok());
        assert!(validate_issuer("http://127.0.0.1:4000").is_ok());
        assert!(validate_issuer("http://idp.example.com").is_err());
        assert!(validate_issuer("https://x/{tenant}/v2.0").is_err());
        assert!(validate_issuer("ftp://x").is_err());
    }
}
