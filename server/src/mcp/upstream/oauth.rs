//! OAuth 2.0 client credentials for upstreams (RFC 6749 §4.4): the gateway gets its own access
//! token from the connector's token endpoint, caches it until shortly before it expires and
//! sends it as `Authorization: Bearer`. Tokens and client secrets are never logged.

use super::UpstreamError;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use toolgate_domain::store::ConnectorSecrets;

/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Lifetime assumed when the response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is replaced this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// An access token and when to stop using it.
#[derive(Clone)]
pub(super) struct AccessToken {
    pub value: String,
    /// `expires_in` minus the margin: from then on the connection is reopened with a new token.
    pub refresh_at: Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never reaches logs.
        f.debug_struct("AccessToken")
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

/// Cached tokens by connector id, each for the settings (`updated_at`) it was fetched with.
#[derive(Default)]
pub(super) struct TokenCache {
    tokens: Mutex<HashMap<String, (i64, AccessToken)>>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct TokenErrorResponse {
    error: String,
}

impl TokenCache {
    /// The cached token, if it is still good for these settings; `fresh` says it was fetched now.
    pub(super) async fn token(
        &self,
        http: &reqwest::Client,
        c: &ConnectorSecrets,
    ) -> Result<(AccessToken, bool), UpstreamError> {
        let version = c.connector.updated_at.timestamp_millis();
        {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((v, t)) = tokens.get(&c.connector.id)
                && *v == version
                && t.refresh_at > Instant::now()
            {
                return Ok((t.clone(), false));
            }
        }
        let token = fetch(http, c).await?;
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.insert(c.connector.id.clone(), (version, token.clone()));
        Ok((token, true))
    }

    /// Drops a connector's token (the upstream refused it).
    pub(super) fn invalidate(&self, connector_id: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.remove(connector_id);
    }

    /// Forgets tokens of connectors that are gone or disabled.
    pub(super) fn retain(&self, keep: &[String]) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|id, _| keep.contains(id));
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before they go into HTTP Basic.
fn form_encoded(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Requests a token with the client credentials grant.
pub(super) async fn fetch(
    http: &reqwest::Client,
    c: &ConnectorSecrets,
) -> Result<AccessToken, UpstreamError> {
    let name = &c.connector.name;
    let fail = |why: String| UpstreamError::Credentials(name.clone(), why);
    let (Some(oauth), Some(secret)) = (&c.connector.oauth, &c.oauth_client_secret) else {
        return Err(UpstreamError::Misconfigured(
            name.clone(),
            "oauth is set without a client secret".into(),
        ));
    };
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &oauth.scope {
            form.append_pair("scope", scope);
        }
        if let Some(resource) = &oauth.resource {
            form.append_pair("resource", resource);
        }
        form.finish()
    };
    let started = Instant::now();
    // The shared client follows no redirects: the secret goes to the configured endpoint only.
    let res = http
        .post(&oauth.token_url)
        .basic_auth(form_encoded(&oauth.client_id), Some(form_encoded(secret)))
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(body)
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(|e| fail(format!("token endpoint: {}", super::describe(&e))))?;
    let status = res.status();
    let body = read_capped(res)
        .await
        .map_err(|why| fail(format!("token endpoint: {why}")))?;
    if status.is_redirection() {
        return Err(fail(format!(
            "token endpoint answered HTTP {} (redirects are not followed)",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        // Only the standard error code is kept: the description may echo what was sent.
        let code = serde_json::from_slice::<TokenErrorResponse>(&body)
            .ok()
            .map(|e| e.error)
            .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic()));
        return Err(fail(match code {
            Some(code) => format!(
                "token endpoint refused the client credentials (HTTP {}, {code})",
                status.as_u16()
            ),
            None => format!("token endpoint answered HTTP {}", status.as_u16()),
        }));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| fail("token endpoint sent no access_token".into()))?;
    if parsed.access_token.is_empty() {
        return Err(fail("token endpoint sent an empty access_token".into()));
    }
    if let Some(t) = &parsed.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(fail(format!(
            "token endpoint sent a {t:?} token; only Bearer is supported"
        )));
    }
    let lifetime = match &parsed.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(Duration::from_secs),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
        _ => None,
    }
    .unwrap_or(DEFAULT_LIFETIME);
    tracing::info!(connector = %name, expires_in = lifetime.as_secs(), "upstream access token fetched");
    Ok(AccessToken {
        value: parsed.access_token,
        // Short-lived tokens are replaced halfway through instead.
        refresh_at: started
            + if lifetime > EXPIRY_MARGIN * 2 {
                lifetime - EXPIRY_MARGIN
            } else {
                lifetime / 2
            },
    })
}

/// The response body, refusing more than [`MAX_TOKEN_RESPONSE`] bytes.
async fn read_capped(res: reqwest::Response) -> Result<Vec<u8>, String> {
    if res
        .content_length()
        .is_some_and(|n| n > MAX_TOKEN_RESPONSE as u64)
    {
        return Err("response larger than 64 KiB".into());
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| super::describe(&e))?;
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err("response larger than 64 KiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
