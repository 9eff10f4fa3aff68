//! Audit: search the log (time, subject, group, connector, tool, decision, kind, elevated, free
//! text), page through it newest first, expand any row to the full event, export the search, and
//! see the hash chain's integrity status.

use super::{ErrorNote, error_text};
use crate::server_fns::{audit_integrity, search_audit};
use chrono::{DateTime, NaiveDateTime, Utc};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use leptos_router::params::ParamsMap;
use toolgate_domain::model::{AuditDecision, AuditEvent, AuditFilter};

/// The query parameters the search form sends (and the export links pass on).
const FIELDS: [&str; 10] = [
    "from",
    "to",
    "subject",
    "group",
    "connector",
    "tool",
    "decision",
    "kind",
    "elevated",
    "q",
];

/// `datetime-local` values (`2026-11-26T10:00`) are read as UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .map(|n| n.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.with_timezone(&Utc))
        })
}

fn filter_from(q: &ParamsMap) -> AuditFilter {
    let text = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
    AuditFilter {
        from: text("from").and_then(|v| parse_time(&v)),
        to: text("to").and_then(|v| parse_time(&v)),
        subject: text("subject"),
        group: text("group"),
        connector: text("connector"),
        tool: text("tool"),
        decision: text("decision").and_then(|d| AuditDecision::parse(&d)),
        kind: text("kind"),
        elevated_only: q.get("elevated").is_some_and(|v| v == "on" || v == "true"),
        text: text("q"),
    }
}

/// Percent-encodes a query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The search's query string (without the page cursor), for export and paging links. The API
/// names free text `q` and the elevated switch `elevated_only`.
fn search_query(q: &ParamsMap, api_names: bool) -> String {
    FIELDS
        .iter()
        .filter_map(|k| {
            let v = q.get(k).filter(|v| !v.is_empty())?;
            let (name, value) = match (*k, api_names) {
                ("from" | "to", true) => (*k, parse_time(&v)?.to_rfc3339()),
                ("elevated", true) => ("elevated_only", "true".to_string()),
                _ => (*k, v),
            };
            Some(format!("{name}={}", enc(&value)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let data = Resource::new(
        move || query.with(|q| (filter_from(q), q.get("cursor"))),
        |(filter, cursor)| search_audit(filter, cursor),
    );
    let integrity = Resource::new(|| (), |_| audit_integrity());
    let value = move |k: &'static str| query.with(|q| q.get(k).unwrap_or_default());
    let export = move |format: &'static str| {
        let qs = query.with(|q| search_query(q, true));
        if qs.is_empty() {
            format!("/audit/export?format={format}")
        } else {
            format!("/audit/export?format={format}&{qs}")
        }
    };
    view! {
        <h1>"Audit"</h1>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                integrity.await.ok().map(|status| {
                    let i = status.integrity;
                    let p = status.policy;
                    let (class, text) = match (i.checked_at, i.ok) {
                        (None, _) => ("integrity pending", "Integrity not checked yet: the first check runs within a minute of start.".to_string()),
                        (Some(at), true) => ("integrity ok", format!(
                            "Hash chain verified through event {} at {} UTC; signed checkpoint at event {}.",
                            i.verified_to.map(|v| v.to_string()).unwrap_or("-".into()),
                            at.format("%Y-%m-%d %H:%M:%S"),
                            i.checkpoint.map(|v| v.to_string()).unwrap_or("-".into()),
                        )),
                        (Some(at), false) => ("integrity broken", format!(
                            "TAMPERING DETECTED at {} UTC: event {}: {}",
                            at.format("%Y-%m-%d %H:%M:%S"),
                            i.break_id.map(|v| v.to_string()).unwrap_or("-".into()),
                            i.reason.unwrap_or_default(),
                        )),
                    };
                    let policy = format!(
                        "Retention: {}. {} Integrity checked every {} s.{}",
                        if p.retention_days == 0 { "kept forever".to_string() } else { format!("{} days", p.retention_days) },
                        if p.fail_open {
                            "FAIL-OPEN: calls are forwarded even when their event cannot be written."
                        } else {
                            "Fail closed: no call is forwarded unless its event is written."
                        },
                        p.checkpoint_secs,
                        match p.sqlite_synchronous.as_deref() {
                            Some("normal") => " SQLite commits survive a crash, not a power loss (synchronous=normal).",
                            _ => "",
                        },
                    );
                    view! {
                        <p id="audit-integrity" class=class role="status">{text}</p>
                        <p id="audit-policy" class=if p.fail_open { "muted small warn" } else { "muted small" }>{policy}</p>
                    }
                })
            })}
        </Suspense>
        <form method="get" action="/audit" id="audit-search" class="filters">
            <label>"From (UTC)" <input type="datetime-local" name="from" prop:value=move || value("from") /></label>
            <label>"To (UTC)" <input type="datetime-local" name="to" prop:value=move || value("to") /></label>
            <label>"Subject" <input type="text" name="subject" placeholder="user name" prop:value=move || value("subject") /></label>
            <label>"Group" <input type="text" name="group" prop:value=move || value("group") /></label>
            <label>"Connector" <input type="text" name="connector" prop:value=move || value("connector") /></label>
            <label>"Tool" <input type="text" name="tool" prop:value=move || value("tool") /></label>
            <label>"Decision"
                <select name="decision" prop:value=move || value("decision")>
                    <option value="">"any"</option>
                    <option value="allow">"allow"</option>
                    <option value="deny">"deny"</option>
                </select>
            </label>
            <label>"Event" <input type="text" name="kind" placeholder="tool_call, sign_in, scim.*…" prop:value=move || value("kind") /></label>
            <label class="check"><input type="checkbox" name="elevated" prop:checked=move || !value("elevated").is_empty() /> "Elevated only"</label>
            <label class="wide">"Text" <input type="search" name="q" placeholder="words in arguments, errors, details" prop:value=move || value("q") /></label>
            <button type="submit" id="audit-search-go">"Search"</button>
            <a href="/audit" class="muted">"Clear"</a>
        </form>
        <p class="exports">
            "Export this search: "
            <a id="export-csv" rel="external" href=move || export("csv")>"CSV"</a> " · "
            <a id="export-jsonl" rel="external" href=move || export("jsonl")>"JSON Lines"</a>
            <span class="muted small">" (streamed; every matching event, not just this page). Check the chain offline with "<code>"toolgate audit verify"</code>"."</span>
        </p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(page) if page.items.is_empty() => view! { <p id="no-audit">"No events match."</p> }.into_any(),
                    Ok(page) => {
                        let next = page.next_cursor.map(|c| {
                            let qs = query.with(|q| search_query(q, false));
                            let sep = if qs.is_empty() { "" } else { "&" };
                            format!("/audit?{qs}{sep}cursor={}", enc(&c))
                        });
                        view! {
                            <table id="audit-table">
                                <thead><tr><th>"Time (UTC)"</th><th>"Event"</th><th>"Principal"</th><th>"Connector"</th><th>"Tool"</th><th>"Decision"</th><th>"Outcome"</th><th>"Latency"</th><th>"Rule or detail"</th><th>"Event"</th></tr></thead>
                                <tbody>
                                    {page.items.into_iter().map(row).collect_view()}
                                </tbody>
                            </table>
                            {next.map(|href| view! { <p><a id="audit-next" href=href>"Older events →"</a></p> })}
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn row(e: AuditEvent) -> impl IntoView {
    let full = serde_json::to_string_pretty(&e).unwrap_or_default();
    let dlp = (!e.dlp_findings.is_empty()).then(|| {
        format!(
            "DLP: {}",
            e.dlp_findings
                .iter()
                .map(|(k, n)| format!("{k}×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    view! {
        <tr class=format!("decision-{}", e.decision.as_str()) data-id=e.id>
            <td>{e.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
            <td class="kind">{e.kind.clone()}</td>
            <td class="principal">{e.principal}</td>
            <td>{e.connector.unwrap_or_default()}</td>
            <td class="tool">{e.tool.unwrap_or_default()}</td>
            <td class="decision">{e.decision.as_str()}</td>
            <td class="outcome">{e.outcome.as_str()}</td>
            <td>{format!("{:.1} ms", e.latency_ms)}</td>
            <td class="muted small">{e.rule.or(e.detail).unwrap_or_default()} {dlp.map(|d| view! { <span class="dlp">" " {d}</span> })}</td>
            <td><details class="event"><summary>"#" {e.id}</summary><pre>{full}</pre></details></td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("a b&c=é"), "a%20b%26c%3D%C3%A9");
    }

    #[test]
    fn local_times_are_utc() {
        let t = parse_time("2026-11-26T10:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-26T10:30:00+00:00");
        assert!(parse_time("yesterday").is_none());
    }
}
