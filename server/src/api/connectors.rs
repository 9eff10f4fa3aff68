//! `/api/v1/connectors`: register upstream MCP servers and list them (secrets never returned).

use super::changed;
use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use toolgate_domain::model::{Connector, Transport};
use toolgate_domain::store::NewConnector;

/// A connector to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnector {
    /// 1-32 of `[a-z0-9-]`; agents see its tools as `{name}__{tool}`.
    pub name: String,
    /// The upstream MCP endpoint.
    pub url: String,
    /// Only `streamable_http` for now.
    pub transport: Transport,
    /// Headers sent upstream on every request (API keys, bearer tokens); encrypted at rest.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/api/v1/connectors", request_body = CreateConnector,
    responses((status = 201, body = Connector), (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn create_connector(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateConnector>,
) -> ApiResult<(StatusCode, ApiJson<Connector>)> {
    let connector = state
        .store
        .create_connector(NewConnector {
            name: body.name,
            transport: body.transport,
            url: body.url,
            headers: body.headers,
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
    Ok((StatusCode::CREATED, ApiJson(connector)))
}

#[utoipa::path(get, path = "/api/v1/connectors", responses((status = 200, body = Vec<Connector>)))]
pub(super) async fn list_connectors(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<Connector>>> {
    Ok(ApiJson(state.store.list_connectors().await?))
}
