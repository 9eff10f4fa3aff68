//! Users: everyone provisioned (SCIM, API, just-in-time), with status, groups and tokens; disable
//! and token revocation take effect at once everywhere.

use super::{ErrorNote, action_error, error_text};
use crate::server_fns::{
    EndSessions, RevokePersonConsent, RevokeToken, SetPersonActive, list_people,
};
use leptos::prelude::*;

#[component]
pub fn UsersPage() -> impl IntoView {
    let set_active = ServerAction::<SetPersonActive>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let end = ServerAction::<EndSessions>::new();
    let withdraw = ServerAction::<RevokePersonConsent>::new();
    let data = Resource::new(
        move || {
            (
                set_active.version().get(),
                revoke.version().get(),
                end.version().get(),
                withdraw.version().get(),
            )
        },
        |_| list_people(),
    );
    let (filter, set_filter) = signal(String::new());
    view! {
        <h1>"Users"</h1>
        <p class="muted">"People provisioned by SCIM from Microsoft Entra (or through the admin API). Disabling someone stops their agents' tokens, open streams and dashboard sessions at once."</p>
        <input type="search" id="user-search" placeholder="Search by name…" on:input=move |ev| set_filter.set(event_target_value(&ev)) />
        {action_error(set_active)}
        {action_error(revoke)}
        {action_error(withdraw)}
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(people) if people.is_empty() => view! { <p id="no-users">"No users yet."</p> }.into_any(),
                    Ok(people) => view! {
                        <table id="users-table">
                            <thead><tr><th>"User"</th><th>"Status"</th><th>"Source"</th><th>"Groups"</th><th>"Tokens"</th><th>"Agents"</th><th>"Sessions"</th><th></th></tr></thead>
                            <tbody>
                                {people.into_iter().map(|p| {
                                    let haystack = format!("{} {}", p.user.user_name, p.user.display_name).to_lowercase();
                                    let visible = move || filter.get().is_empty() || haystack.contains(&filter.get().to_lowercase());
                                    let id = p.user.id.clone();
                                    let active = p.user.active;
                                    view! {
                                        <tr class:hidden=move || !visible() data-user=p.user.user_name.clone()>
                                            <td>{p.user.display_name.clone()} <br/> <span class="muted small">{p.user.user_name.clone()}</span></td>
                                            <td class="status">{if active { "active" } else { "disabled" }}</td>
                                            <td>{p.user.source.clone()}</td>
                                            <td>{p.groups.join(", ")}</td>
                                            <td>
                                                {p.tokens.into_iter().filter(|t| !t.revoked).map(|t| view! {
                                                    <div class="token">
                                                        <code>{t.prefix.clone()} "…"</code> " " {t.name.clone()}
                                                        <ActionForm action=revoke attr:class="inline">
                                                            <input type="hidden" name="token_id" value=t.id.clone() />
                                                            <button type="submit" class="link">"revoke"</button>
                                                        </ActionForm>
                                                    </div>
                                                }).collect_view()}
                                            </td>
                                            <td class="consents">
                                                {p.consents.into_iter().map(|c| {
                                                    let uid = p.user.id.clone();
                                                    let client = c.client_id.clone();
                                                    view! {
                                                        <div class="consent" data-client=client>
                                                            {c.client_name.clone()}
                                                            <ActionForm action=withdraw attr:class="inline">
                                                                <input type="hidden" name="user_id" value=uid />
                                                                <input type="hidden" name="client_id" value=c.client_id.clone() />
                                                                <button type="submit" class="link">"revoke"</button>
                                                            </ActionForm>
                                                        </div>
                                                    }
                                                }).collect_view()}
                                            </td>
                                            <td class="sessions">{p.sessions}
                                                {(p.sessions > 0).then(|| view! {
                                                    <ActionForm action=end attr:class="inline">
                                                        <input type="hidden" name="user_id" value=p.user.id.clone() />
                                                        <button type="submit" class="link">"end"</button>
                                                    </ActionForm>
                                                })}
                                            </td>
                                            <td>
                                                <ActionForm action=set_active attr:class="inline">
                                                    <input type="hidden" name="user_id" value=id />
                                                    <input type="hidden" name="active" value=if active { "false" } else { "true" } />
                                                    <button type="submit">{if active { "Disable" } else { "Enable" }}</button>
                                                </ActionForm>
                                            </td>
                                        </tr>
                                    }
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
