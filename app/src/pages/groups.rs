//! Groups & policies: members of each group and a summary of its rules per connector; the rules
//! are edited in the policy matrix (`policies`), which previews them live.

use super::policies::{cell_href, summarize};
use super::{ErrorNote, action_error, error_text};
use crate::server_fns::{AddMember, CreateGroup, RemoveMember, list_groups};
use leptos::prelude::*;
use leptos_router::components::A;
use toolgate_domain::model::{Connector, GroupDetail, User};

#[component]
pub fn GroupsPage() -> impl IntoView {
    let create = ServerAction::<CreateGroup>::new();
    let add_member = ServerAction::<AddMember>::new();
    let remove_member = ServerAction::<RemoveMember>::new();
    let data = Resource::new(
        move || {
            (
                create.version().get(),
                add_member.version().get(),
                remove_member.version().get(),
            )
        },
        |_| list_groups(),
    );
    view! {
        <h1>"Groups & policies"</h1>
        <p class="muted">"Default deny: a group's members may use only the tools its rules allow; a block in any group wins."</p>
        {action_error(add_member)}
        {action_error(remove_member)}
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok((groups, users, connectors)) if groups.is_empty() => {
                        let _ = (users, connectors);
                        view! { <p id="no-groups">"No groups yet."</p> }.into_any()
                    }
                    Ok((groups, users, connectors)) => groups
                        .into_iter()
                        .map(|g| view! { <GroupCard g users=users.clone() connectors=connectors.clone() add_member remove_member /> })
                        .collect_view()
                        .into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
        <h2>"Create a group"</h2>
        <ActionForm action=create attr:id="create-group">
            <label>"Display name" <input type="text" name="display_name" required /></label>
            <button type="submit">"Create group"</button>
        </ActionForm>
        {action_error(create)}
    }
}

#[component]
fn GroupCard(
    g: GroupDetail,
    users: Vec<User>,
    connectors: Vec<Connector>,
    add_member: ServerAction<AddMember>,
    remove_member: ServerAction<RemoveMember>,
) -> impl IntoView {
    let group_id = g.group.id.clone();
    let managed = g.group.source == "scim";
    let members = g.members.clone();
    let candidates: Vec<User> = users
        .into_iter()
        .filter(|u| !members.iter().any(|m| m.id == u.id))
        .collect();
    let policy_rows = connectors
        .into_iter()
        .map(|c| {
            let summary = g
                .policies
                .iter()
                .find(|p| p.connector_id == c.id)
                .map(|p| summarize(&p.rules()))
                .unwrap_or_else(|| "— (default deny)".into());
            view! {
                <tr data-connector=c.name.clone()>
                    <td class="name">{c.name.clone()}</td>
                    <td class="rules">{summary}</td>
                    <td><A href=cell_href(&group_id, &c.id)>"Edit with live preview"</A></td>
                </tr>
            }
        })
        .collect_view();
    let member_rows = members
        .into_iter()
        .map(|m| {
            let gid = group_id.clone();
            view! {
                <li>
                    {m.display_name} " " <span class="muted">{m.user_name}</span>
                    <ActionForm action=remove_member attr:class="inline" attr:hidden=managed>
                        <input type="hidden" name="group_id" value=gid />
                        <input type="hidden" name="user_id" value=m.id />
                        <button type="submit" class="link">"remove"</button>
                    </ActionForm>
                </li>
            }
        })
        .collect_view();
    let scim = g.group.source == "scim";
    let external = g.group.external_id.clone().unwrap_or_default();
    view! {
        <section class="group" data-group=g.group.display_name.clone()>
            <h2>{g.group.display_name.clone()}</h2>
            {scim.then(|| view! {
                <p class="muted small scim-managed">"Membership managed by SCIM (Microsoft Entra"
                    {(!external.is_empty()).then(|| format!(", object id {external}"))}"); rules are edited here."</p>
            })}
            <h3>"Members"</h3>
            <ul class="members">{member_rows}</ul>
            <ActionForm action=add_member attr:class="inline" attr:hidden=scim>
                <input type="hidden" name="group_id" value=group_id.clone() />
                <select name="user_id" required>
                    <option value="">"Add a member…"</option>
                    {candidates.into_iter().map(|u| view! { <option value=u.id>{u.display_name} " (" {u.user_name} ")"</option> }).collect_view()}
                </select>
                <button type="submit">"Add"</button>
            </ActionForm>
            <h3>"Tool rules per connector"</h3>
            <table class="policies"><tbody>{policy_rows}</tbody></table>
        </section>
    }
}
