//! The MCP gateway end to end: token auth, tool filtering, allowed and denied calls, block beats
//! allow, an unreachable upstream, audit rows.

use crate::common::*;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

/// One upstream "up", a user in group "eng" allowed `echo`, `add`, `fail`, `whoami`.
async fn setup() -> (TestApp, Upstream, String, String, String, String) {
    let app = spawn_app().await;
    let up = spawn_upstream("up").await;
    let connector = app.create_connector("up", &up.url).await;
    let user = app.create_user("alice@example.com").await;
    let group = app.create_group("eng").await;
    app.add_member(&group, &user).await;
    app.set_policy(&group, &connector, &["echo", "add", "fail", "whoami"], &[])
        .await;
    let token = app.personal_token(&user).await;
    (app, up, connector, user, group, token)
}

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[tokio::test]
async fn missing_or_invalid_token_is_401() {
    let (app, _up, _c, _u, _g, token) = setup().await;
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    for auth in [
        None,
        Some("Bearer tgp_not-a-real-token"),
        Some("Basic abc"),
        Some(&*format!("Bearer {}", app.admin_token)),
    ] {
        let mut req = app
            .http
            .post(app.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "auth {auth:?}");
        let www = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(www.starts_with("Bearer"), "{www}");
    }
    // The personal token works.
    let client = app.mcp_client(&token).await;
    assert!(client.peer().peer_info().is_some());
}

#[tokio::test]
async fn lists_only_allowed_tools_with_connector_prefix() {
    let (app, _up, _c, _u, _g, token) = setup().await;
    let client = app.mcp_client(&token).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["up__add", "up__echo", "up__fail", "up__whoami"]);
}

#[tokio::test]
async fn allowed_call_returns_the_upstream_result_unchanged() {
    let (app, up, _c, _u, _g, token) = setup().await;
    let direct = mcp_client(&up.url, None).await.unwrap();
    let via = app.mcp_client(&token).await;
    for (tool, a) in [
        ("echo", json!({"text": "hello"})),
        ("add", json!({"a": 2, "b": 40})),
        ("fail", json!({})),
    ] {
        let d = direct
            .call_tool(CallToolRequestParams::new(tool).with_arguments(args(a.clone())))
            .await
            .unwrap();
        let g = via
            .call_tool(CallToolRequestParams::new(format!("up__{tool}")).with_arguments(args(a)))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&g).unwrap(),
            serde_json::to_value(&d).unwrap(),
            "{tool}"
        );
    }
    let sum = via
        .call_tool(
            CallToolRequestParams::new("up__add").with_arguments(args(json!({"a": 2, "b": 40}))),
        )
        .await
        .unwrap();
    assert_eq!(sum.structured_content, Some(json!({"sum": 42})));
}

#[tokio::test]
async fn gateway_sends_the_connector_credentials_upstream() {
    let (app, _up, _c, _u, _g, token) = setup().await;
    let via = app.mcp_client(&token).await;
    let r = via
        .call_tool(CallToolRequestParams::new("up__whoami"))
        .await
        .unwrap();
    assert_eq!(first_text(&r), "s3cret-value");
}

#[tokio::test]
async fn denied_call_is_refused_with_the_tool_named_and_audited() {
    let (app, _up, _c, _u, _g, token) = setup().await;
    let via = app.mcp_client(&token).await;
    for name in ["up__delete_branch", "nope__echo", "nounderscore", "up__"] {
        let err = via
            .call_tool(
                CallToolRequestParams::new(name.to_string())
                    .with_arguments(args(json!({"name": "main"}))),
            )
            .await
            .expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains("not permitted"),
            "{name}: {msg}"
        );
    }
    let (s, body) = app.get("/api/v1/audit?kind=tool_call&limit=10").await;
    assert_eq!(s, 200);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        items
            .iter()
            .all(|e| e["decision"] == "deny" && e["outcome"] == "denied")
    );
    let branch = items
        .iter()
        .find(|e| e["tool"] == "delete_branch")
        .expect("delete_branch row");
    assert_eq!(branch["connector"], "up");
    assert_eq!(branch["principal"], "alice@example.com");
    assert!(
        branch["rule"].as_str().unwrap().contains("default deny"),
        "{branch}"
    );
}

#[tokio::test]
async fn a_block_beats_an_allow_across_groups() {
    let (app, _up, connector, user, _g, token) = setup().await;
    let all = app.create_group("all-tools").await;
    let no_delete = app.create_group("no-delete").await;
    app.add_member(&all, &user).await;
    app.add_member(&no_delete, &user).await;
    app.set_policy(&all, &connector, &["*"], &[]).await;
    app.set_policy(&no_delete, &connector, &[], &["delete_*"])
        .await;
    let via = app.mcp_client(&token).await;
    let names: Vec<String> = via
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        !names.contains(&"up__delete_branch".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"up__echo".to_string()), "{names:?}");
    let err = via
        .call_tool(
            CallToolRequestParams::new("up__delete_branch")
                .with_arguments(args(json!({"name": "main"}))),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not permitted"));
    let (_, body) = app.get("/api/v1/audit?kind=tool_call&limit=1").await;
    let rule = body["items"][0]["rule"].as_str().unwrap().to_string();
    assert!(
        rule.contains("no-delete") && rule.contains("delete_*"),
        "{rule}"
    );
    // Without the block, the allow-all group lets it through.
    app.set_policy(&no_delete, &connector, &[], &[]).await;
    let r = via
        .call_tool(
            CallToolRequestParams::new("up__delete_branch")
                .with_arguments(args(json!({"name": "main"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "deleted main");
}

#[tokio::test]
async fn an_unreachable_upstream_fails_its_tools_only() {
    let (app, up, connector, _u, group, token) = setup().await;
    let dead = app.create_connector("dead", &dead_url().await).await;
    app.set_policy(&group, &dead, &["*"], &[]).await;
    let via = app.mcp_client(&token).await;
    let names: Vec<String> = via
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"up__echo".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("dead__")), "{names:?}");
    let err = via
        .call_tool(
            CallToolRequestParams::new("dead__echo").with_arguments(args(json!({"text": "x"}))),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    let ok = via
        .call_tool(
            CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "still"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&ok), "up: still");

    // The upstream goes away after it was used: a clear error, then recovery is not needed for others.
    up.stop().await;
    let err = via
        .call_tool(
            CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "x"}))),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("up__echo"), "{err}");
    let (_, body) = app.get("/api/v1/audit?kind=tool_call&limit=3").await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items[0]["outcome"], "upstream_error");
    assert_eq!(items[0]["decision"], "allow");
    assert!(items[0]["error"].as_str().unwrap().contains("unreachable"));
    assert_eq!(items[1]["outcome"], "ok");
    assert_eq!(items[2]["outcome"], "upstream_error");
    assert_eq!(items[2]["connector"], "dead");
    let _ = connector;
}

#[tokio::test]
async fn every_call_leaves_an_audit_row_newest_first() {
    let (app, _up, _c, _u, _g, token) = setup().await;
    let via = app.mcp_client(&token).await;
    via.call_tool(
        CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "1"}))),
    )
    .await
    .unwrap();
    via.call_tool(CallToolRequestParams::new("up__fail"))
        .await
        .unwrap();
    let _ = via
        .call_tool(CallToolRequestParams::new("up__delete_branch"))
        .await;
    let (s, body) = app.get("/api/v1/audit?kind=tool_call&limit=10").await;
    assert_eq!(s, 200);
    assert!(body["next_cursor"].is_null(), "one page holds all: {body}");
    let (_, first) = app.get("/api/v1/audit?kind=tool_call&limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = first["next_cursor"]
        .as_str()
        .expect("a second page exists")
        .to_string();
    let (_, second) = app
        .get(&format!(
            "/api/v1/audit?kind=tool_call&limit=2&cursor={next}"
        ))
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    assert_eq!(second["items"][0]["tool"], "echo");
    let items = body["items"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = items
        .iter()
        .map(|e| {
            (
                e["tool"].as_str().unwrap().to_string(),
                e["decision"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("delete_branch".into(), "deny".into(), "denied".into()),
            ("fail".into(), "allow".into(), "tool_error".into()),
            ("echo".into(), "allow".into(), "ok".into()),
        ]
    );
    for e in items {
        assert_eq!(e["principal"], "alice@example.com");
        assert_eq!(e["connector"], "up");
        assert!(e["latency_ms"].as_f64().unwrap() >= 0.0);
        assert!(e["at"].as_str().unwrap().contains('T'));
    }
    // Metrics count them too.
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("toolgate_tool_calls_total"), "{text}");
    assert!(text.contains("toolgate_upstream_latency_seconds"), "{text}");
}

#[tokio::test]
async fn disabling_a_user_stops_their_token_at_once() {
    let (app, _up, _c, user, _g, token) = setup().await;
    let via = app.mcp_client(&token).await;
    via.call_tool(
        CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "1"}))),
    )
    .await
    .unwrap();
    app.server
        .state
        .store
        .set_user_active(&user, false)
        .await
        .unwrap();
    app.server.state.snapshot.reload().await.unwrap();
    let res = app
        .http
        .post(app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        via.call_tool(
            CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "2"})))
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn foreign_host_header_is_refused() {
    let (app, _up, _c, _u, _g, token) = setup().await;
    let res = app
        .http
        .post(app.url("/mcp"))
        .bearer_auth(&token)
        .header("host", "evil.example.com")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn the_gateway_works_on_postgres_too() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    let app = spawn_app_postgres().await;
    let up = spawn_upstream("pg").await;
    let c = app.create_connector("pg", &up.url).await;
    let u = app.create_user("bob").await;
    let g = app.create_group("g").await;
    app.add_member(&g, &u).await;
    app.set_policy(&g, &c, &["echo"], &[]).await;
    let token = app.personal_token(&u).await;
    let via = app.mcp_client(&token).await;
    let r = via
        .call_tool(
            CallToolRequestParams::new("pg__echo").with_arguments(args(json!({"text": "hi"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "pg: hi");
    assert!(
        via.call_tool(CallToolRequestParams::new("pg__add"))
            .await
            .is_err()
    );
    let (_, body) = app.get("/api/v1/audit?kind=tool_call&limit=5").await;
    let decisions: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, vec!["deny", "allow"]);
}

#[tokio::test]
async fn no_answer_leaves_without_its_audit_row() {
    let (app, _up, _c, _u, _g, token) = setup().await;
    let via = app.mcp_client(&token).await;
    via.call_tool(
        CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "1"}))),
    )
    .await
    .unwrap();
    // The audit store goes away: allowed calls lose their result, denied ones are still refused.
    app.server.state.store.close().await;
    let err = via
        .call_tool(
            CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "2"}))),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("audit log is unavailable"),
        "{err}"
    );
    let err = via
        .call_tool(CallToolRequestParams::new("up__delete_branch"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("audit log is unavailable"),
        "{err}"
    );
}

/// Opens a session by hand and returns its id.
async fn raw_session(app: &TestApp, token: &str) -> String {
    raw_session_at(&app.http, &app.base, token).await
}

#[tokio::test]
async fn an_open_stream_is_cut_off_when_the_user_is_disabled() {
    let (app, _up, _c, user, _g, token) = setup().await;
    let session = raw_session(&app, &token).await;
    let mut stream = app
        .http
        .get(app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The stream stays open while the user is allowed.
    let idle = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(idle.is_err(), "the stream ended on its own");
    let disabled_at = std::time::Instant::now();
    app.server
        .state
        .store
        .set_user_active(&user, false)
        .await
        .unwrap();
    app.server.state.snapshot.reload().await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream was still open 1 s after the user was disabled"
    );
    assert!(disabled_at.elapsed() < std::time::Duration::from_secs(1));
}

/// Two gateway processes' worth of app on one PostgreSQL: a change made through one is seen by
/// the other within a second, and an open stream on the other is cut off.
#[tokio::test]
async fn replicas_on_postgres_see_each_others_changes_within_a_second() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    let url = toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = toolgate_domain::crypto::MasterKey::generate().to_base64();
    let start = |url: String| {
        let config = toolgate::config::Config {
            listen: "127.0.0.1:0".into(),
            database_url: url,
            data_dir: dir.path().to_path_buf(),
            master_key: Some(key.clone()),
            ..Default::default()
        };
        toolgate::start(config)
    };
    let a = start(url.clone()).await.unwrap();
    let b = start(url).await.unwrap();
    let (_, admin) = a
        .state
        .store
        .create_token(toolgate_domain::model::TokenKind::Admin, "t", None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let api = |path: &str, body: serde_json::Value| {
        http.post(format!("{}{path}", a.base_url))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let up = spawn_upstream("up").await;
    let c: serde_json::Value = api(
        "/api/v1/connectors",
        json!({"name": "up", "url": up.url, "transport": "streamable_http"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let u: serde_json::Value = api(
        "/api/v1/users",
        json!({"user_name": "rita", "display_name": "Rita"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let g: serde_json::Value = api("/api/v1/groups", json!({"display_name": "g"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (cid, uid, gid) = (
        c["id"].as_str().unwrap(),
        u["id"].as_str().unwrap(),
        g["id"].as_str().unwrap(),
    );
    http.put(format!("{}/api/v1/groups/{gid}/members/{uid}", a.base_url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let token: serde_json::Value =
        api(&format!("/api/v1/users/{uid}/tokens"), json!({"name": "x"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    // B knows the caller (and that no tool is allowed) before the change.
    let via_b = mcp_client(&format!("{}/mcp", b.base_url), Some(&token))
        .await
        .unwrap();
    assert!(via_b.list_all_tools().await.unwrap().is_empty());
    // A policy set through A reaches B's tools/list within a second (B learns of it only by
    // the change notification).
    let changed_at = std::time::Instant::now();
    http.put(format!("{}/api/v1/groups/{gid}/policies/{cid}", a.base_url))
        .bearer_auth(&admin)
        .json(&json!({"allow": ["echo"]}))
        .send()
        .await
        .unwrap();
    let mut seen = false;
    while changed_at.elapsed() < std::time::Duration::from_secs(1) {
        let names: Vec<String> = via_b
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        if names == vec!["up__echo".to_string()] {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen, "replica B did not see the policy within 1 s");

    // An open stream on B is cut within a second of disabling the user through A.
    let session = raw_session_at(&http, &b.base_url, &token).await;
    let mut stream = http
        .get(format!("{}/mcp", b.base_url))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let disabled_at = std::time::Instant::now();
    a.state.store.set_user_active(uid, false).await.unwrap();
    a.state.snapshot.publish().await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "B kept the stream open 1 s after A disabled the user"
    );
    assert!(disabled_at.elapsed() < std::time::Duration::from_secs(1));
    // And B refuses the token.
    let res = http
        .post(format!("{}/mcp", b.base_url))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    a.shutdown().await;
    b.shutdown().await;
}
