//! The effective-access simulator: every tool of every connector for a person or a group, each
//! with allow or deny and the rule that decided; and "who can call" one tool. It decides with
//! the live snapshot, exactly as the proxy does.

use super::{ErrorNote, error_text};
use crate::pages::connectors::{review_badge, risk_badge};
use leptos::prelude::*;
use leptos_router::components::{A, Form};
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use toolgate_domain::model::{Simulation, SubjectDecision, WhoCanCall};

/// What the pickers offer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimulatorOptions {
    /// (user name, display name, active), by user name.
    pub users: Vec<(String, String, bool)>,
    /// (id, display name), by name.
    pub groups: Vec<(String, String)>,
    /// Each connector with its catalog's tool names.
    pub tools: Vec<(String, Vec<String>)>,
}

#[server(prefix = "/fn", endpoint = "simulator_options")]
pub async fn load_simulator_options() -> Result<SimulatorOptions, ServerFnError> {
    use crate::server_fns::shown;
    let (_, ctx) = crate::auth::require_admin().await?;
    let mut users: Vec<(String, String, bool)> = ctx
        .store
        .list_users()
        .await
        .map_err(shown)?
        .into_iter()
        .map(|u| (u.user_name, u.display_name, u.active))
        .collect();
    users.sort_by(|a, b| a.0.cmp(&b.0));
    let mut groups: Vec<(String, String)> = ctx
        .store
        .list_groups()
        .await
        .map_err(shown)?
        .into_iter()
        .map(|g| (g.id, g.display_name))
        .collect();
    groups.sort_by_key(|g| g.1.to_lowercase());
    let mut tools: Vec<(String, Vec<String>)> = ctx
        .snapshot
        .get()
        .simulate(&[])
        .into_iter()
        .map(|c| (c.connector, c.tools.into_iter().map(|t| t.tool).collect()))
        .collect();
    tools.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(SimulatorOptions {
        users,
        groups,
        tools,
    })
}

/// Every tool for a person (`user`: id or user name) or a group (`group`: id or name).
#[server(prefix = "/fn", endpoint = "simulate")]
pub async fn simulate(user: String, group: String) -> Result<Simulation, ServerFnError> {
    use crate::server_fns::shown;
    use toolgate_domain::simulator;
    let (_, ctx) = crate::auth::require_admin().await?;
    let snap = ctx.snapshot.get();
    let mut sim = match (user.trim(), group.trim()) {
        (u, "") if !u.is_empty() => simulator::simulate_user(&ctx.store, &snap, u).await,
        ("", g) if !g.is_empty() => simulator::simulate_group(&ctx.store, &snap, g).await,
        _ => return Err(ServerFnError::new("pick a user or a group")),
    }
    .map_err(shown)?;
    sim.connectors.sort_by(|a, b| a.connector.cmp(&b.connector));
    Ok(sim)
}

/// Every group and person, allowed or denied `tool` on `connector`, with the rule.
#[server(prefix = "/fn", endpoint = "who_can_call")]
pub async fn ask_who_can_call(
    connector: String,
    tool: String,
) -> Result<WhoCanCall, ServerFnError> {
    let (_, ctx) = crate::auth::require_admin().await?;
    let snap = ctx.snapshot.get();
    toolgate_domain::simulator::who_can_call(&ctx.store, &snap, connector.trim(), tool.trim())
        .await
        .map_err(crate::server_fns::shown)
}

#[component]
pub fn SimulatorPage() -> impl IntoView {
    let query = use_query_map();
    let q = move |k: &'static str| query.with(|q| q.get(k).unwrap_or_default());
    let options = Resource::new(|| (), |_| load_simulator_options());
    let simulation = Resource::new(
        move || (q("user"), q("group")),
        |(user, group)| async move {
            if user.is_empty() && group.is_empty() {
                None
            } else {
                Some(simulate(user, group).await)
            }
        },
    );
    let who = Resource::new(
        move || (q("connector"), q("tool")),
        |(connector, tool)| async move {
            if connector.is_empty() || tool.is_empty() {
                None
            } else {
                Some(ask_who_can_call(connector, tool).await)
            }
        },
    );
    view! {
        <h1>"Simulator"</h1>
        <p class="muted">"What a person or a group may call, decided by the live policy exactly as the gateway decides, with the rule behind each answer."</p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match options.await {
                    Ok(o) => pickers(o, q("user"), q("group"), q("connector"), q("tool")).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                simulation.await.map(|r| match r {
                    Ok(sim) => simulation_view(sim).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                })
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                who.await.map(|r| match r {
                    Ok(w) => who_view(w).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                })
            })}
        </Transition>
    }
}

fn pickers(
    o: SimulatorOptions,
    user: String,
    group: String,
    connector: String,
    tool: String,
) -> impl IntoView {
    let chosen = RwSignal::new(if connector.is_empty() {
        o.tools.first().map(|t| t.0.clone()).unwrap_or_default()
    } else {
        connector.clone()
    });
    let tools = o.tools.clone();
    let tool_options = move || {
        let c = chosen.get();
        tools
            .iter()
            .find(|t| t.0 == c)
            .map(|t| t.1.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|name| {
                let sel = name == tool;
                view! { <option value=name.clone() selected=sel>{name.clone()}</option> }
            })
            .collect_view()
    };
    view! {
        <div class="columns pickers">
            <Form method="GET" action="/simulator" attr:id="simulate-user" attr:class="inline">
                <label>"User"
                    <select name="user" required>
                        <option value="">"Pick a user…"</option>
                        {o.users.iter().map(|(name, display, active)| view! {
                            <option value=name.clone() selected=*name == user>
                                {format!("{display} ({name}){}", if *active { "" } else { ", disabled" })}
                            </option>
                        }).collect_view()}
                    </select>
                </label>
                <button type="submit">"Simulate user"</button>
            </Form>
            <Form method="GET" action="/simulator" attr:id="simulate-group" attr:class="inline">
                <label>"Group"
                    <select name="group" required>
                        <option value="">"Pick a group…"</option>
                        {o.groups.iter().map(|(id, name)| view! {
                            <option value=id.clone() selected=*id == group>{name.clone()}</option>
                        }).collect_view()}
                    </select>
                </label>
                <button type="submit">"Simulate group"</button>
            </Form>
        </div>
        <h2>"Who can call…"</h2>
        <Form method="GET" action="/simulator" attr:id="who-can-call" attr:class="inline">
            <label>"Connector"
                <select name="connector" required prop:value=move || chosen.get() on:change=move |ev| chosen.set(event_target_value(&ev))>
                    {o.tools.iter().map(|(c, _)| view! {
                        <option value=c.clone() selected=*c == connector>{c.clone()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>"Tool"
                <select name="tool" required>{tool_options}</select>
            </label>
            <button type="submit">"Who can call it?"</button>
        </Form>
    }
}

fn decision_cell(allowed: bool) -> impl IntoView {
    view! { <td class="decision">{if allowed { "allow" } else { "deny" }}</td> }
}

fn simulation_view(sim: Simulation) -> impl IntoView {
    let s = sim.subject;
    let groups = if s.groups.is_empty() {
        "no groups".to_string()
    } else {
        format!("groups: {}", s.groups.join(", "))
    };
    view! {
        <section class="group" id="simulation" data-kind=s.kind.clone() data-subject=s.name.clone()>
            <h2>{format!("Effective access of {} ", s.kind)} <em>{s.name.clone()}</em></h2>
            <p class="muted small">{groups}</p>
            {if sim.connectors.is_empty() {
                view! { <p class="muted">"No connectors yet."</p> }.into_any()
            } else {
                sim.connectors.into_iter().map(|c| {
                    let allowed = c.tools.iter().filter(|t| t.allowed).count();
                    let (href, label) = (format!("/connectors/{}", c.connector), c.connector.clone());
                    view! {
                        <div class="sim-connector" data-connector=c.connector.clone()>
                            <h3><A href=href>{label}</A>
                                {format!(" — {allowed} of {} tools allowed", c.tools.len())}
                                {(!c.enabled).then_some(" (disabled)")}</h3>
                            <table class="sim-table">
                                <thead><tr><th>"Tool"</th><th>"Decision"</th><th>"Risk"</th><th>"Review"</th><th>"Deciding rule"</th></tr></thead>
                                <tbody>
                                    {c.tools.into_iter().map(|t| view! {
                                        <tr class=if t.allowed { "decision-allow" } else { "decision-deny" }
                                            data-tool=t.tool.clone() data-allowed=if t.allowed { "true" } else { "false" }>
                                            <td class="tool"><code>{t.tool.clone()}</code></td>
                                            {decision_cell(t.allowed)}
                                            <td>{risk_badge(t.risk)}</td>
                                            <td>{review_badge(t.review)}</td>
                                            <td class="rule muted small">{t.rule.clone()}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }
                }).collect_view().into_any()
            }}
        </section>
    }
}

fn subjects_table(
    id: &'static str,
    who: &'static str,
    list: Vec<SubjectDecision>,
) -> impl IntoView {
    view! {
        <table id=id>
            <thead><tr><th>{who}</th><th>"Decision"</th><th>"Rule"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|d| view! {
                    <tr class=if d.allowed { "decision-allow" } else { "decision-deny" }
                        data-name=d.name.clone() data-allowed=if d.allowed { "true" } else { "false" }>
                        <td class="name">{d.name.clone()}</td>
                        {decision_cell(d.allowed)}
                        <td class="rule muted small">{d.rule.clone()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

fn who_view(w: WhoCanCall) -> impl IntoView {
    let allowed_users = w.users.iter().filter(|u| u.allowed).count();
    view! {
        <section class="group" id="who-result" data-connector=w.connector.clone() data-tool=w.tool.clone()>
            <h2>"Who can call " <code>{format!("{}__{}", w.connector, w.tool)}</code></h2>
            <p class="muted small">
                {w.risk.map(|r| view! { "Risk " {risk_badge(r)} " " })}
                {w.review.map(|r| view! { "Review " {review_badge(r)} " " })}
                {format!("{allowed_users} of {} people allowed.", w.users.len())}
            </p>
            <h3>"Groups (a member of this group alone)"</h3>
            {subjects_table("who-groups", "Group", w.groups)}
            <h3>"People (with all their groups)"</h3>
            {subjects_table("who-users", "Person", w.users)}
        </section>
    }
}
