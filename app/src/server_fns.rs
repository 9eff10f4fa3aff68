//! Server functions behind the dashboard. Each checks the caller first, then calls the domain
//! store; no SQL here. URLs are fixed (`/fn/<name>`) so they stay stable across builds.
// Server functions take one argument per form field; a settings form has many.
#![allow(clippy::too_many_arguments)]

use crate::auth::DashboardUser;
use leptos::prelude::*;
use toolgate_domain::model::{AuditEvent, Connector, GroupDetail, Overview, User};

#[cfg(feature = "ssr")]
use crate::auth::{
    DashboardRole, Page, SESSION_USER_KEY, SignInSource, context, require, require_admin, session,
};

/// Domain errors shown to the dashboard user; internal ones are logged and shown generically.
#[cfg(feature = "ssr")]
pub(crate) fn shown(e: toolgate_domain::Error) -> ServerFnError {
    use toolgate_domain::Error as E;
    match e {
        E::Invalid(m) | E::Conflict(m) | E::PreconditionFailed(m) | E::Forbidden(m) => {
            ServerFnError::new(m)
        }
        E::NotFound(what) => ServerFnError::new(format!("{what} not found")),
        E::Unauthenticated => ServerFnError::new("wrong user name or password"),
        E::AuditUnavailable => ServerFnError::new("the audit log is unavailable"),
        other => {
            tracing::error!(error = %other, "dashboard server function failed");
            ServerFnError::new("internal error")
        }
    }
}

#[cfg(feature = "ssr")]
pub(crate) async fn changed(ctx: &crate::auth::DashboardContext) {
    if let Err(e) = ctx.snapshot.publish().await {
        tracing::error!(error = %e, "policy snapshot reload failed after a dashboard change");
    }
}

/// Signs a local administrator in. The session id is renewed (no session fixation) and the
/// attempt is logged either way.
#[server(prefix = "/fn", endpoint = "login")]
pub async fn login(username: String, password: String) -> Result<(), ServerFnError> {
    let ctx = context()?;
    let session = session().await?;
    match ctx.store.verify_admin(&username, &password).await {
        Ok(account) => {
            record_sign_in(&ctx, &account.username, "signin.local", true).await;
            session
                .cycle_id()
                .await
                .map_err(|_| ServerFnError::new("session error"))?;
            let user = DashboardUser {
                id: account.id,
                username: account.username,
                role: DashboardRole::Admin,
                source: SignInSource::Local,
            };
            session
                .insert(SESSION_USER_KEY, &user)
                .await
                .map_err(|_| ServerFnError::new("session error"))?;
            tracing::info!(username = %user.username, kind = "local", "dashboard sign-in");
            leptos_axum::redirect("/");
            Ok(())
        }
        Err(toolgate_domain::Error::Unauthenticated) => {
            tracing::warn!(username = %username, "dashboard sign-in failed");
            record_sign_in(&ctx, &username, "signin.failed", false).await;
            Err(ServerFnError::new("wrong user name or password"))
        }
        Err(e) => Err(shown(e)),
    }
}

/// Audits a local sign-in attempt (every one, successful or not).
#[cfg(feature = "ssr")]
async fn record_sign_in(ctx: &crate::auth::DashboardContext, who: &str, kind: &str, ok: bool) {
    record(ctx, who, kind, ok, "local account".into()).await;
}

/// Writes an audit event for something done in the dashboard (sign-ins, revocations).
#[cfg(feature = "ssr")]
pub(crate) async fn record(
    ctx: &crate::auth::DashboardContext,
    who: &str,
    kind: &str,
    ok: bool,
    detail: String,
) {
    use toolgate_domain::model::{AuditDecision, Outcome};
    let event = toolgate_domain::store::NewAuditEvent {
        subject_kind: Some("admin".into()),
        decision: if ok {
            AuditDecision::Allow
        } else {
            AuditDecision::Deny
        },
        outcome: if ok { Outcome::Ok } else { Outcome::Denied },
        detail: Some(detail),
        ..toolgate_domain::store::NewAuditEvent::new(ctx.store.clock().now(), kind, who)
    };
    ctx.audit.record_after_the_fact(event).await;
}

/// Records a settings change made in the dashboard, with before and after (never secrets).
#[cfg(feature = "ssr")]
pub(crate) async fn record_change(
    ctx: &crate::auth::DashboardContext,
    who: &str,
    kind: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let event = toolgate_domain::store::NewAuditEvent::change(
        ctx.store.clock().now(),
        kind,
        who,
        "admin",
        before,
        after,
    );
    ctx.audit.record_after_the_fact(event).await;
}

/// The sign-in button's label when sign-in with the OpenID Provider is configured.
#[server(prefix = "/fn", endpoint = "sso")]
pub async fn sso_label() -> Result<Option<String>, ServerFnError> {
    let ctx = context()?;
    let settings = ctx
        .store
        .setting::<Option<toolgate_domain::model::OidcSettings>>(
            toolgate_domain::store::setting_keys::OIDC,
        )
        .await
        .map_err(shown)?
        .flatten();
    Ok(settings.map(|s| s.display_name))
}

/// Signs out: the session is deleted.
#[server(prefix = "/fn", endpoint = "logout")]
pub async fn logout() -> Result<(), ServerFnError> {
    let session = session().await?;
    session
        .flush()
        .await
        .map_err(|_| ServerFnError::new("session error"))?;
    leptos_axum::redirect("/login");
    Ok(())
}

/// The signed-in user, if any.
#[server(prefix = "/fn", endpoint = "whoami")]
pub async fn whoami() -> Result<Option<DashboardUser>, ServerFnError> {
    crate::auth::current_user().await
}

#[server(prefix = "/fn", endpoint = "overview")]
pub async fn get_overview() -> Result<Overview, ServerFnError> {
    let (_, ctx) = require(Page::Overview).await?;
    ctx.store.overview().await.map_err(shown)
}

/// Groups with members and policies, plus every user and connector (for the pickers).
#[server(prefix = "/fn", endpoint = "groups")]
pub async fn list_groups() -> Result<(Vec<GroupDetail>, Vec<User>, Vec<Connector>), ServerFnError> {
    let (_, ctx) = require_admin().await?;
    let groups = ctx.store.list_groups().await.map_err(shown)?;
    let mut details = Vec::with_capacity(groups.len());
    for g in groups {
        details.push(ctx.store.group_detail(&g.id).await.map_err(shown)?);
    }
    let users = ctx.store.list_users().await.map_err(shown)?;
    let connectors = ctx.store.list_connectors().await.map_err(shown)?;
    Ok((details, users, connectors))
}

#[server(prefix = "/fn", endpoint = "create_group")]
pub async fn create_group(display_name: String) -> Result<(), ServerFnError> {
    let (user, ctx) = require_admin().await?;
    let g = ctx
        .store
        .create_group(display_name.trim(), None)
        .await
        .map_err(shown)?;
    record_change(
        &ctx,
        &user.username,
        "admin.group.create",
        None,
        serde_json::to_value(&g).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

#[server(prefix = "/fn", endpoint = "add_member")]
pub async fn add_member(group_id: String, user_id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = require_admin().await?;
    ctx.store
        .add_member(&group_id, &user_id)
        .await
        .map_err(shown)?;
    let member = serde_json::json!({"group_id": group_id, "user_id": user_id});
    record_change(
        &ctx,
        &user.username,
        "admin.group.member_add",
        None,
        Some(member),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

#[server(prefix = "/fn", endpoint = "remove_member")]
pub async fn remove_member(group_id: String, user_id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = require_admin().await?;
    ctx.store
        .remove_member(&group_id, &user_id)
        .await
        .map_err(shown)?;
    let member = serde_json::json!({"group_id": group_id, "user_id": user_id});
    record_change(
        &ctx,
        &user.username,
        "admin.group.member_remove",
        Some(member),
        None,
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// One page of an audit search.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditResults {
    pub items: Vec<AuditEvent>,
    /// Pass back as `cursor` for the next (older) page.
    pub next_cursor: Option<String>,
}

#[server(prefix = "/fn", endpoint = "audit")]
pub async fn search_audit(
    filter: toolgate_domain::model::AuditFilter,
    cursor: Option<String>,
) -> Result<AuditResults, ServerFnError> {
    let (_, ctx) = require(Page::Audit).await?;
    let cursor = cursor
        .filter(|c| !c.is_empty())
        .map(|c| toolgate_domain::store::AuditCursor::decode(&c))
        .transpose()
        .map_err(shown)?;
    let (items, next) = ctx
        .store
        .search_audit(&filter.normalized(), cursor, 50)
        .await
        .map_err(shown)?;
    Ok(AuditResults {
        items,
        next_cursor: next.map(|c| c.encode()),
    })
}

#[server(prefix = "/fn", endpoint = "audit_stats")]
pub async fn audit_stats() -> Result<toolgate_domain::model::AuditStats, ServerFnError> {
    let (_, ctx) = require(Page::Overview).await?;
    ctx.store.audit_stats().await.map_err(shown)
}

#[server(prefix = "/fn", endpoint = "audit_integrity")]
pub async fn audit_integrity() -> Result<toolgate_domain::model::AuditStatus, ServerFnError> {
    let (_, ctx) = require(Page::Audit).await?;
    Ok(toolgate_domain::model::AuditStatus {
        integrity: ctx.store.audit_integrity().await.map_err(shown)?,
        policy: ctx.audit_policy.clone(),
    })
}

/// `Name: value` lines into a header map; blank lines are skipped.
pub fn parse_header_lines(
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {} must look like 'Name: value'", i + 1))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Patterns separated by commas, spaces or new lines.
pub fn split_patterns(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines() {
        let h = parse_header_lines("Authorization: Bearer x:y\n\nX-Key:  1 ").unwrap();
        assert_eq!(
            h.get("Authorization").map(String::as_str),
            Some("Bearer x:y")
        );
        assert_eq!(h.get("X-Key").map(String::as_str), Some("1"));
        assert!(parse_header_lines("no colon").is_err());
    }

    #[test]
    fn pattern_lists() {
        assert_eq!(
            split_patterns("echo, get_*\nadd"),
            vec!["echo", "get_*", "add"]
        );
        assert!(split_patterns("  ").is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Users

/// Everyone, with their groups and tokens, for the Users page.
#[server(prefix = "/fn", endpoint = "people")]
pub async fn list_people() -> Result<Vec<toolgate_domain::model::PersonRow>, ServerFnError> {
    let (_, ctx) = require(Page::Users).await?;
    let users = ctx.store.list_users().await.map_err(shown)?;
    let memberships = ctx.store.user_group_names(None).await.map_err(shown)?;
    let sessions = ctx.store.session_counts().await.map_err(shown)?;
    let mut rows = Vec::with_capacity(users.len());
    for user in users {
        let groups = memberships
            .iter()
            .filter(|(u, _, _)| *u == user.id)
            .map(|(_, _, n)| n.clone())
            .collect();
        let tokens = ctx.store.list_user_tokens(&user.id).await.map_err(shown)?;
        let consents = ctx.store.list_consents(&user.id).await.map_err(shown)?;
        let sessions = sessions
            .iter()
            .find(|(u, _)| *u == user.id)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        rows.push(toolgate_domain::model::PersonRow {
            user,
            groups,
            tokens,
            sessions,
            consents,
        });
    }
    Ok(rows)
}

/// Disables or re-enables a person: their tokens, sessions and open streams stop at once.
#[server(prefix = "/fn", endpoint = "set_person_active")]
pub async fn set_person_active(user_id: String, active: bool) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::Users).await?;
    let user = ctx
        .store
        .set_user_active(&user_id, active)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, user = %user.user_name, active, "user status changed from the dashboard");
    let kind = if active {
        "admin.user.enabled"
    } else {
        "admin.user.disabled"
    };
    record(
        &ctx,
        &admin.username,
        kind,
        true,
        format!("user {} ({})", user.user_name, user.id),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Withdraws a person's consent to an agent (OAuth client): its tokens for them end at once.
#[server(prefix = "/fn", endpoint = "revoke_person_consent")]
pub async fn revoke_person_consent(
    user_id: String,
    client_id: String,
) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::Users).await?;
    ctx.store
        .revoke_consent(&user_id, &client_id)
        .await
        .map_err(shown)?;
    record(
        &ctx,
        &admin.username,
        "admin.oauth.consent.revoke",
        true,
        format!("user {user_id}: consent to client {client_id} withdrawn"),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Ends every dashboard session of a person.
#[server(prefix = "/fn", endpoint = "end_sessions")]
pub async fn end_sessions(user_id: String) -> Result<u64, ServerFnError> {
    let (admin, ctx) = require(Page::Users).await?;
    let n = ctx
        .store
        .delete_user_sessions(&user_id)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, user = %user_id, sessions = n, "sessions ended from the dashboard");
    record(
        &ctx,
        &admin.username,
        "admin.sessions.ended",
        true,
        format!("user {user_id}: {n} sessions"),
    )
    .await;
    Ok(n)
}

/// Revokes one token.
#[server(prefix = "/fn", endpoint = "revoke_token")]
pub async fn revoke_token(token_id: String) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::Users).await?;
    ctx.store.revoke_token(&token_id).await.map_err(shown)?;
    tracing::info!(admin = %admin.username, token = %token_id, "token revoked from the dashboard");
    record(
        &ctx,
        &admin.username,
        "admin.token.revoked",
        true,
        format!("token {token_id}"),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Settings

/// Identity and provisioning settings.
#[server(prefix = "/fn", endpoint = "settings")]
pub async fn get_settings() -> Result<toolgate_domain::model::SettingsView, ServerFnError> {
    use toolgate_domain::model::{ScimRequestRow, SettingsView, TokenKind};
    let (_, ctx) = require(Page::Settings).await?;
    let oidc = toolgate_domain::identity::oidc(&ctx.store)
        .await
        .map_err(shown)?
        .map(|(s, _)| s);
    let roles = toolgate_domain::identity::role_mappings(&ctx.store)
        .await
        .map_err(shown)?;
    let groups = ctx.store.list_groups().await.map_err(shown)?;
    let names = |ids: &[String]| -> Vec<String> {
        groups
            .iter()
            .filter(|g| ids.contains(&g.id))
            .map(|g| g.display_name.clone())
            .collect()
    };
    let requests = ctx.store.recent_scim_requests(50).await.map_err(shown)?;
    let scim_requests: Vec<ScimRequestRow> = requests
        .into_iter()
        .map(|(at, client, method, path, status, us)| ScimRequestRow {
            at: toolgate_domain::clock::from_millis(at),
            client,
            method,
            path,
            status,
            duration_ms: us as f64 / 1000.0,
        })
        .collect();
    let last_sync = scim_requests.iter().find(|r| r.status < 400).map(|r| r.at);
    Ok(SettingsView {
        oidc,
        admin_groups: names(&roles.admin),
        approver_groups: names(&roles.approver),
        auditor_groups: names(&roles.auditor),
        redirect_uri: format!("{}/auth/oidc/callback", ctx.public_url),
        scim_tenant_url: format!("{}/scim/v2", ctx.public_url),
        scim_tokens: ctx
            .store
            .list_tokens_of_kind(TokenKind::Scim)
            .await
            .map_err(shown)?,
        scim_requests,
        last_sync,
    })
}

/// Saves sign-in settings. Empty issuer turns single sign-on off; role mappings name groups by
/// display name, separated by commas.
#[server(prefix = "/fn", endpoint = "save_identity")]
pub async fn save_identity(
    issuer: String,
    client_id: String,
    client_secret: String,
    display_name: String,
    match_by: String,
    jit_provisioning: Option<String>,
    use_groups_claim: Option<String>,
    admin_groups: String,
    approver_groups: String,
    auditor_groups: String,
) -> Result<(), ServerFnError> {
    use toolgate_domain::model::{IdentitySettingsInput, OidcInput, OidcMatch, RoleMappings};
    let (admin, ctx) = require(Page::Settings).await?;
    let groups = ctx.store.list_groups().await.map_err(shown)?;
    let resolve = |text: &str| -> Result<Vec<String>, ServerFnError> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                groups
                    .iter()
                    .find(|g| g.display_name.eq_ignore_ascii_case(name))
                    .map(|g| g.id.clone())
                    .ok_or_else(|| ServerFnError::new(format!("no group named {name:?}")))
            })
            .collect()
    };
    let input = IdentitySettingsInput {
        oidc: (!issuer.trim().is_empty()).then(|| OidcInput {
            issuer,
            client_id,
            client_secret: Some(client_secret).filter(|s| !s.is_empty()),
            display_name: Some(display_name),
            match_by: if match_by == "external_id" {
                OidcMatch::ExternalId
            } else {
                OidcMatch::UserName
            },
            jit_provisioning: jit_provisioning.is_some(),
            use_groups_claim: use_groups_claim.is_some(),
        }),
        role_mappings: RoleMappings {
            admin: resolve(&admin_groups)?,
            approver: resolve(&approver_groups)?,
            auditor: resolve(&auditor_groups)?,
        },
    };
    let before = toolgate_domain::identity::oidc(&ctx.store)
        .await
        .map_err(shown)?
        .map(|(s, _)| s);
    let after_roles = input.role_mappings.clone();
    toolgate_domain::identity::update(&ctx.store, input)
        .await
        .map_err(shown)?;
    let after = toolgate_domain::identity::oidc(&ctx.store)
        .await
        .map_err(shown)?
        .map(|(s, _)| s);
    record_change(
        &ctx,
        &admin.username,
        "admin.settings.identity",
        Some(serde_json::json!({ "oidc": before })),
        Some(serde_json::json!({ "oidc": after, "role_mappings": after_roles })),
    )
    .await;
    tracing::info!(admin = %admin.username, "identity settings changed from the dashboard");
    changed(&ctx).await;
    Ok(())
}

/// Creates a SCIM token and returns it; it is shown this once.
#[server(prefix = "/fn", endpoint = "create_scim_token")]
pub async fn create_scim_token(name: String) -> Result<String, ServerFnError> {
    let (admin, ctx) = require(Page::Settings).await?;
    let (info, secret) = ctx
        .store
        .create_token(toolgate_domain::model::TokenKind::Scim, &name, None)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, token = %info.id, "SCIM token created from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.token.create",
        None,
        serde_json::to_value(&info).ok(),
    )
    .await;
    Ok(secret)
}

// ---------------------------------------------------------------------------------------------
// Agent sign-in (issue 5): the Connect page (everyone), OAuth clients and service principals
// (admins). Secrets are returned once to the page that made them; audit rows carry ids and
// prefixes only.

/// What the Connect page shows the signed-in person.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnectView {
    /// The issuer: the configured public URL without a trailing slash.
    pub public_url: String,
    /// The protected resource agents connect to (`{public_url}/mcp`).
    pub mcp_url: String,
    /// Directory people (signed in with the OpenID Provider) authorize agents and hold personal
    /// tokens; local break-glass admins do neither.
    pub directory_user: bool,
    pub consents: Vec<toolgate_domain::model::Consent>,
    /// The person's personal access tokens, newest first.
    pub tokens: Vec<toolgate_domain::model::ApiToken>,
    /// The server's time, to tell expired tokens.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Token lifetimes offered by the Connect page, in days (`None`: no expiry).
pub const TOKEN_LIFETIMES: [Option<u32>; 5] = [Some(7), Some(30), Some(90), Some(365), None];

/// Unix milliseconds `days` after `now_ms`, or `None` for "never"; anything but the offered
/// lifetimes is refused.
pub fn token_expiry(now_ms: i64, days: &str) -> Result<Option<i64>, String> {
    let days = days.trim();
    if days.is_empty() || days == "never" {
        return Ok(None);
    }
    let n: u32 = days
        .parse()
        .map_err(|_| format!("unknown token lifetime {days:?}"))?;
    if !TOKEN_LIFETIMES.contains(&Some(n)) {
        return Err(format!("unknown token lifetime {days:?}"));
    }
    Ok(Some(now_ms + i64::from(n) * 86_400_000))
}

/// A date from a form (`YYYY-MM-DD`, UTC) as the end of that day in unix milliseconds: a
/// principal "valid through" a date works all of it. Empty gives `None`.
pub fn end_of_day_ms(date: &str) -> Result<Option<i64>, String> {
    let date = date.trim();
    if date.is_empty() {
        return Ok(None);
    }
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| format!("{date:?} is not a date (YYYY-MM-DD)"))?;
    let next = day
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| format!("{date:?} is out of range"))?;
    Ok(Some(next.and_utc().timestamp_millis()))
}

/// `8-4-4-4-12` hex digits, as Entra writes tenant and application ids.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Audits something a person did to their own agents (`subject_kind` person, their id).
#[cfg(feature = "ssr")]
async fn record_own_change(
    ctx: &crate::auth::DashboardContext,
    who: &DashboardUser,
    kind: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let event = toolgate_domain::store::NewAuditEvent {
        principal_id: Some(who.id.clone()),
        ..toolgate_domain::store::NewAuditEvent::change(
            ctx.store.clock().now(),
            kind,
            &who.username,
            "person",
            before,
            after,
        )
    };
    ctx.audit.record_after_the_fact(event).await;
}

/// The caller, when they are a directory person (consents and personal tokens are theirs);
/// local admins are refused.
#[cfg(feature = "ssr")]
async fn require_person() -> Result<(DashboardUser, crate::auth::DashboardContext), ServerFnError> {
    let (user, ctx) = require(Page::Connect).await?;
    if user.source != SignInSource::Oidc {
        return Err(ServerFnError::new(
            "local accounts have no agents: agents act for people of the directory",
        ));
    }
    Ok((user, ctx))
}

/// The MCP URL, and the caller's authorized agents and personal tokens.
#[server(prefix = "/fn", endpoint = "connect")]
pub async fn connect_info() -> Result<ConnectView, ServerFnError> {
    use toolgate_domain::model::TokenKind;
    let (user, ctx) = require(Page::Connect).await?;
    let public_url = ctx.public_url.trim_end_matches('/').to_string();
    let directory_user = user.source == SignInSource::Oidc;
    let (consents, tokens) = if directory_user {
        let consents = ctx.store.list_consents(&user.id).await.map_err(shown)?;
        let tokens = ctx
            .store
            .list_user_tokens(&user.id)
            .await
            .map_err(shown)?
            .into_iter()
            .filter(|t| t.kind == TokenKind::Personal)
            .collect();
        (consents, tokens)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(ConnectView {
        mcp_url: format!("{public_url}/mcp"),
        public_url,
        directory_user,
        consents,
        tokens,
        now: ctx.store.clock().now(),
    })
}

/// Withdraws the caller's consent to one client: its grants end at once and the next sign-in
/// asks again.
#[server(prefix = "/fn", endpoint = "revoke_my_consent")]
pub async fn revoke_my_consent(client_id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = require_person().await?;
    let before = ctx
        .store
        .list_consents(&user.id)
        .await
        .map_err(shown)?
        .into_iter()
        .find(|c| c.client_id == client_id);
    ctx.store
        .revoke_consent(&user.id, &client_id)
        .await
        .map_err(shown)?;
    tracing::info!(user = %user.username, client = %client_id, "consent revoked from the dashboard");
    record_own_change(
        &ctx,
        &user,
        "oauth.consent_revoked",
        before.map(|c| {
            serde_json::json!({
                "client_id": c.client_id, "client_name": c.client_name, "scopes": c.scopes,
            })
        }),
        None,
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Creates a personal access token for the caller's scripts; returns it (shown once).
/// `scopes` are `mcp:read` / `mcp:tools` checkboxes; `expires_in_days` one of the offered
/// lifetimes, or `never`.
#[server(prefix = "/fn", endpoint = "create_my_token")]
pub async fn create_my_token(
    name: String,
    expires_in_days: String,
    scopes: Option<Vec<String>>,
) -> Result<String, ServerFnError> {
    use toolgate_domain::model::Scopes;
    let (user, ctx) = require_person().await?;
    let scopes = Scopes::from_names(&scopes.unwrap_or_default()).map_err(ServerFnError::new)?;
    let now = ctx.store.clock().now().timestamp_millis();
    let expires_at = token_expiry(now, &expires_in_days).map_err(ServerFnError::new)?;
    let (info, secret) = ctx
        .store
        .create_personal_token(&user.id, name.trim(), expires_at, scopes)
        .await
        .map_err(shown)?;
    tracing::info!(user = %user.username, token = %info.id, "personal token created from the dashboard");
    record_own_change(
        &ctx,
        &user,
        "token.personal_created",
        None,
        serde_json::to_value(&info).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(secret)
}

/// Revokes one of the caller's own personal tokens.
#[server(prefix = "/fn", endpoint = "revoke_my_token")]
pub async fn revoke_my_token(token_id: String) -> Result<(), ServerFnError> {
    use toolgate_domain::model::TokenKind;
    let (user, ctx) = require_person().await?;
    // Only the caller's own personal tokens: another id is reported like an unknown one.
    let token = ctx
        .store
        .list_user_tokens(&user.id)
        .await
        .map_err(shown)?
        .into_iter()
        .find(|t| t.id == token_id && t.kind == TokenKind::Personal)
        .ok_or_else(|| ServerFnError::new("token not found"))?;
    ctx.store.revoke_token(&token.id).await.map_err(shown)?;
    tracing::info!(user = %user.username, token = %token.id, "personal token revoked from the dashboard");
    record_own_change(
        &ctx,
        &user,
        "token.personal_revoked",
        serde_json::to_value(&token).ok(),
        None,
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Every OAuth client and the authorization server's switches.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OAuthClientsView {
    pub clients: Vec<toolgate_domain::model::OAuthClient>,
    pub settings: toolgate_domain::model::OAuthSettings,
}

#[server(prefix = "/fn", endpoint = "oauth_clients")]
pub async fn oauth_clients() -> Result<OAuthClientsView, ServerFnError> {
    let (_, ctx) = require(Page::OAuthClients).await?;
    Ok(OAuthClientsView {
        clients: ctx.store.list_oauth_clients().await.map_err(shown)?,
        settings: ctx.store.oauth_settings().await.map_err(shown)?,
    })
}

/// A client just registered; `secret` (confidential clients) is shown this once.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegisteredClient {
    pub client_id: String,
    pub name: String,
    pub secret: Option<String>,
}

/// Registers a client; redirect URIs one per line.
#[server(prefix = "/fn", endpoint = "register_oauth_client")]
pub async fn register_oauth_client(
    name: String,
    redirect_uris: String,
    confidential: Option<String>,
) -> Result<RegisteredClient, ServerFnError> {
    let (admin, ctx) = require(Page::OAuthClients).await?;
    let uris: Vec<String> = redirect_uris
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let (client, secret) = ctx
        .store
        .create_preregistered_client(&name, &uris, confidential.is_some(), &admin.username)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, client = %client.id, "OAuth client registered from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.oauth.client.create",
        None,
        serde_json::to_value(&client).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(RegisteredClient {
        client_id: client.id,
        name: client.name,
        secret,
    })
}

/// Disables (its grants end at once) or re-enables a client.
#[server(prefix = "/fn", endpoint = "switch_oauth_client")]
pub async fn switch_oauth_client(client_id: String, disabled: bool) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::OAuthClients).await?;
    let before = ctx
        .store
        .oauth_client(&client_id)
        .await
        .map_err(shown)?
        .map(|r| r.client)
        .ok_or_else(|| ServerFnError::new("client not found"))?;
    let after = ctx
        .store
        .set_oauth_client_disabled(&client_id, disabled)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, client = %client_id, disabled, "OAuth client switched from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.oauth.client.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Deletes a client with its consents; its grants end.
#[server(prefix = "/fn", endpoint = "delete_oauth_client")]
pub async fn delete_oauth_client(client_id: String) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::OAuthClients).await?;
    let before = ctx
        .store
        .oauth_client(&client_id)
        .await
        .map_err(shown)?
        .map(|r| r.client);
    ctx.store
        .delete_oauth_client(&client_id)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, client = %client_id, "OAuth client deleted from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.oauth.client.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Saves the authorization server's switches and token lifetimes.
#[server(prefix = "/fn", endpoint = "save_oauth_settings")]
pub async fn save_oauth_settings(
    preregistered_enabled: Option<String>,
    cimd_enabled: Option<String>,
    dcr_enabled: Option<String>,
    allow_loopback_cimd: Option<String>,
    access_token_secs: String,
    refresh_token_days: String,
) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::OAuthClients).await?;
    let number = |field: &str, v: &str| -> Result<u32, ServerFnError> {
        v.trim()
            .parse()
            .map_err(|_| ServerFnError::new(format!("{field} must be a whole number")))
    };
    let after = toolgate_domain::model::OAuthSettings {
        preregistered_enabled: preregistered_enabled.is_some(),
        cimd_enabled: cimd_enabled.is_some(),
        dcr_enabled: dcr_enabled.is_some(),
        allow_loopback_cimd: allow_loopback_cimd.is_some(),
        access_token_secs: number("the access token lifetime", &access_token_secs)?,
        refresh_token_days: number("the refresh token lifetime", &refresh_token_days)?,
    };
    let before = ctx.store.oauth_settings().await.map_err(shown)?;
    ctx.store.put_oauth_settings(&after).await.map_err(shown)?;
    tracing::info!(admin = %admin.username, "OAuth settings changed from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.oauth.settings",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// The Service principals page: every principal, the groups to pick from, the Entra setting.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServicePrincipalsView {
    pub principals: Vec<toolgate_domain::model::ServicePrincipal>,
    pub groups: Vec<toolgate_domain::model::Group>,
    pub entra: toolgate_domain::model::EntraAppSettings,
    /// Where principals get their tokens (client credentials grant).
    pub token_url: String,
    /// The server's time, to tell expired principals.
    pub now: chrono::DateTime<chrono::Utc>,
}

#[cfg(feature = "ssr")]
async fn entra_settings(
    ctx: &crate::auth::DashboardContext,
) -> Result<toolgate_domain::model::EntraAppSettings, ServerFnError> {
    Ok(ctx
        .store
        .setting::<toolgate_domain::model::EntraAppSettings>(
            toolgate_domain::store::setting_keys::ENTRA_APPS,
        )
        .await
        .map_err(shown)?
        .unwrap_or_default())
}

#[server(prefix = "/fn", endpoint = "service_principals")]
pub async fn service_principals() -> Result<ServicePrincipalsView, ServerFnError> {
    let (_, ctx) = require(Page::ServicePrincipals).await?;
    Ok(ServicePrincipalsView {
        principals: ctx.store.list_service_principals().await.map_err(shown)?,
        groups: ctx.store.list_groups().await.map_err(shown)?,
        entra: entra_settings(&ctx).await?,
        token_url: format!("{}/oauth/token", ctx.public_url.trim_end_matches('/')),
        now: ctx.store.clock().now(),
    })
}

/// A principal just created: its client id and first secret (shown this once).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CreatedPrincipal {
    pub client_id: String,
    pub name: String,
    pub secret: String,
}

/// `None` for an empty field, the trimmed text otherwise.
#[cfg(feature = "ssr")]
fn given(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

#[server(prefix = "/fn", endpoint = "create_service_principal")]
pub async fn create_service_principal(
    name: String,
    owner: String,
    description: String,
    groups: Option<Vec<String>>,
    expires_on: String,
    entra_app_id: String,
) -> Result<CreatedPrincipal, ServerFnError> {
    let (admin, ctx) = require(Page::ServicePrincipals).await?;
    let expires_at = end_of_day_ms(&expires_on).map_err(ServerFnError::new)?;
    let (sp, secret) = ctx
        .store
        .create_service_principal(toolgate_domain::store::NewServicePrincipal {
            name,
            description,
            owner,
            groups: groups.unwrap_or_default(),
            expires_at,
            entra_app_id: given(&entra_app_id),
            created_by: Some(admin.username.clone()),
        })
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, service_principal = %sp.id, "service principal created from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.service_principal.create",
        None,
        serde_json::to_value(&sp).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(CreatedPrincipal {
        client_id: sp.id,
        name: sp.name,
        secret,
    })
}

/// One principal with the groups to pick from and its recent activity.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServicePrincipalDetail {
    pub principal: toolgate_domain::model::ServicePrincipal,
    pub groups: Vec<toolgate_domain::model::Group>,
    /// Its own audit events (tokens issued, refusals, calls), newest first.
    pub activity: Vec<AuditEvent>,
    /// The server's time, to tell expired secrets.
    pub now: chrono::DateTime<chrono::Utc>,
}

#[server(prefix = "/fn", endpoint = "service_principal")]
pub async fn service_principal(id: String) -> Result<ServicePrincipalDetail, ServerFnError> {
    use toolgate_domain::model::AuditFilter;
    let (_, ctx) = require(Page::ServicePrincipals).await?;
    let principal = ctx.store.service_principal(&id).await.map_err(shown)?;
    // The audit search filters by principal name: its name, and its id (refused token requests
    // name the client id they were given). Only events of this principal count: its id is the
    // principal id of its calls and the client id of its token requests.
    let search = |subject: String| {
        let store = ctx.store.clone();
        async move {
            let filter = AuditFilter {
                subject: Some(subject),
                ..AuditFilter::default()
            };
            store
                .search_audit(&filter, None, 50)
                .await
                .map(|(items, _)| items)
        }
    };
    let by_name = search(principal.name.clone()).await.map_err(shown)?;
    let by_id = search(principal.id.clone()).await.map_err(shown)?;
    let id = Some(principal.id.as_str());
    let mut activity: Vec<AuditEvent> = by_name
        .into_iter()
        .chain(by_id)
        .filter(|e| {
            e.subject_kind.as_deref() == Some("service_principal")
                && (e.principal_id.as_deref() == id
                    || e.client_id.as_deref() == id
                    || e.principal == principal.id)
        })
        .collect();
    activity.sort_by_key(|e| std::cmp::Reverse(e.id));
    activity.dedup_by_key(|e| e.id);
    activity.truncate(50);
    Ok(ServicePrincipalDetail {
        principal,
        groups: ctx.store.list_groups().await.map_err(shown)?,
        activity,
        now: ctx.store.clock().now(),
    })
}

/// Saves owner, description, groups, expiry and Entra application; empty expiry or
/// application removes them.
#[server(prefix = "/fn", endpoint = "update_service_principal")]
pub async fn update_service_principal(
    id: String,
    owner: String,
    description: String,
    groups: Option<Vec<String>>,
    expires_on: String,
    entra_app_id: String,
) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::ServicePrincipals).await?;
    let before = ctx.store.service_principal(&id).await.map_err(shown)?;
    let expires_at = end_of_day_ms(&expires_on).map_err(ServerFnError::new)?;
    let after = ctx
        .store
        .update_service_principal(
            &id,
            toolgate_domain::store::SpUpdate {
                owner: Some(owner),
                description: Some(description),
                // The form lists every group: none ticked means none.
                groups: Some(groups.unwrap_or_default()),
                expires_at: Some(expires_at),
                entra_app_id: Some(given(&entra_app_id)),
                ..Default::default()
            },
        )
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, service_principal = %id, "service principal changed from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.service_principal.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Disables (its tokens stop at once) or re-enables a principal.
#[server(prefix = "/fn", endpoint = "switch_service_principal")]
pub async fn switch_service_principal(id: String, disabled: bool) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::ServicePrincipals).await?;
    let before = ctx.store.service_principal(&id).await.map_err(shown)?;
    let after = ctx
        .store
        .update_service_principal(
            &id,
            toolgate_domain::store::SpUpdate {
                disabled: Some(disabled),
                ..Default::default()
            },
        )
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, service_principal = %id, disabled, "service principal switched from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.service_principal.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Overlaps offered when rotating a secret: (form value in hours, label).
pub const ROTATION_OVERLAPS: [(i64, &str); 4] = [
    (0, "none: older secrets stop now"),
    (1, "1 hour"),
    (24, "24 hours"),
    (168, "7 days"),
];

/// A new secret for a principal (shown once); older live secrets keep working for the overlap.
#[server(prefix = "/fn", endpoint = "rotate_sp_secret")]
pub async fn rotate_sp_secret(id: String, overlap_hours: String) -> Result<String, ServerFnError> {
    let (admin, ctx) = require(Page::ServicePrincipals).await?;
    let overlap_ms = match overlap_hours.trim() {
        "" => toolgate_domain::store::DEFAULT_ROTATION_OVERLAP_MS,
        h => {
            let hours: i64 = h
                .parse()
                .ok()
                .filter(|h| ROTATION_OVERLAPS.iter().any(|(o, _)| o == h))
                .ok_or_else(|| ServerFnError::new(format!("unknown overlap {h:?}")))?;
            hours * 3_600_000
        }
    };
    let (secret_id, secret) = ctx
        .store
        .add_sp_secret(&id, overlap_ms, None)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, service_principal = %id, secret = %secret_id, "service principal secret rotated from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.service_principal.secret_rotate",
        None,
        Some(serde_json::json!({"service_principal": id, "secret_id": secret_id, "overlap_ms": overlap_ms})),
    )
    .await;
    changed(&ctx).await;
    Ok(secret)
}

#[server(prefix = "/fn", endpoint = "revoke_sp_secret")]
pub async fn revoke_sp_secret(id: String, secret_id: String) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::ServicePrincipals).await?;
    ctx.store
        .revoke_sp_secret(&id, &secret_id)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, service_principal = %id, secret = %secret_id, "service principal secret revoked from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.service_principal.secret_revoke",
        Some(serde_json::json!({"service_principal": id, "secret_id": secret_id})),
        None,
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

/// Deletes a principal with its secrets and memberships, then goes back to the list.
#[server(prefix = "/fn", endpoint = "delete_service_principal")]
pub async fn delete_service_principal(id: String) -> Result<(), ServerFnError> {
    let (admin, ctx) = require(Page::ServicePrincipals).await?;
    let before = ctx.store.service_principal(&id).await.map_err(shown)?;
    ctx.store
        .delete_service_principal(&id)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, service_principal = %id, "service principal deleted from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.service_principal.delete",
        serde_json::to_value(&before).ok(),
        None,
    )
    .await;
    changed(&ctx).await;
    leptos_axum::redirect("/service-principals");
    Ok(())
}

/// Checks the Entra app-only settings an admin submits; `Err` is fit to show.
pub fn check_entra_settings(s: &toolgate_domain::model::EntraAppSettings) -> Result<(), String> {
    if (s.enabled || !s.tenant_id.is_empty()) && !is_guid(&s.tenant_id) {
        return Err("the tenant id must be the directory (tenant) id, a GUID".into());
    }
    if s.enabled && s.audiences.is_empty() {
        return Err(
            "name at least one audience: the gateway's application id URI or client id".into(),
        );
    }
    if let Some(a) = s.audiences.iter().find(|a| a.len() > 512) {
        return Err(format!("audience {a:?} is too long"));
    }
    if s.required_role.as_ref().is_some_and(|r| r.len() > 256) {
        return Err("the required role is too long".into());
    }
    Ok(())
}

/// Saves acceptance of Entra app-only tokens; audiences comma-separated. Key-set and issuer
/// overrides set through the API are kept.
#[server(prefix = "/fn", endpoint = "save_entra_apps")]
pub async fn save_entra_apps(
    enabled: Option<String>,
    tenant_id: String,
    audiences: String,
    required_role: String,
) -> Result<(), ServerFnError> {
    use toolgate_domain::model::EntraAppSettings;
    let (admin, ctx) = require(Page::ServicePrincipals).await?;
    let before = entra_settings(&ctx).await?;
    let after = EntraAppSettings {
        enabled: enabled.is_some(),
        tenant_id: tenant_id.trim().to_string(),
        audiences: audiences
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        required_role: given(&required_role),
        ..before.clone()
    };
    check_entra_settings(&after).map_err(ServerFnError::new)?;
    ctx.store
        .put_setting(toolgate_domain::store::setting_keys::ENTRA_APPS, &after)
        .await
        .map_err(shown)?;
    tracing::info!(admin = %admin.username, "Entra app-only settings changed from the dashboard");
    record_change(
        &ctx,
        &admin.username,
        "admin.entra_apps.settings",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    changed(&ctx).await;
    Ok(())
}

#[cfg(test)]
mod agent_tests {
    use super::*;

    #[test]
    fn token_lifetimes() {
        assert_eq!(token_expiry(1_000, "never"), Ok(None));
        assert_eq!(token_expiry(1_000, ""), Ok(None));
        assert_eq!(token_expiry(1_000, "7"), Ok(Some(1_000 + 7 * 86_400_000)));
        assert!(token_expiry(1_000, "8").is_err());
        assert!(token_expiry(1_000, "-7").is_err());
    }

    #[test]
    fn expiry_dates_end_with_their_day() {
        assert_eq!(end_of_day_ms(""), Ok(None));
        // 2030-01-01 is valid all day: the end is 2030-01-02T00:00:00Z.
        assert_eq!(end_of_day_ms("2030-01-01"), Ok(Some(1_893_542_400_000)));
        assert!(end_of_day_ms("01/01/2030").is_err());
    }

    #[test]
    fn entra_settings_checks() {
        use toolgate_domain::model::EntraAppSettings;
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47".to_string();
        let ok = EntraAppSettings {
            enabled: true,
            tenant_id: tenant.clone(),
            audiences: vec!["api://toolgate".into()],
            ..Default::default()
        };
        assert_eq!(check_entra_settings(&ok), Ok(()));
        let no_audience = EntraAppSettings {
            audiences: vec![],
            ..ok.clone()
        };
        assert!(check_entra_settings(&no_audience).is_err());
        let bad_tenant = EntraAppSettings {
            tenant_id: "contoso.onmicrosoft.com".into(),
            ..ok.clone()
        };
        assert!(check_entra_settings(&bad_tenant).is_err());
        // Off and empty is fine (the default).
        assert_eq!(check_entra_settings(&EntraAppSettings::default()), Ok(()));
        assert!(is_guid(&tenant));
        assert!(!is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4"));
    }
}
