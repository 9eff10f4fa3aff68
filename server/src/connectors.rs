//! Connectors around the store: discovery of upstream tools into the catalog (on create, on
//! refresh, on `tools/list_changed`, and whenever a listing shows a definition the snapshot does
//! not know), and the status view (settings + live health + catalog counts).

use crate::mcp::upstream::{UpstreamError, Upstreams};
use rmcp::model::Tool;
use std::sync::Arc;
use std::time::Duration;
use toolgate_domain::audit::AuditSink;
use toolgate_domain::model::{AuditDecision, ConnectorStatus, Outcome};
use toolgate_domain::policy::Review;
use toolgate_domain::risk::ToolHints;
use toolgate_domain::snapshot::SnapshotHandle;
use toolgate_domain::store::{CatalogSync, ConnectorSecrets, DiscoveredTool, NewAuditEvent, Store};

/// Why a discovery did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] toolgate_domain::Error),
}

/// A tool as the catalog records it.
pub fn discovered(tool: &Tool) -> DiscoveredTool {
    let annotations = tool
        .annotations
        .as_ref()
        .map(|a| ToolHints {
            read_only_hint: a.read_only_hint,
            destructive_hint: a.destructive_hint,
            idempotent_hint: a.idempotent_hint,
            open_world_hint: a.open_world_hint,
        })
        .unwrap_or_default();
    DiscoveredTool {
        name: tool.name.to_string(),
        description: tool.description.as_deref().unwrap_or_default().to_string(),
        input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
        annotations,
        presentation: serde_json::json!({
            "title": tool.title,
            "annotations": tool.annotations,
            "outputSchema": tool.output_schema,
        }),
    }
}

/// A tool list (by identity) and the catalog digest it was found to match.
type VerifiedListing = (std::sync::Weak<Vec<Tool>>, u64);

/// The catalog service: one per process, shared by the API, the dashboard and the gateway.
#[derive(Clone)]
pub struct Catalog {
    store: Store,
    snapshot: Arc<SnapshotHandle>,
    upstreams: Arc<Upstreams>,
    audit: AuditSink,
    /// Serialises syncs so two listings of the same drift record it once.
    sync_lock: Arc<tokio::sync::Mutex<()>>,
    /// The last listing per connector found to match the catalog (by identity of the cached
    /// list and the catalog's digest), so repeated `tools/list` calls hash nothing.
    verified: Arc<std::sync::Mutex<std::collections::HashMap<String, VerifiedListing>>>,
    /// When each connector was last discovered on demand (from a call).
    on_demand: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

/// Least time between two discoveries `tools/list_changed` triggers for one connector.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Least time between two discoveries a call triggers for one connector.
const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(5);

impl Catalog {
    pub fn new(
        store: Store,
        snapshot: Arc<SnapshotHandle>,
        upstreams: Arc<Upstreams>,
        audit: AuditSink,
    ) -> Self {
        Catalog {
            store,
            snapshot,
            upstreams,
            audit,
            sync_lock: Arc::new(tokio::sync::Mutex::new(())),
            on_demand: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// A discovery asked for by a call (the connector's catalog is empty), at most once every
    /// few seconds per connector so unknown tool names cannot hammer the upstream.
    /// Returns the discovery's failure, if it was tried and failed.
    pub async fn discover_throttled(&self, connector_id: &str) -> Option<DiscoveryError> {
        {
            let mut last = self.on_demand.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            if last
                .get(connector_id)
                .is_some_and(|t| now.duration_since(*t) < ON_DEMAND_INTERVAL)
            {
                return None;
            }
            last.insert(connector_id.to_string(), now);
        }
        match self.discover(connector_id).await {
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(connector_id, error = %e, "on-demand tool discovery failed");
                Some(e)
            }
        }
    }

    /// Lists the connector's tools upstream now and records them in the catalog.
    pub async fn discover(&self, connector_id: &str) -> Result<CatalogSync, DiscoveryError> {
        self.discover_reviewed(connector_id, None).await
    }

    /// As `discover`; on the connector's first discovery only the definitions in `reviewed`
    /// (hashes an admin saw in the add wizard) are approved, anything else waits for review.
    pub async fn discover_reviewed(
        &self,
        connector_id: &str,
        reviewed: Option<&std::collections::HashSet<String>>,
    ) -> Result<CatalogSync, DiscoveryError> {
        let secrets = self.store.connector_with_secrets(connector_id).await?;
        let tools = self.upstreams.refresh_tools(&secrets).await?;
        Ok(self.record_reviewed(&secrets, &tools, reviewed).await?)
    }

    /// Whether a listing differs from what the snapshot's catalog holds (new, changed or
    /// vanished tools). No database round trip; a cached listing already checked against the
    /// same catalog is not hashed again.
    pub fn drifted(&self, connector: &str, tools: &Arc<Vec<Tool>>) -> bool {
        let snap = self.snapshot.get();
        let (Some(known), Some(digest)) =
            (snap.catalog_of(connector), snap.catalog_digest(connector))
        else {
            return false;
        };
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((list, d)) = verified.get(connector)
                && *d == digest
                && std::ptr::eq(list.as_ptr(), Arc::as_ptr(tools))
            {
                return false;
            }
        }
        let drifted = tools.len() != known.len()
            || tools.iter().any(|t| {
                known
                    .get(t.name.as_ref())
                    .is_none_or(|e| e.hash != discovered(t).hash())
            });
        if !drifted {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            verified.insert(connector.to_string(), (Arc::downgrade(tools), digest));
        }
        drifted
    }

    /// Records a listing in the catalog; on any change the change is audited and the snapshot
    /// rebuilt (every replica) before this returns.
    pub async fn record(
        &self,
        c: &ConnectorSecrets,
        tools: &[Tool],
    ) -> Result<CatalogSync, toolgate_domain::Error> {
        self.record_reviewed(c, tools, None).await
    }

    async fn record_reviewed(
        &self,
        c: &ConnectorSecrets,
        tools: &[Tool],
        reviewed: Option<&std::collections::HashSet<String>>,
    ) -> Result<CatalogSync, toolgate_domain::Error> {
        let _guard = self.sync_lock.lock().await;
        let found: Vec<DiscoveredTool> = tools.iter().map(discovered).collect();
        let sync = self
            .store
            .sync_catalog_reviewed(&c.connector.id, &found, reviewed)
            .await?;
        if sync.is_empty() {
            return Ok(sync);
        }
        tracing::info!(connector = %c.connector.name, initial = sync.initial, added = ?sync.added, changed = ?sync.changed, removed = ?sync.removed, "tool catalog changed");
        let event = NewAuditEvent {
            subject_kind: Some("system".into()),
            connector: Some(c.connector.name.clone()),
            decision: AuditDecision::Allow,
            outcome: Outcome::Ok,
            detail: serde_json::to_string(&sync).ok(),
            ..NewAuditEvent::new(self.store.clock().now(), "catalog.sync", "toolgate")
        };
        self.audit.record_after_the_fact(event).await;
        self.snapshot.publish().await?;
        Ok(sync)
    }

    /// Follows `tools/list_changed` from every upstream: each announcement leads to a discovery
    /// (announcements for one connector that arrive during a discovery are folded into it).
    pub fn spawn_change_follower(&self, shutdown: tokio_util::sync::CancellationToken) {
        let mut changes = self.upstreams.tool_changes();
        let this = self.clone();
        tokio::spawn(async move {
            let mut last: std::collections::HashMap<String, std::time::Instant> =
                std::collections::HashMap::new();
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    got = changes.recv() => match got {
                        Ok(id) => id,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                };
                // Let a burst of notifications settle, keeping every connector that announced.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut ids = std::collections::BTreeSet::from([first]);
                while let Ok(id) = changes.try_recv() {
                    ids.insert(id);
                }
                for id in ids {
                    // An upstream that flaps its tool list is discovered at most once a second.
                    if let Some(wait) = last
                        .get(&id)
                        .and_then(|t| FOLLOW_INTERVAL.checked_sub(t.elapsed()))
                    {
                        tokio::time::sleep(wait).await;
                    }
                    last.insert(id.clone(), std::time::Instant::now());
                    if let Err(e) = this.discover(&id).await {
                        tracing::warn!(connector_id = %id, error = %e, "discovery after tools/list_changed failed");
                    }
                }
            }
        });
    }

    /// Every connector with its live health (this replica) and catalog counts.
    pub async fn statuses(&self) -> toolgate_domain::Result<Vec<ConnectorStatus>> {
        let connectors = self.store.list_connectors().await?;
        let snap = self.snapshot.get();
        Ok(connectors
            .into_iter()
            .map(|c| self.status_of(&snap, c))
            .collect())
    }

    /// One connector's status.
    pub async fn status(&self, id_or_name: &str) -> toolgate_domain::Result<ConnectorStatus> {
        let c = self.store.find_connector(id_or_name).await?;
        Ok(self.status_of(&self.snapshot.get(), c))
    }

    fn status_of(
        &self,
        snap: &toolgate_domain::snapshot::Snapshot,
        c: toolgate_domain::model::Connector,
    ) -> ConnectorStatus {
        let (tools, to_review) = snap
            .catalog_of(&c.name)
            .map(|t| {
                (
                    t.len() as u32,
                    t.values()
                        .filter(|e| matches!(e.facts.review, Review::Pending | Review::Changed))
                        .count() as u32,
                )
            })
            .unwrap_or((0, 0));
        let mut health = self.upstreams.health(&c.id);
        if !c.enabled {
            health.status = "disabled".into();
        }
        ConnectorStatus {
            connector: c,
            health,
            tools,
            tools_to_review: to_review,
        }
    }

    /// Lists the tools of settings that are not saved yet (the add wizard's test), with the risk
    /// each would be given.
    pub async fn probe(&self, c: &ConnectorSecrets) -> Result<Vec<DiscoveredTool>, UpstreamError> {
        let tools = self.upstreams.probe(c).await?;
        Ok(tools.iter().map(discovered).collect())
    }
}
