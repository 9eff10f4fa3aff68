//! Upstream faults end to end: an upstream that refuses connections, answers late, hangs, breaks
//! off mid-answer, answers garbage, answers too much, or (stdio) crashes gives the caller a clear
//! JSON-RPC error within the connector's timeout, is audited, and blocks nobody else.

use crate::common::*;
use rmcp::ServiceError;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// What the gateway may take beyond a connector's timeout (a loaded CI machine included).
const SLACK: Duration = Duration::from_secs(4);
/// How quickly the other connector, `/healthz` and the admin API must answer meanwhile.
const PROMPTLY: Duration = Duration::from_secs(3);
/// `upstream_max_response_bytes` unless a test sets another.
const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// A hand-written MCP upstream over raw HTTP/1.1 that misbehaves on `tools/call` as asked
// ---------------------------------------------------------------------------------------------

/// The answer to everything but `tools/call`; `None` for notifications (HTTP 202).
fn mcp_reply(msg: &Value) -> Option<Value> {
    let id = msg.get("id")?.clone();
    let result = match msg["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hostile", "version": "1"},
        }),
        "tools/list" => json!({"tools": [{
            "name": "work",
            "description": "Does what the test asks of it",
            "inputSchema": {"type": "object", "properties": {
                "fault": {"type": "string"}, "bytes": {"type": "integer"}}},
        }]}),
        "ping" => json!({}),
        other => {
            return Some(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": format!("no method {other}")}}));
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A successful `tools/call` result whose text is `bytes` long.
fn text_result(id: &Value, bytes: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": {
        "content": [{"type": "text", "text": "x".repeat(bytes)}]}}))
    .expect("json")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request: its method and body (only `Content-Length` bodies; rmcp sends those).
async fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let method = head.split_whitespace().next()?.to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, body))
}

fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A raw HTTP MCP upstream. `tools/call` of `work` does what its `fault` argument says:
/// `hang`, `slow` (answers after 4 s), `sse_cut` (starts an event stream and drops the
/// connection mid-event), `json_cut` (promises a JSON body and drops the connection halfway),
/// `garbage` (`application/json` that is not JSON), `big` / `big_sse` (a valid result with a text
/// of `bytes` bytes, as JSON or as an SSE event), anything else a short answer.
struct Hostile {
    url: String,
    /// `tools/call` requests received so far.
    calls: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Hostile {
    /// Stops listening: from now on connections are refused.
    fn refuse(&self) {
        self.stop.cancel();
    }

    /// Waits until `n` calls have reached the upstream.
    async fn reached(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the call never reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn spawn_hostile() -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let calls = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (c, s) = (calls.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = s.cancelled() => break,
                conn = listener.accept() => conn,
            };
            let Ok((stream, _)) = conn else { continue };
            tokio::spawn(serve_hostile(stream, c.clone()));
        }
        // The listener is dropped here: the port refuses connections.
    });
    Hostile {
        url: format!("http://{addr}/mcp"),
        calls,
        stop,
    }
}

async fn serve_hostile(mut s: TcpStream, calls: Arc<AtomicUsize>) {
    let Some((method, body)) = read_request(&mut s).await else {
        return;
    };
    if method != "POST" {
        // No standalone event stream and no session to delete.
        let _ = s
            .write_all(&response("405 Method Not Allowed", "text/plain", b""))
            .await;
        return;
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        let _ = s
            .write_all(&response("400 Bad Request", "text/plain", b"not json"))
            .await;
        return;
    };
    if msg["method"] != "tools/call" {
        let out = match mcp_reply(&msg) {
            Some(reply) => response(
                "200 OK",
                "application/json",
                &serde_json::to_vec(&reply).expect("json"),
            ),
            None => response("202 Accepted", "text/plain", b""),
        };
        let _ = s.write_all(&out).await;
        return;
    }
    calls.fetch_add(1, Ordering::SeqCst);
    let id = msg["id"].clone();
    let args = &msg["params"]["arguments"];
    let bytes = args["bytes"].as_u64().unwrap_or(10) as usize;
    let out = match args["fault"].as_str().unwrap_or_default() {
        "hang" => {
            // Keep the connection open and never answer.
            std::future::pending::<()>().await;
            return;
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            response("200 OK", "application/json", &text_result(&id, 10))
        }
        "sse_cut" => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let event =
                format!("data: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[");
            let chunk = format!("{:x}\r\n{event}\r\n", event.len() + 100);
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(chunk.as_bytes()).await;
            let _ = s.flush().await;
            // Dropped mid-chunk.
            return;
        }
        "json_cut" => {
            let full = text_result(&id, 1000);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                full.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&full[..full.len() / 2]).await;
            let _ = s.flush().await;
            return;
        }
        "garbage" => response(
            "200 OK",
            "application/json",
            b"{\"jsonrpc\": \"2.0\", \"id\": <<<this is not JSON>>>",
        ),
        "big" => response("200 OK", "application/json", &text_result(&id, bytes)),
        "big_sse" => {
            let mut event = b"event: message\ndata: ".to_vec();
            event.extend_from_slice(&text_result(&id, bytes));
            event.extend_from_slice(b"\n\n");
            response("200 OK", "text/event-stream", &event)
        }
        _ => response("200 OK", "application/json", &text_result(&id, 10)),
    };
    let _ = s.write_all(&out).await;
    let _ = s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A legacy HTTP+SSE upstream answering with texts of any size
// ---------------------------------------------------------------------------------------------

type Sessions = Arc<Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<String>>>>;

async fn legacy_get(
    axum::extract::State(sessions): axum::extract::State<Sessions>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use axum::response::sse::{Event, Sse};
    use futures::StreamExt;
    let id = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    sessions.lock().unwrap().insert(id.clone(), tx);
    let first = futures::stream::once(async move {
        Event::default()
            .event("endpoint")
            .data(format!("/message?session={id}"))
    });
    let rest = tokio_stream_of(rx).map(|m| Event::default().event("message").data(m));
    Sse::new(first.chain(rest).map(Ok::<_, std::convert::Infallible>)).into_response()
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> impl futures::Stream<Item = String> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn legacy_post(
    axum::extract::State(sessions): axum::extract::State<Sessions>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(tx) = q
        .get("session")
        .and_then(|s| sessions.lock().unwrap().get(s).cloned())
    else {
        return StatusCode::NOT_FOUND;
    };
    let reply = if msg["method"] == "tools/call" {
        let bytes = msg["params"]["arguments"]["bytes"].as_u64().unwrap_or(10) as usize;
        Some(String::from_utf8(text_result(&msg["id"], bytes)).expect("utf-8"))
    } else {
        mcp_reply(&msg).map(|r| r.to_string())
    };
    if let Some(reply) = reply {
        let _ = tx.send(reply);
    }
    StatusCode::ACCEPTED
}

/// A legacy SSE upstream at the returned URL, until the token is cancelled.
async fn spawn_legacy() -> (String, CancellationToken) {
    let sessions: Sessions = Arc::default();
    let app = axum::Router::new()
        .route("/sse", axum::routing::get(legacy_get))
        .route("/message", axum::routing::post(legacy_post))
        .with_state(sessions);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled_owned().await })
            .await;
    });
    (format!("http://{addr}/sse"), stop)
}

// ---------------------------------------------------------------------------------------------
// A stdio upstream (python3) that answers big texts or exits on `tools/call`
// ---------------------------------------------------------------------------------------------

const STDIO_SERVER: &str = r#"
import json, os, sys
def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    method, mid = msg.get("method"), msg.get("id")
    if mid is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stdio-hostile", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [{
            "name": "work", "description": "Does what the test asks of it",
            "inputSchema": {"type": "object"}}]}})
    elif method == "tools/call":
        args = msg["params"].get("arguments") or {}
        if args.get("fault") == "crash":
            sys.stderr.write("crashing on purpose\n")
            os._exit(3)
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "content": [{"type": "text", "text": "x" * int(args.get("bytes", 10))}]}})
    else:
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
"#;

/// The python3 binary; a real path, since the child's environment is cleared (no pyenv).
fn python() -> String {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The scene: a bad connector, a good one, an agent allowed both
// ---------------------------------------------------------------------------------------------

struct Scene {
    app: TestApp,
    client: Client,
    /// The bad connector's timeout.
    timeout: Duration,
    _good: Upstream,
}

/// The app (with `change` applied to its config) with connector `bad` (created from `bad`, the
/// connector body without its name) allowing `work` and `good` (a healthy rmcp upstream)
/// allowing `echo`; an agent's MCP session that lists both.
async fn scene(
    bad: Value,
    timeout_ms: u64,
    change: impl FnOnce(&mut toolgate::config::Config),
) -> Scene {
    let app = spawn_app_with(change).await;
    let mut body = bad;
    body["name"] = json!("bad");
    body["timeout_ms"] = json!(timeout_ms);
    let (s, created) = app.post("/api/v1/connectors", body).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["discovery"]["ok"], true, "{created}");
    let bad_id = created["id"].as_str().expect("id").to_string();
    let good = spawn_upstream("good").await;
    let good_id = app.create_connector("good", &good.url).await;
    let user = app.create_user("agent@example.com").await;
    let group = app.create_group("agents").await;
    app.add_member(&group, &user).await;
    app.set_policy(&group, &bad_id, &["work"], &[]).await;
    app.set_policy(&group, &good_id, &["echo"], &[]).await;
    let token = app.personal_token(&user).await;
    let client = app.mcp_client(&token).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["bad__work", "good__echo"]);
    Scene {
        app,
        client,
        timeout: Duration::from_millis(timeout_ms),
        _good: good,
    }
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

impl Scene {
    /// Calls `bad__work` with `a`, bounded by the connector's timeout and [`SLACK`]; returns
    /// the outcome and how long it took.
    async fn work(&self, a: Value) -> (Result<CallToolResult, ServiceError>, Duration) {
        let started = Instant::now();
        let call = self
            .client
            .call_tool(CallToolRequestParams::new("bad__work").with_arguments(args(a)));
        let r = tokio::time::timeout(self.timeout + SLACK, call)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the call was not answered within {:?}",
                    self.timeout + SLACK
                )
            });
        (r, started.elapsed())
    }

    /// The other connector, `/healthz` and the admin API each answer promptly.
    async fn others_answer(&self) {
        let t = Instant::now();
        let r = self
            .client
            .call_tool(
                CallToolRequestParams::new("good__echo")
                    .with_arguments(args(json!({"text": "meanwhile"}))),
            )
            .await
            .expect("the good connector answers");
        assert_eq!(first_text(&r), "good: meanwhile");
        assert!(t.elapsed() < PROMPTLY, "good__echo took {:?}", t.elapsed());

        let t = Instant::now();
        let res = self
            .app
            .http
            .get(self.app.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(res.status(), 200);
        assert!(t.elapsed() < PROMPTLY, "/healthz took {:?}", t.elapsed());

        let t = Instant::now();
        let (s, list) = self.app.get("/api/v1/connectors").await;
        assert_eq!(s, 200, "{list}");
        assert!(
            t.elapsed() < PROMPTLY,
            "/api/v1/connectors took {:?}",
            t.elapsed()
        );
    }

    /// Calls `bad__work` with `a`; once `reached` says the call is at the upstream, checks that
    /// everyone else is answered while it is still pending. Returns the call's error.
    async fn fails_while_others_answer(
        &self,
        a: Value,
        reached: impl Future<Output = ()>,
    ) -> (rmcp::ErrorData, Duration) {
        let done = AtomicBool::new(false);
        let bad = async {
            let r = self.work(a).await;
            done.store(true, Ordering::SeqCst);
            r
        };
        let others = async {
            reached.await;
            self.others_answer().await;
            assert!(
                !done.load(Ordering::SeqCst),
                "the bad call should still be pending while the others answered"
            );
        };
        let ((r, took), ()) = tokio::join!(bad, others);
        (rpc_error(r), took)
    }

    /// Calls `bad__work` with `fault`, which the upstream never answers in time: the call gives
    /// up at the timeout (not before), everyone else answering meanwhile, and is audited.
    async fn times_out_while_others_answer(&self, fault: &str, reached: impl Future<Output = ()>) {
        let (e, took) = self
            .fails_while_others_answer(json!({ "fault": fault }), reached)
            .await;
        let cause = format!("did not answer within {}s", self.timeout.as_secs_f64());
        assert_upstream_error(&e, &cause);
        assert!(
            took >= self.timeout,
            "gave up after {took:?}, before the timeout"
        );
        within(took, self.timeout);
        self.audited(&cause).await;
    }

    /// Calls `bad__work` with `a`: a clear upstream error naming `cause`, sooner than `limit`,
    /// audited, while everyone else still answers.
    async fn fails_clearly(&self, a: Value, cause: &str, limit: Duration, what: &str) {
        let (r, took) = self.work(a).await;
        assert_upstream_error(&rpc_error(r), cause);
        assert!(took < limit, "{what}: took {took:?}");
        self.audited(cause).await;
        self.others_answer().await;
    }

    /// A plain call on `bad` still answers.
    async fn still_works(&self, expect: &str, what: &str) {
        let (r, _) = self.work(json!({})).await;
        assert_eq!(first_text(&r.expect(expect)).len(), 10, "{what}");
    }

    /// An answer of 1 MB passes under `limit`; one of 10 MB is refused clearly and quickly, and
    /// the next small call answers. `fault` picks the hostile upstream's way of answering.
    async fn enforces_response_limit(&self, fault: Option<&str>, limit: usize) {
        let what = fault.unwrap_or("the call");
        let call = |bytes: usize| {
            let mut a = json!({ "bytes": bytes });
            if let Some(f) = fault {
                a["fault"] = f.into();
            }
            a
        };
        let (r, _) = self.work(call(1_000_000)).await;
        let r = r.unwrap_or_else(|e| panic!("{what}: 1 MB refused: {e}"));
        assert_eq!(first_text(&r).len(), 1_000_000, "{what}");
        let cause = format!("exceeds the {limit}-byte limit");
        self.fails_clearly(call(10_000_000), &cause, Duration::from_secs(10), what)
            .await;
        // The connection is fine: the next call answers.
        self.still_works("a small call works", what).await;
    }

    /// The newest call on `bad` is audited as an upstream error mentioning `cause`.
    async fn audited(&self, cause: &str) -> Value {
        let (s, page) = self
            .app
            .get("/api/v1/audit?connector=bad&kind=tool_call&limit=1")
            .await;
        assert_eq!(s, 200, "{page}");
        let item = page["items"][0].clone();
        assert_eq!(item["tool"], "work", "{item}");
        assert_eq!(item["decision"], "allow", "{item}");
        assert_eq!(item["outcome"], "upstream_error", "{item}");
        let error = item["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(cause),
            "audited error {error:?} lacks {cause:?}"
        );
        item
    }
}

/// The JSON-RPC error of a failed call (anything else fails the test).
fn rpc_error(r: Result<CallToolResult, ServiceError>) -> rmcp::ErrorData {
    match r {
        Err(ServiceError::McpError(e)) => e,
        other => {
            let mut seen = format!("{other:?}");
            seen.truncate(300);
            panic!("expected a JSON-RPC error, got {seen}")
        }
    }
}

/// The gateway's "the connector behind this tool failed" error, naming tool, connector and cause.
fn assert_upstream_error(e: &rmcp::ErrorData, cause: &str) {
    assert_eq!(e.code.0, -32001, "{e:?}");
    let m = &e.message;
    assert!(m.contains("\"bad__work\""), "no tool in {m:?}");
    assert!(m.contains("connector \"bad\""), "no connector in {m:?}");
    assert!(m.contains(cause), "{m:?} lacks the cause {cause:?}");
}

fn within(took: Duration, timeout: Duration) {
    assert!(
        took <= timeout + SLACK,
        "took {took:?}, timeout {timeout:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn faults_refused_connection_is_a_clear_error_and_audited() {
    let hostile = spawn_hostile().await;
    let s = scene(json!({"url": hostile.url}), 2000, |_| {}).await;
    hostile.refuse();
    let (r, took) = s.work(json!({})).await;
    let e = rpc_error(r);
    assert_upstream_error(&e, "is unreachable: could not connect");
    within(took, s.timeout);
    s.others_answer().await;
    s.audited("could not connect").await;
    // Then the breaker answers at once, still naming the cause.
    let (r, took) = s.work(json!({})).await;
    let e = rpc_error(r);
    assert_upstream_error(&e, "could not connect");
    assert!(took < Duration::from_secs(1), "fail-fast took {took:?}");
}

#[tokio::test]
async fn faults_slow_answer_times_out_while_others_answer() {
    let hostile = spawn_hostile().await;
    let s = scene(json!({"url": hostile.url}), 2500, |_| {}).await;
    s.times_out_while_others_answer("slow", hostile.reached(1))
        .await;
    // One slow answer does not break the connector.
    s.still_works("a quick call works", "after a slow answer")
        .await;
}

#[tokio::test]
async fn faults_hung_upstream_times_out_while_others_answer() {
    let hostile = spawn_hostile().await;
    let s = scene(json!({"url": hostile.url}), 2500, |_| {}).await;
    s.times_out_while_others_answer("hang", hostile.reached(1))
        .await;
}

#[tokio::test]
async fn faults_answer_cut_off_mid_stream_is_a_clear_error() {
    let hostile = spawn_hostile().await;
    // A long timeout: the error must come from the broken answer, not from waiting it out.
    let s = scene(json!({"url": hostile.url}), 20_000, |_| {}).await;
    for fault in ["sse_cut", "json_cut"] {
        s.fails_clearly(
            json!({"fault": fault}),
            "broke off",
            Duration::from_secs(5),
            fault,
        )
        .await;
    }
    // The connector still works.
    s.still_works("a good call works", "after a cut-off answer")
        .await;
}

#[tokio::test]
async fn faults_garbage_json_is_a_clear_error_not_a_timeout() {
    let hostile = spawn_hostile().await;
    let s = scene(json!({"url": hostile.url}), 20_000, |_| {}).await;
    let cause = "not valid JSON-RPC";
    s.fails_clearly(
        json!({"fault": "garbage"}),
        cause,
        Duration::from_secs(5),
        "garbage",
    )
    .await;
    s.still_works("a good call works", "after garbage").await;
}

#[tokio::test]
async fn faults_oversized_answers_over_streamable_http_are_refused_under_the_default_limit() {
    let hostile = spawn_hostile().await;
    let s = scene(json!({"url": hostile.url}), 20_000, |_| {}).await;
    for fault in ["big", "big_sse"] {
        // 1 MB passes under the default 4 MiB; 10 MB is refused with a clear error, quickly.
        s.enforces_response_limit(Some(fault), DEFAULT_LIMIT).await;
    }
}

#[tokio::test]
async fn faults_oversized_answers_over_legacy_sse_are_refused_under_a_configured_limit() {
    let (url, _stop) = spawn_legacy().await;
    let limit = 2 * 1024 * 1024;
    let s = scene(json!({"url": url, "transport": "sse"}), 20_000, |c| {
        c.upstream_max_response_bytes = limit
    })
    .await;
    s.enforces_response_limit(None, limit).await;
}

#[tokio::test]
async fn faults_oversized_answers_over_stdio_are_refused_under_a_configured_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("server.py");
    std::fs::write(&script, STDIO_SERVER).expect("script");
    let limit = 3 * 1024 * 1024;
    let s = scene(
        json!({"transport": "stdio", "command": python(), "args": [script]}),
        20_000,
        |c| c.upstream_max_response_bytes = limit,
    )
    .await;
    s.enforces_response_limit(None, limit).await;
}

#[tokio::test]
async fn faults_crashing_stdio_command_is_a_clear_error_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("server.py");
    std::fs::write(&script, STDIO_SERVER).expect("script");
    let s = scene(
        json!({"transport": "stdio", "command": python(), "args": [script]}),
        20_000,
        |_| {},
    )
    .await;
    let cause = "the process exited";
    s.fails_clearly(
        json!({"fault": "crash"}),
        cause,
        Duration::from_secs(5),
        "crash",
    )
    .await;
}
