//! `/api/v1/policy`: the effective-access simulator (every tool for a person or group, with the
//! deciding rule) and "who can call tool X".

use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use toolgate_domain::model::{Simulation, WhoCanCall};
use toolgate_domain::simulator;

/// Whom to simulate: exactly one of `user` (id or user name) or `group` (id or display name).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SimulateQuery {
    pub user: Option<String>,
    pub group: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/policy/simulate", params(SimulateQuery),
    responses((status = 200, body = Simulation), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn simulate(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<SimulateQuery>,
) -> ApiResult<ApiJson<Simulation>> {
    let snap = state.snapshot.get();
    let sim = match (q.user, q.group) {
        (Some(u), None) => simulator::simulate_user(&state.store, &snap, &u).await?,
        (None, Some(g)) => simulator::simulate_group(&state.store, &snap, &g).await?,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "give exactly one of ?user= or ?group=",
            ));
        }
    };
    Ok(ApiJson(sim))
}

/// The tool to ask about.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WhoQuery {
    /// Connector name.
    pub connector: String,
    /// Tool name as the upstream names it.
    pub tool: String,
}

#[utoipa::path(get, path = "/api/v1/policy/who-can-call", params(WhoQuery),
    responses((status = 200, body = WhoCanCall), (status = 404, body = super::ErrorBody)))]
pub(super) async fn who_can_call(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<WhoQuery>,
) -> ApiResult<ApiJson<WhoCanCall>> {
    let snap = state.snapshot.get();
    Ok(ApiJson(
        simulator::who_can_call(&state.store, &snap, &q.connector, &q.tool).await?,
    ))
}
