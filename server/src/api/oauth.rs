//! `/api/v1/oauth/*`, `/api/v1/service-principals`, consents and the authorization server's
//! settings: what an admin automates about agent sign-in. Secrets are returned once, at creation
//! or rotation, and never logged.

use super::{audit_change, changed};
use crate::http::auth::AdminCaller;
use crate::http::{ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use toolgate_domain::model::{
    Consent, EntraAppSettings, OAuthClient, OAuthSettings, ServicePrincipal,
};
use toolgate_domain::store::{DEFAULT_ROTATION_OVERLAP_MS, NewServicePrincipal, SpUpdate};

#[utoipa::path(get, path = "/api/v1/settings/oauth", responses((status = 200, body = OAuthSettings)))]
pub(super) async fn get_settings(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<OAuthSettings>> {
    Ok(ApiJson(state.store.oauth_settings().await?))
}

#[utoipa::path(put, path = "/api/v1/settings/oauth", request_body = OAuthSettings,
    responses((status = 200, body = OAuthSettings), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_settings(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<OAuthSettings>,
) -> ApiResult<ApiJson<OAuthSettings>> {
    let before = state.store.oauth_settings().await?;
    state.store.put_oauth_settings(&body).await?;
    audit_change(
        &state,
        &admin,
        "admin.oauth.settings",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&body).ok(),
    )
    .await;
    Ok(ApiJson(body))
}

/// A client to pre-register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Confidential clients get a secret (shown once) and must authenticate at the token endpoint.
    #[serde(default)]
    pub confidential: bool,
}

/// A registered client; `client_secret` only for confidential clients, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientCreated {
    pub client: OAuthClient,
    pub client_secret: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/oauth/clients", responses((status = 200, body = [OAuthClient])))]
pub(super) async fn list_clients(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<OAuthClient>>> {
    Ok(ApiJson(state.store.list_oauth_clients().await?))
}

#[utoipa::path(post, path = "/api/v1/oauth/clients", request_body = CreateClient,
    responses((status = 201, body = ClientCreated), (status = 422, body = super::ErrorBody)))]
pub(super) async fn create_client(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateClient>,
) -> ApiResult<(StatusCode, ApiJson<ClientCreated>)> {
    let (client, client_secret) = state
        .store
        .create_preregistered_client(
            &body.name,
            &body.redirect_uris,
            body.confidential,
            &format!("token:{}", admin.token_name),
        )
        .await?;
    audit_change(
        &state,
        &admin,
        "admin.oauth.client.create",
        None,
        serde_json::to_value(&client).ok(),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        ApiJson(ClientCreated {
            client,
            client_secret,
        }),
    ))
}

/// Enable or disable a client.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    pub disabled: bool,
}

#[utoipa::path(patch, path = "/api/v1/oauth/clients/{client_id}", request_body = UpdateClient,
    responses((status = 200, body = OAuthClient), (status = 404, body = super::ErrorBody)))]
pub(super) async fn update_client(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    ApiJson(body): ApiJson<UpdateClient>,
) -> ApiResult<ApiJson<OAuthClient>> {
    let client = state
        .store
        .set_oauth_client_disabled(&client_id, body.disabled)
        .await?;
    audit_change(
        &state,
        &admin,
        "admin.oauth.client.update",
        None,
        serde_json::to_value(&client).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(client))
}

#[utoipa::path(delete, path = "/api/v1/oauth/clients/{client_id}",
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn delete_client(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(client_id): Path<String>,
) -> ApiResult<StatusCode> {
    let before = state
        .store
        .oauth_client(&client_id)
        .await?
        .map(|r| r.client);
    state.store.delete_oauth_client(&client_id).await?;
    audit_change(
        &state,
        &admin,
        "admin.oauth.client.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/{user_id}/consents", responses((status = 200, body = [Consent])))]
pub(super) async fn list_consents(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> ApiResult<ApiJson<Vec<Consent>>> {
    state.store.get_user(&user_id).await?;
    Ok(ApiJson(state.store.list_consents(&user_id).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{user_id}/consents/{client_id}",
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn revoke_consent(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((user_id, client_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.revoke_consent(&user_id, &client_id).await?;
    audit_change(
        &state,
        &admin,
        "admin.oauth.consent.revoke",
        Some(serde_json::json!({"user_id": user_id, "client_id": client_id})),
        None,
    )
    .await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A service principal to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServicePrincipal {
    pub name: String,
    /// Who answers for it.
    pub owner: String,
    #[serde(default)]
    pub description: String,
    /// Group ids: policy applies through them, as for people.
    #[serde(default)]
    pub groups: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The Entra application (client) id whose app-only tokens act as this principal.
    pub entra_app_id: Option<String>,
}

/// A new service principal; `client_secret` is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServicePrincipalCreated {
    pub service_principal: ServicePrincipal,
    /// The OAuth `client_id` for the client credentials grant.
    pub client_id: String,
    pub client_secret: String,
}

#[utoipa::path(get, path = "/api/v1/service-principals", responses((status = 200, body = [ServicePrincipal])))]
pub(super) async fn list_sps(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<ServicePrincipal>>> {
    Ok(ApiJson(state.store.list_service_principals().await?))
}

#[utoipa::path(post, path = "/api/v1/service-principals", request_body = CreateServicePrincipal,
    responses((status = 201, body = ServicePrincipalCreated), (status = 422, body = super::ErrorBody)))]
pub(super) async fn create_sp(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateServicePrincipal>,
) -> ApiResult<(StatusCode, ApiJson<ServicePrincipalCreated>)> {
    let (sp, secret) = state
        .store
        .create_service_principal(NewServicePrincipal {
            name: body.name,
            description: body.description,
            owner: body.owner,
            groups: body.groups,
            expires_at: body.expires_at.map(|t| t.timestamp_millis()),
            entra_app_id: body.entra_app_id,
            created_by: Some(format!("token:{}", admin.token_name)),
        })
        .await?;
    audit_change(
        &state,
        &admin,
        "admin.service_principal.create",
        None,
        serde_json::to_value(&sp).ok(),
    )
    .await;
    changed(&state).await;
    Ok((
        StatusCode::CREATED,
        ApiJson(ServicePrincipalCreated {
            client_id: sp.id.clone(),
            service_principal: sp,
            client_secret: secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/service-principals/{id}",
    responses((status = 200, body = ServicePrincipal), (status = 404, body = super::ErrorBody)))]
pub(super) async fn get_sp(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<ServicePrincipal>> {
    Ok(ApiJson(state.store.service_principal(&id).await?))
}

/// Changes to a service principal; absent fields stay. `expires_at` / `entra_app_id`: null
/// removes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServicePrincipal {
    pub name: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::connectors::double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "super::connectors::double_option")]
    #[schema(value_type = Option<String>)]
    pub entra_app_id: Option<Option<String>>,
    pub disabled: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/service-principals/{id}", request_body = UpdateServicePrincipal,
    responses((status = 200, body = ServicePrincipal), (status = 404, body = super::ErrorBody)))]
pub(super) async fn update_sp(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateServicePrincipal>,
) -> ApiResult<ApiJson<ServicePrincipal>> {
    let before = state.store.service_principal(&id).await?;
    let sp = state
        .store
        .update_service_principal(
            &id,
            SpUpdate {
                name: body.name,
                description: body.description,
                owner: body.owner,
                groups: body.groups,
                expires_at: body.expires_at.map(|e| e.map(|t| t.timestamp_millis())),
                entra_app_id: body.entra_app_id,
                disabled: body.disabled,
            },
        )
        .await?;
    audit_change(
        &state,
        &admin,
        "admin.service_principal.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&sp).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(sp))
}

#[utoipa::path(delete, path = "/api/v1/service-principals/{id}",
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn delete_sp(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let before = state.store.service_principal(&id).await?;
    state.store.delete_service_principal(&id).await?;
    audit_change(
        &state,
        &admin,
        "admin.service_principal.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A rotation: the new secret, and how long the older ones keep working.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// Hours the previous secrets stay valid (default 24; 0 ends them now).
    pub overlap_hours: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretCreated {
    pub secret_id: String,
    pub secret: String,
}

#[utoipa::path(post, path = "/api/v1/service-principals/{id}/secrets", request_body = RotateSecret,
    responses((status = 201, body = SecretCreated), (status = 404, body = super::ErrorBody)))]
pub(super) async fn rotate_secret(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RotateSecret>,
) -> ApiResult<(StatusCode, ApiJson<SecretCreated>)> {
    let overlap = body
        .overlap_hours
        .map(|h| h.saturating_mul(3_600_000))
        .unwrap_or(DEFAULT_ROTATION_OVERLAP_MS);
    let (secret_id, secret) = state
        .store
        .add_sp_secret(&id, overlap, body.expires_at.map(|t| t.timestamp_millis()))
        .await?;
    audit_change(
        &state,
        &admin,
        "admin.service_principal.secret_rotate",
        None,
        Some(serde_json::json!({"service_principal": id, "secret_id": secret_id, "overlap_ms": overlap})),
    )
    .await;
    changed(&state).await;
    Ok((
        StatusCode::CREATED,
        ApiJson(SecretCreated { secret_id, secret }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/service-principals/{id}/secrets/{secret_id}",
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn revoke_secret(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((id, secret_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.revoke_sp_secret(&id, &secret_id).await?;
    audit_change(
        &state,
        &admin,
        "admin.service_principal.secret_revoke",
        Some(serde_json::json!({"service_principal": id, "secret_id": secret_id})),
        None,
    )
    .await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/settings/entra-apps", responses((status = 200, body = EntraAppSettings)))]
pub(super) async fn get_entra(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<EntraAppSettings>> {
    Ok(ApiJson(
        state
            .store
            .setting(toolgate_domain::store::setting_keys::ENTRA_APPS)
            .await?
            .unwrap_or_default(),
    ))
}

#[utoipa::path(put, path = "/api/v1/settings/entra-apps", request_body = EntraAppSettings,
    responses((status = 200, body = EntraAppSettings), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_entra(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EntraAppSettings>,
) -> ApiResult<ApiJson<EntraAppSettings>> {
    crate::oauth::entra::validate_settings(&body).map_err(toolgate_domain::Error::invalid)?;
    let before: Option<EntraAppSettings> = state
        .store
        .setting(toolgate_domain::store::setting_keys::ENTRA_APPS)
        .await?;
    state
        .store
        .put_setting(toolgate_domain::store::setting_keys::ENTRA_APPS, &body)
        .await?;
    audit_change(
        &state,
        &admin,
        "admin.entra_apps.settings",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&body).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(body))
}
