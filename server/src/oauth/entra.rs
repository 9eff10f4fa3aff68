//! Microsoft Entra ID app-only access tokens (client credentials of an Entra app registration),
//! verified offline against the tenant's published signing keys so service principals need no
//! Toolgate secret: RS256 only, exact issuer and tenant, audience, time, app-only claims, app role.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Allowed clock skew on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// How long a fetched key set is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// While Microsoft is unreachable, keys fetched up to this long ago are still used; older ones
/// are not (a key Microsoft withdrew must not live on because fetches fail).
const JWKS_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` (or a failed fetch) leads to at most one fetch per this interval, so a flood
/// of forged tokens cannot make us hammer Microsoft, yet a rotated key is picked up quickly.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Time limit of one key-set fetch.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key-set document we read (Microsoft's is a few KB).
const JWKS_MAX_BYTES: usize = 256 * 1024;
/// Longest token we look at; Entra access tokens are a few KB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Microsoft's sign-in host (the v2 issuer and the key set live under it).
const DEFAULT_LOGIN_BASE: &str = "https://login.microsoftonline.com";
/// The v1 token issuer host.
const V1_ISSUER_BASE: &str = "https://sts.windows.net";

/// Which Entra app-only tokens the gateway accepts (setting `entra_apps`; the type is the
/// domain's, shared with the dashboard).
pub use toolgate_domain::model::EntraAppSettings;

/// The rules of [`EntraAppSettings`]: validation and the URLs derived from them.
pub trait EntraRules {
    /// Checks the settings an admin submits; `Err` carries a message fit for the admin.
    fn validate(&self) -> Result<(), String>;
    /// Where the tenant's signing keys are fetched from.
    fn jwks_url(&self) -> String;
    /// The accepted issuers: v2 `https://login.microsoftonline.com/{tid}/v2.0` and v1
    /// `https://sts.windows.net/{tid}/`.
    fn issuers(&self) -> Vec<String>;
    fn v2_issuer(&self) -> String;
    fn v1_issuer(&self) -> String;
    fn login_base(&self) -> &str;
    /// Entra writes tenant ids in lower case in issuers and `tid`.
    fn tenant(&self) -> String;
}

impl EntraRules for EntraAppSettings {
    /// Checks the settings an admin submits; `Err` carries a message fit for the admin.
    fn validate(&self) -> Result<(), String> {
        if (self.enabled || !self.tenant_id.is_empty()) && !is_guid(&self.tenant_id) {
            return Err("tenant_id must be the directory (tenant) id, a GUID".into());
        }
        if self.enabled && self.audiences.is_empty() {
            return Err("audiences must name the gateway's app id URI or client id".into());
        }
        for aud in &self.audiences {
            if aud.trim().is_empty() || aud.trim() != aud || aud.len() > 512 {
                return Err(format!("audience {aud:?} is empty, padded or too long"));
            }
        }
        if let Some(role) = &self.required_role
            && (role.trim().is_empty() || role.trim() != role || role.len() > 256)
        {
            return Err("required_role must be a non-empty app role value".into());
        }
        if let Some(url) = &self.jwks_url {
            check_url("jwks_url", url)?;
        }
        if let Some(url) = &self.issuer_base {
            check_url("issuer_base", url)?;
        }
        Ok(())
    }

    /// Where the tenant's signing keys are fetched from.
    fn jwks_url(&self) -> String {
        match &self.jwks_url {
            Some(url) => url.clone(),
            None => format!(
                "{}/{}/discovery/v2.0/keys",
                self.login_base(),
                self.tenant()
            ),
        }
    }

    /// The accepted issuers: v2 `https://login.microsoftonline.com/{tid}/v2.0` and v1
    /// `https://sts.windows.net/{tid}/`.
    fn issuers(&self) -> Vec<String> {
        vec![self.v2_issuer(), self.v1_issuer()]
    }

    fn v2_issuer(&self) -> String {
        format!("{}/{}/v2.0", self.login_base(), self.tenant())
    }

    fn v1_issuer(&self) -> String {
        format!("{V1_ISSUER_BASE}/{}/", self.tenant())
    }

    fn login_base(&self) -> &str {
        self.issuer_base
            .as_deref()
            .unwrap_or(DEFAULT_LOGIN_BASE)
            .trim_end_matches('/')
    }

    /// Entra writes tenant ids in lower case in issuers and `tid`.
    fn tenant(&self) -> String {
        self.tenant_id.to_ascii_lowercase()
    }
}

/// Checks the settings the admin API receives (the domain model's copy of the same shape).
pub fn validate_settings(s: &toolgate_domain::model::EntraAppSettings) -> Result<(), String> {
    s.validate()
}

/// `8-4-4-4-12` hex digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// https, or http to a loopback host (local tests and development).
fn check_url(field: &str, raw: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(raw).map_err(|_| format!("{field} is not a URL"))?;
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]")
    );
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(format!("{field} must be an https URL")),
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{field} must name a host and carry no credentials"));
    }
    if url.fragment().is_some() {
        return Err(format!("{field} must not have a fragment"));
    }
    Ok(())
}

/// The Entra application a valid app-only token was issued to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppIdentity {
    /// The client (application) id, from `azp` (v2) or `appid` (v1).
    pub app_id: String,
    /// The tenant (`tid`).
    pub tenant_id: String,
    /// The service principal's object id in the tenant (`oid`), when present.
    pub object_id: Option<String>,
    /// The app roles granted to the application (`roles`).
    pub roles: Vec<String>,
    /// Unix seconds after which the token is refused (its `exp` plus the leeway).
    pub expires_at: i64,
}

/// Why an Entra token was refused. Every variant means 401 `invalid_token` to the caller, except
/// [`EntraError::Jwks`] and [`EntraError::Misconfigured`] which are the gateway's fault (log the
/// detail, answer generically).
#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    /// Entra app-only tokens are switched off.
    #[error("Entra app-only tokens are not accepted")]
    Disabled,
    /// The stored settings are unusable.
    #[error("Entra app settings are invalid: {0}")]
    Misconfigured(String),
    /// Not a well-formed signed JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Any algorithm but RS256.
    #[error("token algorithm {0:?} is not accepted (RS256 only)")]
    UnsupportedAlgorithm(String),
    /// The header names no signing key.
    #[error("token header has no key id (kid)")]
    MissingKeyId,
    /// The `kid` is not among the tenant's signing keys.
    #[error("signing key {0:?} is not one of the tenant's keys")]
    UnknownKey(String),
    /// The tenant's key set could not be fetched or read.
    #[error("could not fetch the tenant signing keys: {0}")]
    Jwks(String),
    /// The signature does not verify with the named key.
    #[error("token signature is invalid")]
    InvalidSignature,
    /// `iss` is not the tenant's v1 or v2 issuer.
    #[error("token issuer {0:?} is not accepted")]
    InvalidIssuer(String),
    /// `tid` is missing or another tenant.
    #[error("token is from another tenant")]
    WrongTenant,
    /// `aud` is not one of the configured audiences.
    #[error("token audience is not this gateway")]
    InvalidAudience,
    /// `exp` is missing or past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// A delegated (user) token, not an app-only one.
    #[error("not an app-only token: {0}")]
    NotAppOnly(&'static str),
    /// Neither `azp` (v2) nor `appid` (v1) names the application.
    #[error("token names no application (azp/appid)")]
    MissingAppId,
    /// `roles` lacks the required app role.
    #[error("token lacks the app role {0:?}")]
    MissingRole(String),
}

/// Attacker-controlled text in messages is cut short.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn is_b64url(seg: &str) -> bool {
    !seg.is_empty()
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The header fields we decide on before touching any key.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<serde_json::Value>,
    kid: Option<serde_json::Value>,
}

/// Splits a compact JWS and reads its header; `None` when it is not one.
fn parse_header(token: &str) -> Option<RawHeader> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_b64url(h) || !is_b64url(p) || !is_b64url(s) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()
}

/// Cheap check whether a bearer token is shaped like an Entra access token (three base64url
/// segments, RS256 with a `kid`), so the caller picks this validator over Toolgate's own HS256
/// tokens. Proves nothing about validity.
pub fn looks_like_entra_token(token: &str) -> bool {
    parse_header(token).is_some_and(|h| {
        matches!(h.alg, Some(serde_json::Value::String(ref a)) if a == "RS256")
            && matches!(h.kid, Some(serde_json::Value::String(ref k)) if !k.is_empty())
    })
}

/// `aud` is one string in Entra tokens; JWT allows an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims we check. A claim of the wrong type fails decoding (refused).
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    tid: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    idtyp: Option<String>,
    scp: Option<serde_json::Value>,
    azp: Option<String>,
    appid: Option<String>,
    oid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// The tenant's keys as last fetched.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Last fetch caused by an unknown `kid`.
    unknown_kid_fetch_at: Option<Instant>,
    /// Last failed fetch.
    failed_at: Option<Instant>,
}

impl KeyCache {
    fn fresh(&self) -> bool {
        self.fetched_at.is_some_and(|t| t.elapsed() < JWKS_TTL)
    }

    fn usable(&self) -> bool {
        self.fetched_at
            .is_some_and(|t| t.elapsed() < JWKS_MAX_STALE)
    }

    fn usable_key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys.get(kid).filter(|_| self.usable()).cloned()
    }
}

fn recent(at: Option<Instant>) -> bool {
    at.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL)
}

/// Verifies Entra app-only tokens for one tenant; holds the tenant's keys (cached 1 h).
pub struct EntraValidator {
    settings: EntraAppSettings,
    /// Set when the settings fail [`EntraAppSettings::validate`]: everything is refused.
    config_error: Option<String>,
    v2_issuer: String,
    v1_issuer: String,
    jwks_url: String,
    http: reqwest::Client,
    cache: std::sync::Mutex<KeyCache>,
    /// One fetch at a time: concurrent requests with a new `kid` wait for it instead of each
    /// fetching.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EntraValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraValidator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EntraValidator {
    /// A validator for these settings; keys are fetched on first use.
    pub fn new(settings: EntraAppSettings, http: reqwest::Client) -> Self {
        let config_error = settings.validate().err();
        Self {
            v2_issuer: settings.v2_issuer(),
            v1_issuer: settings.v1_issuer(),
            jwks_url: settings.jwks_url(),
            settings,
            config_error,
            http,
            cache: std::sync::Mutex::new(KeyCache::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings this validator enforces.
    pub fn settings(&self) -> &EntraAppSettings {
        &self.settings
    }

    /// Verifies an app-only access token at `now_unix` (seconds; the caller's clock) and returns
    /// the application it was issued to.
    pub async fn validate(&self, token: &str, now_unix: i64) -> Result<AppIdentity, EntraError> {
        if !self.settings.enabled {
            return Err(EntraError::Disabled);
        }
        if let Some(e) = &self.config_error {
            return Err(EntraError::Misconfigured(e.clone()));
        }
        let header = parse_header(token)
            .ok_or_else(|| EntraError::Malformed("not a compact JWS of a few KB".into()))?;
        // The algorithm is fixed before any key is looked up: an HS256 token "signed" with the
        // public key, or alg none, never reaches a verifier.
        match &header.alg {
            Some(serde_json::Value::String(a)) if a == "RS256" => {}
            Some(serde_json::Value::String(a)) => {
                return Err(EntraError::UnsupportedAlgorithm(clip(a)));
            }
            _ => return Err(EntraError::UnsupportedAlgorithm("(missing)".into())),
        }
        let kid = match &header.kid {
            Some(serde_json::Value::String(k)) if !k.is_empty() => k.as_str(),
            _ => return Err(EntraError::MissingKeyId),
        };
        let key = self.key(kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        // Time, issuer and audience are checked below against the caller's clock and settings.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => EntraError::InvalidSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    EntraError::UnsupportedAlgorithm("(mismatch)".into())
                }
                _ => EntraError::Malformed(clip(&e.to_string())),
            })?
            .claims;
        self.check_claims(claims, now_unix)
    }

    fn check_claims(&self, c: Claims, now: i64) -> Result<AppIdentity, EntraError> {
        let iss = c.iss.unwrap_or_default();
        let v2 = iss == self.v2_issuer;
        if !v2 && iss != self.v1_issuer {
            return Err(EntraError::InvalidIssuer(clip(&iss)));
        }
        let tid = c.tid.unwrap_or_default();
        if !tid.eq_ignore_ascii_case(&self.settings.tenant_id) {
            return Err(EntraError::WrongTenant);
        }
        let aud_ok = match &c.aud {
            Some(Audience::One(a)) => self.settings.audiences.contains(a),
            Some(Audience::Many(list)) => list.iter().any(|a| self.settings.audiences.contains(a)),
            None => false,
        };
        if !aud_ok {
            return Err(EntraError::InvalidAudience);
        }
        // Valid while now < exp + leeway (RFC 7519: "before" the expiry).
        let expires_at = match c.exp {
            Some(exp) if now < exp.saturating_add(LEEWAY_SECS) => exp.saturating_add(LEEWAY_SECS),
            _ => return Err(EntraError::Expired),
        };
        if let Some(nbf) = c.nbf
            && nbf > now.saturating_add(LEEWAY_SECS)
        {
            return Err(EntraError::NotYetValid);
        }
        // App-only: a user's delegated token must not pass as the application.
        if c.scp.is_some() {
            return Err(EntraError::NotAppOnly("delegated token (scp)"));
        }
        if let Some(idtyp) = &c.idtyp
            && idtyp != "app"
        {
            return Err(EntraError::NotAppOnly("idtyp is not app"));
        }
        let app_id = if v2 { c.azp } else { c.appid };
        let app_id = app_id
            .filter(|a| !a.is_empty())
            .ok_or(EntraError::MissingAppId)?;
        if let Some(role) = &self.settings.required_role
            && !c.roles.contains(role)
        {
            return Err(EntraError::MissingRole(role.clone()));
        }
        Ok(AppIdentity {
            app_id,
            tenant_id: tid,
            object_id: c.oid,
            roles: c.roles,
            expires_at,
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        // A poisoned lock only means another task panicked mid-update; the map is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key for `kid`: from the cache while fresh; otherwise fetched (an unknown `kid` causes
    /// at most one fetch per minute).
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, EntraError> {
        {
            let cache = self.cache();
            if cache.fresh()
                && let Some(k) = cache.keys.get(kid)
            {
                return Ok(k.clone());
            }
        }
        let _single_flight = self.fetch_lock.lock().await;
        // Another request may have fetched while we waited.
        let (stale, known, unknown_kid_recent, failed_recent) = {
            let cache = self.cache();
            (
                !cache.fresh(),
                cache.keys.get(kid).cloned(),
                recent(cache.unknown_kid_fetch_at),
                recent(cache.failed_at),
            )
        };
        if !stale && let Some(k) = known {
            return Ok(k);
        }
        let mut last_error = None;
        let mut fetched = false;
        if stale && !failed_recent {
            fetched = true;
            if let Err(e) = self.refresh().await {
                last_error = Some(e);
            }
        }
        // Keys from an expired cache stay usable (up to a day) while Microsoft is unreachable.
        if let Some(k) = self.cache().usable_key(kid) {
            return Ok(k);
        }
        if !fetched && !unknown_kid_recent && !failed_recent {
            self.cache().unknown_kid_fetch_at = Some(Instant::now());
            if let Err(e) = self.refresh().await {
                last_error = Some(e);
            }
            if let Some(k) = self.cache().usable_key(kid) {
                return Ok(k);
            }
        }
        if self.cache().usable() {
            Err(EntraError::UnknownKey(clip(kid)))
        } else {
            Err(last_error.unwrap_or_else(|| {
                EntraError::Jwks("no usable key set (a fetch failed less than a minute ago)".into())
            }))
        }
    }

    /// Fetches the key set and replaces the cache, or records the failure.
    async fn refresh(&self) -> Result<(), EntraError> {
        match self.fetch_jwks().await {
            Ok(keys) => {
                let mut cache = self.cache();
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.failed_at = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(url = %self.jwks_url, error = %e, "Entra key set fetch failed");
                self.cache().failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    async fn fetch_jwks(&self) -> Result<HashMap<String, Arc<DecodingKey>>, EntraError> {
        let err = EntraError::Jwks;
        let mut resp = self
            .http
            .get(&self.jwks_url)
            .timeout(JWKS_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| err(format!("request failed: {e}")))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP status {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > JWKS_MAX_BYTES as u64)
        {
            return Err(err("key set larger than 256 KB".into()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| err(format!("reading failed: {e}")))?
        {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(err("key set larger than 256 KB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

/// A JWK we can use; other key types and fields of unexpected shape are skipped.
#[derive(Deserialize)]
struct RsaJwk {
    kty: String,
    kid: String,
    n: String,
    e: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
}

/// The RSA signing keys of a JWKS document by `kid`.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, EntraError> {
    let jwks: Jwks =
        serde_json::from_slice(body).map_err(|_| EntraError::Jwks("not a JWKS document".into()))?;
    let mut keys = HashMap::new();
    for value in jwks.keys {
        let Ok(jwk) = serde_json::from_value::<RsaJwk>(value) else {
            continue;
        };
        if jwk.kty != "RSA"
            || jwk.kid.is_empty()
            || jwk.use_.as_deref().is_some_and(|u| u != "sig")
            || jwk.alg.as_deref().is_some_and(|a| a != "RS256")
        {
            continue;
        }
        if let Ok(key) = DecodingKey::from_rsa_components(&jwk.n, &jwk.e) {
            keys.insert(jwk.kid, Arc::new(key));
        }
    }
    if keys.is_empty() {
        return Err(EntraError::Jwks(
            "no RSA signing keys in the key set".into(),
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::http::StatusCode;
    use jsonwebtoken::{EncodingKey, Header};
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::traits::PublicKeyParts;
    use serde_json::{Value, json};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const OTHER_TENANT: &str = "0d9a8f3c-1111-4222-8333-944455556666";
    const APP: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    const AUD: &str = "api://toolgate";
    const ROLE: &str = "Toolgate.Invoke";
    const NOW: i64 = 1_800_000_000;

    struct TestKey {
        private_pem: String,
        public_pem: String,
        n: String,
        e: String,
        n_bytes: Vec<u8>,
    }

    /// Two RSA keys per test binary (keygen is slow in debug builds), made in parallel.
    fn test_keys() -> &'static [TestKey] {
        static KEYS: OnceLock<Vec<TestKey>> = OnceLock::new();
        KEYS.get_or_init(|| {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                                .expect("rsa keygen");
                            let public = key.to_public_key();
                            TestKey {
                                private_pem: key
                                    .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                                    .expect("pem")
                                    .to_string(),
                                public_pem: public
                                    .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                                    .expect("public pem"),
                                n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                                e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
                                n_bytes: key.n().to_bytes_be(),
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("keygen thread"))
                    .collect()
            })
        })
    }

    fn jwk(key: usize, kid: &str) -> Value {
        let k = &test_keys()[key];
        json!({"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": k.n, "e": k.e,
               "x5c": ["MIIC..."], "cloud_instance_name": "microsoftonline.com"})
    }

    /// A local JWKS endpoint that counts its requests; the document and status can be swapped.
    struct JwksServer {
        url: String,
        hits: Arc<AtomicUsize>,
        doc: Arc<std::sync::Mutex<(StatusCode, Value)>>,
    }

    impl JwksServer {
        async fn start(doc: Value) -> Self {
            let hits = Arc::new(AtomicUsize::new(0));
            let doc = Arc::new(std::sync::Mutex::new((StatusCode::OK, doc)));
            let (h, d) = (hits.clone(), doc.clone());
            let app = axum::Router::new().route(
                "/tenant/discovery/v2.0/keys",
                axum::routing::get(move || {
                    let (h, d) = (h.clone(), d.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = d.lock().expect("doc").clone();
                        (status, Json(body))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                url: format!("http://{addr}/tenant/discovery/v2.0/keys"),
                hits,
                doc,
            }
        }

        async fn with_key0() -> Self {
            Self::start(json!({"keys": [jwk(0, "kid-0")]})).await
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }

        fn set(&self, status: StatusCode, doc: Value) {
            *self.doc.lock().expect("doc") = (status, doc);
        }
    }

    fn settings(server: &JwksServer) -> EntraAppSettings {
        EntraAppSettings {
            enabled: true,
            tenant_id: TENANT.into(),
            audiences: vec![AUD.into(), APP.into()],
            required_role: Some(ROLE.into()),
            jwks_url: Some(server.url.clone()),
            issuer_base: None,
        }
    }

    fn validator(server: &JwksServer) -> EntraValidator {
        EntraValidator::new(settings(server), reqwest::Client::new())
    }

    fn v2_claims() -> Value {
        json!({
            "aud": AUD,
            "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
            "aio": "k2BgYJh", "azp": APP, "azpacr": "1", "idtyp": "app",
            "oid": "9f1c7c0e-5d3a-4d0b-8f43-1e7d8f0a1b2c", "rh": "0.AAAA",
            "roles": [ROLE, "Other.Role"], "sub": "9f1c7c0e-5d3a-4d0b-8f43-1e7d8f0a1b2c",
            "tid": TENANT, "uti": "abc", "ver": "2.0"
        })
    }

    fn v1_claims() -> Value {
        json!({
            "aud": AUD,
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
            "aio": "E2ZgYJh", "appid": APP, "appidacr": "1",
            "idp": format!("https://sts.windows.net/{TENANT}/"),
            "oid": "9f1c7c0e-5d3a-4d0b-8f43-1e7d8f0a1b2c", "rh": "0.AAAA",
            "roles": [ROLE], "sub": "9f1c7c0e-5d3a-4d0b-8f43-1e7d8f0a1b2c",
            "tid": TENANT, "uti": "abc", "ver": "1.0"
        })
    }

    fn sign(key: usize, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_rsa_pem(test_keys()[key].private_pem.as_bytes())
            .expect("encoding key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    fn with(mut claims: Value, field: &str, value: Value) -> Value {
        claims[field] = value;
        claims
    }

    fn without(mut claims: Value, field: &str) -> Value {
        claims.as_object_mut().expect("object").remove(field);
        claims
    }

    fn expected_identity(roles: &[&str]) -> AppIdentity {
        AppIdentity {
            app_id: APP.into(),
            tenant_id: TENANT.into(),
            object_id: Some("9f1c7c0e-5d3a-4d0b-8f43-1e7d8f0a1b2c".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            // The test claims' exp (NOW + 3600) plus the leeway.
            expires_at: NOW + 3600 + LEEWAY_SECS,
        }
    }

    #[tokio::test]
    async fn valid_v2_token_is_accepted_and_keys_are_cached() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let token = sign(0, "kid-0", &v2_claims());
        assert!(looks_like_entra_token(&token));
        let id = v.validate(&token, NOW).await.expect("valid v2 token");
        assert_eq!(id, expected_identity(&[ROLE, "Other.Role"]));
        assert_eq!(server.hits(), 1);
        // Within the hour the cached keys serve, also for another token.
        let other = sign(0, "kid-0", &with(v2_claims(), "aud", json!(APP)));
        assert_eq!(
            v.validate(&other, NOW + 1800).await.expect("cached").app_id,
            APP
        );
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn valid_v1_token_is_accepted() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let token = sign(0, "kid-0", &v1_claims());
        let id = v.validate(&token, NOW).await.expect("valid v1 token");
        assert_eq!(id, expected_identity(&[ROLE]));
    }

    #[tokio::test]
    async fn app_id_comes_from_the_claim_of_the_token_version() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        // v2 issuer names the app in azp; appid alone does not count, and vice versa.
        let v2_appid = with(without(v2_claims(), "azp"), "appid", json!(APP));
        let v1_azp = with(without(v1_claims(), "appid"), "azp", json!(APP));
        let v2_empty = with(v2_claims(), "azp", json!(""));
        for claims in [v2_appid, v1_azp, v2_empty] {
            let err = v.validate(&sign(0, "kid-0", &claims), NOW).await;
            assert!(matches!(err, Err(EntraError::MissingAppId)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn wrong_issuer_is_refused() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        for iss in [
            format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"),
            format!("https://login.microsoftonline.com/{TENANT}/v2.0/"),
            format!("https://sts.windows.net/{TENANT}"),
            format!("https://login.microsoftonline.com/{TENANT}/"),
            "https://login.microsoftonline.com/common/v2.0".to_string(),
            format!("https://evil.example/{TENANT}/v2.0"),
        ] {
            let token = sign(0, "kid-0", &with(v2_claims(), "iss", json!(iss)));
            let err = v.validate(&token, NOW).await;
            assert!(
                matches!(err, Err(EntraError::InvalidIssuer(_))),
                "{iss}: {err:?}"
            );
        }
        let token = sign(0, "kid-0", &without(v2_claims(), "iss"));
        assert!(matches!(
            v.validate(&token, NOW).await,
            Err(EntraError::InvalidIssuer(_))
        ));
    }

    #[tokio::test]
    async fn wrong_tenant_is_refused() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        for claims in [
            with(v2_claims(), "tid", json!(OTHER_TENANT)),
            without(v2_claims(), "tid"),
        ] {
            let err = v.validate(&sign(0, "kid-0", &claims), NOW).await;
            assert!(matches!(err, Err(EntraError::WrongTenant)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn wrong_audience_is_refused() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        for claims in [
            with(v2_claims(), "aud", json!("api://other")),
            with(
                v2_claims(),
                "aud",
                json!("00000003-0000-0000-c000-000000000000"),
            ),
            with(v2_claims(), "aud", json!(["api://other"])),
            without(v2_claims(), "aud"),
        ] {
            let err = v.validate(&sign(0, "kid-0", &claims), NOW).await;
            assert!(matches!(err, Err(EntraError::InvalidAudience)), "{err:?}");
        }
        // An array naming the gateway is fine.
        let ok = with(v2_claims(), "aud", json!(["api://other", AUD]));
        assert!(v.validate(&sign(0, "kid-0", &ok), NOW).await.is_ok());
    }

    #[tokio::test]
    async fn expiry_is_checked_against_the_given_time_with_exact_leeway() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let token = sign(0, "kid-0", &with(v2_claims(), "exp", json!(NOW)));
        assert!(v.validate(&token, NOW - 100).await.is_ok());
        assert!(v.validate(&token, NOW + LEEWAY_SECS - 1).await.is_ok());
        let err = v.validate(&token, NOW + LEEWAY_SECS).await;
        assert!(matches!(err, Err(EntraError::Expired)), "{err:?}");
        // No exp at all is refused too; an absurd exp does not overflow.
        let no_exp = sign(0, "kid-0", &without(v2_claims(), "exp"));
        assert!(matches!(
            v.validate(&no_exp, NOW).await,
            Err(EntraError::Expired)
        ));
        let max = sign(0, "kid-0", &with(v2_claims(), "exp", json!(i64::MAX)));
        assert!(v.validate(&max, NOW).await.is_ok());
        let min = sign(0, "kid-0", &with(v2_claims(), "exp", json!(i64::MIN)));
        assert!(matches!(
            v.validate(&min, NOW).await,
            Err(EntraError::Expired)
        ));
        // A non-integer exp is malformed, not silently ignored.
        let text = sign(0, "kid-0", &with(v2_claims(), "exp", json!("never")));
        assert!(matches!(
            v.validate(&text, NOW).await,
            Err(EntraError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn not_before_in_the_future_is_refused() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let early = sign(
            0,
            "kid-0",
            &with(v2_claims(), "nbf", json!(NOW + LEEWAY_SECS + 1)),
        );
        let err = v.validate(&early, NOW).await;
        assert!(matches!(err, Err(EntraError::NotYetValid)), "{err:?}");
        let edge = sign(
            0,
            "kid-0",
            &with(v2_claims(), "nbf", json!(NOW + LEEWAY_SECS)),
        );
        assert!(v.validate(&edge, NOW).await.is_ok());
        let none = sign(0, "kid-0", &without(v2_claims(), "nbf"));
        assert!(v.validate(&none, NOW).await.is_ok());
    }

    #[tokio::test]
    async fn delegated_and_user_tokens_are_refused() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let cases = [
            with(v2_claims(), "scp", json!("access_as_user")),
            with(without(v2_claims(), "idtyp"), "scp", json!("")),
            with(v1_claims(), "scp", json!("user_impersonation")),
            with(v2_claims(), "idtyp", json!("user")),
            with(v2_claims(), "idtyp", json!("device")),
        ];
        for claims in cases {
            let err = v.validate(&sign(0, "kid-0", &claims), NOW).await;
            assert!(
                matches!(err, Err(EntraError::NotAppOnly(_))),
                "{claims}: {err:?}"
            );
        }
        // idtyp is optional (v1 tokens carry it only when configured).
        let token = sign(0, "kid-0", &without(v2_claims(), "idtyp"));
        assert!(v.validate(&token, NOW).await.is_ok());
    }

    #[tokio::test]
    async fn required_role_must_be_granted() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        for claims in [
            with(v2_claims(), "roles", json!(["Other.Role"])),
            with(v2_claims(), "roles", json!(["toolgate.invoke"])),
            without(v2_claims(), "roles"),
        ] {
            let err = v.validate(&sign(0, "kid-0", &claims), NOW).await;
            assert!(
                matches!(&err, Err(EntraError::MissingRole(r)) if r == ROLE),
                "{err:?}"
            );
        }
        // Without a required role, a token with no roles passes.
        let mut s = settings(&server);
        s.required_role = None;
        let v = EntraValidator::new(s, reqwest::Client::new());
        let id = v
            .validate(&sign(0, "kid-0", &without(v2_claims(), "roles")), NOW)
            .await
            .expect("no role required");
        assert!(id.roles.is_empty());
    }

    #[tokio::test]
    async fn hs256_signed_with_the_public_key_is_refused_before_any_key_lookup() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let k = &test_keys()[0];
        for secret in [
            k.n_bytes.as_slice(),
            k.public_pem.as_bytes(),
            k.n.as_bytes(),
        ] {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let mut header = Header::new(alg);
                header.kid = Some("kid-0".into());
                let token =
                    jsonwebtoken::encode(&header, &v2_claims(), &EncodingKey::from_secret(secret))
                        .expect("hs token");
                assert!(!looks_like_entra_token(&token));
                let err = v.validate(&token, NOW).await;
                assert!(
                    matches!(err, Err(EntraError::UnsupportedAlgorithm(_))),
                    "{err:?}"
                );
            }
        }
        assert_eq!(
            server.hits(),
            0,
            "no key was fetched for a refused algorithm"
        );
    }

    #[tokio::test]
    async fn alg_none_and_other_algorithms_are_refused() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let payload = URL_SAFE_NO_PAD.encode(v2_claims().to_string());
        for header in [
            json!({"alg": "none", "kid": "kid-0"}),
            json!({"alg": "None", "kid": "kid-0"}),
            json!({"alg": "RS512", "kid": "kid-0"}),
            json!({"alg": "PS256", "kid": "kid-0"}),
            json!({"alg": "ES256", "kid": "kid-0"}),
            json!({"alg": "rs256", "kid": "kid-0"}),
            json!({"alg": ["RS256"], "kid": "kid-0"}),
            json!({"kid": "kid-0"}),
        ] {
            let head = URL_SAFE_NO_PAD.encode(header.to_string());
            // Unsigned, and with the RS256 signature of a real token pasted on.
            let real_sig = sign(0, "kid-0", &v2_claims())
                .rsplit('.')
                .next()
                .expect("sig")
                .to_string();
            for token in [
                format!("{head}.{payload}."),
                format!("{head}.{payload}.{real_sig}"),
            ] {
                let err = v.validate(&token, NOW).await;
                assert!(
                    matches!(
                        err,
                        Err(EntraError::UnsupportedAlgorithm(_)) | Err(EntraError::Malformed(_))
                    ),
                    "{header}: {err:?}"
                );
                assert!(!looks_like_entra_token(&token));
            }
        }
        assert_eq!(server.hits(), 0);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_then_not_again_within_a_minute() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        v.validate(&sign(0, "kid-0", &v2_claims()), NOW)
            .await
            .expect("warm the cache");
        assert_eq!(server.hits(), 1);
        let err = v.validate(&sign(0, "bogus-1", &v2_claims()), NOW).await;
        assert!(
            matches!(&err, Err(EntraError::UnknownKey(k)) if k == "bogus-1"),
            "{err:?}"
        );
        assert_eq!(server.hits(), 2, "one refetch for an unknown kid");
        for kid in ["bogus-2", "bogus-3", "bogus-1"] {
            let err = v.validate(&sign(0, kid, &v2_claims()), NOW).await;
            assert!(matches!(err, Err(EntraError::UnknownKey(_))), "{err:?}");
        }
        assert_eq!(server.hits(), 2, "no further fetch within the minute");
        // Known keys keep working throughout.
        assert!(
            v.validate(&sign(0, "kid-0", &v2_claims()), NOW)
                .await
                .is_ok()
        );
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn unknown_kid_on_first_use_fetches_only_once() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let err = v.validate(&sign(0, "bogus", &v2_claims()), NOW).await;
        assert!(matches!(err, Err(EntraError::UnknownKey(_))), "{err:?}");
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn rotated_key_is_accepted_after_refetch() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        v.validate(&sign(0, "kid-0", &v2_claims()), NOW)
            .await
            .expect("old key");
        assert_eq!(server.hits(), 1);
        // Microsoft publishes a new key and starts signing with it.
        server.set(
            StatusCode::OK,
            json!({"keys": [jwk(0, "kid-0"), jwk(1, "kid-1")]}),
        );
        let id = v
            .validate(&sign(1, "kid-1", &v2_claims()), NOW)
            .await
            .expect("rotated key");
        assert_eq!(id.app_id, APP);
        assert_eq!(server.hits(), 2);
        assert!(
            v.validate(&sign(1, "kid-1", &v2_claims()), NOW)
                .await
                .is_ok()
        );
        assert!(
            v.validate(&sign(0, "kid-0", &v2_claims()), NOW)
                .await
                .is_ok()
        );
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn signature_must_match_the_named_key() {
        let server = JwksServer::start(json!({"keys": [jwk(0, "kid-0"), jwk(1, "kid-1")]})).await;
        let v = validator(&server);
        // Signed by key 1 but naming key 0's kid.
        let err = v.validate(&sign(1, "kid-0", &v2_claims()), NOW).await;
        assert!(matches!(err, Err(EntraError::InvalidSignature)), "{err:?}");
        // A payload swapped after signing.
        let good = sign(0, "kid-0", &v2_claims());
        let parts: Vec<&str> = good.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(with(v2_claims(), "azp", json!("evil")).to_string());
        let forged = format!("{}.{}.{}", parts[0], evil, parts[2]);
        let err = v.validate(&forged, NOW).await;
        assert!(matches!(err, Err(EntraError::InvalidSignature)), "{err:?}");
    }

    #[tokio::test]
    async fn disabled_settings_refuse_everything() {
        let server = JwksServer::with_key0().await;
        let mut s = settings(&server);
        s.enabled = false;
        let v = EntraValidator::new(s, reqwest::Client::new());
        let err = v.validate(&sign(0, "kid-0", &v2_claims()), NOW).await;
        assert!(matches!(err, Err(EntraError::Disabled)), "{err:?}");
        let v = EntraValidator::new(EntraAppSettings::default(), reqwest::Client::new());
        assert!(matches!(
            v.validate(&sign(0, "kid-0", &v2_claims()), NOW).await,
            Err(EntraError::Disabled)
        ));
        assert_eq!(server.hits(), 0);
    }

    #[tokio::test]
    async fn invalid_settings_refuse_everything() {
        let server = JwksServer::with_key0().await;
        let mut s = settings(&server);
        s.audiences.clear();
        let v = EntraValidator::new(s, reqwest::Client::new());
        let err = v.validate(&sign(0, "kid-0", &v2_claims()), NOW).await;
        assert!(matches!(err, Err(EntraError::Misconfigured(_))), "{err:?}");
        assert_eq!(server.hits(), 0);
    }

    #[tokio::test]
    async fn failed_key_fetch_is_not_retried_within_a_minute() {
        let server = JwksServer::with_key0().await;
        server.set(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "down"}));
        let v = validator(&server);
        let token = sign(0, "kid-0", &v2_claims());
        let err = v.validate(&token, NOW).await;
        assert!(matches!(err, Err(EntraError::Jwks(_))), "{err:?}");
        assert_eq!(server.hits(), 1);
        server.set(StatusCode::OK, json!({"keys": [jwk(0, "kid-0")]}));
        let err = v.validate(&token, NOW).await;
        assert!(matches!(err, Err(EntraError::Jwks(_))), "{err:?}");
        assert_eq!(server.hits(), 1, "no retry storm after a failure");
    }

    #[tokio::test]
    async fn oversized_or_keyless_key_sets_are_refused() {
        let padding = "A".repeat(JWKS_MAX_BYTES);
        let server = JwksServer::start(json!({"keys": [jwk(0, "kid-0")], "pad": padding})).await;
        let err = validator(&server)
            .validate(&sign(0, "kid-0", &v2_claims()), NOW)
            .await;
        assert!(
            matches!(&err, Err(EntraError::Jwks(m)) if m.contains("256 KB")),
            "{err:?}"
        );
        let server = JwksServer::start(json!({"keys": [
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        ]}))
        .await;
        let err = validator(&server)
            .validate(&sign(0, "kid-0", &v2_claims()), NOW)
            .await;
        assert!(matches!(err, Err(EntraError::Jwks(_))), "{err:?}");
    }

    #[test]
    fn jwks_parsing_keeps_only_rsa_signing_keys() {
        let k = &test_keys()[0];
        let doc = json!({"keys": [
            jwk(0, "good"),
            {"kty": "RSA", "kid": "no-use", "n": k.n, "e": k.e},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": k.n, "e": k.e},
            {"kty": "RSA", "kid": "rs512", "alg": "RS512", "n": k.n, "e": k.e},
            {"kty": "RSA", "kid": "bad-n", "n": "!!", "e": k.e},
            {"kty": "RSA", "kid": 5, "n": k.n, "e": k.e},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            "junk",
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).expect("jwks");
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["good", "no-use"]);
        assert!(parse_jwks(b"not json").is_err());
        assert!(parse_jwks(b"{\"keys\": {}}").is_err());
    }

    #[test]
    fn looks_like_entra_token_is_a_cheap_shape_check() {
        let rs = sign(0, "kid-0", &v2_claims());
        assert!(looks_like_entra_token(&rs));
        let no_kid = {
            let key =
                EncodingKey::from_rsa_pem(test_keys()[0].private_pem.as_bytes()).expect("key");
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &v2_claims(), &key).expect("token")
        };
        assert!(!looks_like_entra_token(&no_kid));
        let own = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "x"}),
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("hs");
        assert!(!looks_like_entra_token(&own));
        for junk in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "tgp_abc",
            "tgr_abc",
            "Bearer x",
            &format!("{rs}."),
            &format!("{rs}=="),
            &format!(" {rs}"),
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(!looks_like_entra_token(junk), "{junk:.40}");
        }
    }

    #[tokio::test]
    async fn garbage_tokens_are_refused_without_panics_or_fetches() {
        let server = JwksServer::with_key0().await;
        let v = validator(&server);
        let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"kid-0"}"#);
        let junk_json = URL_SAFE_NO_PAD.encode("[1,2");
        let inputs = [
            String::new(),
            "..".into(),
            "\u{0}\u{1}.\u{ff}.x".into(),
            "é.é.é".into(),
            format!("{head}.."),
            format!("{junk_json}.{junk_json}.{junk_json}"),
            format!("{head}.{}.{}", "A".repeat(9), "B".repeat(9)),
            "x".repeat(MAX_TOKEN_BYTES * 4),
        ];
        for token in &inputs {
            assert!(v.validate(token, NOW).await.is_err());
        }
        // Only the one with a proper RS256 header reaches the key set.
        assert_eq!(server.hits(), 1);
    }

    #[test]
    fn settings_derive_issuers_and_key_url() {
        let s = EntraAppSettings {
            enabled: true,
            tenant_id: TENANT.to_ascii_uppercase(),
            audiences: vec![AUD.into()],
            ..Default::default()
        };
        assert_eq!(
            s.issuers(),
            [
                format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
                format!("https://sts.windows.net/{TENANT}/"),
            ]
        );
        assert_eq!(
            s.jwks_url(),
            format!("https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys")
        );
        let s = EntraAppSettings {
            issuer_base: Some("https://login.microsoftonline.us/".into()),
            ..s
        };
        assert_eq!(
            s.issuers()[0],
            format!("https://login.microsoftonline.us/{TENANT}/v2.0")
        );
        assert_eq!(
            s.jwks_url(),
            format!("https://login.microsoftonline.us/{TENANT}/discovery/v2.0/keys")
        );
        let s = EntraAppSettings {
            jwks_url: Some("https://keys.example/jwks".into()),
            ..s
        };
        assert_eq!(s.jwks_url(), "https://keys.example/jwks");
    }

    #[test]
    fn settings_validation() {
        let good = EntraAppSettings {
            enabled: true,
            tenant_id: TENANT.into(),
            audiences: vec![AUD.into(), APP.into()],
            required_role: Some(ROLE.into()),
            jwks_url: Some("http://127.0.0.1:1234/keys".into()),
            issuer_base: Some("https://login.microsoftonline.com".into()),
        };
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(EntraAppSettings::default().validate(), Ok(()));
        let bad = [
            EntraAppSettings {
                tenant_id: "common".into(),
                ..good.clone()
            },
            EntraAppSettings {
                tenant_id: String::new(),
                ..good.clone()
            },
            EntraAppSettings {
                tenant_id: format!("{TENANT}x"),
                ..good.clone()
            },
            EntraAppSettings {
                tenant_id: "72f988bf86f141af91ab2d7cd011db47".into(),
                ..good.clone()
            },
            EntraAppSettings {
                audiences: vec![],
                ..good.clone()
            },
            EntraAppSettings {
                audiences: vec![" api://toolgate".into()],
                ..good.clone()
            },
            EntraAppSettings {
                audiences: vec![String::new()],
                ..good.clone()
            },
            EntraAppSettings {
                required_role: Some(String::new()),
                ..good.clone()
            },
            EntraAppSettings {
                jwks_url: Some("http://keys.example/jwks".into()),
                ..good.clone()
            },
            EntraAppSettings {
                jwks_url: Some("not a url".into()),
                ..good.clone()
            },
            EntraAppSettings {
                jwks_url: Some("https://u:p@keys.example/".into()),
                ..good.clone()
            },
            EntraAppSettings {
                issuer_base: Some("ftp://login.example".into()),
                ..good.clone()
            },
            EntraAppSettings {
                enabled: false,
                tenant_id: "nope".into(),
                ..good.clone()
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }

    #[test]
    fn settings_round_trip_as_json() {
        let s: EntraAppSettings = serde_json::from_value(json!({
            "enabled": true, "tenant_id": TENANT, "audiences": [AUD]
        }))
        .expect("optional fields may be left out");
        assert_eq!(s.required_role, None);
        let back: EntraAppSettings =
            serde_json::from_value(serde_json::to_value(&s).expect("ser")).expect("de");
        assert_eq!(back, s);
    }
}
