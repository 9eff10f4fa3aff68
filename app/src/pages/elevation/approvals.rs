//! The approvals inbox (approvers and admins): pending elevation requests with the requester,
//! the profile's contents, justification, ticket, duration and the subject's recent activity;
//! calls waiting for approval with caller, tool and the arguments after DLP redaction; approve or
//! deny with a comment; active elevations with "Revoke"; history with filters.

use super::fns::{
    DecideCall, DecideElevation, InboxView, PendingRequest, RevokeElevation, approvals_inbox,
};
use super::{
    ApprovalTick, Countdown, approval_badge, elevation_badge, minutes_text, pretty_json,
    targets_view,
};
use crate::pages::{ErrorNote, action_error, error_text, when};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use toolgate_domain::elevation::{CallApproval, Elevation};
use toolgate_domain::model::{AuditEvent, Group};

/// Bumps the navigation's count after each finished decision.
fn bump_after<I, O>(action: ServerAction<I>)
where
    I: leptos::server_fn::ServerFn<Output = O, Error = ServerFnError>
        + Clone
        + Send
        + Sync
        + 'static,
    O: Clone + Send + Sync + 'static,
{
    if let Some(ApprovalTick(tick)) = use_context::<ApprovalTick>() {
        Effect::new(move |_| {
            if action.version().get() > 0 {
                tick.update(|n| *n += 1);
            }
        });
    }
}

fn group_name(id: &str, groups: &[Group]) -> String {
    groups
        .iter()
        .find(|g| g.id == id)
        .map(|g| g.display_name.clone())
        .unwrap_or_else(|| id.to_string())
}

#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let query = use_query_map();
    let decide = ServerAction::<DecideElevation>::new();
    let decide_call = ServerAction::<DecideCall>::new();
    let revoke = ServerAction::<RevokeElevation>::new();
    bump_after(decide);
    bump_after(decide_call);
    bump_after(revoke);
    let value = move |k: &'static str| query.with(|q| q.get(k).unwrap_or_default());
    let data = Resource::new(
        move || {
            (
                value("status"),
                value("kind"),
                decide.version().get(),
                decide_call.version().get(),
                revoke.version().get(),
            )
        },
        |(status, kind, ..)| approvals_inbox(status, kind),
    );
    view! {
        <h1>"Approvals"</h1>
        <p class="muted">"Elevation requests and calls waiting for a decision by your approver groups. Nobody decides their own request."</p>
        <form method="get" action="/approvals" id="approvals-filter" class="filters">
            <label>"Show"
                <select name="kind" prop:value=move || value("kind")>
                    <option value="">"elevations and calls"</option>
                    <option value="elevations">"elevation requests"</option>
                    <option value="calls">"calls"</option>
                </select>
            </label>
            <label>"History status"
                <select name="status" prop:value=move || value("status")>
                    <option value="">"any"</option>
                    {["denied", "revoked", "ended", "cancelled", "expired", "approved", "used"].into_iter().map(|s| view! {
                        <option value=s>{s}</option>
                    }).collect_view()}
                </select>
            </label>
            <button type="submit" id="approvals-filter-go">"Filter"</button>
            <a href="/approvals" class="muted">"Clear"</a>
        </form>
        <div id="approvals-errors">
            {action_error(decide)}
            {action_error(decide_call)}
            {action_error(revoke)}
        </div>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => inbox_view(v, decide, decide_call, revoke).into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn inbox_view(
    v: InboxView,
    decide: ServerAction<DecideElevation>,
    decide_call: ServerAction<DecideCall>,
    revoke: ServerAction<RevokeElevation>,
) -> impl IntoView {
    let now = v.now;
    let groups = v.groups;
    let can_decide = v.can_decide;
    view! {
        {(!can_decide).then(|| view! {
            <p class="notice" id="local-cannot-approve">"You are signed in with a local break-glass account: it has no directory identity, so it cannot approve or deny (separation of duties is checked against directory groups). You may still revoke active elevations."</p>
        })}
        <section class="group" id="pending-elevations">
            <h2>"Elevation requests " <span class="badge">{v.pending.len()}</span></h2>
            {if v.pending.is_empty() {
                view! { <p class="muted" id="no-pending-elevations">"Nothing waits for you."</p> }.into_any()
            } else {
                v.pending.into_iter().map(|p| pending_card(p, &groups, can_decide, decide)).collect_view().into_any()
            }}
        </section>
        <section class="group" id="pending-calls">
            <h2>"Calls waiting for approval " <span class="badge">{v.calls.len()}</span></h2>
            {if v.calls.is_empty() {
                view! { <p class="muted" id="no-pending-calls">"Nothing waits for you."</p> }.into_any()
            } else {
                v.calls.into_iter().map(|c| call_card(c, &groups, can_decide, decide_call)).collect_view().into_any()
            }}
        </section>
        <section class="group" id="active-elevations">
            <h2>"Active elevations"</h2>
            {if v.active.is_empty() {
                view! { <p class="muted" id="no-active-elevations">"None."</p> }.into_any()
            } else {
                view! {
                    <table id="active-table">
                        <thead><tr><th>"Subject"</th><th>"Profile"</th><th>"Time left"</th><th>"Approved by"</th><th></th></tr></thead>
                        <tbody>{v.active.into_iter().map(|e| active_row(e, now, revoke)).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="group" id="approvals-history">
            <h2>"History"</h2>
            {history_view(v.history, v.call_history, now)}
        </section>
    }
}

fn pending_card(
    p: PendingRequest,
    groups: &[Group],
    can_decide: bool,
    decide: ServerAction<DecideElevation>,
) -> impl IntoView {
    let e = p.elevation;
    let id = e.id.clone();
    let approver = p
        .profile
        .as_ref()
        .map(|pr| group_name(&pr.approver_group, groups))
        .unwrap_or_default();
    view! {
        <article class="request card" data-elevation=e.id.clone() data-subject=e.subject_name.clone() data-profile=e.profile_name.clone()>
            <h3>{e.subject_name.clone()} " asks for " <strong>{e.profile_name.clone()}</strong></h3>
            <dl class="summary">
                <dt>"Subject"</dt><dd class="subject">{format!("{} ({})", e.subject_name, e.subject_kind.replace('_', " "))}</dd>
                <dt>"Requested by"</dt><dd class="requester">{e.requested_by_name.clone()} <span class="muted small">{format!(" via {}", e.source)}</span></dd>
                <dt>"Justification"</dt><dd class="justification">{e.justification.clone()}</dd>
                <dt>"Ticket"</dt><dd class="ticket">{e.ticket.clone().unwrap_or_else(|| "none".into())}</dd>
                <dt>"Duration"</dt><dd class="duration">{minutes_text(e.minutes)}</dd>
                <dt>"Asked"</dt><dd>{when(Some(e.created_at))}</dd>
                <dt>"Unlocks"</dt>
                <dd class="profile-contents">{match &p.profile {
                    Some(pr) => view! { {targets_view(&pr.targets)} <span class="muted small">{format!("Approver group: {approver}")}</span> }.into_any(),
                    None => view! { <span class="muted">"profile deleted"</span> }.into_any(),
                }}</dd>
            </dl>
            <details class="activity" open=true>
                <summary>"Recent activity of " {e.subject_name.clone()}</summary>
                {activity_view(p.activity)}
            </details>
            {if can_decide {
                view! {
                    <ActionForm action=decide attr:class="decision">
                        <input type="hidden" name="id" value=id />
                        <label>"Comment" <input type="text" name="comment" maxlength="1000" placeholder="optional" /></label>
                        <button type="submit" name="approve" value="true" class="approve">"Approve"</button>
                        " "
                        <button type="submit" name="approve" value="false" class="danger deny">"Deny"</button>
                    </ActionForm>
                }.into_any()
            } else {
                ().into_any()
            }}
        </article>
    }
}

fn call_card(
    c: CallApproval,
    groups: &[Group],
    can_decide: bool,
    decide: ServerAction<DecideCall>,
) -> impl IntoView {
    let id = c.id.clone();
    let args = c
        .args_redacted
        .as_deref()
        .map(pretty_json)
        .unwrap_or_else(|| "(no arguments recorded)".into());
    view! {
        <article class="call card" data-approval=c.id.clone() data-subject=c.subject_name.clone() data-tool=c.tool.clone()>
            <h3>{c.subject_name.clone()} " calls " <code>{format!("{}__{}", c.connector, c.tool)}</code></h3>
            <dl class="summary">
                <dt>"Caller"</dt><dd class="caller">{format!("{} ({})", c.subject_name, c.subject_kind.replace('_', " "))}</dd>
                <dt>"Client"</dt><dd class="client">{c.client_name.clone().unwrap_or_else(|| "unknown".into())}</dd>
                <dt>"Connector"</dt><dd class="connector">{c.connector.clone()}</dd>
                <dt>"Tool"</dt><dd class="tool">{c.tool.clone()}</dd>
                <dt>"Approver group"</dt><dd>{group_name(&c.approver_group, groups)}</dd>
                <dt>"Asked"</dt><dd>{when(Some(c.created_at))}</dd>
                <dt>"Expires"</dt><dd class="expires">{when(Some(c.expires_at))}</dd>
                <dt>"Arguments hash"</dt><dd><code class="small">{c.args_hash.clone()}</code></dd>
            </dl>
            <p class="small">"Arguments (after DLP redaction):"</p>
            <pre class="args">{args}</pre>
            {if can_decide {
                view! {
                    <ActionForm action=decide attr:class="decision">
                        <input type="hidden" name="id" value=id />
                        <label>"Comment" <input type="text" name="comment" maxlength="1000" placeholder="optional" /></label>
                        <button type="submit" name="approve" value="true" class="approve">"Approve"</button>
                        " "
                        <button type="submit" name="approve" value="false" class="danger deny">"Deny"</button>
                    </ActionForm>
                }.into_any()
            } else {
                ().into_any()
            }}
        </article>
    }
}

fn active_row(
    e: Elevation,
    now: chrono::DateTime<chrono::Utc>,
    revoke: ServerAction<RevokeElevation>,
) -> impl IntoView {
    let id = e.id.clone();
    let left = e.remaining_secs(now).unwrap_or(0);
    view! {
        <tr data-elevation=e.id.clone() data-subject=e.subject_name.clone()>
            <td>{e.subject_name.clone()}</td>
            <td>{e.profile_name.clone()}</td>
            <td><Countdown secs=left /></td>
            <td>{e.decided_by_name.clone().unwrap_or_else(|| "auto-approved".into())}
                {e.comment.clone().map(|c| view! { <div class="muted small">{c}</div> })}</td>
            <td>
                <ActionForm action=revoke attr:class="inline">
                    <input type="hidden" name="id" value=id />
                    <button type="submit" class="danger revoke">"Revoke"</button>
                </ActionForm>
            </td>
        </tr>
    }
}

fn activity_view(events: Vec<AuditEvent>) -> impl IntoView {
    if events.is_empty() {
        return view! { <p class="muted small">"No recorded activity."</p> }.into_any();
    }
    view! {
        <table class="activity-table">
            <thead><tr><th>"Time (UTC)"</th><th>"Event"</th><th>"Connector"</th><th>"Tool"</th><th>"Decision"</th></tr></thead>
            <tbody>
                {events.into_iter().map(|e| view! {
                    <tr class=format!("decision-{}", e.decision.as_str())>
                        <td>{e.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                        <td class="kind">{e.kind}</td>
                        <td>{e.connector.unwrap_or_default()}</td>
                        <td>{e.tool.unwrap_or_default()}</td>
                        <td class="decision">{e.decision.as_str()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

fn history_view(
    elevations: Vec<Elevation>,
    calls: Vec<CallApproval>,
    now: chrono::DateTime<chrono::Utc>,
) -> impl IntoView {
    if elevations.is_empty() && calls.is_empty() {
        return view! { <p class="muted" id="no-approvals-history">"Nothing matches."</p> }
            .into_any();
    }
    view! {
        {(!elevations.is_empty()).then(|| view! {
            <h3>"Elevations"</h3>
            <table id="history-elevations">
                <thead><tr><th>"Subject"</th><th>"Profile"</th><th>"Status"</th><th>"Duration"</th><th>"Asked"</th><th>"Decided by"</th><th>"Comment"</th></tr></thead>
                <tbody>
                    {elevations.into_iter().map(|e| {
                        let status = e.status_at(now);
                        view! {
                            <tr data-elevation=e.id.clone() data-status=status.as_str()>
                                <td>{e.subject_name.clone()}</td>
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
        })}
        {(!calls.is_empty()).then(|| view! {
            <h3>"Calls"</h3>
            <table id="history-calls">
                <thead><tr><th>"Caller"</th><th>"Tool"</th><th>"Status"</th><th>"Asked"</th><th>"Decided by"</th><th>"Comment"</th></tr></thead>
                <tbody>
                    {calls.into_iter().map(|c| {
                        let status = c.status_at(now);
                        view! {
                            <tr data-approval=c.id.clone() data-status=status.as_str()>
                                <td>{c.subject_name.clone()}</td>
                                <td><code>{format!("{}__{}", c.connector, c.tool)}</code></td>
                                <td>{approval_badge(status)}</td>
                                <td>{when(Some(c.created_at))}</td>
                                <td>{c.decided_by_name.clone().unwrap_or_default()}</td>
                                <td>{c.comment.clone().unwrap_or_default()}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        })}
    }
    .into_any()
}
