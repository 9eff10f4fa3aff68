//! Connectors and the policy engine through the admin API and the gateway: connector shapes and
//! write-only secrets, the tool catalog (initial discovery, review of new and changed tools),
//! risk rules, the simulator and "who can call", `/mcp/{connector}`, resources and prompts.

use crate::common::*;
use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};
use toolgate_domain::risk::ToolHints;
use toolgate_domain::store::DiscoveredTool;

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn tool_names(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

async fn patch(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.api(reqwest::Method::PATCH, path, Some(body)).await
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    app.api(reqwest::Method::DELETE, path, None).await
}

/// The newest audit rows of a kind.
async fn audit_rows(app: &TestApp, kind: &str) -> Vec<Value> {
    let (s, b) = app
        .get(&format!("/api/v1/audit?kind={kind}&limit=50"))
        .await;
    assert_eq!(s, 200, "{b}");
    b["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn connector_shapes_secrets_and_changes_through_the_api() {
    let app = spawn_app().await;
    // SSE and stdio shapes as the issue names them; discovery is skipped (nothing listens).
    let (s, sse) = app
        .post(
            "/api/v1/connectors",
            json!({"name": "legacy", "transport": "sse", "url": "http://127.0.0.1:9/sse",
                   "headers": {"X-Api-Key": "sse-secret-1"}, "discover": false}),
        )
        .await;
    assert_eq!(s, 201, "{sse}");
    assert_eq!(sse["transport"], "sse");
    assert_eq!(sse["header_names"], json!(["X-Api-Key"]));
    let (s, stdio) = app
        .post(
            "/api/v1/connectors",
            json!({"name": "local", "transport": "stdio", "command": "npx",
                   "args": ["-y", "@modelcontextprotocol/server-everything", "stdio"],
                   "env": {"API_TOKEN": "env-secret-2"}, "timeout_ms": 5000, "max_concurrency": 2,
                   "discover": false}),
        )
        .await;
    assert_eq!(s, 201, "{stdio}");
    assert_eq!(stdio["command"], "npx");
    assert_eq!(stdio["env_names"], json!(["API_TOKEN"]));
    assert_eq!(stdio["timeout_ms"], 5000);
    let (s, oauth) = app
        .post(
            "/api/v1/connectors",
            json!({"name": "crm", "url": "http://127.0.0.1:9/mcp", "discover": false,
                   "oauth": {"token_url": "https://login.example.com/token", "client_id": "gw",
                             "client_secret": "oauth-secret-3", "scope": "crm.read"}}),
        )
        .await;
    assert_eq!(s, 201, "{oauth}");
    assert_eq!(oauth["oauth"]["client_id"], "gw");

    // Wrong shapes are refused with a clear 4xx and create nothing.
    for (body, needle) in [
        (
            json!({"name": "x1", "transport": "stdio", "url": "http://a/mcp", "command": "npx"}),
            "command, not a url",
        ),
        (
            json!({"name": "x2", "transport": "stdio"}),
            "needs a command",
        ),
        (
            json!({"name": "x3", "url": "http://a/mcp", "env": {"A": "b"}}),
            "stdio transport only",
        ),
        (
            json!({"name": "x4", "url": "http://a/mcp", "oauth": {"token_url": "https://t/x", "client_id": "c"}}),
            "client_secret",
        ),
        (
            json!({"name": "x5", "url": "http://a/mcp", "timeout_ms": 1}),
            "timeout_ms",
        ),
        (
            json!({"name": "x6", "transport": "stdio", "command": "npx", "env": {"1BAD": "x"}}),
            "environment variable name",
        ),
    ] {
        let (s, b) = app.post("/api/v1/connectors", body.clone()).await;
        assert_eq!(s, 422, "{body} -> {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{body} -> {b}"
        );
    }
    let (s, b) = app
        .post(
            "/api/v1/connectors",
            json!({"name": "x7", "transport": "carrier-pigeon", "url": "http://a/mcp"}),
        )
        .await;
    assert!((400..500).contains(&s), "{s} {b}");

    // Listing: health and counts, never a secret value.
    let (s, list) = app.get("/api/v1/connectors").await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let text = list.to_string();
    for secret in ["sse-secret-1", "env-secret-2", "oauth-secret-3"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(list[0]["health"]["status"].is_string(), "{list}");

    // Change: by name, partial; secrets kept unless replaced; audited without values.
    let (s, changed) = patch(
        &app,
        "/api/v1/connectors/local",
        json!({"timeout_ms": 7000, "args": ["server.js"]}),
    )
    .await;
    assert_eq!(s, 200, "{changed}");
    assert_eq!(changed["timeout_ms"], 7000);
    assert_eq!(changed["env_names"], json!(["API_TOKEN"]));
    let (s, b) = patch(
        &app,
        "/api/v1/connectors/local",
        json!({"url": "http://x/mcp"}),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = patch(&app, "/api/v1/connectors/crm", json!({"oauth": null})).await;
    assert_eq!(s, 200, "{b}");
    assert!(b.get("oauth").is_none(), "{b}");
    let (s, b) = patch(&app, "/api/v1/connectors/nope", json!({"enabled": false})).await;
    assert_eq!(s, 404, "{b}");

    // Delete.
    let (s, _) = delete(&app, "/api/v1/connectors/legacy").await;
    assert_eq!(s, 204);
    let (s, _) = app.get("/api/v1/connectors/legacy").await;
    assert_eq!(s, 404);

    let mut all = String::new();
    for kind in [
        "admin.connector.create",
        "admin.connector.update",
        "admin.connector.delete",
    ] {
        let rows = audit_rows(&app, kind).await;
        assert!(!rows.is_empty(), "no {kind} rows");
        all.push_str(&serde_json::to_string(&rows).unwrap());
    }
    for secret in ["sse-secret-1", "env-secret-2", "oauth-secret-3"] {
        assert!(!all.contains(secret), "secret in audit rows");
    }
}

/// A user in group "eng" with rules `rules` on connector "up" (created and discovered through
/// the API against a live upstream).
async fn one_user(rules: Value) -> (TestApp, Upstream, String, String, String) {
    one_user_on(spawn_app().await, rules).await
}

async fn one_user_on(app: TestApp, rules: Value) -> (TestApp, Upstream, String, String, String) {
    let up = spawn_upstream("up").await;
    let (s, c) = app
        .post("/api/v1/connectors", json!({"name": "up", "url": up.url}))
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["discovery"]["ok"], true, "{c}");
    assert_eq!(c["discovery"]["sync"]["initial"], true, "{c}");
    let connector = c["id"].as_str().unwrap().to_string();
    let user = app.create_user("alice@example.com").await;
    let group = app.create_group("eng").await;
    app.add_member(&group, &user).await;
    let (s, b) = app
        .put(
            &format!("/api/v1/groups/{group}/policies/{connector}"),
            rules,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let token = app.personal_token(&user).await;
    (app, up, connector, group, token)
}

#[tokio::test]
async fn the_first_discovery_is_the_catalog_with_suggested_risk() {
    let (app, _up, connector, _g, token) = one_user(json!({"allow": ["*"]})).await;
    let (s, tools) = app
        .get(&format!("/api/v1/connectors/{connector}/tools"))
        .await;
    assert_eq!(s, 200, "{tools}");
    let find = |n: &str| {
        tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} missing from {tools}"))
    };
    for name in ["echo", "add", "delete_branch", "lookup", "fail", "whoami"] {
        assert_eq!(find(name)["review"], "approved", "{name}");
        assert_eq!(find(name)["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(find("delete_branch")["risk"], "high");
    assert!(
        find("delete_branch")["risk_reason"]
            .as_str()
            .unwrap()
            .contains("delete")
    );
    assert_eq!(find("echo")["risk"], "low");
    assert_eq!(find("add")["risk"], "normal");
    // Nothing waits for review, and the agent sees every tool.
    let (_, queue) = app.get("/api/v1/catalog/review").await;
    assert_eq!(queue, json!([]));
    let client = app.mcp_client(&token).await;
    assert_eq!(tool_names(&client).await.len(), 6);
    let (_, status) = app.get("/api/v1/connectors/up").await;
    assert_eq!(status["tools"], 6, "{status}");
    assert_eq!(status["tools_to_review"], 0, "{status}");
}

#[tokio::test]
async fn tools_that_appear_later_wait_for_review_and_changed_ones_are_refused() {
    later_and_changed_tools(spawn_app().await).await;
}

#[tokio::test]
async fn tools_that_appear_later_wait_for_review_on_postgres() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    later_and_changed_tools(spawn_app_postgres().await).await;
}

async fn later_and_changed_tools(app: TestApp) {
    let up = spawn_upstream("up").await;
    let (s, c) = app
        .post(
            "/api/v1/connectors",
            json!({"name": "up", "url": up.url, "discover": false}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let connector = c["id"].as_str().unwrap().to_string();
    // The catalog as it stood when the connector was reviewed: `echo` with another description
    // (so the live one is a change), `add` as it is; nothing else yet.
    let store = &app.server.state.store;
    let live = app
        .server
        .state
        .upstreams
        .tools(&store.connector_with_secrets(&connector).await.unwrap())
        .await
        .unwrap();
    let add = live.iter().find(|t| t.name == "add").unwrap();
    let reviewed = vec![
        DiscoveredTool {
            name: "echo".into(),
            description: "Echo the text back (as reviewed)".into(),
            input_schema: json!({"type": "object"}),
            annotations: ToolHints::default(),
            presentation: Value::Null,
        },
        toolgate::connectors::discovered(add),
    ];
    store.sync_catalog(&connector, &reviewed).await.unwrap();
    app.server.state.snapshot.reload().await.unwrap();

    let user = app.create_user("alice@example.com").await;
    let group = app.create_group("eng").await;
    app.add_member(&group, &user).await;
    app.set_policy(&group, &connector, &["*"], &[]).await;
    let token = app.personal_token(&user).await;
    let client = app.mcp_client(&token).await;

    // The listing shows the drift: new tools recorded as pending, echo as changed; only `add`
    // (unchanged and approved) is served.
    assert_eq!(tool_names(&client).await, vec!["up__add"]);
    let (_, queue) = app.get("/api/v1/catalog/review").await;
    let queued: Vec<(String, String)> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["review"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        queued.contains(&("echo".into(), "changed".into())),
        "{queue}"
    );
    assert!(
        queued.contains(&("delete_branch".into(), "pending".into())),
        "{queue}"
    );
    let sync_rows = audit_rows(&app, "catalog.sync").await;
    assert!(!sync_rows.is_empty());

    let err = client
        .call_tool(
            CallToolRequestParams::new("up__delete_branch")
                .with_arguments(args(json!({"name": "main"}))),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");
    let err = client
        .call_tool(
            CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "x"}))),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");
    let denied = audit_rows(&app, "tool_call").await;
    let rules: Vec<&str> = denied.iter().filter_map(|e| e["rule"].as_str()).collect();
    assert!(
        rules.iter().any(|r| r.contains("awaits an admin's review")),
        "{rules:?}"
    );
    assert!(rules.iter().any(|r| r.contains("re-approval")), "{rules:?}");

    // With the setting off, a changed tool is served (and the rule says it changed).
    let (s, _) = app
        .put(
            "/api/v1/settings/catalog",
            json!({"block_changed_tools": false}),
        )
        .await;
    assert_eq!(s, 200);
    let ok = client
        .call_tool(
            CallToolRequestParams::new("up__echo").with_arguments(args(json!({"text": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&ok), "up: x");
    app.put(
        "/api/v1/settings/catalog",
        json!({"block_changed_tools": true}),
    )
    .await;

    // Review: approve delete_branch and the changed echo, reject fail.
    for (tool, decision) in [
        ("delete_branch", "approve"),
        ("echo", "approve"),
        ("fail", "reject"),
    ] {
        let (s, b) = app
            .post(
                &format!("/api/v1/connectors/up/tools/{tool}/review"),
                json!({"decision": decision}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = app
        .post(
            "/api/v1/connectors/up/tools/echo/review",
            json!({"decision": "maybe"}),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let names = tool_names(&client).await;
    assert!(
        names.contains(&"up__delete_branch".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"up__echo".to_string()), "{names:?}");
    assert!(!names.contains(&"up__fail".to_string()), "{names:?}");
    let ok = client
        .call_tool(
            CallToolRequestParams::new("up__delete_branch")
                .with_arguments(args(json!({"name": "main"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&ok), "deleted main");
    assert!(!audit_rows(&app, "admin.catalog.review").await.is_empty());
}

#[tokio::test]
async fn risk_rules_decide_and_the_simulator_explains() {
    risk_rules_and_simulator(spawn_app().await).await;
}

#[tokio::test]
async fn risk_rules_decide_and_the_simulator_explains_on_postgres() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    risk_rules_and_simulator(spawn_app_postgres().await).await;
}

async fn risk_rules_and_simulator(app: TestApp) {
    // Readers: everything up to Low. Ops (second user): everything but High and above.
    let (app, _up, connector, readers, token) =
        one_user_on(app, json!({"allow_risk": "low", "block": ["whoami"]})).await;
    let client = app.mcp_client(&token).await;
    assert_eq!(tool_names(&client).await, vec!["up__echo"]);

    let ops = app.create_group("ops").await;
    let bob = app.create_user("bob@example.com").await;
    app.add_member(&ops, &bob).await;
    let (s, b) = app
        .put(
            &format!("/api/v1/groups/{ops}/policies/{connector}"),
            json!({"allow": ["*"], "block_risk": "high"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["block_risk"], "high");
    let bob_client = app.mcp_client(&app.personal_token(&bob).await).await;
    let names = tool_names(&bob_client).await;
    assert!(
        !names.contains(&"up__delete_branch".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"up__add".to_string()), "{names:?}");

    // The simulator gives every tool with the deciding rule.
    let (s, sim) = app
        .get("/api/v1/policy/simulate?user=alice@example.com")
        .await;
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["subject"]["groups"], json!(["eng"]));
    let tools = sim["connectors"][0]["tools"].as_array().unwrap().clone();
    let rule = |n: &str| {
        tools
            .iter()
            .find(|t| t["tool"] == n)
            .map(|t| {
                (
                    t["allowed"].as_bool().unwrap(),
                    t["rule"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    assert_eq!(
        rule("echo"),
        (
            true,
            "allowed by group \"eng\" rule \"risk <= Low\" on connector \"up\" (tool risk Low)"
                .into()
        )
    );
    assert!(!rule("add").0 && rule("add").1.contains("default deny"));
    let (_, sim_ops) = app
        .get(&format!("/api/v1/policy/simulate?group={ops}"))
        .await;
    let del = sim_ops["connectors"][0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == "delete_branch")
        .unwrap()
        .clone();
    assert_eq!(del["allowed"], false);
    assert!(
        del["rule"].as_str().unwrap().contains("risk >= High"),
        "{del}"
    );
    let (s, b) = app.get("/api/v1/policy/simulate").await;
    assert_eq!(s, 422, "{b}");
    let (s, _) = app.get("/api/v1/policy/simulate?user=nobody").await;
    assert_eq!(s, 404);

    // An admin lowers lookup's risk: Readers get it at once.
    let (s, b) = app
        .put(
            "/api/v1/connectors/up/tools/lookup/risk",
            json!({"risk": "low"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["risk_reason"], "set by an admin");
    assert_eq!(tool_names(&client).await, vec!["up__echo", "up__lookup"]);
    // The explicit name block beats the risk allow.
    app.put(
        "/api/v1/connectors/up/tools/whoami/risk",
        json!({"risk": "low"}),
    )
    .await;
    assert!(
        !tool_names(&client)
            .await
            .contains(&"up__whoami".to_string())
    );

    // Who can call: groups and people, with the rule.
    let (s, who) = app
        .get("/api/v1/policy/who-can-call?connector=up&tool=add")
        .await;
    assert_eq!(s, 200, "{who}");
    let allowed: Vec<&str> = who["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["allowed"] == true)
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(allowed, vec!["bob@example.com"]);
    let g: Vec<(&str, bool)> = who["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["allowed"].as_bool().unwrap()))
        .collect();
    assert_eq!(g, vec![("eng", false), ("ops", true)]);
    let _ = readers;
    let (s, _) = app
        .get("/api/v1/policy/who-can-call?connector=nope&tool=add")
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn one_connector_alone_at_its_own_endpoint() {
    let (app, _up, _c, _g, token) = one_user(json!({"allow": ["echo"]})).await;
    let scoped = mcp_client(&app.url("/mcp/up"), Some(&token)).await.unwrap();
    assert_eq!(tool_names(&scoped).await, vec!["echo"]);
    let ok = scoped
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "solo"}))))
        .await
        .unwrap();
    assert_eq!(first_text(&ok), "up: solo");
    // Same policy as the aggregate: a tool not allowed stays refused under its own name.
    let err = scoped
        .call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 2}))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");
    // An unknown connector shows nothing; no token is 401 there too.
    let other = mcp_client(&app.url("/mcp/nope"), Some(&token))
        .await
        .unwrap();
    assert!(tool_names(&other).await.is_empty());
    assert!(mcp_client(&app.url("/mcp/up"), None).await.is_err());
    let rows = audit_rows(&app, "tool_call").await;
    assert!(
        rows.iter()
            .any(|e| e["tool"] == "echo" && e["connector"] == "up")
    );
}

#[tokio::test]
async fn resources_and_prompts_follow_their_own_rules() {
    let (app, _up, _c, _g, token) = one_user(json!({
        "allow": ["echo"], "resources": ["file:///public/*"], "prompts": ["summ*"]
    }))
    .await;
    let client = app.mcp_client(&token).await;
    let resources: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert_eq!(resources, vec![format!("up+{PUBLIC_DOC}")]);
    let read = client
        .read_resource(ReadResourceRequestParams::new(format!("up+{PUBLIC_DOC}")))
        .await
        .unwrap();
    let text = serde_json::to_value(&read).unwrap();
    assert_eq!(text["contents"][0]["text"], "up: public readme", "{text}");
    assert_eq!(text["contents"][0]["uri"], format!("up+{PUBLIC_DOC}"));
    let err = client
        .read_resource(ReadResourceRequestParams::new(format!("up+{PRIVATE_DOC}")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");

    let prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(prompts, vec!["up__summarise"]);
    let got = client
        .get_prompt(GetPromptRequestParams::new("up__summarise"))
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&got)
            .unwrap()
            .contains("up: prompt summarise"),
        "{got:?}"
    );
    let err = client
        .get_prompt(GetPromptRequestParams::new("up__internal_review"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");

    // At the connector's own endpoint, the upstream's own URIs and names.
    let scoped = mcp_client(&app.url("/mcp/up"), Some(&token)).await.unwrap();
    let uris: Vec<String> = scoped
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert_eq!(uris, vec![PUBLIC_DOC.to_string()]);
    let read = scoped
        .read_resource(ReadResourceRequestParams::new(PUBLIC_DOC))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap()["contents"][0]["uri"],
        PUBLIC_DOC
    );

    // Audited: the refused private read with its rule, the allowed public one.
    let reads = audit_rows(&app, "resource_read").await;
    assert!(reads.iter().any(|e| e["decision"] == "deny"
        && e["tool"] == PRIVATE_DOC
        && e["rule"].as_str().unwrap().contains("default deny")));
    assert!(
        reads
            .iter()
            .any(|e| e["decision"] == "allow" && e["outcome"] == "ok")
    );
    assert!(!audit_rows(&app, "prompt_get").await.is_empty());
}

/// A policy applied with the CLI to the SQLite file a server is running on takes effect in that
/// server within a few seconds, without a restart.
#[tokio::test]
async fn a_cli_policy_apply_reaches_a_running_sqlite_server() {
    let (app, _up, _c, _g, token) = one_user(json!({"allow": ["echo"]})).await;
    let client = app.mcp_client(&token).await;
    assert_eq!(tool_names(&client).await, vec!["up__echo"]);
    let cfg = &app.server.state.config;
    let file = cfg.data_dir.join("policy.toml");
    std::fs::write(
        &file,
        "[[rule]]\ngroup = \"eng\"\nconnector = \"up\"\nallow = [\"echo\", \"add\"]\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["policy", "apply", "-f"])
        .arg(&file)
        .env_remove("TOOLGATE_CONFIG")
        .env_remove("TOOLGATE_MASTER_KEY")
        .env("TOOLGATE_DATABASE_URL", &cfg.database_url)
        .env("TOOLGATE_DATA_DIR", &cfg.data_dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let names = tool_names(&client).await;
        if names == vec!["up__add", "up__echo"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server still lists {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
