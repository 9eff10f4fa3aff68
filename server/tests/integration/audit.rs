//! The audit log end to end: what a tool call records (before it is forwarded), DLP on tool
//! traffic, fail-open, admin changes, search and export over the API.

use crate::common::{TestApp, first_text, spawn_app, spawn_app_with, spawn_upstream};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use toolgate_domain::crypto::sha256_hex;
use toolgate_domain::model::AuditEvent;
use toolgate_domain::store::NewAuditEvent;

struct Setup {
    app: TestApp,
    _up: crate::common::Upstream,
    token: String,
}

async fn setup_on(app: TestApp) -> Setup {
    let up = spawn_upstream("up").await;
    let connector = app.create_connector("up", &up.url).await;
    let user = app.create_user("alice@example.com").await;
    let group = app.create_group("eng").await;
    app.add_member(&group, &user).await;
    app.set_policy(&group, &connector, &["echo", "lookup"], &[])
        .await;
    let token = app.personal_token(&user).await;
    Setup {
        app,
        _up: up,
        token,
    }
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn raw_events(app: &TestApp) -> Vec<AuditEvent> {
    app.server
        .state
        .store
        .audit_events_after(0, 10_000)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_call_is_recorded_before_it_is_forwarded_with_who_what_and_where() {
    let s = setup_on(spawn_app().await).await;
    let via = s.app.mcp_client(&s.token).await;
    let sent = json!({"text": "mail bob@example.com"});
    let r = via
        .call_tool(CallToolRequestParams::new("up__echo").with_arguments(args(sent.clone())))
        .await
        .unwrap();
    // DLP is on by default and redacts: the model never sees the address.
    assert_eq!(first_text(&r), "up: mail [REDACTED:email]");

    let events = raw_events(&s.app).await;
    let call = events
        .iter()
        .find(|e| e.kind == "tool_call")
        .expect("call event");
    let result = events
        .iter()
        .find(|e| e.kind == "tool_result")
        .expect("result event");
    assert!(call.id < result.id, "the call is durable before its result");
    assert_eq!(call.outcome.as_str(), "forwarded");
    assert_eq!(call.call_id, result.call_id);
    assert_eq!(call.subject_kind.as_deref(), Some("person"));
    assert_eq!(call.ip.as_deref(), Some("127.0.0.1"));
    assert!(call.session_id.as_deref().is_some_and(|s| !s.is_empty()));
    assert!(
        call.client_name
            .as_deref()
            .is_some_and(|c| c.starts_with("rmcp")),
        "{call:?}"
    );
    assert_eq!(
        call.user_agent.as_deref(),
        Some(crate::common::TEST_USER_AGENT)
    );
    let logged = call.args_redacted.as_deref().unwrap();
    assert!(logged.contains("[REDACTED:email]"), "{logged}");
    assert!(!logged.contains("bob@example.com"), "{logged}");
    assert_eq!(
        call.args_hash.as_deref(),
        Some(sha256_hex(sent.to_string().as_bytes()).as_str())
    );
    assert_eq!(call.bytes_in, Some(sent.to_string().len() as i64));
    assert_eq!(result.outcome.as_str(), "ok");
    assert_eq!(result.dlp_findings.get("email"), Some(&1));
    assert!(result.bytes_out.unwrap() > 0);

    // The search shows one row per call, with its result folded in.
    let (st, page) = s.app.get("/api/v1/audit?kind=tool_call").await;
    assert_eq!(st, 200);
    let row = &page["items"][0];
    assert_eq!(row["outcome"], "ok");
    assert_eq!(row["dlp_findings"]["email"], 1);
    let report = s
        .app
        .server
        .state
        .store
        .verify_audit_chain(None, None)
        .await
        .unwrap();
    assert!(report.first_break.is_none(), "{report:?}");
}

#[tokio::test]
async fn dlp_actions_follow_connector_and_group_settings() {
    let s = setup_on(spawn_app().await).await;
    let via = s.app.mcp_client(&s.token).await;
    let secret = "AKIAABCDEFGHIJKLMNOP";
    let call = |text: &str| {
        CallToolRequestParams::new("up__echo").with_arguments(args(json!({ "text": text })))
    };

    // Log only: the response is untouched, the finding is counted.
    let (st, b) = s
        .app
        .put(
            "/api/v1/settings/dlp",
            json!({"default_action": "log_only"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let r = via.call_tool(call(secret)).await.unwrap();
    assert_eq!(first_text(&r), format!("up: {secret}"));

    // Block on this connector: the response is withheld with a clear error.
    let (st, b) = s
        .app
        .put(
            "/api/v1/settings/dlp",
            json!({"default_action": "log_only", "connector_actions": {"up": "block"}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let err = via.call_tool(call(secret)).await.unwrap_err();
    assert!(err.to_string().contains("withheld"), "{err}");
    // A harmless response still passes.
    let ok = via.call_tool(call("hello")).await.unwrap();
    assert_eq!(first_text(&ok), "up: hello");

    // The caller's group asks for redaction; the strictest action wins (block beats redact).
    let (st, _) = s
        .app
        .put(
            "/api/v1/settings/dlp",
            json!({"default_action": "log_only", "group_actions": {"eng": "redact"}}),
        )
        .await;
    assert_eq!(st, 200);
    let r = via.call_tool(call(secret)).await.unwrap();
    assert_eq!(first_text(&r), "up: [REDACTED:aws_access_key]");
    // Structured content is scanned too, recursively.
    let r = via
        .call_tool(
            CallToolRequestParams::new("up__lookup")
                .with_arguments(args(json!({"text": "carol@example.org"}))),
        )
        .await
        .unwrap();
    let structured = r.structured_content.expect("structured");
    assert_eq!(structured["record"]["owner"]["contact"], "[REDACTED:email]");
    assert_eq!(structured["record"]["tags"][1], "[REDACTED:email]");

    // A bad setting is refused and changes nothing.
    let (st, b) = s
        .app
        .put(
            "/api/v1/settings/dlp",
            json!({"custom": [{"name": "broken", "pattern": "("}]}),
        )
        .await;
    assert_eq!(st, 422, "{b}");
    let (_, current) = s.app.get("/api/v1/settings/dlp").await;
    assert_eq!(current["group_actions"]["eng"], "redact");

    let outcomes: Vec<(String, String)> = raw_events(&s.app)
        .await
        .into_iter()
        .filter(|e| e.kind == "tool_result")
        .map(|e| {
            (
                e.outcome.as_str().to_string(),
                serde_json::to_string(&e.dlp_findings).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("ok".into(), r#"{"aws_access_key":1}"#.into()),
            ("blocked".into(), r#"{"aws_access_key":1}"#.into()),
            ("ok".into(), "{}".into()),
            ("ok".into(), r#"{"aws_access_key":1}"#.into()),
            // The structured result comes twice: as structuredContent and as its text copy.
            ("ok".into(), r#"{"email":4}"#.into()),
        ]
    );
    // The secret is nowhere in the log.
    let (_, dump) = s.app.get("/api/v1/audit?limit=1000").await;
    let dump = dump.to_string();
    assert!(!dump.contains(secret), "a secret reached the audit log");
}

#[tokio::test]
async fn fail_open_forwards_calls_when_the_log_is_down() {
    let s = setup_on(
        spawn_app_with(|c| {
            c.audit_fail_open = true;
            c.audit_retention_days = 90;
        })
        .await,
    )
    .await;
    // The mode is visible to admins (and auditors on the Audit page).
    let (st, status) = s.app.get("/api/v1/audit/integrity").await;
    assert_eq!(st, 200);
    assert_eq!(status["policy"]["fail_open"], true);
    assert_eq!(status["policy"]["retention_days"], 90);
    assert_eq!(status["policy"]["sqlite_synchronous"], "full");
    let via = s.app.mcp_client(&s.token).await;
    s.app.server.state.store.close().await;
    let r = via
        .call_tool(
            CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "up: x");
}

#[tokio::test]
async fn admin_changes_are_audited_without_secrets() {
    let s = setup_on(spawn_app().await).await;
    let (_, page) = s.app.get("/api/v1/audit?kind=admin.connector.create").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["principal"], "token:tests");
    let detail: Value = serde_json::from_str(items[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["after"]["name"], "up");
    assert!(detail["before"].is_null());
    for kind in [
        "admin.user.create",
        "admin.group.create",
        "admin.group.member_add",
        "admin.policy.put",
        "admin.token.create",
    ] {
        let (_, page) = s.app.get(&format!("/api/v1/audit?kind={kind}")).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{kind}");
    }
    let (st, export) = {
        let res = s
            .app
            .http
            .get(s.app.url("/api/v1/audit/export?format=jsonl"))
            .bearer_auth(&s.app.admin_token)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    };
    assert_eq!(st, 200);
    assert!(!export.contains("s3cret-value"), "connector header leaked");
    assert!(!export.contains(&s.token), "personal token leaked");
}

#[tokio::test]
async fn exports_stream_every_matching_event_as_csv_and_json_lines() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let now = store.clock().now();
    for batch in 0..3 {
        let events: Vec<NewAuditEvent> = (0..500)
            .map(|i| NewAuditEvent {
                tool: Some(format!("t{batch}-{i}")),
                detail: Some(if i == 7 {
                    "=cmd|' /C calc'!A0".into()
                } else {
                    "x".into()
                }),
                ..NewAuditEvent::new(now, "bulk", "loader")
            })
            .collect();
        store.insert_audit_batch(&events).await.unwrap();
    }
    let get = |q: &str| {
        let req = app
            .http
            .get(app.url(&format!("/api/v1/audit/export?{q}")))
            .bearer_auth(&app.admin_token);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            let ct = res.headers()["content-type"].to_str().unwrap().to_string();
            (ct, res.text().await.unwrap())
        }
    };
    let (ct, jsonl) = get("format=jsonl&kind=bulk").await;
    assert_eq!(ct, "application/jsonl");
    let ids: Vec<i64> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1500, "all pages, not just the first");
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );

    let (ct, csv) = get("format=csv&kind=bulk").await;
    assert!(ct.starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "id");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1500);
    let detail_col = headers.iter().position(|h| h == "detail").unwrap();
    assert!(
        rows.iter().any(|r| r[detail_col].starts_with("'=cmd")),
        "formula cells are defused"
    );
    // Filters apply to exports exactly as to the list.
    let (_, some) = get("format=jsonl&kind=bulk&tool=t1-3").await;
    assert_eq!(some.lines().count(), 1);
}
