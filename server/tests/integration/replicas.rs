//! Scale-out: two gateway replicas on one PostgreSQL behind a load balancer that alternates
//! every request between them (no stickiness). A session opened on one continues on the other;
//! a session id is its opener's on every replica; policy changes, revocations and elevations made
//! through either replica hold on the other within a second; both write one valid audit chain.

use crate::common::{
    TestApp, first_text, raw_session_at, skip_postgres, spawn_replicas_postgres,
    spawn_replicas_postgres_with, spawn_upstream,
};
use rmcp::RoleClient;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use toolgate_domain::approvals::Actor;

/// A round-robin HTTP load balancer in front of `backends`: request n goes to backend
/// n mod len, whatever session it belongs to. `hits` counts what each backend answered.
struct LoadBalancer {
    url: String,
    hits: Arc<Vec<AtomicUsize>>,
}

impl LoadBalancer {
    async fn spawn(backends: Vec<String>) -> Self {
        let hits: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let backends = Arc::new(backends);
        let http = reqwest::Client::new();
        let counted = hits.clone();
        let forward = move |req: axum::extract::Request| {
            let (backends, next, hits, http) = (
                backends.clone(),
                next.clone(),
                counted.clone(),
                http.clone(),
            );
            async move {
                let i = next.fetch_add(1, Ordering::SeqCst) % backends.len();
                hits[i].fetch_add(1, Ordering::SeqCst);
                let (parts, body) = req.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let mut out = http.request(parts.method, format!("{}{path}", backends[i]));
                for (name, value) in &parts.headers {
                    if name != "host" && name != "content-length" && name != "connection" {
                        out = out.header(name, value);
                    }
                }
                let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
                    .await
                    .unwrap_or_default();
                let res = match out.body(body).send().await {
                    Ok(r) => r,
                    Err(_) => {
                        return axum::http::Response::builder()
                            .status(502)
                            .body(axum::body::Body::empty())
                            .expect("response");
                    }
                };
                let mut back = axum::http::Response::builder().status(res.status());
                for (name, value) in res.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        back = back.header(name, value);
                    }
                }
                back.body(axum::body::Body::from_stream(res.bytes_stream()))
                    .expect("response")
            }
        };
        let app = axum::Router::new().fallback(forward);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LoadBalancer {
            url: format!("http://{addr}"),
            hits,
        }
    }

    fn hits(&self) -> Vec<usize> {
        self.hits.iter().map(|h| h.load(Ordering::SeqCst)).collect()
    }
}

/// Replica B's own address (its public URL is A's, as behind a load balancer).
fn base_of(app: &TestApp) -> String {
    format!("http://{}", app.server.addr)
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    args: Value,
) -> Result<rmcp::model::CallToolResult, rmcp::service::ServiceError> {
    client
        .call_tool(
            CallToolRequestParams::new(tool.to_string())
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
}

fn rpc_code(r: Result<rmcp::model::CallToolResult, rmcp::service::ServiceError>) -> i32 {
    match r {
        Err(rmcp::service::ServiceError::McpError(e)) => e.code.0,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

/// Polls `check` every 20 ms for up to a second; how long it took to hold, or a failure.
async fn within_a_second<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not seen on the other replica within 1 s");
}

/// A real MCP client (rmcp, streamable HTTP) through a round-robin balancer: its session is
/// opened on one replica and carried on by both; policy made on B holds on A; a session id is
/// refused to another person on either replica; removing a member on A is enforced on B; both
/// replicas' events form one valid chain.
#[tokio::test]
async fn sessions_policy_and_revocations_across_replicas_without_stickiness() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    let (a, b) = spawn_replicas_postgres().await;
    let upstream = spawn_upstream("up").await;
    a.create_connector("up", &upstream.url).await;
    let eng = a.create_group("eng").await;
    let rita = a.create_user("rita").await;
    let sam = a.create_user("sam").await;
    a.add_member(&eng, &rita).await;
    let rita_token = a.personal_token(&rita).await;
    let sam_token = a.personal_token(&sam).await;

    let lb = LoadBalancer::spawn(vec![a.base.clone(), base_of(&b)]).await;
    let client = crate::common::mcp_client(&format!("{}/mcp", lb.url), Some(&rita_token))
        .await
        .expect("initialize through the balancer");
    assert!(
        client.list_all_tools().await.expect("list").is_empty(),
        "default deny"
    );

    // Policy set through B: the client (served by A and B in turn) may echo within a second.
    let (s, body) = b
        .api(
            reqwest::Method::PUT,
            &format!("/api/v1/groups/{eng}/policies/up"),
            Some(json!({"allow": ["echo"]})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    within_a_second("policy made on B", || async {
        // Two calls in a row: one lands on each replica.
        let mut ok = 0;
        for _ in 0..2 {
            if let Ok(r) = call(&client, "up__echo", json!({"text": "hi"})).await
                && first_text(&r) == "up: hi"
            {
                ok += 1;
            }
        }
        ok == 2
    })
    .await;
    for i in 0..10 {
        let r = call(&client, "up__echo", json!({"text": format!("n{i}")}))
            .await
            .expect("call through either replica");
        assert_eq!(first_text(&r), format!("up: n{i}"));
    }
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, vec!["up__echo".to_string()]);
    let hits = lb.hits();
    assert!(
        hits.iter().all(|&h| h >= 8),
        "both replicas served the session: {hits:?}"
    );

    // A session id opened on A is rita's on B too: sam gets "not found", rita is served.
    let http = reqwest::Client::new();
    let session = raw_session_at(&http, &a.base, &rita_token).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let on_b = |token: &str| {
        http.post(format!("{}/mcp", base_of(&b)))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&list)
            .send()
    };
    assert_eq!(on_b(&sam_token).await.expect("send").status(), 404);
    let served = on_b(&rita_token).await.expect("send");
    assert_eq!(served.status(), 200);
    assert!(
        served.text().await.unwrap_or_default().contains("up__echo"),
        "B served A's session"
    );
    // Once rita's session is known on B, sam is still refused there (answered from memory).
    assert_eq!(on_b(&sam_token).await.expect("send").status(), 404);
    // A session ended with DELETE on B is gone on B (and from the shared store).
    let deleted = http
        .delete(format!("{}/mcp", base_of(&b)))
        .bearer_auth(&rita_token)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert_eq!(on_b(&rita_token).await.expect("send").status(), 404);
    assert!(
        a.server
            .state
            .store
            .load_mcp_session(&session)
            .await
            .expect("load")
            .is_none()
    );

    // Removing rita from the group through A: refused on B within a second.
    let via_b = crate::common::mcp_client(&format!("{}/mcp", base_of(&b)), Some(&rita_token))
        .await
        .expect("connect to B");
    call(&via_b, "up__echo", json!({"text": "before"}))
        .await
        .expect("allowed before");
    let (s, _) = a
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/groups/{eng}/members/{rita}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    within_a_second("membership removed on A", || async {
        matches!(
            call(&via_b, "up__echo", json!({"text": "after"})).await,
            Err(rmcp::service::ServiceError::McpError(_))
        )
    })
    .await;

    // Disabling rita on A: B refuses her token within a second.
    a.server
        .state
        .store
        .set_user_active(&rita, false)
        .await
        .expect("disable");
    a.server.state.snapshot.publish().await.expect("publish");
    within_a_second("user disabled on A", || async {
        http.post(format!("{}/mcp", base_of(&b)))
            .bearer_auth(&rita_token)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}))
            .send()
            .await
            .is_ok_and(|r| r.status() == 401)
    })
    .await;

    // Both replicas appended to one chain, and it verifies.
    let (s, events) = a.get("/api/v1/audit?kind=tool_call&limit=500").await;
    assert_eq!(s, 200, "{events}");
    let calls = events["items"].as_array().cloned().unwrap_or_default();
    assert!(calls.len() >= 12, "calls audited: {}", calls.len());
    let report = b
        .server
        .state
        .store
        .verify_audit_chain(None, None)
        .await
        .expect("verify");
    assert!(report.first_break.is_none(), "{report:?}");
    assert!(report.checked >= 12, "{report:?}");
}

/// An elevation asked for on B and approved on A is in force on B within a second; revoked on
/// B, A refuses within a second. A second one runs out at the same instant on both replicas
/// (expiry is decided from the clock, not propagated), and only one replica records the expiry.
#[tokio::test]
async fn elevations_granted_revoked_and_expired_across_replicas() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    let clock = Arc::new(toolgate_domain::clock::ManualClock::new(
        chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("time"),
    ));
    let (a, b) = spawn_replicas_postgres_with(Some(clock.clone())).await;
    let upstream = spawn_upstream("git").await;
    a.create_connector("git", &upstream.url).await;
    let eng = a.create_group("engineers").await;
    let approvers = a.create_group("approvers").await;
    let carol = a.create_user("carol").await;
    let dave = a.create_user("dave").await;
    a.add_member(&eng, &carol).await;
    a.add_member(&approvers, &dave).await;
    a.set_policy(&eng, "git", &["echo"], &[]).await;
    let (s, p) = a
        .post(
            "/api/v1/elevation/profiles",
            json!({"name": "Branch admin", "description": "delete branches",
                   "targets": [{"connector": "git", "tools": ["delete_branch"]}],
                   "eligible_groups": [eng], "approver_group": approvers, "max_minutes": 60}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let token = a.personal_token(&carol).await;
    let on_a = a.mcp_client(&token).await;
    let on_b = crate::common::mcp_client(&format!("{}/mcp", base_of(&b)), Some(&token))
        .await
        .expect("connect to B");
    assert_eq!(
        rpc_code(call(&on_a, "git__delete_branch", json!({"name": "x"})).await),
        -32004
    );

    // Asked on B (admin API), approved on A by an approver.
    let (s, asked) = b
        .post(
            "/api/v1/elevations",
            json!({"subject_kind": "person", "subject_id": carol, "profile": "Branch admin",
                   "justification": "release", "minutes": 10}),
        )
        .await;
    assert_eq!(s, 201, "{asked}");
    let id = asked["id"].as_str().expect("id").to_string();
    let dave_actor = Actor {
        id: dave.clone(),
        name: "dave".into(),
        kind: "person",
    };
    a.server
        .state
        .workflow
        .decide(&id, true, &dave_actor, None)
        .await
        .expect("dave approves on A");
    within_a_second("elevation approved on A", || async {
        call(&on_b, "git__delete_branch", json!({"name": "stale"}))
            .await
            .is_ok_and(|r| first_text(&r) == "deleted stale")
    })
    .await;
    call(&on_a, "git__delete_branch", json!({"name": "other"}))
        .await
        .expect("in force on A too");

    // Revoked on B: A refuses within a second.
    let (s, revoked) = b
        .post(&format!("/api/v1/elevations/{id}/revoke"), json!({}))
        .await;
    assert_eq!(s, 200, "{revoked}");
    within_a_second("elevation revoked on B", || async {
        matches!(
            call(&on_a, "git__delete_branch", json!({"name": "late"})).await,
            Err(rmcp::service::ServiceError::McpError(e)) if e.code.0 == -32004
        )
    })
    .await;

    // Ten minutes, approved on B.
    let (s, asked) = a
        .post(
            "/api/v1/elevations",
            json!({"subject_kind": "person", "subject_id": carol, "profile": "Branch admin",
                   "justification": "hotfix", "minutes": 10}),
        )
        .await;
    assert_eq!(s, 201, "{asked}");
    let id = asked["id"].as_str().expect("id").to_string();
    b.server
        .state
        .workflow
        .decide(&id, true, &dave_actor, None)
        .await
        .expect("dave approves on B");
    within_a_second("elevation approved on B", || async {
        call(&on_a, "git__delete_branch", json!({"name": "x"}))
            .await
            .is_ok()
    })
    .await;
    call(&on_b, "git__delete_branch", json!({"name": "y"}))
        .await
        .expect("in force on B");
    clock.advance(chrono::Duration::seconds(10 * 60 - 1));
    call(&on_b, "git__delete_branch", json!({"name": "z"}))
        .await
        .expect("one second before the expiry");
    clock.advance(chrono::Duration::seconds(1));
    for (replica, client) in [("A", &on_a), ("B", &on_b)] {
        assert_eq!(
            rpc_code(call(client, "git__delete_branch", json!({"name": "late"})).await),
            -32004,
            "refused on {replica} at the exact expiry"
        );
    }
    // Both replicas sweep; the expiry is recorded once.
    let (x, y) = tokio::join!(
        a.server.state.workflow.settle(),
        b.server.state.workflow.settle()
    );
    assert_eq!(x.expect("settle A") + y.expect("settle B"), 1);
    let (s, events) = a.get("/api/v1/audit?kind=elevation.expired&limit=10").await;
    assert_eq!(s, 200, "{events}");
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
}

/// On a single node (SQLite), an MCP session outlives a restart of the gateway: the client
/// carries on with the same session id instead of starting over.
#[tokio::test]
async fn a_session_outlives_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = toolgate::config::Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}/toolgate.db", dir.path().display()),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let first = toolgate::start(config.clone()).await.expect("start");
    let http = reqwest::Client::new();
    let base = first.base_url.clone();
    let up = spawn_upstream("up").await;
    let token = crate::common::agent_allowed(&first, "up", &up.url, "echo").await;
    let session = raw_session_at(&http, &base, &token).await;
    let echo = |base: String, text: &'static str| {
        http.post(format!("{base}/mcp"))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": "up__echo", "arguments": {"text": text}}}))
            .send()
    };
    let before = echo(base.clone(), "before").await.expect("send");
    assert_eq!(before.status(), 200);
    assert!(
        before
            .text()
            .await
            .unwrap_or_default()
            .contains("up: before")
    );

    first.shutdown().await;
    let second = toolgate::start(config).await.expect("restart");
    let after = echo(second.base_url.clone(), "after").await.expect("send");
    assert_eq!(
        after.status(),
        200,
        "the session is known after the restart"
    );
    assert!(after.text().await.unwrap_or_default().contains("up: after"));
    second.shutdown().await;
}

/// A replica whose change listener connection is killed (PostgreSQL restarted its backend, a
/// network blip) reconnects by itself and catches up on what it may have missed: a policy whose
/// notification B never heard is seen on B, and B is ready again.
#[tokio::test]
async fn a_replica_that_loses_its_change_listener_catches_up() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    let (a, b) = spawn_replicas_postgres().await;
    let upstream = spawn_upstream("up").await;
    let up = a.create_connector("up", &upstream.url).await;
    let eng = a.create_group("eng").await;
    let rita = a.create_user("rita").await;
    a.add_member(&eng, &rita).await;
    let token = a.personal_token(&rita).await;
    let on_b = crate::common::mcp_client(&format!("{}/mcp", base_of(&b)), Some(&token))
        .await
        .expect("connect to B");
    assert!(on_b.list_all_tools().await.expect("list").is_empty());
    let ready = |app: &TestApp| {
        let url = format!("{}/readyz", base_of(app));
        let http = app.http.clone();
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    };
    within_a_second("B following changes", || ready(&b)).await;

    // A change whose notification B never hears (written without NOTIFY, as if sent while B's
    // listener was down), then B's listener connection is cut.
    a.server
        .state
        .store
        .put_rules(
            &eng,
            &up,
            toolgate_domain::policy::ToolRules {
                allow: vec!["echo".into()],
                ..Default::default()
            },
        )
        .await
        .expect("policy written");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        on_b.list_all_tools().await.expect("list").is_empty(),
        "B heard of a change nobody announced"
    );
    let killed = toolgate_domain::store::terminate_postgres_backends(
        &crate::common::postgres_base_url(),
        &b.server.state.snapshot.listener_name(),
    )
    .await
    .expect("terminate");
    assert_eq!(killed, 1, "B's change listener was found and cut");
    let start = Instant::now();
    loop {
        let names: Vec<String> = on_b
            .list_all_tools()
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        if names == vec!["up__echo".to_string()] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "B did not catch up after losing its listener"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    within_a_second("B ready again", || ready(&b)).await;
}

/// Behind a load balancer: the audit log names the agent's address from `X-Forwarded-For` only
/// when the connection comes from a trusted proxy (a client cannot pick its own address
/// otherwise), and `/mcp` answers to an extra configured host name (an internal service name)
/// while other Host headers stay refused.
#[tokio::test]
async fn behind_a_trusted_proxy_and_an_internal_host_name() {
    async fn ip_of_last_call(
        app: &TestApp,
        token: &str,
        forwarded: &str,
        host: &str,
    ) -> (u16, Value) {
        let http = reqwest::Client::new();
        let session = http
            .post(app.url("/mcp"))
            .bearer_auth(token)
            .header("host", host)
            .header("x-forwarded-for", forwarded)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"lb","version":"1"}}}))
            .send()
            .await
            .expect("initialize");
        let status = session.status().as_u16();
        if status != 200 {
            return (status, Value::Null);
        }
        let id = session.headers()["mcp-session-id"]
            .to_str()
            .expect("id")
            .to_string();
        let _ = session.text().await;
        for body in [
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"up__echo","arguments":{"text":"x"}}}),
        ] {
            let r = http
                .post(app.url("/mcp"))
                .bearer_auth(token)
                .header("host", host)
                .header("x-forwarded-for", forwarded)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &id)
                .header("mcp-protocol-version", "2025-11-25")
                .json(&body)
                .send()
                .await
                .expect("send");
            assert!(r.status().is_success(), "{}", r.status());
            let _ = r.text().await;
        }
        let (s, events) = app.get("/api/v1/audit?kind=tool_call&limit=1").await;
        assert_eq!(s, 200, "{events}");
        (200, events["items"][0]["ip"].clone())
    }

    async fn prepared(app: &TestApp, upstream: &str) -> String {
        app.create_connector("up", upstream).await;
        let g = app.create_group("g").await;
        let u = app.create_user("lee").await;
        app.add_member(&g, &u).await;
        app.set_policy(&g, "up", &["echo"], &[]).await;
        app.personal_token(&u).await
    }

    let upstream = spawn_upstream("up").await;
    let behind = crate::common::spawn_app_with(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.mcp_allowed_hosts = vec!["toolgate.internal".into()];
    })
    .await;
    let token = prepared(&behind, &upstream.url).await;
    let (_, ip) = ip_of_last_call(&behind, &token, "198.51.100.1, 203.0.113.7", "127.0.0.1").await;
    assert_eq!(
        ip,
        json!("203.0.113.7"),
        "the right-most address the proxy appended"
    );
    let (s, _) = ip_of_last_call(&behind, &token, "203.0.113.7", "toolgate.internal:8080").await;
    assert_eq!(s, 200, "the configured internal host name is served");
    let (s, _) = ip_of_last_call(&behind, &token, "203.0.113.7", "evil.example.com").await;
    assert_eq!(s, 403, "other host names stay refused");

    let direct = crate::common::spawn_app().await;
    let token = prepared(&direct, &upstream.url).await;
    let (_, ip) = ip_of_last_call(&direct, &token, "203.0.113.7", "127.0.0.1").await;
    assert_eq!(
        ip,
        json!("127.0.0.1"),
        "an untrusted peer's header is ignored"
    );
}
