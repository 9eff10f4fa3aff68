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
        E::Invalid(m) | E::Conflict(m) | E::PreconditionFailed(m) => ServerFnError::new(m),
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
