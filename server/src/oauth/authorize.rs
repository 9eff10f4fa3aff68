//! The authorization endpoint and the consent page. The request is checked (client, exact
//! redirect URI, PKCE S256, resource, scopes) and parked in the person's session; they sign in
//! through the OpenID Provider, then consent once per client (CSRF-protected page that cannot be
//! framed); the client gets a single-use code bound to all of it.

use super::clients::{is_loopback_redirect, redirect_host, resolve_client};
use crate::state::AppState;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use toolgate_app::auth::{DashboardUser, SESSION_USER_KEY, SignInSource};
use toolgate_domain::model::OAuthClientKind;
use toolgate_domain::model::{AuditDecision, Scopes};
use toolgate_domain::store::AuthCode;
use toolgate_domain::store::redirect_matches;
use tower_sessions::Session;

/// Session key of the authorization requests waiting for sign-in or consent.
const PENDING_KEY: &str = "oauth_pending";
/// How long a parked request lives.
const PENDING_TTL_SECS: i64 = 600;
/// How long an authorization code lives.
const CODE_TTL_MS: i64 = 120_000;
/// Parked requests kept per session (the oldest goes first).
const MAX_PENDING: usize = 5;

/// An authorization request waiting for the person.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    client_id: String,
    client_name: String,
    redirect_uri: String,
    redirect_uris: Vec<String>,
    state: Option<String>,
    code_challenge: String,
    scopes: String,
    resource: String,
    created_at: i64,
    csrf: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Headers every page of this flow carries: no framing (clickjacking), no caching, no referrer
/// (the URL holds the request id).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Toolgate</title><link rel=\"stylesheet\" href=\"/pkg/toolgate.css\"></head>\
         <body><main class=\"narrow consent\">{body}</main></body></html>",
        title = esc(title)
    );
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// An error shown to the person: used whenever the redirect URI is not (yet) trusted.
fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Authorization failed",
        &format!(
            "<h1>This agent cannot be authorized</h1><p id=\"oauth-error\">{}</p>\
             <p>Close this window and tell whoever set up the agent.</p>",
            esc(message)
        ),
    )
}

/// Sends an OAuth error back to a verified redirect URI (RFC 6749 §4.1.2.1, RFC 9207 `iss`).
fn redirect_error(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    code: &str,
    description: &str,
) -> Response {
    let mut url = match reqwest::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page(description),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", code);
        q.append_pair("error_description", description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    Redirect::to(url.as_str()).into_response()
}

fn random_id() -> String {
    toolgate_domain::crypto::new_token("r").0[2..].to_string()
}

/// `GET /oauth/authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    session: Session,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in raw {
        if params.insert(k.clone(), v).is_some() {
            return error_page(&format!("the parameter {k} was given more than once"));
        }
    }
    let issuer = state.oauth.issuer().to_string();
    let Some(client_id) = params.get("client_id").filter(|c| !c.is_empty()) else {
        return error_page("client_id is missing");
    };
    let client = match resolve_client(&state, client_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(client = %client_id, error = %e, "authorization request refused");
            return error_page(&e);
        }
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return error_page("redirect_uri is missing");
    };
    if !client
        .client
        .redirect_uris
        .iter()
        .any(|u| redirect_matches(u, redirect_uri))
    {
        return error_page("redirect_uri is not registered for this client");
    }
    // From here on the redirect URI is verified: errors go back to an admin-registered client.
    // Self-registered clients (DCR, CIMD) get them as a page, so the endpoint cannot serve as an
    // open redirector to whatever URI someone registered (RFC 9700 §4.11.2).
    let st = params.get("state").map(String::as_str);
    let trusted = client.client.kind == OAuthClientKind::Preregistered;
    let fail = |code: &str, d: &str| {
        if trusted {
            redirect_error(&issuer, redirect_uri, st, code, d)
        } else {
            error_page(&format!("{code}: {d}"))
        }
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return fail(
            "unsupported_response_type",
            "only the authorization code flow (response_type=code) is supported",
        );
    }
    let Some(challenge) = params.get("code_challenge") else {
        return fail(
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        );
    };
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return fail(
            "invalid_request",
            "PKCE code_challenge_method must be S256 (plain is not accepted)",
        );
    }
    let challenge_ok = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !challenge_ok {
        return fail(
            "invalid_request",
            "code_challenge is not a base64url SHA-256",
        );
    }
    let Some(resource) = params.get("resource") else {
        return fail(
            "invalid_target",
            "the resource parameter (RFC 8707) is required",
        );
    };
    if resource.trim_end_matches('/') != state.oauth.tokens.resource {
        return fail(
            "invalid_target",
            "this server issues tokens only for its own MCP endpoint",
        );
    }
    // Scopes Toolgate does not know (offline_access, openid, …) are ignored (RFC 6749 §3.3).
    let scopes = Scopes::requested(params.get("scope").map(String::as_str).unwrap_or(""));
    let now = state.store.clock().now().timestamp();
    let id = random_id();
    let pending = Pending {
        client_id: client.client.id.clone(),
        client_name: client.client.name.clone(),
        redirect_uri: redirect_uri.clone(),
        redirect_uris: client.client.redirect_uris.clone(),
        state: st.map(str::to_string),
        code_challenge: challenge.clone(),
        scopes: scopes.to_string(),
        resource: state.oauth.tokens.resource.clone(),
        created_at: now,
        csrf: random_id(),
    };
    // Signed in already and consented to this client for these scopes: straight back.
    if let Some(me) = session
        .get::<DashboardUser>(SESSION_USER_KEY)
        .await
        .ok()
        .flatten()
        .filter(|u| u.source == SignInSource::Oidc)
        && matches!(state.store.get_user(&me.id).await, Ok(u) if u.active)
        && let Ok(Some(given)) = state.store.consent(&me.id, &pending.client_id).await
        && given.contains(scopes)
    {
        return issue_code(&state, &me, &pending, false).await;
    }
    let mut all: Vec<(String, Pending)> = session
        .get(PENDING_KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    all.retain(|(_, p)| now - p.created_at <= PENDING_TTL_SECS);
    while all.len() >= MAX_PENDING {
        all.remove(0);
    }
    all.push((id.clone(), pending));
    if session.insert(PENDING_KEY, &all).await.is_err() {
        return error_page("your session could not be stored");
    }
    let consent = format!("/oauth/consent?request={id}");
    match session
        .get::<DashboardUser>(SESSION_USER_KEY)
        .await
        .ok()
        .flatten()
    {
        Some(u) if u.source == SignInSource::Oidc => Redirect::to(&consent).into_response(),
        _ => {
            let back: String = form_urlencoded::byte_serialize(consent.as_bytes()).collect();
            Redirect::to(&format!("/auth/oidc/login?return_to={back}")).into_response()
        }
    }
}

async fn take_pending(session: &Session, id: &str, remove: bool) -> Option<Pending> {
    let mut all: Vec<(String, Pending)> = session.get(PENDING_KEY).await.ok().flatten()?;
    let pos = all.iter().position(|(k, _)| k == id)?;
    let found = all[pos].1.clone();
    if remove {
        all.remove(pos);
        session.insert(PENDING_KEY, &all).await.ok()?;
    }
    Some(found)
}

/// The signed-in person for the agent authorization: a directory user, signed in through the
/// OpenID Provider, still active.
async fn signed_in_person(
    state: &AppState,
    session: &Session,
) -> Result<DashboardUser, Box<Response>> {
    let user: Option<DashboardUser> = session.get(SESSION_USER_KEY).await.ok().flatten();
    match user {
        Some(u) if u.source == SignInSource::Oidc => match state.store.get_user(&u.id).await {
            Ok(db) if db.active => Ok(u),
            _ => Err(Box::new(error_page("your account is disabled"))),
        },
        Some(_) => Err(Box::new(error_page(
            "agents act for a person: sign out of the local administrator account and sign in with your organisation account",
        ))),
        None => Err(Box::new(error_page("you are not signed in"))),
    }
}

#[derive(Debug, Deserialize)]
pub struct ConsentQuery {
    request: String,
}

/// `GET /oauth/consent?request=…`: asks the person, unless they already consented to this
/// client for these scopes.
pub async fn consent_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ConsentQuery>,
) -> Response {
    let Some(p) = take_pending(&session, &q.request, false).await else {
        return error_page("this authorization request has expired; start again from the agent");
    };
    let now = state.store.clock().now().timestamp();
    if now - p.created_at > PENDING_TTL_SECS {
        return error_page("this authorization request has expired; start again from the agent");
    }
    let me = match signed_in_person(&state, &session).await {
        Ok(u) => u,
        Err(res) => return *res,
    };
    let wanted = Scopes::parse(&p.scopes).unwrap_or(Scopes::NONE);
    if let Ok(Some(given)) = state.store.consent(&me.id, &p.client_id).await
        && given.contains(wanted)
    {
        let _ = take_pending(&session, &q.request, true).await;
        return issue_code(&state, &me, &p, false).await;
    }
    // Where this request's answer goes (not every host the client registered).
    let host = redirect_host(&p.redirect_uri);
    let all_loopback = p.redirect_uris.iter().all(|u| is_loopback_redirect(u));
    let warning = if all_loopback {
        "<p id=\"consent-localhost-warning\" class=\"warning\">Every address this client returns to \
         is on your own computer (localhost). That is normal for command-line and desktop agents, \
         but anyone can register such a client under any name: allow it only if you started this \
         sign-in yourself just now.</p>"
    } else {
        ""
    };
    let scopes_html: String = Scopes::parse(&p.scopes)
        .unwrap_or(Scopes::NONE)
        .names()
        .iter()
        .map(|s| {
            let what = match s.as_str() {
                Scopes::READ_NAME => "see the tools, resources and prompts your groups allow",
                _ => "call the tools your groups allow, on your behalf",
            };
            format!("<li><code>{}</code>: {}</li>", esc(s), esc(what))
        })
        .collect();
    let body = format!(
        "<h1>Allow an agent to act for you?</h1>\
         <p><strong id=\"consent-client\">{name}</strong> wants to use Toolgate as \
         <strong>{user}</strong>.</p>\
         <p>It will receive its answers at <strong id=\"consent-redirect-host\">{host}</strong>.</p>\
         {warning}<ul id=\"consent-scopes\">{scopes_html}</ul>\
         <p class=\"muted\">Client id: <code>{client_id}</code>. You can withdraw this at any time \
         under \"Connect your agent\".</p>\
         <form method=\"post\" action=\"/oauth/consent\">\
         <input type=\"hidden\" name=\"request\" value=\"{req}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button id=\"consent-allow\" name=\"decision\" value=\"allow\" type=\"submit\">Allow</button> \
         <button id=\"consent-deny\" name=\"decision\" value=\"deny\" type=\"submit\" class=\"secondary\">Deny</button>\
         </form>",
        name = esc(&p.client_name),
        user = esc(&me.username),
        host = esc(&host),
        client_id = esc(&p.client_id),
        req = esc(&q.request),
        csrf = esc(&p.csrf),
    );
    page(StatusCode::OK, "Allow access", &body)
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    request: String,
    csrf: String,
    decision: String,
}

/// A cross-site POST is refused when the browser says so (Origin or Sec-Fetch-Site); the CSRF
/// field covers browsers that send neither.
fn same_origin(headers: &HeaderMap, issuer: &str) -> bool {
    // Compared as bytes: a value that is not text is refused too, not taken for a missing one.
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return false;
    }
    let fetch_same_origin = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"same-origin");
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // An opaque origin is only trusted when the browser vouches the request is same-origin.
        Some("null") => fetch_same_origin,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            origin.trim_end_matches('/') == issuer
                || origin.split_once("://").map(|(_, h)| h) == Some(host)
        }
        None => true,
    }
}

/// `POST /oauth/consent`.
pub async fn consent_decision(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    if !same_origin(&headers, state.oauth.issuer()) {
        return error_page("this form was sent from another site");
    }
    let Some(p) = take_pending(&session, &form.request, false).await else {
        return error_page("this authorization request has expired; start again from the agent");
    };
    let csrf_ok = {
        use subtle_eq::eq;
        eq(p.csrf.as_bytes(), form.csrf.as_bytes())
    };
    if !csrf_ok {
        return error_page("the form has expired; start again from the agent");
    }
    let me = match signed_in_person(&state, &session).await {
        Ok(u) => u,
        Err(res) => return *res,
    };
    let _ = take_pending(&session, &form.request, true).await;
    let now = state.store.clock().now().timestamp();
    if now - p.created_at > PENDING_TTL_SECS {
        return error_page("this authorization request has expired; start again from the agent");
    }
    if form.decision != "allow" {
        super::audit(
            &state,
            "oauth.consent_denied",
            &me.username,
            ("person", Some(&me.id)),
            Some((&p.client_id, &p.client_name)),
            "the person denied the agent access".into(),
            AuditDecision::Deny,
        )
        .await;
        return redirect_error(
            state.oauth.issuer(),
            &p.redirect_uri,
            p.state.as_deref(),
            "access_denied",
            "the person denied access",
        );
    }
    let scopes = Scopes::parse(&p.scopes).unwrap_or(Scopes::NONE);
    if let Err(e) = state
        .store
        .record_consent(&me.id, &p.client_id, scopes)
        .await
    {
        tracing::error!(error = %e, "recording consent failed");
        return error_page("your consent could not be recorded");
    }
    issue_code(&state, &me, &p, true).await
}

async fn issue_code(state: &AppState, me: &DashboardUser, p: &Pending, asked: bool) -> Response {
    let code = AuthCode {
        client_id: p.client_id.clone(),
        user_id: me.id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        code_challenge: p.code_challenge.clone(),
        resource: p.resource.clone(),
        scopes: Scopes::parse(&p.scopes).unwrap_or(Scopes::NONE),
        expires_at: state.store.clock().now().timestamp_millis() + CODE_TTL_MS,
    };
    let secret = match state.store.create_auth_code(&code).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "storing an authorization code failed");
            return error_page("the authorization could not be completed");
        }
    };
    super::audit(
        state,
        "oauth.authorized",
        &me.username,
        ("person", Some(&me.id)),
        Some((&p.client_id, &p.client_name)),
        format!(
            "scopes {}; redirect {}; {}",
            p.scopes,
            p.redirect_uri,
            if asked {
                "consent given"
            } else {
                "earlier consent"
            }
        ),
        AuditDecision::Allow,
    )
    .await;
    let Ok(mut url) = reqwest::Url::parse(&p.redirect_uri) else {
        return error_page("the redirect URI is invalid");
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &secret);
        if let Some(s) = &p.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", state.oauth.issuer());
    }
    Redirect::to(url.as_str()).into_response()
}

/// Constant-time comparison of short secrets.
mod subtle_eq {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Fuzz targets (`make fuzz`): what the authorization endpoint and the consent page do with
/// request parameters: escaping, error redirects, the same-origin check, scopes.
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;
    use toolgate_domain::fuzz::{config, hostile_string, short_hostile_string, url_like};

    fn unescape(s: &str) -> String {
        s.replace("&#39;", "'")
            .replace("&quot;", "\"")
            .replace("&gt;", ">")
            .replace("&lt;", "<")
            .replace("&amp;", "&")
    }

    fn scope_text() -> BoxedStrategy<String> {
        prop_oneof![
            prop::collection::vec(
                prop::sample::select(vec![
                    "mcp:read",
                    "mcp:tools",
                    "openid",
                    "offline_access",
                    "MCP:READ",
                    "",
                    " ",
                    "mcp:read\t",
                    "mcp:*",
                ]),
                0..5
            )
            .prop_map(|v| v.join(" ")),
            short_hostile_string(),
        ]
        .boxed()
    }

    proptest! {
        #![proptest_config(config(600))]

        /// Client-supplied text on the consent page: nothing that could open a tag or leave
        /// an attribute survives, and nothing is lost.
        #[test]
        fn fuzz_oauth_consent_escaping(text in hostile_string()) {
            let e = esc(&text);
            prop_assert!(!e.contains(['<', '>', '"', '\'']));
            prop_assert_eq!(unescape(&e), text);
        }

        /// An error sent back to a redirect URI: a redirect carrying `error`, `state` and `iss`
        /// exactly (whatever they contain) when the URI parses, else an error page.
        #[test]
        fn fuzz_oauth_authorize_error_redirects(
            redirect_uri in url_like(),
            state in prop::option::of(hostile_string()),
            description in short_hostile_string(),
        ) {
            let issuer = "https://tg.example.com";
            let res = redirect_error(issuer, &redirect_uri, state.as_deref(), "invalid_request", &description);
            match reqwest::Url::parse(&redirect_uri) {
                Ok(_) => {
                    prop_assert!(res.status().is_redirection(), "{}", res.status());
                    let location = res
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let back = reqwest::Url::parse(location)
                        .map_err(|e| TestCaseError::fail(format!("{location}: {e}")))?;
                    let q: Vec<(String, String)> = back.query_pairs().into_owned().collect();
                    let get = |k: &str| q.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    prop_assert_eq!(get("error"), Some("invalid_request".to_string()));
                    prop_assert_eq!(get("iss"), Some(issuer.to_string()));
                    prop_assert_eq!(get("error_description"), Some(description));
                    if let Some(s) = &state {
                        prop_assert_eq!(get("state"), Some(s.clone()));
                    }
                }
                Err(_) => prop_assert_eq!(res.status(), StatusCode::BAD_REQUEST),
            }
        }

        /// The consent form's origin check: a browser's cross-site marker always refuses, and
        /// no header value makes it panic.
        #[test]
        fn fuzz_oauth_consent_same_origin(
            site in prop::option::of(prop_oneof![
                prop::sample::select(vec!["same-origin", "none", "cross-site", "same-site"]).prop_map(str::to_string),
                short_hostile_string(),
            ]),
            origin in prop::option::of(prop_oneof![
                Just("null".to_string()),
                Just("https://tg.example.com".to_string()),
                url_like(),
            ]),
            host in prop::option::of(prop_oneof![Just("tg.example.com".to_string()), short_hostile_string()]),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [("sec-fetch-site", &site), ("origin", &origin), ("host", &host)] {
                if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                    headers.insert(name, v);
                }
            }
            let ok = same_origin(&headers, "https://tg.example.com");
            let sent_site = headers.get("sec-fetch-site").map(|v| v.as_bytes().to_vec());
            if sent_site.as_deref().is_some_and(|s| s != b"same-origin" && s != b"none") {
                prop_assert!(!ok);
            }
            if headers.get("origin").is_some_and(|o| o.as_bytes() == b"null") {
                prop_assert_eq!(ok, sent_site.as_deref() == Some(b"same-origin".as_slice()));
            }
        }

        /// Scope strings: what is requested is never empty (nothing known means every scope),
        /// and a parsed scope set prints back to itself.
        #[test]
        fn fuzz_oauth_scope_parameters(text in scope_text()) {
            let requested = Scopes::requested(&text);
            prop_assert!(!requested.is_empty());
            prop_assert_eq!(Scopes::parse(&requested.to_string()), Ok(requested));
            match Scopes::parse(&text) {
                Ok(s) => prop_assert_eq!(Scopes::parse(&s.to_string()), Ok(s)),
                Err(e) => prop_assert!(e.starts_with("unknown scope"), "{e}"),
            }
        }
    }
}
