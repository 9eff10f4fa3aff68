//! Request limits and rate limits over real sockets: oversized bodies (declared or streamed) and
//! headers, deeply nested JSON, long batches and too many requests are refused in each
//! protocol's own error format (JSON-RPC, SCIM, OAuth, the admin API), and change nothing.

use crate::common::*;
use serde_json::{Value, json};
use toolgate_domain::model::TokenKind;

async fn body_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
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

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn oversized_bodies_are_refused_in_each_protocols_format_and_change_nothing() {
    let app = spawn_app_with(|c| c.max_request_bytes = 64 * 1024).await;
    let scim = scim_token(&app).await;
    let pad = "x".repeat(100 * 1024);

    // MCP: checked before authentication, so no one can make the gateway buffer it.
    let res = app
        .http
        .post(app.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad": pad}}).to_string())
        .send()
        .await
        .unwrap();
    let (status, v) = body_of(res).await;
    assert_eq!(status, 413);
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["error"]["code"], -32600);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("65536"),
        "{v}"
    );

    // SCIM: a SCIM error resource; no user was created.
    let res = app
        .http
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&scim)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"big@example.com","displayName": pad})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/scim+json"
    );
    let (status, v) = body_of(res).await;
    assert_eq!(status, 413);
    assert_eq!(v["status"], "413");
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let (_, users) = app.get("/api/v1/users").await;
    assert_eq!(users.as_array().map(Vec::len), Some(0), "{users}");

    // Admin API.
    let (status, v) = app
        .post(
            "/api/v1/users",
            json!({"user_name": "big", "display_name": pad}),
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(v["error"]["code"], "payload_too_large");
    let (_, users) = app.get("/api/v1/users").await;
    assert_eq!(users.as_array().map(Vec::len), Some(0), "{users}");

    // OAuth: RFC 6749's error object.
    let token_request = |code: &str| {
        let (app, body) = (&app, format!("grant_type=authorization_code&code={code}"));
        async move {
            let res = app
                .http
                .post(app.url("/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            body_of(res).await
        }
    };
    let (status, v) = token_request(&pad).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"], "invalid_request");

    // A body without Content-Length (chunked) is cut off as it streams.
    let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
    let res = app
        .http
        .post(app.url("/mcp"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    // Under the limit the endpoint itself answers (here: the token endpoint's own refusal).
    let (status, v) = token_request(&pad[..60_000]).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"], "invalid_client", "{v}");
}

#[tokio::test]
async fn oversized_headers_deep_json_and_long_batches_are_refused() {
    let app = spawn_app().await;
    let user = app.create_user("ada").await;
    let token = app.personal_token(&user).await;
    let mcp = |body: String| {
        app.http
            .post(app.url("/mcp"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
    };

    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-padding", "y".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);

    // 200 levels: deeper than the default 64 (serde_json alone would stop at 128 with a
    // recursion error; this is refused before any parser runs).
    let (status, v) = body_of(
        mcp(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":{}}}}}"#,
            nested(200)
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], -32600);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("deeper"),
        "{v}"
    );
    let scim = scim_token(&app).await;
    let res = app
        .http
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&scim)
        .header("content-type", "application/scim+json")
        .body(format!(r#"{{"userName":"deep","x":{}}}"#, nested(100)))
        .send()
        .await
        .unwrap();
    let (status, v) = body_of(res).await;
    assert_eq!(status, 400);
    assert_eq!(v["scimType"], "invalidSyntax");

    // A batch longer than max_batch_messages (32).
    let batch: Vec<Value> = (0..40)
        .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"ping"}))
        .collect();
    let (status, v) = body_of(mcp(Value::from(batch).to_string()).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 32"),
        "{v}"
    );

    // Nesting within the limit reaches the MCP handler (which opens a session).
    let res = mcp(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"experimental":{"x":{"y":{"z":[[[1]]]}}}},
            "clientInfo":{"name":"raw","version":"1"}}})
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("mcp-session-id"));
}

/// Sends `n` requests at once and returns their statuses and bodies.
async fn burst(n: usize, make: impl Fn() -> reqwest::RequestBuilder) -> Vec<(u16, Value, bool)> {
    let sends = (0..n).map(|_| {
        let req = make();
        async move {
            let res = req.send().await.unwrap();
            let retry = res.headers().contains_key("retry-after");
            let (s, v) = body_of(res).await;
            (s, v, retry)
        }
    });
    futures::future::join_all(sends).await
}

#[tokio::test]
async fn mcp_requests_beyond_the_rate_get_429_per_credential_and_guessing_is_throttled() {
    let app = spawn_app_with(|c| {
        c.rate_limit_mcp_per_sec = 1; // bursts of 2
        c.rate_limit_oauth_per_min = 5;
    })
    .await;
    let ada = app.create_user("ada").await;
    let bob = app.create_user("bob").await;
    let (ada, bob) = (
        app.personal_token(&ada).await,
        app.personal_token(&bob).await,
    );
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}})
    .to_string();
    let post = |token: &str| {
        app.http
            .post(app.url("/mcp"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.clone())
    };
    let answers = burst(20, || post(&ada)).await;
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    let served = answers.iter().filter(|(s, _, _)| *s == 200).count();
    assert!(served >= 2, "the burst is served: {answers:?}");
    assert!(refused.len() >= 10, "the rest is refused: {answers:?}");
    for (_, v, retry) in &refused {
        assert!(retry, "Retry-After on every 429");
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["error"]["code"], -32000);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rate limit"),
            "{v}"
        );
    }
    // Another person has a budget of their own.
    let res = post(&bob).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Guessing tokens: five refusals per minute per address, then 429 even for more guesses.
    let guesses = burst(8, || post("tgp_not-a-token")).await;
    let statuses: Vec<u16> = guesses.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    // A valid credential is not held back by the guesses from its address.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(post(&bob).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn scim_oauth_and_sign_in_are_rate_limited_in_their_own_formats() {
    let app = spawn_app_with(|c| {
        c.rate_limit_scim_per_sec = 1; // bursts of 2
        c.rate_limit_oauth_per_min = 3;
        c.rate_limit_signin_per_min = 3;
        // Sign-ins arrive through a proxy: the per-address budget follows X-Forwarded-For.
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let scim = scim_token(&app).await;
    let answers = burst(20, || {
        app.http.get(app.url("/scim/v2/Users")).bearer_auth(&scim)
    })
    .await;
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(refused.len() >= 10, "{answers:?}");
    for (_, v, retry) in refused {
        assert!(retry);
        assert_eq!(v["status"], "429");
        assert_eq!(
            v["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
    }

    let token = || {
        app.http
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=authorization_code&code=nope")
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (s, v) = body_of(token().send().await.unwrap()).await;
        if s == 429 {
            assert_eq!(v["error"], "temporarily_unavailable", "{v}");
        }
        statuses.push(s);
    }
    // Unauthenticated client: the endpoint's own 401 until the budget is spent.
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);

    app.server
        .state
        .store
        .create_admin("root", "correct horse battery")
        .await
        .unwrap();
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = |from: &str, user: &str, password: &str| {
        no_redirect
            .post(app.url("/fn/login"))
            .header("origin", app.base.clone())
            .header("x-forwarded-for", from)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={user}&password={password}"))
            .send()
    };
    // Guesses for one user name spread over addresses: the user name's budget runs out, and
    // then even the right password waits.
    for i in 1..=3 {
        let res = sign_in(&format!("10.0.0.{i}"), "root", "guess")
            .await
            .unwrap();
        assert_ne!(res.status(), 429, "attempt {i}");
    }
    let res = sign_in("10.0.0.4", "root", "correct+horse+battery")
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // One address trying many user names: the address's budget runs out.
    for i in 1..=3 {
        let res = sign_in("10.0.1.1", &format!("user{i}"), "guess")
            .await
            .unwrap();
        assert_ne!(res.status(), 429, "attempt {i}");
    }
    let res = sign_in("10.0.1.1", "user4", "guess").await.unwrap();
    assert_eq!(res.status(), 429);
    // Someone else, elsewhere, signs in.
    let res = sign_in("10.0.2.1", "someone", "guess").await.unwrap();
    assert_ne!(res.status(), 429);
    // Refusals are counted for operators.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("toolgate_rate_limited_total{protocol=\"scim\"}")),
        "{metrics}"
    );
}
