//! Connections to upstream MCP servers (connectors): one shared client per connector, opened on
//! first use, reopened when the connector's settings change or its transport fails; tool lists
//! cached until the upstream says they changed.

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    GetPromptRequestParams, GetPromptResult, Implementation, Prompt, ReadResourceRequestParams,
    ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use rmcp::service::{NotificationContext, Peer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use toolgate_domain::model::ConnectorHealth;
use toolgate_domain::store::ConnectorSecrets;

/// Why an upstream could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream could not be reached or the connection broke.
    #[error("connector \"{0}\" is unreachable")]
    Unreachable(String),
    /// The upstream did not answer in time.
    #[error("connector \"{0}\" did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The upstream answered with a JSON-RPC error; passed on to the caller as is.
    #[error("{0}")]
    Rpc(rmcp::ErrorData),
    /// Headers or URL of the connector could not be used.
    #[error("connector \"{0}\" is misconfigured: {1}")]
    Misconfigured(String, String),
}

/// Client side handler: notes `tools/list_changed` so the next list refetches, and tells the
/// catalog (through `Upstreams::tool_changes`) so it can look for new or changed tools.
#[derive(Clone)]
struct UpstreamClient {
    connector_id: String,
    tools_stale: Arc<AtomicBool>,
    changes: tokio::sync::broadcast::Sender<String>,
}

impl ClientHandler for UpstreamClient {
    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.tools_stale.store(true, Ordering::SeqCst);
        let _ = self.changes.send(self.connector_id.clone());
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("toolgate", env!("CARGO_PKG_VERSION")),
        )
    }
}

struct Live {
    /// `updated_at` of the connector settings this connection was opened with.
    version: i64,
    service: RunningService<RoleClient, UpstreamClient>,
    tools_stale: Arc<AtomicBool>,
    tools: Option<Arc<Vec<Tool>>>,
}

#[derive(Default)]
struct Slot {
    live: tokio::sync::Mutex<Option<Live>>,
}

/// The pool of upstream connections, keyed by connector id.
pub struct Upstreams {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    health: Mutex<HashMap<String, ConnectorHealth>>,
    changes: tokio::sync::broadcast::Sender<String>,
    http: reqwest::Client,
    call_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl Upstreams {
    pub fn new(call_timeout: Duration) -> Self {
        let connect_timeout = call_timeout.min(Duration::from_secs(10));
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            // Why: credentials are attached per connector; never follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Upstreams {
            slots: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            changes: tokio::sync::broadcast::Sender::new(256),
            http,
            call_timeout,
            connect_timeout,
        }
    }

    fn slot(&self, connector_id: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(connector_id.to_string()).or_default().clone()
    }

    /// Closes and forgets connections of connectors that are gone or disabled.
    pub async fn retain(&self, keep: &[String]) {
        let dropped: Vec<Arc<Slot>> = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<String> = slots
                .keys()
                .filter(|k| !keep.contains(k))
                .cloned()
                .collect();
            gone.into_iter().filter_map(|k| slots.remove(&k)).collect()
        };
        for slot in dropped {
            if let Some(mut live) = slot.live.lock().await.take() {
                let _ = live
                    .service
                    .close_with_timeout(Duration::from_secs(1))
                    .await;
            }
        }
    }

    async fn connect(&self, c: &ConnectorSecrets) -> Result<Live, UpstreamError> {
        let name = &c.connector.name;
        let mut headers = HashMap::new();
        for (k, v) in &c.headers {
            let k = http::HeaderName::try_from(k.as_str()).map_err(|_| {
                UpstreamError::Misconfigured(name.clone(), format!("bad header name {k:?}"))
            })?;
            let v = http::HeaderValue::try_from(v.as_str()).map_err(|_| {
                UpstreamError::Misconfigured(name.clone(), "bad header value".into())
            })?;
            headers.insert(k, v);
        }
        let cfg = StreamableHttpClientTransportConfig::with_uri(c.connector.url.as_str())
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), cfg);
        let tools_stale = Arc::new(AtomicBool::new(true));
        let handler = UpstreamClient {
            connector_id: c.connector.id.clone(),
            tools_stale: tools_stale.clone(),
            changes: self.changes.clone(),
        };
        let service = tokio::time::timeout(self.connect_timeout, handler.serve(transport))
            .await
            .map_err(|_| UpstreamError::Timeout(name.clone(), self.connect_timeout))?
            .map_err(|e| {
                tracing::warn!(connector = %name, error = %e, "upstream connect failed");
                UpstreamError::Unreachable(name.clone())
            })?;
        tracing::info!(connector = %name, url = %c.connector.url, "upstream connected");
        Ok(Live {
            version: c.connector.updated_at.timestamp_millis(),
            service,
            tools_stale,
            tools: None,
        })
    }

    /// A peer for the connector, connecting if needed.
    async fn peer(&self, c: &ConnectorSecrets) -> Result<Peer<RoleClient>, UpstreamError> {
        let slot = self.slot(&c.connector.id);
        let mut live = slot.live.lock().await;
        let version = c.connector.updated_at.timestamp_millis();
        let usable = live
            .as_ref()
            .is_some_and(|l| l.version == version && !l.service.is_transport_closed());
        if !usable {
            *live = Some(self.connect(c).await?);
        }
        live.as_ref()
            .map(|l| l.service.peer().clone())
            .ok_or_else(|| UpstreamError::Unreachable(c.connector.name.clone()))
    }

    /// Forgets a connection after a transport failure so the next use reconnects.
    async fn invalidate(&self, c: &ConnectorSecrets) {
        let slot = self.slot(&c.connector.id);
        if let Some(mut l) = slot.live.lock().await.take() {
            let _ = l
                .service
                .close_with_timeout(Duration::from_millis(200))
                .await;
        }
    }

    /// The connector's tools (cached until `tools/list_changed` or reconnect).
    pub async fn tools(&self, c: &ConnectorSecrets) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        let peer = self.peer(c).await?;
        let slot = self.slot(&c.connector.id);
        {
            let live = slot.live.lock().await;
            if let Some(l) = live.as_ref()
                && let (Some(t), false) = (&l.tools, l.tools_stale.load(Ordering::SeqCst))
            {
                return Ok(t.clone());
            }
        }
        let listed = tokio::time::timeout(self.call_timeout, peer.list_all_tools()).await;
        let tools = match listed {
            Ok(Ok(t)) => Arc::new(t),
            Ok(Err(e)) => return Err(self.fail(c, e).await),
            Err(_) => {
                return Err(UpstreamError::Timeout(
                    c.connector.name.clone(),
                    self.call_timeout,
                ));
            }
        };
        let mut live = slot.live.lock().await;
        if let Some(l) = live.as_mut() {
            l.tools_stale.store(false, Ordering::SeqCst);
            l.tools = Some(tools.clone());
        }
        Ok(tools)
    }

    /// Calls a tool upstream, within the call timeout.
    pub async fn call(
        &self,
        c: &ConnectorSecrets,
        params: CallToolRequestParams,
    ) -> Result<CallToolResult, UpstreamError> {
        let peer = self.peer(c).await?;
        match tokio::time::timeout(self.call_timeout, peer.call_tool(params)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.fail(c, e).await),
            Err(_) => Err(UpstreamError::Timeout(
                c.connector.name.clone(),
                self.call_timeout,
            )),
        }
    }

    /// The connector's tools, fetched now (the cache is refreshed too).
    pub async fn refresh_tools(
        &self,
        c: &ConnectorSecrets,
    ) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        let slot = self.slot(&c.connector.id);
        if let Some(l) = slot.live.lock().await.as_ref() {
            l.tools_stale.store(true, Ordering::SeqCst);
        }
        self.tools(c).await
    }

    /// Connects with settings that are not saved yet, lists the tools and disconnects (the add
    /// wizard's "test connection").
    pub async fn probe(&self, c: &ConnectorSecrets) -> Result<Vec<Tool>, UpstreamError> {
        let mut live = self.connect(c).await?;
        let listed =
            tokio::time::timeout(self.call_timeout, live.service.peer().list_all_tools()).await;
        let _ = live
            .service
            .close_with_timeout(Duration::from_millis(500))
            .await;
        match listed {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(ServiceError::McpError(e))) => Err(UpstreamError::Rpc(e)),
            Ok(Err(_)) => Err(UpstreamError::Unreachable(c.connector.name.clone())),
            Err(_) => Err(UpstreamError::Timeout(
                c.connector.name.clone(),
                self.call_timeout,
            )),
        }
    }

    /// Runs one request on the connector's shared client, within the call timeout.
    async fn request<T, F, Fut>(&self, c: &ConnectorSecrets, f: F) -> Result<T, UpstreamError>
    where
        F: FnOnce(Peer<RoleClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let peer = self.peer(c).await?;
        match tokio::time::timeout(self.call_timeout, f(peer)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.fail(c, e).await),
            Err(_) => Err(UpstreamError::Timeout(
                c.connector.name.clone(),
                self.call_timeout,
            )),
        }
    }

    /// The connector's resources.
    pub async fn list_resources(
        &self,
        c: &ConnectorSecrets,
    ) -> Result<Vec<Resource>, UpstreamError> {
        self.request(c, |p| async move { p.list_all_resources().await })
            .await
    }

    /// The connector's resource templates.
    pub async fn list_resource_templates(
        &self,
        c: &ConnectorSecrets,
    ) -> Result<Vec<ResourceTemplate>, UpstreamError> {
        self.request(c, |p| async move { p.list_all_resource_templates().await })
            .await
    }

    /// Reads one resource.
    pub async fn read_resource(
        &self,
        c: &ConnectorSecrets,
        params: ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, UpstreamError> {
        self.request(c, |p| async move { p.read_resource(params).await })
            .await
    }

    /// The connector's prompts.
    pub async fn list_prompts(&self, c: &ConnectorSecrets) -> Result<Vec<Prompt>, UpstreamError> {
        self.request(c, |p| async move { p.list_all_prompts().await })
            .await
    }

    /// Gets one prompt.
    pub async fn get_prompt(
        &self,
        c: &ConnectorSecrets,
        params: GetPromptRequestParams,
    ) -> Result<GetPromptResult, UpstreamError> {
        self.request(c, |p| async move { p.get_prompt(params).await })
            .await
    }

    /// Connector ids whose upstream announced `tools/list_changed`.
    pub fn tool_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// How a connector looks from this replica.
    pub fn health(&self, connector_id: &str) -> ConnectorHealth {
        let map = self.health.lock().unwrap_or_else(|e| e.into_inner());
        map.get(connector_id)
            .cloned()
            .unwrap_or_else(|| ConnectorHealth {
                status: "unknown".into(),
                ..ConnectorHealth::default()
            })
    }

    async fn fail(&self, c: &ConnectorSecrets, e: ServiceError) -> UpstreamError {
        match e {
            ServiceError::McpError(data) => UpstreamError::Rpc(data),
            other => {
                tracing::warn!(connector = %c.connector.name, error = %other, "upstream transport failed");
                self.invalidate(c).await;
                UpstreamError::Unreachable(c.connector.name.clone())
            }
        }
    }
}
