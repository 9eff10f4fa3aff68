//! Shared application state handed to every handler.

use crate::config::Config;
use crate::mcp::upstream::Upstreams;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use toolgate_domain::audit::AuditSink;
use toolgate_domain::snapshot::SnapshotHandle;
use toolgate_domain::store::Store;

/// Everything a request may need; cheap to clone.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub snapshot: Arc<SnapshotHandle>,
    pub audit: AuditSink,
    pub upstreams: Arc<Upstreams>,
    /// Tool discovery into the catalog, connector status.
    pub catalog: crate::connectors::Catalog,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub scim_log: crate::scim::ScimLog,
    pub oidc: Arc<crate::oidc::OidcRuntime>,
    /// The OAuth authorization server: access-token keys, Entra validation.
    pub oauth: Arc<crate::oauth::OAuthRuntime>,
    /// Elevation requests, decisions and per-call approvals (audit, snapshot, notices).
    pub workflow: toolgate_domain::approvals::Workflow,
    /// Delivers the audit log to the SIEM sinks.
    pub siem: crate::siem::SiemWorker,
    pub leptos_options: LeptosOptions,
    /// Set when shutdown begins: `/readyz` answers 503 so load balancers stop routing here.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Per-principal, per-token and per-address request budgets.
    pub rate_limits: Arc<crate::http::rate_limit::RateLimits>,
}
