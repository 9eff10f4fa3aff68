//! Data-loss prevention settings in the dashboard: which detectors run, what happens to a
//! finding (redact, block, log only) by default, per connector and per group, custom patterns.

use super::{ErrorNote, action_error, error_text};
use leptos::prelude::*;
use toolgate_domain::dlp::{BUILTIN_DETECTORS, DlpAction, DlpSettings};

fn action_name(a: DlpAction) -> &'static str {
    match a {
        DlpAction::LogOnly => "log_only",
        DlpAction::Redact => "redact",
        DlpAction::Block => "block",
    }
}

#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
fn parse_action(s: &str) -> Result<DlpAction, String> {
    match s.trim() {
        "log_only" | "log" => Ok(DlpAction::LogOnly),
        "redact" => Ok(DlpAction::Redact),
        "block" => Ok(DlpAction::Block),
        other => Err(format!(
            "{other:?} is not an action (redact, block or log_only)"
        )),
    }
}

/// `name = value` lines, blank lines skipped.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("line {} must look like 'name = value'", i + 1))
        })
        .collect()
}

#[server(prefix = "/fn", endpoint = "dlp_settings")]
pub async fn get_dlp() -> Result<DlpSettings, ServerFnError> {
    let (_, ctx) = crate::auth::require_admin().await?;
    Ok(ctx
        .store
        .setting(toolgate_domain::store::setting_keys::DLP)
        .await
        .map_err(crate::server_fns::shown)?
        .unwrap_or_default())
}

/// Saves the DLP settings; a pattern that does not compile or an unknown name changes nothing.
#[server(prefix = "/fn", endpoint = "save_dlp")]
#[allow(clippy::too_many_arguments)]
pub async fn save_dlp(
    enabled: Option<String>,
    scan_arguments: Option<String>,
    default_action: String,
    detectors: Option<Vec<String>>,
    connector_actions: String,
    group_actions: String,
    custom: String,
) -> Result<(), ServerFnError> {
    use toolgate_domain::dlp::CustomDetector;
    let (user, ctx) = crate::auth::require_admin().await?;
    let e = |m: String| ServerFnError::new(m);
    let settings = DlpSettings {
        enabled: enabled.is_some(),
        scan_arguments: scan_arguments.is_some(),
        default_action: parse_action(&default_action).map_err(e)?,
        detectors: detectors.unwrap_or_default(),
        connector_actions: pairs(&connector_actions)
            .map_err(e)?
            .into_iter()
            .map(|(k, v)| parse_action(&v).map(|a| (k, a)))
            .collect::<Result<_, _>>()
            .map_err(e)?,
        group_actions: pairs(&group_actions)
            .map_err(e)?
            .into_iter()
            .map(|(k, v)| parse_action(&v).map(|a| (k, a)))
            .collect::<Result<_, _>>()
            .map_err(e)?,
        custom: pairs(&custom)
            .map_err(e)?
            .into_iter()
            .map(|(name, pattern)| CustomDetector { name, pattern })
            .collect(),
    };
    settings.validate().map_err(e)?;
    toolgate_domain::dlp::Scanner::new(&settings).map_err(e)?;
    let key = toolgate_domain::store::setting_keys::DLP;
    let before: Option<DlpSettings> = ctx
        .store
        .setting(key)
        .await
        .map_err(crate::server_fns::shown)?;
    ctx.store
        .put_setting(key, &settings)
        .await
        .map_err(crate::server_fns::shown)?;
    crate::server_fns::changed(&ctx).await;
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.settings.dlp",
        serde_json::to_value(before.unwrap_or_default()).ok(),
        serde_json::to_value(&settings).ok(),
    )
    .await;
    Ok(())
}

/// The DLP section of the Settings page.
#[component]
pub fn DlpSection() -> impl IntoView {
    let save = ServerAction::<SaveDlp>::new();
    let data = Resource::new(move || save.version().get(), |_| get_dlp());
    let lines = |m: &std::collections::BTreeMap<String, DlpAction>| {
        m.iter()
            .map(|(k, a)| format!("{k} = {}", action_name(*a)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    view! {
        <section class="group" id="dlp">
            <h2>"Data-loss prevention"</h2>
            <p class="muted small">"Tool responses (text and structured content) are scanned for secrets and personal data before they reach the agent. Findings are counted in the audit log by type, never the matched text. The strictest action of the connector's and the caller's groups' applies."</p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(s) => view! {
                            <ActionForm action=save attr:id="dlp-form">
                                <label class="check"><input type="checkbox" name="enabled" value="on" checked=s.enabled /> "Scan tool traffic"</label>
                                <label class="check"><input type="checkbox" name="scan_arguments" value="on" checked=s.scan_arguments /> "Also act on arguments (they are always redacted in the audit log)"</label>
                                <label>"Default action"
                                    <select name="default_action">
                                        {[DlpAction::Redact, DlpAction::Block, DlpAction::LogOnly].into_iter().map(|a| view! {
                                            <option value=action_name(a) selected=s.default_action == a>{action_name(a)}</option>
                                        }).collect_view()}
                                    </select>
                                </label>
                                <fieldset class="detectors"><legend>"Detectors"</legend>
                                    {BUILTIN_DETECTORS.iter().map(|d| view! {
                                        <label class="check"><input type="checkbox" name="detectors[]" value=*d checked=s.detectors.iter().any(|x| x == d) /> {*d}</label>
                                    }).collect_view()}
                                </fieldset>
                                <label>"Per connector (connector = redact | block | log_only, one per line)"
                                    <textarea name="connector_actions" rows="3">{lines(&s.connector_actions)}</textarea></label>
                                <label>"Per group (group name = action, one per line)"
                                    <textarea name="group_actions" rows="3">{lines(&s.group_actions)}</textarea></label>
                                <label>"Custom detectors (name = regular expression, one per line)"
                                    <textarea name="custom" rows="3">{s.custom.iter().map(|c| format!("{} = {}", c.name, c.pattern)).collect::<Vec<_>>().join("\n")}</textarea></label>
                                <button type="submit" id="dlp-save">"Save DLP settings"</button>
                            </ActionForm>
                            <div id="dlp-error">{action_error(save)}</div>
                        }.into_any(),
                        Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_or_name_the_bad_one() {
        assert_eq!(
            pairs("a = b\n\n c=d ").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        assert!(pairs("a b").unwrap_err().contains("line 1"));
        assert!(parse_action("maybe").is_err());
        assert_eq!(parse_action(" block ").unwrap(), DlpAction::Block);
    }
}
