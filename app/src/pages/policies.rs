//! The policy matrix: groups by connectors, each cell summarising that group's rules there.
//! Opening a cell shows its editor with a live preview: every catalog tool of the connector,
//! decided for a member of this group alone under the rules as typed, with the deciding rule.
// The editor's fields arrive one argument each.
#![allow(clippy::too_many_arguments)]

use super::{ErrorNote, action_error, error_text};
use crate::pages::connectors::{review_badge, risk_badge};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use toolgate_domain::model::ConnectorAccess;
use toolgate_domain::policy::ToolRules;
use toolgate_domain::risk::Risk;

/// Everything the matrix shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyMatrix {
    /// (id, display name), by name.
    pub groups: Vec<(String, String)>,
    /// (id, name), by name.
    pub connectors: Vec<(String, String)>,
    pub cells: Vec<PolicyCell>,
}

/// One group's rules on one connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyCell {
    pub group_id: String,
    pub connector_id: String,
    pub rules: ToolRules,
}

impl PolicyMatrix {
    fn rules(&self, group_id: &str, connector_id: &str) -> Option<&ToolRules> {
        self.cells
            .iter()
            .find(|c| c.group_id == group_id && c.connector_id == connector_id)
            .map(|c| &c.rules)
    }
}

/// A cell's rules in a few words: "allow get_*, risk ≤ Normal; block delete_*", or "—" when
/// there are none (default deny).
pub fn summarize(r: &ToolRules) -> String {
    let mut parts = Vec::new();
    let mut allow: Vec<String> = r.allow.clone();
    if let Some(l) = r.allow_risk {
        allow.push(format!("risk ≤ {l}"));
    }
    if !allow.is_empty() {
        parts.push(format!("allow {}", allow.join(", ")));
    }
    let mut block: Vec<String> = r.block.clone();
    if let Some(l) = r.block_risk {
        block.push(format!("risk ≥ {l}"));
    }
    if !block.is_empty() {
        parts.push(format!("block {}", block.join(", ")));
    }
    if !r.resources.is_empty() {
        parts.push(format!("resources {}", r.resources.join(", ")));
    }
    if !r.prompts.is_empty() {
        parts.push(format!("prompts {}", r.prompts.join(", ")));
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

/// Draft rules from the editor's fields; the same checks as saving.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
fn draft(
    allow: &str,
    block: &str,
    allow_risk: &str,
    block_risk: &str,
    resources: &str,
    prompts: &str,
) -> Result<ToolRules, String> {
    let level = |field: &str, s: &str| match s.trim() {
        "" => Ok(None),
        v => Risk::parse(v)
            .map(Some)
            .ok_or_else(|| format!("{field}: unknown risk level {v:?}")),
    };
    let split = crate::server_fns::split_patterns;
    ToolRules {
        allow: split(allow),
        block: split(block),
        allow_risk: level("allow up to risk", allow_risk)?,
        block_risk: level("block from risk", block_risk)?,
        resources: split(resources),
        prompts: split(prompts),
    }
    .validated()
}

#[server(prefix = "/fn", endpoint = "policy_matrix")]
pub async fn load_policy_matrix() -> Result<PolicyMatrix, ServerFnError> {
    use crate::server_fns::shown;
    let (_, ctx) = crate::auth::require_admin().await?;
    let mut groups: Vec<(String, String)> = ctx
        .store
        .list_groups()
        .await
        .map_err(shown)?
        .into_iter()
        .map(|g| (g.id, g.display_name))
        .collect();
    groups.sort_by_key(|g| g.1.to_lowercase());
    let mut connectors: Vec<(String, String)> = ctx
        .store
        .list_connectors()
        .await
        .map_err(shown)?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    connectors.sort_by(|a, b| a.1.cmp(&b.1));
    let cells = ctx
        .store
        .all_policies()
        .await
        .map_err(shown)?
        .into_iter()
        .map(|p| PolicyCell {
            group_id: p.group_id,
            connector_id: p.connector_id,
            rules: p.rules,
        })
        .collect();
    Ok(PolicyMatrix {
        groups,
        connectors,
        cells,
    })
}

/// The live preview: every catalog tool of the connector decided for a member of this group
/// alone, as if the group's rules there were the draft. Nothing is saved.
#[server(prefix = "/fn", endpoint = "preview_policy")]
pub async fn preview_policy(
    group_id: String,
    connector_id: String,
    allow: String,
    block: String,
    allow_risk: String,
    block_risk: String,
    resources: String,
    prompts: String,
) -> Result<ConnectorAccess, ServerFnError> {
    use crate::server_fns::shown;
    let (_, ctx) = crate::auth::require_admin().await?;
    let rules = draft(
        &allow,
        &block,
        &allow_risk,
        &block_risk,
        &resources,
        &prompts,
    )
    .map_err(ServerFnError::new)?;
    let group = ctx.store.get_group(&group_id).await.map_err(shown)?;
    let connector = ctx
        .store
        .get_connector(&connector_id)
        .await
        .map_err(shown)?;
    ctx.snapshot
        .get()
        .preview_rules(&group.display_name, &connector.name, &rules)
        .ok_or_else(|| ServerFnError::new("connector not found"))
}

/// Saves (replaces) a group's rules on a connector.
#[server(prefix = "/fn", endpoint = "save_policy")]
pub async fn save_policy(
    group_id: String,
    connector_id: String,
    allow: String,
    block: String,
    allow_risk: String,
    block_risk: String,
    resources: String,
    prompts: String,
) -> Result<(), ServerFnError> {
    use crate::server_fns::shown;
    let (user, ctx) = crate::auth::require_admin().await?;
    let rules = draft(
        &allow,
        &block,
        &allow_risk,
        &block_risk,
        &resources,
        &prompts,
    )
    .map_err(ServerFnError::new)?;
    let before = ctx
        .store
        .group_policies(&group_id)
        .await
        .map_err(shown)?
        .into_iter()
        .find(|p| p.connector_id == connector_id);
    let policy = ctx
        .store
        .put_rules(&group_id, &connector_id, rules)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %user.username, group = %group_id, connector = %policy.connector_name, "policy saved from the dashboard");
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.policy.put",
        before.and_then(|b| serde_json::to_value(&b).ok()),
        serde_json::to_value(&policy).ok(),
    )
    .await;
    crate::server_fns::changed(&ctx).await;
    Ok(())
}

/// Removes a group's rules on a connector: its members fall back to default deny there.
#[server(prefix = "/fn", endpoint = "remove_policy")]
pub async fn remove_policy(group_id: String, connector_id: String) -> Result<(), ServerFnError> {
    use crate::server_fns::shown;
    let (user, ctx) = crate::auth::require_admin().await?;
    let before = ctx
        .store
        .group_policies(&group_id)
        .await
        .map_err(shown)?
        .into_iter()
        .find(|p| p.connector_id == connector_id)
        .ok_or_else(|| ServerFnError::new("this group has no rules on this connector"))?;
    ctx.store
        .delete_policy(&group_id, &connector_id)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %user.username, group = %group_id, connector = %before.connector_name, "policy removed from the dashboard");
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.policy.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    crate::server_fns::changed(&ctx).await;
    Ok(())
}

/// The link that opens a cell's editor.
pub fn cell_href(group_id: &str, connector_id: &str) -> String {
    format!(
        "/policies?group={}&connector={}",
        super::audit::enc(group_id),
        super::audit::enc(connector_id)
    )
}

#[component]
pub fn PoliciesPage() -> impl IntoView {
    let save = ServerAction::<SavePolicy>::new();
    let remove = ServerAction::<RemovePolicy>::new();
    let matrix = Resource::new(
        move || (save.version().get(), remove.version().get()),
        |_| load_policy_matrix(),
    );
    let query = use_query_map();
    view! {
        <h1>"Policies"</h1>
        <p class="muted">"Rows are groups, columns connectors. Default deny: a member may call only what some group's rules allow; a block in any of their groups wins. Open a cell to edit it."</p>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let selected = query.with(|q| (q.get("group").unwrap_or_default(), q.get("connector").unwrap_or_default()));
                Suspend::new(async move {
                    match matrix.await {
                        Ok(m) if m.groups.is_empty() || m.connectors.is_empty() => view! {
                            <p id="no-matrix">"Rules need at least one group and one connector: "
                                <A href="/groups">"create a group"</A> ", " <A href="/connectors">"add a connector"</A> "."</p>
                        }.into_any(),
                        Ok(m) => view! {
                            {matrix_table(&m, &selected)}
                            {editor_for(&m, &selected, save, remove)}
                        }.into_any(),
                        Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

fn matrix_table(m: &PolicyMatrix, selected: &(String, String)) -> impl IntoView + use<> {
    let header = m
        .connectors
        .iter()
        .map(|(_, name)| view! { <th scope="col">{name.clone()}</th> })
        .collect_view();
    let rows = m
        .groups
        .iter()
        .map(|(gid, gname)| {
            let cells = m
                .connectors
                .iter()
                .map(|(cid, cname)| {
                    let rules = m.rules(gid, cid);
                    let text = rules.map(summarize).unwrap_or_else(|| "—".into());
                    let is_selected = selected.0 == *gid && selected.1 == *cid;
                    view! {
                        <td class="cell" class:selected=is_selected class:empty=rules.is_none()
                            data-group=gname.clone() data-connector=cname.clone()>
                            <A href=cell_href(gid, cid)>{text}</A>
                        </td>
                    }
                })
                .collect_view();
            view! { <tr><th scope="row">{gname.clone()}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <table id="policy-matrix">
            <thead><tr><th>"Group \\ connector"</th>{header}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

fn editor_for(
    m: &PolicyMatrix,
    selected: &(String, String),
    save: ServerAction<SavePolicy>,
    remove: ServerAction<RemovePolicy>,
) -> impl IntoView + use<> {
    let group = m.groups.iter().find(|g| g.0 == selected.0).cloned();
    let connector = m.connectors.iter().find(|c| c.0 == selected.1).cloned();
    match (group, connector) {
        (Some(group), Some(connector)) => {
            let rules = m.rules(&group.0, &connector.0).cloned();
            view! { <PolicyEditor group connector rules save remove /> }.into_any()
        }
        _ => view! { <p class="muted" id="no-cell">"Open a cell to edit that group's rules on that connector."</p> }.into_any(),
    }
}

#[component]
fn PolicyEditor(
    group: (String, String),
    connector: (String, String),
    rules: Option<ToolRules>,
    save: ServerAction<SavePolicy>,
    remove: ServerAction<RemovePolicy>,
) -> impl IntoView {
    let existing = rules.is_some();
    let r = rules.unwrap_or_default();
    let lines = |v: &[String]| v.join("\n");
    let level = |l: Option<Risk>| l.map(|l| l.as_str().to_string()).unwrap_or_default();
    let allow = RwSignal::new(lines(&r.allow));
    let block = RwSignal::new(lines(&r.block));
    let allow_risk = RwSignal::new(level(r.allow_risk));
    let block_risk = RwSignal::new(level(r.block_risk));
    let resources = RwSignal::new(lines(&r.resources));
    let prompts = RwSignal::new(lines(&r.prompts));
    let (gid, cid) = (group.0.clone(), connector.0.clone());
    let preview = ServerAction::<PreviewPolicy>::new();
    let request = move || PreviewPolicy {
        group_id: gid.clone(),
        connector_id: cid.clone(),
        allow: allow.get(),
        block: block.get(),
        allow_risk: allow_risk.get(),
        block_risk: block_risk.get(),
        resources: resources.get(),
        prompts: prompts.get(),
    };
    // The preview follows the fields, a quarter second after the last keystroke (browser only:
    // effects do not run on the server). Only the latest request's answer is shown.
    let pending_timer = StoredValue::new(None::<TimeoutHandle>);
    let first = StoredValue::new(true);
    let request_now = request.clone();
    Effect::new(move |_| {
        let req = request_now();
        if let Some(h) = pending_timer.get_value() {
            h.clear();
        }
        if first.get_value() {
            first.set_value(false);
            preview.dispatch(req);
            return;
        }
        let handle = set_timeout_with_handle(
            move || {
                preview.dispatch(req);
            },
            std::time::Duration::from_millis(250),
        )
        .ok();
        pending_timer.set_value(handle);
    });
    let save_request = {
        let (gid, cid) = (group.0.clone(), connector.0.clone());
        move || SavePolicy {
            group_id: gid.clone(),
            connector_id: cid.clone(),
            allow: allow.get_untracked(),
            block: block.get_untracked(),
            allow_risk: allow_risk.get_untracked(),
            block_risk: block_risk.get_untracked(),
            resources: resources.get_untracked(),
            prompts: prompts.get_untracked(),
        }
    };
    let (rgid, rcid) = (group.0.clone(), connector.0.clone());
    let risk_select = move |sig: RwSignal<String>, name: &'static str, none: &'static str| {
        let initial = sig.get_untracked();
        view! {
            <select name=name prop:value=move || sig.get() on:change=move |ev| sig.set(event_target_value(&ev))>
                <option value="" selected=initial.is_empty()>{none}</option>
                {Risk::ALL.into_iter().map(|l| view! {
                    <option value=l.as_str() selected=initial == l.as_str()>{l.label()}</option>
                }).collect_view()}
            </select>
        }
    };
    view! {
        <section class="group" id="policy-editor" data-group=group.1.clone() data-connector=connector.1.clone()>
            <h2>"Rules of " <em>{group.1.clone()}</em> " on " <em>{connector.1.clone()}</em></h2>
            <p class="muted small">"Patterns are tool names as the upstream names them; " <code>"*"</code> " matches any run of characters. Separate them by commas, spaces or lines."</p>
            <form id="policy-form" class="editor" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                save.dispatch(save_request());
            }>
                <div class="row">
                    <label>"Allow patterns" <textarea name="allow" rows="3" placeholder="get_*\nsearch" bind:value=allow></textarea></label>
                    <label>"Block patterns (win over every allow)" <textarea name="block" rows="3" placeholder="delete_*" bind:value=block></textarea></label>
                </div>
                <div class="row">
                    <label>"Allow every tool up to risk" {risk_select(allow_risk, "allow_risk", "none")}</label>
                    <label>"Block every tool from risk" {risk_select(block_risk, "block_risk", "none")}</label>
                </div>
                <div class="row">
                    <label>"Resources (URI patterns)" <textarea name="resources" rows="2" placeholder="file:///docs/*" bind:value=resources></textarea></label>
                    <label>"Prompts (name patterns)" <textarea name="prompts" rows="2" placeholder="*" bind:value=prompts></textarea></label>
                </div>
                <div class="row">
                    <button type="submit" id="policy-save" disabled=move || save.pending().get()>"Save rules"</button>
                    {existing.then(|| view! {
                        <button type="button" class="danger" id="policy-remove" disabled=move || remove.pending().get()
                            on:click=move |_| { remove.dispatch(RemovePolicy { group_id: rgid.clone(), connector_id: rcid.clone() }); }>
                            "Remove rules"</button>
                    })}
                    {move || matches!(save.value().get(), Some(Ok(()))).then(|| view! { <span class="notice" id="policy-saved">"Saved."</span> })}
                </div>
                {action_error(save)}
                {action_error(remove)}
            </form>
            <h3>"Live preview: a member of " {group.1.clone()} " alone"</h3>
            <div id="policy-preview" class:updating=move || preview.pending().get()>
                {move || preview.value().get().map(|r| match r {
                    Ok(access) => preview_table(access).into_any(),
                    Err(e) => view! { <p class="error" role="alert" id="preview-error">{error_text(&e)}</p> }.into_any(),
                })}
            </div>
        </section>
    }
}

fn preview_table(access: ConnectorAccess) -> impl IntoView {
    let allowed = access.tools.iter().filter(|t| t.allowed).count();
    let total = access.tools.len();
    view! {
        {(!access.enabled).then(|| view! { <p class="error">"This connector is disabled: nothing on it can be called."</p> })}
        <p class="muted small" id="preview-counts">{format!("{allowed} of {total} tools allowed")}</p>
        {if total == 0 {
            view! { <p class="muted">"The connector's catalog is empty: refresh its tools first."</p> }.into_any()
        } else {
            view! {
                <table id="preview-table">
                    <thead><tr><th>"Tool"</th><th>"Decision"</th><th>"Risk"</th><th>"Review"</th><th>"Deciding rule"</th></tr></thead>
                    <tbody>
                        {access.tools.into_iter().map(|t| {
                            let decision = if t.allowed { "allow" } else { "deny" };
                            view! {
                                <tr class=format!("decision-{decision}") data-tool=t.tool.clone() data-allowed=if t.allowed { "true" } else { "false" }>
                                    <td class="tool"><code>{t.tool.clone()}</code></td>
                                    <td class="decision">{decision}</td>
                                    <td>{risk_badge(t.risk)}</td>
                                    <td>{review_badge(t.review)}</td>
                                    <td class="rule muted small">{t.rule.clone()}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(summarize(&ToolRules::default()), "—");
        let r = ToolRules {
            allow: vec!["get_*".into()],
            block: vec!["delete_*".into()],
            allow_risk: Some(Risk::Normal),
            ..ToolRules::default()
        };
        assert_eq!(summarize(&r), "allow get_*, risk ≤ Normal; block delete_*");
    }

    #[test]
    fn drafts_are_validated() {
        let r = draft("get_*, echo", "delete_*", "normal", "", "", "").unwrap();
        assert_eq!(r.allow, vec!["get_*", "echo"]);
        assert_eq!(r.allow_risk, Some(Risk::Normal));
        assert_eq!(r.block_risk, None);
        assert!(draft("bad pattern!", "", "", "", "", "").is_err());
        assert!(draft("", "", "extreme", "", "", "").is_err());
    }
}
