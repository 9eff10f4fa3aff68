//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): the `client_id`
//! URL rules, the SSRF-safe fetch (every hop resolved, checked and pinned) and the document checks.
//!
//! Nothing is cached here: the caller decides how long a successful document is kept, and failures
//! are never cached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest `client_id` URL accepted (also applies to every redirect target).
pub const MAX_CLIENT_ID_LEN: usize = 2048;

/// User agent of every metadata fetch, so operators of client sites can recognise it.
const USER_AGENT: &str = "toolgate-cimd";

/// Limits and loopback switch of one metadata fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Dev mode: `http://127.0.0.1`, `http://localhost` and `http://[::1]` client ids are allowed,
    /// and loopback addresses pass the SSRF check. Private and link-local ranges stay forbidden.
    pub allow_loopback_http: bool,
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Budget of the whole fetch: resolution, connects, redirects and the body.
    pub timeout: Duration,
    /// Redirects followed (each one re-validated and re-resolved) before giving up.
    pub max_redirects: u8,
}

impl FetchPolicy {
    /// https only, public addresses only, 5 KB, 5 s, 3 redirects.
    pub fn production() -> Self {
        Self {
            allow_loopback_http: false,
            max_bytes: 5 * 1024,
            timeout: Duration::from_secs(5),
            max_redirects: 3,
        }
    }

    /// Like [`FetchPolicy::production`], plus loopback http client ids (`allow_loopback_cimd`).
    pub fn dev() -> Self {
        Self {
            allow_loopback_http: true,
            ..Self::production()
        }
    }
}

/// Why a client id URL or its metadata document was refused. The `Display` text is meant for
/// `error_description` (it never carries resolved addresses or transport error detail);
/// [`CimdError::error_code`] gives the OAuth `error` value.
#[derive(Debug, thiserror::Error)]
pub enum CimdError {
    /// The `client_id` is not an acceptable metadata document URL. `invalid_client`.
    #[error("client_id is not a valid client metadata document URL: {0}")]
    InvalidClientIdUrl(String),
    /// A redirect pointed somewhere a metadata document may not come from. `invalid_client`.
    #[error("client metadata document redirect refused: {0}")]
    BadRedirect(String),
    /// More redirects than the policy allows. `invalid_client`.
    #[error("client metadata document fetch followed more than {0} redirects")]
    TooManyRedirects(u8),
    /// The host could not be resolved. `invalid_client`.
    #[error("could not resolve the client metadata host {0}")]
    Resolve(String),
    /// The host is (or resolves to) a private, loopback, link-local or reserved address.
    /// `invalid_client`. The address itself stays out of the message (it is internal detail).
    #[error(
        "the client metadata host {host} resolves to a forbidden (private, loopback or reserved) address"
    )]
    ForbiddenAddress {
        /// Host as written in the URL.
        host: String,
        /// The offending address, for logs only.
        ip: IpAddr,
    },
    /// Connecting, TLS or reading failed. `invalid_client`; the source is for logs only.
    #[error("could not fetch the client metadata document")]
    Fetch(#[source] reqwest::Error),
    /// The whole fetch took longer than the policy allows. `invalid_client`.
    #[error("fetching the client metadata document timed out")]
    Timeout,
    /// The final response was not 200. `invalid_client`.
    #[error("the client metadata document URL answered HTTP {0} (200 required)")]
    HttpStatus(u16),
    /// The response was not JSON. `invalid_client_metadata`.
    #[error("the client metadata document has content type {0:?} (application/json required)")]
    ContentType(String),
    /// The document is larger than the policy allows. `invalid_client_metadata`.
    #[error("the client metadata document is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not valid JSON. `invalid_client_metadata`.
    #[error("the client metadata document is not valid JSON: {0}")]
    InvalidJson(String),
    /// The document's `client_id` differs from the URL it was requested with. `invalid_client_metadata`.
    #[error("the client metadata document's client_id does not match the client_id URL")]
    ClientIdMismatch,
    /// The document carries a client secret; metadata-document clients are public. `invalid_client_metadata`.
    #[error("the client metadata document must not contain {0} (such clients are public clients)")]
    SecretPresent(&'static str),
    /// `token_endpoint_auth_method` other than `none`. `invalid_client_metadata`.
    #[error("{0}")]
    UnsupportedAuthMethod(String),
    /// A `redirect_uris` problem. `invalid_redirect_uri`.
    #[error("invalid redirect_uris: {0}")]
    InvalidRedirectUri(String),
    /// Any other field problem. `invalid_client_metadata`.
    #[error("invalid client metadata: {0}")]
    InvalidMetadata(String),
}

impl CimdError {
    /// The OAuth `error` value: fetch-level problems are `invalid_client`, document problems
    /// `invalid_client_metadata` / `invalid_redirect_uri` (RFC 7591 names).
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::InvalidClientIdUrl(_)
            | Self::BadRedirect(_)
            | Self::TooManyRedirects(_)
            | Self::Resolve(_)
            | Self::ForbiddenAddress { .. }
            | Self::Fetch(_)
            | Self::Timeout
            | Self::HttpStatus(_) => "invalid_client",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::ContentType(_)
            | Self::TooLarge(_)
            | Self::InvalidJson(_)
            | Self::ClientIdMismatch
            | Self::SecretPresent(_)
            | Self::UnsupportedAuthMethod(_)
            | Self::InvalidMetadata(_) => "invalid_client_metadata",
        }
    }

    /// Text for `error_description` (same as `Display`; safe to show to the client).
    pub fn description(&self) -> String {
        self.to_string()
    }
}

/// A validated client metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// The client id URL (equal to the document's `client_id`).
    pub client_id: String,
    /// Display name for the consent page (non-empty, no control characters).
    pub client_name: String,
    /// Absolute redirect URIs without fragments (at least one; matched exactly by the caller).
    pub redirect_uris: Vec<String>,
    /// Client home page (http or https).
    pub client_uri: Option<String>,
    /// Client logo (http or https).
    pub logo_uri: Option<String>,
    /// Always `none`: metadata-document clients are public clients.
    pub token_endpoint_auth_method: String,
    /// Subset of `authorization_code`, `refresh_token`; always contains `authorization_code`.
    pub grant_types: Vec<String>,
    /// Always `["code"]`.
    pub response_types: Vec<String>,
    /// Scopes the client declares (not validated here).
    pub scope: Option<String>,
}

/// Checks `client_id` as a metadata document URL: https (or loopback http under a dev policy),
/// a host, a path other than `/`, no fragment, no userinfo, no `.`/`..` segments, at most 2048
/// characters, and already in normalized form (so the string compared everywhere is the one fetched).
pub fn validate_client_id_url(client_id: &str, policy: &FetchPolicy) -> Result<Url, CimdError> {
    let bad = |reason: &str| CimdError::InvalidClientIdUrl(reason.to_owned());
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(bad("it is longer than 2048 characters"));
    }
    if client_id.contains('#') {
        return Err(bad("it must not contain a fragment"));
    }
    let url = Url::parse(client_id).map_err(|_| bad("it is not an absolute URL"))?;
    check_scheme_and_host(&url, policy).map_err(bad)?;
    if !url.username().is_empty()
        || url.password().is_some()
        || raw_authority(client_id).contains('@')
    {
        return Err(bad("it must not contain a username or password"));
    }
    if has_dot_segment(client_id) {
        return Err(bad("it must not contain \".\" or \"..\" path segments"));
    }
    if url.path().is_empty() || url.path() == "/" {
        return Err(bad("it must have a path (not just \"/\")"));
    }
    // The document's client_id is compared to this exact string and the string is the client's
    // identity everywhere (consents, grants); a form the URL parser rewrites would be fetched under
    // a different spelling than the one stored.
    if url.as_str() != client_id {
        return Err(CimdError::InvalidClientIdUrl(format!(
            "it is not in normalized form (expected {})",
            url.as_str()
        )));
    }
    Ok(url)
}

/// The SSRF rule: true when a server-side fetch must not connect to `ip`. Only public unicast
/// addresses pass; loopback passes only with `allow_loopback`. IPv4-mapped, NAT64 (64:ff9b::/96)
/// and 6to4 addresses are judged by the IPv4 address they embed; IPv4-compatible (::/96) and
/// every other IPv6 address outside 2000::/3 are refused.
pub fn is_forbidden_ip(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4, allow_loopback),
        IpAddr::V6(v6) => is_forbidden_v6(v6, allow_loopback),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let [a, b, c, _] = ip.octets();
    if a == 127 {
        return !allow_loopback;
    }
    a == 0 // "this network", 0.0.0.0
        || a == 10 // private
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254) // link-local, cloud metadata 169.254.169.254
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn is_forbidden_v6(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip == Ipv6Addr::LOCALHOST {
        return !allow_loopback;
    }
    let s = ip.segments();
    let o = ip.octets();
    let last_v4 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // ::ffff:a.b.c.d reaches the IPv4 address itself on a dual-stack socket.
    if s[..6] == [0, 0, 0, 0, 0, 0xffff] {
        return is_forbidden_v4(last_v4, allow_loopback);
    }
    // NAT64 and 6to4 hand the packet to some gateway's IPv4 side: never "our" loopback.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(last_v4, false);
    }
    if s[0] == 0x2002 {
        return is_forbidden_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]), false);
    }
    // Only global unicast 2000::/3 from here on: this refuses ::, ::/96 (IPv4-compatible),
    // 100::/64, 64:ff9b:1::/48, fc00::/7, fe80::/10, fec0::/10, ff00::/8 and unassigned space.
    if s[0] & 0xe000 != 0x2000 {
        return true;
    }
    (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF assignments (Teredo, benchmarking, ORCHID)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
}

/// Fetches and validates the metadata document of `client_id` under `policy`. Every hop is
/// resolved here, all its addresses checked with [`is_forbidden_ip`], and the connection pinned to
/// exactly those addresses, so DNS rebinding between the check and the connect cannot happen.
pub async fn fetch_client_metadata(
    client_id: &str,
    policy: &FetchPolicy,
) -> Result<ClientMetadata, CimdError> {
    let url = validate_client_id_url(client_id, policy)?;
    match tokio::time::timeout(policy.timeout, fetch_document(client_id, url, policy)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(CimdError::Timeout),
    }
}

async fn fetch_document(
    client_id: &str,
    mut url: Url,
    policy: &FetchPolicy,
) -> Result<ClientMetadata, CimdError> {
    let mut redirects: u8 = 0;
    loop {
        let target = resolve_checked(&url, policy).await?;
        let client = pinned_client(&target, policy)?;
        let mut response = client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if is_followed_redirect(status) {
            if redirects >= policy.max_redirects {
                return Err(CimdError::TooManyRedirects(policy.max_redirects));
            }
            redirects += 1;
            url = redirect_target(&url, response.headers().get(LOCATION), policy)?;
            continue;
        }
        if status != StatusCode::OK {
            return Err(CimdError::HttpStatus(status.as_u16()));
        }
        check_content_type(response.headers().get(CONTENT_TYPE))?;
        if response
            .content_length()
            .is_some_and(|len| len > policy.max_bytes as u64)
        {
            return Err(CimdError::TooLarge(policy.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            // Stop at the first byte over the cap; a lying or absent Content-Length changes nothing.
            if body.len() + chunk.len() > policy.max_bytes {
                return Err(CimdError::TooLarge(policy.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        // After redirects the document must still name the ORIGINAL client_id URL.
        return parse_client_metadata(client_id, &body);
    }
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

fn redirect_target(
    from: &Url,
    location: Option<&reqwest::header::HeaderValue>,
    policy: &FetchPolicy,
) -> Result<Url, CimdError> {
    let bad = |reason: &str| CimdError::BadRedirect(reason.to_owned());
    let location = location
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| bad("the redirect has no usable Location header"))?;
    if location.len() > MAX_CLIENT_ID_LEN {
        return Err(bad("the redirect target is longer than 2048 characters"));
    }
    let mut next = from
        .join(location)
        .map_err(|_| bad("the redirect target is not a valid URL"))?;
    next.set_fragment(None);
    check_scheme_and_host(&next, policy).map_err(bad)?;
    if !next.username().is_empty() || next.password().is_some() {
        return Err(bad(
            "the redirect target must not contain a username or password",
        ));
    }
    Ok(next)
}

/// https always; http only for a loopback host under a dev policy.
fn check_scheme_and_host(url: &Url, policy: &FetchPolicy) -> Result<(), &'static str> {
    let host = host_of(url).ok_or("it has no host")?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if policy.allow_loopback_http && host.is_loopback_name() => Ok(()),
        "http" if policy.allow_loopback_http => Err("http is only allowed for loopback hosts"),
        _ => Err("it must use https"),
    }
}

/// The host of a URL: an IP literal or a domain name.
enum UrlHost<'a> {
    Ip(IpAddr),
    Domain(&'a str),
}

impl UrlHost<'_> {
    fn is_loopback_name(&self) -> bool {
        match self {
            UrlHost::Ip(ip) => ip.is_loopback(),
            UrlHost::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        }
    }
}

fn host_of(url: &Url) -> Option<UrlHost<'_>> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| UrlHost::Ip(IpAddr::V6(ip)));
    }
    // The URL parser already turned every IPv4 spelling (hex, octal, short) into dotted decimal.
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => Some(UrlHost::Ip(IpAddr::V4(ip))),
        Err(_) => Some(UrlHost::Domain(host)),
    }
}

/// Where one hop may connect: the checked addresses, pinned to the domain when there is one.
struct Target {
    domain: Option<String>,
    addrs: Vec<SocketAddr>,
}

async fn resolve_checked(url: &Url, policy: &FetchPolicy) -> Result<Target, CimdError> {
    let host =
        host_of(url).ok_or_else(|| CimdError::InvalidClientIdUrl("it has no host".to_owned()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| CimdError::InvalidClientIdUrl("it has no port".to_owned()))?;
    let host_text = url.host_str().unwrap_or_default().to_owned();
    let (domain, addrs) = match host {
        UrlHost::Ip(ip) => (None, vec![SocketAddr::new(ip, port)]),
        UrlHost::Domain(name) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| CimdError::Resolve(host_text.clone()))?
                .collect();
            (Some(name.to_owned()), addrs)
        }
    };
    if addrs.is_empty() {
        return Err(CimdError::Resolve(host_text));
    }
    // ANY forbidden address refuses the host: the connector may pick whichever it likes.
    if let Some(bad) = addrs
        .iter()
        .find(|addr| is_forbidden_ip(addr.ip(), policy.allow_loopback_http))
    {
        return Err(CimdError::ForbiddenAddress {
            host: host_text,
            ip: bad.ip(),
        });
    }
    // Dev http is for this machine only: "localhost" must not resolve to a public address.
    if url.scheme() == "http"
        && let Some(bad) = addrs.iter().find(|addr| !is_loopback_ip(addr.ip()))
    {
        return Err(CimdError::ForbiddenAddress {
            host: host_text,
            ip: bad.ip(),
        });
    }
    Ok(Target { domain, addrs })
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A resolver that resolves nothing: every name the client may contact is pinned with
/// `resolve_to_addrs`, so any other lookup (there should be none) fails instead of bypassing the check.
struct NoResolve;

impl reqwest::dns::Resolve for NoResolve {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async {
            Err::<reqwest::dns::Addrs, _>("toolgate-cimd resolves hosts itself".into())
        })
    }
}

fn pinned_client(target: &Target, policy: &FetchPolicy) -> Result<reqwest::Client, CimdError> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout)
        .pool_max_idle_per_host(0)
        .dns_resolver(Arc::new(NoResolve));
    if let Some(domain) = &target.domain {
        builder = builder.resolve_to_addrs(domain, &target.addrs);
    }
    builder.build().map_err(CimdError::Fetch)
}

fn transport_error(error: reqwest::Error) -> CimdError {
    if error.is_timeout() {
        CimdError::Timeout
    } else {
        CimdError::Fetch(error)
    }
}

/// application/json or any application/...+json, parameters ignored.
fn check_content_type(value: Option<&reqwest::header::HeaderValue>) -> Result<(), CimdError> {
    let raw = value
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        let mut shown = raw;
        shown.truncate(shown.floor_char_boundary(100));
        Err(CimdError::ContentType(shown))
    }
}

/// Validates a metadata document body for `client_id` (pure; the fetch calls it with the original
/// client id URL even after redirects).
pub fn parse_client_metadata(client_id: &str, body: &[u8]) -> Result<ClientMetadata, CimdError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| CimdError::InvalidJson(e.to_string()))?;
    let Value::Object(doc) = value else {
        return Err(invalid("the document is not a JSON object"));
    };
    match doc.get("client_id") {
        Some(Value::String(id)) if id == client_id => {}
        Some(Value::String(_)) => return Err(CimdError::ClientIdMismatch),
        Some(_) => return Err(invalid("client_id must be a string")),
        None => return Err(invalid("client_id is missing")),
    }
    // Metadata-document clients are public: a secret published in a document is no secret.
    for key in ["client_secret", "client_secret_expires_at"] {
        if doc.contains_key(key) {
            return Err(CimdError::SecretPresent(key));
        }
    }
    let client_name = match optional_string(&doc, "client_name")? {
        Some(name) if !name.trim().is_empty() => name,
        _ => return Err(invalid("client_name is required and must not be empty")),
    };
    // Shown on the consent page: no control characters that could disguise it.
    if client_name.chars().any(char::is_control) {
        return Err(invalid("client_name must not contain control characters"));
    }
    let redirect_uris = redirect_uris(&doc)?;
    let token_endpoint_auth_method = match optional_string(&doc, "token_endpoint_auth_method")? {
        None => "none".to_owned(),
        Some(method) if method == "none" => method,
        Some(method) if method == "private_key_jwt" => {
            return Err(CimdError::UnsupportedAuthMethod(
                "token_endpoint_auth_method private_key_jwt is not supported yet; use \"none\""
                    .to_owned(),
            ));
        }
        Some(method) => {
            return Err(CimdError::UnsupportedAuthMethod(format!(
                "token_endpoint_auth_method {:?} is not allowed for client metadata documents; use \"none\"",
                truncated(&method)
            )));
        }
    };
    let grant_types = string_list(&doc, "grant_types", &["authorization_code"])?;
    if let Some(other) = grant_types
        .iter()
        .find(|g| *g != "authorization_code" && *g != "refresh_token")
    {
        return Err(invalid(&format!(
            "grant_types may only contain authorization_code and refresh_token (found {:?})",
            truncated(other)
        )));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(invalid("grant_types must contain authorization_code"));
    }
    let response_types = string_list(&doc, "response_types", &["code"])?;
    if response_types.iter().any(|r| r != "code") {
        return Err(invalid("response_types may only contain \"code\""));
    }
    let client_uri = optional_web_url(&doc, "client_uri")?;
    let logo_uri = optional_web_url(&doc, "logo_uri")?;
    let scope = optional_string(&doc, "scope")?;
    Ok(ClientMetadata {
        client_id: client_id.to_owned(),
        client_name,
        redirect_uris,
        client_uri,
        logo_uri,
        token_endpoint_auth_method,
        grant_types,
        response_types,
        scope,
    })
}

fn invalid(reason: &str) -> CimdError {
    CimdError::InvalidMetadata(reason.to_owned())
}

/// Keeps client-supplied text in error messages short.
fn truncated(text: &str) -> &str {
    &text[..text.floor_char_boundary(64)]
}

/// A string field; absent and `null` are both `None`.
fn optional_string(doc: &Map<String, Value>, key: &str) -> Result<Option<String>, CimdError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&format!("{key} must be a string"))),
    }
}

/// A non-empty array of strings, or `default` when absent.
fn string_list(
    doc: &Map<String, Value>,
    key: &str,
    default: &[&str],
) -> Result<Vec<String>, CimdError> {
    let items = match doc.get(key) {
        None | Some(Value::Null) => return Ok(default.iter().map(|s| (*s).to_owned()).collect()),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(_) => {
            return Err(invalid(&format!(
                "{key} must be a non-empty array of strings"
            )));
        }
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            _ => Err(invalid(&format!(
                "{key} must be a non-empty array of strings"
            ))),
        })
        .collect()
}

fn redirect_uris(doc: &Map<String, Value>) -> Result<Vec<String>, CimdError> {
    let bad = |reason: String| CimdError::InvalidRedirectUri(reason);
    let items = match doc.get("redirect_uris") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(bad(
                "redirect_uris is required and must be a non-empty array".to_owned(),
            ));
        }
    };
    let mut uris = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(uri) = item else {
            return Err(bad("every redirect URI must be a string".to_owned()));
        };
        let shown = truncated(uri);
        if uri.contains('#') {
            return Err(bad(format!("{shown:?} must not contain a fragment")));
        }
        let parsed =
            Url::parse(uri).map_err(|_| bad(format!("{shown:?} is not an absolute URI")))?;
        // Script-bearing schemes would turn the authorization redirect into script execution.
        if matches!(parsed.scheme(), "javascript" | "data" | "vbscript" | "file") {
            return Err(bad(format!("{shown:?} uses a forbidden scheme")));
        }
        uris.push(uri.clone());
    }
    Ok(uris)
}

/// An optional http(s) URL (shown or linked on the consent page).
fn optional_web_url(doc: &Map<String, Value>, key: &str) -> Result<Option<String>, CimdError> {
    let Some(value) = optional_string(doc, key)? else {
        return Ok(None);
    };
    match Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => Ok(Some(value)),
        _ => Err(invalid(&format!(
            "{key} must be an absolute http or https URL"
        ))),
    }
}

/// The authority as written (between `://` and the path), for checks the parser would hide.
fn raw_authority(raw: &str) -> &str {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// True when the raw path has a `.` or `..` segment (also percent-encoded), which the URL parser
/// would silently remove.
fn has_dot_segment(raw: &str) -> bool {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let Some(path_start) = rest.find(['/', '\\']) else {
        return false;
    };
    let path = &rest[path_start..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    path.split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use serde_json::json;
    use std::time::Instant;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(text.parse().expect("test literal"))
    }

    #[test]
    fn forbidden_ip_table() {
        // (address, forbidden in production, forbidden in dev)
        let table: Vec<(IpAddr, bool, bool)> = vec![
            (v4(8, 8, 8, 8), false, false),
            (v4(93, 184, 216, 34), false, false),
            (v4(1, 1, 1, 1), false, false),
            (v4(127, 0, 0, 1), true, false),
            (v4(127, 255, 1, 2), true, false),
            (v4(10, 1, 2, 3), true, true),
            (v4(172, 16, 0, 1), true, true),
            (v4(172, 31, 255, 255), true, true),
            (v4(172, 32, 0, 1), false, false),
            (v4(172, 15, 255, 255), false, false),
            (v4(192, 168, 1, 1), true, true),
            (v4(169, 254, 169, 254), true, true),
            (v4(100, 64, 0, 1), true, true),
            (v4(100, 127, 255, 255), true, true),
            (v4(100, 128, 0, 1), false, false),
            (v4(0, 0, 0, 0), true, true),
            (v4(0, 1, 2, 3), true, true),
            (v4(224, 0, 0, 1), true, true),
            (v4(239, 255, 255, 250), true, true),
            (v4(240, 0, 0, 1), true, true),
            (v4(255, 255, 255, 255), true, true),
            (v4(192, 0, 0, 8), true, true),
            (v4(192, 0, 2, 1), true, true),
            (v4(198, 51, 100, 7), true, true),
            (v4(203, 0, 113, 9), true, true),
            (v4(198, 18, 0, 1), true, true),
            (v4(198, 19, 255, 1), true, true),
            (v4(198, 20, 0, 1), false, false),
            (v4(192, 88, 99, 1), true, true),
            (v6("2606:4700:4700::1111"), false, false),
            (v6("2a00:1450:4001:80b::200e"), false, false),
            (v6("::"), true, true),
            (v6("::1"), true, false),
            (v6("fc00::1"), true, true),
            (v6("fd12:3456::1"), true, true),
            (v6("fe80::1"), true, true),
            (v6("febf::1"), true, true),
            (v6("fec0::1"), true, true),
            (v6("ff02::1"), true, true),
            (v6("100::1"), true, true),
            (v6("2001:db8::1"), true, true),
            (v6("3fff::1"), true, true),
            (v6("2001::1"), true, true),   // Teredo
            (v6("2001:2::1"), true, true), // benchmarking
            // IPv4-mapped
            (v6("::ffff:8.8.8.8"), false, false),
            (v6("::ffff:127.0.0.1"), true, false),
            (v6("::ffff:10.0.0.1"), true, true),
            (v6("::ffff:169.254.169.254"), true, true),
            (v6("::ffff:192.168.0.1"), true, true),
            // IPv4-compatible (deprecated): always refused
            (v6("::8.8.8.8"), true, true),
            (v6("::127.0.0.1"), true, true),
            (v6("::169.254.169.254"), true, true),
            // NAT64
            (v6("64:ff9b::8.8.8.8"), false, false),
            (v6("64:ff9b::169.254.169.254"), true, true),
            (v6("64:ff9b::10.0.0.1"), true, true),
            (v6("64:ff9b::127.0.0.1"), true, true),
            (v6("64:ff9b:1::8.8.8.8"), true, true),
            // 6to4
            (v6("2002:0808:0808::1"), false, false),
            (v6("2002:a9fe:a9fe::1"), true, true),
            (v6("2002:c0a8:0101::1"), true, true),
        ];
        for (ip, production, dev) in table {
            assert_eq!(is_forbidden_ip(ip, false), production, "{ip} production");
            assert_eq!(is_forbidden_ip(ip, true), dev, "{ip} dev");
        }
    }

    #[test]
    fn client_id_url_good_forms() {
        let production = FetchPolicy::production();
        for good in [
            "https://app.example.com/oauth/client.json",
            "https://app.example.com/client",
            "https://app.example.com:8443/c/metadata.json",
            "https://app.example.com/client?v=2",
            "https://93.184.216.34/client.json",
            "https://[2606:4700:4700::1111]/client.json",
        ] {
            let url = validate_client_id_url(good, &production);
            assert!(url.is_ok(), "{good}: {url:?}");
            assert_eq!(url.map(|u| u.to_string()).ok().as_deref(), Some(good));
        }
        let dev = FetchPolicy::dev();
        for good in [
            "http://127.0.0.1:3000/client.json",
            "http://localhost:3000/client.json",
            "http://[::1]:3000/client.json",
            "https://app.example.com/client.json",
        ] {
            assert!(validate_client_id_url(good, &dev).is_ok(), "{good} (dev)");
        }
    }

    #[test]
    fn client_id_url_bad_forms() {
        let production = FetchPolicy::production();
        let long = format!("https://app.example.com/{}", "a".repeat(2048));
        let bad: Vec<(&str, &str)> = vec![
            ("http://app.example.com/client.json", "https"),
            ("http://127.0.0.1:3000/client.json", "https"),
            ("ftp://app.example.com/client.json", "https"),
            ("https://app.example.com", "path"),
            ("https://app.example.com/", "path"),
            ("https://app.example.com/client#frag", "fragment"),
            ("https://app.example.com/client#", "fragment"),
            ("https://user@app.example.com/client", "username"),
            ("https://user:pw@app.example.com/client", "username"),
            ("https://@app.example.com/client", "username"),
            ("https://app.example.com/a/../client", "segments"),
            ("https://app.example.com/./client", "segments"),
            ("https://app.example.com/a/%2e%2E/client", "segments"),
            ("https://app.example.com/client/..", "segments"),
            ("https://App.Example.com/client", "normalized"),
            ("https://app.example.com:443/client", "normalized"),
            ("https://app.example.com/a b", "normalized"),
            ("not a url", "absolute"),
            ("/client.json", "absolute"),
            ("", "absolute"),
            (&long, "2048"),
        ];
        for (client_id, reason) in bad {
            match validate_client_id_url(client_id, &production) {
                Err(CimdError::InvalidClientIdUrl(message)) => {
                    assert!(message.contains(reason), "{client_id}: {message}")
                }
                other => panic!("{client_id} should be refused, got {other:?}"),
            }
        }
        // Dev mode opens http for loopback hosts only.
        let dev = FetchPolicy::dev();
        for client_id in [
            "http://app.example.com/client.json",
            "http://10.0.0.1/client.json",
            "http://169.254.169.254/latest",
        ] {
            assert!(
                matches!(
                    validate_client_id_url(client_id, &dev),
                    Err(CimdError::InvalidClientIdUrl(_))
                ),
                "{client_id} (dev)"
            );
        }
    }

    const ID: &str = "https://app.example.com/client.json";

    fn doc(extra: Value) -> Vec<u8> {
        let mut base = json!({
            "client_id": ID,
            "client_name": "Example App",
            "redirect_uris": ["https://app.example.com/callback", "http://127.0.0.1:33418/cb"],
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
            for (key, value) in extra {
                if value == json!("__remove__") {
                    base.remove(&key);
                } else {
                    base.insert(key, value);
                }
            }
        }
        serde_json::to_vec(&base).unwrap_or_default()
    }

    #[test]
    fn parse_minimal_document_with_defaults() {
        let metadata = parse_client_metadata(ID, &doc(json!({})));
        let metadata = metadata.expect("valid document");
        assert_eq!(metadata.client_id, ID);
        assert_eq!(metadata.client_name, "Example App");
        assert_eq!(metadata.redirect_uris.len(), 2);
        assert_eq!(metadata.token_endpoint_auth_method, "none");
        assert_eq!(metadata.grant_types, vec!["authorization_code"]);
        assert_eq!(metadata.response_types, vec!["code"]);
        assert_eq!(metadata.client_uri, None);
        assert_eq!(metadata.scope, None);
    }

    #[test]
    fn parse_full_document() {
        let body = doc(json!({
            "client_uri": "https://app.example.com",
            "logo_uri": "https://app.example.com/logo.png",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "mcp:read mcp:tools",
            "software_id": "ignored-extra-field",
        }));
        let metadata = parse_client_metadata(ID, &body).expect("valid document");
        assert_eq!(
            metadata.client_uri.as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            metadata.logo_uri.as_deref(),
            Some("https://app.example.com/logo.png")
        );
        assert_eq!(
            metadata.grant_types,
            vec!["authorization_code", "refresh_token"]
        );
        assert_eq!(metadata.scope.as_deref(), Some("mcp:read mcp:tools"));
    }

    #[test]
    fn parse_client_id_must_match_exactly() {
        for other in [
            "https://app.example.com/other.json",
            "https://app.example.com/client.json/",
            "https://APP.example.com/client.json",
        ] {
            let body = doc(json!({ "client_id": other }));
            assert!(
                matches!(
                    parse_client_metadata(ID, &body),
                    Err(CimdError::ClientIdMismatch)
                ),
                "{other}"
            );
        }
        let missing = doc(json!({ "client_id": "__remove__" }));
        assert!(matches!(
            parse_client_metadata(ID, &missing),
            Err(CimdError::InvalidMetadata(_))
        ));
        let number = doc(json!({ "client_id": 7 }));
        assert!(matches!(
            parse_client_metadata(ID, &number),
            Err(CimdError::InvalidMetadata(_))
        ));
    }

    #[test]
    fn parse_requires_client_name() {
        for name in [
            json!("__remove__"),
            json!(""),
            json!("   "),
            json!(null),
            json!(3),
        ] {
            let body = doc(json!({ "client_name": name }));
            let result = parse_client_metadata(ID, &body);
            assert!(
                matches!(&result, Err(CimdError::InvalidMetadata(m)) if m.contains("client_name")),
                "{name}: {result:?}"
            );
        }
        let control = doc(json!({ "client_name": "Good\u{202e}App\n" }));
        assert!(parse_client_metadata(ID, &control).is_err());
    }

    #[test]
    fn parse_refuses_secrets() {
        for key in ["client_secret", "client_secret_expires_at"] {
            let body = doc(json!({ key: "x" }));
            let result = parse_client_metadata(ID, &body);
            assert!(
                matches!(&result, Err(CimdError::SecretPresent(k)) if *k == key),
                "{key}: {result:?}"
            );
            let message = result.map(|_| ()).unwrap_err().description();
            assert!(message.contains(key), "{message}");
        }
    }

    #[test]
    fn parse_checks_redirect_uris() {
        let bad = [
            json!("__remove__"),
            json!([]),
            json!("https://app.example.com/callback"),
            json!([42]),
            json!(["https://app.example.com/callback#frag"]),
            json!(["https://app.example.com/callback#"]),
            json!(["/callback"]),
            json!(["javascript:alert(1)"]),
            json!(["data:text/html,hi"]),
        ];
        for uris in bad {
            let body = doc(json!({ "redirect_uris": uris }));
            let result = parse_client_metadata(ID, &body);
            assert!(
                matches!(&result, Err(CimdError::InvalidRedirectUri(_))),
                "{uris}: {result:?}"
            );
            assert_eq!(
                result.map(|_| ()).unwrap_err().error_code(),
                "invalid_redirect_uri"
            );
        }
        // Native-app private-use schemes stay allowed.
        let native = doc(json!({ "redirect_uris": ["com.example.app:/oauth/cb"] }));
        assert!(parse_client_metadata(ID, &native).is_ok());
    }

    #[test]
    fn parse_refuses_other_auth_methods() {
        let jwt = doc(json!({ "token_endpoint_auth_method": "private_key_jwt" }));
        match parse_client_metadata(ID, &jwt) {
            Err(CimdError::UnsupportedAuthMethod(m)) => {
                assert!(
                    m.contains("private_key_jwt") && m.contains("not supported"),
                    "{m}"
                )
            }
            other => panic!("private_key_jwt should be refused, got {other:?}"),
        }
        for method in [
            "client_secret_basic",
            "client_secret_post",
            "tls_client_auth",
        ] {
            let body = doc(json!({ "token_endpoint_auth_method": method }));
            assert!(
                matches!(
                    parse_client_metadata(ID, &body),
                    Err(CimdError::UnsupportedAuthMethod(_))
                ),
                "{method}"
            );
        }
    }

    #[test]
    fn parse_checks_grant_and_response_types() {
        let bad = [
            json!({ "grant_types": ["client_credentials"] }),
            json!({ "grant_types": ["authorization_code", "implicit"] }),
            json!({ "grant_types": ["refresh_token"] }),
            json!({ "grant_types": [] }),
            json!({ "grant_types": "authorization_code" }),
            json!({ "response_types": ["token"] }),
            json!({ "response_types": ["code", "id_token"] }),
            json!({ "response_types": [] }),
        ];
        for extra in bad {
            let body = doc(extra.clone());
            assert!(
                matches!(
                    parse_client_metadata(ID, &body),
                    Err(CimdError::InvalidMetadata(_))
                ),
                "{extra}"
            );
        }
    }

    #[test]
    fn parse_refuses_non_documents() {
        for body in [&b"[]"[..], b"\"x\"", b"null", b"{", b"", b"\xff\xfe"] {
            let result = parse_client_metadata(ID, body);
            assert!(
                matches!(
                    result,
                    Err(CimdError::InvalidJson(_) | CimdError::InvalidMetadata(_))
                ),
                "{body:?}: {result:?}"
            );
        }
        let script_link = doc(json!({ "client_uri": "javascript:alert(1)" }));
        assert!(matches!(
            parse_client_metadata(ID, &script_link),
            Err(CimdError::InvalidMetadata(m)) if m.contains("client_uri")
        ));
        let logo = doc(json!({ "logo_uri": "data:image/png;base64,AAAA" }));
        assert!(parse_client_metadata(ID, &logo).is_err());
    }

    #[test]
    fn content_type_is_lenient_about_parameters() {
        use reqwest::header::HeaderValue;
        for good in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/vnd.example+json",
        ] {
            assert!(
                check_content_type(Some(&HeaderValue::from_static(good))).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "text/html",
            "text/plain; charset=utf-8",
            "application/jsonp",
            "text/x+json",
        ] {
            assert!(
                check_content_type(Some(&HeaderValue::from_static(bad))).is_err(),
                "{bad}"
            );
        }
        assert!(check_content_type(None).is_err());
    }

    #[test]
    fn error_codes_and_descriptions() {
        assert_eq!(CimdError::Timeout.error_code(), "invalid_client");
        assert_eq!(
            CimdError::ClientIdMismatch.error_code(),
            "invalid_client_metadata"
        );
        let forbidden = CimdError::ForbiddenAddress {
            host: "internal.example".to_owned(),
            ip: v4(10, 0, 0, 7),
        };
        // The resolved internal address must not reach the client.
        assert!(!forbidden.description().contains("10.0.0.7"));
        assert!(forbidden.description().contains("internal.example"));
    }

    // ---- fetches against real local servers ----

    fn document_for(client_id: &str) -> String {
        json!({
            "client_id": client_id,
            "client_name": "Local Test Client",
            "redirect_uris": ["http://127.0.0.1:9999/callback"],
        })
        .to_string()
    }

    fn json_response(body: String) -> axum::response::Response {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    fn redirect_to(location: String) -> axum::response::Response {
        (AxumStatus::FOUND, [(header::LOCATION, location)]).into_response()
    }

    /// Serves the test routes on 127.0.0.1:0 and returns `http://127.0.0.1:PORT`.
    async fn spawn_server() -> (String, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test listener");
        let port = listener.local_addr().expect("local addr").port();
        let base = format!("http://127.0.0.1:{port}");
        let b = base.clone();
        let router = Router::new()
            // The document names whatever URL it was requested under (works for 127.0.0.1 and localhost).
            .route(
                "/client.json",
                get(|headers: HeaderMap| async move {
                    let host = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    json_response(document_for(&format!("http://{host}/client.json")))
                }),
            )
            .route(
                "/start",
                get(move || async move { redirect_to("/doc-for-start".to_owned()) }),
            )
            .route("/doc-for-start", {
                let b = b.clone();
                get(move || async move { json_response(document_for(&format!("{b}/start"))) })
            })
            .route(
                "/moved",
                get(move || async move { redirect_to("/client.json".to_owned()) }),
            )
            .route(
                "/to-metadata",
                get(|| async { redirect_to("http://169.254.169.254/latest/meta-data".to_owned()) }),
            )
            .route(
                "/to-metadata-https",
                get(|| async {
                    redirect_to("https://169.254.169.254/latest/meta-data".to_owned())
                }),
            )
            .route(
                "/to-private",
                get(|| async { redirect_to("https://10.0.0.1/client.json".to_owned()) }),
            )
            .route("/loop", get(|| async { redirect_to("/loop".to_owned()) }))
            .route("/chain/{n}", {
                get(
                    |axum::extract::Path(n): axum::extract::Path<u32>| async move {
                        if n == 0 {
                            // Not reached with max_redirects = 3 and a start at 4.
                            json_response(document_for("unused"))
                        } else {
                            redirect_to(format!("/chain/{}", n - 1))
                        }
                    },
                )
            })
            .route("/big.json", {
                let b = b.clone();
                get(move || async move {
                    let mut value: Value =
                        serde_json::from_str(&document_for(&format!("{b}/big.json")))
                            .unwrap_or_default();
                    value["padding"] = json!("x".repeat(6 * 1024));
                    json_response(value.to_string())
                })
            })
            .route("/big-chunked.json", {
                get(|| async {
                    let chunks: Vec<Result<Bytes, std::io::Error>> =
                        (0..12).map(|_| Ok(Bytes::from(vec![b' '; 512]))).collect();
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        Body::from_stream(futures::stream::iter(chunks)),
                    )
                        .into_response()
                })
            })
            .route(
                "/slow.json",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    json_response("{}".to_owned())
                }),
            )
            .route("/missing.json", get(|| async { AxumStatus::NOT_FOUND }))
            .route(
                "/error.json",
                get(|| async { (AxumStatus::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route("/html.json", {
                let b = b.clone();
                get(move || async move {
                    (
                        [(header::CONTENT_TYPE, "text/html")],
                        document_for(&format!("{b}/html.json")),
                    )
                })
            })
            .route("/vnd.json", {
                let b = b.clone();
                get(move || async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/vnd.example+json; charset=utf-8",
                        )],
                        document_for(&format!("{b}/vnd.json")),
                    )
                })
            })
            .route(
                "/other.json",
                get(|| async { json_response(document_for("https://evil.example/client.json")) }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (base, port)
    }

    #[tokio::test]
    async fn dev_policy_fetches_loopback_document() {
        let (base, _) = spawn_server().await;
        let client_id = format!("{base}/client.json");
        let metadata = fetch_client_metadata(&client_id, &FetchPolicy::dev())
            .await
            .expect("dev fetch");
        assert_eq!(metadata.client_id, client_id);
        assert_eq!(metadata.client_name, "Local Test Client");
        assert_eq!(
            metadata.redirect_uris,
            vec!["http://127.0.0.1:9999/callback"]
        );
    }

    #[tokio::test]
    async fn dev_policy_fetches_via_localhost_name() {
        let (_, port) = spawn_server().await;
        let client_id = format!("http://localhost:{port}/client.json");
        let metadata = fetch_client_metadata(&client_id, &FetchPolicy::dev())
            .await
            .expect("dev fetch through localhost");
        assert_eq!(metadata.client_id, client_id);
    }

    #[tokio::test]
    async fn accepts_plus_json_content_type() {
        let (base, _) = spawn_server().await;
        let client_id = format!("{base}/vnd.json");
        assert!(
            fetch_client_metadata(&client_id, &FetchPolicy::dev())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn production_refuses_loopback_and_http() {
        let (base, port) = spawn_server().await;
        let production = FetchPolicy::production();
        let http = fetch_client_metadata(&format!("{base}/client.json"), &production).await;
        assert!(
            matches!(http, Err(CimdError::InvalidClientIdUrl(ref m)) if m.contains("https")),
            "{http:?}"
        );
        let literal = format!("https://127.0.0.1:{port}/client.json");
        let result = fetch_client_metadata(&literal, &production).await;
        assert!(
            matches!(result, Err(CimdError::ForbiddenAddress { ip, .. }) if ip == v4(127, 0, 0, 1)),
            "{result:?}"
        );
        let v6_literal = format!("https://[::1]:{port}/client.json");
        assert!(matches!(
            fetch_client_metadata(&v6_literal, &production).await,
            Err(CimdError::ForbiddenAddress { .. })
        ));
    }

    #[tokio::test]
    async fn production_refuses_localhost_resolving_to_loopback() {
        let (_, port) = spawn_server().await;
        let client_id = format!("https://localhost:{port}/client.json");
        let result = fetch_client_metadata(&client_id, &FetchPolicy::production()).await;
        match result {
            Err(CimdError::ForbiddenAddress { host, ip }) => {
                assert_eq!(host, "localhost");
                assert!(is_loopback_ip(ip), "{ip}");
            }
            other => panic!("localhost should be refused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn redirect_to_cloud_metadata_is_refused() {
        let (base, _) = spawn_server().await;
        let dev = FetchPolicy::dev();
        let http = fetch_client_metadata(&format!("{base}/to-metadata"), &dev).await;
        assert!(matches!(http, Err(CimdError::BadRedirect(_))), "{http:?}");
        // Even with an acceptable scheme the address check stops it before any connect.
        let https = fetch_client_metadata(&format!("{base}/to-metadata-https"), &dev).await;
        assert!(
            matches!(https, Err(CimdError::ForbiddenAddress { ip, .. }) if ip == v4(169, 254, 169, 254)),
            "{https:?}"
        );
        let private = fetch_client_metadata(&format!("{base}/to-private"), &dev).await;
        assert!(
            matches!(private, Err(CimdError::ForbiddenAddress { .. })),
            "{private:?}"
        );
    }

    #[tokio::test]
    async fn redirects_are_followed_but_client_id_stays_the_original() {
        let (base, _) = spawn_server().await;
        let dev = FetchPolicy::dev();
        let start = format!("{base}/start");
        let metadata = fetch_client_metadata(&start, &dev)
            .await
            .expect("redirected fetch");
        assert_eq!(metadata.client_id, start);
        // /moved redirects to /client.json, whose document names /client.json, not /moved.
        let moved = fetch_client_metadata(&format!("{base}/moved"), &dev).await;
        assert!(
            matches!(moved, Err(CimdError::ClientIdMismatch)),
            "{moved:?}"
        );
    }

    #[tokio::test]
    async fn redirect_loop_is_cut_off() {
        let (base, _) = spawn_server().await;
        let dev = FetchPolicy::dev();
        let result = fetch_client_metadata(&format!("{base}/loop"), &dev).await;
        assert!(
            matches!(result, Err(CimdError::TooManyRedirects(3))),
            "{result:?}"
        );
        let chain = fetch_client_metadata(&format!("{base}/chain/4"), &dev).await;
        assert!(
            matches!(chain, Err(CimdError::TooManyRedirects(3))),
            "{chain:?}"
        );
        // Three hops are within the limit (the final document then fails its own checks).
        let three = fetch_client_metadata(&format!("{base}/chain/3"), &dev).await;
        assert!(
            matches!(three, Err(CimdError::ClientIdMismatch)),
            "{three:?}"
        );
    }

    #[tokio::test]
    async fn oversized_documents_are_refused() {
        let (base, _) = spawn_server().await;
        let dev = FetchPolicy::dev();
        let big = fetch_client_metadata(&format!("{base}/big.json"), &dev).await;
        assert!(matches!(big, Err(CimdError::TooLarge(5120))), "{big:?}");
        let chunked = fetch_client_metadata(&format!("{base}/big-chunked.json"), &dev).await;
        assert!(
            matches!(chunked, Err(CimdError::TooLarge(5120))),
            "{chunked:?}"
        );
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let (base, _) = spawn_server().await;
        let policy = FetchPolicy {
            timeout: Duration::from_millis(300),
            ..FetchPolicy::dev()
        };
        let started = Instant::now();
        let result = fetch_client_metadata(&format!("{base}/slow.json"), &policy).await;
        assert!(matches!(result, Err(CimdError::Timeout)), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn non_200_and_non_json_are_refused() {
        let (base, _) = spawn_server().await;
        let dev = FetchPolicy::dev();
        let missing = fetch_client_metadata(&format!("{base}/missing.json"), &dev).await;
        assert!(
            matches!(missing, Err(CimdError::HttpStatus(404))),
            "{missing:?}"
        );
        let error = fetch_client_metadata(&format!("{base}/error.json"), &dev).await;
        assert!(
            matches!(error, Err(CimdError::HttpStatus(500))),
            "{error:?}"
        );
        let html = fetch_client_metadata(&format!("{base}/html.json"), &dev).await;
        assert!(
            matches!(html, Err(CimdError::ContentType(ref t)) if t == "text/html"),
            "{html:?}"
        );
    }

    #[tokio::test]
    async fn document_naming_another_client_is_refused() {
        let (base, _) = spawn_server().await;
        let result =
            fetch_client_metadata(&format!("{base}/other.json"), &FetchPolicy::dev()).await;
        assert!(
            matches!(result, Err(CimdError::ClientIdMismatch)),
            "{result:?}"
        );
    }
}

/// Fuzz targets (`make fuzz`): client id URLs, redirect targets and metadata documents as a
/// hostile client site serves them.
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use toolgate_domain::fuzz::{
        config, deeply_nested_json, json_value, raw_bytes, short_hostile_string, url_like,
    };

    const ID: &str = "https://app.example.com/client.json";

    /// The members of a metadata document.
    const CIMD_KEYS: &[&str] = &[
        "client_id",
        "client_name",
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "client_uri",
        "logo_uri",
        "scope",
        "client_secret",
        "client_secret_expires_at",
        "jwks_uri",
        "authorization_code",
        "refresh_token",
        "code",
        "none",
        "private_key_jwt",
    ];

    fn valid_document() -> Value {
        json!({
            "client_id": ID,
            "client_name": "Example App",
            "redirect_uris": ["https://app.example.com/callback", "http://127.0.0.1:33418/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "client_uri": "https://app.example.com/",
            "scope": "mcp:read mcp:tools",
        })
    }

    /// What a member of the document becomes: left alone, removed, a hostile value, or a near
    /// miss of the right one.
    fn member_change() -> BoxedStrategy<Option<Option<Value>>> {
        prop_oneof![
            6 => Just(None),
            1 => Just(Some(None)),
            2 => json_value(2, CIMD_KEYS).prop_map(|v| Some(Some(v))),
            2 => short_hostile_string().prop_map(|s| Some(Some(json!(s)))),
            2 => url_like().prop_map(|u| Some(Some(json!(u)))),
            2 => prop::collection::vec(prop_oneof![url_like(), prop::sample::select(CIMD_KEYS).prop_map(str::to_string)], 0..3)
                .prop_map(|v| Some(Some(json!(v)))),
        ]
        .boxed()
    }

    /// A valid document with some members changed, added or removed (`changed` tells whether
    /// anything was).
    fn document() -> impl Strategy<Value = (Value, bool)> {
        prop::collection::vec((prop::sample::select(CIMD_KEYS), member_change()), 0..5).prop_map(
            |changes| {
                let mut doc = valid_document();
                let mut changed = false;
                if let Value::Object(map) = &mut doc {
                    for (key, change) in changes {
                        match change {
                            None => {}
                            Some(None) => changed |= map.remove(key).is_some(),
                            Some(Some(v)) => {
                                map.insert(key.to_string(), v);
                                changed = true;
                            }
                        }
                    }
                }
                (doc, changed)
            },
        )
    }

    /// A refusal names a document problem (never a fetch problem) in a bounded message.
    fn check_refusal(e: &CimdError) -> Result<(), TestCaseError> {
        prop_assert!(
            matches!(
                e.error_code(),
                "invalid_client_metadata" | "invalid_redirect_uri"
            ),
            "{e:?}"
        );
        let d = e.description();
        prop_assert!(!d.trim().is_empty());
        prop_assert!(
            d.len() < 1024,
            "client text is not truncated: {} bytes",
            d.len()
        );
        Ok(())
    }

    /// An accepted document keeps every promise `ClientMetadata` makes.
    fn check_accepted(m: &ClientMetadata, doc: &Value) -> Result<(), TestCaseError> {
        prop_assert_eq!(m.client_id.as_str(), ID);
        prop_assert!(!m.client_name.trim().is_empty());
        prop_assert!(!m.client_name.chars().any(char::is_control));
        prop_assert!(!m.redirect_uris.is_empty());
        for u in &m.redirect_uris {
            prop_assert!(!u.contains('#'), "{u}");
            let parsed = Url::parse(u).map_err(|e| TestCaseError::fail(format!("{u}: {e}")))?;
            prop_assert!(
                !matches!(parsed.scheme(), "javascript" | "data" | "vbscript" | "file"),
                "{u}"
            );
        }
        prop_assert_eq!(m.token_endpoint_auth_method.as_str(), "none");
        prop_assert!(m.grant_types.iter().any(|g| g == "authorization_code"));
        prop_assert!(
            m.grant_types
                .iter()
                .all(|g| g == "authorization_code" || g == "refresh_token")
        );
        prop_assert!(m.response_types.iter().all(|r| r == "code"));
        for u in [&m.client_uri, &m.logo_uri].into_iter().flatten() {
            prop_assert!(
                Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")),
                "{u}"
            );
        }
        prop_assert!(doc.get("client_secret").is_none());
        Ok(())
    }

    /// The `client_id` URL rules, checked on an accepted URL.
    fn check_client_id_url(
        input: &str,
        url: &Url,
        policy: &FetchPolicy,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(url.as_str(), input);
        prop_assert!(input.len() <= MAX_CLIENT_ID_LEN);
        prop_assert!(url.fragment().is_none() && !input.contains('#'));
        prop_assert!(url.username().is_empty() && url.password().is_none());
        prop_assert!(!raw_authority(input).contains('@'), "{input}");
        prop_assert!(url.path() != "/" && !url.path().is_empty());
        prop_assert!(!has_dot_segment(input), "{input}");
        match url.scheme() {
            "https" => {}
            "http" => prop_assert!(
                policy.allow_loopback_http && host_of(url).is_some_and(|h| h.is_loopback_name()),
                "{input}"
            ),
            other => prop_assert!(false, "scheme {other} accepted: {input}"),
        }
        // Accepted once, accepted again as it stands.
        prop_assert!(validate_client_id_url(url.as_str(), policy).is_ok());
        Ok(())
    }

    proptest! {
        #![proptest_config(config(600))]

        #[test]
        fn fuzz_oauth_cimd_documents((doc, changed) in document()) {
            let body = serde_json::to_vec(&doc).unwrap_or_default();
            match parse_client_metadata(ID, &body) {
                Ok(m) => check_accepted(&m, &doc)?,
                Err(e) => {
                    prop_assert!(changed, "the valid document was refused: {e}");
                    check_refusal(&e)?;
                }
            }
        }

        #[test]
        fn fuzz_oauth_cimd_raw_documents(body in prop_oneof![
            raw_bytes(),
            deeply_nested_json().prop_map(String::into_bytes),
            json_value(4, CIMD_KEYS).prop_map(|v| v.to_string().into_bytes()),
        ]) {
            match parse_client_metadata(ID, &body) {
                Ok(m) => {
                    let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
                    check_accepted(&m, &doc)?;
                }
                Err(e) => check_refusal(&e)?,
            }
        }

        #[test]
        fn fuzz_oauth_cimd_client_id_urls(input in url_like(), dev in any::<bool>()) {
            let policy = if dev { FetchPolicy::dev() } else { FetchPolicy::production() };
            match validate_client_id_url(&input, &policy) {
                Ok(url) => check_client_id_url(&input, &url, &policy)?,
                Err(e) => {
                    prop_assert_eq!(e.error_code(), "invalid_client");
                    prop_assert!(!e.description().is_empty());
                }
            }
        }

        #[test]
        fn fuzz_oauth_cimd_redirect_targets(location in url_like(), dev in any::<bool>()) {
            let policy = if dev { FetchPolicy::dev() } else { FetchPolicy::production() };
            let from = Url::parse(ID).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let header = reqwest::header::HeaderValue::from_str(&location).ok();
            match redirect_target(&from, header.as_ref(), &policy) {
                Ok(next) => {
                    prop_assert!(next.fragment().is_none());
                    prop_assert!(next.username().is_empty() && next.password().is_none());
                    prop_assert!(check_scheme_and_host(&next, &policy).is_ok());
                    prop_assert!(next.scheme() == "https" || (dev && next.scheme() == "http"));
                }
                Err(e) => prop_assert_eq!(e.error_code(), "invalid_client"),
            }
        }

        #[test]
        fn fuzz_oauth_cimd_addresses_and_content_types(
            v4 in any::<u32>(),
            v6 in any::<u128>(),
            loopback in any::<bool>(),
            content_type in short_hostile_string(),
        ) {
            // An IPv4 address is judged the same when it arrives IPv4-mapped.
            let ip = Ipv4Addr::from(v4);
            prop_assert_eq!(
                is_forbidden_ip(IpAddr::V6(ip.to_ipv6_mapped()), loopback),
                is_forbidden_ip(IpAddr::V4(ip), loopback)
            );
            let ip6 = Ipv6Addr::from(v6);
            if ip6.is_loopback() || ip6.is_unspecified() || ip6.is_multicast() {
                prop_assert!(is_forbidden_ip(IpAddr::V6(ip6), false));
            }
            if let Ok(value) = reqwest::header::HeaderValue::from_bytes(content_type.as_bytes())
                && let Err(e) = check_content_type(Some(&value))
            {
                prop_assert!(e.description().len() < 300);
            }
        }
    }
}
