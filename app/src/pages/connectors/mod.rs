//! Connectors: the list with live health and catalog counts, the review queue of new and changed
//! tools, the add wizard (`wizard`), and one connector's page with its tool catalog (`detail`).
//! Secret values (headers, environment, OAuth client secret) are write-only: only their names
//! are ever shown.

pub mod detail;
pub mod fns;
pub mod wizard;

use super::{ErrorNote, action_error, error_text};
use fns::{DeleteConnector, ReviewTool, SetConnectorEnabled, connector_statuses, review_queue};
use leptos::prelude::*;
use leptos_router::components::A;
use toolgate_domain::model::{CatalogTool, ConnectorStatus};
use toolgate_domain::policy::Review;
use toolgate_domain::risk::Risk;

/// Bumped whenever a review changes the queue, so the navigation's count follows.
#[derive(Clone, Copy, Debug)]
pub struct ReviewTick(pub RwSignal<u64>);

/// Bumps the navigation's review count after each completed run of `action`.
pub fn bump_reviews_after<I, O>(action: ServerAction<I>)
where
    I: leptos::server_fn::ServerFn<Output = O, Error = ServerFnError>
        + Clone
        + Send
        + Sync
        + 'static,
    O: Clone + Send + Sync + 'static,
{
    let tick = use_context::<ReviewTick>();
    Effect::new(move |_| {
        if action.version().get() > 0
            && let Some(t) = tick
        {
            t.0.update(|v| *v += 1);
        }
    });
}

/// At most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", s[..i].trim_end()),
        None => s.to_string(),
    }
}

/// A risk level as a coloured label.
pub fn risk_badge(r: Risk) -> impl IntoView {
    view! { <span class=format!("risk risk-{}", r.as_str())>{r.label()}</span> }
}

/// A review state as a label.
pub fn review_badge(r: Review) -> impl IntoView {
    view! { <span class=format!("review review-{}", r.as_str())>{r.as_str()}</span> }
}

/// Health as a badge: healthy, unhealthy, unknown (not tried yet) or disabled.
pub fn health_badge(status: &str) -> impl IntoView + use<> {
    let s = match status {
        "healthy" | "unhealthy" | "disabled" => status.to_string(),
        _ => "unknown".to_string(),
    };
    view! { <span class=format!("health health-{s}")>{s.clone()}</span> }
}

/// Where a connector points: the URL, or the command line of a stdio connector.
pub fn endpoint(c: &toolgate_domain::model::Connector) -> String {
    match &c.command {
        Some(cmd) if c.url.is_empty() => std::iter::once(cmd.as_str())
            .chain(c.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => c.url.clone(),
    }
}

/// Human name of a transport.
pub fn transport_label(t: toolgate_domain::model::Transport) -> &'static str {
    use toolgate_domain::model::Transport;
    match t {
        Transport::StreamableHttp => "Streamable HTTP",
        Transport::Sse => "SSE",
        Transport::Stdio => "stdio",
    }
}

#[component]
pub fn ConnectorsPage() -> impl IntoView {
    let set_enabled = ServerAction::<SetConnectorEnabled>::new();
    let delete = ServerAction::<DeleteConnector>::new();
    let review = ServerAction::<ReviewTool>::new();
    let add = ServerAction::<fns::AddConnector>::new();
    bump_reviews_after(review);
    bump_reviews_after(add);
    bump_reviews_after(delete);
    let list = Resource::new(
        move || {
            (
                set_enabled.version().get(),
                delete.version().get(),
                review.version().get(),
                add.version().get(),
            )
        },
        |_| connector_statuses(),
    );
    let queue = Resource::new(
        move || {
            (
                review.version().get(),
                add.version().get(),
                delete.version().get(),
            )
        },
        |_| review_queue(),
    );
    // Only admins get the wizard; this never refetches, so the wizard keeps its state while the
    // list reloads.
    let me = Resource::new(|| (), |_| crate::server_fns::whoami());
    view! {
        <h1>"Connectors"</h1>
        <p class="muted">"Upstream MCP servers. Agents see their tools as " <code>"{connector}__{tool}"</code> ". Tools found when a connector is added are approved; tools that appear later, or whose definition changes, wait for review below."</p>
        {action_error(set_enabled)}
        {action_error(delete)}
        {action_error(review)}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(items) if items.is_empty() => view! { <p id="no-connectors">"No connectors yet."</p> }.into_any(),
                    Ok(items) => connectors_table(items, set_enabled, delete).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                // A refusal is shown once, by the list above.
                queue.await.ok().map(|tools| review_section(tools, review))
            })}
        </Transition>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let admin = me.await.ok().flatten().is_some_and(|u| u.role.may(crate::auth::Page::Connectors));
                admin.then(|| view! { <wizard::AddConnectorWizard add /> })
            })}
        </Suspense>
    }
}

fn connectors_table(
    items: Vec<ConnectorStatus>,
    set_enabled: ServerAction<SetConnectorEnabled>,
    delete: ServerAction<DeleteConnector>,
) -> impl IntoView {
    view! {
        <table id="connectors-table">
            <thead><tr><th>"Name"</th><th>"Transport"</th><th>"URL or command"</th><th>"Credentials"</th><th>"Status"</th><th>"Tools"</th><th>"To review"</th><th></th></tr></thead>
            <tbody>
                {items.into_iter().map(|s| connector_row(s, set_enabled, delete)).collect_view()}
            </tbody>
        </table>
    }
}

fn connector_row(
    s: ConnectorStatus,
    set_enabled: ServerAction<SetConnectorEnabled>,
    delete: ServerAction<DeleteConnector>,
) -> impl IntoView {
    let c = s.connector;
    let enabled = c.enabled;
    let confirming = RwSignal::new(false);
    let mut secrets: Vec<String> = c.header_names.clone();
    secrets.extend(c.env_names.iter().map(|n| format!("${n}")));
    if c.oauth.is_some() {
        secrets.push("OAuth client".into());
    }
    let secrets = if secrets.is_empty() {
        "none".to_string()
    } else {
        format!("{} (values hidden)", secrets.join(", "))
    };
    let href = format!("/connectors/{}", c.name);
    let (toggle_id, delete_id) = (c.id.clone(), c.id.clone());
    let name = c.name.clone();
    let label = c.name.clone();
    view! {
        <tr data-connector=c.name.clone()>
            <td class="name"><A href=href>{label}</A></td>
            <td class="transport">{transport_label(c.transport)}</td>
            <td class="endpoint"><code>{endpoint(&c)}</code></td>
            <td class="secrets">{secrets}</td>
            <td class="status">
                {health_badge(&s.health.status)}
                {s.health.last_error.clone().map(|e| view! { <div class="last-error muted small">{e}</div> })}
            </td>
            <td class="tools">{s.tools}</td>
            <td class="to-review">{s.tools_to_review}</td>
            <td class="actions">
                <ActionForm action=set_enabled attr:class="inline">
                    <input type="hidden" name="id" value=toggle_id />
                    <input type="hidden" name="enabled" value=if enabled { "false" } else { "true" } />
                    <button type="submit" class="secondary connector-toggle">{if enabled { "Disable" } else { "Enable" }}</button>
                </ActionForm>
                <button type="button" class="link connector-delete" hidden=move || confirming.get() on:click=move |_| confirming.set(true)>"delete"</button>
                <span class="confirm" hidden=move || !confirming.get()>
                    {format!("Delete {name}, its catalog and every rule naming it? ")}
                    <ActionForm action=delete attr:class="inline">
                        <input type="hidden" name="id" value=delete_id />
                        <button type="submit" class="danger connector-delete-confirm">"Delete"</button>
                    </ActionForm>
                    <button type="button" class="link" on:click=move |_| confirming.set(false)>"cancel"</button>
                </span>
            </td>
        </tr>
    }
}

fn review_section(tools: Vec<CatalogTool>, review: ServerAction<ReviewTool>) -> impl IntoView {
    view! {
        <section class="group" id="review-queue">
            <h2>"Tools to review " <span class="badge" id="review-queue-count">{tools.len()}</span></h2>
            {if tools.is_empty() {
                view! { <p class="muted" id="review-queue-empty">"Nothing waits for review."</p> }.into_any()
            } else {
                view! {
                    <p class="muted small">"Until approved, no agent can call these, whatever the rules say. A changed tool's description or input schema differs from what was approved."</p>
                    <table>
                        <thead><tr><th>"Connector"</th><th>"Tool"</th><th>"State"</th><th>"Risk"</th><th>"Description"</th><th></th></tr></thead>
                        <tbody>
                            {tools.into_iter().map(|t| {
                                let (href, label) = (format!("/connectors/{}", t.connector_name), t.connector_name.clone());
                                view! {
                                <tr data-connector=t.connector_name.clone() data-tool=t.name.clone()>
                                    <td><A href=href>{label}</A></td>
                                    <td class="tool"><code>{t.name.clone()}</code></td>
                                    <td class="state">{review_badge(t.review)}
                                        {(t.review == Review::Changed).then(|| view! { <div class="muted small">"definition changed since approval"</div> })}
                                    </td>
                                    <td>{risk_badge(t.risk)}</td>
                                    <td class="muted small" title=t.description.clone()>{truncate(&t.description, 100)}</td>
                                    <td>{review_buttons(&t, review)}</td>
                                </tr>
                            }}).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

/// Approve / Reject for a tool (only those that make sense in its state).
pub fn review_buttons(t: &CatalogTool, review: ServerAction<ReviewTool>) -> impl IntoView + use<> {
    let (connector_id, tool) = (t.connector_id.clone(), t.name.clone());
    let form = move |approve: bool, label: &'static str, class: &'static str| {
        let (connector_id, tool) = (connector_id.clone(), tool.clone());
        view! {
            <ActionForm action=review attr:class="inline">
                <input type="hidden" name="connector_id" value=connector_id />
                <input type="hidden" name="tool" value=tool />
                <input type="hidden" name="approve" value=if approve { "true" } else { "false" } />
                <button type="submit" class=class>{label}</button>
            </ActionForm>
        }
    };
    let (approve, reject) = match t.review {
        Review::Pending | Review::Changed => (true, true),
        Review::Rejected => (true, false),
        Review::Approved => (false, true),
    };
    let quiet = t.review == Review::Approved;
    let approve = approve.then(|| form(true, "Approve", "approve"));
    let reject = reject.then(|| {
        form(
            false,
            "Reject",
            if quiet {
                "link reject"
            } else {
                "danger reject"
            },
        )
    });
    view! {
        {approve}
        {reject}
    }
}
