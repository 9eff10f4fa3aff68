//! Overview: live counts from the store and charts drawn from the audit log.

use super::{ErrorNote, error_text};
use crate::server_fns::{audit_stats, get_overview};
use leptos::prelude::*;
use toolgate_domain::model::AuditStats;

#[component]
pub fn OverviewPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_overview());
    let stats = Resource::new(|| (), |_| audit_stats());
    view! {
        <h1>"Overview"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(o) => view! {
                        <div class="cards">
                            <div class="card"><span class="num" id="count-connectors">{o.connectors}</span>"Connectors"</div>
                            <div class="card"><span class="num" id="count-users">{o.users}</span>"Users"</div>
                            <div class="card"><span class="num" id="count-groups">{o.groups}</span>"Groups"</div>
                            <div class="card"><span class="num" id="count-calls">{o.calls_24h}</span>"Tool calls (24 h)"</div>
                            <div class="card"><span class="num" id="count-denied">{o.denied_24h}</span>"Denied (24 h)"</div>
                        </div>
                    }.into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match stats.await {
                    Ok(s) => charts(s).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Calls and denials per minute (an SVG bar chart), top tools and users, connector health and
/// pending approvals.
fn charts(s: AuditStats) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    let max = s.per_minute.iter().map(|m| m.1).max().unwrap_or(0).max(1) as f64;
    let bar = W / s.per_minute.len().max(1) as f64;
    let bars = s
        .per_minute
        .iter()
        .enumerate()
        .map(|(i, (at, calls, denied))| {
            let h = *calls as f64 / max * H;
            let dh = *denied as f64 / max * H;
            let x = i as f64 * bar;
            let title = format!("{} UTC: {calls} calls, {denied} denied", at.format("%H:%M"));
            view! {
                <g>
                    <title>{title}</title>
                    <rect class="calls" x=x y=H - h width=bar - 1.0 height=h />
                    <rect class="denied" x=x y=H - dh width=bar - 1.0 height=dh />
                </g>
            }
        })
        .collect_view();
    let list = |rows: Vec<(String, i64)>, id: &'static str| {
        if rows.is_empty() {
            view! { <p class="muted" id=id>"No calls in the last 24 hours."</p> }.into_any()
        } else {
            view! {
                <ol id=id>
                    {rows.into_iter().map(|(n, c)| view! { <li>{n} " " <span class="muted">{c}</span></li> }).collect_view()}
                </ol>
            }
            .into_any()
        }
    };
    let total: i64 = s.per_minute.iter().map(|m| m.1).sum();
    let denied: i64 = s.per_minute.iter().map(|m| m.2).sum();
    view! {
        <section class="charts">
            <h2>"Last hour"</h2>
            <p class="muted small" id="hour-totals">{format!("{total} calls, {denied} denied")}</p>
            <svg id="calls-chart" class="chart" viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img" aria-label="Tool calls per minute, last hour">
                {bars}
            </svg>
            <div class="columns">
                <div><h3>"Top tools (24 h)"</h3>{list(s.top_tools, "top-tools")}</div>
                <div><h3>"Top users (24 h)"</h3>{list(s.top_users, "top-users")}</div>
                <div>
                    <h3>"Connector health (1 h)"</h3>
                    {if s.connector_health.is_empty() {
                        view! { <p class="muted">"No calls in the last hour."</p> }.into_any()
                    } else {
                        view! {
                            <ul id="connector-health">
                                {s.connector_health.into_iter().map(|(c, n, errors)| view! {
                                    <li class={if errors > 0 { "unhealthy" } else { "healthy" }}>
                                        {c} " " <span class="muted">{format!("{n} calls, {errors} upstream errors")}</span>
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any()
                    }}
                </div>
                <div><h3>"Pending approvals"</h3><p class="muted">"None: approvals arrive with just-in-time elevation."</p></div>
            </div>
        </section>
    }
}
