//! SIEM delivery against test receivers (syslog over TCP and UDP, a Splunk HEC, a webhook).
//!
//! Each receiver runs in the test: syslog receivers parse RFC 6587 octet counting strictly, the
//! HTTP receiver records every request and can answer 503 first. The audit log is the outbox, so
//! every test compares what arrived with the events the store holds after the sink's cursor.

use crate::common::*;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use toolgate::config::Config;
use toolgate_domain::model::TokenKind;
use toolgate_domain::siem::SiemSink;
use toolgate_domain::store::{NewAuditEvent, Store};

/// A private CA (valid 2020-2120) for the TLS test.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBaTCCARCgAwIBAgICEAAwCgYIKoZIzj0EAwIwGzEZMBcGA1UEAwwQVG9vbGdh
dGUgVGVzdCBDQTAgFw0yMDAxMDEwMDAwMDBaGA8yMTIwMDEwMTAwMDAwMFowGzEZ
MBcGA1UEAwwQVG9vbGdhdGUgVGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABD+eHZe3cR6kOvg/+GX4QcjMS3xn61muqUMVsn4ts+wMwyIELnVBNAuOPjUE
pQdZsM0/6Wk03ALSdyH6VpI3Bv+jQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0P
AQH/BAQDAgEGMB0GA1UdDgQWBBQOCvL+g4hSgywu+8vN2j4ekPlp9jAKBggqhkjO
PQQDAgNHADBEAiB+0zzwMfAO972T0IGpPVaXrCnP8/dfURNB9m6CPn9d9wIgO/+I
gZgY/WPymfvWiZCY5q8LSQaA/805h/STIriJCsQ=
-----END CERTIFICATE-----
";

/// The receiver's certificate, issued by `TEST_CA` for `localhost` and `127.0.0.1`.
const LEAF_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBtDCCAVqgAwIBAgICEAEwCgYIKoZIzj0EAwIwGzEZMBcGA1UEAwwQVG9vbGdh
dGUgVGVzdCBDQTAgFw0yMDAxMDEwMDAwMDBaGA8yMTIwMDEwMTAwMDAwMFowFDES
MBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBgJL
D6z9J2OpF5yzQnYkh37QxI4dayAEhn24aipQxyayDexl09QVobZtDLAHG/SH9vj3
iGxVexo74plxmQAW6aOBkjCBjzAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIH
gDATBgNVHSUEDDAKBggrBgEFBQcDATAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8A
AAEwHQYDVR0OBBYEFNCGXgjf/RUmEAVLwjaX7ALwG8PDMB8GA1UdIwQYMBaAFA4K
8v6DiFKDLC77y83aPh6Q+Wn2MAoGCCqGSM49BAMCA0gAMEUCIQD7qudd4x5QqJ/T
fIqP7Ei35392HFzBlRDQZZsSy06+AwIgV4vW1+ylB90v/p3thp+WPcOdmI4OMkg8
8cQP+tfLhBA=
-----END CERTIFICATE-----
";

const LEAF_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqg30GTyqYEpR3I+4
ggGaSj/Bj4FphJTjF7u/36N9TTqhRANCAAQGAksPrP0nY6kXnLNCdiSHftDEjh1r
IASGfbhqKlDHJrIN7GXT1BWhtm0MsAcb9If2+PeIbFV7GjvimXGZABbp
-----END PRIVATE KEY-----
";

// ---------------------------------------------------------------------------------------------
// Helpers

/// Polls `check` every 100 ms until it yields `Ok`; after `secs` the test fails with the last
/// `Err` (what was still missing).
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {secs} s waiting for {what}: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A port nothing listens on right now (bound, then released).
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Writes `n` audit events through the audit writer, as the gateway would.
async fn record_events(
    store: &Store,
    audit: &toolgate_domain::audit::AuditSink,
    tag: &str,
    n: usize,
) {
    for i in 0..n {
        let event = NewAuditEvent {
            detail: Some(format!("{tag} #{i}")),
            ..NewAuditEvent::new(store.clock().now(), "test.siem", "siem-tester")
        };
        audit.record(event).await.unwrap();
    }
}

/// Ids of the events after `after`, oldest first: what a sink at that cursor must receive.
async fn ids_after(store: &Store, after: i64) -> Vec<i64> {
    store
        .audit_events_after(after, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect()
}

/// The event id in an RFC 5424 message's structured data.
fn sd_id(message: &str) -> i64 {
    let start = message
        .find("[toolgate@32473 id=\"")
        .unwrap_or_else(|| panic!("no structured data in {message}"))
        + "[toolgate@32473 id=\"".len();
    let len = message[start..].find('"').unwrap();
    message[start..start + len].parse().unwrap()
}

async fn sink_state(store: &Store, id: &str) -> SiemSink {
    store.get_siem_sink(id).await.unwrap()
}

async fn create_sink(app: &TestApp, body: Value) -> String {
    let (s, b) = app.post("/api/v1/siem/sinks", body.clone()).await;
    assert_eq!(s, 201, "{body} -> {b}");
    b["id"].as_str().unwrap().to_string()
}

/// A syslog collector over TCP (optionally TLS) that parses octet-counted frames strictly.
struct SyslogReceiver {
    messages: Arc<Mutex<Vec<String>>>,
    /// Framing errors; must stay empty.
    errors: Arc<Mutex<Vec<String>>>,
    /// TLS handshakes that failed (a client that does not trust the certificate).
    handshake_failures: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SyslogReceiver {
    async fn start(port: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let handshake_failures = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (m, e, s, h) = (
            messages.clone(),
            errors.clone(),
            stop.clone(),
            handshake_failures.clone(),
        );
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let (m, e, s, h, tls) = (m.clone(), e.clone(), s.clone(), h.clone(), tls.clone());
                        conns.spawn(async move {
                            match tls {
                                Some(acceptor) => match acceptor.accept(tcp).await {
                                    Ok(stream) => read_frames(stream, m, e, s).await,
                                    Err(_) => {
                                        h.fetch_add(1, Ordering::SeqCst);
                                    }
                                },
                                None => read_frames(tcp, m, e, s).await,
                            }
                        });
                    }
                }
            }
            // Every connection ends (and its socket closes) before `stop` returns.
            drop(listener);
            while conns.join_next().await.is_some() {}
        });
        SyslogReceiver {
            messages,
            errors,
            handshake_failures,
            stop,
            task,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    fn ids(&self) -> Vec<i64> {
        self.messages().iter().map(|m| sd_id(m)).collect()
    }

    fn assert_well_framed(&self) {
        let errors = self.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "framing errors: {errors:?}");
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Reads `MSG-LEN SP SYSLOG-MSG` frames until the peer closes or the receiver stops.
async fn read_frames<S: AsyncRead + Unpin>(
    mut stream: S,
    messages: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            r = stream.read(&mut chunk) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(space) = buf.iter().position(|b| *b == b' ') {
            let len: usize = match std::str::from_utf8(&buf[..space])
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
            {
                Some(len) => len,
                None => {
                    errors.lock().unwrap().push(format!(
                        "bad frame length {:?}",
                        String::from_utf8_lossy(&buf[..space.min(40)])
                    ));
                    return;
                }
            };
            if buf.len() < space + 1 + len {
                break;
            }
            let msg = String::from_utf8(buf[space + 1..space + 1 + len].to_vec());
            buf.drain(..space + 1 + len);
            match msg {
                Ok(m) => messages.lock().unwrap().push(m),
                Err(_) => errors.lock().unwrap().push("message is not UTF-8".into()),
            }
        }
    }
}

/// One request the HTTP receiver saw, and what it answered.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    status: u16,
    headers: HeaderMap,
    body: String,
}

#[derive(Clone)]
struct HttpState {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_first: Arc<AtomicUsize>,
    /// How long each request takes (a slow collector).
    delay: Duration,
}

/// An HTTP collector (Splunk HEC, webhook) answering 503 to the first `fail_first` requests.
struct HttpReceiver {
    base: String,
    state: HttpState,
    stop: CancellationToken,
}

impl HttpReceiver {
    async fn start(fail_first: usize) -> Self {
        Self::start_slow(fail_first, Duration::ZERO).await
    }

    async fn start_slow(fail_first: usize, delay: Duration) -> Self {
        let state = HttpState {
            seen: Arc::new(Mutex::new(Vec::new())),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            delay,
        };
        let app = axum::Router::new()
            .fallback(collect)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled_owned().await })
                .await;
        });
        HttpReceiver {
            base: format!("http://{addr}"),
            state,
            stop,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Event ids in the bodies the receiver accepted on `path`, in arrival order.
    fn accepted_ids(&self, path: &str, id_of: impl Fn(&Value) -> i64) -> Vec<i64> {
        self.seen()
            .iter()
            .filter(|s| s.path == path && s.status == 200)
            .flat_map(|s| {
                s.body
                    .lines()
                    .map(|l| id_of(&serde_json::from_str::<Value>(l).unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn collect(State(state): State<HttpState>, req: Request<Body>) -> (StatusCode, String) {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap();
    tokio::time::sleep(state.delay).await;
    let fail = state
        .fail_first
        .try_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    state.seen.lock().unwrap().push(Seen {
        path,
        status: status.as_u16(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let text = if fail {
        r#"{"text":"Server is busy","code":9}"#
    } else {
        r#"{"text":"Success","code":0}"#
    };
    (status, text.to_string())
}

/// Splits a CEF record into its 7 header fields and its extension (both unescaped).
fn parse_cef(record: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = record.chars();
    while header.len() < 7 {
        match chars.next() {
            Some('\\') => cur.extend(chars.next()),
            Some('|') => header.push(std::mem::take(&mut cur)),
            Some(c) => cur.push(c),
            None => panic!("CEF header incomplete: {record}"),
        }
    }
    let ext: Vec<char> = chars.collect();
    // Keys: a word right before an unescaped '='; values run to the space before the next key.
    let mut keys: Vec<(usize, usize)> = Vec::new();
    for (i, c) in ext.iter().enumerate() {
        let escaped = ext[..i].iter().rev().take_while(|c| **c == '\\').count() % 2 == 1;
        if *c == '=' && !escaped {
            let start = ext[..i]
                .iter()
                .rposition(|c| *c == ' ')
                .map(|p| p + 1)
                .unwrap_or(0);
            keys.push((start, i));
        }
    }
    let mut out = BTreeMap::new();
    for (k, (start, eq)) in keys.iter().enumerate() {
        let end = keys.get(k + 1).map(|(s, _)| s - 1).unwrap_or(ext.len());
        let key: String = ext[*start..*eq].iter().collect();
        let raw: String = ext[eq + 1..end].iter().collect();
        let mut value = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some(other) => value.push(other),
                    None => value.push('\\'),
                }
            } else {
                value.push(c);
            }
        }
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric()),
            "bad CEF key {key:?} in {record}"
        );
        out.insert(key, value);
    }
    (header, out)
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(LEAF_CERT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(LEAF_KEY.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The whole app on a given folder (SQLite and master key inside), for restarts.
async fn start_in(dir: &std::path::Path) -> (toolgate::RunningServer, String) {
    start_with(dir, format!("sqlite://{}/toolgate.db", dir.display())).await
}

/// The whole app on `database_url`, its master key in `dir` (replicas share both).
async fn start_with(
    dir: &std::path::Path,
    database_url: String,
) -> (toolgate::RunningServer, String) {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        database_url,
        data_dir: dir.to_path_buf(),
        upstream_timeout_secs: 5,
        ..Config::default()
    };
    let server = toolgate::start(config).await.expect("app starts");
    let (_, token) = server
        .state
        .store
        .create_token(TokenKind::Admin, "siem-tests", None)
        .await
        .unwrap();
    (server, token)
}

async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn syslog_tcp_outbox_holds_events_while_the_collector_is_down() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let audit = &app.server.state.audit;
    let port = free_port().await;
    let sink = create_sink(
        &app,
        json!({"name": "syslog-outage", "kind": "syslog_tcp",
               "config": {"host": "127.0.0.1", "port": port}}),
    )
    .await;
    record_events(store, audit, "while down", 5).await;

    // Down: attempts fail and are recorded, the cursor stays.
    let s = eventually(10, "failed attempts on a dead collector", || async {
        let s = sink_state(store, &sink).await;
        if s.failures >= 2 {
            Ok(s)
        } else {
            Err(format!("failures {}", s.failures))
        }
    })
    .await;
    assert_eq!(s.cursor, 0, "nothing delivered, nothing skipped");
    assert_eq!(s.delivered, 0);
    assert!(s.lag >= 6, "lag {}", s.lag);
    let err = s.last_error.unwrap_or_default();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(s.last_attempt_at.is_some() && s.last_success_at.is_none());

    // Up: everything arrives, in order, once, framed by octet counting.
    let rx = SyslogReceiver::start(port, None).await;
    let rx_ids = || rx.ids();
    eventually(15, "every event at the collector", || async {
        let expected = ids_after(store, 0).await;
        let got = rx_ids();
        if got == expected {
            Ok(())
        } else {
            Err(format!("got {got:?}, expected {expected:?}"))
        }
    })
    .await;
    // Later events stream on the same connection.
    record_events(store, audit, "while up", 3).await;
    eventually(10, "the later events", || async {
        let expected = ids_after(store, 0).await;
        let got = rx_ids();
        if got == expected {
            Ok(())
        } else {
            Err(format!("got {got:?}, expected {expected:?}"))
        }
    })
    .await;
    rx.assert_well_framed();
    let messages = rx.messages();
    for m in &messages {
        assert!(m.starts_with("<86>1 ") || m.starts_with("<85>1 "), "{m}");
        assert!(m.contains(" toolgate - "), "{m}");
        let json_start = m.find("] {").unwrap() + 2;
        let v: Value = serde_json::from_str(&m[json_start..]).unwrap();
        assert_eq!(v["id"].as_i64(), Some(sd_id(m)));
    }
    assert!(
        messages
            .iter()
            .any(|m| m.contains(" test.siem [") && m.contains("while down #4"))
    );
    assert!(messages.iter().any(|m| m.contains(" admin.siem.create [")));

    let s = eventually(10, "cursor at the head", || async {
        let s = sink_state(store, &sink).await;
        if s.lag == 0 {
            Ok(s)
        } else {
            Err(format!("lag {}", s.lag))
        }
    })
    .await;
    assert_eq!(s.delivered as usize, messages.len());
    assert_eq!(s.last_error, None, "cleared by the success");
    assert!(s.last_success_at.is_some());

    let text = eventually(10, "SIEM metrics", || async {
        let text = metrics_text(&app.base).await;
        let ok = text.contains("toolgate_siem_delivered_total{sink=\"syslog-outage\"}")
            && text.contains("toolgate_siem_failures_total{sink=\"syslog-outage\"}")
            && text.contains("toolgate_siem_lag_events{sink=\"syslog-outage\"} 0");
        if ok {
            Ok(text)
        } else {
            Err("metrics not there yet".into())
        }
    })
    .await;
    assert!(text.contains(&format!(
        "toolgate_siem_delivered_total{{sink=\"syslog-outage\"}} {}",
        messages.len()
    )));
    rx.stop().await;
}

#[tokio::test]
async fn siem_outbox_survives_sink_downtime_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let rx = SyslogReceiver::start(port, None).await;
    let (server, token) = start_in(dir.path()).await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/v1/siem/sinks", server.base_url))
        .bearer_auth(&token)
        .json(&json!({"name": "restart", "kind": "syslog_tcp",
                      "config": {"host": "127.0.0.1", "port": port}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let sink = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = server.state.store.clone();
    record_events(&store, &server.state.audit, "before", 3).await;
    let rx_ids = || rx.ids();
    eventually(15, "the first events", || async {
        let expected = ids_after(&store, 0).await;
        if rx_ids() == expected {
            Ok(())
        } else {
            Err(format!("got {:?}, expected {expected:?}", rx_ids()))
        }
    })
    .await;
    let cursor = eventually(10, "the cursor to settle", || async {
        let s = sink_state(&store, &sink).await;
        if s.lag == 0 {
            Ok(s.cursor)
        } else {
            Err(format!("lag {}", s.lag))
        }
    })
    .await;
    rx.assert_well_framed();
    let first_round = rx.messages().len();
    rx.stop().await;

    // The collector is down: new events wait in the log, attempts fail, then Toolgate stops.
    record_events(&store, &server.state.audit, "during outage", 4).await;
    eventually(10, "a failed attempt", || async {
        let s = sink_state(&store, &sink).await;
        if s.failures >= 1 {
            Ok(())
        } else {
            Err("no failure yet".into())
        }
    })
    .await;
    assert_eq!(
        sink_state(&store, &sink).await.cursor,
        cursor,
        "the cursor did not move"
    );
    server.shutdown().await;

    // Toolgate starts again on the same database (the collector still down, so nothing can
    // move the cursor before it is read), then the collector comes back.
    let (server, _) = start_in(dir.path()).await;
    let store = server.state.store.clone();
    let s = sink_state(&store, &sink).await;
    assert_eq!(s.cursor, cursor, "the cursor survived the restart");
    assert!(s.lag >= 4);
    let rx = SyslogReceiver::start(port, None).await;
    record_events(&store, &server.state.audit, "after restart", 2).await;
    let rx_ids = || rx.ids();
    // A lease left by the stopped process expires after 30 s at worst.
    eventually(45, "delivery to resume from the cursor", || async {
        let expected = ids_after(&store, cursor).await;
        let got = rx_ids();
        if got == expected {
            Ok(())
        } else {
            Err(format!("got {got:?}, expected {expected:?}"))
        }
    })
    .await;
    rx.assert_well_framed();
    let got = rx.messages();
    assert!(got.iter().filter(|m| m.contains("during outage #")).count() == 4);
    assert!(got.iter().filter(|m| m.contains("after restart #")).count() == 2);
    assert!(
        !got.iter().any(|m| m.contains("before #")),
        "nothing sent twice"
    );
    let s = eventually(10, "the cursor at the head", || async {
        let s = sink_state(&store, &sink).await;
        if s.lag == 0 {
            Ok(s)
        } else {
            Err(format!("lag {}", s.lag))
        }
    })
    .await;
    assert_eq!(s.delivered as usize, first_round + got.len());
    server.shutdown().await;
    rx.stop().await;
}

#[tokio::test]
async fn splunk_hec_and_webhook_retry_until_accepted() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let rx = HttpReceiver::start(2).await;
    let hec = create_sink(
        &app,
        json!({"name": "splunk", "kind": "splunk_hec", "secret": "hec-token-123",
               "config": {"url": format!("{}/services/collector/event", rx.base)}}),
    )
    .await;
    record_events(store, &app.server.state.audit, "hec", 5).await;
    let hec_ids = |v: &Value| v["event"]["id"].as_i64().unwrap();
    eventually(20, "every event accepted by the HEC", || async {
        let expected = ids_after(store, 0).await;
        let got = rx.accepted_ids("/services/collector/event", hec_ids);
        if got == expected {
            Ok(())
        } else {
            Err(format!("got {got:?}, expected {expected:?}"))
        }
    })
    .await;
    let seen: Vec<Seen> = rx
        .seen()
        .into_iter()
        .filter(|s| s.path == "/services/collector/event")
        .collect();
    assert!(
        seen.iter().filter(|s| s.status == 503).count() == 2,
        "{seen:?}"
    );
    for s in &seen {
        assert_eq!(s.headers["authorization"], "Splunk hec-token-123");
        assert_eq!(s.headers["content-type"], "application/json");
        for line in s.body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["sourcetype"], "toolgate:audit");
            assert_eq!(v["source"], "toolgate");
            assert!(v["time"].as_f64().unwrap() > 1.0e9);
            assert!(v["event"]["kind"].is_string());
        }
    }
    let s = eventually(10, "the HEC sink at the head", || async {
        let s = sink_state(store, &hec).await;
        if s.lag == 0 {
            Ok(s)
        } else {
            Err(format!("lag {}", s.lag))
        }
    })
    .await;
    assert!(s.failures >= 2, "{s:?}");
    assert_eq!(s.last_error, None);

    // A webhook: JSON Lines, the secret in a header of our choice.
    let hook = create_sink(
        &app,
        json!({"name": "hook", "kind": "webhook", "secret": "wh-secret",
               "config": {"url": format!("{}/ingest", rx.base), "header_name": "X-Api-Key"}}),
    )
    .await;
    eventually(15, "every event at the webhook", || async {
        let expected = ids_after(store, 0).await;
        let got = rx.accepted_ids("/ingest", |v| v["id"].as_i64().unwrap());
        if got == expected {
            Ok(())
        } else {
            Err(format!("got {got:?}, expected {expected:?}"))
        }
    })
    .await;
    for s in rx.seen().iter().filter(|s| s.path == "/ingest") {
        assert_eq!(s.headers["x-api-key"], "wh-secret");
        assert_eq!(s.headers["content-type"], "application/x-ndjson");
        assert!(!s.headers.contains_key("authorization"));
        assert!(s.body.ends_with('\n'));
        for line in s.body.lines() {
            let e: toolgate_domain::model::AuditEvent = serde_json::from_str(line).unwrap();
            assert!(e.id > 0);
        }
    }
    assert_eq!(sink_state(store, &hook).await.failures, 0);
}

#[tokio::test]
async fn syslog_udp_carries_parsable_cef() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let datagrams = Arc::new(Mutex::new(Vec::<String>::new()));
    let d = datagrams.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = socket.recv_from(&mut buf).await {
            d.lock()
                .unwrap()
                .push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
    });
    record_events(store, &app.server.state.audit, "older", 2).await;
    let head = store.audit_head().await.unwrap();
    let sink = create_sink(
        &app,
        json!({"name": "udp-cef", "kind": "syslog_udp", "start_at_head": true,
               "config": {"host": "127.0.0.1", "port": port, "format": "cef", "facility": 16}}),
    )
    .await;
    let start = sink_state(store, &sink).await.cursor;
    assert_eq!(start, head, "starts at the head: older events are not sent");
    let odd = NewAuditEvent {
        connector: Some("github".into()),
        tool: Some("create_issue".into()),
        ip: Some("10.1.2.3".into()),
        decision: toolgate_domain::model::AuditDecision::Deny,
        outcome: toolgate_domain::model::Outcome::Denied,
        detail: Some("x=1|y\\z\nline2".into()),
        ..NewAuditEvent::new(store.clock().now(), "tool_call", "odd=user|name")
    };
    app.server.state.audit.record(odd).await.unwrap();
    let odd_id = store.audit_head().await.unwrap();
    record_events(store, &app.server.state.audit, "udp", 3).await;
    let got = eventually(10, "every datagram", || async {
        let expected = ids_after(store, start).await;
        let got = datagrams.lock().unwrap().clone();
        if got.len() == expected.len() {
            Ok(got)
        } else {
            Err(format!("{} of {}", got.len(), expected.len()))
        }
    })
    .await;
    let expected = store.audit_events_after(start, 100).await.unwrap();
    for (msg, event) in got.iter().zip(&expected) {
        let cef_at = msg
            .find("CEF:0|")
            .unwrap_or_else(|| panic!("no CEF in {msg}"));
        let header = &msg[..cef_at];
        assert!(
            header.starts_with('<') && header.contains(" toolgate - "),
            "{header}"
        );
        assert!(header.ends_with(&format!(" {} - ", event.kind)), "{header}");
        let (fields, ext) = parse_cef(&msg[cef_at..]);
        assert_eq!(fields[..3], ["CEF:0", "Toolgate", "Toolgate"]);
        assert_eq!(fields[4], event.kind);
        assert_eq!(ext["externalId"], event.id.to_string());
        assert_eq!(ext["rt"], event.at.timestamp_millis().to_string());
        assert_eq!(ext["suser"], event.principal);
        assert_eq!(ext["act"], event.decision.as_str());
        assert_eq!(ext["outcome"], event.outcome.as_str());
    }
    // The denied call: escaping round-trips, severity and facility (local0.notice = 133).
    assert!(!got.iter().any(|m| m.contains("older #")));
    let denied = got
        .iter()
        .find(|m| m.contains(&format!(" externalId={odd_id} ")))
        .expect("the denied call");
    assert!(denied.starts_with("<133>1 "), "{denied}");
    let (fields, ext) = parse_cef(&denied[denied.find("CEF:0|").unwrap()..]);
    assert_eq!(fields[5], "tool_call github__create_issue denied");
    assert_eq!(fields[6], "7");
    assert_eq!(ext["suser"], "odd=user|name");
    assert_eq!(ext["msg"], "x=1|y\\z\nline2");
    assert_eq!(ext["src"], "10.1.2.3");
    assert_eq!(
        (ext["cs1Label"].as_str(), ext["cs1"].as_str()),
        ("connector", "github")
    );
    assert_eq!(
        (ext["cs2Label"].as_str(), ext["cs2"].as_str()),
        ("tool", "create_issue")
    );
    assert!(!denied.contains('\n'), "one line per datagram");
    task.abort();
}

#[tokio::test]
async fn syslog_over_tls_with_a_private_ca() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let port = free_port().await;
    let rx = SyslogReceiver::start(port, Some(tls_acceptor())).await;
    // Without the private CA the collector's certificate is not trusted.
    let untrusted = create_sink(
        &app,
        json!({"name": "tls-untrusted", "kind": "syslog_tcp", "enabled": false,
               "config": {"host": "127.0.0.1", "port": port, "tls": true}}),
    )
    .await;
    let (s, r) = app
        .post(&format!("/api/v1/siem/sinks/{untrusted}/test"), json!({}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ok"], false, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("TLS handshake") || msg.contains("no trusted CA"),
        "{msg}"
    );
    if msg.contains("TLS handshake") {
        assert!(rx.handshake_failures.load(Ordering::SeqCst) >= 1);
    }

    let sink = create_sink(
        &app,
        json!({"name": "tls", "kind": "syslog_tcp",
               "config": {"host": "127.0.0.1", "port": port, "tls": true, "ca_pem": TEST_CA}}),
    )
    .await;
    assert_eq!(
        sink_state(store, &sink).await.config.ca_pem.as_deref(),
        Some(TEST_CA.trim())
    );
    record_events(store, &app.server.state.audit, "tls", 3).await;
    let rx_ids = || rx.ids();
    eventually(15, "every event over TLS", || async {
        let expected = ids_after(store, 0).await;
        let got = rx_ids();
        if got == expected {
            Ok(())
        } else {
            Err(format!("got {got:?}, expected {expected:?}"))
        }
    })
    .await;
    rx.assert_well_framed();
    rx.stop().await;
}

#[tokio::test]
async fn siem_api_validates_hides_secrets_and_audits_changes() {
    let app = spawn_app().await;
    let secret = "super-secret-hec-token";
    let (s, created) = app
        .post(
            "/api/v1/siem/sinks",
            json!({"name": "hec", "kind": "splunk_hec", "secret": secret, "enabled": false,
                   "config": {"url": "https://splunk.corp.example:8088/services/collector/event"}}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["secret_set"], true);
    assert_eq!(created["enabled"], false);
    assert_eq!(created["kind"], "splunk_hec");
    assert!(!created.to_string().contains(secret));
    let id = created["id"].as_str().unwrap().to_string();
    let (s, list) = app.get("/api/v1/siem/sinks").await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(secret));
    let (s, one) = app.get(&format!("/api/v1/siem/sinks/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(one["name"], "hec");
    assert!(!one.to_string().contains(secret));

    let syslog = |config: Value| json!({"name": "s", "kind": "syslog_tcp", "config": config});
    let cases: Vec<(Value, u16, &str)> = vec![
        (created.clone(), 400, "unknown field"),
        (
            json!({"name": "hec", "kind": "splunk_hec", "secret": "t", "config": {"url": "https://x/"}}),
            409,
            "already exists",
        ),
        (syslog(json!({})), 422, "host is required"),
        (syslog(json!({"host": "bad host"})), 422, "not a valid host"),
        (syslog(json!({"host": "169.254.169.254"})), 422, "metadata"),
        (
            syslog(json!({"host": "x", "url": "https://x/"})),
            422,
            "url does not apply",
        ),
        (
            syslog(json!({"host": "x", "facility": 30})),
            422,
            "facility",
        ),
        (
            syslog(
                json!({"host": "x", "tls": true, "ca_pem": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"}),
            ),
            422,
            "ca_pem",
        ),
        (
            syslog(json!({"host": "x", "hots": "y"})),
            400,
            "unknown field",
        ),
        (
            json!({"name": "s", "kind": "syslog_udp", "secret": "x", "config": {"host": "x"}}),
            422,
            "no secret",
        ),
        (
            json!({"name": "s", "kind": "splunk_hec", "config": {"url": "https://x/"}}),
            422,
            "token",
        ),
        (
            json!({"name": "s", "kind": "webhook", "config": {"url": "ftp://x/"}}),
            422,
            "http",
        ),
        (
            json!({"name": "s", "kind": "webhook", "config": {"url": "http://169.254.169.254/latest/meta-data"}}),
            422,
            "metadata",
        ),
        (
            json!({"name": "s", "kind": "webhook", "config": {"url": "http://2852039166/"}}),
            422,
            "metadata",
        ),
        (
            json!({"name": "s", "kind": "webhook", "config": {"url": "http://[fd00:ec2::254]/"}}),
            422,
            "metadata",
        ),
        (
            json!({"name": "s", "kind": "webhook", "config": {"url": "https://x/", "header_name": "Content-Length"}}),
            422,
            "Content-Length",
        ),
        (
            json!({"name": "  ", "kind": "webhook", "config": {"url": "https://x/"}}),
            422,
            "name",
        ),
        (
            json!({"name": "s", "kind": "kafka", "config": {}}),
            400,
            "kind",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, b) = app.post("/api/v1/siem/sinks", body.clone()).await;
        assert_eq!(s, status, "{body} -> {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    assert_eq!(
        app.get("/api/v1/siem/sinks")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing else written"
    );

    // 404s.
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/siem/sinks/nope"),
        (reqwest::Method::DELETE, "/api/v1/siem/sinks/nope"),
        (reqwest::Method::POST, "/api/v1/siem/sinks/nope/test"),
    ] {
        let (s, b) = app.api(method, path, Some(json!({}))).await;
        assert_eq!(s, 404, "{path}: {b}");
    }
    assert_eq!(
        app.put("/api/v1/siem/sinks/nope", json!({"enabled": true}))
            .await
            .0,
        404
    );

    // Updates: the secret stays unless replaced; HEC cannot lose its token.
    let (s, b) = app
        .put(
            &format!("/api/v1/siem/sinks/{id}"),
            json!({"name": "splunk-prod", "enabled": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (
            b["name"].as_str(),
            b["enabled"].as_bool(),
            b["secret_set"].as_bool()
        ),
        (Some("splunk-prod"), Some(true), Some(true))
    );
    let (s, b) = app
        .put(&format!("/api/v1/siem/sinks/{id}"), json!({"secret": ""}))
        .await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = app
        .put(
            &format!("/api/v1/siem/sinks/{id}"),
            json!({"secret": "rotated-token", "enabled": false}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(!b.to_string().contains("rotated-token"));
    let (_, secret_now) = app
        .server
        .state
        .store
        .siem_sink_with_secret(&id)
        .await
        .unwrap();
    assert_eq!(secret_now.unwrap().expose(), "rotated-token");
    let (s, b) = app
        .put(
            &format!("/api/v1/siem/sinks/{id}"),
            json!({"kind": "webhook"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");

    // Documented in the OpenAPI description.
    let (s, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    for (path, method) in [
        ("/api/v1/siem/sinks", "get"),
        ("/api/v1/siem/sinks", "post"),
        ("/api/v1/siem/sinks/{id}", "get"),
        ("/api/v1/siem/sinks/{id}", "put"),
        ("/api/v1/siem/sinks/{id}", "delete"),
        ("/api/v1/siem/sinks/{id}/test", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} in the OpenAPI document"
        );
    }
    for schema in [
        "SiemSink",
        "NewSink",
        "SinkUpdate",
        "SinkConfig",
        "SinkTestResult",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }

    // No token, no access.
    let res = app
        .http
        .get(app.url("/api/v1/siem/sinks"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let (s, _) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/siem/sinks/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(app.get(&format!("/api/v1/siem/sinks/{id}")).await.0, 404);

    // Every change is in the audit log, without the secrets.
    let events = app
        .server
        .state
        .store
        .audit_events_after(0, 1000)
        .await
        .unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| k.starts_with("admin.siem."))
        .collect();
    assert_eq!(
        kinds,
        [
            "admin.siem.create",
            "admin.siem.update",
            "admin.siem.update",
            "admin.siem.delete"
        ]
    );
    for e in events.iter().filter(|e| e.kind.starts_with("admin.siem.")) {
        let detail = e.detail.as_deref().unwrap_or_default();
        assert!(
            !detail.contains(secret) && !detail.contains("rotated-token"),
            "{detail}"
        );
        assert_eq!(e.principal, "token:tests");
    }
    let update = events
        .iter()
        .find(|e| e.kind == "admin.siem.update")
        .unwrap();
    let detail: Value = serde_json::from_str(update.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["before"]["name"], "hec");
    assert_eq!(detail["after"]["name"], "splunk-prod");
}

#[tokio::test]
async fn test_event_reports_dead_and_live_sinks() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let dead_port = free_port().await;
    // Disabled, so the worker leaves it alone and its counters stay at zero.
    let dead = create_sink(
        &app,
        json!({"name": "dead", "kind": "syslog_tcp", "enabled": false, "start_at_head": true,
               "config": {"host": "127.0.0.1", "port": dead_port}}),
    )
    .await;
    let before = sink_state(store, &dead).await;
    let (s, r) = app
        .post(&format!("/api/v1/siem/sinks/{dead}/test"), json!({}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ok"], false);
    assert!(
        r["message"].as_str().unwrap().contains("cannot connect"),
        "{r}"
    );
    let after = sink_state(store, &dead).await;
    assert_eq!(
        (after.cursor, after.failures, after.delivered),
        (before.cursor, 0, 0)
    );

    let port = free_port().await;
    let rx = SyslogReceiver::start(port, None).await;
    let live = create_sink(
        &app,
        json!({"name": "live", "kind": "syslog_tcp", "enabled": false, "start_at_head": true,
               "config": {"host": "127.0.0.1", "port": port}}),
    )
    .await;
    let (s, r) = app
        .post(&format!("/api/v1/siem/sinks/{live}/test"), json!({}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    let rx_messages = || rx.messages();
    let msg = eventually(10, "the test event", || async {
        rx_messages()
            .into_iter()
            .next()
            .ok_or_else(|| "nothing yet".to_string())
    })
    .await;
    assert!(
        msg.contains(" siem.test [toolgate@32473 id=\"0\" principal=\"token:tests\""),
        "{msg}"
    );
    rx.assert_well_framed();

    let hec_rx = HttpReceiver::start(0).await;
    let hec = create_sink(
        &app,
        json!({"name": "hec-live", "kind": "splunk_hec", "secret": "t0k", "enabled": false,
               "config": {"url": format!("{}/services/collector/event", hec_rx.base)}}),
    )
    .await;
    let (_, r) = app
        .post(&format!("/api/v1/siem/sinks/{hec}/test"), json!({}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let seen = hec_rx.seen();
    assert_eq!(seen.len(), 1);
    let v: Value = serde_json::from_str(seen[0].body.trim()).unwrap();
    assert_eq!(v["event"]["kind"], "siem.test");
    assert_eq!(seen[0].headers["authorization"], "Splunk t0k");
    let failing = HttpReceiver::start(1).await;
    let (s, b) = app
        .put(
            &format!("/api/v1/siem/sinks/{hec}"),
            json!({"config": {"url": format!("{}/services/collector/event", failing.base)}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, r) = app
        .post(&format!("/api/v1/siem/sinks/{hec}/test"), json!({}))
        .await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["message"].as_str().unwrap().contains("503"), "{r}");

    // The test event itself is not in the audit log; each test send is audited.
    let events = store.audit_events_after(0, 1000).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "siem.test"));
    let tests: Vec<bool> = events
        .iter()
        .filter(|e| e.kind == "admin.siem.test")
        .map(|e| e.outcome == toolgate_domain::model::Outcome::Ok)
        .collect();
    assert_eq!(tests, [false, true, true, false]);
    rx.stop().await;
}

#[tokio::test]
async fn replicas_on_postgres_deliver_each_event_once() {
    if skip_postgres() {
        return;
    }
    let url = toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, token) = start_with(dir.path(), url.clone()).await;
    let (b, _) = start_with(dir.path(), url).await;
    // A slow collector and several sinks: a replica's round reads every sink's state first and
    // then delivers sink after sink, so the other replica moves cursors in between. The lease
    // and the cursor read with it keep each event to one delivery.
    let rx = HttpReceiver::start_slow(0, Duration::from_millis(60)).await;
    let mut sinks = Vec::new();
    for i in 0..3 {
        let res = reqwest::Client::new()
            .post(format!("{}/api/v1/siem/sinks", a.base_url))
            .bearer_auth(&token)
            .json(
                &json!({"name": format!("pg-replicas-{i}"), "kind": "webhook",
                          "config": {"url": format!("{}/sink{i}", rx.base)}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        sinks.push(id);
    }
    for round in 0..12 {
        record_events(&a.state.store, &a.state.audit, &format!("a{round}"), 2).await;
        record_events(&b.state.store, &b.state.audit, &format!("b{round}"), 2).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let store = a.state.store.clone();
    for (i, sink) in sinks.iter().enumerate() {
        let path = format!("/sink{i}");
        // An HTTP collector answers each batch before the next is sent: the order is strict.
        let got = eventually(30, "every event from both replicas", || async {
            let expected = ids_after(&store, 0).await;
            let got = rx.accepted_ids(&path, |v| v["id"].as_i64().unwrap());
            if got.len() >= expected.len() {
                Ok((got, expected))
            } else {
                Err(format!("{} of {}", got.len(), expected.len()))
            }
        })
        .await;
        assert_eq!(got.0, got.1, "each event exactly once, in order");
        let s = eventually(10, "the cursor at the head", || async {
            let s = sink_state(&store, sink).await;
            if s.lag == 0 {
                Ok(s)
            } else {
                Err(format!("lag {}", s.lag))
            }
        })
        .await;
        assert_eq!(s.delivered as usize, got.1.len());
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Signs a local administrator in to the dashboard; returns the session cookie.
async fn dashboard_cookie(app: &TestApp) -> String {
    app.server
        .state
        .store
        .create_admin("root", "correct horse battery")
        .await
        .unwrap();
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/fn/login"))
        .header("origin", app.base.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=root&password=correct+horse+battery")
        .send()
        .await
        .unwrap();
    res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Calls a dashboard server function with a form body; returns status and JSON.
async fn server_fn(app: &TestApp, cookie: &str, name: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let res = app
        .http
        .post(app.url(&format!("/fn/{name}")))
        .header("origin", app.base.clone())
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn dashboard_adds_tests_switches_and_deletes_sinks() {
    let app = spawn_app().await;
    let store = &app.server.state.store;
    let cookie = dashboard_cookie(&app).await;
    let port = free_port().await;
    let rx = SyslogReceiver::start(port, None).await;
    let port_text = port.to_string();
    let form = [
        ("name", "from-dashboard"),
        ("kind", "syslog_tcp"),
        ("host", "127.0.0.1"),
        ("port", port_text.as_str()),
        ("format", "rfc5424"),
        // Fields of other kinds, as the form always sends them, are ignored.
        ("url", "https://ignored.example/"),
        ("header_name", ""),
        ("secret", "autofilled-password"),
        ("ca_pem", ""),
        ("only_new", "on"),
    ];
    let (s, created) = server_fn(&app, &cookie, "siem_add", &form).await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(created["config"]["host"], "127.0.0.1");
    assert_eq!(created["config"]["url"], Value::Null);
    assert_eq!(created["secret_set"], false);
    let id = created["id"].as_str().unwrap().to_string();
    let (s, b) = server_fn(&app, &cookie, "siem_add", &form).await;
    assert!(s >= 400, "a second sink with the same name is refused: {b}");
    assert!(b.to_string().contains("already exists"), "{b}");

    let (s, list) = server_fn(&app, &cookie, "siem_sinks", &[]).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["name"], "from-dashboard");

    // The Settings page shows the table and the form.
    let page = app
        .http
        .get(app.url("/settings"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"siem-add\""),
        "SIEM settings are on the Settings page"
    );
    assert!(page.contains("id=\"siem-table\""));
    assert!(page.contains("siem-test"));

    let (s, r) = server_fn(&app, &cookie, "siem_test", &[("id", &id)]).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    let rx_messages = || rx.messages();
    let msg = eventually(10, "the test event", || async {
        rx_messages()
            .into_iter()
            .find(|m| m.contains(" siem.test "))
            .ok_or_else(|| "nothing yet".to_string())
    })
    .await;
    assert!(msg.contains("principal=\"root\""), "{msg}");

    let (s, b) = server_fn(
        &app,
        &cookie,
        "siem_set_enabled",
        &[("id", &id), ("enabled", "false")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(!sink_state(store, &id).await.enabled);
    let (s, b) = server_fn(&app, &cookie, "siem_delete", &[("id", &id)]).await;
    assert_eq!(s, 200, "{b}");
    assert!(store.get_siem_sink(&id).await.is_err());

    let events = store.audit_events_after(0, 1000).await.unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.kind.starts_with("admin.siem."))
        .map(|e| (e.kind.as_str(), e.principal.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("admin.siem.create", "root"),
            ("admin.siem.test", "root"),
            ("admin.siem.update", "root"),
            ("admin.siem.delete", "root"),
        ]
    );
    rx.stop().await;
}
