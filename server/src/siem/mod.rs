//! SIEM streaming: delivery of audit events to syslog, Splunk HEC and webhook sinks.
//!
//! The audit log is the durable outbox. Each sink keeps a cursor (the id of the last event it
//! received); the delivery worker (`spawn`) sends what lies beyond it and moves it only past
//! events that arrived, so nothing is lost while a SIEM is down or Toolgate restarts. See
//! `docs/siem.md` for formats and semantics. `api_router` serves `/api/v1/siem/sinks`;
//! `dashboard_hooks` lets the dashboard's server functions test sinks.

pub mod api;
pub(crate) mod transport;
mod worker;

pub use transport::check_config;
pub use worker::{SiemWorker, spawn};

use crate::state::AppState;
use std::time::Duration;
use toolgate_domain::audit::AuditSink;
use toolgate_domain::model::{AuditDecision, Outcome};
use toolgate_domain::siem::{SiemSink, SinkKind, SinkTestResult, test_event};
use toolgate_domain::store::{NewAuditEvent, Store};

/// Counter of audit events delivered, by `sink` (name).
pub const SIEM_DELIVERED: &str = "toolgate_siem_delivered_total";
/// Counter of failed delivery attempts, by `sink`.
pub const SIEM_FAILURES: &str = "toolgate_siem_failures_total";
/// Gauge of events not yet delivered (newest event id minus the cursor), by `sink`.
pub const SIEM_LAG: &str = "toolgate_siem_lag_events";

/// `/siem/sinks` and below, to be merged into the `/api/v1` router.
pub fn api_router() -> axum::Router<AppState> {
    api::router()
}

/// Sends one synthetic `siem.test` event (not written to the audit log) to sink `id` now, with
/// a fresh connection, and says whether it arrived. Cursor and counters stay as they are.
/// `Err` only when the sink does not exist or the store fails.
pub async fn send_test(
    store: &Store,
    id: &str,
    who: &str,
) -> toolgate_domain::Result<(SiemSink, SinkTestResult)> {
    let (sink, secret) = store.siem_sink_with_secret(id).await?;
    let event = test_event(store.clock().now(), who);
    let target = sink.target();
    let result = match transport::Transport::new(&sink, secret.as_ref()) {
        Err(e) => SinkTestResult {
            ok: false,
            message: e,
        },
        Ok(mut t) => {
            let sent = tokio::time::timeout(
                Duration::from_secs(20),
                t.send(std::slice::from_ref(&event)),
            )
            .await;
            t.close().await;
            match sent {
                Ok(d) if d.error.is_none() && d.delivered == 1 => SinkTestResult {
                    ok: true,
                    message: match sink.kind {
                        SinkKind::SyslogUdp => {
                            format!("test event sent to {target} (UDP gives no receipt)")
                        }
                        SinkKind::SyslogTcp => format!("test event written to {target}"),
                        SinkKind::SplunkHec | SinkKind::Webhook => {
                            format!("test event accepted by {target}")
                        }
                    },
                },
                Ok(d) => SinkTestResult {
                    ok: false,
                    message: d
                        .error
                        .unwrap_or_else(|| format!("the test event did not reach {target}")),
                },
                Err(_) => SinkTestResult {
                    ok: false,
                    message: format!("sending the test event to {target} timed out"),
                },
            }
        }
    };
    Ok((sink, result))
}

/// Audits a test send (`admin.siem.test`): who, which sink, and the result.
pub(crate) async fn record_test(
    audit: &AuditSink,
    store: &Store,
    who: &str,
    client_id: Option<&str>,
    sink: &SiemSink,
    result: &SinkTestResult,
) {
    let detail = serde_json::json!({
        "sink": {"id": sink.id, "name": sink.name, "kind": sink.kind, "target": sink.target()},
        "ok": result.ok,
        "message": result.message,
    });
    let event = NewAuditEvent {
        subject_kind: Some("admin".into()),
        client_id: client_id.map(str::to_string),
        decision: AuditDecision::Allow,
        outcome: if result.ok {
            Outcome::Ok
        } else {
            Outcome::UpstreamError
        },
        error: (!result.ok).then(|| result.message.clone()),
        detail: Some(detail.to_string()),
        ..NewAuditEvent::new(store.clock().now(), "admin.siem.test", who)
    };
    audit.record_after_the_fact(event).await;
}

/// What the dashboard's SIEM settings need from the server (the transports live here), to be
/// provided as Leptos context next to `DashboardContext`.
pub fn dashboard_hooks(store: Store, audit: AuditSink) -> toolgate_app::pages::siem::SiemHooks {
    use toolgate_app::pages::siem::{SiemHooks, TestFuture};
    let send_test = move |id: String, who: String| -> TestFuture {
        let store = store.clone();
        let audit = audit.clone();
        Box::pin(async move {
            match send_test(&store, &id, &who).await {
                Ok((sink, result)) => {
                    record_test(&audit, &store, &who, None, &sink, &result).await;
                    Ok(result)
                }
                Err(toolgate_domain::Error::NotFound(what)) => Err(format!("{what} not found")),
                Err(e) => {
                    tracing::error!(error = %e, "SIEM test from the dashboard failed");
                    Err("internal error".into())
                }
            }
        })
    };
    SiemHooks {
        send_test: std::sync::Arc::new(send_test),
        check_config: std::sync::Arc::new(check_config),
    }
}
