//! "Connect your agent", for everyone signed in: the MCP URL with copy-paste set-up for common
//! clients, the agents the person has authorized (revocable), and personal access tokens for
//! scripts that cannot sign in themselves.

use super::oauth_clients::kind_label;
use super::{CopyButton, ErrorNote, action_error, error_text, when};
use crate::server_fns::{
    ConnectView, CreateMyToken, RevokeMyConsent, RevokeMyToken, TOKEN_LIFETIMES, connect_info,
};
use leptos::prelude::*;
use toolgate_domain::model::Scopes;

/// One client's set-up: element id, title, where it goes, and the text to paste.
pub struct Snippet {
    pub id: &'static str,
    pub title: &'static str,
    pub hint: &'static str,
    pub text: String,
}

/// The set-up snippets for the gateway at `public_url` (no trailing slash).
pub fn snippets(public_url: &str) -> Vec<Snippet> {
    let mcp = format!("{public_url}/mcp");
    let json = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    vec![
        Snippet {
            id: "snippet-claude",
            title: "Claude Code",
            hint: "Run in a terminal; Claude Code opens the sign-in page the first time it connects.",
            text: format!("claude mcp add --transport http toolgate {mcp}"),
        },
        Snippet {
            id: "snippet-vscode",
            title: "VS Code",
            hint: "Add to .vscode/mcp.json in your workspace (or your user MCP configuration).",
            text: json(serde_json::json!({
                "servers": { "toolgate": { "type": "http", "url": mcp } }
            })),
        },
        Snippet {
            id: "snippet-cursor",
            title: "Cursor",
            hint: "Add to ~/.cursor/mcp.json.",
            text: json(serde_json::json!({
                "mcpServers": { "toolgate": { "url": mcp } }
            })),
        },
        Snippet {
            id: "snippet-generic",
            title: "Any other MCP client",
            hint: "Streamable HTTP transport; the client signs you in by itself.",
            text: format!(
                "URL: {mcp}\nAuthorization: OAuth 2.1 with PKCE; discovery at \
                 {public_url}/.well-known/oauth-protected-resource/mcp"
            ),
        },
    ]
}

#[component]
pub fn ConnectPage() -> impl IntoView {
    let revoke_consent = ServerAction::<RevokeMyConsent>::new();
    let create_token = ServerAction::<CreateMyToken>::new();
    let revoke_token = ServerAction::<RevokeMyToken>::new();
    let data = Resource::new(
        move || {
            (
                revoke_consent.version().get(),
                create_token.version().get(),
                revoke_token.version().get(),
            )
        },
        |_| connect_info(),
    );
    view! {
        <h1>"Connect your agent"</h1>
        <p class="muted">"Point your AI agent at the gateway. It signs you in with your company account and may then use only the tools your groups are allowed."</p>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => connect_view(v, revoke_consent, create_token, revoke_token).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn connect_view(
    v: ConnectView,
    revoke_consent: ServerAction<RevokeMyConsent>,
    create_token: ServerAction<CreateMyToken>,
    revoke_token: ServerAction<RevokeMyToken>,
) -> impl IntoView {
    let setup = snippets(&v.public_url)
        .into_iter()
        .map(|s| {
            view! {
                <div class="snippet">
                    <h3>{s.title}</h3>
                    <p class="muted small">{s.hint}</p>
                    <pre id=s.id>{s.text}</pre>
                    <CopyButton target=s.id.to_string() />
                </div>
            }
        })
        .collect_view();
    view! {
        <section class="group" id="connect-setup">
            <h2>"MCP server URL"</h2>
            <p><code id="mcp-url">{v.mcp_url.clone()}</code></p>
            <div class="snippets">{setup}</div>
        </section>
        <section class="group" id="my-agents">
            <h2>"Your authorized agents"</h2>
            {if v.directory_user {
                consents_view(v.consents, revoke_consent).into_any()
            } else {
                view! {
                    <p id="agents-local-note" class="muted">"You are signed in with a local account. Agents act for people of the directory: sign in with your company account to authorize one."</p>
                }.into_any()
            }}
        </section>
        {v.directory_user.then(|| tokens_view(v.tokens, v.now, create_token, revoke_token))}
    }
}

fn consents_view(
    consents: Vec<toolgate_domain::model::Consent>,
    revoke: ServerAction<RevokeMyConsent>,
) -> impl IntoView {
    if consents.is_empty() {
        return view! { <p id="no-consents" class="muted">"No agent is authorized yet. The first time one connects, you approve it on a consent page."</p> }.into_any();
    }
    view! {
        <p class="muted small">"Revoking signs the agent out at once; it asks you again the next time it connects."</p>
        {action_error(revoke)}
        <table id="consents-table">
            <thead><tr><th>"Agent"</th><th>"Registered as"</th><th>"May"</th><th>"Authorized"</th><th>"Last used"</th><th></th></tr></thead>
            <tbody>
                {consents.into_iter().map(|c| {
                    let client_id = c.client_id.clone();
                    view! {
                    <tr data-client=c.client_id.clone()>
                        <td class="name">{c.client_name.clone()} <br/> <span class="muted small">{c.client_id.clone()}</span></td>
                        <td>{c.client_kind.map(kind_label).unwrap_or("removed client")}</td>
                        <td class="scopes">{c.scopes.join(" ")}</td>
                        <td>{when(Some(c.updated_at))}</td>
                        <td>{when(c.last_used_at)}</td>
                        <td>
                            <ActionForm action=revoke attr:class="inline">
                                <input type="hidden" name="client_id" value=client_id />
                                <button type="submit" class="danger revoke-consent">"Revoke"</button>
                            </ActionForm>
                        </td>
                    </tr>
                }}).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

fn tokens_view(
    tokens: Vec<toolgate_domain::model::ApiToken>,
    now: chrono::DateTime<chrono::Utc>,
    create: ServerAction<CreateMyToken>,
    revoke: ServerAction<RevokeMyToken>,
) -> impl IntoView {
    let live: Vec<_> = tokens.into_iter().filter(|t| !t.revoked).collect();
    view! {
        <section class="group" id="my-tokens">
            <h2>"Personal access tokens for scripts"</h2>
            <p class="muted small">"For scripts and tools that cannot sign in: send the token as " <code>"Authorization: Bearer …"</code> ". It acts as you, with your groups' permissions."</p>
            <ActionForm action=create attr:id="token-form">
                <label>"Name" <input type="text" name="name" required maxlength="64" placeholder="nightly-report" /></label>
                <label>"Expires after"
                    <select name="expires_in_days">
                        {TOKEN_LIFETIMES.into_iter().map(|d| match d {
                            Some(n) => view! { <option value=n.to_string() selected=n == 30>{format!("{n} days")}</option> }.into_any(),
                            None => view! { <option value="never">"never"</option> }.into_any(),
                        }).collect_view()}
                    </select>
                </label>
                <fieldset class="scopes"><legend>"May"</legend>
                    <label class="check"><input type="checkbox" name="scopes[]" value=Scopes::READ_NAME checked=true /> <code>{Scopes::READ_NAME}</code> " list tools, read resources and prompts"</label>
                    <label class="check"><input type="checkbox" name="scopes[]" value=Scopes::TOOLS_NAME checked=true /> <code>{Scopes::TOOLS_NAME}</code> " call tools"</label>
                </fieldset>
                <button type="submit">"Create token"</button>
            </ActionForm>
            {action_error(create)}
            {move || create.value().get().and_then(|r| r.ok()).map(|t| view! {
                <p class="notice">"Copy your token now; it is shown once: " <code id="new-token">{t}</code></p>
            })}
            {action_error(revoke)}
            {if live.is_empty() {
                view! { <p id="no-tokens" class="muted">"No personal tokens."</p> }.into_any()
            } else {
                view! {
                    <table id="tokens-table">
                        <thead><tr><th>"Name"</th><th>"Token"</th><th>"May"</th><th>"Created"</th><th>"Expires"</th><th>"Status"</th><th></th></tr></thead>
                        <tbody>
                            {live.into_iter().map(|t| {
                                let expired = t.expires_at.is_some_and(|at| at <= now);
                                let token_id = t.id.clone();
                                view! {
                                    <tr data-token=t.name.clone()>
                                        <td class="name">{t.name.clone()}</td>
                                        <td><code>{t.prefix.clone()} "…"</code></td>
                                        <td class="scopes">{t.scopes.join(" ")}</td>
                                        <td>{when(Some(t.created_at))}</td>
                                        <td class="expires">{t.expires_at.map(|e| when(Some(e))).unwrap_or_else(|| "never".into())}</td>
                                        <td class="status">{if expired { "expired" } else { "active" }}</td>
                                        <td>
                                            <ActionForm action=revoke attr:class="inline">
                                                <input type="hidden" name="token_id" value=token_id />
                                                <button type="submit" class="link">"revoke"</button>
                                            </ActionForm>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snippet_names_the_mcp_url() {
        let all = snippets("https://toolgate.example.com");
        let ids: Vec<_> = all.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [
                "snippet-claude",
                "snippet-vscode",
                "snippet-cursor",
                "snippet-generic"
            ]
        );
        for s in &all {
            assert!(
                s.text.contains("https://toolgate.example.com/mcp"),
                "{}",
                s.id
            );
        }
        let vscode: serde_json::Value = serde_json::from_str(&all[1].text).unwrap();
        assert_eq!(vscode["servers"]["toolgate"]["type"], "http");
        let cursor: serde_json::Value = serde_json::from_str(&all[2].text).unwrap();
        assert_eq!(
            cursor["mcpServers"]["toolgate"]["url"],
            "https://toolgate.example.com/mcp"
        );
        assert!(
            all[3]
                .text
                .contains("https://toolgate.example.com/.well-known/oauth-protected-resource/mcp")
        );
    }
}
