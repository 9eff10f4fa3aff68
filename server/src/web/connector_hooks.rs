//! The server side of the dashboard's connector hooks: test connections of unsaved settings,
//! tool discovery, live health, and letting the upstream pool drop connections of connectors
//! that are gone or disabled. Only the server holds the upstream connections, so the dashboard's
//! server functions reach them through these.

use crate::connectors::DiscoveryError;
use crate::state::AppState;
use std::sync::Arc;
use toolgate_app::pages::connectors::fns::{ConnectorHooks, HookError, HookFuture};
use toolgate_domain::model::ConnectorStatus;
use toolgate_domain::store::{CatalogSync, ConnectorSecrets, DiscoveredTool};

/// The hooks over this process's catalog service and upstream pool.
pub fn dashboard_hooks(state: &AppState) -> ConnectorHooks {
    let catalog = state.catalog.clone();
    let probe = move |c: ConnectorSecrets| -> HookFuture<Result<Vec<DiscoveredTool>, HookError>> {
        let catalog = catalog.clone();
        Box::pin(async move {
            catalog
                .probe(&c)
                .await
                .map_err(|e| HookError::Upstream(e.to_string()))
        })
    };
    let catalog = state.catalog.clone();
    let discover = move |id: String,
                         reviewed: Option<std::collections::HashSet<String>>|
          -> HookFuture<Result<CatalogSync, HookError>> {
        let catalog = catalog.clone();
        Box::pin(async move {
            catalog
                .discover_reviewed(&id, reviewed.as_ref())
                .await
                .map_err(|e| match e {
                    DiscoveryError::Upstream(e) => HookError::Upstream(e.to_string()),
                    DiscoveryError::Store(e) => HookError::Domain(e),
                })
        })
    };
    let catalog = state.catalog.clone();
    let statuses = move || -> HookFuture<toolgate_domain::Result<Vec<ConnectorStatus>>> {
        let catalog = catalog.clone();
        Box::pin(async move { catalog.statuses().await })
    };
    let catalog = state.catalog.clone();
    let status = move |id_or_name: String| -> HookFuture<toolgate_domain::Result<ConnectorStatus>> {
        let catalog = catalog.clone();
        Box::pin(async move { catalog.status(&id_or_name).await })
    };
    let (snapshot, upstreams) = (state.snapshot.clone(), state.upstreams.clone());
    // As the admin API does after a change (`api::changed`), once the snapshot is published.
    let connections_changed = move || -> HookFuture<()> {
        let (snapshot, upstreams) = (snapshot.clone(), upstreams.clone());
        Box::pin(async move {
            let enabled: Vec<String> = snapshot
                .get()
                .enabled_connectors()
                .map(|c| c.connector.id.clone())
                .collect();
            upstreams.retain(&enabled).await;
        })
    };
    ConnectorHooks {
        probe: Arc::new(probe),
        discover: Arc::new(discover),
        statuses: Arc::new(statuses),
        status: Arc::new(status),
        connections_changed: Arc::new(connections_changed),
    }
}
