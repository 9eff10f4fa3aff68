//! `/api/v1/connectors`: register upstream MCP servers (streamable HTTP, SSE, stdio) with the
//! credentials the gateway holds for them (never returned), change and delete them, discover
//! their tools into the catalog, review new or changed tools and set risk levels.

use super::changed;
use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toolgate_domain::model::{CatalogTool, Connector, ConnectorStatus, Transport, UpstreamOAuth};
use toolgate_domain::risk::Risk;
use toolgate_domain::store::{
    CatalogSettings, CatalogSync, ConnectorUpdate, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_MS,
    NewConnector, setting_keys,
};

/// OAuth client credentials to the upstream, as sent (the secret is write-only).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthInput {
    pub token_url: String,
    pub client_id: String,
    /// Required when OAuth is first set; left out on a change, the stored one is kept.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
}

impl OAuthInput {
    fn split(self) -> (UpstreamOAuth, Option<String>) {
        (
            UpstreamOAuth {
                token_url: self.token_url,
                client_id: self.client_id,
                scope: self.scope,
                resource: self.resource,
            },
            self.client_secret,
        )
    }
}

/// A connector to create. HTTP transports: `{"transport":"streamable_http"|"sse","url":...}`;
/// stdio: `{"transport":"stdio","command":"npx","args":[...],"env":{...}}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnector {
    /// 1-32 of `[a-z0-9-]`; agents see its tools as `{name}__{tool}`.
    pub name: String,
    /// `streamable_http` (default), `sse` or `stdio`.
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// The upstream MCP endpoint (HTTP transports).
    #[serde(default)]
    pub url: String,
    /// The program to run (stdio).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Headers sent upstream on every request (API keys, bearer tokens); encrypted at rest.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment of a stdio command (credentials); encrypted at rest.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// OAuth client credentials: the gateway fetches and refreshes upstream tokens itself.
    #[serde(default)]
    pub oauth: Option<OAuthInput>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Look up the tools now (default true). The tools found first become the initial catalog.
    #[serde(default = "yes")]
    pub discover: bool,
}

fn default_transport() -> Transport {
    Transport::StreamableHttp
}

fn yes() -> bool {
    true
}

/// How the first discovery went.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiscoveryReport {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<CatalogSync>,
}

/// A created connector and its first discovery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedConnector {
    #[serde(flatten)]
    pub connector: Connector,
    pub discovery: DiscoveryReport,
}

#[utoipa::path(post, path = "/api/v1/connectors", request_body = CreateConnector,
    responses((status = 201, body = CreatedConnector), (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn create_connector(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateConnector>,
) -> ApiResult<(StatusCode, ApiJson<CreatedConnector>)> {
    let (oauth, oauth_client_secret) = match body.oauth.map(OAuthInput::split) {
        Some((o, s)) => (Some(o), s),
        None => (None, None),
    };
    let connector = state
        .store
        .create_connector(NewConnector {
            name: body.name,
            transport: body.transport,
            url: body.url,
            command: body.command,
            args: body.args,
            headers: body.headers,
            env: body.env,
            oauth,
            oauth_client_secret,
            timeout_ms: body.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            max_concurrency: body.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
        })
        .await
        .map_err(ApiError::from)?;
    super::audit_change(
        &state,
        &admin,
        "admin.connector.create",
        None,
        serde_json::to_value(&connector).ok(),
    )
    .await;
    changed(&state).await;
    let discovery = if body.discover {
        discovery_report(state.catalog.discover(&connector.id).await)
    } else {
        DiscoveryReport {
            ok: false,
            error: Some("not attempted".into()),
            sync: None,
        }
    };
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedConnector {
            connector,
            discovery,
        }),
    ))
}

fn discovery_report(r: Result<CatalogSync, crate::connectors::DiscoveryError>) -> DiscoveryReport {
    match r {
        Ok(sync) => DiscoveryReport {
            ok: true,
            error: None,
            sync: Some(sync),
        },
        Err(e) => DiscoveryReport {
            ok: false,
            error: Some(e.to_string()),
            sync: None,
        },
    }
}

#[utoipa::path(get, path = "/api/v1/connectors", responses((status = 200, body = Vec<ConnectorStatus>)))]
pub(super) async fn list_connectors(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<ConnectorStatus>>> {
    Ok(ApiJson(state.catalog.statuses().await?))
}

#[utoipa::path(get, path = "/api/v1/connectors/{connector}", params(("connector" = String, Path, description = "id or name")),
    responses((status = 200, body = ConnectorStatus), (status = 404, body = super::ErrorBody)))]
pub(super) async fn get_connector(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(connector): Path<String>,
) -> ApiResult<ApiJson<ConnectorStatus>> {
    Ok(ApiJson(state.catalog.status(&connector).await?))
}

/// A change to a connector; fields left out stay as they are. `headers` and `env` replace the
/// stored sets whole; `"oauth": null` removes OAuth.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnector {
    pub url: Option<String>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<OAuthInput>)]
    pub oauth: Option<Option<OAuthInput>>,
    pub timeout_ms: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub enabled: Option<bool>,
}

/// Tells a missing field (`None`) from an explicit `null` (`Some(None)`).
pub(super) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/api/v1/connectors/{connector}", request_body = UpdateConnector,
    params(("connector" = String, Path, description = "id or name")),
    responses((status = 200, body = Connector), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn update_connector(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(connector): Path<String>,
    ApiJson(body): ApiJson<UpdateConnector>,
) -> ApiResult<ApiJson<Connector>> {
    let before = state.store.find_connector(&connector).await?;
    let (oauth, oauth_client_secret) = match body.oauth {
        None => (None, None),
        Some(None) => (Some(None), None),
        Some(Some(o)) => {
            let (o, s) = o.split();
            (Some(Some(o)), s)
        }
    };
    let after = state
        .store
        .update_connector(
            &before.id,
            ConnectorUpdate {
                url: body.url,
                command: body.command,
                args: body.args,
                headers: body.headers,
                env: body.env,
                oauth,
                oauth_client_secret,
                timeout_ms: body.timeout_ms,
                max_concurrency: body.max_concurrency,
                enabled: body.enabled,
            },
        )
        .await?;
    super::audit_change(
        &state,
        &admin,
        "admin.connector.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(after))
}

#[utoipa::path(delete, path = "/api/v1/connectors/{connector}", params(("connector" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub(super) async fn delete_connector(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(connector): Path<String>,
) -> ApiResult<StatusCode> {
    let c = state.store.find_connector(&connector).await?;
    let gone = state.store.delete_connector(&c.id).await?;
    super::audit_change(
        &state,
        &admin,
        "admin.connector.delete",
        serde_json::to_value(&gone).ok(),
        None,
    )
    .await;
    changed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/connectors/{connector}/refresh", params(("connector" = String, Path, description = "id or name")),
    responses((status = 200, body = CatalogSync), (status = 404, body = super::ErrorBody), (status = 502, body = super::ErrorBody)))]
pub(super) async fn refresh(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(connector): Path<String>,
) -> ApiResult<ApiJson<CatalogSync>> {
    let c = state.store.find_connector(&connector).await?;
    match state.catalog.discover(&c.id).await {
        Ok(sync) => Ok(ApiJson(sync)),
        Err(crate::connectors::DiscoveryError::Store(e)) => Err(e.into()),
        Err(crate::connectors::DiscoveryError::Upstream(e)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            e.to_string(),
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/connectors/{connector}/tools", params(("connector" = String, Path, description = "id or name")),
    responses((status = 200, body = Vec<CatalogTool>), (status = 404, body = super::ErrorBody)))]
pub(super) async fn list_tools(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(connector): Path<String>,
) -> ApiResult<ApiJson<Vec<CatalogTool>>> {
    let c = state.store.find_connector(&connector).await?;
    Ok(ApiJson(state.store.catalog(&c.id).await?))
}

/// An admin's review of a tool.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    /// `approve` (its current definition becomes the approved one) or `reject`.
    pub decision: String,
}

#[utoipa::path(post, path = "/api/v1/connectors/{connector}/tools/{tool}/review", request_body = ReviewInput,
    params(("connector" = String, Path, description = "id or name"), ("tool" = String, Path)),
    responses((status = 200, body = CatalogTool), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn review_tool(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((connector, tool)): Path<(String, String)>,
    ApiJson(body): ApiJson<ReviewInput>,
) -> ApiResult<ApiJson<CatalogTool>> {
    let approve = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "decision must be \"approve\" or \"reject\"",
            ));
        }
    };
    let c = state.store.find_connector(&connector).await?;
    let before = state.store.catalog_tool(&c.id, &tool).await?;
    let after = state.store.review_tool(&c.id, &tool, approve).await?;
    super::audit_change(
        &state,
        &admin,
        "admin.catalog.review",
        Some(review_view(&before)),
        Some(review_view(&after)),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(after))
}

/// What an audit row keeps of a catalog entry.
fn review_view(t: &CatalogTool) -> serde_json::Value {
    serde_json::json!({
        "connector": t.connector_name, "tool": t.name, "review": t.review, "hash": t.hash,
        "risk": t.risk, "risk_reason": t.risk_reason,
    })
}

/// A tool's risk level; `null` returns to the suggested level.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskInput {
    pub risk: Option<Risk>,
}

#[utoipa::path(put, path = "/api/v1/connectors/{connector}/tools/{tool}/risk", request_body = RiskInput,
    params(("connector" = String, Path, description = "id or name"), ("tool" = String, Path)),
    responses((status = 200, body = CatalogTool), (status = 404, body = super::ErrorBody)))]
pub(super) async fn set_risk(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path((connector, tool)): Path<(String, String)>,
    ApiJson(body): ApiJson<RiskInput>,
) -> ApiResult<ApiJson<CatalogTool>> {
    let c = state.store.find_connector(&connector).await?;
    let before = state.store.catalog_tool(&c.id, &tool).await?;
    let after = state.store.set_tool_risk(&c.id, &tool, body.risk).await?;
    super::audit_change(
        &state,
        &admin,
        "admin.catalog.risk",
        Some(review_view(&before)),
        Some(review_view(&after)),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(after))
}

#[utoipa::path(get, path = "/api/v1/catalog/review", responses((status = 200, body = Vec<CatalogTool>)))]
pub(super) async fn review_queue(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<CatalogTool>>> {
    Ok(ApiJson(state.store.review_queue().await?))
}

#[utoipa::path(get, path = "/api/v1/settings/catalog", responses((status = 200, body = CatalogSettings)))]
pub(super) async fn get_catalog_settings(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<CatalogSettings>> {
    Ok(ApiJson(state.store.catalog_settings().await?))
}

#[utoipa::path(put, path = "/api/v1/settings/catalog", request_body = CatalogSettings,
    responses((status = 200, body = CatalogSettings), (status = 422, body = super::ErrorBody)))]
pub(super) async fn put_catalog_settings(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CatalogSettings>,
) -> ApiResult<ApiJson<CatalogSettings>> {
    let before = state.store.catalog_settings().await?;
    state
        .store
        .put_setting(setting_keys::CATALOG, &body)
        .await?;
    super::audit_change(
        &state,
        &admin,
        "admin.settings.catalog",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&body).ok(),
    )
    .await;
    changed(&state).await;
    Ok(ApiJson(body))
}
