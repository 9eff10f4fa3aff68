//! `/api/v1/settings/identity`: sign-in with the OpenID Provider and the group-to-role mappings.
//! The client secret is write-only.

use super::changed;
use crate::http::auth::AdminCaller;
use crate::http::{ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use serde::Serialize;
use toolgate_domain::identity;
use toolgate_domain::model::{IdentitySettingsInput, OidcSettings, RoleMappings};

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

async fn view(state: &AppState) -> ApiResult<IdentitySettingsView> {
    let base = state.config.public_url();
    Ok(IdentitySettingsView {
        oidc: identity::oidc(&state.store).await?.map(|(s, _)| s),
        role_mappings: identity::role_mappings(&state.store).await?,
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

#[utoipa::path(put, path = "/api/v1/settings/identity", request_body = IdentitySettingsInput,
    responses((status = 200, body = IdentitySettingsView), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_identity(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<IdentitySettingsInput>,
) -> ApiResult<ApiJson<IdentitySettingsView>> {
    let before = view(&state).await?;
    identity::update(&state.store, input).await?;
    changed(&state).await;
    let after = view(&state).await?;
    super::audit_change(
        &state,
        &admin,
        "admin.settings.identity",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    Ok(ApiJson(after))
}
