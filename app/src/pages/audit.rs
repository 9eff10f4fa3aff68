//! Audit: the latest tool calls, newest first.

use super::{ErrorNote, error_text};
use crate::server_fns::list_audit;
use leptos::prelude::*;

#[component]
pub fn AuditPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| list_audit(100));
    view! {
        <h1>"Audit"</h1>
        <p class="muted">"The latest 100 events: tool calls through the gateway, sign-ins, provisioning (SCIM) and admin changes. The log is hash-chained; check it with " <code>"toolgate audit verify"</code> "."</p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(items) if items.is_empty() => view! { <p id="no-audit">"No calls yet."</p> }.into_any(),
                    Ok(items) => view! {
                        <table id="audit-table">
                            <thead><tr><th>"Time (UTC)"</th><th>"Event"</th><th>"Principal"</th><th>"Connector"</th><th>"Tool"</th><th>"Decision"</th><th>"Outcome"</th><th>"Latency"</th><th>"Rule or detail"</th></tr></thead>
                            <tbody>
                                {items.into_iter().map(|e| view! {
                                    <tr class=format!("decision-{}", e.decision.as_str())>
                                        <td>{e.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                                        <td class="kind">{e.kind.clone()}</td>
                                        <td>{e.principal}</td>
                                        <td>{e.connector.unwrap_or_default()}</td>
                                        <td class="tool">{e.tool.unwrap_or_default()}</td>
                                        <td class="decision">{e.decision.as_str()}</td>
                                        <td>{e.outcome.as_str()}</td>
                                        <td>{format!("{:.1} ms", e.latency_ms)}</td>
                                        <td class="muted small">{e.rule.or(e.detail).unwrap_or_default()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
    }
}
