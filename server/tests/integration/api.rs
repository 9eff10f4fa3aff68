//! The admin API: authentication, the documented endpoints, validation (4xx in JSON, nothing
//! written), secrets never returned, probes and the OpenAPI document.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn admin_api_needs_an_admin_token() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/api/v1/connectors"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let user = app.create_user("carol").await;
    let personal = app.personal_token(&user).await;
    for token in [personal.as_str(), "tga_wrong", ""] {
        let res = app
            .http
            .get(app.url("/api/v1/connectors"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "token {token:?}");
    }
}

#[tokio::test]
async fn connectors_are_created_listed_and_their_secrets_stay_hidden() {
    let app = spawn_app().await;
    let (s, c) = app
        .post("/api/v1/connectors", json!({"name": "github", "url": "https://mcp.example.com/mcp", "transport": "streamable_http", "headers": {"Authorization": "Bearer ghp_topsecret"}}))
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["name"], "github");
    assert_eq!(c["transport"], "streamable_http");
    assert_eq!(c["header_names"], json!(["Authorization"]));
    assert!(!c.to_string().contains("ghp_topsecret"));
    let (s, list) = app.get("/api/v1/connectors").await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("ghp_topsecret"));
    // Encrypted at rest: the stored blob does not contain the value.
    let raw = app
        .server
        .state
        .store
        .raw_sealed_headers(c["id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(
        raw.starts_with("v1:") && !raw.contains("ghp_topsecret"),
        "{raw}"
    );
}

#[tokio::test]
async fn bad_connector_input_is_a_clear_4xx_and_writes_nothing() {
    let app = spawn_app().await;
    let ok =
        json!({"name": "jira", "url": "http://127.0.0.1:9/mcp", "transport": "streamable_http"});
    assert_eq!(app.post("/api/v1/connectors", ok.clone()).await.0, 201);
    let cases: Vec<(Value, u16, &str)> = vec![
        (ok.clone(), 409, "already exists"),
        (
            json!({"name": "Bad_Name", "url": "http://x/mcp", "transport": "streamable_http"}),
            422,
            "connector name",
        ),
        (
            json!({"name": "x", "url": "ftp://x", "transport": "streamable_http"}),
            422,
            "url",
        ),
        (
            json!({"name": "x", "url": "http://x/mcp", "transport": "carrier_pigeon"}),
            400,
            "transport",
        ),
        (
            json!({"name": "x", "url": "http://x/mcp", "transport": "streamable_http", "colour": "red"}),
            400,
            "unknown field",
        ),
        (
            json!({"name": "x", "url": "http://x/mcp", "transport": "streamable_http", "headers": {"Host": "a"}}),
            422,
            "Host",
        ),
        (
            json!({"name": "x", "url": "http://x/mcp", "transport": "streamable_http", "headers": {"X-A": "a\nb"}}),
            422,
            "X-A",
        ),
        (
            json!({"url": "http://x/mcp", "transport": "streamable_http"}),
            400,
            "name",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, b) = app.post("/api/v1/connectors", body.clone()).await;
        assert_eq!(s, status, "{body} -> {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let res = app
        .http
        .post(app.url("/api/v1/connectors"))
        .bearer_auth(&app.admin_token)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .http
        .post(app.url("/api/v1/connectors"))
        .bearer_auth(&app.admin_token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let (_, list) = app.get("/api/v1/connectors").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing else was written"
    );
}

#[tokio::test]
async fn users_groups_members_policies_and_tokens() {
    let app = spawn_app().await;
    let user = app.create_user("Dave@Example.com").await;
    let (s, b) = app
        .post(
            "/api/v1/users",
            json!({"user_name": "dave@example.com", "display_name": "D"}),
        )
        .await;
    assert_eq!(s, 409, "user names are unique case-insensitively: {b}");
    assert_eq!(
        app.post(
            "/api/v1/users",
            json!({"user_name": "has space", "display_name": "x"})
        )
        .await
        .0,
        422
    );
    assert_eq!(
        app.post(
            "/api/v1/users",
            json!({"user_name": "u", "display_name": "x", "admin": true})
        )
        .await
        .0,
        400
    );

    let group = app.create_group("Senior Engineers").await;
    assert_eq!(
        app.post(
            "/api/v1/groups",
            json!({"display_name": "senior engineers"})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        app.post("/api/v1/groups", json!({"display_name": "  "}))
            .await
            .0,
        422
    );

    // Membership is idempotent; unknown ids are 404 and write nothing.
    app.add_member(&group, &user).await;
    app.add_member(&group, &user).await;
    let (s, b) = app
        .put(&format!("/api/v1/groups/{group}/members/nope"), json!(null))
        .await;
    assert_eq!(s, 404, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("user"));
    assert_eq!(
        app.put(&format!("/api/v1/groups/nope/members/{user}"), json!(null))
            .await
            .0,
        404
    );
    let members = app.server.state.store.group_members(&group).await.unwrap();
    assert_eq!(members.len(), 1);

    let connector = app.create_connector("svc", "http://127.0.0.1:9/mcp").await;
    let (s, p) = app
        .put(
            &format!("/api/v1/groups/{group}/policies/{connector}"),
            json!({"allow": ["get_*", "get_*", "create_pr"], "block": ["delete_*"]}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["allow"], json!(["get_*", "create_pr"]));
    assert_eq!(p["block"], json!(["delete_*"]));
    assert_eq!(p["connector_name"], "svc");
    let (s, b) = app
        .put(
            &format!("/api/v1/groups/{group}/policies/{connector}"),
            json!({"allow": ["rm -rf"]}),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(
        app.put(
            &format!("/api/v1/groups/{group}/policies/nope"),
            json!({"allow": []})
        )
        .await
        .0,
        404
    );
    // The rejected update changed nothing.
    let stored = app.server.state.store.group_policies(&group).await.unwrap();
    assert_eq!(stored[0].allow, vec!["get_*", "create_pr"]);

    let (s, t) = app
        .post(
            &format!("/api/v1/users/{user}/tokens"),
            json!({"name": "laptop"}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let token = t["token"].as_str().unwrap();
    assert!(token.starts_with("tgp_") && token.len() > 40);
    assert_eq!(
        app.post("/api/v1/users/nope/tokens", json!({"name": "x"}))
            .await
            .0,
        404
    );
    assert_eq!(
        app.post(&format!("/api/v1/users/{user}/tokens"), json!({"name": ""}))
            .await
            .0,
        422
    );

    let (s, users) = app.get("/api/v1/users").await;
    assert_eq!(s, 200);
    assert_eq!(users[0]["user_name"], "Dave@Example.com");
    let (s, groups) = app.get("/api/v1/groups").await;
    assert_eq!(s, 200);
    assert_eq!(groups[0]["display_name"], "Senior Engineers");
}

#[tokio::test]
async fn audit_paging_parameters_are_validated() {
    let app = spawn_app().await;
    for q in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "sort=asc",
        "cursor=nope",
        "decision=maybe",
        "from=yesterday",
    ] {
        let (s, b) = app.get(&format!("/api/v1/audit?{q}")).await;
        assert_eq!(s, 400, "{q}: {b}");
    }
    let (s, b) = app.get("/api/v1/audit?limit=5&kind=tool_call").await;
    assert_eq!(s, 200);
    assert_eq!(b["items"], json!([]));
    let (s, b) = app.get("/api/v1/audit/export?format=xml").await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = app.get("/api/v1/audit/999999").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_are_json_errors() {
    let app = spawn_app().await;
    let (s, b) = app.get("/api/v1/nothing-here").await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "not_found");
    let (s, b) = app.api(Method::DELETE, "/api/v1/connectors", None).await;
    assert_eq!(s, 405);
    assert_eq!(b["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn openapi_document_lists_the_endpoints() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    for p in [
        "/api/v1/connectors",
        "/api/v1/users",
        "/api/v1/groups",
        "/api/v1/groups/{group_id}/members/{user_id}",
        "/api/v1/groups/{group_id}/policies/{connector_id}",
        "/api/v1/users/{user_id}/tokens",
        "/api/v1/audit",
    ] {
        assert!(doc["paths"].get(p).is_some(), "missing {p}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn probes() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.http.get(app.url("/healthz")).send().await.unwrap();
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("toolgate_http_requests_total"), "{text}");
    // Every response carries a request id.
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(res.headers().get("x-request-id").is_some());
    // Once the database is closed, readiness says so.
    app.server.state.store.close().await;
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn dashboard_pages_need_a_session_and_writes_need_same_origin() {
    let app = spawn_app().await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirect
        .get(app.url("/connectors"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");
    let res = no_redirect.get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "{html}");
    // A server function without a session is refused.
    let res = no_redirect
        .post(app.url("/fn/connector_statuses"))
        .header("origin", app.base.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A cross-site form post is refused before it reaches the handler.
    let res = no_redirect
        .post(app.url("/fn/login"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=a&password=b")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn local_admin_sign_in_sets_a_safe_cookie() {
    let app = spawn_app().await;
    app.server
        .state
        .store
        .create_admin("root", "correct horse battery")
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let wrong = client
        .post(app.url("/fn/login"))
        .header("origin", app.base.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=root&password=wrong+password%21%21")
        .send()
        .await
        .unwrap();
    assert!(
        wrong.status().is_client_error() || wrong.status().is_server_error(),
        "{}",
        wrong.status()
    );
    // Whatever cookie a failed sign-in left, it does not open the dashboard.
    if let Some(c) = wrong.headers().get("set-cookie") {
        let c = c.to_str().unwrap().split(';').next().unwrap().to_string();
        let page = client
            .get(app.url("/connectors"))
            .header("cookie", c)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 303);
    }
    let ok = client
        .post(app.url("/fn/login"))
        .header("origin", app.base.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=root&password=correct+horse+battery")
        .send()
        .await
        .unwrap();
    assert!(
        ok.status().is_redirection() || ok.status().is_success(),
        "{}",
        ok.status()
    );
    let cookie = ok
        .headers()
        .get("set-cookie")
        .expect("session cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("toolgate_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = client
        .get(app.url("/connectors"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // The stored session key is a hash, not the cookie value.
    let id = session.split_once('=').unwrap().1;
    assert!(
        app.server
            .state
            .store
            .load_session(id)
            .await
            .unwrap()
            .is_none()
    );
}

/// Every response carries the security headers; the consent pages keep their stricter policy;
/// HSTS only when the public URL is HTTPS.
#[tokio::test]
async fn security_headers_everywhere_hsts_over_https() {
    let app = spawn_app().await;
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let page = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        header(&page, "content-security-policy").is_some_and(|c| c
            .contains("frame-ancestors 'none'")
            && c.contains("object-src 'none'")),
        "{:?}",
        page.headers()
    );
    assert_eq!(header(&page, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        header(&page, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        header(&page, "referrer-policy").as_deref(),
        Some("same-origin")
    );
    assert_eq!(
        header(&page, "strict-transport-security"),
        None,
        "plain HTTP"
    );
    let api = app
        .http
        .get(app.url("/api/v1/users"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert_eq!(
        header(&api, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    // The authorization endpoint's own pages keep their stricter policy.
    let consent = app
        .http
        .get(app.url("/oauth/authorize?client_id=nobody"))
        .send()
        .await
        .unwrap();
    assert!(
        header(&consent, "content-security-policy")
            .is_some_and(|c| c.starts_with("default-src 'none'")),
        "{:?}",
        consent.headers()
    );
    assert_eq!(
        header(&consent, "referrer-policy").as_deref(),
        Some("no-referrer")
    );

    let https = crate::common::spawn_app_with(|c| {
        c.public_url = Some("https://toolgate.example.com".into())
    })
    .await;
    let res = https
        .http
        .get(format!("http://{}/healthz", https.server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&res, "strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
}
