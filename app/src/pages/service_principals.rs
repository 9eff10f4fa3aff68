//! Service principals (admins): identities for unattended agents. They get tokens with the
//! client credentials grant (or an Entra app-only token) and belong to groups, so policy applies
//! to them as to people. The list with the create form and the Entra setting, and one page per
//! principal: edit, disable, secrets with rotation, and its recent audit events.

use super::{ErrorNote, action_error, error_text, when};
use crate::server_fns::{
    CreateServicePrincipal, DeleteServicePrincipal, ROTATION_OVERLAPS, RevokeSpSecret,
    RotateSpSecret, SaveEntraApps, ServicePrincipalDetail, ServicePrincipalsView,
    SwitchServicePrincipal, UpdateServicePrincipal, service_principal, service_principals,
};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use toolgate_domain::model::{AuditEvent, Group, ServicePrincipal};

/// `disabled`, `expired` or `active`.
fn status(sp: &ServicePrincipal, now: DateTime<Utc>) -> &'static str {
    if sp.disabled {
        "disabled"
    } else if sp.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    }
}

/// The display names of `ids`, in the order of `groups`.
fn group_names(ids: &[String], groups: &[Group]) -> String {
    let names: Vec<&str> = groups
        .iter()
        .filter(|g| ids.contains(&g.id))
        .map(|g| g.display_name.as_str())
        .collect();
    if names.is_empty() {
        "none (no access)".into()
    } else {
        names.join(", ")
    }
}

/// The date input's value for a stored expiry: expiries are the end of the chosen day.
fn expiry_date(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| {
        (t - chrono::Duration::milliseconds(1))
            .format("%Y-%m-%d")
            .to_string()
    })
    .unwrap_or_default()
}

/// A checkbox per group, ticked for `selected`.
fn group_boxes(groups: &[Group], selected: &[String]) -> AnyView {
    if groups.is_empty() {
        return view! { <p class="muted small">"No groups yet: create one under Groups & policies."</p> }.into_any();
    }
    groups
        .iter()
        .map(|g| {
            view! {
                <label class="check"><input type="checkbox" name="groups[]" value=g.id.clone() checked=selected.contains(&g.id) /> {g.display_name.clone()}</label>
            }
        })
        .collect_view()
        .into_any()
}

#[component]
pub fn ServicePrincipalsPage() -> impl IntoView {
    let create = ServerAction::<CreateServicePrincipal>::new();
    let save_entra = ServerAction::<SaveEntraApps>::new();
    let data = Resource::new(
        move || (create.version().get(), save_entra.version().get()),
        |_| service_principals(),
    );
    view! {
        <h1>"Service principals"</h1>
        <p class="muted">"Identities for unattended agents (CI jobs, back-office automations). They get tokens with the OAuth client credentials grant and belong to groups, so the same policies apply as for people."</p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => list_view(v, create, save_entra).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
        {action_error(create)}
        {action_error(save_entra)}
    }
}

fn list_view(
    v: ServicePrincipalsView,
    create: ServerAction<CreateServicePrincipal>,
    save_entra: ServerAction<SaveEntraApps>,
) -> impl IntoView {
    let now = v.now;
    let token_url = v.token_url.clone();
    let groups = v.groups.clone();
    let rows = v
        .principals
        .clone()
        .into_iter()
        .map(|sp| {
            let (href, name) = (format!("/service-principals/{}", sp.id), sp.name.clone());
            view! {
                <tr data-sp=sp.name.clone()>
                    <td class="name"><A href=href>{name}</A></td>
                    <td>{sp.owner.clone()}</td>
                    <td class="groups">{group_names(&sp.groups, &groups)}</td>
                    <td>{sp.expires_at.map(|e| when(Some(e))).unwrap_or_else(|| "never".into())}</td>
                    <td class="status">{status(&sp, now)}</td>
                    <td>{when(sp.last_used_at)}</td>
                </tr>
            }
        })
        .collect_view();
    let e = v.entra.clone();
    view! {
        {if v.principals.is_empty() {
            view! { <p id="no-sps" class="muted">"No service principals yet."</p> }.into_any()
        } else {
            view! {
                <table id="sp-table">
                    <thead><tr><th>"Name"</th><th>"Owner"</th><th>"Groups"</th><th>"Expires"</th><th>"Status"</th><th>"Last used"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }.into_any()
        }}
        <section class="group" id="create-sp-section">
            <h2>"Create a service principal"</h2>
            <ActionForm action=create attr:id="create-sp">
                <label>"Name" <input type="text" name="name" required maxlength="128" placeholder="nightly-ci" /></label>
                <label>"Owner (who answers for it)" <input type="text" name="owner" required maxlength="256" placeholder="jane.doe@example.com" /></label>
                <label>"Description" <textarea name="description" rows="2" maxlength="1024"></textarea></label>
                <fieldset class="groups"><legend>"Groups (its access comes from their policies)"</legend>
                    {group_boxes(&v.groups, &[])}
                </fieldset>
                <div class="row">
                    <label>"Valid through (UTC date, optional)" <input type="date" name="expires_on" /></label>
                    <label>"Entra application (client) id, optional" <input type="text" name="entra_app_id" placeholder="00000000-0000-0000-0000-000000000000" /></label>
                </div>
                <button type="submit">"Create service principal"</button>
            </ActionForm>
            {move || create.value().get().and_then(|r| r.ok()).map(|c| view! {
                <div class="notice" id="created-sp">
                    <p>"Created " <strong>{c.name}</strong> ". Client id: " <code id="new-sp-client-id">{c.client_id}</code></p>
                    <p>"Client secret, shown once: copy it now. " <code id="new-sp-secret">{c.secret}</code></p>
                    <p class="muted small">"The agent gets tokens from " <code>{token_url.clone()}</code> " with " <code>"grant_type=client_credentials"</code> " and this id and secret (HTTP Basic or form fields)."</p>
                </div>
            })}
        </section>
        <section class="group" id="entra-apps">
            <h2>"Entra app-only tokens"</h2>
            <p class="muted small">"Agents registered as applications in Microsoft Entra ID may present their own app-only tokens instead of a Toolgate secret. The token's application id must be set on a service principal."</p>
            <ActionForm action=save_entra attr:id="entra-apps-form">
                <label class="check"><input type="checkbox" name="enabled" value="on" checked=e.enabled /> "Accept Entra app-only tokens"</label>
                <label>"Directory (tenant) id" <input type="text" name="tenant_id" value=e.tenant_id.clone() placeholder="00000000-0000-0000-0000-000000000000" /></label>
                <label>"Audiences (comma-separated: the gateway's application id URI and/or client id)" <input type="text" name="audiences" value=e.audiences.join(", ") placeholder="api://toolgate" /></label>
                <label>"Required app role (optional)" <input type="text" name="required_role" value=e.required_role.clone().unwrap_or_default() placeholder="Toolgate.Agent" /></label>
                <button type="submit">"Save"</button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn ServicePrincipalPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let update = ServerAction::<UpdateServicePrincipal>::new();
    let switch = ServerAction::<SwitchServicePrincipal>::new();
    let rotate = ServerAction::<RotateSpSecret>::new();
    let revoke = ServerAction::<RevokeSpSecret>::new();
    let delete = ServerAction::<DeleteServicePrincipal>::new();
    let data = Resource::new(
        move || {
            (
                id(),
                update.version().get(),
                switch.version().get(),
                rotate.version().get(),
                revoke.version().get(),
            )
        },
        |(id, ..)| service_principal(id),
    );
    view! {
        <p class="crumbs"><A href="/service-principals">"← Service principals"</A></p>
        {action_error(update)}
        {action_error(switch)}
        {action_error(rotate)}
        {action_error(revoke)}
        {action_error(delete)}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => detail_view(d, update, switch, rotate, revoke, delete).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn detail_view(
    d: ServicePrincipalDetail,
    update: ServerAction<UpdateServicePrincipal>,
    switch: ServerAction<SwitchServicePrincipal>,
    rotate: ServerAction<RotateSpSecret>,
    revoke: ServerAction<RevokeSpSecret>,
    delete: ServerAction<DeleteServicePrincipal>,
) -> impl IntoView {
    let sp = d.principal;
    let now = d.now;
    let disabled = sp.disabled;
    let state = status(&sp, now);
    let sp_id = sp.id.clone();
    let secrets = sp
        .secrets
        .clone()
        .into_iter()
        .map(|s| {
            let (sp_id, secret_id) = (sp_id.clone(), s.id.clone());
            let state = if s.revoked {
                "revoked"
            } else if s.expires_at.is_some_and(|at| at <= now) {
                "expired"
            } else {
                "active"
            };
            view! {
                <tr data-secret=s.prefix.clone() class=format!("secret-{state}")>
                    <td><code>{s.prefix.clone()} "…"</code></td>
                    <td>{when(Some(s.created_at))}</td>
                    <td>{s.expires_at.map(|e| when(Some(e))).unwrap_or_else(|| "never".into())}</td>
                    <td class="status">{state}</td>
                    <td>
                        {(state == "active").then(|| view! {
                            <ActionForm action=revoke attr:class="inline">
                                <input type="hidden" name="id" value=sp_id />
                                <input type="hidden" name="secret_id" value=secret_id />
                                <button type="submit" class="link secret-revoke">"revoke"</button>
                            </ActionForm>
                        })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    let (switch_id, delete_id, rotate_id, edit_id) =
        (sp.id.clone(), sp.id.clone(), sp.id.clone(), sp.id.clone());
    view! {
        <h1>{sp.name.clone()} " " <span class=format!("badge sp-status sp-{state}") id="sp-status">{state}</span></h1>
        <dl class="summary">
            <dt>"Client id"</dt><dd><code id="sp-client-id">{sp.id.clone()}</code></dd>
            <dt>"Owner"</dt><dd>{sp.owner.clone()}</dd>
            <dt>"Description"</dt><dd>{sp.description.clone()}</dd>
            <dt>"Groups"</dt><dd id="sp-groups">{group_names(&sp.groups, &d.groups)}</dd>
            <dt>"Valid through"</dt><dd>{sp.expires_at.map(|e| when(Some(e))).unwrap_or_else(|| "no expiry".into())}</dd>
            <dt>"Entra application"</dt><dd>{sp.entra_app_id.clone().unwrap_or_else(|| "none".into())}</dd>
            <dt>"Created"</dt><dd>{when(Some(sp.created_at))} {sp.created_by.clone().map(|b| format!(" by {b}"))}</dd>
            <dt>"Last used"</dt><dd>{when(sp.last_used_at)}</dd>
        </dl>
        // A div: a form inside a paragraph ends the paragraph in the browser's parser.
        <div class="sp-actions">
            <ActionForm action=switch attr:class="inline">
                <input type="hidden" name="id" value=switch_id />
                <input type="hidden" name="disabled" value=if disabled { "false" } else { "true" } />
                <button type="submit" id="sp-toggle">{if disabled { "Enable" } else { "Disable" }}</button>
            </ActionForm>
            " "
            <ActionForm action=delete attr:class="inline">
                <input type="hidden" name="id" value=delete_id />
                <button type="submit" class="danger" id="sp-delete">"Delete"</button>
            </ActionForm>
        </div>
        <section class="group" id="sp-secrets-section">
            <h2>"Client secrets"</h2>
            <table id="sp-secrets">
                <thead><tr><th>"Secret"</th><th>"Created"</th><th>"Expires"</th><th>"Status"</th><th></th></tr></thead>
                <tbody>{secrets}</tbody>
            </table>
            <ActionForm action=rotate attr:class="inline" attr:id="sp-rotate">
                <input type="hidden" name="id" value=rotate_id />
                <label>"Older secrets keep working for "
                    <select name="overlap_hours">
                        {ROTATION_OVERLAPS.into_iter().map(|(h, label)| view! {
                            <option value=h.to_string() selected=h == 24>{label}</option>
                        }).collect_view()}
                    </select>
                </label>
                <button type="submit">"Rotate"</button>
            </ActionForm>
            {move || rotate.value().get().and_then(|r| r.ok()).map(|s| view! {
                <p class="notice">"New client secret, shown once: copy it now. " <code id="new-sp-secret">{s}</code></p>
            })}
        </section>
        <section class="group" id="sp-edit-section">
            <h2>"Edit"</h2>
            <ActionForm action=update attr:id="sp-edit">
                <input type="hidden" name="id" value=edit_id />
                <label>"Owner" <input type="text" name="owner" required maxlength="256" value=sp.owner.clone() /></label>
                <label>"Description" <textarea name="description" rows="2" maxlength="1024">{sp.description.clone()}</textarea></label>
                <fieldset class="groups"><legend>"Groups"</legend>
                    {group_boxes(&d.groups, &sp.groups)}
                </fieldset>
                <div class="row">
                    <label>"Valid through (UTC date; empty: no expiry)" <input type="date" name="expires_on" value=expiry_date(sp.expires_at) /></label>
                    <label>"Entra application (client) id (empty: none)" <input type="text" name="entra_app_id" value=sp.entra_app_id.clone().unwrap_or_default() /></label>
                </div>
                <button type="submit">"Save"</button>
            </ActionForm>
        </section>
        <section class="group" id="sp-activity-section">
            <h2>"Recent activity"</h2>
            {activity_view(d.activity)}
        </section>
    }
}

fn activity_view(events: Vec<AuditEvent>) -> impl IntoView {
    if events.is_empty() {
        return view! { <p id="no-sp-activity" class="muted">"Nothing yet."</p> }.into_any();
    }
    view! {
        <table id="sp-activity">
            <thead><tr><th>"Time (UTC)"</th><th>"Event"</th><th>"Connector"</th><th>"Tool"</th><th>"Decision"</th><th>"Outcome"</th></tr></thead>
            <tbody>
                {events.into_iter().map(|e| view! {
                    <tr class=format!("decision-{}", e.decision.as_str())>
                        <td>{e.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                        <td class="kind">{e.kind}</td>
                        <td>{e.connector.unwrap_or_default()}</td>
                        <td>{e.tool.unwrap_or_default()}</td>
                        <td class="decision">{e.decision.as_str()}</td>
                        <td>{e.outcome.as_str()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_shows_the_chosen_day() {
        // Stored as the end of 2030-01-01 (= 2030-01-02T00:00Z); the form shows 2030-01-01.
        let at = DateTime::from_timestamp_millis(1_893_542_400_000);
        assert_eq!(expiry_date(at), "2030-01-01");
        assert_eq!(expiry_date(None), "");
    }
}
