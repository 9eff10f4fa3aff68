//! Settings: sign-in with Microsoft Entra ID (OIDC) and role mappings; provisioning (the Tenant
//! URL to paste into Entra, SCIM tokens, the SCIM request log).

use super::{ErrorNote, action_error, error_text};
use crate::server_fns::{CreateScimToken, RevokeToken, SaveIdentity, get_settings};
use leptos::prelude::*;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let save = ServerAction::<SaveIdentity>::new();
    let create_token = ServerAction::<CreateScimToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let data = Resource::new(
        move || {
            (
                save.version().get(),
                create_token.version().get(),
                revoke.version().get(),
            )
        },
        |_| get_settings(),
    );
    view! {
        <h1>"Settings"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(s) => {
                        let o = s.oidc.clone();
                        let configured = o.is_some();
                        view! {
                            <section class="group" id="identity">
                                <h2>"Identity: sign-in with Microsoft Entra ID"</h2>
                                <p>"Redirect URI to add to the Entra app registration (Web platform): " <code id="redirect-uri">{s.redirect_uri.clone()}</code></p>
                                <ActionForm action=save attr:id="identity-form">
                                    <label>"Issuer (e.g. https://login.microsoftonline.com/<tenant id>/v2.0; leave empty to turn single sign-on off)"
                                        <input type="text" name="issuer" value=o.as_ref().map(|o| o.issuer.clone()).unwrap_or_default() /></label>
                                    <label>"Client (application) id" <input type="text" name="client_id" value=o.as_ref().map(|o| o.client_id.clone()).unwrap_or_default() /></label>
                                    <label>{if o.as_ref().is_some_and(|o| o.client_secret_set) { "Client secret (stored; leave empty to keep it)" } else { "Client secret" }}
                                        <input type="password" name="client_secret" autocomplete="off" /></label>
                                    <label>"Button label" <input type="text" name="display_name" value=o.as_ref().map(|o| o.display_name.clone()).unwrap_or_else(|| "Microsoft Entra ID".into()) /></label>
                                    <label>"Match people by"
                                        <select name="match_by">
                                            <option value="user_name" selected=o.as_ref().is_none_or(|o| o.match_by == toolgate_domain::model::OidcMatch::UserName)>"userName = preferred_username (UPN)"</option>
                                            <option value="external_id" selected=o.as_ref().is_some_and(|o| o.match_by == toolgate_domain::model::OidcMatch::ExternalId)>"externalId = oid (object id)"</option>
                                        </select></label>
                                    <label class="check"><input type="checkbox" name="jit_provisioning" value="on" checked=o.as_ref().is_some_and(|o| o.jit_provisioning) /> "Create unknown people at first sign-in (otherwise only people provisioned by SCIM may sign in)"</label>
                                    <label class="check"><input type="checkbox" name="use_groups_claim" value="on" checked=o.as_ref().is_some_and(|o| o.use_groups_claim) /> "Also use the token's groups claim (SCIM memberships are always used)"</label>
                                    <h3>"Dashboard roles (group names, comma-separated)"</h3>
                                    <label>"Admin" <input type="text" name="admin_groups" value=s.admin_groups.join(", ") /></label>
                                    <label>"Approver" <input type="text" name="approver_groups" value=s.approver_groups.join(", ") /></label>
                                    <label>"Auditor" <input type="text" name="auditor_groups" value=s.auditor_groups.join(", ") /></label>
                                    <button type="submit">"Save identity settings"</button>
                                </ActionForm>
                                {configured.then(|| view! {
                                    <p><a class="button" id="test-sign-in" href="/auth/oidc/login?test=1" rel="external" target="_blank">"Test sign-in"</a>
                                    " " <span class="muted small">"Signs in at the provider in a new tab and shows what Toolgate would do, without changing anything."</span></p>
                                })}
                            </section>
                            <section class="group" id="provisioning">
                                <h2>"Provisioning (SCIM 2.0)"</h2>
                                <p>"Tenant URL for Entra's provisioning settings: " <code id="tenant-url">{s.scim_tenant_url.clone()}</code></p>
                                <p>"Last successful sync: " <span id="last-sync">{s.last_sync.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "never".into())}</span></p>
                                <h3>"Secret tokens"</h3>
                                <ul>
                                    {s.scim_tokens.clone().into_iter().filter(|t| !t.revoked).map(|t| view! {
                                        <li><code>{t.prefix.clone()} "…"</code> " " {t.name.clone()}
                                            <ActionForm action=revoke attr:class="inline">
                                                <input type="hidden" name="token_id" value=t.id.clone() />
                                                <button type="submit" class="link">"revoke"</button>
                                            </ActionForm>
                                        </li>
                                    }).collect_view()}
                                </ul>
                                <ActionForm action=create_token attr:class="inline" attr:id="scim-token-form">
                                    <label>"New token name" <input type="text" name="name" required placeholder="entra" /></label>
                                    <button type="submit">"Create SCIM token"</button>
                                </ActionForm>
                                {move || create_token.value().get().and_then(|r| r.ok()).map(|t| view! {
                                    <p class="notice">"Paste this into Entra as the Secret Token. It is shown once: " <code id="new-scim-token">{t}</code></p>
                                })}
                                <h3>"Recent SCIM requests"</h3>
                                <table id="scim-log">
                                    <thead><tr><th>"Time (UTC)"</th><th>"Client"</th><th>"Request"</th><th>"Status"</th><th>"Duration"</th></tr></thead>
                                    <tbody>
                                        {s.scim_requests.clone().into_iter().map(|r| view! {
                                            <tr><td>{r.at.format("%H:%M:%S").to_string()}</td><td>{r.client.clone()}</td>
                                                <td><code>{r.method.clone()} " " {r.path.clone()}</code></td><td>{r.status}</td>
                                                <td>{format!("{:.1} ms", r.duration_ms)}</td></tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </section>
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
        {action_error(save)}
        {action_error(create_token)}
        <super::dlp::DlpSection />
        <super::siem::SiemSettings />
    }
}
