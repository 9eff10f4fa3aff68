//! The admin JSON API under `/api/v1`: bearer admin token, JSON in and out, OpenAPI document at
//! `/api/v1/openapi.json`. Every change reloads the policy snapshot so the proxy sees it at once.

pub(crate) mod audit;
mod connectors;
mod directory;
mod elevation;
mod oauth;
mod policy;
pub mod settings;

use crate::http::{ApiError, ApiJson};
use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post, put};
use utoipa::OpenApi;

pub use connectors::CreateConnector;
pub use directory::{CreateGroup, CreateToken, CreateUser, PutPolicy, TokenCreated};

/// The OpenAPI description of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Toolgate admin API", version = "1", description = "Manage connectors, users, groups, policies, tokens; read the audit log."),
    paths(
        connectors::create_connector,
        connectors::list_connectors,
        connectors::get_connector,
        connectors::update_connector,
        connectors::delete_connector,
        connectors::refresh,
        connectors::list_tools,
        connectors::review_tool,
        connectors::set_risk,
        connectors::review_queue,
        connectors::get_catalog_settings,
        connectors::put_catalog_settings,
        policy::simulate,
        policy::who_can_call,
        directory::create_user,
        directory::list_users,
        directory::create_group,
        directory::list_groups,
        directory::put_member,
        directory::delete_member,
        directory::put_policy,
        directory::delete_policy,
        directory::create_token,
        audit::list_audit,
        audit::get_event,
        audit::export,
        audit::integrity,
        settings::get_identity,
        settings::put_identity,
        settings::get_dlp,
        settings::put_dlp,
        oauth::get_settings, oauth::put_settings, oauth::list_clients, oauth::create_client,
        oauth::update_client, oauth::delete_client, oauth::list_consents, oauth::revoke_consent,
        oauth::list_sps, oauth::create_sp, oauth::get_sp, oauth::update_sp, oauth::delete_sp,
        oauth::rotate_secret, oauth::revoke_secret, oauth::get_entra, oauth::put_entra,
        crate::siem::api::list_sinks, crate::siem::api::create_sink, crate::siem::api::get_sink,
        crate::siem::api::update_sink, crate::siem::api::delete_sink, crate::siem::api::test_sink,
        elevation::list_profiles, elevation::create_profile, elevation::get_profile,
        elevation::update_profile, elevation::delete_profile, elevation::list_elevations,
        elevation::get_elevation, elevation::request_elevation, elevation::revoke_elevation,
        elevation::list_approvals, elevation::get_approval, elevation::set_tool_approval,
        elevation::get_settings, elevation::put_settings,
    ),
    components(schemas(
        toolgate_domain::model::Connector,
        toolgate_domain::model::Transport,
        toolgate_domain::model::UpstreamOAuth,
        toolgate_domain::model::ConnectorStatus,
        toolgate_domain::model::ConnectorHealth,
        toolgate_domain::model::CatalogTool,
        toolgate_domain::model::Simulation,
        toolgate_domain::model::SimulatedSubject,
        toolgate_domain::model::ConnectorAccess,
        toolgate_domain::model::ToolAccess,
        toolgate_domain::model::WhoCanCall,
        toolgate_domain::model::SubjectDecision,
        toolgate_domain::risk::Risk,
        toolgate_domain::risk::ToolHints,
        toolgate_domain::policy::Review,
        toolgate_domain::store::CatalogSync,
        toolgate_domain::store::CatalogSettings,
        connectors::OAuthInput, connectors::CreatedConnector, connectors::DiscoveryReport,
        connectors::UpdateConnector, connectors::ReviewInput, connectors::RiskInput,
        toolgate_domain::model::User,
        toolgate_domain::model::Group,
        toolgate_domain::model::ToolPolicy,
        toolgate_domain::model::AuditEvent,
        toolgate_domain::model::AuditDecision,
        toolgate_domain::model::Outcome,
        CreateConnector, CreateUser, CreateGroup, PutPolicy, CreateToken, TokenCreated,
        audit::AuditPage, ErrorBody, ErrorInner,
        toolgate_domain::model::AuditIntegrity, toolgate_domain::model::AuditStatus,
        toolgate_domain::model::AuditPolicy,
        toolgate_domain::dlp::DlpSettings, toolgate_domain::dlp::DlpAction,
        toolgate_domain::dlp::CustomDetector,
        toolgate_domain::siem::SiemSink, toolgate_domain::siem::SinkKind,
        toolgate_domain::siem::SinkConfig, toolgate_domain::siem::SyslogFormat,
        toolgate_domain::siem::NewSink, toolgate_domain::siem::SinkUpdate,
        toolgate_domain::siem::SinkTestResult,
        settings::IdentitySettingsView, toolgate_domain::model::IdentitySettingsInput,
        toolgate_domain::model::OidcInput,
        toolgate_domain::model::OidcSettings, toolgate_domain::model::OidcMatch,
        toolgate_domain::model::RoleMappings,
        toolgate_domain::model::OAuthSettings, toolgate_domain::model::OAuthClient,
        toolgate_domain::model::OAuthClientKind, toolgate_domain::model::Consent,
        toolgate_domain::model::ServicePrincipal, toolgate_domain::model::SpSecret,
        toolgate_domain::model::EntraAppSettings,
        oauth::CreateClient, oauth::ClientCreated, oauth::UpdateClient,
        oauth::CreateServicePrincipal, oauth::ServicePrincipalCreated,
        oauth::UpdateServicePrincipal, oauth::RotateSecret, oauth::SecretCreated,
        toolgate_domain::elevation::ElevationProfile, toolgate_domain::elevation::ProfileInput,
        toolgate_domain::elevation::ProfileTarget, toolgate_domain::elevation::Elevation,
        toolgate_domain::elevation::ElevationStatus, toolgate_domain::elevation::CallApproval,
        toolgate_domain::elevation::ApprovalStatus, toolgate_domain::elevation::ElevationSettings,
        toolgate_domain::elevation::WebhookFormat, elevation::RequestElevation,
        elevation::ToolApprovalInput, elevation::ElevationSettingsView,
        elevation::ElevationSettingsInput,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error body every endpoint returns on failure.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorInner,
}

/// Machine-readable code and human message.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorInner {
    code: String,
    message: String,
}

/// The routes below `/api/v1` (nested there by the caller).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route(
            "/connectors",
            post(connectors::create_connector).get(connectors::list_connectors),
        )
        .route(
            "/connectors/{connector}",
            get(connectors::get_connector)
                .patch(connectors::update_connector)
                .delete(connectors::delete_connector),
        )
        .route("/connectors/{connector}/refresh", post(connectors::refresh))
        .route("/connectors/{connector}/tools", get(connectors::list_tools))
        .route(
            "/connectors/{connector}/tools/{tool}/review",
            post(connectors::review_tool),
        )
        .route(
            "/connectors/{connector}/tools/{tool}/risk",
            put(connectors::set_risk),
        )
        .route(
            "/connectors/{connector}/tools/{tool}/approval",
            put(elevation::set_tool_approval),
        )
        .route(
            "/elevation/profiles",
            get(elevation::list_profiles).post(elevation::create_profile),
        )
        .route(
            "/elevation/profiles/{id}",
            get(elevation::get_profile)
                .put(elevation::update_profile)
                .delete(elevation::delete_profile),
        )
        .route(
            "/elevations",
            get(elevation::list_elevations).post(elevation::request_elevation),
        )
        .route("/elevations/{id}", get(elevation::get_elevation))
        .route("/elevations/{id}/revoke", post(elevation::revoke_elevation))
        .route("/approvals", get(elevation::list_approvals))
        .route("/approvals/{id}", get(elevation::get_approval))
        .route(
            "/settings/elevation",
            get(elevation::get_settings).put(elevation::put_settings),
        )
        .route("/catalog/review", get(connectors::review_queue))
        .route(
            "/settings/catalog",
            get(connectors::get_catalog_settings).put(connectors::put_catalog_settings),
        )
        .route("/policy/simulate", get(policy::simulate))
        .route("/policy/who-can-call", get(policy::who_can_call))
        .route(
            "/users",
            post(directory::create_user).get(directory::list_users),
        )
        .route("/users/{user_id}/tokens", post(directory::create_token))
        .route(
            "/groups",
            post(directory::create_group).get(directory::list_groups),
        )
        .route(
            "/groups/{group_id}/members/{user_id}",
            put(directory::put_member).delete(directory::delete_member),
        )
        .route(
            "/groups/{group_id}/policies/{connector_id}",
            put(directory::put_policy).delete(directory::delete_policy),
        )
        .route("/audit", get(audit::list_audit))
        .route("/audit/export", get(audit::export))
        .route("/audit/integrity", get(audit::integrity))
        .route("/audit/{id}", get(audit::get_event))
        .route(
            "/settings/identity",
            get(settings::get_identity).put(settings::put_identity),
        )
        .route(
            "/settings/dlp",
            get(settings::get_dlp).put(settings::put_dlp),
        )
        .route(
            "/settings/oauth",
            get(oauth::get_settings).put(oauth::put_settings),
        )
        .route(
            "/oauth/clients",
            get(oauth::list_clients).post(oauth::create_client),
        )
        .route(
            "/oauth/clients/{client_id}",
            axum::routing::patch(oauth::update_client).delete(oauth::delete_client),
        )
        .route("/users/{user_id}/consents", get(oauth::list_consents))
        .route(
            "/users/{user_id}/consents/{client_id}",
            axum::routing::delete(oauth::revoke_consent),
        )
        .route(
            "/service-principals",
            get(oauth::list_sps).post(oauth::create_sp),
        )
        .route(
            "/service-principals/{id}",
            get(oauth::get_sp)
                .patch(oauth::update_sp)
                .delete(oauth::delete_sp),
        )
        .route(
            "/service-principals/{id}/secrets",
            post(oauth::rotate_secret),
        )
        .route(
            "/service-principals/{id}/secrets/{secret_id}",
            axum::routing::delete(oauth::revoke_secret),
        )
        .route(
            "/settings/entra-apps",
            get(oauth::get_entra).put(oauth::put_entra),
        )
        .merge(crate::siem::api_router())
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_method_not_allowed)
}

async fn openapi_json() -> ApiJson<utoipa::openapi::OpenApi> {
    ApiJson(ApiDoc::openapi())
}

async fn api_method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

async fn api_not_found() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint",
    )
}

/// Records an administrator's change (before and after, secrets left out) in the audit log.
/// The change is stored already; a failed write is logged loudly.
pub(crate) async fn audit_change(
    state: &AppState,
    admin: &crate::http::auth::AdminCaller,
    kind: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let event = toolgate_domain::store::NewAuditEvent {
        client_id: Some(admin.token_id.clone()),
        ..toolgate_domain::store::NewAuditEvent::change(
            state.store.clock().now(),
            kind,
            &format!("token:{}", admin.token_name),
            "admin",
            before,
            after,
        )
    };
    state.audit.record_after_the_fact(event).await;
}

/// Reloads the snapshot after a change (a failure is logged: the change is stored already) and
/// closes upstream connections of connectors that are no longer enabled.
pub(crate) async fn changed(state: &AppState) {
    if let Err(e) = state.snapshot.publish().await {
        tracing::error!(error = %e, "policy snapshot reload failed after a change");
    }
    let enabled: Vec<String> = state
        .snapshot
        .get()
        .enabled_connectors()
        .map(|c| c.connector.id.clone())
        .collect();
    state.upstreams.retain(&enabled).await;
}
