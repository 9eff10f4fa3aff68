//! `/api/v1/settings/identity`: sign-in with the OpenID Provider and the group-to-role mappings
//! (the client secret is write-only); `/api/v1/settings/dlp`: data-loss prevention.

use super::changed;
use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use serde::Serialize;
use toolgate_domain::dlp::DlpSettings;
use toolgate_domain::identity;
use toolgate_domain::model::{IdentitySettingsInput, OidcSettings, RoleMappings};
use toolgate_domain::store::setting_keys;

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

#[utoipa::path(get, path = "/api/v1/settings/dlp", responses((status = 200, body = DlpSettings)))]
pub(super) async fn get_dlp(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<DlpSettings>> {
    Ok(ApiJson(
        state
            .store
            .setting(setting_keys::DLP)
            .await?
            .unwrap_or_default(),
    ))
}

/// Replaces the DLP settings (fields left out take their defaults). Checked before it is stored:
/// a pattern that does not compile is a 422 and changes nothing.
#[utoipa::path(put, path = "/api/v1/settings/dlp", request_body = DlpSettings,
    responses((status = 200, body = DlpSettings), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_dlp(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<DlpSettings>,
) -> ApiResult<ApiJson<DlpSettings>> {
    input
        .validate()
        .map_err(|m| ApiError::from(toolgate_domain::Error::invalid(m)))?;
    toolgate_domain::dlp::Scanner::new(&input)
        .map_err(|m| ApiError::from(toolgate_domain::Error::invalid(m)))?;
    let before: Option<DlpSettings> = state.store.setting(setting_keys::DLP).await?;
    state.store.put_setting(setting_keys::DLP, &input).await?;
    changed(&state).await;
    super::audit_change(
        &state,
        &admin,
        "admin.settings.dlp",
        Some(serde_json::to_value(before.unwrap_or_default()).unwrap_or_default()),
        serde_json::to_value(&input).ok(),
    )
    .await;
    Ok(ApiJson(input))
}
