//! Database faults under load: SQLite write-locked by another connection, PostgreSQL "restarted"
//! (a TCP proxy drops every connection and refuses new ones). Requests wait or fail closed, no
//! call reaches an upstream without its audit event, and everything recovers without a restart.

use crate::common::{
    TestApp, agent_allowed, mcp_client, postgres_base_url, skip_postgres, spawn_app_at,
    spawn_app_with,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use toolgate_domain::model::{Outcome, TokenKind};
use toolgate_domain::store::{
    PostgresTableLock, SqliteWriteLock, Store, drop_postgres_database, isolated_postgres_database,
};

/// The JSON-RPC code of "the audit log is unavailable" (`AUDIT_UNAVAILABLE` in the gateway).
const AUDIT_UNAVAILABLE: i32 = -32002;
/// SQLite's busy timeout in the store is 5 s: a lock held this long makes waiting writers give up.
const LONGER_THAN_BUSY_TIMEOUT: Duration = Duration::from_secs(7);
/// The audit writer gives a batch 10 s; an append hung this long has made it give up.
const HUNG_FOR: Duration = Duration::from_secs(13);

// ---------------------------------------------------------------------------------------------
// An upstream that remembers every call it received.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct TextArg {
    text: String,
}

#[derive(Clone)]
struct Recorder {
    tool_router: ToolRouter<Self>,
    seen: Arc<Mutex<Vec<String>>>,
}

#[tool_router]
impl Recorder {
    #[tool(description = "Echo the text back")]
    async fn echo(&self, Parameters(a): Parameters<TextArg>) -> Result<CallToolResult, ErrorData> {
        self.seen.lock().unwrap().push(a.text.clone());
        Ok(CallToolResult::success(vec![ContentBlock::text(a.text)]))
    }

    #[tool(description = "Answer pong")]
    async fn ping(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text("pong")]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Recorder {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
    }
}

struct RecordingUpstream {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn spawn_recorder() -> RecordingUpstream {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(Recorder {
                tool_router: Recorder::tool_router(),
                seen: s.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    RecordingUpstream {
        url: format!("http://{addr}/mcp"),
        seen,
    }
}

// ---------------------------------------------------------------------------------------------
// Agents calling in a loop.

/// How one tool call ended for the caller.
#[derive(Clone, Debug, PartialEq)]
enum CallEnd {
    Answered,
    /// JSON-RPC error -32002 with its message.
    AuditUnavailable(String),
    Other(String),
}

type Agent = Arc<RunningService<RoleClient, ()>>;

async fn call(client: &Agent, tool: &str, text: &str) -> CallEnd {
    let call = CallToolRequestParams::new(tool.to_string())
        .with_arguments(json!({ "text": text }).as_object().cloned().unwrap());
    match tokio::time::timeout(Duration::from_secs(15), client.call_tool(call)).await {
        Err(_) => CallEnd::Other("no answer within 15 s".into()),
        Ok(Ok(r)) if r.is_error != Some(true) => CallEnd::Answered,
        Ok(Ok(r)) => CallEnd::Other(format!("tool error: {r:?}")),
        Ok(Err(rmcp::ServiceError::McpError(e))) if e.code.0 == AUDIT_UNAVAILABLE => {
            CallEnd::AuditUnavailable(e.message.to_string())
        }
        Ok(Err(e)) => CallEnd::Other(e.to_string()),
    }
}

async fn connect_agents(app: &TestApp, token: &str, n: usize) -> Vec<Agent> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(
            mcp_client(&app.url("/mcp"), Some(token)).await.unwrap(),
        ));
    }
    out
}

/// Agents calling `up__echo` one call after the other until stopped; every call's text is unique.
struct Load {
    stop: Arc<AtomicBool>,
    ends: Arc<Mutex<Vec<(String, CallEnd)>>>,
    /// When each refusal reached the caller.
    refused_at: Arc<Mutex<Vec<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(agents: &[Agent], label: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ends: Arc<Mutex<Vec<(String, CallEnd)>>> = Arc::default();
        let refused_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let tasks = agents
            .iter()
            .enumerate()
            .map(|(a, client)| {
                let (client, stop, ends) = (client.clone(), stop.clone(), ends.clone());
                let refused_at = refused_at.clone();
                let label = label.to_string();
                tokio::spawn(async move {
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let text = format!("{label}-{a}-{i}");
                        let end = call(&client, "up__echo", &text).await;
                        if matches!(end, CallEnd::AuditUnavailable(_)) {
                            refused_at.lock().unwrap().push(Instant::now());
                        }
                        ends.lock().unwrap().push((text, end));
                    }
                })
            })
            .collect();
        Load {
            stop,
            ends,
            refused_at,
            tasks,
        }
    }

    /// Calls refused between `from` and `to`.
    fn refused_between(&self, from: Instant, to: Instant) -> usize {
        let at = self.refused_at.lock().unwrap();
        at.iter().filter(|t| **t >= from && **t < to).count()
    }

    fn answered(&self) -> usize {
        let ends = self.ends.lock().unwrap();
        ends.iter().filter(|(_, e)| *e == CallEnd::Answered).count()
    }

    /// Stops the agents after their current call; every call's end.
    async fn stop(self) -> Vec<(String, CallEnd)> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.ends.lock().unwrap().clone()
    }
}

/// Every call ended as answered or refused for the audit log's sake (never anything unclear), at
/// least one of them answered; how many were refused.
fn answered_or_refused(ends: &[(String, CallEnd)]) -> usize {
    let unclear: Vec<_> = ends
        .iter()
        .filter(|(_, e)| matches!(e, CallEnd::Other(_)))
        .collect();
    assert!(unclear.is_empty(), "calls ended unclearly: {unclear:?}");
    for (text, end) in ends {
        if let CallEnd::AuditUnavailable(m) = end {
            assert!(m.contains("audit log is unavailable"), "{text}: {m}");
        }
    }
    assert!(ends.iter().any(|(_, e)| *e == CallEnd::Answered));
    ends.iter()
        .filter(|(_, e)| matches!(e, CallEnd::AuditUnavailable(_)))
        .count()
}

/// The audit promise, checked against what the upstream received: nothing reached it without a
/// durable `tool_call` event, every answered call has both its events, a refused call never
/// reached it, and the chain verifies.
async fn audit_matches(store: &Store, seen: &[String], ends: &[(String, CallEnd)]) {
    let events = store.audit_events_after(0, 100_000).await.unwrap();
    let call_event = |text: &str| {
        let needle = format!("\"{text}\"");
        events.iter().find(|e| {
            e.kind == "tool_call"
                && e.outcome == Outcome::Forwarded
                && e.args_redacted
                    .as_deref()
                    .is_some_and(|a| a.contains(&needle))
        })
    };
    for text in seen {
        assert!(
            call_event(text).is_some(),
            "the upstream received {text} but no tool_call event was written"
        );
    }
    for (text, end) in ends {
        match end {
            CallEnd::Answered => {
                let ev = call_event(text)
                    .unwrap_or_else(|| panic!("answered call {text} has no tool_call event"));
                assert!(
                    events
                        .iter()
                        .any(|e| e.kind == "tool_result" && e.call_id == ev.call_id),
                    "answered call {text} has no tool_result event"
                );
            }
            CallEnd::AuditUnavailable(m) if m.contains("call was refused") => assert!(
                !seen.contains(text),
                "{text} was refused to the caller but reached the upstream"
            ),
            _ => {}
        }
    }
    let report = store.verify_audit_chain(None, None).await.unwrap();
    assert!(report.first_break.is_none(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// Polls `check` until it holds, at most `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    match req.timeout(Duration::from_secs(15)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(e) => panic!("no answer: {e}"),
    }
}

async fn scim_token(app: &TestApp) -> String {
    app.server
        .state
        .store
        .create_token(TokenKind::Scim, "entra", None)
        .await
        .unwrap()
        .1
}

fn scim_create_user(app: &TestApp, token: &str, user_name: &str) -> reqwest::RequestBuilder {
    app.http
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(token)
        .header("content-type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "active": true,
                "displayName": user_name,
            })
            .to_string(),
        )
}

async fn scim_user_count(app: &TestApp, token: &str, user_name: &str) -> u64 {
    let res = app
        .http
        .get(app.url(&format!(
            "/scim/v2/Users?filter=userName%20eq%20%22{user_name}%22"
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["totalResults"]
        .as_u64()
        .unwrap()
}

fn admin_create_group(app: &TestApp, name: &str) -> reqwest::RequestBuilder {
    app.http
        .post(app.url("/api/v1/groups"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "display_name": name }))
}

async fn group_exists(app: &TestApp, name: &str) -> bool {
    let (s, groups) = app.get("/api/v1/groups").await;
    assert_eq!(s, 200, "{groups}");
    groups
        .as_array()
        .unwrap_or_else(|| panic!("group list: {groups}"))
        .iter()
        .any(|g| g["display_name"] == name)
}

async fn readyz(app: &TestApp) -> Option<u16> {
    app.http
        .get(app.url("/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

// ---------------------------------------------------------------------------------------------
// SQLite: another connection holds the write lock.

/// While another connection holds SQLite's write lock, tool calls, admin and SCIM writes wait
/// (busy timeout) and succeed when the lock is short; when it outlasts the busy timeout they fail
/// closed (tool calls refused with -32002, never forwarded; writes answered 5xx and not applied).
/// Once the lock is gone everything works again, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_write_lock_is_waited_out_or_fails_closed_then_recovers() {
    let up = spawn_recorder().await;
    let app = spawn_app_with(|_| {}).await;
    let token = agent_allowed(&app.server, "up", &up.url, "echo").await;
    let scim = scim_token(&app).await;
    let db = app.server.state.config.database_url.clone();
    // Sessions are opened (a database write) before the lock.
    let agents = connect_agents(&app, &token, 3).await;
    let mut ends = Vec::new();

    // A lock shorter than the busy timeout: everything waits, then succeeds.
    let lock = SqliteWriteLock::acquire(&db).await.unwrap();
    let load = Load::start(&agents, "short");
    let admin = tokio::spawn(status_of(admin_create_group(&app, "short-lock")));
    let provisioned = tokio::spawn(status_of(scim_create_user(&app, &scim, "short-lock")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // If a write could finish now, the lock would not be in force and the test would prove nothing.
    assert!(
        !admin.is_finished() && !provisioned.is_finished() && load.answered() == 0,
        "a write completed while the database was locked"
    );
    lock.release().await.unwrap();
    assert_eq!(admin.await.unwrap(), 201, "admin write during a short lock");
    assert_eq!(
        provisioned.await.unwrap(),
        201,
        "SCIM write during a short lock"
    );
    let short = load.stop().await;
    assert!(
        short.iter().all(|(_, e)| *e == CallEnd::Answered),
        "a call failed although the lock was shorter than the busy timeout: {short:?}"
    );
    assert!(group_exists(&app, "short-lock").await);
    assert_eq!(scim_user_count(&app, &scim, "short-lock").await, 1);
    ends.extend(short);

    // A lock longer than the busy timeout: what cannot wait any more fails closed.
    let lock = SqliteWriteLock::acquire(&db).await.unwrap();
    let load = Load::start(&agents, "long");
    let admin = tokio::spawn(status_of(admin_create_group(&app, "long-lock")));
    let provisioned = tokio::spawn(status_of(scim_create_user(&app, &scim, "long-lock")));
    tokio::time::sleep(LONGER_THAN_BUSY_TIMEOUT).await;
    lock.release().await.unwrap();
    let (admin, provisioned) = (admin.await.unwrap(), provisioned.await.unwrap());
    let long = load.stop().await;
    // 503 (with Retry-After): busy, not broken; Entra retries it.
    assert_eq!(
        admin, 503,
        "admin write answered {admin} after the lock outlasted the busy timeout"
    );
    assert_eq!(
        provisioned, 503,
        "SCIM write answered {provisioned} after the lock outlasted the busy timeout"
    );
    let refused = answered_or_refused(&long);
    assert!(refused > 0, "no call was refused: {long:?}");
    // A write that was answered with an error left nothing behind.
    assert!(!group_exists(&app, "long-lock").await);
    assert_eq!(scim_user_count(&app, &scim, "long-lock").await, 0);
    ends.extend(long);

    // No restart: calls, admin and SCIM writes work again at once.
    let after = call(&agents[0], "up__echo", "after-lock").await;
    assert_eq!(after, CallEnd::Answered);
    ends.push(("after-lock".into(), after));
    assert_eq!(status_of(admin_create_group(&app, "after-lock")).await, 201);
    assert_eq!(
        status_of(scim_create_user(&app, &scim, "after-lock")).await,
        201
    );
    assert_eq!(readyz(&app).await, Some(200));

    let seen = up.seen.lock().unwrap().clone();
    audit_matches(&app.server.state.store, &seen, &ends).await;
    eprintln!(
        "{} calls, {refused} refused during the long lock; {} reached the upstream",
        ends.len(),
        seen.len()
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a TCP proxy that can stall, drop and refuse connections.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Open,
    /// Bytes stop flowing (a server that hangs); connections stay open.
    Stalled,
    /// Every connection is dropped and nothing listens (connection refused).
    Down,
}

struct PgProxy {
    /// The database URL with the proxy's address.
    url: String,
    link: watch::Sender<Link>,
}

impl PgProxy {
    async fn start(direct: &str) -> Self {
        let mut url = reqwest::Url::parse(direct).unwrap();
        let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(addr.port())).unwrap();
        let (link, rx) = watch::channel(Link::Open);
        tokio::spawn(accept_loop(listener, addr, target, rx));
        PgProxy {
            url: url.to_string(),
            link,
        }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    // Listening again on the same port right after the "restart".
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(128).unwrap()
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    target: String,
    mut link: watch::Receiver<Link>,
) {
    let mut listener = Some(listener);
    loop {
        match listener.take() {
            None => {
                while *link.borrow_and_update() == Link::Down {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
                listener = Some(bind(addr));
            }
            Some(l) => {
                tokio::select! {
                    accepted = l.accept() => {
                        if let Ok((client, _)) = accepted {
                            tokio::spawn(pipe(client, target.clone(), link.clone()));
                        }
                        listener = Some(l);
                    }
                    changed = link.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if *link.borrow_and_update() != Link::Down {
                            listener = Some(l);
                        }
                    }
                }
            }
        }
    }
}

async fn pipe(mut client: TcpStream, target: String, mut link: watch::Receiver<Link>) {
    let Ok(mut server) = TcpStream::connect(&target).await else {
        return;
    };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let now = *link.borrow_and_update();
        match now {
            Link::Down => return,
            Link::Stalled => {
                if link.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Link::Open => {}
        }
        tokio::select! {
            r = cr.read(&mut up) => match r {
                Ok(n) if n > 0 => if sw.write_all(&up[..n]).await.is_err() { return },
                _ => return,
            },
            r = sr.read(&mut down) => match r {
                Ok(n) if n > 0 => if cw.write_all(&down[..n]).await.is_err() { return },
                _ => return,
            },
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}

/// PostgreSQL under load: an audit append that hangs (table locked elsewhere) gets calls refused
/// with -32002 after 10 s instead of holding them; then the database stops answering and
/// "restarts" (replica A's connections stall, are dropped, new ones refused for 2.5 s): calls fail
/// closed and none reaches the upstream without its event, `/readyz` says not ready meanwhile,
/// and afterwards A is ready again within seconds without a restart, having caught up with what
/// replica B changed meanwhile; calls, admin writes and B's live changes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_load_fails_closed_and_recovers_without_a_restart() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    // A database of its own: the audit chain's advisory lock, held up below, is per database.
    let direct = isolated_postgres_database(&postgres_base_url())
        .await
        .unwrap();
    let proxy = PgProxy::start(&direct).await;
    let key = toolgate_domain::crypto::MasterKey::generate().to_base64();
    let a = spawn_app_at(proxy.url.clone(), |c| {
        c.master_key = Some(key.clone());
        c.audit_checkpoint_secs = 1;
    })
    .await;
    let public = a.base.clone();
    let b = spawn_app_at(direct.clone(), |c| {
        c.master_key = Some(key.clone());
        c.public_url = Some(public);
    })
    .await;
    let up = spawn_recorder().await;
    let token = agent_allowed(&a.server, "up", &up.url, "echo").await;
    within(Duration::from_secs(5), "A ready", || async {
        readyz(&a).await == Some(200)
    })
    .await;
    let agents = connect_agents(&a, &token, 4).await;
    let load = Load::start(&agents, "pg");
    within(Duration::from_secs(10), "calls flowing", || async {
        load.answered() >= 20
    })
    .await;

    // An append that never completes (the audit table locked by a stuck transaction elsewhere):
    // calls are not held with it; the audit writer gives up after 10 s and they are refused.
    let lock = PostgresTableLock::acquire(&direct, "audit_events")
        .await
        .unwrap();
    let hung = Instant::now();
    tokio::time::sleep(HUNG_FOR).await;
    assert!(
        load.refused_between(hung, Instant::now()) > 0,
        "no call was refused within {HUNG_FOR:?} of the audit log hanging"
    );
    lock.release().await.unwrap();

    // The database stops answering (connections stay open, nothing comes back): /readyz says so
    // in time for an orchestrator's probe instead of hanging with it.
    proxy.set(Link::Stalled);
    let stalled = Instant::now();
    let mut probes = Vec::new();
    while stalled.elapsed() < Duration::from_secs(3) {
        probes.push(readyz(&a).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        probes.iter().all(|p| *p == Some(503)),
        "/readyz while the database did not answer: {probes:?}"
    );

    // Then it restarts: every connection drops and nothing listens for 2.5 s. Meanwhile replica
    // B (which reaches the database directly) allows another tool: A cannot hear of it.
    proxy.set(Link::Down);
    let down = Instant::now();
    // B itself (its `base` is the shared public URL, A's).
    let b_url = |path: &str| format!("http://{}{path}", b.server.addr);
    let groups: Value = b
        .http
        .get(b_url("/api/v1/groups"))
        .bearer_auth(&b.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gid = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["display_name"] == "agents")
        .expect("the agents' group")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = |allow: Value| {
        let req = b
            .http
            .put(b_url(&format!("/api/v1/groups/{gid}/policies/up")))
            .bearer_auth(&b.admin_token)
            .json(&json!({ "allow": allow }));
        async move { assert_eq!(status_of(req).await, 200) }
    };
    policy(json!(["echo", "ping"])).await;
    let mut probes = Vec::new();
    while down.elapsed() < Duration::from_millis(2500) {
        probes.push(readyz(&a).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !probes.is_empty() && probes.iter().all(|p| *p == Some(503)),
        "/readyz while the database was unreachable: {probes:?}"
    );
    proxy.set(Link::Open);

    // No restart: A is ready again within seconds, and once it says so it has caught up with
    // what B changed while A was cut off.
    within(Duration::from_secs(10), "A ready again", || async {
        readyz(&a).await == Some(200)
    })
    .await;
    let pinger = agents[0].clone();
    assert_eq!(
        call(&pinger, "up__ping", "x").await,
        CallEnd::Answered,
        "A said ready without the change B made during the outage"
    );
    let answered_before = load.answered();
    within(Duration::from_secs(10), "calls answered again", || async {
        load.answered() > answered_before
    })
    .await;
    assert_eq!(
        status_of(admin_create_group(&a, "after-restart")).await,
        201
    );
    // And B's changes reach A live again (LISTEN/NOTIFY).
    policy(json!(["echo"])).await;
    within(
        Duration::from_secs(5),
        "B's policy change seen on A",
        || {
            let pinger = pinger.clone();
            async move {
                let e = call(&pinger, "up__ping", "x").await;
                e != CallEnd::Answered
            }
        },
    )
    .await;
    let ends = load.stop().await;

    let refused = answered_or_refused(&ends);
    assert!(refused > 0, "no call in flight at the restart was refused");
    let seen = up.seen.lock().unwrap().clone();
    audit_matches(&a.server.state.store, &seen, &ends).await;
    // The integrity check A runs every second covers the whole log and finds it intact.
    let last = a
        .server
        .state
        .store
        .audit_events_after(0, 100_000)
        .await
        .unwrap()
        .last()
        .map(|e| e.id)
        .unwrap();
    within(
        Duration::from_secs(10),
        "integrity check up to date",
        || async {
            let (s, status) = a.get("/api/v1/audit/integrity").await;
            assert_eq!(s, 200, "{status}");
            assert!(status["integrity"]["break_id"].is_null(), "{status}");
            status["integrity"]["ok"] == true
                && status["integrity"]["verified_to"].as_i64() >= Some(last)
        },
    )
    .await;
    eprintln!(
        "{} calls, {refused} refused at the restart; {} reached the upstream",
        ends.len(),
        seen.len()
    );
    drop_postgres_database(&postgres_base_url(), &direct)
        .await
        .unwrap();
}
