//! Fuzz targets (`make fuzz`) over HTTP: hostile bodies, parameters and headers sent to the
//! whole router — `/mcp`, SCIM, the OAuth endpoints — get a 2xx/3xx/4xx answer in the
//! protocol's own format, never a 5xx or a dropped connection (a handler panic).

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use reqwest::redirect::Policy;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::{Map, Value, json};
use toolgate_domain::fuzz::{
    config, deeply_nested_json, json_value, raw_bytes, short_hostile_string, url_like,
};
use toolgate_domain::model::TokenKind;

/// The app (SQLite or PostgreSQL) with rate limits off (the fuzzer sends far more than a client
/// would), its HTTP client (no redirects followed) and a runtime to drive both from proptest's
/// synchronous loop.
struct Harness {
    rt: tokio::runtime::Runtime,
    server: toolgate::RunningServer,
    base: String,
    admin_token: String,
    http: reqwest::Client,
    /// How many answers had each status (printed at the end, and checked for variety).
    statuses: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
    _dir: tempfile::TempDir,
}

/// The databases to fuzz against: SQLite, and PostgreSQL unless told to skip it.
fn databases() -> Vec<bool> {
    if skip_postgres() {
        vec![false]
    } else {
        vec![false, true]
    }
}

impl Harness {
    fn new(postgres: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (server, admin_token) = rt.block_on(async {
            let database_url = if postgres {
                toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
                    .await
                    .expect("pg schema")
            } else {
                format!("sqlite://{}/toolgate.db", dir.path().display())
            };
            let config = toolgate::config::Config {
                listen: "127.0.0.1:0".into(),
                database_url,
                data_dir: dir.path().to_path_buf(),
                upstream_timeout_secs: 5,
                rate_limit_mcp_per_sec: 0,
                rate_limit_scim_per_sec: 0,
                rate_limit_oauth_per_min: 0,
                ..Default::default()
            };
            let server = toolgate::start(config).await.expect("app starts");
            let (_, admin) = server
                .state
                .store
                .create_token(TokenKind::Admin, "fuzz", None)
                .await
                .expect("admin token");
            (server, admin)
        });
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client");
        Harness {
            rt,
            base: server.base_url.clone(),
            server,
            admin_token,
            http,
            statuses: Default::default(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An admin API call: status and JSON body.
    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("admin API answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The statuses seen, printed (`--nocapture`); fails unless some request got through
    /// (`wanted`), so that a harness refusing everything cannot pass.
    fn finish(&self, name: &str, wanted: std::ops::Range<u16>) {
        let seen = self.statuses.lock().map(|s| s.clone()).unwrap_or_default();
        println!("{name}: answers by status {seen:?}");
        assert!(
            seen.keys().any(|s| wanted.contains(s)),
            "{name}: no answer in {wanted:?}: {seen:?}"
        );
    }

    /// Runs `cases` cases of `strategy` through `check`; a failure names the input.
    fn run<S: Strategy>(
        &self,
        ci_cases: u32,
        strategy: S,
        check: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let mut cfg = config(ci_cases);
        // No regression files for these: the failing input is in the panic message.
        cfg.failure_persistence = None;
        let mut runner = TestRunner::new(cfg);
        if let Err(e) = runner.run(&strategy, check) {
            panic!("{e}");
        }
    }

    /// Sends a request; the answer's status and body (a panic shows as a transport error).
    fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, String, Option<String>), TestCaseError> {
        self.rt.block_on(async {
            let res = req.send().await.map_err(|e| {
                if e.is_builder() {
                    // A request no HTTP client can send (a URL longer than hyper takes).
                    TestCaseError::reject("not sendable")
                } else {
                    TestCaseError::fail(format!("no answer (panic?): {}", short(&e.to_string())))
                }
            })?;
            let status = res.status().as_u16();
            if let Ok(mut seen) = self.statuses.lock() {
                *seen.entry(status).or_default() += 1;
            }
            let location = res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let event_stream = res
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("text/event-stream"));
            // A stream stays open for notifications: its status is the answer.
            let body = if event_stream {
                String::new()
            } else {
                res.text().await.unwrap_or_default()
            };
            Ok((status, body, location))
        })
    }
}

fn no_server_error(status: u16, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{} answered {status}", short(what));
    Ok(())
}

/// The start of a long text, for failure messages.
fn short(s: &str) -> String {
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ---- /mcp ------------------------------------------------------------------------------------

const METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "initialize",
    "ping",
    "notifications/initialized",
    "resources/read",
    "prompts/get",
    "Tools/call",
];

const JSONRPC_KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "result",
    "error",
    "name",
    "arguments",
    "_meta",
];

/// A JSON-RPC body: a message (members right or wrong), written plainly or with an escape in
/// the method name, as a batch, or raw bytes.
fn mcp_body() -> BoxedStrategy<Vec<u8>> {
    let message = (
        prop::option::weighted(0.9, Just(json!("2.0"))),
        prop::option::weighted(0.8, prop_oneof![any::<i64>().prop_map(Value::from), short_hostile_string().prop_map(Value::from)]),
        prop::option::weighted(0.9, prop_oneof![
            4 => prop::sample::select(METHODS).prop_map(Value::from),
            1 => short_hostile_string().prop_map(Value::from),
        ]),
        prop::option::of(prop_oneof![
            json_value(3, JSONRPC_KEYS),
            (short_hostile_string(), json_value(3, JSONRPC_KEYS)).prop_map(|(n, a)| json!({"name": n, "arguments": a})),
            Just(json!({"name": "up__echo", "arguments": {"text": "x"}})),
            Just(json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}})),
        ]),
    )
        .prop_map(|(jsonrpc, id, method, params)| {
            let mut m = Map::new();
            for (k, v) in [("jsonrpc", jsonrpc), ("id", id), ("method", method), ("params", params)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        });
    prop_oneof![
        6 => (message, 0..5u8).prop_map(|(m, trick)| {
            let text = m.to_string();
            match trick {
                0 | 1 => text,
                2 => text.replace("tools/call", "tools\\/call"),
                3 => format!("[{text}]"),
                _ => format!("{{\"method\":\"tools/list\",{}", text.trim_start_matches('{')),
            }
            .into_bytes()
        }),
        1 => raw_bytes(),
        1 => deeply_nested_json().prop_map(String::into_bytes),
    ]
    .boxed()
}

/// Whether rmcp would dispatch the body as a tool call.
fn is_tool_call(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<ClientJsonRpcMessage>(body),
        Ok(JsonRpcMessage::Request(r))
            if matches!(r.request, ClientRequest::CallToolRequest(_)) || r.request.method() == "tools/call"
    )
}

#[test]
fn fuzz_http_mcp_bodies() {
    for postgres in databases() {
        mcp_bodies(
            &Harness::new(postgres),
            if postgres { "PostgreSQL" } else { "SQLite" },
        );
    }
}

fn mcp_bodies(h: &Harness, db: &str) {
    let (full, read_only, session) = h.rt.block_on(async {
        let post = reqwest::Method::POST;
        let (s, b) = h
            .admin(
                post.clone(),
                "/api/v1/users",
                json!({"user_name": "fuzz@example.com", "display_name": "Fuzz"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let user = b["id"].as_str().expect("id").to_string();
        let tokens = format!("/api/v1/users/{user}/tokens");
        let token = |body: Value| h.admin(post.clone(), &tokens, body);
        let (s, b) = token(json!({"name": "agent"})).await;
        assert_eq!(s, 201, "{b}");
        let full = b["token"].as_str().expect("token").to_string();
        let (s, b) = token(json!({"name": "read only", "scopes": ["mcp:read"]})).await;
        assert_eq!(s, 201, "{b}");
        let read_only = b["token"].as_str().expect("token").to_string();
        let session = raw_session_at(&h.http, &h.base, &full).await;
        (full, read_only, session)
    });
    let accept = prop_oneof![
        4 => Just("application/json, text/event-stream".to_string()),
        1 => short_hostile_string(),
    ];
    let content_type = prop_oneof![
        4 => Just("application/json".to_string()),
        1 => short_hostile_string(),
    ];
    let session_id = prop::option::of(prop_oneof![Just(session.clone()), short_hostile_string()]);
    h.run(
        300,
        (mcp_body(), any::<bool>(), accept, content_type, session_id),
        |(body, scoped, accept, content_type, session_id)| {
            let token = if scoped { &read_only } else { &full };
            let mut headers = reqwest::header::HeaderMap::new();
            for (name, value) in [
                ("accept", Some(&accept)),
                ("content-type", Some(&content_type)),
                ("mcp-session-id", session_id.as_ref()),
            ] {
                // Values no HTTP client would send are not the server's business.
                let Some(v) = value else { continue };
                let Ok(v) = reqwest::header::HeaderValue::from_str(v) else {
                    return Ok(());
                };
                headers.insert(name, v);
            }
            let req = h
                .http
                .post(h.url("/mcp"))
                .bearer_auth(token)
                .headers(headers)
                .body(body.clone());
            let (status, text, _) = h.send(req)?;
            no_server_error(
                status,
                &format!("/mcp with {}", String::from_utf8_lossy(&body)),
            )?;
            if scoped && is_tool_call(&body) {
                // Why: a token without mcp:tools must never get a tool call through.
                prop_assert!(
                    status >= 400,
                    "read-only token got {status} for a tool call: {text}"
                );
            }
            Ok(())
        },
    );
    h.finish(&format!("/mcp on {db}"), 200..300);
}

// ---- SCIM ------------------------------------------------------------------------------------

const SCIM_KEYS: &[&str] = &[
    "schemas",
    "id",
    "externalId",
    "userName",
    "displayName",
    "active",
    "name",
    "givenName",
    "familyName",
    "emails",
    "value",
    "type",
    "primary",
    "members",
    "meta",
    "manager",
    "Operations",
    "op",
    "path",
    "filter",
    "startIndex",
    "count",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "urn:ietf:params:scim:api:messages:2.0:PatchOp",
];

/// A SCIM body: an object built from SCIM names, a PATCH body, or raw bytes.
fn scim_body() -> BoxedStrategy<Vec<u8>> {
    let op = (
        prop::sample::select(vec!["add", "replace", "remove", "Replace", "move"]),
        prop::option::of(prop_oneof![
            prop::sample::select(SCIM_KEYS).prop_map(str::to_string),
            Just("emails[type eq \"work\"].value".to_string()),
            Just("members[value eq \"x\"]".to_string()),
            short_hostile_string(),
        ]),
        prop::option::of(json_value(3, SCIM_KEYS)),
    )
        .prop_map(|(op, path, value)| {
            let mut o = json!({"op": op});
            if let Some(p) = path {
                o["path"] = json!(p);
            }
            if let Some(v) = value {
                o["value"] = v;
            }
            o
        });
    // A user or group a provider could send, with hostile text in every name it stores.
    let resource = (
        short_hostile_string(),
        short_hostile_string(),
        prop::option::of(short_hostile_string()),
        any::<bool>(),
        prop::collection::vec(short_hostile_string(), 0..3),
    )
        .prop_map(|(name, display, external, active, emails)| {
            json!({
                "userName": name, "displayName": display, "externalId": external, "active": active,
                "emails": emails.iter().map(|e| json!({"value": e, "type": "work"})).collect::<Vec<_>>(),
                "members": [{"value": external}],
            })
            .to_string()
            .into_bytes()
        });
    prop_oneof![
        3 => resource,
        3 => prop::collection::vec((prop::sample::select(SCIM_KEYS), json_value(3, SCIM_KEYS)), 0..8)
            .prop_map(|e| Value::Object(e.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).to_string().into_bytes()),
        2 => prop::collection::vec(op, 0..4).prop_map(|ops| json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops,
        }).to_string().into_bytes()),
        1 => raw_bytes(),
        1 => deeply_nested_json().prop_map(String::into_bytes),
    ]
    .boxed()
}

#[test]
fn fuzz_http_scim_requests() {
    for postgres in databases() {
        scim_requests(
            &Harness::new(postgres),
            if postgres { "PostgreSQL" } else { "SQLite" },
        );
    }
}

fn scim_requests(h: &Harness, db: &str) {
    let (token, user_id, group_id) = h.rt.block_on(async {
        let (_, token) = h
            .server
            .state
            .store
            .create_token(TokenKind::Scim, "fuzz", None)
            .await
            .expect("scim token");
        let post = |path: &'static str, body: Value| {
            let req = h.http.post(h.url(path)).bearer_auth(&token).json(&body);
            async move {
                let res = req.send().await.expect("send");
                assert_eq!(res.status(), 201);
                res.json::<Value>().await.expect("json")["id"]
                    .as_str()
                    .expect("id")
                    .to_string()
            }
        };
        let user = post(
            "/scim/v2/Users",
            json!({"userName": "fuzz@example.com", "active": true}),
        )
        .await;
        let group = post(
            "/scim/v2/Groups",
            json!({"displayName": "fuzzers", "members": [{"value": user}]}),
        )
        .await;
        // Found by this target: an id PostgreSQL cannot hold (NUL) answered 500.
        let res = h
            .http
            .patch(h.url("/scim/v2/Users/%00"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(r#"{"Operations": []}"#)
            .send()
            .await
            .expect("an answer");
        assert!(res.status().is_client_error(), "{}", res.status());
        (token, user, group)
    });
    let target = prop_oneof![
        Just(("POST", "/scim/v2/Users".to_string())),
        Just(("POST", "/scim/v2/Groups".to_string())),
        Just(("PUT", format!("/scim/v2/Users/{user_id}"))),
        Just(("PATCH", format!("/scim/v2/Users/{user_id}"))),
        Just(("PUT", format!("/scim/v2/Groups/{group_id}"))),
        Just(("PATCH", format!("/scim/v2/Groups/{group_id}"))),
        Just(("POST", "/scim/v2/Users/.search".to_string())),
        Just(("POST", "/scim/v2/.search".to_string())),
        Just(("GET", "/scim/v2/Users".to_string())),
        Just(("GET", "/scim/v2/Groups".to_string())),
        Just(("GET", format!("/scim/v2/Users/{user_id}"))),
        short_hostile_string()
            .prop_map(|id| ("PATCH", format!("/scim/v2/Users/{}", urlencoding(&id)))),
    ];
    let query = prop::collection::vec(
        (
            prop::sample::select(vec![
                "filter",
                "attributes",
                "excludedAttributes",
                "startIndex",
                "count",
                "sortBy",
                "sortOrder",
            ]),
            prop_oneof![
                short_hostile_string(),
                Just("userName eq \"fuzz@example.com\"".to_string()),
                Just("emails[type eq \"work\" and value co \"@\"]".to_string()),
                "-?[0-9]{1,20}",
            ],
        ),
        0..3,
    );
    let if_match = prop::option::of(prop_oneof![Just("W/\"1\"".to_string()), "[ -~]{0,12}"]);
    h.run(
        300,
        (target, query, scim_body(), if_match),
        |((method, path), query, body, if_match)| {
            let method = reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut req = h
                .http
                .request(
                    method.clone(),
                    format!("{}?{}", h.url(&path), encoded(&query)),
                )
                .bearer_auth(&token)
                .header("content-type", "application/scim+json");
            if let Some(v) = &if_match {
                req = req.header("if-match", v.as_str());
            }
            if method != reqwest::Method::GET {
                req = req.body(body.clone());
            }
            let (status, text, _) = h.send(req)?;
            let what = short(&format!(
                "{method} {path} {query:?} {}",
                String::from_utf8_lossy(&body)
            ));
            no_server_error(status, &what)?;
            if status >= 400 {
                // Errors in SCIM's format (RFC 7644 §3.12).
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| TestCaseError::fail(format!("{what}: {status} {text:?}: {e}")))?;
                prop_assert_eq!(
                    v["status"].as_str().map(str::to_string),
                    Some(status.to_string()),
                    "{}",
                    what
                );
            }
            Ok(())
        },
    );
    h.finish(&format!("SCIM on {db}"), 200..300);
}

fn urlencoding(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `a=1&b=2`, form-encoded, for a query string or a form body.
fn encoded<V: AsRef<str>>(pairs: &[(&str, V)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v.as_ref());
    }
    out.finish()
}

// ---- OAuth -----------------------------------------------------------------------------------

const REDIRECT: &str = "http://127.0.0.1:45678/callback";

const REGISTRATION_KEYS: &[&str] = &[
    "redirect_uris",
    "client_name",
    "token_endpoint_auth_method",
    "grant_types",
    "response_types",
    "scope",
    "client_uri",
    "logo_uri",
    "none",
];

#[test]
fn fuzz_http_oauth_requests() {
    for postgres in databases() {
        oauth_requests(
            &Harness::new(postgres),
            if postgres { "PostgreSQL" } else { "SQLite" },
        );
    }
}

fn oauth_requests(h: &Harness, db: &str) {
    let (public_id, preregistered_id) = h.rt.block_on(async {
        // No outbound fetches: CIMD client ids are refused without one.
        let (s, b) = h
            .admin(
                reqwest::Method::PUT,
                "/api/v1/settings/oauth",
                json!({"cimd_enabled": false}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = h
            .admin(
                reqwest::Method::POST,
                "/api/v1/oauth/clients",
                json!({"name": "Fuzz Agent", "redirect_uris": [REDIRECT]}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let preregistered = b["client"]["id"].as_str().expect("id").to_string();
        let res = h
            .http
            .post(h.url("/oauth/register"))
            .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "fuzz"}))
            .send()
            .await
            .expect("register");
        assert_eq!(res.status(), 201);
        let public = res.json::<Value>().await.expect("json")["client_id"]
            .as_str()
            .expect("client_id")
            .to_string();
        (public, preregistered)
    });
    // The error redirect to a verified URI works (and is what the runs below compare with).
    let sanity = format!(
        "{}?{}",
        h.url("/oauth/authorize"),
        encoded(&[
            ("client_id", preregistered_id.as_str()),
            ("redirect_uri", REDIRECT)
        ])
    );
    let (status, _, location) = h.send(h.http.get(sanity)).expect("an answer");
    assert_eq!(status, 303);
    assert!(location.is_some_and(|l| l.starts_with(&format!("{REDIRECT}?error="))));
    let client_id = prop_oneof![
        Just(public_id.clone()),
        Just(preregistered_id.clone()),
        short_hostile_string(),
        url_like(),
    ];
    let value = prop_oneof![
        short_hostile_string(),
        url_like(),
        Just(REDIRECT.to_string()),
        Just("code".to_string()),
        Just("S256".to_string()),
        Just("authorization_code".to_string()),
        Just("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_string()),
    ];
    let param = prop::collection::vec(
        (
            prop::sample::select(vec![
                "response_type",
                "redirect_uri",
                "state",
                "code_challenge",
                "code_challenge_method",
                "resource",
                "scope",
                "grant_type",
                "code",
                "code_verifier",
                "refresh_token",
                "client_secret",
                "token",
                "client_id",
            ]),
            value,
        ),
        0..8,
    );
    let register_body = prop_oneof![
        json_value(3, REGISTRATION_KEYS).prop_map(|v| v.to_string().into_bytes()),
        raw_bytes(),
    ];
    let endpoint = 0..4u8;
    h.run(
        300,
        (endpoint, client_id, param, register_body),
        |(endpoint, client_id, mut params, register_body)| {
            params.push(("client_id", client_id.clone()));
            let (path, req) = match endpoint {
                0 => (
                    "/oauth/authorize",
                    h.http.get(format!(
                        "{}?{}",
                        h.url("/oauth/authorize"),
                        encoded(&params)
                    )),
                ),
                1 => (
                    "/oauth/token",
                    h.http
                        .post(h.url("/oauth/token"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(encoded(&params)),
                ),
                2 => (
                    "/oauth/revoke",
                    h.http
                        .post(h.url("/oauth/revoke"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(encoded(&params)),
                ),
                _ => (
                    "/oauth/register",
                    h.http
                        .post(h.url("/oauth/register"))
                        .header("content-type", "application/json")
                        .body(register_body.clone()),
                ),
            };
            let (status, text, location) = h.send(req)?;
            let what = short(&format!(
                "{path} {params:?} {}",
                String::from_utf8_lossy(&register_body)
            ));
            no_server_error(status, &what)?;
            if endpoint == 0 {
                if let Some(to) = location {
                    // Why: never an open redirector — back to the registered URI, or on to
                    // Toolgate's own sign-in and consent pages.
                    prop_assert!(
                        to.starts_with(&format!("{REDIRECT}?"))
                            || to.starts_with("/auth/oidc/login?")
                            || to.starts_with("/oauth/consent?"),
                        "{what} redirected to {to}"
                    );
                }
            } else if status >= 400 {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| TestCaseError::fail(format!("{what}: {status} {text:?}: {e}")))?;
                prop_assert!(v["error"].is_string(), "{what}: {text}");
            }
            Ok(())
        },
    );
    h.finish(&format!("OAuth on {db}"), 300..400);
}
