//! The add-connector wizard: 1. transport and name; 2. where it is and its credentials, with
//! "Test connection" (lists the tools with the risk each would get, nothing saved); 3. create,
//! which also discovers the tools so they become the initial, approved catalog.

use super::fns::{AddConnector, ProbeConnector, ProbedTool, parse_env_lines};
use super::{risk_badge, truncate};
use crate::pages::error_text;
use leptos::prelude::*;
use leptos_router::components::A;
use toolgate_domain::model::Transport;

/// The wizard's fields, one signal each.
#[derive(Clone, Copy)]
struct Fields {
    name: RwSignal<String>,
    transport: RwSignal<String>,
    url: RwSignal<String>,
    command: RwSignal<String>,
    args: RwSignal<String>,
    headers: RwSignal<String>,
    env: RwSignal<String>,
    oauth_token_url: RwSignal<String>,
    oauth_client_id: RwSignal<String>,
    oauth_client_secret: RwSignal<String>,
    oauth_scope: RwSignal<String>,
    timeout_ms: RwSignal<String>,
    max_concurrency: RwSignal<String>,
}

impl Fields {
    fn new() -> Self {
        let s = || RwSignal::new(String::new());
        Fields {
            name: s(),
            transport: RwSignal::new(Transport::StreamableHttp.as_str().to_string()),
            url: s(),
            command: s(),
            args: s(),
            headers: s(),
            env: s(),
            oauth_token_url: s(),
            oauth_client_id: s(),
            oauth_client_secret: s(),
            oauth_scope: s(),
            timeout_ms: s(),
            max_concurrency: s(),
        }
    }

    /// Forgets everything typed (secrets included) after a connector was created.
    fn clear(&self) {
        for f in [
            self.name,
            self.url,
            self.command,
            self.args,
            self.headers,
            self.env,
            self.oauth_token_url,
            self.oauth_client_id,
            self.oauth_client_secret,
            self.oauth_scope,
            self.timeout_ms,
            self.max_concurrency,
        ] {
            f.set(String::new());
        }
        self.transport
            .set(Transport::StreamableHttp.as_str().to_string());
    }

    fn transport(&self) -> Transport {
        Transport::parse(&self.transport.get()).unwrap_or(Transport::StreamableHttp)
    }

    fn add(&self) -> AddConnector {
        let g = |s: RwSignal<String>| s.get_untracked();
        let o = |s: RwSignal<String>| Some(s.get_untracked());
        AddConnector {
            name: g(self.name).trim().to_string(),
            url: g(self.url),
            headers: g(self.headers),
            transport: o(self.transport),
            command: o(self.command),
            args: o(self.args),
            env: o(self.env),
            oauth_token_url: o(self.oauth_token_url),
            oauth_client_id: o(self.oauth_client_id),
            oauth_client_secret: o(self.oauth_client_secret),
            oauth_scope: o(self.oauth_scope),
            timeout_ms: o(self.timeout_ms),
            max_concurrency: o(self.max_concurrency),
            reviewed: None,
        }
    }

    fn probe(&self) -> ProbeConnector {
        let a = self.add();
        ProbeConnector {
            name: a.name,
            url: a.url,
            headers: a.headers,
            transport: a.transport,
            command: a.command,
            args: a.args,
            env: a.env,
            oauth_token_url: a.oauth_token_url,
            oauth_client_id: a.oauth_client_id,
            oauth_client_secret: a.oauth_client_secret,
            oauth_scope: a.oauth_scope,
            timeout_ms: a.timeout_ms,
            max_concurrency: a.max_concurrency,
        }
    }

    /// What is wrong with step `step` as typed, if anything (the server checks again).
    fn problem(&self, step: u8) -> Option<String> {
        match step {
            1 => toolgate_domain::names::validate_connector_name(self.name.get_untracked().trim())
                .err(),
            2 => {
                if self.transport() == Transport::Stdio {
                    if self.command.get_untracked().trim().is_empty() {
                        return Some("give the command to run".into());
                    }
                    parse_env_lines(&self.env.get_untracked()).err()
                } else {
                    let url = self.url.get_untracked();
                    let url = url.trim();
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Some("give the server's http:// or https:// URL".into());
                    }
                    crate::server_fns::parse_header_lines(&self.headers.get_untracked()).err()
                }
            }
            _ => None,
        }
    }
}

const STEPS: [&str; 3] = ["Transport & name", "Connection & credentials", "Create"];

#[component]
pub fn AddConnectorWizard(add: ServerAction<AddConnector>) -> impl IntoView {
    let f = Fields::new();
    let step = RwSignal::new(1u8);
    let problem = RwSignal::new(None::<String>);
    let probe = ServerAction::<ProbeConnector>::new();
    // Probe results from before the last reset are not shown.
    let probes_before = RwSignal::new(0usize);
    let probed = move || {
        (probe.version().get() > probes_before.get())
            .then(|| probe.value().get())
            .flatten()
    };
    let stdio = move || f.transport() == Transport::Stdio;
    let go = move |to: u8| {
        if to > step.get_untracked()
            && let Some(p) = f.problem(step.get_untracked())
        {
            problem.set(Some(p));
            return;
        }
        problem.set(None);
        step.set(to);
    };
    let create = move || {
        for s in [1, 2] {
            if let Some(p) = f.problem(s) {
                problem.set(Some(p));
                step.set(s);
                return;
            }
        }
        problem.set(None);
        // What the admin saw in the test: only those definitions are approved at creation.
        let reviewed = probed().and_then(|r| r.ok()).map(|tools| {
            tools
                .iter()
                .map(|t| t.hash.as_str())
                .collect::<Vec<_>>()
                .join(",")
        });
        add.dispatch(AddConnector {
            reviewed,
            ..f.add()
        });
    };
    // A created connector: forget what was typed (secrets included) and start over.
    Effect::new(move |_| {
        if let Some(Ok(_)) = add.value().get() {
            f.clear();
            probes_before.set(probe.version().get_untracked());
            step.set(1);
        }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let s = step.get_untracked();
        if s < 3 { go(s + 1) } else { create() }
    };
    let shown = move |s: u8| move || if step.get() == s { "" } else { "none" };
    view! {
        <section class="group wizard" id="add-connector-wizard">
            <h2>"Add a connector"</h2>
            <ol class="steps">
                {STEPS.iter().enumerate().map(|(i, label)| {
                    let n = i as u8 + 1;
                    view! { <li class:current=move || step.get() == n class:done={move || step.get() > n}>{*label}</li> }
                }).collect_view()}
            </ol>
            {move || add.value().get().map(|r| match r {
                Ok(c) => {
                    let href = format!("/connectors/{}", c.connector.name);
                    match c.discovery {
                        Ok(sync) => view! {
                            <p class="notice" id="create-result" data-ok="true">
                                "Connector " <A href=href>{c.connector.name.clone()}</A> " created. "
                                {format!("{} tools discovered and approved as its initial catalog.", sync.added.len())}
                            </p>
                        }.into_any(),
                        Err(e) => view! {
                            <p class="error" id="create-result" data-ok="false">
                                "Connector " <A href=href>{c.connector.name.clone()}</A> " created, but its tools could not be listed: "
                                {e} ". Use “Refresh tools” on its page once it is reachable."
                            </p>
                        }.into_any(),
                    }
                }
                Err(e) => view! { <p class="error" role="alert" id="create-error">{error_text(&e)}</p> }.into_any(),
            })}
            <form id="add-connector" on:submit=on_submit autocomplete="off">
                <fieldset style:display=shown(1)>
                    <legend>"1. Transport and name"</legend>
                    <div class="choices" role="radiogroup">
                        {[
                            (Transport::StreamableHttp, "Streamable HTTP", "A remote MCP server at an https:// URL (current spec)."),
                            (Transport::Sse, "SSE", "A remote server speaking the older HTTP+SSE transport."),
                            (Transport::Stdio, "stdio", "A local command the gateway runs and supervises."),
                        ].into_iter().map(|(t, label, what)| view! {
                            <label class="check choice">
                                <input type="radio" name="transport" value=t.as_str()
                                    prop:checked=move || f.transport.get() == t.as_str()
                                    on:change=move |_| f.transport.set(t.as_str().to_string()) />
                                <span><strong>{label}</strong> <span class="muted small">" " {what}</span></span>
                            </label>
                        }).collect_view()}
                    </div>
                    <label>"Name (agents see its tools as name__tool)"
                        <input type="text" name="name" placeholder="github" maxlength="32" bind:value=f.name />
                    </label>
                </fieldset>
                <fieldset style:display=shown(2)>
                    <legend>"2. Connection and credentials"</legend>
                    <label style:display=move || if stdio() { "none" } else { "" }>"URL"
                        <input type="url" name="url" placeholder="https://mcp.example.com/mcp" bind:value=f.url />
                    </label>
                    <label style:display=move || if stdio() { "" } else { "none" }>"Command"
                        <input type="text" name="command" placeholder="npx" bind:value=f.command />
                    </label>
                    <label style:display=move || if stdio() { "" } else { "none" }>"Arguments (one per line)"
                        <textarea name="args" rows="3" placeholder="-y\n@modelcontextprotocol/server-github" bind:value=f.args></textarea>
                    </label>
                    <label style:display=move || if stdio() { "none" } else { "" }>"Headers (one 'Name: value' per line; stored encrypted, never shown again)"
                        <textarea name="headers" rows="3" placeholder="Authorization: Bearer …" bind:value=f.headers></textarea>
                    </label>
                    <label style:display=move || if stdio() { "" } else { "none" }>"Environment (one 'NAME=value' per line; stored encrypted, never shown again)"
                        <textarea name="env" rows="3" placeholder="GITHUB_TOKEN=…" bind:value=f.env></textarea>
                    </label>
                    <details class="oauth">
                        <summary>"OAuth client credentials (optional)"</summary>
                        <p class="muted small">"The gateway fetches and refreshes the upstream's access tokens itself."</p>
                        <label>"Token URL" <input type="url" name="oauth_token_url" placeholder="https://login.example.com/oauth2/token" bind:value=f.oauth_token_url /></label>
                        <label>"Client id" <input type="text" name="oauth_client_id" bind:value=f.oauth_client_id /></label>
                        <label>"Client secret (stored encrypted, never shown again)" <input type="password" name="oauth_client_secret" autocomplete="new-password" bind:value=f.oauth_client_secret /></label>
                        <label>"Scope (space-separated)" <input type="text" name="oauth_scope" bind:value=f.oauth_scope /></label>
                    </details>
                    <div class="row">
                        <label>"Timeout (ms)" <input type="number" name="timeout_ms" min="100" placeholder="30000" bind:value=f.timeout_ms /></label>
                        <label>"Max concurrent requests" <input type="number" name="max_concurrency" min="1" placeholder="32" bind:value=f.max_concurrency /></label>
                    </div>
                    <div class="row">
                        <button type="button" class="secondary" id="test-connection"
                            disabled=move || probe.pending().get()
                            on:click=move |_| {
                                match f.problem(1).or_else(|| f.problem(2)) {
                                    Some(p) => problem.set(Some(p)),
                                    None => {
                                        problem.set(None);
                                        probe.dispatch(f.probe());
                                    }
                                }
                            }>"Test connection"</button>
                        {move || probe.pending().get().then(|| view! { <span class="muted" id="probe-pending">"Connecting…"</span> })}
                    </div>
                    {move || probed().map(|r| match r {
                        Ok(tools) => probe_table(tools).into_any(),
                        Err(e) => view! { <p class="error" id="probe-error">"Test failed: " {error_text(&e)}</p> }.into_any(),
                    })}
                </fieldset>
                <fieldset style:display=shown(3)>
                    <legend>"3. Create"</legend>
                    {move || summary(f, probed().and_then(|r| r.ok()).map(|t| t.len()))}
                </fieldset>
                {move || problem.get().map(|p| view! { <p class="error" role="alert" id="wizard-problem">{p}</p> })}
                <div class="row">
                    <button type="button" class="secondary" id="wizard-back" style:display={move || if step.get() > 1 { "" } else { "none" }}
                        on:click=move |_| go(step.get_untracked() - 1)>"Back"</button>
                    <button type="submit" id="wizard-next" style:display={move || if step.get() < 3 { "" } else { "none" }}>"Next"</button>
                    <button type="submit" id="create-connector" style:display=move || if step.get() == 3 { "" } else { "none" }
                        disabled=move || add.pending().get()>"Create connector"</button>
                </div>
            </form>
        </section>
    }
}

fn probe_table(tools: Vec<ProbedTool>) -> impl IntoView {
    view! {
        <div id="probe-result">
            <p class="notice" id="probe-ok">{format!("Connected: {} tools found. Each shows the risk level it will get (you can change it on the connector's page).", tools.len())}</p>
            <table id="probe-tools">
                <thead><tr><th>"Tool"</th><th>"Description"</th><th>"Suggested risk"</th><th>"Why"</th></tr></thead>
                <tbody>
                    {tools.into_iter().map(|t| view! {
                        <tr data-tool=t.name.clone() data-risk=t.risk.as_str()>
                            <td class="tool"><code>{t.name.clone()}</code></td>
                            <td class="muted small" title=t.description.clone()>{truncate(&t.description, 100)}</td>
                            <td class="risk">{risk_badge(t.risk)}</td>
                            <td class="reason muted small">{t.risk_reason.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// What will be created, secret values left out.
fn summary(f: Fields, tested: Option<usize>) -> impl IntoView {
    let t = f.transport();
    let names = |r: Result<std::collections::BTreeMap<String, String>, String>| {
        r.map(|m| m.into_keys().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let (where_, secrets) = if t == Transport::Stdio {
        let mut line = vec![f.command.get()];
        line.extend(super::fns::parse_args(&f.args.get()));
        (line.join(" "), names(parse_env_lines(&f.env.get())))
    } else {
        (
            f.url.get(),
            names(crate::server_fns::parse_header_lines(&f.headers.get())),
        )
    };
    let oauth = f.oauth_token_url.with(|u| !u.trim().is_empty());
    view! {
        <dl class="summary" id="wizard-summary">
            <dt>"Name"</dt><dd>{f.name.get()}</dd>
            <dt>"Transport"</dt><dd>{super::transport_label(t)}</dd>
            <dt>{if t == Transport::Stdio { "Command" } else { "URL" }}</dt><dd><code>{where_}</code></dd>
            <dt>{if t == Transport::Stdio { "Environment" } else { "Headers" }}</dt>
            <dd>{if secrets.is_empty() { "none".to_string() } else { format!("{secrets} (values stored encrypted)") }}</dd>
            <dt>"OAuth"</dt><dd>{if oauth { format!("client {} (secret stored encrypted)", f.oauth_client_id.get()) } else { "none".into() }}</dd>
        </dl>
        <p class="muted small">{match tested {
            Some(n) => format!("The test found {n} tools. Creating the connector lists them again: the tools it offers now are approved as its initial catalog; tools that appear later wait for review."),
            None => "Not tested. Creating the connector lists its tools: those it offers now are approved as its initial catalog; tools that appear later wait for review.".to_string(),
        }}</p>
    }
}
