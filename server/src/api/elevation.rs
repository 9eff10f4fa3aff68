//! Admin API for just-in-time elevation: profiles, elevations (list, request for a person or a
//! service principal, revoke), per-call approvals (list), the "approve each call" mark on a
//! tool, and the settings. Approving and denying are people's acts and happen in the dashboard,
//! where the approver is a signed-in member of the approver group.

use super::{audit_change, changed};
use crate::http::auth::AdminCaller;
use crate::http::{ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use toolgate_domain::approvals::Actor;
use toolgate_domain::elevation::{
    ApprovalStatus, CallApproval, Elevation, ElevationAsk, ElevationProfile, ElevationSettings,
    ElevationStatus, ProfileInput, WebhookFormat,
};
use toolgate_domain::model::CatalogTool;
use toolgate_domain::store::{ApprovalFilter, ElevationFilter, setting_keys};

fn actor(admin: &AdminCaller) -> Actor {
    Actor {
        id: admin.token_id.clone(),
        name: format!("token:{}", admin.token_name),
        kind: "admin",
    }
}

#[utoipa::path(get, path = "/api/v1/elevation/profiles",
    responses((status = 200, body = Vec<ElevationProfile>)))]
pub(super) async fn list_profiles(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<ElevationProfile>>> {
    Ok(ApiJson(state.store.list_elevation_profiles().await?))
}

#[utoipa::path(post, path = "/api/v1/elevation/profiles", request_body = ProfileInput,
    responses((status = 201, body = ElevationProfile), (status = 422, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub(super) async fn create_profile(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ProfileInput>,
) -> ApiResult<(StatusCode, ApiJson<ElevationProfile>)> {
    let p = state.store.create_elevation_profile(body).await?;
    audit_change(
        &state,
        &admin,
        "admin.elevation_profile.create",
        None,
        serde_json::to_value(&p).ok(),
    )
    .await;
    changed(&state).await;
    Ok((StatusCode::CREATED, ApiJson(p)))
}

#[utoipa::path(get, path = "/api/v1/elevation/profiles/{id}",
    params(("id" = String, Path, description = "id or name")),
    responses((status = 200, body = ElevationProfile), (status = 404, body = super::ErrorBody)))]
pub(super) async fn get_profile(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<ElevationProfile>> {
    Ok(ApiJson(state.store.elevation_profile(&id).await?))
}

#[utoipa::path(put, path = "/api/v1/elevation/profiles/{id}", request_body = ProfileInput,
    params(("id" = String, Path, description = "id or name")),
    responses((status = 200, body = ElevationProfile), (status = 404, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody)))]
pub(super) async fn update_profile(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProfileInput>,
) -> ApiResult<ApiJson<ElevationProfile>> {
    let (before, after) = state.store.update_elevation_profile(&id, body).await?;
    audit_change(
        &state,
        &admin,
        "admin.elevation_profile.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(after))
}

#[utoipa::path(delete, path = "/api/v1/elevation/profiles/{id}",
    params(("id" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn delete_profile(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let before = state.store.elevation_profile(&id).await?;
    state
        .workflow
        .delete_profile(&before.id, &actor(&admin))
        .await?;
    audit_change(
        &state,
        &admin,
        "admin.elevation_profile.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Filters of the elevation list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ElevationQuery {
    /// pending, active, denied, revoked, ended, cancelled or expired (as of now).
    pub status: Option<String>,
    /// A user or service principal id.
    pub subject: Option<String>,
    /// A profile id.
    pub profile: Option<String>,
    /// At most 1000 (default 200).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/elevations", params(ElevationQuery),
    responses((status = 200, body = Vec<Elevation>), (status = 422, body = super::ErrorBody)))]
pub(super) async fn list_elevations(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<ElevationQuery>,
) -> ApiResult<ApiJson<Vec<Elevation>>> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(ElevationStatus::parse(s).ok_or_else(|| {
            toolgate_domain::Error::invalid(format!("status {s:?} is not an elevation status"))
        })?),
        None => None,
    };
    Ok(ApiJson(
        state
            .store
            .list_elevations(&ElevationFilter {
                status,
                subject_id: q.subject,
                profile_id: q.profile,
                approver_groups: None,
                limit: q.limit,
            })
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/elevations/{id}",
    params(("id" = String, Path)),
    responses((status = 200, body = Elevation), (status = 404, body = super::ErrorBody)))]
pub(super) async fn get_elevation(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Elevation>> {
    Ok(ApiJson(state.store.elevation(&id).await?))
}

/// A request made by an admin for a person or a service principal; an approver still decides
/// (unless the profile auto-approves).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestElevation {
    /// `person` or `service_principal`.
    pub subject_kind: String,
    pub subject_id: String,
    /// Profile id or name.
    pub profile: String,
    #[serde(default)]
    pub justification: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Shorter than the profile's maximum (when it lets the requester choose).
    #[serde(default)]
    pub minutes: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/elevations", request_body = RequestElevation,
    responses((status = 201, body = Elevation), (status = 403, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn request_elevation(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RequestElevation>,
) -> ApiResult<(StatusCode, ApiJson<Elevation>)> {
    let subject = state
        .store
        .elevation_subject(&body.subject_kind, &body.subject_id)
        .await?;
    let e = state
        .workflow
        .request(
            subject,
            &actor(&admin),
            &ElevationAsk {
                profile: body.profile,
                justification: body.justification,
                ticket: body.ticket,
                minutes: body.minutes,
            },
            "api",
        )
        .await?;
    Ok((StatusCode::CREATED, ApiJson(e)))
}

#[utoipa::path(post, path = "/api/v1/elevations/{id}/revoke",
    params(("id" = String, Path)),
    responses((status = 200, body = Elevation), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub(super) async fn revoke_elevation(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Elevation>> {
    Ok(ApiJson(
        state.workflow.end(&id, &actor(&admin), true).await?,
    ))
}

/// Filters of the per-call approval list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    /// pending, approved, denied, used or expired (as of now).
    pub status: Option<String>,
    pub subject: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/approvals", params(ApprovalQuery),
    responses((status = 200, body = Vec<CallApproval>), (status = 422, body = super::ErrorBody)))]
pub(super) async fn list_approvals(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<ApprovalQuery>,
) -> ApiResult<ApiJson<Vec<CallApproval>>> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(ApprovalStatus::parse(s).ok_or_else(|| {
            toolgate_domain::Error::invalid(format!("status {s:?} is not an approval status"))
        })?),
        None => None,
    };
    Ok(ApiJson(
        state
            .store
            .list_call_approvals(&ApprovalFilter {
                status,
                subject_id: q.subject,
                approver_groups: None,
                limit: q.limit,
            })
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/approvals/{id}", params(("id" = String, Path)),
    responses((status = 200, body = CallApproval), (status = 404, body = super::ErrorBody)))]
pub(super) async fn get_approval(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<CallApproval>> {
    Ok(ApiJson(state.store.call_approval(&id).await?))
}

/// "Approve each call": the group (id) whose members decide each call; `null` clears it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolApprovalInput {
    pub approver_group: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/connectors/{connector}/tools/{tool}/approval",
    request_body = ToolApprovalInput,
    params(("connector" = String, Path, description = "id or name"), ("tool" = String, Path)),
    responses((status = 200, body = CatalogTool), (status = 404, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody)))]
pub(super) async fn set_tool_approval(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((connector, tool)): Path<(String, String)>,
    ApiJson(body): ApiJson<ToolApprovalInput>,
) -> ApiResult<ApiJson<CatalogTool>> {
    let c = state.store.find_connector(&connector).await?;
    let before = state.store.catalog_tool(&c.id, &tool).await?;
    let group = body
        .approver_group
        .as_deref()
        .map(str::trim)
        .filter(|g| !g.is_empty());
    let after = state.store.set_tool_approval(&c.id, &tool, group).await?;
    let view = |t: &CatalogTool| {
        serde_json::json!({"connector": t.connector_name, "tool": t.name,
                           "approval_group": t.approval_group})
    };
    audit_change(
        &state,
        &admin,
        "admin.catalog.approval",
        Some(view(&before)),
        Some(view(&after)),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(after))
}

/// The elevation settings as shown: the webhook URL is never returned.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ElevationSettingsView {
    #[serde(flatten)]
    pub settings: ElevationSettings,
    pub webhook_configured: bool,
}

/// New settings; `webhook_url`: a URL sets it, `""` removes it, absent keeps it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElevationSettingsInput {
    pub webhook_format: Option<WebhookFormat>,
    pub approval_ttl_minutes: Option<u32>,
    pub agent_requests: Option<bool>,
    pub webhook_url: Option<String>,
}

async fn settings_view(state: &AppState) -> ApiResult<ElevationSettingsView> {
    Ok(ElevationSettingsView {
        settings: state.workflow.settings().await?,
        webhook_configured: state
            .store
            .secret_setting(setting_keys::ELEVATION_WEBHOOK)
            .await?
            .is_some(),
    })
}

#[utoipa::path(get, path = "/api/v1/settings/elevation",
    responses((status = 200, body = ElevationSettingsView)))]
pub(super) async fn get_settings(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<ElevationSettingsView>> {
    Ok(ApiJson(settings_view(&state).await?))
}

#[utoipa::path(put, path = "/api/v1/settings/elevation", request_body = ElevationSettingsInput,
    responses((status = 200, body = ElevationSettingsView), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_settings(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ElevationSettingsInput>,
) -> ApiResult<ApiJson<ElevationSettingsView>> {
    let before = settings_view(&state).await?;
    let mut next = before.settings.clone();
    if let Some(f) = body.webhook_format {
        next.webhook_format = f;
    }
    if let Some(t) = body.approval_ttl_minutes {
        next.approval_ttl_minutes = t;
    }
    if let Some(a) = body.agent_requests {
        next.agent_requests = a;
    }
    let next = next.validated().map_err(toolgate_domain::Error::invalid)?;
    let url = body.webhook_url.as_deref().map(str::trim);
    if let Some(u) = url.filter(|u| !u.is_empty()) {
        crate::elevation::validate_webhook_url(u).map_err(toolgate_domain::Error::invalid)?;
    }
    state
        .store
        .put_setting(setting_keys::ELEVATION, &next)
        .await?;
    match url {
        Some("") => {
            state
                .store
                .delete_setting(setting_keys::ELEVATION_WEBHOOK)
                .await?
        }
        Some(u) => {
            state
                .store
                .put_secret_setting(setting_keys::ELEVATION_WEBHOOK, u)
                .await?
        }
        None => {}
    }
    let after = settings_view(&state).await?;
    audit_change(
        &state,
        &admin,
        "admin.settings.elevation",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(after))
}
