//! The OAuth authorization server, rule by rule, over real sockets: metadata documents, the 401
//! challenge, authorization code + PKCE (S256 only), resource binding and audience checks,
//! exact redirect URIs, pre-registered / CIMD / DCR clients with their switches, consent,
//! code replay, refresh rotation with reuse detection, revocation, offboarding, scopes, and
//! service principals (client credentials). The person is signed in by a dashboard session made
//! the way the OIDC callback makes it (the browser sign-in itself runs in pytest and Playwright).

use crate::common::*;
use reqwest::redirect::Policy;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use toolgate_app::auth::{DashboardRole, DashboardUser, SESSION_USER_KEY, SignInSource};
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};

const VERIFIER: &str = "a-perfectly-random-code-verifier-of-enough-length-0123456789";
const REDIRECT: &str = "http://127.0.0.1:45678/callback";

fn challenge(verifier: &str) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        Sha256::digest(verifier.as_bytes()),
    )
}

/// A gateway with upstream "up", a person "alice" in group "eng" allowed `echo` and `add`.
struct World {
    app: TestApp,
    _up: Upstream,
    alice: String,
    group: String,
    /// A browser-like client: no redirects followed, alice's session cookie.
    browser: reqwest::Client,
    client_id: String,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(change: impl FnOnce(&mut toolgate::config::Config)) -> World {
    world_on(spawn_app_with(change).await).await
}

async fn world_on(app: TestApp) -> World {
    let up = spawn_upstream("up").await;
    let connector = app.create_connector("up", &up.url).await;
    let alice = app.create_user("alice@example.com").await;
    let group = app.create_group("eng").await;
    app.add_member(&group, &alice).await;
    app.set_policy(&group, &connector, &["echo", "add"], &[])
        .await;
    let cookie = signed_in_cookie(&app, &alice, "alice@example.com").await;
    let browser = browser_with(&cookie);
    let (s, b) = app
        .post(
            "/api/v1/oauth/clients",
            json!({"name": "Test Agent", "redirect_uris": [REDIRECT]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let client_id = b["client"]["id"].as_str().unwrap().to_string();
    World {
        app,
        _up: up,
        alice,
        group,
        browser,
        client_id,
    }
}

fn browser_with(cookie: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse().unwrap());
    reqwest::Client::builder()
        .redirect(Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A dashboard session as the OIDC callback leaves it, stored through the same session store.
async fn signed_in_cookie(app: &TestApp, user_id: &str, user_name: &str) -> String {
    let store = toolgate::web::session_store::DbSessionStore::new(app.server.state.store.clone());
    let user = DashboardUser {
        id: user_id.into(),
        username: user_name.into(),
        role: DashboardRole::User,
        source: SignInSource::Oidc,
    };
    let mut data = HashMap::new();
    data.insert(
        SESSION_USER_KEY.to_string(),
        serde_json::to_value(&user).unwrap(),
    );
    let mut record = Record {
        id: Id::default(),
        data,
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.unwrap();
    format!("toolgate_session={}", record.id)
}

impl World {
    fn authorize_url(&self, client_id: &str, extra: &[(&str, &str)]) -> String {
        let mut params: Vec<(String, String)> = vec![
            ("response_type".into(), "code".into()),
            ("client_id".into(), client_id.into()),
            ("redirect_uri".into(), REDIRECT.into()),
            ("code_challenge".into(), challenge(VERIFIER)),
            ("code_challenge_method".into(), "S256".into()),
            ("state".into(), "st-1".into()),
            ("scope".into(), "mcp:read mcp:tools".into()),
            ("resource".into(), self.app.url("/mcp")),
        ];
        for (k, v) in extra {
            params.retain(|(pk, _)| pk != k);
            if !v.is_empty() {
                params.push(((*k).into(), (*v).into()));
            }
        }
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        self.app.url(&format!("/oauth/authorize?{q}"))
    }

    /// Runs authorize (+ consent when asked) and returns the final redirect's query.
    async fn authorize(&self, client_id: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let res = self
            .browser
            .get(self.authorize_url(client_id, extra))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "authorize: {:?}", res.text().await);
        let next = location(&res);
        if next.starts_with(REDIRECT) {
            return query(&next);
        }
        assert!(next.starts_with("/oauth/consent?request="), "{next}");
        let page = self.browser.get(self.app.url(&next)).send().await.unwrap();
        if page.status() == 303 {
            return query(&location(&page));
        }
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = page.text().await.unwrap();
        let res = self
            .browser
            .post(self.app.url("/oauth/consent"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("request", hidden(&html, "request")),
                ("csrf", hidden(&html, "csrf")),
                ("decision", "allow".into()),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        query(&location(&res))
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .app
            .http
            .post(self.app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(form))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert_eq!(res.headers()["cache-control"], "no-store");
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn refresh(&self, token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", &self.client_id),
        ])
        .await
    }

    async fn exchange(&self, client_id: &str, code: &str) -> (u16, Value) {
        let resource = self.app.url("/mcp");
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", VERIFIER),
            ("resource", &resource),
        ])
        .await
    }

    /// A full sign-in: access and refresh token.
    async fn sign_in(&self) -> (String, String) {
        let q = self.authorize(&self.client_id.clone(), &[]).await;
        assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
        assert_eq!(q.get("iss"), Some(&self.app.base));
        let (s, b) = self.exchange(&self.client_id, &q["code"]).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["token_type"], "Bearer");
        (
            b["access_token"].as_str().unwrap().to_string(),
            b["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    /// Status of an MCP initialize with this bearer token.
    async fn mcp_status(&self, token: &str) -> u16 {
        self.app
            .http
            .post(self.app.url("/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}})
}

/// An application/x-www-form-urlencoded body.
fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_string()
}

fn query(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect(name) + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn metadata_documents_follow_rfc_8414_and_9728() {
    let w = world().await;
    let base = w.app.base.clone();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (s, doc) = w.app.get(path).await;
        assert_eq!(s, 200);
        assert_eq!(
            doc["issuer"],
            base.as_str(),
            "issuer is the URL it was fetched from"
        );
        for key in [
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
            "revocation_endpoint",
        ] {
            let v = doc[key].as_str().unwrap_or_else(|| panic!("{key} missing"));
            assert!(v.starts_with(&format!("{base}/")), "{key} {v} is absolute");
        }
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert!(
            doc["response_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("code"))
        );
        let grants = doc["grant_types_supported"].as_array().unwrap();
        for g in ["authorization_code", "refresh_token", "client_credentials"] {
            assert!(grants.contains(&json!(g)), "{g}");
        }
        assert!(
            doc["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("none"))
        );
        assert_eq!(doc["scopes_supported"], json!(["mcp:read", "mcp:tools"]));
    }
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let (s, prm) = w.app.get(path).await;
        assert_eq!(s, 200);
        assert_eq!(prm["resource"], format!("{base}/mcp"));
        assert_eq!(prm["authorization_servers"], json!([base]));
        assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    }
    // Switching DCR off takes the registration endpoint out of the document.
    let (s, _) = w
        .app
        .put("/api/v1/settings/oauth", json!({"dcr_enabled": false}))
        .await;
    assert_eq!(s, 200);
    let (_, doc) = w.app.get("/.well-known/oauth-authorization-server").await;
    assert!(doc.get("registration_endpoint").is_none());
    // And CIMD off is advertised as off, so clients fall back instead of failing.
    let (s, _) = w
        .app
        .put("/api/v1/settings/oauth", json!({"cimd_enabled": false}))
        .await;
    assert_eq!(s, 200);
    let (_, doc) = w.app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(doc["client_id_metadata_document_supported"], false);
}

#[tokio::test]
async fn production_metadata_uses_https_everywhere() {
    let app = spawn_app_with(|c| c.public_url = Some("https://gateway.example.com".into())).await;
    // The public URL is a name; the test reaches the listener directly.
    let local = format!("http://{}", app.server.addr);
    let res = app
        .http
        .get(format!("{local}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["issuer"], "https://gateway.example.com");
    for (k, v) in doc.as_object().unwrap() {
        if k.ends_with("_endpoint") {
            assert!(
                v.as_str()
                    .unwrap()
                    .starts_with("https://gateway.example.com/"),
                "{k}"
            );
        }
    }
    let prm: Value = app
        .http
        .get(format!("{local}/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], "https://gateway.example.com/mcp");
}

#[tokio::test]
async fn mcp_challenges_name_the_resource_metadata_and_scopes() {
    let w = world().await;
    let res = w
        .app
        .http
        .post(w.app.url("/mcp"))
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let prm = w.app.url("/.well-known/oauth-protected-resource/mcp");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{prm}\"")),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"mcp:read mcp:tools\""),
        "{challenge}"
    );
    // A presented but bad token: invalid_token, same pointers.
    let res = w
        .app
        .http
        .post(w.app.url("/mcp"))
        .bearer_auth("eyJhbGciOiJIUzI1NiJ9.e30.bad")
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("resource_metadata="), "{challenge}");
}

#[tokio::test]
async fn code_flow_with_pkce_gives_a_token_that_lists_and_calls_tools() {
    let w = world().await;
    let (access, _refresh) = w.sign_in().await;
    let client = w.app.mcp_client(&access).await;
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, vec!["up__add", "up__echo"]);
    let r = client
        .call_tool(
            CallToolRequestParams::new("up__echo")
                .with_arguments(json!({"text": "hi"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "up: hi");
    client.cancel().await.unwrap();
    // The call is audited for alice, through this client.
    let (_, page) = w.app.get("/api/v1/audit?kind=tool_call").await;
    let ev = &page["items"][0];
    assert_eq!(ev["principal_id"], w.alice.as_str());
    assert_eq!(ev["subject_kind"], "person");
    assert_eq!(ev["client_id"], w.client_id.as_str());
    assert_eq!(ev["client_name"], "Test Agent");
    // Consent is remembered: the second authorization goes straight back with a code.
    let res = w
        .browser
        .get(w.authorize_url(&w.client_id, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with(REDIRECT), "{}", location(&res));
    let (_, page) = w.app.get("/api/v1/audit?kind=oauth.authorized").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn pkce_is_required_and_only_s256() {
    let w = world().await;
    for (extra, what) in [
        (vec![("code_challenge", "")], "code_challenge is missing"),
        (vec![("code_challenge_method", "plain")], "S256"),
        (vec![("code_challenge_method", "")], "S256"),
        (vec![("response_type", "token")], "authorization code"),
    ] {
        let res = w
            .browser
            .get(w.authorize_url(&w.client_id, &extra))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let q = query(&location(&res));
        assert!(
            q["error"] == "invalid_request" || q["error"] == "unsupported_response_type",
            "{q:?}"
        );
        assert!(q["error_description"].contains(what), "{q:?}");
        assert_eq!(q["state"], "st-1");
    }
    // A wrong verifier fails and uses the code up: the right one afterwards fails too.
    let q = w.authorize(&w.client_id.clone(), &[]).await;
    let resource = w.app.url("/mcp");
    let wrong = "x".repeat(50);
    let (s, b) = w
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", &w.client_id),
            ("code_verifier", &wrong),
            ("resource", &resource),
        ])
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    let (s, b) = w.exchange(&w.client_id, &q["code"]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    // No verifier at all.
    let q = w.authorize(&w.client_id.clone(), &[]).await;
    let (s, b) = w
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", &w.client_id),
        ])
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
}

#[tokio::test]
async fn resource_is_required_and_bound_and_other_audiences_are_refused() {
    let w = world().await;
    for (resource, err) in [
        ("", "invalid_target"),
        ("https://other.example.com/mcp", "invalid_target"),
    ] {
        let res = w
            .browser
            .get(w.authorize_url(&w.client_id, &[("resource", resource)]))
            .send()
            .await
            .unwrap();
        assert_eq!(query(&location(&res))["error"], err);
    }
    // At the token endpoint, a different resource is refused.
    let q = w.authorize(&w.client_id.clone(), &[]).await;
    let (s, b) = w
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", &w.client_id),
            ("code_verifier", VERIFIER),
            ("resource", "https://other.example.com/mcp"),
        ])
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_target")),
        "{b}"
    );
    // A token signed with the right key but for another audience (audience confusion).
    let key = w
        .app
        .server
        .state
        .store
        .cipher()
        .derive_key("oauth access token hs256");
    let minter = toolgate::oauth::access::AccessTokens::new(key, w.app.base.clone());
    let now = chrono::Utc::now().timestamp();
    let forged = minter.mint(&toolgate::oauth::access::AccessClaims {
        iss: w.app.base.clone(),
        aud: "https://other-resource.example.com/mcp".into(),
        sub: w.alice.clone(),
        client_id: w.client_id.clone(),
        scope: "mcp:read mcp:tools".into(),
        iat: now,
        exp: now + 600,
        jti: "j".into(),
        sub_kind: "person".into(),
        cred: "g".into(),
    });
    assert_eq!(w.mcp_status(&forged).await, 401);
}

#[tokio::test]
async fn redirect_uris_must_match_exactly_and_unknown_clients_get_no_redirect() {
    let w = world().await;
    for extra in [
        vec![("redirect_uri", "http://127.0.0.1:45678/callback/extra")],
        vec![("redirect_uri", "https://evil.example.com/callback")],
        vec![("redirect_uri", "")],
    ] {
        let res = w
            .browser
            .get(w.authorize_url(&w.client_id, &extra))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            400,
            "{extra:?}: never redirected to an unverified URI"
        );
        assert!(res.headers().get("location").is_none());
    }
    let res = w
        .browser
        .get(w.authorize_url("no-such-client", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("unknown client"));
    // A disabled client is refused too.
    let id: String = form_urlencoded::byte_serialize(w.client_id.as_bytes()).collect();
    let (s, _) = w
        .app
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/oauth/clients/{id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    let res = w
        .browser
        .get(w.authorize_url(&w.client_id, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_gave() {
    let w = world().await;
    let q = w.authorize(&w.client_id.clone(), &[]).await;
    let (s, b) = w.exchange(&w.client_id, &q["code"]).await;
    assert_eq!(s, 200, "{b}");
    let access = b["access_token"].as_str().unwrap().to_string();
    assert_eq!(w.mcp_status(&access).await, 200);
    let (s, b) = w.exchange(&w.client_id, &q["code"]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    assert_eq!(
        w.mcp_status(&access).await,
        401,
        "the first exchange's tokens are revoked"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let w = world().await;
    let (access, refresh1) = w.sign_in().await;
    let (s, b) = w.refresh(&refresh1).await;
    assert_eq!(s, 200, "{b}");
    let refresh2 = b["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh1, refresh2, "rotated");
    let access2 = b["access_token"].as_str().unwrap().to_string();
    assert_eq!(w.mcp_status(&access2).await, 200);
    // The used one again: refused, and the whole family ends.
    let (s, b) = w.refresh(&refresh1).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    let (s, _) = w.refresh(&refresh2).await;
    assert_eq!(s, 400, "the rotated token died with its family");
    assert_eq!(w.mcp_status(&access).await, 401);
    assert_eq!(w.mcp_status(&access2).await, 401);
    let (_, page) = w.app.get("/api/v1/audit?kind=oauth.refresh_reused").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    // Housekeeping drops the dead family's refresh tokens (both of them).
    let purged = w
        .app
        .server
        .state
        .store
        .purge_oauth_leftovers()
        .await
        .unwrap();
    assert_eq!(purged, 2);
    // Another client cannot use someone else's refresh token.
    let (_, refresh3) = w.sign_in().await;
    let (s, b) = w
        .app
        .post(
            "/api/v1/oauth/clients",
            json!({"name": "Other", "redirect_uris": [REDIRECT]}),
        )
        .await;
    assert_eq!(s, 201);
    let other = b["client"]["id"].as_str().unwrap().to_string();
    let (s, b) = w
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh3),
            ("client_id", &other),
        ])
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
}

#[tokio::test]
async fn revoked_consent_and_disabled_user_end_every_token_at_once() {
    let w = world().await;
    let (access, refresh) = w.sign_in().await;
    assert_eq!(w.mcp_status(&access).await, 200);
    let (s, consents) = w
        .app
        .get(&format!("/api/v1/users/{}/consents", w.alice))
        .await;
    assert_eq!(s, 200);
    assert_eq!(consents[0]["client_id"], w.client_id.as_str());
    assert_eq!(consents[0]["live_grants"], 1);
    let id: String = form_urlencoded::byte_serialize(w.client_id.as_bytes()).collect();
    let (s, _) = w
        .app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{}/consents/{id}", w.alice),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(w.mcp_status(&access).await, 401);
    let (s, _) = w.refresh(&refresh).await;
    assert_eq!(s, 400);
    // The next authorization asks again (the consent page shows its form).
    let res = w
        .browser
        .get(w.authorize_url(&w.client_id, &[]))
        .send()
        .await
        .unwrap();
    let page = w
        .browser
        .get(w.app.url(&location(&res)))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"consent-client\">Test Agent<"));
    assert!(
        html.contains("consent-localhost-warning"),
        "every redirect is loopback"
    );

    // Offboarding: disabling the person ends new tokens too.
    let (access, refresh) = w.sign_in().await;
    assert_eq!(w.mcp_status(&access).await, 200);
    let disabled_at = std::time::Instant::now();
    w.app
        .server
        .state
        .store
        .set_user_active(&w.alice, false)
        .await
        .unwrap();
    w.app.server.state.snapshot.publish().await.unwrap();
    assert_eq!(w.mcp_status(&access).await, 401);
    assert!(disabled_at.elapsed() < std::time::Duration::from_secs(1));
    let (s, _) = w.refresh(&refresh).await;
    assert_eq!(s, 400, "re-enabling later does not bring old grants back");
    let _ = w.group;
}

#[tokio::test]
async fn the_revocation_endpoint_ends_the_grant() {
    let w = world().await;
    let (access, refresh) = w.sign_in().await;
    let revoke = |token: String| {
        let w = &w;
        async move {
            w.app
                .http
                .post(w.app.url("/oauth/revoke"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encode(&[
                    ("token", token.as_str()),
                    ("client_id", &w.client_id),
                ]))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        revoke("tgr_unknown".into()).await,
        200,
        "unknown tokens: 200 too"
    );
    assert_eq!(w.mcp_status(&access).await, 200);
    assert_eq!(revoke(refresh).await, 200);
    assert_eq!(w.mcp_status(&access).await, 401);
    // Revoking an access token ends its grant as well.
    let (access, refresh) = w.sign_in().await;
    assert_eq!(revoke(access.clone()).await, 200);
    assert_eq!(w.mcp_status(&access).await, 401);
    let (s, _) = w.refresh(&refresh).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn dynamic_registration_works_and_has_a_switch() {
    let w = world().await;
    let register = |body: Value| {
        let w = &w;
        async move {
            let res = w
                .app
                .http
                .post(w.app.url("/oauth/register"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = res.status().as_u16();
            (s, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, b) = register(json!({
        "client_name": "Claude Code", "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]
    }))
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        b.get("client_secret").is_none(),
        "public clients get no secret"
    );
    let dcr_id = b["client_id"].as_str().unwrap().to_string();
    let q = w.authorize(&dcr_id, &[]).await;
    let (s, b) = w.exchange(&dcr_id, &q["code"]).await;
    assert_eq!(s, 200, "{b}");
    let dcr_refresh = b["refresh_token"].as_str().unwrap().to_string();
    // A self-registered client's errors are shown as a page, never redirected (no open
    // redirector through a URI anyone could register).
    let res = w
        .browser
        .get(w.authorize_url(&dcr_id, &[("code_challenge_method", "plain")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // Confidential registration: a secret, and the token endpoint insists on it.
    let (s, b) = register(
        json!({"client_name": "Server app", "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let conf_id = b["client_id"].as_str().unwrap().to_string();
    let secret = b["client_secret"].as_str().unwrap().to_string();
    let q = w.authorize(&conf_id, &[]).await;
    let (s, b) = w.exchange(&conf_id, &q["code"]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );
    let q = w.authorize(&conf_id, &[]).await;
    let resource = w.app.url("/mcp");
    let (s, b) = w
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", &conf_id),
            ("client_secret", &secret),
            ("code_verifier", VERIFIER),
            ("resource", &resource),
        ])
        .await;
    assert_eq!(s, 200, "{b}");
    // Bad metadata: clear RFC 7591 errors.
    for (body, err) in [
        (
            json!({"redirect_uris": ["http://evil.example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://a.example.com/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (json!("not an object"), "invalid_client_metadata"),
    ] {
        let (s, b) = register(body.clone()).await;
        assert_eq!((s, b["error"].as_str()), (400, Some(err)), "{body}: {b}");
    }
    // Switched off: 403, and DCR clients stop working.
    let (s, _) = w
        .app
        .put("/api/v1/settings/oauth", json!({"dcr_enabled": false}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = register(json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(s, 403);
    let res = w
        .browser
        .get(w.authorize_url(&dcr_id, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (s, b) = w
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &dcr_refresh),
            ("client_id", &dcr_id),
        ])
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );
}

/// Serves a client metadata document (or anything else) on 127.0.0.1.
async fn serve_document(doc: impl Fn(String) -> Value + Send + Sync + 'static) -> String {
    let doc = std::sync::Arc::new(doc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/client.json");
    let me = url.clone();
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let body = doc(me.clone());
            async move { axum::Json(body) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_safely() {
    let w = world().await;
    let good = serve_document(|me| {
        json!({"client_id": me, "client_name": "CIMD Agent", "redirect_uris": [REDIRECT],
               "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
               "response_types": ["code"]})
    })
    .await;
    // Production rules: http on loopback is not a metadata document, so it is an unknown client.
    let res = w
        .browser
        .get(w.authorize_url(&good, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // An https URL on a private or link-local address is refused before any connection.
    for target in [
        "https://127.0.0.1/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.8/client.json",
        "https://[::1]/client.json",
    ] {
        let res = w
            .browser
            .get(w.authorize_url(target, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{target}");
        let text = res.text().await.unwrap();
        assert!(
            text.contains("metadata document was refused"),
            "{target}: {text}"
        );
    }
    // Development mode: loopback documents are fetched; the flow completes.
    let (s, b) = w
        .app
        .put(
            "/api/v1/settings/oauth",
            json!({"allow_loopback_cimd": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let q = w.authorize(&good, &[]).await;
    let (s, b) = w.exchange(&good, &q["code"]).await;
    assert_eq!(s, 200, "{b}");
    let (_, clients) = w.app.get("/api/v1/oauth/clients").await;
    assert!(
        clients
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == good.as_str() && c["kind"] == "cimd" && c["name"] == "CIMD Agent")
    );
    // A document whose client_id is not its own URL is refused.
    let liar = serve_document(|_| {
        json!({"client_id": "https://someone-else.example.com/client.json",
               "client_name": "Liar", "redirect_uris": [REDIRECT]})
    })
    .await;
    let res = w
        .browser
        .get(w.authorize_url(&liar, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A redirect URI the document does not list is refused (exact match).
    let res = w
        .browser
        .get(w.authorize_url(&good, &[("redirect_uri", "http://127.0.0.1:45678/other")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // CIMD switched off: refused.
    let (s, _) = w
        .app
        .put(
            "/api/v1/settings/oauth",
            json!({"allow_loopback_cimd": true, "cimd_enabled": false}),
        )
        .await;
    assert_eq!(s, 200);
    let res = w
        .browser
        .get(w.authorize_url(&good, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn scopes_limit_what_a_token_may_do() {
    let w = world().await;
    let (s, b) = w
        .app
        .post(
            &format!("/api/v1/users/{}/tokens", w.alice),
            json!({"name": "read only", "scopes": ["mcp:read"], "expires_in_days": 30}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["scopes"], json!(["mcp:read"]));
    assert!(b["expires_at"].is_string());
    let read_only = b["token"].as_str().unwrap().to_string();
    assert_eq!(w.mcp_status(&read_only).await, 200);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "up__echo", "arguments": {"text": "x"}}});
    let res = w
        .app
        .http
        .post(w.app.url("/mcp"))
        .bearer_auth(&read_only)
        .header("accept", "application/json, text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"mcp:read mcp:tools\""),
        "{challenge}"
    );
    // Listing still works through a real client.
    let client = w.app.mcp_client(&read_only).await;
    assert_eq!(client.list_all_tools().await.unwrap().len(), 2);
    client.cancel().await.unwrap();
    // Bad token requests change nothing.
    for body in [
        json!({"name": "x", "scopes": ["admin"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "expires_in_days": 0}),
    ] {
        let (s, _) = w
            .app
            .post(&format!("/api/v1/users/{}/tokens", w.alice), body.clone())
            .await;
        assert_eq!(s, 422, "{body}");
    }
    // An OAuth sign-in asking for mcp:read only cannot call tools either.
    let q = w
        .authorize(&w.client_id.clone(), &[("scope", "mcp:read")])
        .await;
    let (s, b) = w.exchange(&w.client_id, &q["code"]).await;
    assert_eq!((s, b["scope"].as_str()), (200, Some("mcp:read")), "{b}");
    let res = w
        .app
        .http
        .post(w.app.url("/mcp"))
        .bearer_auth(b["access_token"].as_str().unwrap())
        .header("accept", "application/json, text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn expired_personal_tokens_are_refused_at_decision_time() {
    let w = world().await;
    let (s, b) = w
        .app
        .post(
            &format!("/api/v1/users/{}/tokens", w.alice),
            json!({"name": "short", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let token = b["token"].as_str().unwrap();
    let snap = w.app.server.state.snapshot.get();
    let now = chrono::Utc::now().timestamp_millis();
    assert!(snap.principal_for_token(token, now).is_some());
    assert!(
        snap.principal_for_token(token, now + 86_400_000 + 1)
            .is_none()
    );
}

async fn client_credentials(app: &TestApp, id: &str, secret: &str) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[
            ("grant_type", "client_credentials"),
            ("resource", &app.url("/mcp")),
        ]))
        .send()
        .await
        .unwrap();
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn service_principals_use_client_credentials_and_their_groups() {
    let w = world().await;
    let (s, b) = w
        .app
        .post(
            "/api/v1/service-principals",
            json!({"name": "nightly-triage", "owner": "alice@example.com", "groups": [w.group],
                   "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let sp = b["client_id"].as_str().unwrap().to_string();
    let secret = b["client_secret"].as_str().unwrap().to_string();
    assert!(!b.to_string().contains("secret_hash"));
    assert!(
        b["service_principal"]["secrets"][0]["expires_at"].is_null(),
        "a secret expires by rotation, not with the principal: {b}"
    );
    let (s, t) = client_credentials(&w.app, &sp, &secret).await;
    assert_eq!(s, 200, "{t}");
    assert!(t.get("refresh_token").is_none());
    let access = t["access_token"].as_str().unwrap().to_string();
    let client = w.app.mcp_client(&access).await;
    assert_eq!(
        client.list_all_tools().await.unwrap().len(),
        2,
        "the group's policy applies"
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("up__add")
                .with_arguments(json!({"a": 2, "b": 3}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert!(!r.is_error.unwrap_or(false));
    client.cancel().await.unwrap();
    let (_, page) = w.app.get("/api/v1/audit?kind=tool_call").await;
    let ev = &page["items"][0];
    assert_eq!(ev["subject_kind"], "service_principal");
    assert_eq!(ev["principal_id"], sp.as_str());
    assert_eq!(ev["principal"], "nightly-triage");
    // Wrong secret: invalid_client.
    let (s, b) = client_credentials(&w.app, &sp, "tgk_wrong").await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    // Rotation without overlap: the old secret stops at once, the new one works.
    let (s, b) = w
        .app
        .post(
            &format!("/api/v1/service-principals/{sp}/secrets"),
            json!({"overlap_hours": 0}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let new_secret = b["secret"].as_str().unwrap().to_string();
    let (s, _) = client_credentials(&w.app, &sp, &secret).await;
    assert_eq!(s, 401, "the expired secret is refused");
    assert_eq!(
        w.mcp_status(&access).await,
        401,
        "tokens of the expired secret end too"
    );
    let (s, t) = client_credentials(&w.app, &sp, &new_secret).await;
    assert_eq!(s, 200);
    let access = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(w.mcp_status(&access).await, 200);
    // An expired principal: refused at decision time, tokens included.
    let (s, b) = w
        .app
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/service-principals/{sp}"),
            Some(json!({"expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(w.mcp_status(&access).await, 401);
    let (s, _) = client_credentials(&w.app, &sp, &new_secret).await;
    assert_eq!(s, 401);
    // Disabled: the same.
    let (s, _) = w
        .app
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/service-principals/{sp}"),
            Some(json!({"expires_at": null, "disabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = client_credentials(&w.app, &sp, &new_secret).await;
    assert_eq!(s, 401);
    // Bad input changes nothing.
    for body in [
        json!({"name": "", "owner": "x"}),
        json!({"name": "x", "owner": ""}),
        json!({"name": "x", "owner": "o", "groups": ["no-such-group"]}),
        json!({"name": "x", "owner": "o", "entra_app_id": "not-a-guid"}),
        json!({"name": "x", "owner": "o", "expires_at": "2020-01-01T00:00:00Z"}),
    ] {
        let (s, _) = w.app.post("/api/v1/service-principals", body.clone()).await;
        assert_eq!(s, 422, "{body}");
    }
    let (_, list) = w.app.get("/api/v1/service-principals").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn token_endpoint_errors_are_rfc_6749_json() {
    let w = world().await;
    let (s, b) = w
        .token(&[("grant_type", "password"), ("client_id", &w.client_id)])
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (s, b) = w.token(&[("grant_type", "authorization_code")]).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    let (s, b) = w
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &w.client_id),
            ("code", "tgc_nope"),
        ])
        .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    // JSON instead of a form: invalid_request.
    let res = w
        .app
        .http
        .post(w.app.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["error"], "invalid_request");
}

#[tokio::test]
async fn the_flow_on_postgresql() {
    if skip_postgres() {
        return;
    }
    let w = world_on(spawn_app_postgres().await).await;
    let (access, refresh1) = w.sign_in().await;
    assert_eq!(w.mcp_status(&access).await, 200);
    let (s, b) = w.refresh(&refresh1).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = w.refresh(&refresh1).await;
    assert_eq!(s, 400, "reuse detected on PostgreSQL too");
    assert_eq!(w.mcp_status(&access).await, 401);
    // Service principal with client credentials.
    let (s, b) = w
        .app
        .post(
            "/api/v1/service-principals",
            json!({"name": "pg-bot", "owner": "ops", "groups": [w.group]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, t) = client_credentials(
        &w.app,
        b["client_id"].as_str().unwrap(),
        b["client_secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(w.mcp_status(t["access_token"].as_str().unwrap()).await, 200);
    // Offboarding revokes the person's grants.
    let (access, _) = w.sign_in().await;
    w.app
        .server
        .state
        .store
        .set_user_active(&w.alice, false)
        .await
        .unwrap();
    w.app.server.state.snapshot.publish().await.unwrap();
    assert_eq!(w.mcp_status(&access).await, 401);
}

/// A change to a token's claims.
type ClaimChange = Box<dyn FnOnce(&mut Value)>;

/// An Entra-like signer: an RSA key, its JWKS served on 127.0.0.1, tokens shaped like Entra's.
struct FakeEntra {
    base: String,
    key: jsonwebtoken::EncodingKey,
}

const TENANT: &str = "8f5a5d3c-0d6b-4f33-9c3e-2b1f0a7c9d11";
const APP: &str = "11111111-2222-4333-8444-555555555555";

async fn fake_entra() -> FakeEntra {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pem = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let b64 =
        |b: Vec<u8>| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "kid": "k1",
        "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be())}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeEntra {
        base,
        key: jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    }
}

impl FakeEntra {
    fn token(&self, change: impl FnOnce(&mut Value)) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": format!("{}/{TENANT}/v2.0", self.base), "aud": "api://toolgate",
            "tid": TENANT, "azp": APP, "oid": "99999999-2222-4333-8444-555555555555",
            "sub": "99999999-2222-4333-8444-555555555555", "idtyp": "app",
            "roles": ["Toolgate.Agent"], "iat": now, "nbf": now - 10, "exp": now + 600,
        });
        change(&mut claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

#[tokio::test]
async fn entra_app_only_tokens_act_as_their_registered_service_principal() {
    let w = world().await;
    let entra = fake_entra().await;
    let settings = json!({"enabled": true, "tenant_id": TENANT, "audiences": ["api://toolgate"],
        "required_role": "Toolgate.Agent", "jwks_url": format!("{}/keys", entra.base),
        "issuer_base": entra.base});
    let (s, b) = w
        .app
        .put("/api/v1/settings/entra-apps", settings.clone())
        .await;
    assert_eq!(s, 200, "{b}");
    let token = entra.token(|_| {});
    assert_eq!(
        w.mcp_status(&token).await,
        401,
        "no service principal is mapped to the app yet"
    );
    let (s, b) = w
        .app
        .post(
            "/api/v1/service-principals",
            json!({"name": "entra-bot", "owner": "ops@example.com", "groups": [w.group],
                   "entra_app_id": APP}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let sp = b["client_id"].as_str().unwrap().to_string();
    let client = w.app.mcp_client(&token).await;
    assert_eq!(client.list_all_tools().await.unwrap().len(), 2);
    client
        .call_tool(
            CallToolRequestParams::new("up__echo")
                .with_arguments(json!({"text": "from entra"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    client.cancel().await.unwrap();
    let (_, page) = w.app.get("/api/v1/audit?kind=tool_call").await;
    assert_eq!(page["items"][0]["principal_id"], sp.as_str());
    assert_eq!(page["items"][0]["subject_kind"], "service_principal");
    // Every rule refuses on its own.
    let refused: Vec<(&str, ClaimChange)> = vec![
        (
            "another audience",
            Box::new(|c: &mut Value| c["aud"] = json!("api://other")),
        ),
        (
            "another tenant",
            Box::new(|c: &mut Value| c["tid"] = json!("00000000-0000-4000-8000-000000000000")),
        ),
        (
            "an unregistered app",
            Box::new(|c: &mut Value| c["azp"] = json!("00000000-0000-4000-8000-000000000001")),
        ),
        (
            "no app role",
            Box::new(|c: &mut Value| c["roles"] = json!([])),
        ),
        (
            "a delegated token",
            Box::new(|c: &mut Value| {
                c["scp"] = json!("user_impersonation");
                c["idtyp"] = json!("user");
            }),
        ),
        (
            "expired",
            Box::new(|c: &mut Value| c["exp"] = json!(chrono::Utc::now().timestamp() - 3600)),
        ),
    ];
    for (what, change) in refused {
        assert_eq!(w.mcp_status(&entra.token(change)).await, 401, "{what}");
    }
    // Disabling the principal, or the whole feature, ends it.
    let (s, _) = w
        .app
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/service-principals/{sp}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(w.mcp_status(&token).await, 401);
    let (s, _) = w
        .app
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/service-principals/{sp}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(w.mcp_status(&token).await, 200);
    let mut off = settings;
    off["enabled"] = json!(false);
    let (s, _) = w.app.put("/api/v1/settings/entra-apps", off).await;
    assert_eq!(s, 200);
    assert_eq!(w.mcp_status(&token).await, 401);
    // Bad settings are refused and change nothing.
    let (s, _) = w
        .app
        .put(
            "/api/v1/settings/entra-apps",
            json!({"enabled": true, "tenant_id": "nope", "audiences": []}),
        )
        .await;
    assert_eq!(s, 422);
}

/// Polls `check` for up to a second; true once it holds.
async fn within_a_second(mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn replicas_share_grants_and_revocations_within_a_second() {
    if skip_postgres() {
        return;
    }
    let (a, b) = spawn_replicas_postgres().await;
    let w = world_on(a).await;
    // B answers for the same public URL; the test reaches it directly.
    let b_url = format!("http://{}", b.server.addr);
    // Signed in through replica A, used on replica B.
    let (access, refresh) = w.sign_in().await;
    let on_b = |token: String| {
        let b = &b;
        async move {
            b.http
                .post(format!("http://{}/mcp", b.server.addr))
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&initialize())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(on_b(access.clone()).await, 200);
    // Refreshed on B (the same database), used on A.
    let res = b
        .http
        .post(format!("{b_url}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", w.client_id.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let fresh: Value = res.json().await.unwrap();
    let access2 = fresh["access_token"].as_str().unwrap().to_string();
    assert_eq!(w.mcp_status(&access2).await, 200);
    // Consent withdrawn on A: B refuses within a second.
    let id: String = form_urlencoded::byte_serialize(w.client_id.as_bytes()).collect();
    let (s, _) = w
        .app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{}/consents/{id}", w.alice),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert!(
        within_a_second(async || on_b(access2.clone()).await == 401).await,
        "replica B still accepted a revoked grant after 1 s"
    );
    // A service principal created on A gets a token on B, which A accepts.
    let (s, created) = w
        .app
        .post(
            "/api/v1/service-principals",
            json!({"name": "replica-bot", "owner": "ops", "groups": [w.group]}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let res = b
        .http
        .post(format!("{b_url}/oauth/token"))
        .basic_auth(
            created["client_id"].as_str().unwrap(),
            created["client_secret"].as_str(),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    let s = res.status().as_u16();
    let t: Value = res.json().await.unwrap();
    assert_eq!(s, 200, "{t}");
    let sp_token = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(w.mcp_status(&sp_token).await, 200);
    // Disabled on A: B refuses within a second.
    let sp = created["client_id"].as_str().unwrap();
    let (s, _) = w
        .app
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/service-principals/{sp}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(within_a_second(async || on_b(sp_token.clone()).await == 401).await);
}

#[tokio::test]
async fn unknown_scopes_are_ignored_and_a_refused_refresh_keeps_the_token() {
    let w = world().await;
    let q = w
        .authorize(
            &w.client_id.clone(),
            &[("scope", "mcp:read offline_access openid")],
        )
        .await;
    let (s, b) = w.exchange(&w.client_id, &q["code"]).await;
    assert_eq!((s, b["scope"].as_str()), (200, Some("mcp:read")), "{b}");
    let refresh = b["refresh_token"].as_str().unwrap().to_string();
    // Asking for more than was granted: invalid_scope, and the refresh token is not used up
    // (a retry must not look like reuse and revoke the grant).
    let (s, b) = w
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &w.client_id),
            ("scope", "mcp:read mcp:tools"),
        ])
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_scope")),
        "{b}"
    );
    let (s, b) = w
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &w.client_id),
            ("scope", "mcp:read offline_access"),
        ])
        .await;
    assert_eq!((s, b["scope"].as_str()), (200, Some("mcp:read")), "{b}");
}

#[tokio::test]
async fn loopback_redirects_registered_without_a_port_accept_any_port() {
    let w = world().await;
    let (s, b) = w
        .app
        .post(
            "/api/v1/oauth/clients",
            json!({"name": "Native", "redirect_uris": ["http://127.0.0.1/callback"]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let native = b["client"]["id"].as_str().unwrap().to_string();
    // REDIRECT is http://127.0.0.1:45678/callback: same host and path, an ephemeral port.
    let q = w.authorize(&native, &[]).await;
    let (s, b) = w.exchange(&native, &q["code"]).await;
    assert_eq!(s, 200, "{b}");
    for other in [
        "http://127.0.0.1:45678/elsewhere",
        "http://localhost:45678/callback",
        "http://127.0.0.1:45678/callback?x=1",
    ] {
        let res = w
            .browser
            .get(w.authorize_url(&native, &[("redirect_uri", other)]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{other}");
    }
}

#[tokio::test]
async fn a_code_is_worthless_once_consent_is_withdrawn() {
    let w = world().await;
    let q = w.authorize(&w.client_id.clone(), &[]).await;
    let id: String = form_urlencoded::byte_serialize(w.client_id.as_bytes()).collect();
    let (s, _) = w
        .app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{}/consents/{id}", w.alice),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, b) = w.exchange(&w.client_id, &q["code"]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
}

#[tokio::test]
async fn an_open_stream_ends_when_its_access_token_expires() {
    let w = world().await;
    let (access, _) = w.sign_in().await;
    // The same grant, in a token that expires in two seconds.
    let payload = access.split('.').nth(1).unwrap();
    let mut claims: toolgate::oauth::access::AccessClaims = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    claims.exp = chrono::Utc::now().timestamp() + 2;
    let key = w
        .app
        .server
        .state
        .store
        .cipher()
        .derive_key("oauth access token hs256");
    let short = toolgate::oauth::access::AccessTokens::new(key, w.app.base.clone()).mint(&claims);
    let session = raw_session_at(&w.app.http, &w.app.base, &short).await;
    let mut stream = w
        .app
        .http
        .get(w.app.url("/mcp"))
        .bearer_auth(&short)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let idle = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(idle.is_err(), "the stream ended before the token expired");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(4), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its access token");
}

#[tokio::test]
async fn an_mcp_session_belongs_to_whoever_opened_it() {
    let w = world().await;
    let (alice_token, _) = w.sign_in().await;
    let bob = w.app.create_user("bob@example.com").await;
    w.app.add_member(&w.group, &bob).await;
    let bob_token = w.app.personal_token(&bob).await;
    let session = raw_session_at(&w.app.http, &w.app.base, &alice_token).await;
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    let post = |token: String| {
        let w = &w;
        let session = session.clone();
        let list = list.clone();
        async move {
            w.app
                .http
                .post(w.app.url("/mcp"))
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25")
                .json(&list)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post(bob_token.clone()).await,
        404,
        "bob cannot use alice's session"
    );
    assert_eq!(post(alice_token.clone()).await, 200);
    // Bob's own session works for him.
    let mine = raw_session_at(&w.app.http, &w.app.base, &bob_token).await;
    assert_ne!(mine, session);
}
