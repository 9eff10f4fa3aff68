//! Transports to SIEM sinks: syslog over TCP (optionally TLS, RFC 6587 octet counting), syslog
//! over UDP (one datagram per event), and HTTP (Splunk HEC, JSON Lines webhooks). Each reports
//! how many of the events handed to it arrived (a prefix), so the cursor never passes an event
//! that did not.

use futures::FutureExt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use toolgate_domain::model::AuditEvent;
use toolgate_domain::siem::{
    MAX_DATAGRAM, SiemSink, SinkConfig, SinkKind, SinkSecret, SyslogOptions, hec_event,
    is_metadata_ip, octet_frame, syslog_datagram, syslog_message,
};

/// How long connecting (and the TLS handshake) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write or HTTP request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After this long a batch stops at the next request boundary (the rest goes next round), so a
/// delivery ends well within its lease.
const BATCH_BUDGET: Duration = Duration::from_secs(15);
/// HTTP bodies are split at about this size.
const MAX_BODY: usize = 1024 * 1024;

/// What a send achieved: the first `delivered` events arrived; `error` says why the rest did not.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub delivered: usize,
    pub error: Option<String>,
}

impl Delivery {
    fn failed(delivered: usize, error: String) -> Self {
        Delivery {
            delivered,
            error: Some(error),
        }
    }
}

/// A connection (or client) to one sink, kept between batches.
pub(crate) enum Transport {
    Tcp(TcpSink),
    Udp(UdpSink),
    Http(HttpSink),
}

impl Transport {
    /// Builds the transport for a sink; fails on configuration the server cannot use (an
    /// unreadable CA, a metadata address hidden in a URL).
    pub(crate) fn new(sink: &SiemSink, secret: Option<&SinkSecret>) -> Result<Self, String> {
        check_config(&sink.config)?;
        let c = &sink.config;
        let syslog = |what: &str| -> Result<(String, u16, SyslogOptions<'static>), String> {
            let host = c
                .host
                .clone()
                .ok_or_else(|| format!("{what} sink without a host"))?;
            let port = c
                .port
                .ok_or_else(|| format!("{what} sink without a port"))?;
            let opts = SyslogOptions {
                hostname: hostname(),
                facility: c
                    .facility
                    .unwrap_or(toolgate_domain::siem::DEFAULT_FACILITY),
                format: c.format.unwrap_or_default(),
            };
            Ok((host, port, opts))
        };
        match sink.kind {
            SinkKind::SyslogTcp => {
                let (host, port, opts) = syslog("syslog")?;
                let tls = if c.tls {
                    let name = ServerName::try_from(host.clone())
                        .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
                    Some((tls_connector(c.ca_pem.as_deref())?, name))
                } else {
                    None
                };
                Ok(Transport::Tcp(TcpSink {
                    host,
                    port,
                    opts,
                    tls,
                    conn: None,
                }))
            }
            SinkKind::SyslogUdp => {
                let (host, port, opts) = syslog("syslog")?;
                Ok(Transport::Udp(UdpSink {
                    host,
                    port,
                    opts,
                    socket: None,
                }))
            }
            SinkKind::SplunkHec | SinkKind::Webhook => {
                HttpSink::new(sink, secret).map(Transport::Http)
            }
        }
    }

    /// Sends `events` in order; never panics, reports the delivered prefix.
    pub(crate) async fn send(&mut self, events: &[AuditEvent]) -> Delivery {
        match self {
            Transport::Tcp(t) => t.send(events).await,
            Transport::Udp(u) => u.send(events).await,
            Transport::Http(h) => h.send(events).await,
        }
    }

    /// Closes a kept connection politely (TLS `close_notify`, TCP FIN).
    pub(crate) async fn close(self) {
        if let Transport::Tcp(TcpSink {
            conn: Some(mut conn),
            ..
        }) = self
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
        }
    }
}

/// Checks what only the server can: that `ca_pem` holds readable certificates, and that a URL
/// does not reach a metadata address through a numeric host form (`http://2852039166/`).
pub fn check_config(c: &SinkConfig) -> Result<(), String> {
    if let Some(pem) = &c.ca_pem {
        parse_ca_pem(pem)?;
    }
    if let Some(url) = &c.url {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("url is not valid: {e}"))?;
        // The parser writes every IPv4 form (decimal, hex, octal) as dotted quads.
        let host = parsed.host_str().ok_or("url must name a host")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok_and(is_metadata_ip) {
            return Err("url points at a cloud metadata address, which is refused".into());
        }
    }
    Ok(())
}

fn parse_ca_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ca_pem cannot be read: {e}"))?;
    if certs.is_empty() {
        return Err("ca_pem holds no certificate".into());
    }
    Ok(certs)
}

/// This host's name for the syslog HOSTNAME field and HEC's `host`.
pub(crate) fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "toolgate".into())
    })
}

/// The error and its causes, one after another (reqwest's top-level text alone says little).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The system's trusted roots, loaded once.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be loaded");
        }
        found.certs
    })
}

/// A TLS client that trusts `ca_pem` alone when given, otherwise the system's roots.
fn tls_connector(ca_pem: Option<&str>) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in parse_ca_pem(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_pem holds an unusable certificate: {e}"))?;
            }
        }
        None => {
            let (added, _) = roots.add_parsable_certificates(native_roots().iter().cloned());
            if added == 0 {
                return Err("no trusted CA certificates found on this system; set ca_pem".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The addresses `host:port` resolves to, without metadata addresses (refused when that leaves
/// none).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| !is_metadata_ip(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(if found.is_empty() {
            format!("{host} resolves to no address")
        } else {
            format!("{host} resolves to a cloud metadata address, which is refused")
        });
    }
    Ok(allowed)
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// Syslog over TCP, optionally TLS; one connection kept open between batches.
pub(crate) struct TcpSink {
    host: String,
    port: u16,
    opts: SyslogOptions<'static>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<Box<dyn Stream>>,
}

impl TcpSink {
    fn target(&self) -> String {
        let scheme = if self.tls.is_some() { "tcp+tls" } else { "tcp" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let target = self.target();
        let addrs = resolve(&self.host, self.port).await?;
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    let Some((connector, name)) = &self.tls else {
                        return Ok(Box::new(tcp));
                    };
                    return match tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        connector.connect(name.clone(), tcp),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => Ok(Box::new(tls)),
                        Ok(Err(e)) => Err(format!("TLS handshake with {target} failed: {e}")),
                        Err(_) => Err(format!("TLS handshake with {target} timed out")),
                    };
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: connection timed out"),
            }
        }
        Err(format!("cannot connect to {target}: {last}"))
    }

    async fn send(&mut self, events: &[AuditEvent]) -> Delivery {
        let mut buf = String::new();
        for e in events {
            buf.push_str(&octet_frame(&syslog_message(e, &self.opts)));
        }
        // A kept connection the collector has closed reads as end-of-stream (a collector never
        // sends anything else): reconnect instead of writing into a dead socket.
        if let Some(conn) = self.conn.as_mut() {
            let mut probe = [0u8; 512];
            let open = match conn.read(&mut probe).now_or_never() {
                None => true,
                Some(Ok(n)) => n > 0,
                Some(Err(_)) => false,
            };
            if !open {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            match self.connect().await {
                Ok(c) => self.conn = Some(c),
                Err(e) => return Delivery::failed(0, e),
            }
        }
        let target = self.target();
        let Some(conn) = self.conn.as_mut() else {
            return Delivery::failed(0, format!("no connection to {target}"));
        };
        let write = async {
            conn.write_all(buf.as_bytes()).await?;
            conn.flush().await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, write).await {
            Ok(Ok(())) => Delivery {
                delivered: events.len(),
                error: None,
            },
            Ok(Err(e)) => {
                self.conn = None;
                Delivery::failed(0, format!("writing to {target} failed: {e}"))
            }
            Err(_) => {
                self.conn = None;
                Delivery::failed(0, format!("writing to {target} timed out"))
            }
        }
    }
}

/// Syslog over UDP: one datagram per event, at most 8 KiB. UDP has no receipts: an event counts
/// as delivered once the datagram is sent.
pub(crate) struct UdpSink {
    host: String,
    port: u16,
    opts: SyslogOptions<'static>,
    socket: Option<UdpSocket>,
}

impl UdpSink {
    async fn open(&self) -> Result<UdpSocket, String> {
        let addr = resolve(&self.host, self.port)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))?;
        let local: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        socket
            .connect(addr)
            .await
            .map_err(|e| format!("cannot reach udp://{addr}: {e}"))?;
        Ok(socket)
    }

    async fn send(&mut self, events: &[AuditEvent]) -> Delivery {
        if self.socket.is_none() {
            match self.open().await {
                Ok(s) => self.socket = Some(s),
                Err(e) => return Delivery::failed(0, e),
            }
        }
        let Some(socket) = self.socket.as_ref() else {
            return Delivery::failed(0, "no UDP socket".into());
        };
        for (i, e) in events.iter().enumerate() {
            let msg = syslog_datagram(e, &self.opts, MAX_DATAGRAM);
            let sent = tokio::time::timeout(REQUEST_TIMEOUT, socket.send(msg.as_bytes())).await;
            let error = match sent {
                Ok(Ok(_)) => continue,
                Ok(Err(err)) => {
                    format!("sending to udp://{}:{} failed: {err}", self.host, self.port)
                }
                Err(_) => format!("sending to udp://{}:{} timed out", self.host, self.port),
            };
            self.socket = None;
            return Delivery::failed(i, error);
        }
        Delivery {
            delivered: events.len(),
            error: None,
        }
    }
}

/// A DNS resolver that leaves out cloud metadata addresses.
pub(crate) struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Splunk HEC or a JSON Lines webhook.
pub(crate) struct HttpSink {
    kind: SinkKind,
    client: reqwest::Client,
    url: String,
    auth: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

impl HttpSink {
    fn new(sink: &SiemSink, secret: Option<&SinkSecret>) -> Result<Self, String> {
        let c = &sink.config;
        let url = c.url.clone().ok_or("HTTP sink without a url")?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver)
            .user_agent(concat!("toolgate/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &c.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("ca_pem cannot be read: {e}"))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("HTTP client setup failed: {}", error_chain(&e)))?;
        let auth = match (sink.kind, secret) {
            (SinkKind::SplunkHec, Some(token)) => Some((
                reqwest::header::AUTHORIZATION,
                format!("Splunk {}", token.expose()),
            )),
            (SinkKind::SplunkHec, None) => return Err("Splunk HEC sink without a token".into()),
            (_, Some(value)) => {
                let name = c.header_name.as_deref().unwrap_or("Authorization");
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a valid header name"))?;
                Some((name, value.expose().to_string()))
            }
            (_, None) => None,
        };
        let auth = match auth {
            Some((name, value)) => {
                let mut value = reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| "the secret is not a valid header value".to_string())?;
                value.set_sensitive(true);
                Some((name, value))
            }
            None => None,
        };
        Ok(HttpSink {
            kind: sink.kind,
            client,
            url,
            auth,
        })
    }

    /// One HEC event object or JSON line per event, grouped into bodies of about 1 MiB.
    fn bodies(&self, events: &[AuditEvent]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut body = String::new();
        let mut count = 0;
        for e in events {
            let line = match self.kind {
                SinkKind::SplunkHec => hec_event(e, hostname()),
                _ => toolgate_domain::siem::event_json(e),
            };
            if count > 0 && body.len() + line.len() > MAX_BODY {
                out.push((count, std::mem::take(&mut body)));
                count = 0;
            }
            body.push_str(&line);
            body.push('\n');
            count += 1;
        }
        if count > 0 {
            out.push((count, body));
        }
        out
    }

    async fn send(&mut self, events: &[AuditEvent]) -> Delivery {
        let started = Instant::now();
        let content_type = match self.kind {
            SinkKind::SplunkHec => "application/json",
            _ => "application/x-ndjson",
        };
        let mut delivered = 0;
        for (count, body) in self.bodies(events) {
            if delivered > 0 && started.elapsed() > BATCH_BUDGET {
                break;
            }
            let mut req = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
            if let Some((name, value)) = &self.auth {
                req = req.header(name.clone(), value.clone());
            }
            match req.send().await {
                Ok(res) if res.status().is_success() => delivered += count,
                Ok(res) => {
                    let status = res.status();
                    let text = res.text().await.unwrap_or_default();
                    let text: String = text.chars().take(200).collect();
                    return Delivery::failed(
                        delivered,
                        format!("{} answered {status}: {}", self.url, text.trim()),
                    );
                }
                Err(e) => {
                    return Delivery::failed(
                        delivered,
                        format!("POST {} failed: {}", self.url, error_chain(&e)),
                    );
                }
            }
        }
        Delivery {
            delivered,
            error: None,
        }
    }
}
