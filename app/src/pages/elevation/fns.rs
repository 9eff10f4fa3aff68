//! Server functions behind the elevation pages. Each checks the caller first; changes to
//! elevations and approvals go through the domain's `Workflow` (which validates, stores, audits,
//! publishes and notifies); profile and settings changes are audited here (`admin.elevation.*`,
//! `admin.settings.elevation`) and published to the snapshot.
// The profile form's fields arrive one argument each.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use toolgate_domain::elevation::{
    CallApproval, Elevation, ElevationProfile, ElevationSettings, MyAccess,
};
use toolgate_domain::model::{AuditEvent, Connector, Group};

#[cfg(feature = "ssr")]
use crate::auth::{DashboardUser, Page, SignInSource, require, require_admin};
#[cfg(feature = "ssr")]
use crate::server_fns::{changed, record_change, shown};
#[cfg(feature = "ssr")]
use toolgate_domain::approvals::Actor;

/// What the "My access" page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MyAccessView {
    /// Signed in with the directory (OIDC): local break-glass accounts have no groups, agents
    /// or elevations.
    pub directory_user: bool,
    pub access: MyAccess,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// A pending elevation request with what an approver needs to decide it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingRequest {
    pub elevation: Elevation,
    /// The profile as it is now (`None` if deleted meanwhile).
    pub profile: Option<ElevationProfile>,
    /// The subject's latest audit events.
    pub activity: Vec<AuditEvent>,
}

/// The approvals inbox: what waits for the caller, what is in force, and history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxView {
    /// The caller has a directory identity and so may decide (local admins may only revoke).
    pub can_decide: bool,
    pub pending: Vec<PendingRequest>,
    pub calls: Vec<CallApproval>,
    pub active: Vec<Elevation>,
    pub history: Vec<Elevation>,
    pub call_history: Vec<CallApproval>,
    /// Every group, for the approver groups' names.
    pub groups: Vec<Group>,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The profiles editor's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfilesView {
    pub profiles: Vec<ElevationProfile>,
    pub groups: Vec<Group>,
    pub connectors: Vec<Connector>,
    pub settings: ElevationSettings,
    pub webhook_configured: bool,
}

#[cfg(feature = "ssr")]
fn actor(user: &DashboardUser) -> Actor {
    Actor {
        id: user.id.clone(),
        name: user.username.clone(),
        kind: match user.source {
            SignInSource::Oidc => "person",
            SignInSource::Local => "admin",
        },
    }
}

/// Why a local account cannot do what needs a directory identity.
pub const NO_DIRECTORY_IDENTITY: &str = "local break-glass accounts have no directory identity: \
     sign in with your directory account to request or approve elevations";

/// Approver groups whose requests the caller sees: `None` (all) for admins.
#[cfg(feature = "ssr")]
async fn approver_scope(
    user: &DashboardUser,
    ctx: &crate::auth::DashboardContext,
) -> Result<Option<Vec<String>>, ServerFnError> {
    use crate::auth::DashboardRole;
    if user.role == DashboardRole::Admin {
        return Ok(None);
    }
    if user.source != SignInSource::Oidc {
        return Ok(Some(Vec::new()));
    }
    Ok(Some(ctx.store.group_ids_of(&user.id).await.map_err(shown)?))
}

/// How many requests and calls wait for the caller's decision, for the navigation; `None` for
/// roles without the inbox (no error, so the page around the navigation keeps its status).
#[server(prefix = "/fn", endpoint = "pending_approvals_count")]
pub async fn pending_approvals_count() -> Result<Option<u64>, ServerFnError> {
    use toolgate_domain::elevation::{ApprovalStatus, ElevationStatus};
    use toolgate_domain::store::{ApprovalFilter, ElevationFilter};
    let Some(user) = crate::auth::current_user().await? else {
        return Ok(None);
    };
    if !user.role.may(Page::Approvals) {
        return Ok(None);
    }
    let ctx = crate::auth::context()?;
    let n = match approver_scope(&user, &ctx).await? {
        Some(groups) => {
            let (e, c) = ctx.store.pending_counts(&groups).await.map_err(shown)?;
            e + c
        }
        None => {
            let e = ctx
                .store
                .list_elevations(&ElevationFilter {
                    status: Some(ElevationStatus::Pending),
                    limit: Some(1000),
                    ..Default::default()
                })
                .await
                .map_err(shown)?
                .len();
            let c = ctx
                .store
                .list_call_approvals(&ApprovalFilter {
                    status: Some(ApprovalStatus::Pending),
                    limit: Some(1000),
                    ..Default::default()
                })
                .await
                .map_err(shown)?
                .len();
            (e + c) as u64
        }
    };
    Ok(Some(n))
}

/// The caller's groups, elevations, the profiles they may request and their agents' calls
/// waiting for approval.
#[server(prefix = "/fn", endpoint = "my_access")]
pub async fn get_my_access() -> Result<MyAccessView, ServerFnError> {
    use toolgate_domain::store::{ApprovalFilter, ElevationFilter};
    let (user, ctx) = require(Page::Access).await?;
    let now = ctx.store.clock().now();
    let empty = MyAccess {
        groups: Vec::new(),
        elevations: Vec::new(),
        eligible: Vec::new(),
        approvals: Vec::new(),
    };
    if user.source != SignInSource::Oidc {
        return Ok(MyAccessView {
            directory_user: false,
            access: empty,
            now,
        });
    }
    let group_ids = ctx.store.group_ids_of(&user.id).await.map_err(shown)?;
    let all_groups = ctx.store.list_groups().await.map_err(shown)?;
    let groups = all_groups
        .iter()
        .filter(|g| group_ids.contains(&g.id))
        .map(|g| g.display_name.clone())
        .collect();
    let elevations = ctx
        .store
        .list_elevations(&ElevationFilter {
            subject_id: Some(user.id.clone()),
            limit: Some(50),
            ..Default::default()
        })
        .await
        .map_err(shown)?;
    let eligible = ctx
        .store
        .list_elevation_profiles()
        .await
        .map_err(shown)?
        .into_iter()
        .filter(|p| p.enabled && p.eligible_groups.iter().any(|g| group_ids.contains(g)))
        .collect();
    let approvals = ctx
        .store
        .list_call_approvals(&ApprovalFilter {
            subject_id: Some(user.id.clone()),
            limit: Some(30),
            ..Default::default()
        })
        .await
        .map_err(shown)?;
    Ok(MyAccessView {
        directory_user: true,
        access: MyAccess {
            groups,
            elevations,
            eligible,
            approvals,
        },
        now,
    })
}

/// Reads the optional minutes field: empty means the profile's maximum.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub(crate) fn parse_minutes(raw: Option<&str>) -> Result<Option<u32>, String> {
    match raw.map(str::trim).filter(|m| !m.is_empty()) {
        None => Ok(None),
        Some(m) => m
            .parse::<u32>()
            .ok()
            .filter(|m| *m > 0)
            .map(Some)
            .ok_or_else(|| "minutes must be a positive whole number".to_string()),
    }
}

/// Asks for an elevation for the caller.
#[server(prefix = "/fn", endpoint = "request_elevation")]
pub async fn request_elevation(
    profile: String,
    justification: Option<String>,
    ticket: Option<String>,
    minutes: Option<String>,
) -> Result<Elevation, ServerFnError> {
    use toolgate_domain::elevation::ElevationAsk;
    let (user, ctx) = require(Page::Access).await?;
    if user.source != SignInSource::Oidc {
        return Err(ServerFnError::new(NO_DIRECTORY_IDENTITY));
    }
    let minutes = parse_minutes(minutes.as_deref()).map_err(ServerFnError::new)?;
    let subject = ctx
        .store
        .elevation_subject("person", &user.id)
        .await
        .map_err(shown)?;
    // Eligibility: the profile must name one of the person's groups. Checked here as well as
    // in the store, so someone outside it learns no more than "not found".
    let p = ctx
        .store
        .elevation_profile(profile.trim())
        .await
        .map_err(shown)?;
    if !p.eligible_groups.iter().any(|g| subject.groups.contains(g)) {
        return Err(ServerFnError::new("elevation profile not found"));
    }
    let ask = ElevationAsk {
        profile: p.id,
        justification: justification.unwrap_or_default(),
        ticket,
        minutes,
    };
    let e = ctx
        .workflow
        .request(subject, &actor(&user), &ask, "dashboard")
        .await
        .map_err(shown)?;
    tracing::info!(user = %user.username, profile = %e.profile_name, elevation = %e.id, "elevation requested from the dashboard");
    Ok(e)
}

/// Ends one of the caller's elevations early, or withdraws their pending request.
#[server(prefix = "/fn", endpoint = "end_my_elevation")]
pub async fn end_my_elevation(id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = require(Page::Access).await?;
    let e = ctx.store.elevation(&id).await.map_err(shown)?;
    // Only the caller's own: another id is reported like an unknown one.
    if user.source != SignInSource::Oidc || (e.subject_id != user.id && e.requested_by != user.id) {
        return Err(ServerFnError::new("elevation not found"));
    }
    ctx.workflow
        .end(&e.id, &actor(&user), false)
        .await
        .map_err(shown)?;
    tracing::info!(user = %user.username, elevation = %e.id, "elevation ended by its requester from the dashboard");
    Ok(())
}

/// The inbox. `status`: history filter (an elevation or approval status, empty: every decided
/// item); `kind`: `elevations`, `calls` or empty (both).
#[server(prefix = "/fn", endpoint = "approvals_inbox")]
pub async fn approvals_inbox(status: String, kind: String) -> Result<InboxView, ServerFnError> {
    use toolgate_domain::elevation::{ApprovalStatus, ElevationStatus};
    use toolgate_domain::model::AuditFilter;
    use toolgate_domain::store::{ApprovalFilter, ElevationFilter};
    let (user, ctx) = require(Page::Approvals).await?;
    let now = ctx.store.clock().now();
    let scope = approver_scope(&user, &ctx).await?;
    let (want_elevations, want_calls) = match kind.as_str() {
        "elevations" => (true, false),
        "calls" => (false, true),
        _ => (true, true),
    };
    let status = status.trim();
    let elevations = |status: Option<ElevationStatus>, limit: u32| {
        let store = ctx.store.clone();
        let filter = ElevationFilter {
            status,
            approver_groups: scope.clone(),
            limit: Some(limit),
            ..Default::default()
        };
        async move { store.list_elevations(&filter).await.map_err(shown) }
    };
    let calls = |status: Option<ApprovalStatus>, limit: u32| {
        let store = ctx.store.clone();
        let filter = ApprovalFilter {
            status,
            approver_groups: scope.clone(),
            limit: Some(limit),
            ..Default::default()
        };
        async move { store.list_call_approvals(&filter).await.map_err(shown) }
    };
    let mut pending = Vec::new();
    let mut active = Vec::new();
    let mut history = Vec::new();
    if want_elevations {
        for e in elevations(Some(ElevationStatus::Pending), 200).await? {
            let profile = ctx.store.elevation_profile(&e.profile_id).await.ok();
            let filter = AuditFilter {
                subject: Some(e.subject_name.clone()),
                ..AuditFilter::default()
            };
            let (activity, _) = ctx
                .store
                .search_audit(&filter, None, 10)
                .await
                .map_err(shown)?;
            pending.push(PendingRequest {
                elevation: e,
                profile,
                activity,
            });
        }
        active = elevations(Some(ElevationStatus::Active), 200).await?;
        let wanted = match status {
            "" => Some(None),
            s => ElevationStatus::parse(s).map(Some),
        };
        if let Some(filter) = wanted {
            history = elevations(filter, 100)
                .await?
                .into_iter()
                .filter(|e| {
                    !matches!(
                        e.status_at(now),
                        ElevationStatus::Pending | ElevationStatus::Active
                    )
                })
                .collect();
        }
    }
    let mut waiting = Vec::new();
    let mut call_history = Vec::new();
    if want_calls {
        waiting = calls(Some(ApprovalStatus::Pending), 200).await?;
        let wanted = match status {
            "" => Some(None),
            s => ApprovalStatus::parse(s).map(Some),
        };
        if let Some(filter) = wanted {
            call_history = calls(filter, 100)
                .await?
                .into_iter()
                .filter(|a| a.status_at(now) != ApprovalStatus::Pending)
                .collect();
        }
    }
    Ok(InboxView {
        can_decide: user.source == SignInSource::Oidc,
        pending,
        calls: waiting,
        active,
        history,
        call_history,
        groups: ctx.store.list_groups().await.map_err(shown)?,
        now,
    })
}

/// The decider for an approval: a person of the directory.
#[cfg(feature = "ssr")]
async fn decider() -> Result<(DashboardUser, crate::auth::DashboardContext), ServerFnError> {
    let (user, ctx) = require(Page::Approvals).await?;
    // Separation of duties is checked against directory groups: a local account has none.
    if user.source != SignInSource::Oidc {
        return Err(ServerFnError::new(NO_DIRECTORY_IDENTITY));
    }
    Ok((user, ctx))
}

/// Approves or denies a pending elevation request, with an optional comment.
#[server(prefix = "/fn", endpoint = "decide_elevation")]
pub async fn decide_elevation(
    id: String,
    approve: bool,
    comment: Option<String>,
) -> Result<(), ServerFnError> {
    let (user, ctx) = decider().await?;
    let e = ctx
        .workflow
        .decide(&id, approve, &actor(&user), comment.as_deref())
        .await
        .map_err(shown)?;
    tracing::info!(approver = %user.username, elevation = %e.id, approve, "elevation decided from the dashboard");
    Ok(())
}

/// Approves or denies a call waiting for approval, with an optional comment.
#[server(prefix = "/fn", endpoint = "decide_call")]
pub async fn decide_call(
    id: String,
    approve: bool,
    comment: Option<String>,
) -> Result<(), ServerFnError> {
    let (user, ctx) = decider().await?;
    let a = ctx
        .workflow
        .decide_call(&id, approve, &actor(&user), comment.as_deref())
        .await
        .map_err(shown)?;
    tracing::info!(approver = %user.username, approval = %a.id, approve, "call approval decided from the dashboard");
    Ok(())
}

/// Ends an active elevation early (approvers of its profile and admins).
#[server(prefix = "/fn", endpoint = "revoke_elevation")]
pub async fn revoke_elevation(id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = require(Page::Approvals).await?;
    let e = ctx.store.elevation(&id).await.map_err(shown)?;
    if let Some(groups) = approver_scope(&user, &ctx).await? {
        let profile = ctx.store.elevation_profile(&e.profile_id).await.ok();
        // Approvers revoke only what their group decides; others are told it is unknown.
        if !profile.is_some_and(|p| groups.contains(&p.approver_group)) {
            return Err(ServerFnError::new("elevation not found"));
        }
    }
    ctx.workflow
        .end(&e.id, &actor(&user), true)
        .await
        .map_err(shown)?;
    tracing::info!(by = %user.username, elevation = %e.id, "elevation revoked from the dashboard");
    Ok(())
}

/// Profiles, groups and connectors for the pickers, and the elevation settings.
#[server(prefix = "/fn", endpoint = "elevation_profiles")]
pub async fn elevation_profiles() -> Result<ProfilesView, ServerFnError> {
    use toolgate_domain::store::setting_keys;
    let (_, ctx) = require(Page::ElevationProfiles).await?;
    Ok(ProfilesView {
        profiles: ctx.store.list_elevation_profiles().await.map_err(shown)?,
        groups: ctx.store.list_groups().await.map_err(shown)?,
        connectors: ctx.store.list_connectors().await.map_err(shown)?,
        settings: ctx.workflow.settings().await.map_err(shown)?,
        webhook_configured: ctx
            .store
            .secret_setting(setting_keys::ELEVATION_WEBHOOK)
            .await
            .map_err(shown)?
            .is_some(),
    })
}

/// Tool patterns as typed: separated by commas or line breaks.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub(crate) fn split_patterns(raw: &str) -> Vec<String> {
    raw.split([',', '\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// The targets from the form's parallel rows (connector, tools, risk); rows without a connector
/// are left out.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub(crate) fn targets_from_rows(
    connectors: &[String],
    tools: &[String],
    risks: &[String],
) -> Result<Vec<toolgate_domain::elevation::ProfileTarget>, String> {
    use toolgate_domain::risk::Risk;
    let mut out = Vec::new();
    for (i, connector) in connectors.iter().enumerate() {
        let connector = connector.trim();
        if connector.is_empty() {
            continue;
        }
        let max_risk = match risks.get(i).map(|r| r.trim()).unwrap_or("") {
            "" => None,
            r => Some(Risk::parse(r).ok_or_else(|| format!("unknown risk level {r:?}"))?),
        };
        out.push(toolgate_domain::elevation::ProfileTarget {
            connector: connector.to_string(),
            tools: split_patterns(tools.get(i).map(String::as_str).unwrap_or("")),
            max_risk,
        });
    }
    Ok(out)
}

#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
fn on(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v == "on" || v == "true")
}

/// Creates a profile (empty `id`) or replaces one.
#[server(prefix = "/fn", endpoint = "save_elevation_profile")]
pub async fn save_elevation_profile(
    id: String,
    name: String,
    description: Option<String>,
    target_connector: Option<Vec<String>>,
    target_tools: Option<Vec<String>>,
    target_risk: Option<Vec<String>>,
    eligible_groups: Option<Vec<String>>,
    approver_group: String,
    max_minutes: String,
    justification_required: Option<String>,
    ticket_required: Option<String>,
    auto_approve: Option<String>,
    requester_sets_duration: Option<String>,
    enabled: Option<String>,
) -> Result<ElevationProfile, ServerFnError> {
    use toolgate_domain::elevation::ProfileInput;
    let (user, ctx) = require_admin().await?;
    let targets = targets_from_rows(
        &target_connector.unwrap_or_default(),
        &target_tools.unwrap_or_default(),
        &target_risk.unwrap_or_default(),
    )
    .map_err(ServerFnError::new)?;
    let max_minutes = max_minutes
        .trim()
        .parse::<u32>()
        .map_err(|_| ServerFnError::new("maximum duration must be a whole number of minutes"))?;
    let input = ProfileInput {
        name,
        description: description.unwrap_or_default(),
        targets,
        eligible_groups: eligible_groups.unwrap_or_default(),
        approver_group,
        max_minutes,
        justification_required: on(&justification_required),
        ticket_required: on(&ticket_required),
        auto_approve: on(&auto_approve),
        requester_sets_duration: on(&requester_sets_duration),
        enabled: on(&enabled),
    }
    .validated()
    .map_err(ServerFnError::new)?;
    let (before, after) = if id.trim().is_empty() {
        let p = ctx
            .store
            .create_elevation_profile(input)
            .await
            .map_err(shown)?;
        (None, p)
    } else {
        let (before, after) = ctx
            .store
            .update_elevation_profile(id.trim(), input)
            .await
            .map_err(shown)?;
        (Some(before), after)
    };
    let kind = if before.is_some() {
        "admin.elevation.profile_update"
    } else {
        "admin.elevation.profile_create"
    };
    tracing::info!(admin = %user.username, profile = %after.name, "elevation profile saved from the dashboard");
    record_change(
        &ctx,
        &user.username,
        kind,
        before.and_then(|b| serde_json::to_value(b).ok()),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(after)
}

/// Deletes a profile: its pending requests are cancelled and its elevations revoked.
#[server(prefix = "/fn", endpoint = "delete_elevation_profile")]
pub async fn delete_elevation_profile(id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = require_admin().await?;
    let before = ctx.store.elevation_profile(&id).await.map_err(shown)?;
    ctx.workflow
        .delete_profile(&before.id, &actor(&user))
        .await
        .map_err(shown)?;
    tracing::info!(admin = %user.username, profile = %before.name, "elevation profile deleted from the dashboard");
    record_change(
        &ctx,
        &user.username,
        "admin.elevation.profile_delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Saves the elevation settings. `webhook_url`: a URL replaces the stored one, empty keeps it;
/// `clear_webhook` removes it.
#[server(prefix = "/fn", endpoint = "save_elevation_settings")]
pub async fn save_elevation_settings(
    webhook_url: Option<String>,
    clear_webhook: Option<String>,
    webhook_format: String,
    approval_ttl_minutes: String,
    agent_requests: Option<String>,
) -> Result<(), ServerFnError> {
    use toolgate_domain::elevation::WebhookFormat;
    use toolgate_domain::store::setting_keys;
    let (user, ctx) = require_admin().await?;
    let configured = |ctx: crate::auth::DashboardContext| async move {
        ctx.store
            .secret_setting(setting_keys::ELEVATION_WEBHOOK)
            .await
            .map(|s| s.is_some())
            .map_err(shown)
    };
    let before = ctx.workflow.settings().await.map_err(shown)?;
    let had_webhook = configured(ctx.clone()).await?;
    let format = match webhook_format.as_str() {
        "json" => WebhookFormat::Json,
        "slack" => WebhookFormat::Slack,
        "teams" => WebhookFormat::Teams,
        other => return Err(ServerFnError::new(format!("unknown format {other:?}"))),
    };
    let ttl = approval_ttl_minutes
        .trim()
        .parse::<u32>()
        .map_err(|_| ServerFnError::new("approval lifetime must be a whole number of minutes"))?;
    let next = ElevationSettings {
        webhook_format: format,
        approval_ttl_minutes: ttl,
        agent_requests: on(&agent_requests),
    }
    .validated()
    .map_err(ServerFnError::new)?;
    let url = webhook_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    if let Some(u) = url {
        toolgate_domain::names::validate_upstream_url(u)
            .map_err(|e| ServerFnError::new(format!("webhook URL: {e}")))?;
    }
    ctx.store
        .put_setting(setting_keys::ELEVATION, &next)
        .await
        .map_err(shown)?;
    if on(&clear_webhook) {
        ctx.store
            .delete_setting(setting_keys::ELEVATION_WEBHOOK)
            .await
            .map_err(shown)?;
    } else if let Some(u) = url {
        ctx.store
            .put_secret_setting(setting_keys::ELEVATION_WEBHOOK, u)
            .await
            .map_err(shown)?;
    }
    let has_webhook = configured(ctx.clone()).await?;
    // Never the URL itself: it often carries a secret token.
    let view = |s: &ElevationSettings, webhook: bool| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        v["webhook_configured"] = webhook.into();
        v
    };
    record_change(
        &ctx,
        &user.username,
        "admin.settings.elevation",
        Some(view(&before, had_webhook)),
        Some(view(&next, has_webhook)),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_domain::risk::Risk;

    #[test]
    fn minutes_field() {
        assert_eq!(parse_minutes(None), Ok(None));
        assert_eq!(parse_minutes(Some("  ")), Ok(None));
        assert_eq!(parse_minutes(Some(" 15 ")), Ok(Some(15)));
        assert!(parse_minutes(Some("0")).is_err());
        assert!(parse_minutes(Some("-3")).is_err());
        assert!(parse_minutes(Some("soon")).is_err());
    }

    #[test]
    fn patterns_split_on_commas_and_lines() {
        assert_eq!(
            split_patterns("get_*, list_repos\r\n\n delete_repo ,"),
            vec!["get_*", "list_repos", "delete_repo"]
        );
        assert!(split_patterns(" , \n").is_empty());
    }

    #[test]
    fn target_rows_skip_empty_connectors() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let t = targets_from_rows(
            &s(&["github", "", "wiki"]),
            &s(&["get_*", "ignored", ""]),
            &s(&["", "", "low"]),
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].connector, "github");
        assert_eq!(t[0].tools, vec!["get_*"]);
        assert_eq!(t[0].max_risk, None);
        assert_eq!(t[1].connector, "wiki");
        assert!(t[1].tools.is_empty());
        assert_eq!(t[1].max_risk, Some(Risk::Low));
        assert!(targets_from_rows(&s(&["x"]), &s(&[""]), &s(&["extreme"])).is_err());
    }
}
