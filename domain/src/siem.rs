//! SIEM sinks: what the dashboard and the admin API show and accept (kinds, configuration,
//! delivery state), the validation rules, and the pure formatters that turn audit events into
//! RFC 5424 syslog, CEF, Splunk HEC and JSON Lines payloads. Free of server-only types so the
//! dashboard (wasm) shares them; the transports live in the server.

use crate::model::{AuditDecision, AuditEvent, Outcome};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// APP-NAME of syslog messages and `source` of HEC events.
pub const APP_NAME: &str = "toolgate";
/// The structured-data id of Toolgate's RFC 5424 parameters (`name@<private enterprise number>`).
pub const SD_ID: &str = "toolgate@32473";
/// The default syslog facility: 10, `authpriv` (security and authorization messages that may hold
/// private data; syslog daemons keep them in restricted files).
pub const DEFAULT_FACILITY: u8 = 10;
/// Largest UDP datagram sent; longer messages are abridged, then cut.
pub const MAX_DATAGRAM: usize = 8 * 1024;
/// Largest `ca_pem` accepted.
pub const MAX_CA_PEM: usize = 64 * 1024;
/// `sourcetype` of HEC events.
pub const HEC_SOURCETYPE: &str = "toolgate:audit";
/// Kind of the synthetic event the "send test event" button sends (never in the audit log).
pub const TEST_EVENT_KIND: &str = "siem.test";

/// Where a sink sends events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Syslog (RFC 5424) over TCP with octet-counting framing (RFC 6587), optionally TLS.
    #[default]
    SyslogTcp,
    /// Syslog (RFC 5424) over UDP, one message per datagram (best effort by nature).
    SyslogUdp,
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    SplunkHec,
    /// Any HTTP(S) endpoint taking JSON Lines.
    Webhook,
}

impl SinkKind {
    /// Every kind, in the order the dashboard lists them.
    pub const ALL: [SinkKind; 4] = [
        SinkKind::SyslogTcp,
        SinkKind::SyslogUdp,
        SinkKind::SplunkHec,
        SinkKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::SyslogTcp => "syslog_tcp",
            SinkKind::SyslogUdp => "syslog_udp",
            SinkKind::SplunkHec => "splunk_hec",
            SinkKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A human label for the dashboard.
    pub fn label(self) -> &'static str {
        match self {
            SinkKind::SyslogTcp => "Syslog over TCP",
            SinkKind::SyslogUdp => "Syslog over UDP",
            SinkKind::SplunkHec => "Splunk HEC",
            SinkKind::Webhook => "HTTPS webhook (JSON Lines)",
        }
    }

    pub fn is_syslog(self) -> bool {
        matches!(self, SinkKind::SyslogTcp | SinkKind::SyslogUdp)
    }
}

/// What a syslog sink puts in each message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 with structured data and the event as JSON in MSG.
    #[default]
    Rfc5424,
    /// An RFC 5424 header followed by an ArcSight CEF record.
    Cef,
}

impl SyslogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SyslogFormat::Rfc5424 => "rfc5424",
            SyslogFormat::Cef => "cef",
        }
    }
}

/// A sink's settings other than its secret. Which fields apply depends on the kind:
/// syslog takes `host`, `port`, `format`, `facility` (and over TCP `tls`, `ca_pem`); Splunk HEC
/// takes `url`, `ca_pem`; a webhook takes `url`, `header_name`, `ca_pem`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Syslog: the collector's host name or IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Syslog: the port (default 514, or 6514 with TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Syslog over TCP: wrap the connection in TLS (RFC 5425).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Syslog: `rfc5424` (default) or `cef`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<SyslogFormat>,
    /// Syslog: the facility, 0-23 (default 10, `authpriv`; 16 is `local0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility: Option<u8>,
    /// TLS: PEM certificates of a private CA; when set, only these are trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// HEC and webhook: the endpoint (`http://` or `https://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Webhook: the header that carries the secret (default `Authorization`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
}

impl SinkConfig {
    /// Checks the fields for `kind` and fills in defaults (port, format, facility, header name),
    /// trimming text. A field that does not apply to the kind is an error rather than ignored, so
    /// a typo cannot silently send events somewhere else.
    pub fn normalized(self, kind: SinkKind) -> Result<SinkConfig, String> {
        let trim = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let host = trim(self.host);
        let url = trim(self.url);
        let header_name = trim(self.header_name);
        let ca_pem = trim(self.ca_pem);
        let refuse = |field: &str, given: bool| -> Result<(), String> {
            if given {
                Err(format!(
                    "{field} does not apply to a {} sink",
                    kind.as_str()
                ))
            } else {
                Ok(())
            }
        };
        if let Some(pem) = &ca_pem {
            validate_ca_pem(pem)?;
        }
        match kind {
            SinkKind::SyslogTcp | SinkKind::SyslogUdp => {
                refuse("url", url.is_some())?;
                refuse("header_name", header_name.is_some())?;
                let host = host.ok_or("host is required for a syslog sink")?;
                validate_host(&host)?;
                let host = bare_host(&host).to_string();
                let udp = kind == SinkKind::SyslogUdp;
                refuse("tls", udp && self.tls)?;
                if ca_pem.is_some() && !self.tls {
                    return Err("ca_pem needs tls".into());
                }
                let port = match self.port {
                    Some(0) => return Err("port must be 1-65535".into()),
                    Some(p) => p,
                    None if self.tls => 6514,
                    None => 514,
                };
                let facility = self.facility.unwrap_or(DEFAULT_FACILITY);
                if facility > 23 {
                    return Err(format!("facility must be 0-23, got {facility}"));
                }
                Ok(SinkConfig {
                    host: Some(host),
                    port: Some(port),
                    tls: self.tls,
                    format: Some(self.format.unwrap_or_default()),
                    facility: Some(facility),
                    ca_pem,
                    url: None,
                    header_name: None,
                })
            }
            SinkKind::SplunkHec | SinkKind::Webhook => {
                refuse("host", host.is_some())?;
                refuse("port", self.port.is_some())?;
                refuse("tls (use an https:// url)", self.tls)?;
                refuse("format", self.format.is_some())?;
                refuse("facility", self.facility.is_some())?;
                let url = url.ok_or("url is required for an HTTP sink")?;
                validate_sink_url(&url)?;
                if ca_pem.is_some() && !url.starts_with("https://") {
                    return Err("ca_pem needs an https:// url".into());
                }
                let header_name = if kind == SinkKind::Webhook {
                    let h = header_name.unwrap_or_else(|| "Authorization".into());
                    crate::names::validate_header_name(&h)?;
                    Some(h)
                } else {
                    refuse("header_name", header_name.is_some())?;
                    None
                };
                Ok(SinkConfig {
                    url: Some(url),
                    header_name,
                    ca_pem,
                    ..SinkConfig::default()
                })
            }
        }
    }

    /// Where events go, in one line (`tcp+tls://siem.corp:6514 (rfc5424)`, a URL).
    pub fn target(&self, kind: SinkKind) -> String {
        let host = self.host.as_deref().unwrap_or("?");
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let port = self.port.unwrap_or(0);
        let format = self.format.unwrap_or_default().as_str();
        match kind {
            SinkKind::SyslogTcp if self.tls => format!("tcp+tls://{host}:{port} ({format})"),
            SinkKind::SyslogTcp => format!("tcp://{host}:{port} ({format})"),
            SinkKind::SyslogUdp => format!("udp://{host}:{port} ({format})"),
            SinkKind::SplunkHec | SinkKind::Webhook => self.url.clone().unwrap_or_default(),
        }
    }
}

/// A sink as the dashboard and the API show it. The secret (HEC token, webhook header value) is
/// never part of it: only whether one is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiemSink {
    pub id: String,
    pub name: String,
    pub kind: SinkKind,
    pub config: SinkConfig,
    /// Whether a secret is stored (encrypted at rest, write-only).
    pub secret_set: bool,
    pub enabled: bool,
    /// The id of the last audit event the sink has received (delivery resumes after it).
    pub cursor: i64,
    /// Events written since the cursor (newest event id minus the cursor).
    pub lag: i64,
    /// Events delivered so far.
    pub delivered: i64,
    /// Failed delivery attempts so far.
    pub failures: i64,
    /// Why the last attempt failed; cleared by the next success.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl SiemSink {
    /// Where events go, in one line.
    pub fn target(&self) -> String {
        self.config.target(self.kind)
    }
}

/// A sink to create.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSink {
    /// 1-64 of letters, digits, space, `-`, `_`, `.`; unique. Also the `sink` label of metrics.
    pub name: String,
    pub kind: SinkKind,
    #[serde(default)]
    pub config: SinkConfig,
    /// HEC: the token (required). Webhook: the header value, e.g. `Bearer …` (optional).
    /// Encrypted at rest and never returned.
    #[serde(default)]
    pub secret: Option<String>,
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Deliver only events written from now on, instead of everything the log holds.
    #[serde(default)]
    pub start_at_head: bool,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for NewSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSink")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("config", &self.config)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("enabled", &self.enabled)
            .field("start_at_head", &self.start_at_head)
            .finish()
    }
}

/// A change to a sink; omitted fields stay. The kind cannot change (create another sink).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SinkUpdate {
    pub name: Option<String>,
    /// Replaces the whole configuration.
    pub config: Option<SinkConfig>,
    /// A new secret; an empty string removes it; omitted keeps it.
    pub secret: Option<String>,
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for SinkUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkUpdate")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// A sink's secret in memory; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SinkSecret(String);

impl SinkSecret {
    pub fn new(s: String) -> Self {
        SinkSecret(s)
    }

    /// The secret itself, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkSecret(..)")
    }
}

/// The outcome of "send test event".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SinkTestResult {
    /// True when the sink accepted the event.
    pub ok: bool,
    /// What happened, in words (the error when `ok` is false).
    pub message: String,
}

/// Sink names: 1-64 of letters, digits, space, `-`, `_`, `.`, not blank.
pub fn validate_sink_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err("sink name must be 1-64 characters and not blank".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err(format!(
            "sink name {name:?} may contain only letters, digits, spaces, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// Checks a sink's secret for `kind`: HEC needs a token; syslog takes none; values are printable
/// ASCII (they travel in an HTTP header).
pub fn validate_secret(kind: SinkKind, secret: Option<&str>) -> Result<(), String> {
    match (kind, secret) {
        (SinkKind::SplunkHec, None) => Err("a Splunk HEC sink needs its token as secret".into()),
        (SinkKind::SyslogTcp | SinkKind::SyslogUdp, Some(_)) => {
            Err("a syslog sink takes no secret".into())
        }
        (_, Some(s)) => crate::names::validate_header_value("secret", s),
        (_, None) => Ok(()),
    }
}

/// A host without the brackets an IPv6 literal may be written with.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A host name or IP literal (IPv6 with or without brackets), not a cloud metadata address.
pub fn validate_host(host: &str) -> Result<(), String> {
    let bare = bare_host(host);
    if bare.is_empty() || bare.len() > 253 {
        return Err("host must be 1-253 characters".into());
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if is_metadata_ip(ip) {
            return Err(format!(
                "host {host} is a cloud metadata address and is refused"
            ));
        }
        return Ok(());
    }
    let ok = bare.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !ok {
        return Err(format!(
            "host {host:?} is not a valid host name or IP address"
        ));
    }
    if is_metadata_host_name(bare) {
        return Err(format!(
            "host {host} is a cloud metadata address and is refused"
        ));
    }
    Ok(())
}

/// Sink URLs: absolute http(s) with a host (private addresses allowed: SIEMs live on private
/// networks), no credentials or fragment, and not a cloud metadata address.
pub fn validate_sink_url(url: &str) -> Result<(), String> {
    crate::names::validate_upstream_url(url)?;
    let host = url_host(url).ok_or("url must name a host")?;
    validate_host(host)
}

/// The host part of an absolute http(s) URL (IPv6 without brackets), if any.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// Cloud instance metadata endpoints (AWS, Azure, GCP, OpenStack: 169.254.169.254; AWS over
/// IPv6: fd00:ec2::254), also written as IPv4-mapped IPv6. Sinks may point at private networks,
/// but never there: the metadata service hands out the host's cloud credentials.
pub fn is_metadata_ip(ip: IpAddr) -> bool {
    const V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
    const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => v4 == V4,
        IpAddr::V6(v6) => v6 == V6 || v6.to_ipv4_mapped() == Some(V4),
    }
}

/// Names that resolve to the metadata service inside clouds.
fn is_metadata_host_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "metadata.google.internal" || h == "metadata.goog"
}

/// A light check of `ca_pem` (the server parses it fully before storing).
pub fn validate_ca_pem(pem: &str) -> Result<(), String> {
    if pem.len() > MAX_CA_PEM {
        return Err(format!("ca_pem must be at most {} KiB", MAX_CA_PEM / 1024));
    }
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err("ca_pem must hold PEM certificates (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Formats

/// True for events a SIEM should look at first: refusals, DLP blocks and errors.
fn is_notable(e: &AuditEvent) -> bool {
    e.decision == AuditDecision::Deny
        || matches!(
            e.outcome,
            Outcome::Denied | Outcome::Blocked | Outcome::ToolError | Outcome::UpstreamError
        )
        || e.error.is_some()
}

/// Syslog severity: 5 (notice) for denials, DLP blocks and errors, otherwise 6 (informational).
pub fn syslog_severity(e: &AuditEvent) -> u8 {
    if is_notable(e) { 5 } else { 6 }
}

/// CEF severity (0-10): 7 for denials and DLP blocks, 5 for errors, otherwise 3.
pub fn cef_severity(e: &AuditEvent) -> u8 {
    if e.decision == AuditDecision::Deny || matches!(e.outcome, Outcome::Denied | Outcome::Blocked)
    {
        7
    } else if is_notable(e) {
        5
    } else {
        3
    }
}

/// How syslog messages are built.
#[derive(Clone, Copy, Debug)]
pub struct SyslogOptions<'a> {
    /// HOSTNAME of the header: the sending host.
    pub hostname: &'a str,
    /// 0-23.
    pub facility: u8,
    pub format: SyslogFormat,
}

/// The event as JSON (the MSG of RFC 5424 messages, HEC's `event`, a webhook line).
pub fn event_json(e: &AuditEvent) -> String {
    // Serializing this struct cannot fail (string keys, finite numbers); keep the id if it did.
    serde_json::to_string(e).unwrap_or_else(|err| {
        serde_json::json!({"id": e.id, "kind": e.kind, "serialization_error": err.to_string()})
            .to_string()
    })
}

/// One syslog message (without transport framing):
/// `<PRI>1 TIMESTAMP HOSTNAME toolgate - KIND [toolgate@32473 …] {json}` for RFC 5424, or the
/// same header with `-` as structured data and a CEF record as MSG. MSG is plain UTF-8 without
/// a byte order mark; the whole message holds no line breaks.
pub fn syslog_message(e: &AuditEvent, opts: &SyslogOptions<'_>) -> String {
    let pri = u16::from(opts.facility.min(23)) * 8 + u16::from(syslog_severity(e));
    let ts = e.at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let host = header_token(opts.hostname, 255);
    let msgid = header_token(&e.kind, 32);
    match opts.format {
        SyslogFormat::Rfc5424 => format!(
            "<{pri}>1 {ts} {host} {APP_NAME} - {msgid} {} {}",
            structured_data(e),
            event_json(e)
        ),
        SyslogFormat::Cef => format!("<{pri}>1 {ts} {host} {APP_NAME} - {msgid} - {}", cef(e)),
    }
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_frame(message: &str) -> String {
    format!("{} {message}", message.len())
}

/// A message for one UDP datagram of at most `max` bytes: when the event is too big, the
/// arguments are left out (their hash stays) and long texts shortened; as a last resort the
/// message is cut at a character boundary (never inside an escape sequence).
pub fn syslog_datagram(e: &AuditEvent, opts: &SyslogOptions<'_>, max: usize) -> String {
    let full = syslog_message(e, opts);
    if full.len() <= max {
        return full;
    }
    let mut lite = e.clone();
    lite.args_redacted = None;
    lite.detail = lite.detail.as_deref().map(|d| shorten(d, 1024));
    lite.error = lite.error.as_deref().map(|d| shorten(d, 1024));
    lite.rule = lite.rule.as_deref().map(|d| shorten(d, 256));
    lite.user_agent = lite.user_agent.as_deref().map(|d| shorten(d, 256));
    let msg = syslog_message(&lite, opts);
    cut_message(&msg, max).to_string()
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        format!("{}…", cut(s, max))
    }
}

/// Cuts at a character boundary at or below `max` bytes.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cuts a formatted message, then drops a trailing lone backslash so no escape is left open.
fn cut_message(s: &str, max: usize) -> &str {
    let out = cut(s, max);
    let trailing = out.bytes().rev().take_while(|b| *b == b'\\').count();
    if trailing % 2 == 1 {
        &out[..out.len() - 1]
    } else {
        out
    }
}

/// A header field of RFC 5424: printable US-ASCII without spaces, at most `max`, `-` when empty.
fn header_token(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if t.is_empty() { "-".into() } else { t }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped with a backslash; control characters become
/// spaces so the message stays on one line; at most 256 characters.
pub fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().take(256) {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `[toolgate@32473 id="…" principal="…" …]`: the fields a SIEM filters on.
fn structured_data(e: &AuditEvent) -> String {
    let mut sd = format!("[{SD_ID} id=\"{}\"", e.id);
    let mut param = |name: &str, value: &str| {
        sd.push_str(&format!(" {name}=\"{}\"", sd_escape(value)));
    };
    param("principal", &e.principal);
    if let Some(v) = &e.subject_kind {
        param("subjectKind", v);
    }
    param("decision", e.decision.as_str());
    param("outcome", e.outcome.as_str());
    let optional = [
        ("connector", &e.connector),
        ("tool", &e.tool),
        ("ip", &e.ip),
        ("sessionId", &e.session_id),
        ("requestId", &e.request_id),
        ("callId", &e.call_id),
        ("rule", &e.rule),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            param(name, v);
        }
    }
    if e.latency_ms > 0.0 {
        param("latencyMs", &format!("{:.3}", e.latency_ms));
    }
    sd.push(']');
    sd
}

/// A CEF header field: `\` and `|` escaped, line breaks and other controls become spaces.
pub fn cef_header_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A CEF extension value: `\` and `=` escaped, line breaks written as `\n` / `\r`, other
/// controls become spaces.
pub fn cef_value_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The CEF name of an event: its kind, the tool it concerns, and a denial.
fn cef_name(e: &AuditEvent) -> String {
    let mut name = e.kind.clone();
    match (&e.connector, &e.tool) {
        (Some(c), Some(t)) => name.push_str(&format!(" {c}__{t}")),
        (Some(c), None) => name.push_str(&format!(" {c}")),
        _ => {}
    }
    if e.decision == AuditDecision::Deny {
        name.push_str(" denied");
    }
    name
}

/// `CEF:0|Toolgate|Toolgate|<version>|<kind>|<name>|<severity>|<extension>`.
pub fn cef(e: &AuditEvent) -> String {
    let mut ext: Vec<(String, String)> = vec![
        ("rt".into(), e.at.timestamp_millis().to_string()),
        ("externalId".into(), e.id.to_string()),
        ("cat".into(), e.kind.clone()),
        ("suser".into(), e.principal.clone()),
        ("act".into(), e.decision.as_str().into()),
        ("outcome".into(), e.outcome.as_str().into()),
    ];
    let mut push = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ext.push((k.into(), v.into()));
        }
    };
    push("suid", e.principal_id.as_deref());
    let ip = e.ip.as_deref().filter(|ip| ip.parse::<IpAddr>().is_ok());
    push("src", ip);
    push("requestClientApplication", e.user_agent.as_deref());
    let labelled = [
        ("cs1", "connector", e.connector.as_deref()),
        ("cs2", "tool", e.tool.as_deref()),
        ("cs3", "rule", e.rule.as_deref()),
        ("cs4", "sessionId", e.session_id.as_deref()),
        ("cs5", "client", e.client_name.as_deref()),
        ("cs6", "requestId", e.request_id.as_deref()),
    ];
    for (key, label, value) in labelled {
        if value.is_some_and(|v| !v.is_empty()) {
            push(&format!("{key}Label"), Some(label));
            push(key, value);
        }
    }
    let latency = e.latency_ms.round() as i64;
    let numbers = [
        ("cn1", "latencyMs", (e.latency_ms > 0.0).then_some(latency)),
        ("cn2", "bytesIn", e.bytes_in),
        ("cn3", "bytesOut", e.bytes_out),
    ];
    for (key, label, value) in numbers {
        if let Some(v) = value {
            push(&format!("{key}Label"), Some(label));
            push(key, Some(&v.to_string()));
        }
    }
    let msg = e
        .error
        .as_deref()
        .or(e.detail.as_deref())
        .map(|m| shorten(m, 1024));
    push("msg", msg.as_deref());
    let ext = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", cef_value_escape(v)))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "CEF:0|Toolgate|Toolgate|{}|{}|{}|{}|{ext}",
        cef_header_escape(env!("CARGO_PKG_VERSION")),
        cef_header_escape(&e.kind),
        cef_header_escape(&cef_name(e)),
        cef_severity(e)
    )
}

/// One Splunk HEC event object:
/// `{"time": <epoch seconds>, "host": …, "source": "toolgate", "sourcetype": "toolgate:audit", "event": {…}}`.
pub fn hec_event(e: &AuditEvent, host: &str) -> String {
    // Serializing this struct cannot fail (string keys, finite numbers); keep the id if it did.
    let event =
        serde_json::to_value(e).unwrap_or_else(|_| serde_json::json!({"id": e.id, "kind": e.kind}));
    serde_json::json!({
        "time": e.at.timestamp_millis() as f64 / 1000.0,
        "host": host,
        "source": APP_NAME,
        "sourcetype": HEC_SOURCETYPE,
        "event": event,
    })
    .to_string()
}

/// A HEC request body: event objects one after another (newline-separated, as HEC batches them).
pub fn hec_body(events: &[AuditEvent], host: &str) -> String {
    let mut body = String::new();
    for e in events {
        body.push_str(&hec_event(e, host));
        body.push('\n');
    }
    body
}

/// JSON Lines: one event per line, each line ending in `\n`.
pub fn json_lines(events: &[AuditEvent]) -> String {
    let mut body = String::new();
    for e in events {
        body.push_str(&event_json(e));
        body.push('\n');
    }
    body
}

/// The synthetic event "send test event" delivers; it is not written to the audit log (id 0).
pub fn test_event(at: DateTime<Utc>, principal: &str) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        kind: TEST_EVENT_KIND.into(),
        principal: principal.into(),
        subject_kind: Some("admin".into()),
        detail: Some(
            "Test event from Toolgate: the sink is reachable. It is not part of the audit log."
                .into(),
        ),
        ..AuditEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn event() -> AuditEvent {
        AuditEvent {
            id: 42,
            at: Utc.with_ymd_and_hms(2025, 3, 1, 12, 30, 5).unwrap()
                + chrono::Duration::milliseconds(123),
            kind: "tool_call".into(),
            principal: "alice@example.com".into(),
            principal_id: Some("u-1".into()),
            subject_kind: Some("person".into()),
            connector: Some("github".into()),
            tool: Some("create_issue".into()),
            ip: Some("10.0.0.7".into()),
            user_agent: Some("claude-code/1.0".into()),
            latency_ms: 12.6,
            dlp_findings: BTreeMap::from([("email".to_string(), 1)]),
            ..AuditEvent::default()
        }
    }

    fn opts(format: SyslogFormat) -> SyslogOptions<'static> {
        SyslogOptions {
            hostname: "gw-1",
            facility: DEFAULT_FACILITY,
            format,
        }
    }

    #[test]
    fn rfc5424_header_structured_data_and_json() {
        let msg = syslog_message(&event(), &opts(SyslogFormat::Rfc5424));
        // authpriv (10) * 8 + informational (6) = 86.
        assert!(
            msg.starts_with("<86>1 2025-03-01T12:30:05.123Z gw-1 toolgate - tool_call [toolgate@32473 id=\"42\" principal=\"alice@example.com\""),
            "{msg}"
        );
        assert!(msg.contains(" connector=\"github\" tool=\"create_issue\" ip=\"10.0.0.7\""));
        assert!(msg.contains(" latencyMs=\"12.600\"]"));
        let json_start = msg.find("] {").expect("MSG after SD") + 2;
        let v: serde_json::Value = serde_json::from_str(&msg[json_start..]).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["dlp_findings"]["email"], 1);
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn severity_follows_decision_and_outcome() {
        let mut e = event();
        assert_eq!(syslog_severity(&e), 6);
        assert_eq!(cef_severity(&e), 3);
        e.decision = AuditDecision::Deny;
        e.outcome = Outcome::Denied;
        assert_eq!(syslog_severity(&e), 5);
        assert_eq!(cef_severity(&e), 7);
        let msg = syslog_message(
            &e,
            &SyslogOptions {
                facility: 16,
                ..opts(SyslogFormat::Rfc5424)
            },
        );
        assert!(msg.starts_with("<133>1 "), "local0.notice: {msg}");
        let mut e = event();
        e.outcome = Outcome::UpstreamError;
        assert_eq!((syslog_severity(&e), cef_severity(&e)), (5, 5));
        let mut e = event();
        e.outcome = Outcome::Blocked;
        assert_eq!((syslog_severity(&e), cef_severity(&e)), (5, 7));
        let mut e = event();
        e.error = Some("boom".into());
        assert_eq!(syslog_severity(&e), 5);
    }

    #[test]
    fn sd_values_are_escaped() {
        assert_eq!(sd_escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(sd_escape("line1\nline2"), "line1 line2");
        let mut e = event();
        e.principal = "evil\"] [x@1 y=\"z".into();
        let msg = syslog_message(&e, &opts(SyslogFormat::Rfc5424));
        assert!(msg.contains(r#"principal="evil\"\] [x@1 y=\"z""#), "{msg}");
    }

    #[test]
    fn header_fields_are_printable_ascii() {
        let mut e = event();
        e.kind = "a kind with spaces and ünïcode that is much longer than thirty-two".into();
        let msg = syslog_message(
            &e,
            &SyslogOptions {
                hostname: "",
                ..opts(SyslogFormat::Rfc5424)
            },
        );
        let fields: Vec<&str> = msg.splitn(7, ' ').collect();
        assert_eq!(fields[2], "-", "empty host name is the nil value");
        assert_eq!(fields[5], "akindwithspacesandncodethatismuc");
        assert!(fields[5].len() <= 32);
    }

    #[test]
    fn octet_counting_frames_by_bytes() {
        assert_eq!(octet_frame("<14>1 é"), "8 <14>1 é");
    }

    #[test]
    fn cef_record_and_escaping() {
        let mut e = event();
        e.error = Some("bad=thing\\here\nnext".into());
        e.rule = Some("group a|b".into());
        let msg = syslog_message(&e, &opts(SyslogFormat::Cef));
        let cef_start = msg.find("CEF:0|").unwrap();
        assert!(msg[..cef_start].ends_with(" tool_call - "), "{msg}");
        let record = &msg[cef_start..];
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            record.starts_with(&format!(
                "CEF:0|Toolgate|Toolgate|{version}|tool_call|tool_call github__create_issue|5|rt=1740832205123 externalId=42 "
            )),
            "{record}"
        );
        assert!(record.contains(" suser=alice@example.com "));
        assert!(record.contains(" act=allow outcome=ok "));
        assert!(record.contains(" src=10.0.0.7 "));
        assert!(record.contains(" cs1Label=connector cs1=github cs2Label=tool cs2=create_issue "));
        assert!(record.contains(" cs3Label=rule cs3=group a|b "));
        assert!(record.contains(" cn1Label=latencyMs cn1=13 "));
        assert!(record.ends_with(r" msg=bad\=thing\\here\nnext"), "{record}");
        assert_eq!(cef_header_escape("a|b\\c\nd"), r"a\|b\\c d");
        assert_eq!(cef_value_escape("k=v\r\n"), r"k\=v\r\n");
    }

    #[test]
    fn cef_leaves_out_what_is_not_an_ip() {
        let mut e = event();
        e.ip = Some("not an ip".into());
        assert!(!cef(&e).contains("src="));
    }

    #[test]
    fn datagrams_are_abridged_then_cut() {
        let mut e = event();
        e.args_redacted = Some(format!("{{\"text\":\"{}\"}}", "x".repeat(20_000)));
        e.args_hash = Some("abc123".into());
        let msg = syslog_datagram(&e, &opts(SyslogFormat::Rfc5424), MAX_DATAGRAM);
        assert!(msg.len() <= MAX_DATAGRAM);
        let json_start = msg.find("] {").unwrap() + 2;
        let v: serde_json::Value = serde_json::from_str(&msg[json_start..]).expect("still JSON");
        assert_eq!(v["args_redacted"], serde_json::Value::Null);
        assert_eq!(v["args_hash"], "abc123");

        // Even the abridged form too big: cut at a character boundary, no open escape.
        let mut e = event();
        e.principal = "é\\".repeat(4000);
        for format in [SyslogFormat::Rfc5424, SyslogFormat::Cef] {
            let msg = syslog_datagram(&e, &opts(format), 1001);
            assert!(msg.len() <= 1001, "{}", msg.len());
            let trailing = msg.bytes().rev().take_while(|b| *b == b'\\').count();
            assert_eq!(trailing % 2, 0, "{msg}");
        }
        assert_eq!(cut_message("ab\\\\\\", 5), "ab\\\\");
        assert_eq!(cut_message("ab\\\\", 4), "ab\\\\");
        // Small events go out whole.
        let small = syslog_datagram(&event(), &opts(SyslogFormat::Rfc5424), MAX_DATAGRAM);
        assert_eq!(
            small,
            syslog_message(&event(), &opts(SyslogFormat::Rfc5424))
        );
    }

    #[test]
    fn hec_and_json_lines() {
        let body = hec_body(&[event(), event()], "gw-1");
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["time"].as_f64(), Some(1740832205.123));
        assert_eq!(v["sourcetype"], "toolgate:audit");
        assert_eq!(v["source"], "toolgate");
        assert_eq!(v["host"], "gw-1");
        assert_eq!(v["event"]["id"], 42);
        let jl = json_lines(&[event()]);
        assert!(jl.ends_with('\n'));
        let back: AuditEvent = serde_json::from_str(jl.trim_end()).unwrap();
        assert_eq!(back, event());
    }

    #[test]
    fn config_is_checked_per_kind() {
        let syslog = SinkConfig {
            host: Some(" siem.corp ".into()),
            ..SinkConfig::default()
        };
        let n = syslog.clone().normalized(SinkKind::SyslogTcp).unwrap();
        assert_eq!(n.host.as_deref(), Some("siem.corp"));
        assert_eq!(n.port, Some(514));
        assert_eq!(n.format, Some(SyslogFormat::Rfc5424));
        assert_eq!(n.facility, Some(DEFAULT_FACILITY));
        assert_eq!(
            n.target(SinkKind::SyslogTcp),
            "tcp://siem.corp:514 (rfc5424)"
        );
        let tls = SinkConfig {
            tls: true,
            ..syslog.clone()
        }
        .normalized(SinkKind::SyslogTcp)
        .unwrap();
        assert_eq!(tls.port, Some(6514));
        assert!(
            SinkConfig {
                tls: true,
                ..syslog.clone()
            }
            .normalized(SinkKind::SyslogUdp)
            .is_err()
        );
        let err = SinkConfig {
            url: Some("https://x".into()),
            ..syslog.clone()
        }
        .normalized(SinkKind::SyslogTcp)
        .unwrap_err();
        assert!(err.contains("url does not apply"), "{err}");
        assert!(
            SinkConfig::default()
                .normalized(SinkKind::SyslogUdp)
                .unwrap_err()
                .contains("host is required")
        );
        assert!(
            SinkConfig {
                facility: Some(24),
                ..syslog.clone()
            }
            .normalized(SinkKind::SyslogTcp)
            .is_err()
        );
        assert!(
            SinkConfig {
                port: Some(0),
                ..syslog.clone()
            }
            .normalized(SinkKind::SyslogTcp)
            .is_err()
        );
        assert!(
            SinkConfig {
                ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
                ..syslog
            }
            .normalized(SinkKind::SyslogTcp)
            .unwrap_err()
            .contains("needs tls")
        );

        let hook = SinkConfig {
            url: Some("https://siem.corp/ingest".into()),
            ..SinkConfig::default()
        }
        .normalized(SinkKind::Webhook)
        .unwrap();
        assert_eq!(hook.header_name.as_deref(), Some("Authorization"));
        let hec = SinkConfig {
            url: Some("http://10.1.2.3:8088/services/collector/event".into()),
            ..SinkConfig::default()
        }
        .normalized(SinkKind::SplunkHec)
        .unwrap();
        assert_eq!(hec.header_name, None);
        for bad in [
            "ftp://x",
            "https://",
            "https://user:pw@x/",
            "http://169.254.169.254/latest",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://metadata.google.internal/",
        ] {
            assert!(
                SinkConfig {
                    url: Some(bad.into()),
                    ..SinkConfig::default()
                }
                .normalized(SinkKind::Webhook)
                .is_err(),
                "{bad}"
            );
        }
        assert!(
            SinkConfig {
                url: Some("https://x".into()),
                format: Some(SyslogFormat::Cef),
                ..SinkConfig::default()
            }
            .normalized(SinkKind::SplunkHec)
            .is_err()
        );
    }

    #[test]
    fn hosts_names_and_secrets() {
        assert!(validate_host("10.0.0.1").is_ok());
        assert!(validate_host("::1").is_ok());
        assert!(validate_host("[::1]").is_ok());
        assert!(validate_host("siem-1.corp.example").is_ok());
        assert!(validate_host("169.254.169.254").is_err());
        assert!(validate_host("bad host").is_err());
        assert!(validate_host("a..b").is_err());
        assert_eq!(url_host("https://[::1]:8088/x"), Some("::1"));
        assert_eq!(url_host("http://splunk:8088/services"), Some("splunk"));
        assert_eq!(url_host("http://splunk?x"), Some("splunk"));
        assert!(validate_sink_name("Corp SIEM-1").is_ok());
        assert!(validate_sink_name("  ").is_err());
        assert!(validate_sink_name("a/b").is_err());
        assert!(validate_sink_name(&"a".repeat(65)).is_err());
        assert!(validate_secret(SinkKind::SplunkHec, None).is_err());
        assert!(validate_secret(SinkKind::SplunkHec, Some("tok")).is_ok());
        assert!(validate_secret(SinkKind::SyslogTcp, Some("tok")).is_err());
        assert!(validate_secret(SinkKind::Webhook, None).is_ok());
        assert!(validate_secret(SinkKind::Webhook, Some("a\nb")).is_err());
        assert!(!format!("{:?}", SinkSecret::new("hunter2".into())).contains("hunter2"));
        let n = NewSink {
            secret: Some("hunter2".into()),
            ..NewSink::default()
        };
        assert!(!format!("{n:?}").contains("hunter2"));
    }

    #[test]
    fn kinds_round_trip() {
        for k in SinkKind::ALL {
            assert_eq!(SinkKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(SinkKind::parse("kafka"), None);
        let cfg: SinkConfig = serde_json::from_str(r#"{"host":"x","format":"cef"}"#).unwrap();
        assert_eq!(cfg.format, Some(SyslogFormat::Cef));
        assert!(serde_json::from_str::<SinkConfig>(r#"{"hots":"x"}"#).is_err());
        // Stored configuration leaves out what is not set.
        assert_eq!(
            serde_json::to_string(&SinkConfig {
                url: Some("https://x".into()),
                ..SinkConfig::default()
            })
            .unwrap(),
            r#"{"url":"https://x"}"#
        );
    }
}
