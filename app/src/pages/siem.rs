//! SIEM sink settings in the dashboard: add, test, enable, and watch delivery lag.
//!
//! `SiemSettings` is mounted on the Settings page (admins only). The server functions below check
//! the role first; changes are audited like the admin API's (`admin.siem.*`). Sending a test
//! event needs the server's transports, which the server provides as `SiemHooks` context.
// Server functions take one argument per form field; the add form has many.
#![allow(clippy::too_many_arguments)]

use super::{ErrorNote, action_error, error_text};
use leptos::prelude::*;
use toolgate_domain::siem::{SiemSink, SinkKind, SinkTestResult};

#[cfg(feature = "ssr")]
pub use hooks::{CheckConfig, SendTest, SiemHooks, TestFuture};

#[cfg(feature = "ssr")]
mod hooks {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use toolgate_domain::siem::{SinkConfig, SinkTestResult};

    /// The future of a test send: the result, or an error for the dashboard user.
    pub type TestFuture = Pin<Box<dyn Future<Output = Result<SinkTestResult, String>> + Send>>;

    /// Sends a test event to sink `id` on behalf of `who` (and audits it).
    pub type SendTest = Arc<dyn Fn(String, String) -> TestFuture + Send + Sync>;
    /// Checks what only the server can (CA certificates, URL host forms).
    pub type CheckConfig = Arc<dyn Fn(&SinkConfig) -> Result<(), String> + Send + Sync>;

    /// What the SIEM server functions need from the server, provided as Leptos context.
    #[derive(Clone)]
    pub struct SiemHooks {
        pub send_test: SendTest,
        pub check_config: CheckConfig,
    }

    impl std::fmt::Debug for SiemHooks {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("SiemHooks(..)")
        }
    }
}

/// Domain errors shown to the dashboard user; internal ones are logged and shown generically.
#[cfg(feature = "ssr")]
fn shown(e: toolgate_domain::Error) -> ServerFnError {
    use toolgate_domain::Error as E;
    match e {
        E::Invalid(m) | E::Conflict(m) | E::PreconditionFailed(m) => ServerFnError::new(m),
        E::NotFound(what) => ServerFnError::new(format!("{what} not found")),
        E::AuditUnavailable => ServerFnError::new("the audit log is unavailable"),
        other => {
            tracing::error!(error = %other, "SIEM server function failed");
            ServerFnError::new("internal error")
        }
    }
}

/// Audits a change made here: `admin.siem.*` with before and after (never the secret).
#[cfg(feature = "ssr")]
async fn record_change(
    ctx: &crate::auth::DashboardContext,
    who: &str,
    kind: &str,
    before: Option<&SiemSink>,
    after: Option<&SiemSink>,
) {
    let json = |s: Option<&SiemSink>| s.and_then(|s| serde_json::to_value(s).ok());
    crate::server_fns::record_change(ctx, who, kind, json(before), json(after)).await;
}

/// Every sink with its delivery state.
#[server(prefix = "/fn", endpoint = "siem_sinks")]
pub async fn siem_sinks() -> Result<Vec<SiemSink>, ServerFnError> {
    let (_, ctx) = crate::auth::require(crate::auth::Page::Settings).await?;
    ctx.store.list_siem_sinks().await.map_err(shown)
}

/// Adds a sink from the form; fields that do not belong to the chosen kind are ignored.
#[server(prefix = "/fn", endpoint = "siem_add")]
pub async fn siem_add(
    name: String,
    kind: String,
    host: String,
    port: String,
    tls: Option<String>,
    format: String,
    url: String,
    header_name: String,
    secret: String,
    ca_pem: String,
    only_new: Option<String>,
) -> Result<SiemSink, ServerFnError> {
    use toolgate_domain::siem::{NewSink, SinkConfig, SyslogFormat};
    let (user, ctx) = crate::auth::require(crate::auth::Page::Settings).await?;
    let kind = SinkKind::parse(kind.trim())
        .ok_or_else(|| ServerFnError::new(format!("unknown sink kind {kind:?}")))?;
    let given = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let config = match kind {
        SinkKind::SyslogTcp | SinkKind::SyslogUdp => {
            let port = given(port)
                .map(|p| p.parse::<u16>())
                .transpose()
                .map_err(|_| ServerFnError::new("port must be a number 1-65535"))?;
            let tls = kind == SinkKind::SyslogTcp && tls.is_some();
            SinkConfig {
                host: given(host),
                port,
                tls,
                format: Some(if format == "cef" {
                    SyslogFormat::Cef
                } else {
                    SyslogFormat::Rfc5424
                }),
                ca_pem: if kind == SinkKind::SyslogTcp {
                    given(ca_pem)
                } else {
                    None
                },
                ..SinkConfig::default()
            }
        }
        SinkKind::SplunkHec | SinkKind::Webhook => SinkConfig {
            url: given(url),
            header_name: if kind == SinkKind::Webhook {
                given(header_name)
            } else {
                None
            },
            ca_pem: given(ca_pem),
            ..SinkConfig::default()
        },
    };
    if let Some(hooks) = use_context::<SiemHooks>() {
        (hooks.check_config)(&config).map_err(ServerFnError::new)?;
    }
    let sink = ctx
        .store
        .create_siem_sink(NewSink {
            name,
            kind,
            config,
            secret: if kind.is_syslog() {
                None
            } else {
                given(secret)
            },
            enabled: true,
            start_at_head: only_new.is_some(),
        })
        .await
        .map_err(shown)?;
    tracing::info!(admin = %user.username, sink = %sink.name, "SIEM sink added from the dashboard");
    record_change(&ctx, &user.username, "admin.siem.create", None, Some(&sink)).await;
    Ok(sink)
}

/// Turns delivery to a sink on or off (the cursor stays).
#[server(prefix = "/fn", endpoint = "siem_set_enabled")]
pub async fn siem_set_enabled(id: String, enabled: bool) -> Result<(), ServerFnError> {
    let (user, ctx) = crate::auth::require(crate::auth::Page::Settings).await?;
    let before = ctx.store.get_siem_sink(&id).await.map_err(shown)?;
    let after = ctx
        .store
        .update_siem_sink(
            &id,
            toolgate_domain::siem::SinkUpdate {
                enabled: Some(enabled),
                ..Default::default()
            },
        )
        .await
        .map_err(shown)?;
    tracing::info!(admin = %user.username, sink = %after.name, enabled, "SIEM sink switched from the dashboard");
    record_change(
        &ctx,
        &user.username,
        "admin.siem.update",
        Some(&before),
        Some(&after),
    )
    .await;
    Ok(())
}

/// Deletes a sink.
#[server(prefix = "/fn", endpoint = "siem_delete")]
pub async fn siem_delete(id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = crate::auth::require(crate::auth::Page::Settings).await?;
    let before = ctx.store.delete_siem_sink(&id).await.map_err(shown)?;
    tracing::info!(admin = %user.username, sink = %before.name, "SIEM sink deleted from the dashboard");
    record_change(
        &ctx,
        &user.username,
        "admin.siem.delete",
        Some(&before),
        None,
    )
    .await;
    Ok(())
}

/// Sends a synthetic test event to one sink now and reports the outcome.
#[server(prefix = "/fn", endpoint = "siem_test")]
pub async fn siem_test(id: String) -> Result<SinkTestResult, ServerFnError> {
    let (user, _) = crate::auth::require(crate::auth::Page::Settings).await?;
    let hooks = use_context::<SiemHooks>()
        .ok_or_else(|| ServerFnError::new("sending test events is not available on this server"))?;
    (hooks.send_test)(id, user.username)
        .await
        .map_err(ServerFnError::new)
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

/// The sinks table, the test result, and the add form. Refreshes every 5 s.
#[component]
pub fn SiemSettings() -> impl IntoView {
    let add = ServerAction::<SiemAdd>::new();
    let set_enabled = ServerAction::<SiemSetEnabled>::new();
    let delete = ServerAction::<SiemDelete>::new();
    let test = ServerAction::<SiemTest>::new();
    let (tick, set_tick) = signal(0u64);
    // Effects run in the browser only: the interval never exists on the server.
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || set_tick.update(|t| *t += 1),
            std::time::Duration::from_secs(5),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let sinks = Resource::new(
        move || {
            (
                add.version().get(),
                set_enabled.version().get(),
                delete.version().get(),
                test.version().get(),
                tick.get(),
            )
        },
        |_| siem_sinks(),
    );
    let (kind, set_kind) = signal(SinkKind::SyslogTcp.as_str().to_string());
    let is_syslog = move || kind.get().starts_with("syslog_");
    let is_tcp = move || kind.get() == SinkKind::SyslogTcp.as_str();
    let is_http = move || !is_syslog();
    let is_webhook = move || kind.get() == SinkKind::Webhook.as_str();
    view! {
        <section class="group" id="siem">
            <h2>"SIEM streaming"</h2>
            <p class="muted">"Every audit event is sent to each enabled sink, in order. The audit log is the queue: while a SIEM is down nothing is lost, delivery resumes where it stopped."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match sinks.await {
                        Ok(list) if list.is_empty() => view! { <p id="no-siem-sinks">"No SIEM sinks yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table id="siem-table">
                                <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Target"</th><th>"Status"</th><th>"Delivered"</th><th>"Lag"</th><th>"Failures"</th><th>"Last error"</th><th>"Last success"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|s| {
                                        let enabled = s.enabled;
                                        let target = s.target();
                                        let (test_id, toggle_id, delete_id) = (s.id.clone(), s.id.clone(), s.id.clone());
                                        view! {
                                            <tr data-sink=s.name.clone()>
                                                <td class="name">{s.name.clone()}</td>
                                                <td>{s.kind.label()}</td>
                                                <td><code>{target}</code></td>
                                                <td class="status">{if enabled { "enabled" } else { "disabled" }}</td>
                                                <td class="delivered">{s.delivered}</td>
                                                <td class="lag">{s.lag}</td>
                                                <td class="failures">{s.failures}</td>
                                                <td class="last-error">{s.last_error.clone().unwrap_or_default()}</td>
                                                <td class="last-success">{when(s.last_success_at)}</td>
                                                <td>
                                                    <ActionForm action=test attr:class="inline">
                                                        <input type="hidden" name="id" value=test_id />
                                                        <button type="submit" class="siem-test">"Send test event"</button>
                                                    </ActionForm>
                                                    <ActionForm action=set_enabled attr:class="inline">
                                                        <input type="hidden" name="id" value=toggle_id />
                                                        <input type="hidden" name="enabled" value=if enabled { "false" } else { "true" } />
                                                        <button type="submit" class="siem-toggle">{if enabled { "Disable" } else { "Enable" }}</button>
                                                    </ActionForm>
                                                    <ActionForm action=delete attr:class="inline">
                                                        <input type="hidden" name="id" value=delete_id />
                                                        <button type="submit" class="link siem-delete">"delete"</button>
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
            </Transition>
            {move || test.value().get().map(|r| match r {
                Ok(res) => view! {
                    <p id="siem-test-result" class=if res.ok { "notice" } else { "error" } data-ok=if res.ok { "true" } else { "false" }>{res.message}</p>
                }.into_any(),
                Err(e) => view! { <p id="siem-test-result" class="error" data-ok="false">{error_text(&e)}</p> }.into_any(),
            })}
            {action_error(set_enabled)}
            {action_error(delete)}
            <h3>"Add a sink"</h3>
            <ActionForm action=add attr:id="siem-add">
                <label>"Name" <input type="text" name="name" required placeholder="corp-siem" maxlength="64" /></label>
                <label>"Kind"
                    <select name="kind" on:change=move |ev| set_kind.set(event_target_value(&ev))>
                        {SinkKind::ALL.into_iter().map(|k| view! { <option value=k.as_str()>{k.label()}</option> }).collect_view()}
                    </select>
                </label>
                <fieldset style:display=move || if is_syslog() { "" } else { "none" }>
                    <label>"Host" <input type="text" name="host" placeholder="siem.corp.example" /></label>
                    <label>"Port (default 514, 6514 with TLS)" <input type="text" name="port" inputmode="numeric" placeholder="514" /></label>
                    <label class="check" style:display=move || if is_tcp() { "" } else { "none" }><input type="checkbox" name="tls" value="on" /> "TLS"</label>
                    <label>"Format"
                        <select name="format">
                            <option value="rfc5424">"RFC 5424 (JSON message)"</option>
                            <option value="cef">"CEF"</option>
                        </select>
                    </label>
                </fieldset>
                <fieldset style:display=move || if is_http() { "" } else { "none" }>
                    <label>"URL" <input type="url" name="url" placeholder="https://splunk.corp:8088/services/collector/event" /></label>
                    <label style:display=move || if is_webhook() { "" } else { "none" }>"Header for the secret (default Authorization)" <input type="text" name="header_name" placeholder="Authorization" /></label>
                </fieldset>
                <label style:display=move || if is_http() { "" } else { "none" }>"Secret: HEC token, or the webhook header's value (stored encrypted, never shown again)"
                    <input type="password" name="secret" autocomplete="off" /></label>
                <label style:display=move || if is_http() || is_tcp() { "" } else { "none" }>"Private CA certificate (PEM, optional; when set only it is trusted)"
                    <textarea name="ca_pem" rows="3" placeholder="-----BEGIN CERTIFICATE-----"></textarea></label>
                <label class="check"><input type="checkbox" name="only_new" value="on" /> "Only events from now on (otherwise everything the audit log holds is sent)"</label>
                <button type="submit">"Add sink"</button>
            </ActionForm>
            {action_error(add)}
        </section>
    }
}
