//! `/api/v1/siem/sinks`: create, list, change and delete SIEM sinks, and send a test event.
//! Secrets (HEC token, webhook header value) are write-only: responses say only whether one is
//! stored, and audit records leave them out.

use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use toolgate_domain::siem::{NewSink, SiemSink, SinkTestResult, SinkUpdate};

/// The routes, relative to `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/siem/sinks", get(list_sinks).post(create_sink))
        .route(
            "/siem/sinks/{id}",
            get(get_sink).put(update_sink).delete(delete_sink),
        )
        .route("/siem/sinks/{id}/test", post(test_sink))
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

#[utoipa::path(get, path = "/api/v1/siem/sinks", responses((status = 200, body = Vec<SiemSink>)))]
pub async fn list_sinks(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<Vec<SiemSink>>> {
    Ok(ApiJson(state.store.list_siem_sinks().await?))
}

#[utoipa::path(post, path = "/api/v1/siem/sinks", request_body = NewSink,
    responses((status = 201, body = SiemSink), (status = 409, body = crate::api::ErrorBody),
        (status = 422, body = crate::api::ErrorBody)))]
pub async fn create_sink(
    admin: AdminCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewSink>,
) -> ApiResult<(StatusCode, ApiJson<SiemSink>)> {
    super::check_config(&body.config).map_err(invalid)?;
    let sink = state.store.create_siem_sink(body).await?;
    crate::api::audit_change(
        &state,
        &admin,
        "admin.siem.create",
        None,
        serde_json::to_value(&sink).ok(),
    )
    .await;
    Ok((StatusCode::CREATED, ApiJson(sink)))
}

#[utoipa::path(get, path = "/api/v1/siem/sinks/{id}", params(("id" = String, Path)),
    responses((status = 200, body = SiemSink), (status = 404, body = crate::api::ErrorBody)))]
pub async fn get_sink(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<SiemSink>> {
    Ok(ApiJson(state.store.get_siem_sink(&id).await?))
}

#[utoipa::path(put, path = "/api/v1/siem/sinks/{id}", params(("id" = String, Path)),
    request_body = SinkUpdate,
    responses((status = 200, body = SiemSink), (status = 404, body = crate::api::ErrorBody),
        (status = 409, body = crate::api::ErrorBody), (status = 422, body = crate::api::ErrorBody)))]
pub async fn update_sink(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SinkUpdate>,
) -> ApiResult<ApiJson<SiemSink>> {
    let before = state.store.get_siem_sink(&id).await?;
    if let Some(config) = &body.config {
        super::check_config(config).map_err(invalid)?;
    }
    let after = state.store.update_siem_sink(&id, body).await?;
    crate::api::audit_change(
        &state,
        &admin,
        "admin.siem.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    Ok(ApiJson(after))
}

#[utoipa::path(delete, path = "/api/v1/siem/sinks/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::api::ErrorBody)))]
pub async fn delete_sink(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let before = state.store.delete_siem_sink(&id).await?;
    crate::api::audit_change(
        &state,
        &admin,
        "admin.siem.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends one synthetic event (kind `siem.test`, not in the audit log) to the sink now and
/// reports whether it arrived. The delivery cursor and counters are not touched.
#[utoipa::path(post, path = "/api/v1/siem/sinks/{id}/test", params(("id" = String, Path)),
    responses((status = 200, body = SinkTestResult, description = "the test ran; `ok` says whether the sink took the event"),
        (status = 404, body = crate::api::ErrorBody)))]
pub async fn test_sink(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<SinkTestResult>> {
    let who = format!("token:{}", admin.token_name);
    let (sink, result) = super::send_test(&state.store, &id, &who).await?;
    super::record_test(
        &state.audit,
        &state.store,
        &who,
        Some(&admin.token_id),
        &sink,
        &result,
    )
    .await;
    Ok(ApiJson(result))
}
