//! `/api/v1/users`, `/api/v1/groups`: people, groups, memberships, per-connector policies and
//! personal access tokens for agents.

use super::changed;
use crate::http::auth::AdminCaller;
use crate::http::{ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use toolgate_domain::model::{Group, Scopes, ToolPolicy, User};
use toolgate_domain::store::NewUser;

/// A user to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique (case-insensitively), e.g. the UPN `alice@example.com`.
    pub user_name: String,
    pub display_name: String,
    /// The identity provider's id for this person, if known.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A group to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Unique (case-insensitively).
    pub display_name: String,
}

/// A group's rules on one connector: upstream tool names or `*` patterns, risk levels,
/// resources and prompts; any block wins (see docs/policy.md).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPolicy {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub block: Vec<String>,
    /// Allow every tool of at most this risk (`low`, `normal`, `consequential`, `high`, `infrastructure`).
    #[serde(default)]
    pub allow_risk: Option<toolgate_domain::risk::Risk>,
    /// Block every tool of at least this risk.
    #[serde(default)]
    pub block_risk: Option<toolgate_domain::risk::Risk>,
    /// Resource URI globs the group may read.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Prompt name globs the group may get.
    #[serde(default)]
    pub prompts: Vec<String>,
}

/// A personal access token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name to recognise the token by, e.g. "claude-code laptop".
    pub name: String,
    /// Days until the token stops working (1-3650); none: it works until revoked.
    #[serde(default)]
    pub expires_in_days: Option<i64>,
    /// `mcp:read` and/or `mcp:tools`; default both.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// A new token; `token` is shown this once and never again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub token: String,
}

#[utoipa::path(post, path = "/api/v1/users", request_body = CreateUser,
    responses((status = 201, body = User), (status = 409, body = super::ErrorBody)))]
pub(super) async fn create_user(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, ApiJson<User>)> {
    let user = state
        .store
        .create_user(NewUser {
            user_name: body.user_name,
            display_name: body.display_name,
            external_id: body.external_id,
        })
        .await?;
    super::audit_change(
        &state,
        &admin,
        "admin.user.create",
        None,
        serde_json::to_value(&user).ok(),
    )
    .await;
    changed(&state).await;
    Ok((StatusCode::CREATED, ApiJson(user)))
}

#[utoipa::path(get, path = "/api/v1/users", responses((status = 200, body = Vec<User>)))]
pub(super) async fn list_users(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<User>>> {
    Ok(ApiJson(state.store.list_users().await?))
}

#[utoipa::path(post, path = "/api/v1/groups", request_body = CreateGroup,
    responses((status = 201, body = Group), (status = 409, body = super::ErrorBody)))]
pub(super) async fn create_group(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateGroup>,
) -> ApiResult<(StatusCode, ApiJson<Group>)> {
    let group = state.store.create_group(&body.display_name, None).await?;
    super::audit_change(
        &state,
        &admin,
        "admin.group.create",
        None,
        serde_json::to_value(&group).ok(),
    )
    .await;
    changed(&state).await;
    Ok((StatusCode::CREATED, ApiJson(group)))
}

#[utoipa::path(get, path = "/api/v1/groups", responses((status = 200, body = Vec<Group>)))]
pub(super) async fn list_groups(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<Group>>> {
    Ok(ApiJson(state.store.list_groups().await?))
}

#[utoipa::path(put, path = "/api/v1/groups/{group_id}/members/{user_id}",
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn put_member(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((group_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.add_member(&group_id, &user_id).await?;
    let member = serde_json::json!({"group_id": group_id, "user_id": user_id});
    super::audit_change(&state, &admin, "admin.group.member_add", None, Some(member)).await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/groups/{group_id}/members/{user_id}",
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn delete_member(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((group_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.remove_member(&group_id, &user_id).await?;
    let member = serde_json::json!({"group_id": group_id, "user_id": user_id});
    super::audit_change(
        &state,
        &admin,
        "admin.group.member_remove",
        Some(member),
        None,
    )
    .await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/groups/{group_id}/policies/{connector_id}", request_body = PutPolicy,
    responses((status = 200, body = ToolPolicy), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_policy(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((group_id, connector_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutPolicy>,
) -> ApiResult<ApiJson<ToolPolicy>> {
    let connector = state.store.find_connector(&connector_id).await?;
    let before = state
        .store
        .group_policies(&group_id)
        .await?
        .into_iter()
        .find(|p| p.connector_id == connector.id);
    let policy = state
        .store
        .put_rules(
            &group_id,
            &connector.id,
            toolgate_domain::policy::ToolRules {
                allow: body.allow,
                block: body.block,
                allow_risk: body.allow_risk,
                block_risk: body.block_risk,
                resources: body.resources,
                prompts: body.prompts,
            },
        )
        .await?;
    super::audit_change(
        &state,
        &admin,
        "admin.policy.put",
        before.and_then(|b| serde_json::to_value(&b).ok()),
        serde_json::to_value(&policy).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(policy))
}

#[utoipa::path(delete, path = "/api/v1/groups/{group_id}/policies/{connector_id}",
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn delete_policy(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((group_id, connector_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let connector = state.store.find_connector(&connector_id).await?;
    let before = state
        .store
        .group_policies(&group_id)
        .await?
        .into_iter()
        .find(|p| p.connector_id == connector.id)
        .ok_or(toolgate_domain::Error::NotFound("policy"))?;
    state.store.delete_policy(&group_id, &connector.id).await?;
    super::audit_change(
        &state,
        &admin,
        "admin.policy.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/users/{user_id}/tokens", request_body = CreateToken,
    responses((status = 201, body = TokenCreated), (status = 404, body = super::ErrorBody)))]
pub(super) async fn create_token(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, ApiJson<TokenCreated>)> {
    let scopes = match &body.scopes {
        Some(names) => Scopes::from_names(names).map_err(toolgate_domain::Error::invalid)?,
        None => Scopes::ALL,
    };
    let expires_at = match body.expires_in_days {
        Some(d) if (1..=3650).contains(&d) => {
            Some(state.store.clock().now().timestamp_millis() + d * 86_400_000)
        }
        Some(_) => {
            return Err(toolgate_domain::Error::invalid("expires_in_days must be 1-3650").into());
        }
        None => None,
    };
    let (info, token) = state
        .store
        .create_personal_token(&user_id, &body.name, expires_at, scopes)
        .await?;
    // The token itself never reaches the log: its id, name and prefix identify it.
    super::audit_change(
        &state,
        &admin,
        "admin.token.create",
        None,
        serde_json::to_value(&info).ok(),
    )
    .await;
    changed(&state).await;
    Ok((
        StatusCode::CREATED,
        ApiJson(TokenCreated {
            id: info.id,
            name: info.name,
            user_id,
            prefix: info.prefix,
            created_at: info.created_at,
            expires_at: info.expires_at,
            scopes: info.scopes,
            token,
        }),
    ))
}
