//! Connections to upstream MCP servers (connectors): one shared client per connector over
//! streamable HTTP, legacy HTTP+SSE (`sse`) or a spawned command (`stdio`), opened on first use
//! and reopened when the settings change, the transport fails or the OAuth token nears expiry.
//! Every request runs within the connector's timeout and concurrency limit and counts towards its
//! health; after a connection failure calls fail fast for a backoff window (`health`). Every
//! transport refuses answers over the response size limit (`fault`). Tool lists are cached until
//! the upstream says they changed.

mod fault;
mod health;
mod oauth;
pub mod sse;
mod stdio;
mod streamable;

pub use health::UPSTREAM_HEALTH;

use fault::Fault;
use health::{Failure, HealthBook};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ClientJsonRpcMessage,
    ClientRequest, GetPromptRequestParams, GetPromptResult, Implementation, PingRequest, Prompt,
    ReadResourceRequestParams, ReadResourceResult, Resource, ResourceTemplate,
    ServerJsonRpcMessage, Tool,
};
use rmcp::service::{ClientInitializeError, NotificationContext, Peer, RunningService};
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use toolgate_domain::model::{ConnectorHealth, Transport as Kind};
use toolgate_domain::snapshot::SnapshotHandle;
use toolgate_domain::store::ConnectorSecrets;

/// Why an upstream could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream could not be reached (connector, cause).
    #[error("connector \"{0}\" is unreachable: {1}")]
    Unreachable(String, String),
    /// The connection broke, or the answer broke off or was not JSON-RPC (connector, cause).
    #[error("connector \"{0}\" failed: {1}")]
    Failed(String, String),
    /// The answer was larger than `upstream_max_response_bytes` (connector, limit).
    #[error("the answer of connector \"{0}\" exceeds the {1}-byte limit")]
    TooLarge(String, usize),
    /// The upstream did not answer in time.
    #[error("connector \"{0}\" did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The upstream answered with a JSON-RPC error; passed on to the caller as is.
    #[error("{0}")]
    Rpc(rmcp::ErrorData),
    /// Headers, URL or command of the connector could not be used.
    #[error("connector \"{0}\" is misconfigured: {1}")]
    Misconfigured(String, String),
    /// A recent connection failure: calls fail fast until the backoff window has passed.
    #[error(
        "connector \"{connector}\" is unhealthy (last error: {last_error}); retrying in {} s",
        whole_seconds(*retry_in)
    )]
    Unhealthy {
        connector: String,
        last_error: String,
        retry_in: Duration,
    },
    /// All of the connector's `max_concurrency` slots stayed taken for its whole timeout.
    #[error("connector \"{0}\" is busy")]
    Busy(String),
    /// The OAuth token endpoint did not issue a token.
    #[error("connector \"{0}\" could not get an access token: {1}")]
    Credentials(String, String),
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl UpstreamError {
    /// What the health record keeps: the cause without the connector's name.
    fn reason(&self) -> String {
        match self {
            UpstreamError::Misconfigured(_, why) => format!("misconfigured: {why}"),
            UpstreamError::Credentials(_, why) => format!("could not get an access token: {why}"),
            UpstreamError::Timeout(_, d) => format!("no answer within {d:?}"),
            UpstreamError::Unreachable(_, why) => format!("unreachable: {why}"),
            UpstreamError::Failed(_, why) => why.clone(),
            UpstreamError::TooLarge(_, max) => format!("an answer exceeded the {max}-byte limit"),
            other => other.to_string(),
        }
    }
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

/// A transport that reports when the upstream closes it by itself (a crashed child, a dropped
/// event stream), so the failure is counted when it happens rather than at the next call.
struct Watched<T> {
    inner: T,
    on_close: Option<Box<dyn FnOnce() + Send>>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Watched<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inner.receive().await;
        if message.is_none()
            && let Some(closed) = self.on_close.take()
        {
            closed();
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// An open connection.
struct Live {
    /// Process-unique number of this connection.
    seq: u64,
    /// `updated_at` of the connector settings it was opened with.
    version: i64,
    service: RunningService<RoleClient, UpstreamClient>,
    /// When its OAuth token must be replaced (by reconnecting).
    refresh_at: Option<Instant>,
}

impl Live {
    fn usable(&self, version: i64) -> bool {
        self.version == version
            && !self.service.is_transport_closed()
            && self.refresh_at.is_none_or(|t| t > Instant::now())
    }
}

/// Tools as listed on connection `seq` with settings `version`.
struct ToolList {
    version: i64,
    seq: u64,
    tools: Arc<Vec<Tool>>,
}

/// One connector's connection, limit and tool cache.
#[derive(Default)]
struct Slot {
    live: tokio::sync::Mutex<Option<Live>>,
    /// `seq` of the open connection (0: none). A failure is counted by whoever clears it, so a
    /// broken connection counts once, and one closed on purpose not at all.
    open_seq: AtomicU64,
    tools_stale: Arc<AtomicBool>,
    tools: Mutex<Option<ToolList>>,
    /// One upstream `tools/list` at a time: concurrent cache misses (many sessions listing right
    /// after a start or a change) wait for the one in flight instead of each asking.
    listing: tokio::sync::Mutex<()>,
    limit: Mutex<Option<(u32, Arc<Semaphore>)>>,
}

impl Slot {
    fn semaphore(&self, max: u32) -> Arc<Semaphore> {
        let mut limit = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        match limit.as_ref() {
            Some((m, s)) if *m == max => s.clone(),
            _ => {
                let s = Arc::new(Semaphore::new(max.max(1) as usize));
                *limit = Some((max, s.clone()));
                s
            }
        }
    }

    /// Drops connection `seq` after it failed, so the next use reconnects.
    async fn drop_connection(&self, seq: u64) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|l| l.seq == seq)
            && let Some(old) = live.take()
        {
            retire(old, Duration::ZERO);
        }
    }

    /// Clears `seq` if it is still the open connection; true if this caller did.
    fn clear(&self, seq: u64) -> bool {
        seq != 0
            && self
                .open_seq
                .compare_exchange(seq, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }
}

/// A connect that failed: the caller's error, the cause for the health record, and whether
/// the upstream refused the credentials (a new OAuth token may help).
struct ConnectFailure {
    error: UpstreamError,
    reason: String,
    unauthorized: bool,
}

impl From<UpstreamError> for ConnectFailure {
    fn from(error: UpstreamError) -> Self {
        ConnectFailure {
            reason: error.reason(),
            error,
            unauthorized: false,
        }
    }
}

/// The pool of upstream connections, keyed by connector id.
pub struct Upstreams {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    health: Arc<HealthBook>,
    tokens: oauth::TokenCache,
    changes: tokio::sync::broadcast::Sender<String>,
    http: reqwest::Client,
    /// Used for connectors without a timeout of their own.
    default_timeout: Duration,
    /// Largest answer (one JSON body, SSE event or stdio line) accepted from an upstream.
    max_response_bytes: usize,
    next_seq: AtomicU64,
}

/// `upstream_max_response_bytes` unless configured otherwise.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("default_timeout", &self.default_timeout)
            .finish()
    }
}

impl Upstreams {
    /// `call_timeout` applies to connectors without a `timeout_ms` of their own.
    pub fn new(call_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(call_timeout.min(Duration::from_secs(10)))
            // Why: credentials are attached per connector; never follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            // A burst of concurrent calls opens many connections; keep a bounded few for reuse.
            .pool_max_idle_per_host(32)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Upstreams {
            slots: Mutex::new(HashMap::new()),
            health: Arc::default(),
            tokens: oauth::TokenCache::default(),
            changes: tokio::sync::broadcast::Sender::new(256),
            http,
            default_timeout: call_timeout,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            next_seq: AtomicU64::new(1),
        }
    }

    /// Refuses answers larger than `bytes` (one JSON body, SSE event or stdio line): the caller
    /// gets an error naming the limit, and no more than that is ever buffered.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    fn slot(&self, connector_id: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(connector_id.to_string()).or_default().clone()
    }

    fn timeout_of(&self, c: &ConnectorSecrets) -> Duration {
        match c.connector.timeout_ms {
            0 => self.default_timeout,
            ms => Duration::from_millis(ms),
        }
    }

    /// Closes connections (killing stdio children) of connectors that are gone or disabled, and
    /// forgets their health and tokens.
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
        self.health.retain(keep);
        self.tokens.retain(keep);
        for slot in dropped {
            slot.open_seq.store(0, Ordering::SeqCst);
            if let Some(mut live) = slot.live.lock().await.take() {
                let _ = live
                    .service
                    .close_with_timeout(Duration::from_secs(3))
                    .await;
            }
        }
    }

    /// The connector's headers (and OAuth bearer) for HTTP transports.
    fn headers(&self, c: &ConnectorSecrets) -> Result<http::HeaderMap, UpstreamError> {
        let name = &c.connector.name;
        let mut headers = http::HeaderMap::new();
        for (k, v) in &c.headers {
            let k = http::HeaderName::try_from(k.as_str()).map_err(|_| {
                UpstreamError::Misconfigured(name.clone(), format!("bad header name {k:?}"))
            })?;
            let mut v = http::HeaderValue::try_from(v.as_str()).map_err(|_| {
                UpstreamError::Misconfigured(name.clone(), format!("bad value of header {k}"))
            })?;
            v.set_sensitive(true);
            headers.insert(k, v);
        }
        Ok(headers)
    }

    /// Opens a connection with the connector's settings. `cache_token`: use and fill the token
    /// cache (not for settings that are not saved yet). Also says whether the token is new.
    async fn connect(
        &self,
        c: &ConnectorSecrets,
        slot: &Arc<Slot>,
        cache_token: bool,
    ) -> Result<(Live, bool), ConnectFailure> {
        let name = &c.connector.name;
        let limit = self.timeout_of(c);
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let handler = UpstreamClient {
            connector_id: c.connector.id.clone(),
            tools_stale: slot.tools_stale.clone(),
            changes: self.changes.clone(),
        };
        let on_close = {
            let slot = slot.clone();
            let health = self.health.clone();
            let connector = c.connector.clone();
            let why = match c.connector.transport {
                Kind::Stdio => "the process exited",
                _ => "unreachable: the upstream closed the connection",
            };
            let noticed: Box<dyn FnOnce() + Send> = Box::new(move || {
                if slot.clear(seq) {
                    health.failure(&connector, why, Failure::Broken);
                }
            });
            Some(noticed)
        };
        let opened = async {
            let mut fresh = false;
            let mut refresh_at = None;
            let service = match c.connector.transport {
                Kind::Stdio => {
                    let (transport, pid) =
                        stdio::spawn(c, self.max_response_bytes).map_err(|e| {
                            let command = c.connector.command.as_deref().unwrap_or_default();
                            ConnectFailure::from(UpstreamError::Misconfigured(
                                name.clone(),
                                format!("could not start {command:?}: {e}"),
                            ))
                        })?;
                    tracing::info!(connector = %name, pid = ?pid, "upstream command started");
                    serve(
                        name,
                        handler,
                        Watched {
                            inner: transport,
                            on_close,
                        },
                    )
                    .await?
                }
                Kind::StreamableHttp | Kind::Sse => {
                    let mut headers = self.headers(c)?;
                    let mut bearer = None;
                    if c.connector.oauth.is_some() {
                        let (token, is_new) = if cache_token {
                            self.tokens.token(&self.http, c).await?
                        } else {
                            (oauth::fetch(&self.http, c).await?, true)
                        };
                        fresh = is_new;
                        refresh_at = Some(token.refresh_at);
                        bearer = Some(token.value);
                    }
                    if c.connector.transport == Kind::Sse {
                        if let Some(token) = &bearer {
                            let mut v = http::HeaderValue::try_from(format!("Bearer {token}"))
                                .map_err(|_| {
                                    UpstreamError::Credentials(
                                        name.clone(),
                                        "the access token is not a valid header value".into(),
                                    )
                                })?;
                            v.set_sensitive(true);
                            headers.insert(http::header::AUTHORIZATION, v);
                        }
                        let transport = sse::connect(
                            &self.http,
                            &c.connector.url,
                            headers,
                            limit,
                            self.max_response_bytes,
                        )
                        .await
                        .map_err(|e| ConnectFailure {
                            unauthorized: matches!(e, sse::SseError::Unauthorized),
                            reason: match e {
                                sse::SseError::Http(_) => format!("unreachable: {e}"),
                                _ => e.to_string(),
                            },
                            error: UpstreamError::Unreachable(name.clone(), e.to_string()),
                        })?;
                        serve(
                            name,
                            handler,
                            Watched {
                                inner: transport,
                                on_close,
                            },
                        )
                        .await?
                    } else {
                        if bearer.is_some() {
                            // The OAuth token replaces a stored Authorization header.
                            headers.remove(http::header::AUTHORIZATION);
                        }
                        let mut cfg =
                            StreamableHttpClientTransportConfig::with_uri(c.connector.url.as_str())
                                .custom_headers(
                                    headers
                                        .into_iter()
                                        .filter_map(|(k, v)| Some((k?, v)))
                                        .collect(),
                                )
                                .max_json_response_size(self.max_response_bytes)
                                .max_sse_event_size(self.max_response_bytes);
                        // rmcp's own POST limit must not be tighter than the connector's.
                        cfg.max_concurrent_requests = c.connector.max_concurrency as usize + 1;
                        if let Some(token) = bearer {
                            cfg = cfg.auth_header(token);
                        }
                        let client = streamable::CappedHttp {
                            http: self.http.clone(),
                            max: self.max_response_bytes,
                        };
                        let transport = StreamableHttpClientTransport::with_client(client, cfg);
                        serve(
                            name,
                            handler,
                            Watched {
                                inner: transport,
                                on_close,
                            },
                        )
                        .await?
                    }
                }
            };
            Ok::<_, ConnectFailure>((service, fresh, refresh_at))
        };
        let (service, fresh, refresh_at) = tokio::time::timeout(limit, opened)
            .await
            .map_err(|_| ConnectFailure::from(UpstreamError::Timeout(name.clone(), limit)))??;
        tracing::info!(connector = %name, transport = c.connector.transport.as_str(), "upstream connected");
        Ok((
            Live {
                seq,
                version: c.connector.updated_at.timestamp_millis(),
                service,
                refresh_at,
            },
            fresh,
        ))
    }

    /// A peer for the connector, connecting if needed (unless its breaker is open). Returns the
    /// connection's `seq` and whether its OAuth token was fetched just now.
    async fn peer(
        &self,
        c: &ConnectorSecrets,
        slot: &Arc<Slot>,
    ) -> Result<(Peer<RoleClient>, u64, bool), UpstreamError> {
        let mut live = slot.live.lock().await;
        let version = c.connector.updated_at.timestamp_millis();
        if let Some(l) = live.as_ref().filter(|l| l.usable(version)) {
            return Ok((l.service.peer().clone(), l.seq, false));
        }
        if let Some(old) = live.take() {
            // Replaced on purpose (new settings or token) or already counted when it closed.
            slot.clear(old.seq);
            // Requests still running on it may finish, unless its settings are outdated.
            let grace = if old.version == version {
                self.timeout_of(c).min(Duration::from_secs(60))
            } else {
                Duration::ZERO
            };
            retire(old, grace);
        }
        self.health.check(&c.connector)?;
        let mut retried = false;
        loop {
            match self.connect(c, slot, true).await {
                Ok((l, fresh)) => {
                    let answer = (l.service.peer().clone(), l.seq, fresh);
                    slot.open_seq.store(l.seq, Ordering::SeqCst);
                    *live = Some(l);
                    return Ok(answer);
                }
                Err(f) if f.unauthorized && c.connector.oauth.is_some() && !retried => {
                    // The cached token was refused (revoked, rotated): fetch a new one, once.
                    self.tokens.invalidate(&c.connector.id);
                    retried = true;
                }
                Err(f) => {
                    self.health
                        .failure(&c.connector, &f.reason, Failure::Broken);
                    return Err(f.error);
                }
            }
        }
    }

    /// After a request timed out: pings the upstream in the background. One slow tool leaves the
    /// connection as it is; no answer at all means a hung upstream, which breaks the connection
    /// (calls then fail fast for the backoff window instead of each waiting out the timeout).
    fn check_alive(
        &self,
        c: &ConnectorSecrets,
        slot: &Arc<Slot>,
        seq: u64,
        peer: Peer<RoleClient>,
    ) {
        let slot = slot.clone();
        let health = self.health.clone();
        let connector = c.connector.clone();
        let limit = self.timeout_of(c);
        tokio::spawn(async move {
            let answered = matches!(
                tokio::time::timeout(limit, ping(peer)).await,
                Ok(Ok(())) | Ok(Err(ServiceError::McpError(_)))
            );
            if !answered && slot.clear(seq) {
                let why = format!("no answer to a ping within {limit:?} after a request timed out");
                health.failure(&connector, &why, Failure::Broken);
                slot.drop_connection(seq).await;
            }
        });
    }

    /// Waits up to `wait` for one of the connector's concurrency slots.
    async fn permit(
        &self,
        c: &ConnectorSecrets,
        slot: &Slot,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, UpstreamError> {
        let semaphore = slot.semaphore(c.connector.max_concurrency);
        match tokio::time::timeout(wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(UpstreamError::Busy(c.connector.name.clone())),
        }
    }

    /// Runs one request on the connection (connecting if needed) within `budget`, and records
    /// the outcome in the connector's health. A 401 with a cached OAuth token gets one retry
    /// with a new token. Returns the result and the connection's `seq`.
    async fn attempt<T, F, Fut>(
        &self,
        c: &ConnectorSecrets,
        slot: &Arc<Slot>,
        budget: Duration,
        on_timeout: Failure,
        f: &F,
    ) -> Result<(T, u64), UpstreamError>
    where
        F: Fn(Peer<RoleClient>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let name = &c.connector.name;
        let mut retried = false;
        loop {
            let (peer, seq, fresh_token) = self.peer(c, slot).await?;
            match tokio::time::timeout(budget, f(peer.clone())).await {
                Ok(Ok(r)) => {
                    self.health.success(&c.connector);
                    return Ok((r, seq));
                }
                Ok(Err(ServiceError::McpError(e))) => {
                    if let Some(error) = answer_failed(c, &e) {
                        // The answer failed, not the connection: it stays.
                        self.health
                            .failure(&c.connector, &error.reason(), Failure::Slow);
                        return Err(error);
                    }
                    // It answered: the upstream is fine, the request was not.
                    self.health.success(&c.connector);
                    return Err(UpstreamError::Rpc(e));
                }
                Ok(Err(e)) => {
                    let first = slot.clear(seq);
                    slot.drop_connection(seq).await;
                    if unauthorized(&e) && c.connector.oauth.is_some() && !fresh_token && !retried {
                        tracing::info!(connector = %name, "upstream refused the access token; fetching a new one");
                        self.tokens.invalidate(&c.connector.id);
                        retried = true;
                        continue;
                    }
                    let error = connection_failed(c, &e);
                    if first {
                        self.health
                            .failure(&c.connector, &error.reason(), Failure::Broken);
                    }
                    return Err(error);
                }
                Err(_) => {
                    let error = UpstreamError::Timeout(name.clone(), self.timeout_of(c));
                    self.health
                        .failure(&c.connector, &error.reason(), on_timeout);
                    match on_timeout {
                        Failure::Broken => {
                            if slot.clear(seq) {
                                slot.drop_connection(seq).await;
                            }
                        }
                        Failure::Slow => self.check_alive(c, slot, seq, peer),
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Runs one request within the connector's concurrency limit and timeout (waiting for a
    /// slot counts against the timeout).
    async fn run<T, F, Fut>(&self, c: &ConnectorSecrets, f: F) -> Result<(T, u64), UpstreamError>
    where
        F: Fn(Peer<RoleClient>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let limit = self.timeout_of(c);
        let started = Instant::now();
        let slot = self.slot(&c.connector.id);
        let _permit = self.permit(c, &slot, limit).await?;
        let budget = limit.saturating_sub(started.elapsed());
        self.attempt(c, &slot, budget, Failure::Slow, &f).await
    }

    /// The connector's tools (cached until `tools/list_changed`, reconnect or new settings).
    pub async fn tools(&self, c: &ConnectorSecrets) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        let slot = self.slot(&c.connector.id);
        let version = c.connector.updated_at.timestamp_millis();
        let cached = |slot: &Slot| {
            let cached = slot.tools.lock().unwrap_or_else(|e| e.into_inner());
            cached
                .as_ref()
                .filter(|list| {
                    list.version == version
                        && list.seq == slot.open_seq.load(Ordering::SeqCst)
                        && !slot.tools_stale.load(Ordering::SeqCst)
                })
                .map(|list| list.tools.clone())
        };
        if let Some(tools) = cached(&slot) {
            return Ok(tools);
        }
        let _listing = slot.listing.lock().await;
        // Filled by the listing this caller waited for?
        if let Some(tools) = cached(&slot) {
            return Ok(tools);
        }
        // Cleared before listing: a change announced meanwhile leaves it set for the next call.
        slot.tools_stale.store(false, Ordering::SeqCst);
        let (tools, seq) = self
            .run(c, |p| async move { p.list_all_tools().await })
            .await?;
        let tools = Arc::new(tools);
        *slot.tools.lock().unwrap_or_else(|e| e.into_inner()) = Some(ToolList {
            version,
            seq,
            tools: tools.clone(),
        });
        Ok(tools)
    }

    /// Calls a tool upstream.
    pub async fn call(
        &self,
        c: &ConnectorSecrets,
        params: CallToolRequestParams,
    ) -> Result<CallToolResult, UpstreamError> {
        self.request(c, |p| {
            let params = params.clone();
            async move { p.call_tool(params).await }
        })
        .await
    }

    /// The connector's tools, fetched now (the cache is refreshed too).
    pub async fn refresh_tools(
        &self,
        c: &ConnectorSecrets,
    ) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        self.slot(&c.connector.id)
            .tools_stale
            .store(true, Ordering::SeqCst);
        self.tools(c).await
    }

    /// Connects with settings that are not saved yet, lists the tools and disconnects (the add
    /// wizard's "test connection"). Health and the token cache are left alone.
    pub async fn probe(&self, c: &ConnectorSecrets) -> Result<Vec<Tool>, UpstreamError> {
        let limit = self.timeout_of(c);
        let slot = Arc::new(Slot::default());
        let (mut live, _) = self.connect(c, &slot, false).await.map_err(|f| {
            tracing::info!(connector = %c.connector.name, reason = %f.reason, "probe failed");
            f.error
        })?;
        let listed = tokio::time::timeout(limit, live.service.peer().list_all_tools()).await;
        let _ = live
            .service
            .close_with_timeout(Duration::from_secs(3))
            .await;
        match listed {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(ServiceError::McpError(e))) => {
                Err(answer_failed(c, &e).unwrap_or(UpstreamError::Rpc(e)))
            }
            Ok(Err(e)) => Err(connection_failed(c, &e)),
            Err(_) => Err(UpstreamError::Timeout(c.connector.name.clone(), limit)),
        }
    }

    /// Pings the upstream (connecting if needed, which restarts a dead stdio command) and
    /// records the outcome. A connector whose slots are all taken is not pinged: its calls speak
    /// for its health.
    pub async fn ping(&self, c: &ConnectorSecrets) -> Result<(), UpstreamError> {
        let slot = self.slot(&c.connector.id);
        let Ok(_permit) = slot
            .semaphore(c.connector.max_concurrency)
            .try_acquire_owned()
        else {
            return Ok(());
        };
        // A ping that gets no answer means a hung upstream: that breaks the connection.
        self.attempt(c, &slot, self.timeout_of(c), Failure::Broken, &ping)
            .await
            .map(|_| ())
    }

    /// Every `every`, pings each enabled connector of the snapshot (and closes connections of
    /// connectors no longer enabled, for changes made on other replicas), until `shutdown`;
    /// then closes every connection.
    pub fn spawn_health_checks(
        self: Arc<Self>,
        snapshot: Arc<SnapshotHandle>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let snap = snapshot.get();
                let enabled: Vec<Arc<ConnectorSecrets>> =
                    snap.enabled_connectors().cloned().collect();
                let ids: Vec<String> = enabled.iter().map(|c| c.connector.id.clone()).collect();
                self.retain(&ids).await;
                let pings = futures::future::join_all(enabled.iter().map(|c| self.ping(c)));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = pings => {}
                }
            }
            self.retain(&[]).await;
        });
    }

    /// Runs one request on the connector's shared client.
    async fn request<T, F, Fut>(&self, c: &ConnectorSecrets, f: F) -> Result<T, UpstreamError>
    where
        F: Fn(Peer<RoleClient>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        self.run(c, f).await.map(|(r, _)| r)
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
        self.request(c, |p| {
            let params = params.clone();
            async move { p.read_resource(params).await }
        })
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
        self.request(c, |p| {
            let params = params.clone();
            async move { p.get_prompt(params).await }
        })
        .await
    }

    /// Connector ids whose upstream announced `tools/list_changed`.
    pub fn tool_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// How a connector looks from this replica.
    pub fn health(&self, connector_id: &str) -> ConnectorHealth {
        self.health.get(connector_id)
    }
}

/// An MCP `ping` request.
async fn ping(peer: Peer<RoleClient>) -> Result<(), ServiceError> {
    peer.send_request(ClientRequest::PingRequest(PingRequest::default()))
        .await
        .map(|_| ())
}

/// Runs the MCP handshake over `transport`.
async fn serve<T>(
    name: &str,
    handler: UpstreamClient,
    transport: Watched<T>,
) -> Result<RunningService<RoleClient, UpstreamClient>, ConnectFailure>
where
    T: Transport<RoleClient> + 'static,
{
    handler.serve(transport).await.map_err(|e| ConnectFailure {
        unauthorized: e.auth_challenge().is_some()
            || matches!(&e, ClientInitializeError::TransportError { error, .. } if says_unauthorized(error)),
        reason: format!("unreachable: {}", describe_init(&e)),
        error: UpstreamError::Unreachable(name.to_string(), describe_init(&e)),
    })
}

/// Closes a connection that is no longer used, after `grace` (requests still running on it,
/// e.g. when only its OAuth token is being replaced, may finish).
fn retire(mut old: Live, grace: Duration) {
    tokio::spawn(async move {
        if !grace.is_zero() {
            tokio::time::sleep(grace).await;
        }
        let _ = old.service.close_with_timeout(Duration::from_secs(3)).await;
    });
}

/// Whether an error says the upstream refused the credentials (HTTP 401).
fn says_unauthorized(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<AuthRequiredError>()
            || matches!(
                e.downcast_ref::<sse::SseError>(),
                Some(sse::SseError::Unauthorized)
            )
        {
            return true;
        }
        if let Some(h) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            match h {
                StreamableHttpError::AuthRequired(_) => return true,
                // An unchallenged 401 arrives as an unexpected response.
                StreamableHttpError::UnexpectedServerResponse(text) => {
                    return text.starts_with("HTTP 401");
                }
                _ => {}
            }
        }
        current = e.source();
    }
    false
}

fn unauthorized(e: &ServiceError) -> bool {
    e.is_authorization_required() || says_unauthorized(e)
}

/// A failure in words an admin can act on: the cause, without URLs, headers or tokens.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return describe_reqwest(r);
        }
        if let Some(s) = e.downcast_ref::<sse::SseError>() {
            return s.to_string();
        }
        if let Some(h) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            return match h {
                StreamableHttpError::Client(r) => describe_reqwest(r),
                StreamableHttpError::AuthRequired(_) => {
                    "the upstream answered HTTP 401 (unauthorized)".into()
                }
                other => other.to_string(),
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.to_string();
        }
        current = e.source();
    }
    err.to_string()
}

/// What went wrong with an HTTP request, with the underlying I/O cause (connection refused...).
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_body() || e.is_decode() {
        "the response broke off"
    } else if let Some(s) = e.status() {
        return format!("the upstream answered HTTP {}", s.as_u16());
    } else {
        "the request failed"
    };
    let mut cause = None;
    let mut current = e.source();
    while let Some(s) = current {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            cause = Some(io.to_string());
        }
        current = s.source();
    }
    match cause {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_string(),
    }
}

/// The failure a transport reported in place of an answer (too large, broken off), or rmcp's
/// note that an answer stream closed before its answer; `None` for the upstream's own errors.
fn answer_failed(c: &ConnectorSecrets, e: &rmcp::ErrorData) -> Option<UpstreamError> {
    let name = c.connector.name.clone();
    match Fault::of(e) {
        Some(Fault::TooLarge(max)) => Some(UpstreamError::TooLarge(name, max)),
        Some(Fault::Broken(why)) => Some(UpstreamError::Failed(name, why)),
        // rmcp's own marker (its token cannot be checked from here; a forged one only turns the
        // upstream's error into this one).
        None if e
            .data
            .as_ref()
            .is_some_and(|d| d.get("io.modelcontextprotocol/transportClosed").is_some()) =>
        {
            Some(UpstreamError::Failed(
                name,
                "the answer's stream closed before the answer".into(),
            ))
        }
        None => None,
    }
}

/// The error for a request whose connection failed: unreachable when it could not be made,
/// else what broke.
fn connection_failed(c: &ConnectorSecrets, e: &ServiceError) -> UpstreamError {
    let name = c.connector.name.clone();
    match e {
        ServiceError::TransportClosed => UpstreamError::Failed(
            name,
            match c.connector.transport {
                Kind::Stdio => "the process exited",
                _ => "the upstream closed the connection",
            }
            .into(),
        ),
        ServiceError::TransportSend(d) if could_not_connect(d) => {
            UpstreamError::Unreachable(name, describe(d))
        }
        other => UpstreamError::Failed(name, describe_service(other)),
    }
}

/// Whether an error says the connection could not be made (refused, no route, DNS).
fn could_not_connect(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        let reqwest = e.downcast_ref::<reqwest::Error>().or_else(|| {
            match e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
                Some(StreamableHttpError::Client(r)) => Some(r),
                _ => None,
            }
        });
        if let Some(r) = reqwest {
            return r.is_connect();
        }
        if let Some(sse::SseError::Http(r)) = e.downcast_ref::<sse::SseError>() {
            return r.is_connect();
        }
        current = e.source();
    }
    false
}

fn describe_service(e: &ServiceError) -> String {
    match e {
        ServiceError::TransportSend(d) => describe(d),
        ServiceError::TransportClosed => "the connection closed".into(),
        other => other.to_string(),
    }
}

fn describe_init(e: &ClientInitializeError) -> String {
    match e {
        ClientInitializeError::TransportError { error, .. } => describe(error),
        ClientInitializeError::ConnectionClosed(_) => {
            "the upstream closed the connection during the MCP handshake".into()
        }
        ClientInitializeError::JsonRpcError(data) if Fault::of(data).is_some() => {
            format!("the MCP handshake failed: {}", data.message)
        }
        ClientInitializeError::JsonRpcError(data) => {
            format!("the upstream refused the MCP handshake: {}", data.message)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_domain::model::Connector;

    fn secrets(max_concurrency: u32) -> ConnectorSecrets {
        let at = chrono::Utc::now();
        ConnectorSecrets {
            connector: Connector {
                id: "c1".into(),
                name: "one".into(),
                transport: Kind::StreamableHttp,
                url: "http://127.0.0.1:9/mcp".into(),
                command: None,
                args: vec![],
                header_names: vec![],
                env_names: vec![],
                oauth: None,
                timeout_ms: 1000,
                max_concurrency,
                enabled: true,
                created_at: at,
                updated_at: at,
            },
            headers: Default::default(),
            env: Default::default(),
            oauth_client_secret: None,
        }
    }

    #[tokio::test]
    async fn a_full_connector_is_busy_once_the_wait_runs_out() {
        let upstreams = Upstreams::new(Duration::from_secs(1));
        let c = secrets(1);
        let slot = upstreams.slot("c1");
        let held = upstreams
            .permit(&c, &slot, Duration::from_millis(10))
            .await
            .expect("a free slot");
        let started = Instant::now();
        let err = upstreams
            .permit(&c, &slot, Duration::from_millis(200))
            .await
            .expect_err("no slot while the only one is taken");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(err.to_string(), "connector \"one\" is busy");
        // A waiter gets the slot as soon as it is released.
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move {
                let upstreams = Upstreams::new(Duration::from_secs(1));
                upstreams
                    .permit(&secrets(1), &slot, Duration::from_secs(5))
                    .await
                    .is_ok()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiter.await.unwrap());
        // A new limit takes effect for the next request.
        assert_eq!(slot.semaphore(3).available_permits(), 3);
    }

    /// An upstream whose `tools/list` is slow and counted.
    #[derive(Clone)]
    struct SlowLister(Arc<std::sync::atomic::AtomicUsize>);

    impl rmcp::ServerHandler for SlowLister {
        fn get_info(&self) -> rmcp::model::ServerConfig {
            rmcp::model::ServerConfig::new(
                rmcp::model::ServerCapabilities::builder()
                    .enable_tools()
                    .build(),
            )
        }

        async fn list_tools(
            &self,
            _request: Option<rmcp::model::PaginatedRequestParams>,
            _context: rmcp::service::RequestContext<rmcp::RoleServer>,
        ) -> Result<rmcp::model::ListToolsResult, rmcp::ErrorData> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            let schema = Arc::new(serde_json::Map::new());
            Ok(rmcp::model::ListToolsResult::with_all_items(vec![
                Tool::new("only", "the one tool", schema),
            ]))
        }
    }

    #[tokio::test]
    async fn concurrent_cache_misses_share_one_upstream_listing() {
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        use rmcp::transport::streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService,
        };
        let lists = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = lists.clone();
        let service = StreamableHttpService::new(
            move || Ok(SlowLister(counted.clone())),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, axum::Router::new().route_service("/mcp", service)).await;
        });
        let mut c = secrets(64);
        c.connector.url = format!("http://{addr}/mcp");
        c.connector.timeout_ms = 10_000;
        let upstreams = Arc::new(Upstreams::new(Duration::from_secs(10)));
        let calls = (0..20).map(|_| {
            let (u, c) = (upstreams.clone(), c.clone());
            tokio::spawn(async move { u.tools(&c).await })
        });
        for listed in futures::future::join_all(calls).await {
            let tools = listed.expect("task").expect("tools");
            assert_eq!(tools.len(), 1);
        }
        assert_eq!(lists.load(Ordering::SeqCst), 1, "one listing for 20 misses");
        // Served from the cache, until a refresh asks again (once).
        upstreams.tools(&c).await.expect("cached");
        assert_eq!(lists.load(Ordering::SeqCst), 1);
        upstreams.refresh_tools(&c).await.expect("refreshed");
        assert_eq!(lists.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn unhealthy_names_the_last_error_and_the_wait_in_whole_seconds() {
        let e = UpstreamError::Unhealthy {
            connector: "x".into(),
            last_error: "unreachable: could not connect".into(),
            retry_in: Duration::from_millis(3200),
        };
        assert_eq!(
            e.to_string(),
            "connector \"x\" is unhealthy (last error: unreachable: could not connect); retrying in 4 s"
        );
        assert_eq!(
            UpstreamError::Credentials("x".into(), "nope".into()).reason(),
            "could not get an access token: nope"
        );
    }
}
