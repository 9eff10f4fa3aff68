//! OAuth clients (admins): every client of the authorization server (pre-registered, metadata
//! document, dynamically registered) with disable and delete, registration of a client, and the
//! switches for each way of registering plus token lifetimes.

use super::{ErrorNote, action_error, error_text, when};
use crate::server_fns::{
    DeleteOauthClient, OAuthClientsView, RegisterOauthClient, SaveOauthSettings, SwitchOauthClient,
    oauth_clients,
};
use leptos::prelude::*;
use toolgate_domain::model::{OAuthClient, OAuthClientKind};

/// How a client came to be known, in words.
pub fn kind_label(kind: OAuthClientKind) -> &'static str {
    match kind {
        OAuthClientKind::Preregistered => "pre-registered",
        OAuthClientKind::Cimd => "CIMD",
        OAuthClientKind::Dcr => "DCR",
    }
}

#[component]
pub fn OAuthClientsPage() -> impl IntoView {
    let save = ServerAction::<SaveOauthSettings>::new();
    let register = ServerAction::<RegisterOauthClient>::new();
    let switch = ServerAction::<SwitchOauthClient>::new();
    let delete = ServerAction::<DeleteOauthClient>::new();
    let data = Resource::new(
        move || {
            (
                save.version().get(),
                register.version().get(),
                switch.version().get(),
                delete.version().get(),
            )
        },
        |_| oauth_clients(),
    );
    view! {
        <h1>"OAuth clients"</h1>
        <p class="muted">"Agents sign people in through Toolgate's authorization server (OAuth 2.1 with PKCE). Disabling a client signs out every agent that uses it at once."</p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => clients_view(v, save, switch, delete).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
        {action_error(save)}
        {action_error(switch)}
        {action_error(delete)}
        <section class="group" id="register-client-section">
            <h2>"Register a client"</h2>
            <p class="muted small">"For an agent your organisation runs or a client that cannot publish a metadata document. Confidential clients (a server that can keep a secret) get a client secret."</p>
            <ActionForm action=register attr:id="register-client">
                <label>"Name (shown on the consent page)" <input type="text" name="name" required maxlength="128" placeholder="Support assistant" /></label>
                <label>"Redirect URIs, one per line (https, http://127.0.0.1 or localhost for native apps, or an app scheme like com.example.app:/callback)"
                    <textarea name="redirect_uris" rows="3" required placeholder="https://assistant.example.com/oauth/callback"></textarea></label>
                <label class="check"><input type="checkbox" name="confidential" value="on" /> "Confidential: the client authenticates with a secret"</label>
                <button type="submit">"Register client"</button>
            </ActionForm>
            {action_error(register)}
            {move || register.value().get().and_then(|r| r.ok()).map(|c| view! {
                <div class="notice" id="registered-client">
                    <p>"Registered " <strong>{c.name}</strong> ". Client id: " <code id="new-client-id">{c.client_id}</code></p>
                    {c.secret.map(|s| view! {
                        <p>"Client secret, shown once: copy it now. " <code id="new-client-secret">{s}</code></p>
                    })}
                </div>
            })}
        </section>
    }
}

fn clients_view(
    v: OAuthClientsView,
    save: ServerAction<SaveOauthSettings>,
    switch: ServerAction<SwitchOauthClient>,
    delete: ServerAction<DeleteOauthClient>,
) -> impl IntoView {
    let s = v.settings;
    view! {
        <section class="group" id="oauth-registration">
            <h2>"How clients may register"</h2>
            <ActionForm action=save attr:id="oauth-settings">
                <label class="check"><input type="checkbox" name="preregistered_enabled" value="on" checked=s.preregistered_enabled /> "Pre-registered clients (registered here or through the admin API)"</label>
                <label class="check"><input type="checkbox" name="cimd_enabled" value="on" checked=s.cimd_enabled /> "Client ID Metadata Documents (the client id is the https URL of the client's metadata; what current MCP clients use)"</label>
                <label class="check"><input type="checkbox" name="dcr_enabled" value="on" checked=s.dcr_enabled /> "Dynamic Client Registration (RFC 7591: any client may register itself; older MCP clients)"</label>
                <label class="check"><input type="checkbox" name="allow_loopback_cimd" value="on" checked=s.allow_loopback_cimd /> "development: allow http://localhost metadata documents"</label>
                <div class="row">
                    <label>"Access token lifetime (seconds, 60-3600)" <input type="number" name="access_token_secs" min="60" max="3600" required value=s.access_token_secs.to_string() /></label>
                    <label>"Refresh token lifetime (days, 1-365; each use gives a new one)" <input type="number" name="refresh_token_days" min="1" max="365" required value=s.refresh_token_days.to_string() /></label>
                </div>
                <button type="submit">"Save"</button>
            </ActionForm>
        </section>
        <h2>"Clients"</h2>
        {if v.clients.is_empty() {
            view! { <p id="no-oauth-clients" class="muted">"No clients yet. MCP clients appear here the first time someone connects one."</p> }.into_any()
        } else {
            view! {
                <table id="oauth-clients-table">
                    <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Client id"</th><th>"Redirect URIs"</th><th>"Confidential"</th><th>"Created"</th><th>"Last used"</th><th>"Status"</th><th></th></tr></thead>
                    <tbody>
                        {v.clients.into_iter().map(|c| client_row(c, switch, delete)).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}

fn client_row(
    c: OAuthClient,
    switch: ServerAction<SwitchOauthClient>,
    delete: ServerAction<DeleteOauthClient>,
) -> impl IntoView {
    let disabled = c.disabled;
    let (switch_id, delete_id) = (c.id.clone(), c.id.clone());
    view! {
        <tr data-client=c.name.clone() class:disabled=disabled>
            <td class="name">{c.name.clone()}</td>
            <td class="kind">{kind_label(c.kind)}</td>
            <td class="client-id"><code>{c.id.clone()}</code></td>
            <td class="redirects">{c.redirect_uris.iter().map(|u| view! { <code>{u.clone()}</code><br/> }).collect_view()}</td>
            <td>{if c.confidential { "yes" } else { "no" }}</td>
            <td>{when(Some(c.created_at))} {c.created_by.clone().map(|b| view! { <br/><span class="muted small">{b}</span> })}</td>
            <td>{when(c.last_used_at)}</td>
            <td class="status">{if disabled { "disabled" } else { "enabled" }}</td>
            <td class="actions">
                <ActionForm action=switch attr:class="inline">
                    <input type="hidden" name="client_id" value=switch_id />
                    <input type="hidden" name="disabled" value=if disabled { "false" } else { "true" } />
                    <button type="submit" class="client-toggle">{if disabled { "Enable" } else { "Disable" }}</button>
                </ActionForm>
                <ActionForm action=delete attr:class="inline">
                    <input type="hidden" name="client_id" value=delete_id />
                    <button type="submit" class="link client-delete">"delete"</button>
                </ActionForm>
            </td>
        </tr>
    }
}
