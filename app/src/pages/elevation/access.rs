//! "My access", for everyone signed in: the person's groups, active elevations with the time
//! left (end one early), pending requests (withdraw), history, the profiles they may request
//! (`?profile=` preselects one, as in the links the gateway gives agents), and the calls of
//! their agents waiting for approval.

use super::fns::{EndMyElevation, MyAccessView, RequestElevation, get_my_access};
use super::{Countdown, approval_badge, elevation_badge, minutes_text, targets_view};
use crate::pages::{ErrorNote, action_error, error_text, when};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use toolgate_domain::elevation::{ApprovalStatus, Elevation, ElevationProfile, ElevationStatus};

#[component]
pub fn AccessPage() -> impl IntoView {
    let request = ServerAction::<RequestElevation>::new();
    let end = ServerAction::<EndMyElevation>::new();
    // Reloaded after successful requests only: a refused one keeps what the person typed.
    let requested = RwSignal::new(0u64);
    Effect::new(move |_| {
        if request.version().get() > 0 && matches!(request.value().get_untracked(), Some(Ok(_))) {
            requested.update(|n| *n += 1);
        }
    });
    let data = Resource::new(
        move || (requested.get(), end.version().get()),
        |_| get_my_access(),
    );
    view! {
        <h1>"My access"</h1>
        <p class="muted">"Your groups, your just-in-time elevations and the requests you made. Ask for an elevation when a task needs more than your groups allow; an approver decides, and it ends on its own."</p>
        {action_error(end)}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => access_view(v, request, end).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn access_view(
    v: MyAccessView,
    request: ServerAction<RequestElevation>,
    end: ServerAction<EndMyElevation>,
) -> impl IntoView {
    if !v.directory_user {
        return view! {
            <p class="notice" id="no-directory-identity">"You are signed in with a local break-glass account. It has no directory identity, so it has no groups, agents or elevations: sign in with your directory account to request an elevation."</p>
        }
        .into_any();
    }
    let now = v.now;
    let a = v.access;
    let (open, past): (Vec<Elevation>, Vec<Elevation>) = a.elevations.into_iter().partition(|e| {
        matches!(
            e.status_at(now),
            ElevationStatus::Active | ElevationStatus::Pending
        )
    });
    let groups = if a.groups.is_empty() {
        "none".to_string()
    } else {
        a.groups.join(", ")
    };
    view! {
        <section class="group" id="my-groups">
            <h2>"Groups"</h2>
            <p id="my-group-names">{groups}</p>
        </section>
        <section class="group" id="my-elevations">
            <h2>"Elevations and requests"</h2>
            {if open.is_empty() {
                view! { <p class="muted" id="no-open-elevations">"No active elevation and no pending request."</p> }.into_any()
            } else {
                view! {
                    <table id="open-elevations">
                        <thead><tr><th>"Profile"</th><th>"Status"</th><th>"Time"</th><th>"Justification"</th><th>"Requested"</th><th></th></tr></thead>
                        <tbody>{open.into_iter().map(|e| open_row(e, now, end)).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="group" id="request-elevation">
            <h2>"Request an elevation"</h2>
            {request_form(a.eligible, request)}
        </section>
        <section class="group" id="my-approvals">
            <h2>"Calls of your agents waiting for approval"</h2>
            {if a.approvals.is_empty() {
                view! { <p class="muted" id="no-my-approvals">"None."</p> }.into_any()
            } else {
                view! {
                    <table id="my-approvals-table">
                        <thead><tr><th>"Tool"</th><th>"Client"</th><th>"Status"</th><th>"Asked"</th><th>"Valid until"</th><th>"Decided by"</th><th>"Comment"</th></tr></thead>
                        <tbody>
                            {a.approvals.into_iter().map(|c| {
                                let status = c.status_at(now);
                                view! {
                                    <tr data-approval=c.id.clone() data-status=status.as_str()>
                                        <td><code>{format!("{}__{}", c.connector, c.tool)}</code></td>
                                        <td>{c.client_name.clone().unwrap_or_default()}</td>
                                        <td>{approval_badge(status)}</td>
                                        <td>{when(Some(c.created_at))}</td>
                                        <td>{(matches!(status, ApprovalStatus::Pending | ApprovalStatus::Approved)).then(|| when(Some(c.expires_at)))}</td>
                                        <td>{c.decided_by_name.clone().unwrap_or_default()}</td>
                                        <td>{c.comment.clone().unwrap_or_default()}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="group" id="my-history">
            <h2>"History"</h2>
            {if past.is_empty() {
                view! { <p class="muted" id="no-history">"Nothing yet."</p> }.into_any()
            } else {
                view! {
                    <table id="history-table">
                        <thead><tr><th>"Profile"</th><th>"Status"</th><th>"Duration"</th><th>"Requested"</th><th>"Decided by"</th><th>"Comment"</th></tr></thead>
                        <tbody>
                            {past.into_iter().map(|e| {
                                let status = e.status_at(now);
                                view! {
                                    <tr data-elevation=e.id.clone() data-status=status.as_str()>
                                        <td>{e.profile_name.clone()}</td>
                                        <td>{elevation_badge(status)}</td>
                                        <td>{minutes_text(e.minutes)}</td>
                                        <td>{when(Some(e.created_at))}</td>
                                        <td>{e.decided_by_name.clone().or(e.ended_by_name.clone()).unwrap_or_default()}</td>
                                        <td>{e.comment.clone().unwrap_or_default()}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

fn open_row(
    e: Elevation,
    now: chrono::DateTime<chrono::Utc>,
    end: ServerAction<EndMyElevation>,
) -> impl IntoView {
    let status = e.status_at(now);
    let active = status == ElevationStatus::Active;
    let time = match e.remaining_secs(now) {
        Some(secs) => view! { <Countdown secs=secs /> }.into_any(),
        None => view! { <span>{format!("{} asked", minutes_text(e.minutes))}</span> }.into_any(),
    };
    let id = e.id.clone();
    view! {
        <tr data-elevation=e.id.clone() data-profile=e.profile_name.clone() data-status=status.as_str()>
            <td class="profile">{e.profile_name.clone()}</td>
            <td>{elevation_badge(status)}</td>
            <td class="time">{time}</td>
            <td>{e.justification.clone()}{e.ticket.clone().map(|t| format!(" (ticket {t})"))}</td>
            <td>{when(Some(e.created_at))}</td>
            <td>
                <ActionForm action=end attr:class="inline">
                    <input type="hidden" name="id" value=id />
                    <button type="submit" class=if active { "danger end-elevation" } else { "secondary withdraw-request" }>
                        {if active { "End now" } else { "Withdraw" }}
                    </button>
                </ActionForm>
            </td>
        </tr>
    }
}

fn request_form(
    eligible: Vec<ElevationProfile>,
    request: ServerAction<RequestElevation>,
) -> impl IntoView {
    if eligible.is_empty() {
        return view! { <p class="muted" id="no-eligible">"None of your groups may request an elevation."</p> }.into_any();
    }
    let query = use_query_map();
    let asked = query
        .with_untracked(|q| q.get("profile"))
        .unwrap_or_default();
    let first = eligible
        .iter()
        .find(|p| p.name == asked || p.id == asked)
        .unwrap_or(&eligible[0])
        .name
        .clone();
    let selected = RwSignal::new(first);
    let profiles = StoredValue::new(eligible);
    let current =
        move || profiles.with_value(|ps| ps.iter().find(|p| p.name == selected.get()).cloned());
    view! {
        <ActionForm action=request attr:id="request-form">
            <label>"Profile"
                <select name="profile" id="request-profile" on:change=move |ev| selected.set(event_target_value(&ev))>
                    {profiles.with_value(|ps| ps.iter().map(|p| {
                        let name = p.name.clone();
                        view! { <option value=name.clone() selected=name == selected.get_untracked()>{name.clone()}</option> }
                    }).collect_view())}
                </select>
            </label>
            {move || current().map(|p| {
                let choose = p.requester_sets_duration;
                view! {
                    <div class="profile-summary" id="request-profile-summary">
                        {(!p.description.is_empty()).then(|| view! { <p class="muted">{p.description.clone()}</p> })}
                        <p class="small">"Unlocks:"</p>
                        {targets_view(&p.targets)}
                        <p class="small">{format!("Lasts up to {}.", minutes_text(p.max_minutes))}
                            {if p.auto_approve { " Granted at once (still audited)." } else { " An approver decides." }}</p>
                    </div>
                    <label>{if p.justification_required { "Justification (required)" } else { "Justification" }}
                        <textarea name="justification" rows="2" maxlength="2000" required=p.justification_required></textarea>
                    </label>
                    {p.ticket_required.then(|| view! {
                        <label>"Ticket (required)" <input type="text" name="ticket" maxlength="128" required placeholder="INC-1234" /></label>
                    })}
                    {choose.then(|| view! {
                        <label>{format!("Minutes (at most {})", p.max_minutes)}
                            <input type="number" name="minutes" min="1" max=p.max_minutes.to_string() value=p.max_minutes.to_string() />
                        </label>
                    })}
                }
            })}
            <button type="submit" id="request-submit">"Request"</button>
        </ActionForm>
        {action_error(request)}
        {move || request.value().get().and_then(|r| r.ok()).map(|e| view! {
            <p class="notice" id="request-result">{
                if e.status == ElevationStatus::Active {
                    format!("Elevation \"{}\" is active for {}.", e.profile_name, minutes_text(e.minutes))
                } else {
                    format!("Requested \"{}\" for {}: an approver has been told.", e.profile_name, minutes_text(e.minutes))
                }
            }</p>
        })}
    }
    .into_any()
}
