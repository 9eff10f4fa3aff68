//! Elevation profiles (admins): what each unlocks (connector, tool patterns, risk level), who
//! may ask, who decides, for how long; create, edit (`?edit=<id>`), delete with confirmation. And
//! the elevation settings: the notification webhook (write-only), its format, how long per-call
//! approvals stay valid, and whether agents may ask for elevations themselves.

use super::fns::{
    DeleteElevationProfile, ProfilesView, SaveElevationProfile, SaveElevationSettings,
    elevation_profiles,
};
use super::{minutes_text, targets_view};
use crate::pages::{ErrorNote, action_error, error_text};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use toolgate_domain::elevation::{
    ElevationProfile, MAX_PROFILE_MINUTES, ProfileTarget, WebhookFormat,
};
use toolgate_domain::model::{Connector, Group};
use toolgate_domain::risk::Risk;

/// Target rows the form offers beyond the profile's own, for new connectors.
const SPARE_TARGET_ROWS: usize = 2;

fn group_names(ids: &[String], groups: &[Group]) -> String {
    ids.iter()
        .map(|id| {
            groups
                .iter()
                .find(|g| &g.id == id)
                .map(|g| g.display_name.clone())
                .unwrap_or_else(|| id.clone())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[component]
pub fn ElevationProfilesPage() -> impl IntoView {
    let save = ServerAction::<SaveElevationProfile>::new();
    let delete = ServerAction::<DeleteElevationProfile>::new();
    let settings = ServerAction::<SaveElevationSettings>::new();
    // Reloaded after successful saves only: a refused one keeps what the admin typed.
    let saved = RwSignal::new(0u64);
    Effect::new(move |_| {
        if save.version().get() > 0 && matches!(save.value().get_untracked(), Some(Ok(_))) {
            saved.update(|n| *n += 1);
        }
    });
    let data = Resource::new(
        move || {
            (
                saved.get(),
                delete.version().get(),
                settings.version().get(),
            )
        },
        |_| elevation_profiles(),
    );
    view! {
        <h1>"Elevation profiles"</h1>
        <p class="muted">"Just-in-time access: a profile unlocks tools beyond a person's groups for a limited time, after an approver says yes. Blocks still win: an elevation only adds allows."</p>
        {action_error(delete)}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => page_view(v, save, delete, settings).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn page_view(
    v: ProfilesView,
    save: ServerAction<SaveElevationProfile>,
    delete: ServerAction<DeleteElevationProfile>,
    settings: ServerAction<SaveElevationSettings>,
) -> impl IntoView {
    let query = use_query_map();
    let groups = StoredValue::new(v.groups.clone());
    let connectors = StoredValue::new(v.connectors.clone());
    let profiles = StoredValue::new(v.profiles.clone());
    let confirming = RwSignal::new(None::<String>);
    let editing = move || {
        let id = query.with(|q| q.get("edit")).unwrap_or_default();
        profiles.with_value(|ps| ps.iter().find(|p| p.id == id).cloned())
    };
    let rows = v
        .profiles
        .iter()
        .map(|p| {
            let (id, del_id, name) = (p.id.clone(), p.id.clone(), p.name.clone());
            let is_confirming = move || confirming.get().as_deref() == Some(id.as_str());
            let ask_id = del_id.clone();
            view! {
                <tr data-profile=p.name.clone()>
                    <td class="name">{p.name.clone()}
                        {(!p.description.is_empty()).then(|| view! { <div class="muted small">{p.description.clone()}</div> })}</td>
                    <td class="targets">{targets_view(&p.targets)}</td>
                    <td>{group_names(&p.eligible_groups, &v.groups)}</td>
                    <td>{group_names(std::slice::from_ref(&p.approver_group), &v.groups)}</td>
                    <td>{minutes_text(p.max_minutes)}</td>
                    <td class="flags small">
                        {[
                            (p.justification_required, "justification"),
                            (p.ticket_required, "ticket"),
                            (p.auto_approve, "auto-approve"),
                            (p.requester_sets_duration, "requester sets duration"),
                        ].into_iter().filter(|(on, _)| *on).map(|(_, l)| l).collect::<Vec<_>>().join(", ")}
                    </td>
                    <td class="state">{if p.enabled { "enabled" } else { "disabled" }}</td>
                    <td class="actions">
                        <A href=format!("/elevation-profiles?edit={}", p.id)>"Edit"</A>
                        " "
                        {move || if is_confirming() {
                            let del_id = del_id.clone();
                            view! {
                                <span class="confirm-delete">
                                    {format!("Delete \"{name}\"? Pending requests are cancelled and active elevations revoked. ")}
                                    <ActionForm action=delete attr:class="inline">
                                        <input type="hidden" name="id" value=del_id />
                                        <button type="submit" class="danger confirm-delete-profile">"Yes, delete"</button>
                                    </ActionForm>
                                    " "
                                    <button type="button" class="link" on:click=move |_| confirming.set(None)>"Keep"</button>
                                </span>
                            }.into_any()
                        } else {
                            let ask_id = ask_id.clone();
                            view! {
                                <button type="button" class="link delete-profile" on:click=move |_| confirming.set(Some(ask_id.clone()))>"Delete…"</button>
                            }.into_any()
                        }}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        {if v.profiles.is_empty() {
            view! { <p class="muted" id="no-profiles">"No profiles yet."</p> }.into_any()
        } else {
            view! {
                <table id="profiles-table">
                    <thead><tr><th>"Name"</th><th>"Unlocks"</th><th>"Who may ask"</th><th>"Approvers"</th><th>"Up to"</th><th>"Requires"</th><th>"State"</th><th></th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }.into_any()
        }}
        <section class="group" id="profile-editor">
            {move || {
                let p = editing();
                let title = match &p {
                    Some(p) => format!("Edit \"{}\"", p.name),
                    None => "Create a profile".to_string(),
                };
                view! {
                    <h2>{title}</h2>
                    {p.is_some().then(|| view! { <p><A href="/elevation-profiles">"← Create a new profile instead"</A></p> })}
                    {groups.with_value(|g| connectors.with_value(|c| profile_form(p, g, c, save)))}
                }
            }}
            {action_error(save)}
            {move || save.value().get().and_then(|r| r.ok()).map(|p| view! {
                <p class="notice" id="profile-saved">{format!("Saved \"{}\".", p.name)}</p>
            })}
        </section>
        {settings_view(&v, settings)}
    }
}

fn profile_form(
    p: Option<ElevationProfile>,
    groups: &[Group],
    connectors: &[Connector],
    save: ServerAction<SaveElevationProfile>,
) -> impl IntoView + use<> {
    let id = p.as_ref().map(|p| p.id.clone()).unwrap_or_default();
    let mut targets: Vec<ProfileTarget> = p.as_ref().map(|p| p.targets.clone()).unwrap_or_default();
    targets.extend(std::iter::repeat_n(
        ProfileTarget::default(),
        SPARE_TARGET_ROWS,
    ));
    let eligible = p
        .as_ref()
        .map(|p| p.eligible_groups.clone())
        .unwrap_or_default();
    let approver = p
        .as_ref()
        .map(|p| p.approver_group.clone())
        .unwrap_or_default();
    let flag =
        |f: fn(&ElevationProfile) -> bool, default: bool| p.as_ref().map(f).unwrap_or(default);
    let (justification, ticket, choose, auto, enabled) = (
        flag(|p| p.justification_required, true),
        flag(|p| p.ticket_required, false),
        flag(|p| p.requester_sets_duration, true),
        flag(|p| p.auto_approve, false),
        flag(|p| p.enabled, true),
    );
    let name = p.as_ref().map(|p| p.name.clone()).unwrap_or_default();
    let max_minutes = p.as_ref().map(|p| p.max_minutes).unwrap_or(60).to_string();
    let description = p
        .as_ref()
        .map(|p| p.description.clone())
        .unwrap_or_default();
    let editing = p.is_some();
    let target_rows = targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let connector_options = connectors
                .iter()
                .map(|c| view! { <option value=c.name.clone() selected=c.name == t.connector>{c.name.clone()}</option> })
                .collect_view();
            let risk = t.max_risk.map(|r| r.as_str()).unwrap_or("");
            view! {
                <div class="row target-row" data-row=i.to_string()>
                    <label>"Connector"
                        <select name="target_connector[]">
                            <option value="" selected=t.connector.is_empty()>"(none)"</option>
                            {connector_options}
                        </select>
                    </label>
                    <label>"Tools (names or globs, comma or line separated)"
                        <textarea name="target_tools[]" rows="2" placeholder="get_*, list_repos">{t.tools.join(", ")}</textarea>
                    </label>
                    <label>"And every tool up to"
                        <select name="target_risk[]">
                            <option value="" selected=risk.is_empty()>"(no risk level)"</option>
                            {Risk::ALL.into_iter().map(|r| view! {
                                <option value=r.as_str() selected=risk == r.as_str()>{r.label()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                </div>
            }
        })
        .collect_view();
    let eligible_boxes = if groups.is_empty() {
        view! { <p class="muted small">"No groups yet: create one under Groups & policies."</p> }
            .into_any()
    } else {
        groups
            .iter()
            .map(|g| view! {
                <label class="check"><input type="checkbox" name="eligible_groups[]" value=g.id.clone() checked=eligible.contains(&g.id) /> {g.display_name.clone()}</label>
            })
            .collect_view()
            .into_any()
    };
    let approver_options = groups
        .iter()
        .map(|g| view! { <option value=g.id.clone() selected=g.id == approver>{g.display_name.clone()}</option> })
        .collect_view();
    view! {
        <ActionForm action=save attr:id="profile-form">
            <input type="hidden" name="id" value=id />
            <div class="row">
                <label>"Name" <input type="text" name="name" required maxlength="128" placeholder="github-secrets" value=name /></label>
                <label>"Maximum duration (minutes)" <input type="number" name="max_minutes" min="1" max=MAX_PROFILE_MINUTES.to_string() required value=max_minutes /></label>
            </div>
            <label>"Description" <textarea name="description" rows="2" maxlength="1024">{description}</textarea></label>
            <fieldset class="targets"><legend>"Unlocks (one connector per row; rows without a connector are ignored)"</legend>
                {target_rows}
            </fieldset>
            <fieldset class="groups"><legend>"Who may ask (members of these groups)"</legend>
                {eligible_boxes}
            </fieldset>
            <label>"Approver group (its members decide; nobody decides their own request)"
                <select name="approver_group" required>
                    <option value="" selected=approver.is_empty()>"(choose a group)"</option>
                    {approver_options}
                </select>
            </label>
            <fieldset class="flags"><legend>"Rules"</legend>
                <label class="check"><input type="checkbox" name="justification_required" value="on" checked=justification /> "Justification required"</label>
                <label class="check"><input type="checkbox" name="ticket_required" value="on" checked=ticket /> "Ticket reference required"</label>
                <label class="check"><input type="checkbox" name="requester_sets_duration" value="on" checked=choose /> "Requester may choose a shorter duration"</label>
                <label class="check"><input type="checkbox" name="auto_approve" value="on" checked=auto /> "Auto-approve (no approver; still audited and notified)"</label>
                <label class="check"><input type="checkbox" name="enabled" value="on" checked=enabled /> "Enabled"</label>
            </fieldset>
            <button type="submit" id="profile-save">{if editing { "Save profile" } else { "Create profile" }}</button>
        </ActionForm>
    }
}

fn settings_view(
    v: &ProfilesView,
    save: ServerAction<SaveElevationSettings>,
) -> impl IntoView + use<> {
    let s = v.settings.clone();
    let configured = v.webhook_configured;
    let current = s.webhook_format;
    let format = move |f: WebhookFormat, value: &'static str, label: &'static str| {
        view! { <option value=value selected=current == f>{label}</option> }
    };
    view! {
        <section class="group" id="elevation-settings">
            <h2>"Notifications and approvals"</h2>
            <ActionForm action=save attr:id="elevation-settings-form">
                <p class="small">"Webhook: " <span id="webhook-state" class=if configured { "badge ok-badge" } else { "badge" }>{if configured { "configured" } else { "not configured" }}</span></p>
                <label>{if configured { "New webhook URL (the stored one is never shown; leave empty to keep it)" } else { "Webhook URL (Slack, Teams or any JSON receiver)" }}
                    <input type="url" name="webhook_url" autocomplete="off" placeholder="https://hooks.slack.com/services/…" /></label>
                {configured.then(|| view! {
                    <label class="check"><input type="checkbox" name="clear_webhook" value="on" /> "Remove the webhook"</label>
                })}
                <div class="row">
                    <label>"Format"
                        <select name="webhook_format">
                            {format(WebhookFormat::Json, "json", "JSON")}
                            {format(WebhookFormat::Slack, "slack", "Slack")}
                            {format(WebhookFormat::Teams, "teams", "Microsoft Teams")}
                        </select>
                    </label>
                    <label>"Per-call approvals stay valid for (minutes)"
                        <input type="number" name="approval_ttl_minutes" min="1" max="1440" required value=s.approval_ttl_minutes.to_string() /></label>
                </div>
                <label class="check"><input type="checkbox" name="agent_requests" value="on" checked=s.agent_requests /> "Agents may ask for an elevation on their person's behalf (the " <code>"toolgate__request_elevation"</code> " tool)"</label>
                <button type="submit" id="elevation-settings-save">"Save settings"</button>
            </ActionForm>
            {action_error(save)}
            {move || save.value().get().and_then(|r| r.ok()).map(|_| view! { <p class="notice" id="elevation-settings-saved">"Saved."</p> })}
        </section>
    }
}
