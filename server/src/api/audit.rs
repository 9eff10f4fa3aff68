//! `/api/v1/audit`: search the audit log (newest first, keyset pages), export any search as
//! streaming CSV or JSON Lines, check its integrity.

use crate::http::auth::AdminCaller;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use toolgate_domain::model::{AuditDecision, AuditEvent, AuditFilter, AuditStatus};
use toolgate_domain::store::{AuditCursor, Store};

/// Search parameters; all optional, all given ones must match.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Page size, 1-1000 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The principal's name.
    pub subject: Option<String>,
    /// Current members of this group (display name).
    pub group: Option<String>,
    pub connector: Option<String>,
    pub tool: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<AuditDecision>,
    /// Event kind (`tool_call`, `sign_in`, `tool_result`, ...).
    pub kind: Option<String>,
    /// Only calls made under an elevation.
    pub elevated_only: Option<bool>,
    /// Words that must all occur in arguments, errors, details or names.
    pub q: Option<String>,
    /// Export format: `csv` or `jsonl` (export only).
    pub format: Option<String>,
}

impl AuditParams {
    pub(crate) fn filter(&self) -> AuditFilter {
        AuditFilter {
            from: self.from,
            to: self.to,
            subject: self.subject.clone(),
            group: self.group.clone(),
            connector: self.connector.clone(),
            tool: self.tool.clone(),
            decision: self.decision,
            kind: self.kind.clone(),
            elevated_only: self.elevated_only.unwrap_or(false),
            text: self.q.clone(),
        }
        .normalized()
    }
}

/// One page of audit events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn parse(
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<AuditParams, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(params)
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditParams), responses((status = 200, body = AuditPage)))]
pub(super) async fn list_audit(
    _admin: AdminCaller,
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<ApiJson<AuditPage>> {
    let params = parse(params)?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let cursor = params
        .cursor
        .as_deref()
        .map(AuditCursor::decode)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (items, next) = state
        .store
        .search_audit(&params.filter(), cursor, limit)
        .await?;
    Ok(ApiJson(AuditPage {
        items,
        next_cursor: next.map(|c| c.encode()),
    }))
}

#[utoipa::path(get, path = "/api/v1/audit/{id}", params(("id" = i64, Path)), responses((status = 200, body = AuditEvent)))]
pub(super) async fn get_event(
    _admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<AuditEvent>> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("event id must be a number"))?;
    Ok(ApiJson(state.store.audit_event(id).await?))
}

/// Streams every event a search matches, newest first like the list, as CSV or JSON Lines.
#[utoipa::path(get, path = "/api/v1/audit/export", params(AuditParams),
    responses((status = 200, description = "text/csv or application/jsonl, streamed")))]
pub(super) async fn export(
    _admin: AdminCaller,
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let params = parse(params)?;
    let format = ExportFormat::parse(params.format.as_deref())?;
    Ok(export_response(
        state.store.clone(),
        params.filter(),
        format,
    ))
}

/// The last integrity check and how the log is run (retention, fail mode, check interval).
#[utoipa::path(get, path = "/api/v1/audit/integrity", responses((status = 200, body = AuditStatus)))]
pub(super) async fn integrity(
    _admin: AdminCaller,
    State(state): State<AppState>,
) -> ApiResult<ApiJson<AuditStatus>> {
    Ok(ApiJson(AuditStatus {
        integrity: state.store.audit_integrity().await?,
        policy: state.config.audit_policy(),
    }))
}

/// The two export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    Csv,
    JsonLines,
}

impl ExportFormat {
    pub(crate) fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s.unwrap_or("jsonl") {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" | "ndjson" => Ok(ExportFormat::JsonLines),
            _ => Err(ApiError::bad_request("format must be csv or jsonl")),
        }
    }
}

/// Rows fetched per database round trip while exporting.
const EXPORT_PAGE: i64 = 500;

const CSV_HEADER: [&str; 28] = [
    "id",
    "at",
    "kind",
    "principal",
    "principal_id",
    "subject_kind",
    "client_name",
    "client_id",
    "session_id",
    "ip",
    "user_agent",
    "connector",
    "tool",
    "decision",
    "rule",
    "outcome",
    "latency_ms",
    "error",
    "request_id",
    "call_id",
    "args_redacted",
    "args_hash",
    "elevation_id",
    "approval_id",
    "bytes_in",
    "bytes_out",
    "dlp_findings",
    "detail",
];

fn csv_record(e: &AuditEvent) -> [String; 28] {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let n = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    [
        e.id.to_string(),
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        e.kind.clone(),
        e.principal.clone(),
        o(&e.principal_id),
        o(&e.subject_kind),
        o(&e.client_name),
        o(&e.client_id),
        o(&e.session_id),
        o(&e.ip),
        o(&e.user_agent),
        o(&e.connector),
        o(&e.tool),
        e.decision.as_str().into(),
        o(&e.rule),
        e.outcome.as_str().into(),
        format!("{:.3}", e.latency_ms),
        o(&e.error),
        o(&e.request_id),
        o(&e.call_id),
        o(&e.args_redacted),
        o(&e.args_hash),
        o(&e.elevation_id),
        o(&e.approval_id),
        n(e.bytes_in),
        n(e.bytes_out),
        if e.dlp_findings.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&e.dlp_findings).unwrap_or_default()
        },
        o(&e.detail),
    ]
}

/// Spreadsheet programs run cells that start with these as formulas (CSV injection).
fn defuse(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err() {
        format!("'{cell}")
    } else {
        cell
    }
}

fn encode_page(format: ExportFormat, events: &[AuditEvent], header: bool) -> Bytes {
    match format {
        ExportFormat::JsonLines => {
            let mut out = Vec::with_capacity(events.len() * 512);
            for e in events {
                if serde_json::to_writer(&mut out, e).is_ok() {
                    out.push(b'\n');
                }
            }
            Bytes::from(out)
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::with_capacity(events.len() * 512));
            if header {
                let _ = w.write_record(CSV_HEADER);
            }
            for e in events {
                let _ = w.write_record(csv_record(e).map(defuse));
            }
            Bytes::from(w.into_inner().unwrap_or_default())
        }
    }
}

/// A streamed export of every event `filter` matches, newest first: one page in memory at a
/// time, whatever the size of the result.
pub(crate) fn export_response(store: Store, filter: AuditFilter, format: ExportFormat) -> Response {
    struct S {
        store: Store,
        filter: AuditFilter,
        cursor: Option<AuditCursor>,
        first: bool,
        done: bool,
    }
    let start = S {
        store,
        filter,
        cursor: None,
        first: true,
        done: false,
    };
    let stream = futures::stream::unfold(start, move |mut s| async move {
        if s.done {
            return None;
        }
        match s.store.search_audit(&s.filter, s.cursor, EXPORT_PAGE).await {
            Ok((events, next)) => {
                let chunk = encode_page(format, &events, s.first);
                s.first = false;
                s.cursor = next;
                s.done = next.is_none();
                Some((Ok::<Bytes, std::io::Error>(chunk), s))
            }
            Err(e) => {
                // The status line is gone already: end the body with an error so the client
                // sees a broken transfer, never a silently short export.
                tracing::error!(error = %e, "audit export failed part way");
                s.done = true;
                Some((Err(std::io::Error::other(e.to_string())), s))
            }
        }
    });
    let (content_type, name) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "toolgate-audit.csv"),
        ExportFormat::JsonLines => ("application/jsonl", "toolgate-audit.jsonl"),
    };
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        assert_eq!(defuse("=HYPERLINK(1)".into()), "'=HYPERLINK(1)");
        assert_eq!(defuse("-12.5".into()), "-12.5");
        assert_eq!(defuse("alice".into()), "alice");
    }

    #[test]
    fn csv_pages_carry_the_header_once() {
        let e = AuditEvent {
            id: 7,
            kind: "tool_call".into(),
            principal: "al,ice".into(),
            ..Default::default()
        };
        let first = encode_page(ExportFormat::Csv, std::slice::from_ref(&e), true);
        let second = encode_page(ExportFormat::Csv, std::slice::from_ref(&e), false);
        let first = String::from_utf8(first.to_vec()).unwrap();
        assert!(first.starts_with("id,at,kind,principal,"));
        assert!(first.contains("\"al,ice\""));
        assert!(
            !String::from_utf8(second.to_vec())
                .unwrap()
                .contains("principal_id")
        );
    }
}
