//! One connector: its settings (secret names only), live health, "Refresh tools", and the tool
//! catalog with risk levels (suggested or set by an admin) and review states.

use super::fns::{
    ConnectorDetail, RefreshTools, ReviewTool, SetConnectorEnabled, SetToolApproval, SetToolRisk,
    SyncReport, get_connector_detail,
};
use super::{
    bump_reviews_after, endpoint, health_badge, review_badge, review_buttons, risk_badge,
    transport_label, truncate,
};
use crate::pages::{ErrorNote, action_error, error_text};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use toolgate_domain::model::{CatalogTool, Group};
use toolgate_domain::policy::Review;
use toolgate_domain::risk::Risk;

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

#[component]
pub fn ConnectorPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let refresh = ServerAction::<RefreshTools>::new();
    let set_risk = ServerAction::<SetToolRisk>::new();
    let set_approval = ServerAction::<SetToolApproval>::new();
    let review = ServerAction::<ReviewTool>::new();
    let set_enabled = ServerAction::<SetConnectorEnabled>::new();
    bump_reviews_after(review);
    bump_reviews_after(refresh);
    let data = Resource::new(
        move || {
            (
                name(),
                refresh.version().get(),
                set_risk.version().get(),
                set_approval.version().get(),
                review.version().get(),
                set_enabled.version().get(),
            )
        },
        |(n, ..)| get_connector_detail(n),
    );
    view! {
        <p class="crumbs"><A href="/connectors">"← Connectors"</A></p>
        <h1>{name}</h1>
        {action_error(set_risk)}
        {action_error(set_approval)}
        {action_error(review)}
        {action_error(set_enabled)}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => detail_view(d, refresh, set_risk, set_approval, review, set_enabled).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn detail_view(
    d: ConnectorDetail,
    refresh: ServerAction<RefreshTools>,
    set_risk: ServerAction<SetToolRisk>,
    set_approval: ServerAction<SetToolApproval>,
    review: ServerAction<ReviewTool>,
    set_enabled: ServerAction<SetConnectorEnabled>,
) -> impl IntoView {
    let s = d.status;
    let c = s.connector;
    let stdio = c.command.is_some() && c.url.is_empty();
    let (id, toggle_id) = (c.id.clone(), c.id.clone());
    let enabled = c.enabled;
    let listed = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            format!("{} (values hidden)", v.join(", "))
        }
    };
    let present: Vec<CatalogTool> = d.tools.iter().filter(|t| t.present).cloned().collect();
    let gone: Vec<CatalogTool> = d.tools.into_iter().filter(|t| !t.present).collect();
    view! {
        <div class="columns">
            <section class="group" id="connector-settings">
                <h2>"Settings"</h2>
                <dl class="summary">
                    <dt>"Transport"</dt><dd class="transport">{transport_label(c.transport)}</dd>
                    <dt>{if stdio { "Command" } else { "URL" }}</dt><dd><code class="endpoint">{endpoint(&c)}</code></dd>
                    {(!stdio).then(|| view! { <dt>"Headers"</dt><dd class="header-names">{listed(&c.header_names)}</dd> })}
                    {stdio.then(|| view! { <dt>"Environment"</dt><dd class="env-names">{listed(&c.env_names)}</dd> })}
                    <dt>"OAuth"</dt>
                    <dd class="oauth">{match &c.oauth {
                        Some(o) => format!(
                            "client {} at {}{} (secret hidden)",
                            o.client_id,
                            o.token_url,
                            o.scope.as_ref().map(|s| format!(", scope {s}")).unwrap_or_default()
                        ),
                        None => "none".into(),
                    }}</dd>
                    <dt>"Timeout"</dt><dd>{format!("{} ms", c.timeout_ms)}</dd>
                    <dt>"Max concurrent requests"</dt><dd>{c.max_concurrency}</dd>
                    <dt>"Added"</dt><dd>{when(Some(c.created_at))}</dd>
                </dl>
                <ActionForm action=set_enabled attr:class="inline">
                    <input type="hidden" name="id" value=toggle_id />
                    <input type="hidden" name="enabled" value=if enabled { "false" } else { "true" } />
                    <button type="submit" class="secondary connector-toggle">{if enabled { "Disable" } else { "Enable" }}</button>
                </ActionForm>
            </section>
            <section class="group" id="connector-health">
                <h2>"Health"</h2>
                <p class="status">{health_badge(&s.health.status)}</p>
                <dl class="summary">
                    <dt>"Last error"</dt><dd class="last-error">{s.health.last_error.clone().unwrap_or_else(|| "none".into())}</dd>
                    <dt>"Checked"</dt><dd class="checked-at">{when(s.health.checked_at)}</dd>
                    <dt>"Failures in a row"</dt><dd class="failures">{s.health.failures}</dd>
                </dl>
                <p class="muted small">"As this gateway replica sees it: the state of its last request to the upstream."</p>
            </section>
        </div>
        <section class="group" id="catalog">
            <h2>"Tools " <span class="badge" id="tool-count">{s.tools}</span>
                {(s.tools_to_review > 0).then(|| view! { " " <span class="badge warn-badge" id="to-review-count">{format!("{} to review", s.tools_to_review)}</span> })}
            </h2>
            <ActionForm action=refresh attr:class="inline" attr:id="refresh-form">
                <input type="hidden" name="id" value=id />
                <button type="submit" id="refresh-tools" disabled=move || refresh.pending().get()>"Refresh tools"</button>
                {move || refresh.pending().get().then(|| view! { <span class="muted">"Listing tools…"</span> })}
            </ActionForm>
            {move || refresh.value().get().map(|r| match r {
                Ok(sync) => view! { <p class="notice" id="refresh-result">{sync_text(&sync)}</p> }.into_any(),
                Err(e) => view! { <p class="error" id="refresh-result">"Refresh failed: " {error_text(&e)}</p> }.into_any(),
            })}
            {if present.is_empty() {
                view! { <p class="muted" id="no-tools">"No tools known yet: refresh once the upstream is reachable."</p> }.into_any()
            } else {
                catalog_table(present, &d.groups, set_risk, set_approval, review).into_any()
            }}
            {(!gone.is_empty()).then(|| view! {
                <h3>"No longer listed by the upstream"</h3>
                <p class="muted small" id="gone-tools">{gone.iter().map(|t| t.name.clone()).collect::<Vec<_>>().join(", ")}</p>
            })}
        </section>
    }
}

/// "Added a, b; changed c; removed d", or that nothing changed.
fn sync_text(s: &SyncReport) -> String {
    let mut parts = Vec::new();
    for (what, list) in [
        ("added", &s.added),
        ("changed", &s.changed),
        ("removed", &s.removed),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what}: {}", list.join(", ")));
        }
    }
    if parts.is_empty() {
        "No changes: the upstream lists the same tools as before.".into()
    } else {
        let mut text = parts.join("; ");
        if !s.initial && !s.added.is_empty() {
            text.push_str(". New tools wait for review");
        }
        text.push('.');
        text[..1].to_uppercase() + &text[1..]
    }
}

fn catalog_table(
    tools: Vec<CatalogTool>,
    groups: &[Group],
    set_risk: ServerAction<SetToolRisk>,
    set_approval: ServerAction<SetToolApproval>,
    review: ServerAction<ReviewTool>,
) -> impl IntoView + use<> {
    view! {
        <table id="catalog-table">
            <thead><tr><th>"Tool"</th><th>"Description"</th><th>"Risk"</th><th>"Approve each call"</th><th>"Review"</th></tr></thead>
            <tbody>
                {tools.into_iter().map(|t| {
                    let (cid, name) = (t.connector_id.clone(), t.name.clone());
                    let (approval_cid, approval_name) = (t.connector_id.clone(), t.name.clone());
                    let approval = t.approval_group.clone().unwrap_or_default();
                    let current = if t.risk_overridden { t.risk.as_str() } else { "" };
                    let suggested = if t.risk_overridden {
                        "Suggested".to_string()
                    } else {
                        format!("Suggested ({})", t.risk.label())
                    };
                    view! {
                        <tr data-tool=t.name.clone() data-review=t.review.as_str() data-risk=t.risk.as_str() data-approval=approval.clone()>
                            <td class="tool"><code>{t.name.clone()}</code></td>
                            <td class="description muted small" title=t.description.clone()>{truncate(&t.description, 120)}</td>
                            <td class="risk">
                                {risk_badge(t.risk)}
                                <div class="risk-reason muted small">{t.risk_reason.clone()}</div>
                                <select class="risk-select" aria-label=format!("Risk of {}", t.name)
                                    on:change=move |ev| {
                                        set_risk.dispatch(SetToolRisk {
                                            connector_id: cid.clone(),
                                            tool: name.clone(),
                                            risk: event_target_value(&ev),
                                        });
                                    }>
                                    <option value="" selected=current.is_empty()>{suggested}</option>
                                    {Risk::ALL.into_iter().map(|r| view! {
                                        <option value=r.as_str() selected=current == r.as_str()>{r.label()}</option>
                                    }).collect_view()}
                                </select>
                            </td>
                            <td class="approval">
                                <select class="approval-select" aria-label=format!("Approver group for each call of {}", t.name)
                                    on:change=move |ev| {
                                        set_approval.dispatch(SetToolApproval {
                                            connector_id: approval_cid.clone(),
                                            tool: approval_name.clone(),
                                            group: event_target_value(&ev),
                                        });
                                    }>
                                    <option value="" selected=approval.is_empty()>"No (policy decides)"</option>
                                    {groups.iter().map(|g| view! {
                                        <option value=g.id.clone() selected=approval == g.id>{format!("Yes: {}", g.display_name)}</option>
                                    }).collect_view()}
                                </select>
                            </td>
                            <td class="review">
                                {review_badge(t.review)}
                                {(t.review == Review::Changed).then(|| view! { <div class="muted small changed-note">"definition changed since approval"</div> })}
                                <div>{review_buttons(&t, review)}</div>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_texts() {
        assert!(sync_text(&SyncReport::default()).starts_with("No changes"));
        let s = SyncReport {
            initial: false,
            added: vec!["a".into(), "b".into()],
            changed: vec![],
            removed: vec!["c".into()],
        };
        assert_eq!(
            sync_text(&s),
            "Added: a, b; removed: c. New tools wait for review."
        );
    }
}
