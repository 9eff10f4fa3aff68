//! Test support: spawn the whole app on port 0, an rmcp upstream, and MCP clients.

#![allow(dead_code)]

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{
    ErrorData, RoleClient, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router,
};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use toolgate::RunningServer;
use toolgate::config::Config;
use toolgate_domain::model::TokenKind;

/// The app under test, with an admin token and an HTTP client.
pub struct TestApp {
    pub server: RunningServer,
    pub base: String,
    pub admin_token: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The app on SQLite in a temp folder.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/toolgate.db", dir.path().display());
    spawn_app_on(dir, url).await
}

/// The app on an isolated PostgreSQL schema.
pub async fn spawn_app_postgres() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
        .await
        .expect("pg schema");
    spawn_app_on(dir, url).await
}

/// Two replicas on one isolated PostgreSQL schema, sharing a master key and the public URL (A's)
/// as a deployment behind a load balancer does. Reach B itself at `http://{b.server.addr}`.
pub async fn spawn_replicas_postgres() -> (TestApp, TestApp) {
    spawn_replicas_postgres_with(None).await
}

/// [`spawn_replicas_postgres`], both replicas taking their time from `clock` when given (time
/// travel across replicas).
pub async fn spawn_replicas_postgres_with(
    clock: Option<Arc<toolgate_domain::clock::ManualClock>>,
) -> (TestApp, TestApp) {
    let url = toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
        .await
        .expect("pg schema");
    let key = toolgate_domain::crypto::MasterKey::generate().to_base64();
    let a = spawn_app_full(
        tempfile::tempdir().expect("tempdir"),
        url.clone(),
        |c| c.master_key = Some(key.clone()),
        clock.clone(),
    )
    .await;
    let public = a.base.clone();
    let b = spawn_app_full(
        tempfile::tempdir().expect("tempdir"),
        url,
        |c| {
            c.master_key = Some(key.clone());
            c.public_url = Some(public);
        },
        clock,
    )
    .await;
    (a, b)
}

/// For tests that run the server themselves (restart, shutdown): through the admin API of
/// `server`, a connector `connector` at `upstream_url`, a person in a group allowed `tool` on
/// it, and that person's personal token (returned).
pub async fn agent_allowed(
    server: &RunningServer,
    connector: &str,
    upstream_url: &str,
    tool: &str,
) -> String {
    let (_, admin) = server
        .state
        .store
        .create_token(TokenKind::Admin, "tests", None)
        .await
        .expect("admin token");
    let http = reqwest::Client::new();
    let base = &server.base_url;
    let send = |method: reqwest::Method, path: String, body: Value| {
        let req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body);
        async move {
            let r = req.send().await.expect("send");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.json::<Value>().await.unwrap_or(Value::Null)
        }
    };
    let post = reqwest::Method::POST;
    send(
        post.clone(),
        "/api/v1/connectors".into(),
        json!({"name": connector, "url": upstream_url, "transport": "streamable_http"}),
    )
    .await;
    let user = send(
        post.clone(),
        "/api/v1/users".into(),
        json!({"user_name": "agent-owner", "display_name": "Agent Owner"}),
    )
    .await;
    let group = send(
        post.clone(),
        "/api/v1/groups".into(),
        json!({"display_name": "agents"}),
    )
    .await;
    let (uid, gid) = (
        user["id"].as_str().expect("id"),
        group["id"].as_str().expect("id"),
    );
    send(
        reqwest::Method::PUT,
        format!("/api/v1/groups/{gid}/members/{uid}"),
        Value::Null,
    )
    .await;
    send(
        reqwest::Method::PUT,
        format!("/api/v1/groups/{gid}/policies/{connector}"),
        json!({"allow": [tool]}),
    )
    .await;
    send(
        post,
        format!("/api/v1/users/{uid}/tokens"),
        json!({"name": "agent"}),
    )
    .await["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// The app on SQLite with a configuration change.
pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/toolgate.db", dir.path().display());
    spawn_app_configured(dir, url, change).await
}

async fn spawn_app_on(dir: tempfile::TempDir, database_url: String) -> TestApp {
    spawn_app_configured(dir, database_url, |_| {}).await
}

/// The app on SQLite (or, with `postgres`, an isolated PostgreSQL schema) taking its time from
/// `clock`, for time-travel tests.
pub async fn spawn_app_clocked(
    clock: Arc<toolgate_domain::clock::ManualClock>,
    postgres: bool,
) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = if postgres {
        toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
            .await
            .expect("pg schema")
    } else {
        format!("sqlite://{}/toolgate.db", dir.path().display())
    };
    spawn_app_full(dir, url, |_| {}, Some(clock)).await
}

async fn spawn_app_configured(
    dir: tempfile::TempDir,
    database_url: String,
    change: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_app_full(dir, database_url, change, None).await
}

async fn spawn_app_full(
    dir: tempfile::TempDir,
    database_url: String,
    change: impl FnOnce(&mut Config),
    clock: Option<Arc<toolgate_domain::clock::ManualClock>>,
) -> TestApp {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        database_url,
        data_dir: dir.path().to_path_buf(),
        upstream_timeout_secs: 5,
        ..Config::default()
    };
    change(&mut config);
    let server = match clock {
        Some(c) => toolgate::start_with_clock(config, c).await,
        None => toolgate::start(config).await,
    }
    .expect("app starts");
    let (_, admin_token) = server
        .state
        .store
        .create_token(TokenKind::Admin, "tests", None)
        .await
        .expect("admin token");
    let base = server.base_url.clone();
    TestApp {
        server,
        base,
        admin_token,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

/// PostgreSQL for tests: `TOOLGATE_TEST_POSTGRES_URL`. Missing it is a failure, not a skip,
/// unless `TOOLGATE_TEST_SKIP_POSTGRES=1` says so explicitly.
pub fn postgres_base_url() -> String {
    std::env::var("TOOLGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set TOOLGATE_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) or TOOLGATE_TEST_SKIP_POSTGRES=1")
    })
}

pub fn skip_postgres() -> bool {
    std::env::var("TOOLGATE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An admin API request; returns status and JSON body (Null when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    pub async fn create_connector(&self, name: &str, url: &str) -> String {
        let (s, b) = self
            .post("/api/v1/connectors", json!({"name": name, "url": url, "transport": "streamable_http", "headers": {"X-Upstream-Key": "s3cret-value"}}))
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().expect("id").to_string()
    }

    pub async fn create_user(&self, user_name: &str) -> String {
        let (s, b) = self
            .post(
                "/api/v1/users",
                json!({"user_name": user_name, "display_name": user_name}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().expect("id").to_string()
    }

    pub async fn create_group(&self, name: &str) -> String {
        let (s, b) = self
            .post("/api/v1/groups", json!({"display_name": name}))
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().expect("id").to_string()
    }

    pub async fn add_member(&self, group: &str, user: &str) {
        let (s, b) = self
            .put(
                &format!("/api/v1/groups/{group}/members/{user}"),
                json!(null),
            )
            .await;
        assert_eq!(s, 204, "{b}");
    }

    pub async fn set_policy(&self, group: &str, connector: &str, allow: &[&str], block: &[&str]) {
        let (s, b) = self
            .put(
                &format!("/api/v1/groups/{group}/policies/{connector}"),
                json!({"allow": allow, "block": block}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }

    pub async fn personal_token(&self, user: &str) -> String {
        let (s, b) = self
            .post(
                &format!("/api/v1/users/{user}/tokens"),
                json!({"name": "agent"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["token"].as_str().expect("token").to_string()
    }

    /// An MCP client session through the gateway with `token`.
    pub async fn mcp_client(&self, token: &str) -> RunningService<RoleClient, ()> {
        mcp_client(&self.url("/mcp"), Some(token))
            .await
            .expect("mcp client connects")
    }
}

/// The User-Agent the tests' MCP clients send.
pub const TEST_USER_AGENT: &str = "toolgate-tests/1";

/// An MCP client over streamable HTTP.
pub async fn mcp_client(
    url: &str,
    token: Option<&str>,
) -> Result<RunningService<RoleClient, ()>, Box<rmcp::service::ClientInitializeError>> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(t) = token {
        cfg = cfg.auth_header(t);
    }
    let http = reqwest::Client::builder()
        .user_agent(TEST_USER_AGENT)
        .build()
        .expect("http client");
    let transport = StreamableHttpClientTransport::with_client(http, cfg);
    ().serve(transport).await.map_err(Box::new)
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    pub text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    pub a: i64,
    pub b: i64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct BranchArgs {
    pub name: String,
}

/// The upstream used in tests: a real rmcp server with a few tools.
#[derive(Clone)]
pub struct TestUpstream {
    tool_router: ToolRouter<Self>,
    /// Echoed back by `whoami` so tests see the headers the gateway sent.
    label: String,
}

#[tool_router]
impl TestUpstream {
    pub fn new(label: &str) -> Self {
        TestUpstream {
            tool_router: Self::tool_router(),
            label: label.to_string(),
        }
    }

    #[tool(description = "Echo the text back")]
    async fn echo(&self, Parameters(a): Parameters<EchoArgs>) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "{}: {}",
            self.label, a.text
        ))]))
    }

    #[tool(description = "Add two numbers")]
    async fn add(&self, Parameters(a): Parameters<AddArgs>) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::structured(json!({"sum": a.a + a.b})))
    }

    #[tool(description = "Delete a branch (destructive)")]
    async fn delete_branch(
        &self,
        Parameters(a): Parameters<BranchArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "deleted {}",
            a.name
        ))]))
    }

    #[tool(description = "Look up a record's owner (structured content)")]
    async fn lookup(
        &self,
        Parameters(a): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::structured(
            json!({"record": {"owner": {"contact": a.text}, "tags": ["a", a.text]}}),
        ))
    }

    #[tool(description = "Always fails as a tool error")]
    async fn fail(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text("it broke")]))
    }

    #[tool(description = "Report the X-Upstream-Key header the gateway sent")]
    async fn whoami(
        &self,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<
            http::request::Parts,
        >,
    ) -> Result<CallToolResult, ErrorData> {
        let key = parts
            .headers
            .get("x-upstream-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        Ok(CallToolResult::success(vec![ContentBlock::text(
            key.to_string(),
        )]))
    }
}

/// Resources the test upstream offers: one public, one private.
pub const PUBLIC_DOC: &str = "file:///public/readme.md";
pub const PRIVATE_DOC: &str = "file:///private/salaries.csv";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TestUpstream {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _ctx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        Ok(rmcp::model::ListResourcesResult::with_all_items(vec![
            rmcp::model::Resource::new(PUBLIC_DOC, "readme"),
            rmcp::model::Resource::new(PRIVATE_DOC, "salaries"),
        ]))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _ctx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let text = match request.uri.as_str() {
            PUBLIC_DOC => format!("{}: public readme", self.label),
            PRIVATE_DOC => "alice,100000".to_string(),
            _ => return Err(ErrorData::resource_not_found("no such resource", None)),
        };
        Ok(
            rmcp::model::ReadResourceResult::new(vec![rmcp::model::ResourceContents::text(
                text,
                request.uri,
            )])
            .into(),
        )
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _ctx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        Ok(rmcp::model::ListPromptsResult::with_all_items(vec![
            rmcp::model::Prompt::new("summarise", Some("Summarise a text"), None),
            rmcp::model::Prompt::new("internal_review", Some("Internal only"), None),
        ]))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _ctx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        Ok(
            rmcp::model::GetPromptResult::new(vec![rmcp::model::PromptMessage::new_text(
                rmcp::model::Role::User,
                format!("{}: prompt {}", self.label, request.name),
            )])
            .into(),
        )
    }
}

/// A running upstream; `stop()` makes it unreachable.
pub struct Upstream {
    pub url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

pub async fn spawn_upstream(label: &str) -> Upstream {
    let stop = CancellationToken::new();
    let label = label.to_string();
    let service = StreamableHttpService::new(
        move || Ok(TestUpstream::new(&label)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token()),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled_owned().await })
            .await;
    });
    Upstream {
        url: format!("http://{addr}/mcp"),
        stop,
        task,
    }
}

/// A URL where nothing listens.
pub async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}/mcp")
}

/// Text of the first content block.
pub fn first_text(r: &CallToolResult) -> String {
    r.content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// An initialized MCP session (initialize + initialized) at `{base}/mcp` with `token`; its id.
pub async fn raw_session_at(http: &reqwest::Client, base: &str, token: &str) -> String {
    let url = format!("{base}/mcp");
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}});
    let res = http
        .post(&url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = res.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = res.text().await;
    let res = http
        .post(&url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    session
}

/// The app on `database_url` as given (a proxy in front of PostgreSQL, a file another connection
/// also opens), with a configuration change.
pub async fn spawn_app_at(database_url: String, change: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_full(
        tempfile::tempdir().expect("tempdir"),
        database_url,
        change,
        None,
    )
    .await
}

/// A dashboard session for `user` as a sign-in leaves it (stored through the server's own
/// session store); the `Cookie` header value that carries it over plain HTTP.
pub async fn dashboard_cookie(app: &TestApp, user: &toolgate_app::auth::DashboardUser) -> String {
    use tower_sessions::SessionStore;
    let store = toolgate::web::session_store::DbSessionStore::new(app.server.state.store.clone());
    let mut data = std::collections::HashMap::new();
    data.insert(
        toolgate_app::auth::SESSION_USER_KEY.to_string(),
        serde_json::to_value(user).expect("user"),
    );
    let mut record = tower_sessions::session::Record {
        id: tower_sessions::session::Id::default(),
        data,
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.expect("session stored");
    format!("toolgate_session={}", record.id)
}

/// A dashboard server function `/fn/{name}` called as the dashboard's own forms call it (form
/// body, this site's `Origin`) with `cookie` (may be empty); status and body text.
pub async fn server_fn(
    app: &TestApp,
    cookie: &str,
    name: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().copied())
        .finish();
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(app.url(&format!("/fn/{name}")))
        .header("origin", app.base.clone())
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("server function request");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}
