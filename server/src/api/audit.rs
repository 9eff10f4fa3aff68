//! `/api/v1/audit`: the audit log, newest first, with keyset paging.

use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use toolgate_domain::model::AuditEvent;
use toolgate_domain::store::AuditQuery;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditParams {
    /// Page size, 1-1000 (default 50).
    limit: Option<i64>,
    /// Only events older than this id (from `next_before` of the previous page).
    before: Option<i64>,
}

/// One page of audit events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditParams), responses((status = 200, body = AuditPage)))]
pub(super) async fn list_audit(
    _admin: AdminCaller,
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<ApiJson<AuditPage>> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    // One more than asked tells whether an older page exists without a second query.
    let mut items = state
        .store
        .list_audit(&AuditQuery {
            limit: limit + 1,
            before_id: params.before,
        })
        .await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_before = if more {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(ApiJson(AuditPage { items, next_before }))
}
