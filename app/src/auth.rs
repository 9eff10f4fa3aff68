//! Who is signed in to the dashboard, as kept in the session.

use serde::{Deserialize, Serialize};

/// Session key of the signed-in dashboard user.
pub const SESSION_USER_KEY: &str = "dashboard_user";

/// Dashboard roles, from most to least powerful. People signed in with the OpenID Provider get
/// theirs from the group mappings in the identity settings; local accounts are admins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DashboardRole {
    Admin,
    Approver,
    Auditor,
    User,
}

impl DashboardRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DashboardRole::Admin => "admin",
            DashboardRole::Approver => "approver",
            DashboardRole::Auditor => "auditor",
            DashboardRole::User => "user",
        }
    }

    /// What each role may open.
    pub fn may(self, page: Page) -> bool {
        use DashboardRole::*;
        match page {
            // Everyone signed in connects their own agents.
            Page::Connect => true,
            // Everyone sees their own access and asks for elevations there.
            Page::Access => true,
            Page::Overview => matches!(self, Admin | Approver | Auditor),
            Page::Audit => matches!(self, Admin | Auditor),
            Page::Approvals => matches!(self, Admin | Approver),
            Page::Connectors
            | Page::Groups
            | Page::Policies
            | Page::Simulator
            | Page::Users
            | Page::ServicePrincipals
            | Page::OAuthClients
            | Page::ElevationProfiles
            | Page::Settings => self == Admin,
        }
    }
}

/// The dashboard's pages, for role checks and navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Overview,
    /// "Connect your agent": the MCP URL, the person's authorized agents and personal tokens.
    Connect,
    Connectors,
    Groups,
    /// The policy matrix and its editor.
    Policies,
    /// The effective-access simulator.
    Simulator,
    Audit,
    /// "My access": the person's groups, elevations and requests.
    Access,
    /// The approvals inbox: elevation requests and calls waiting for approval.
    Approvals,
    /// The elevation profiles editor and the elevation settings.
    ElevationProfiles,
    Users,
    ServicePrincipals,
    /// OAuth clients of the authorization server and its switches.
    OAuthClients,
    Settings,
}

/// How the user signed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInSource {
    /// A local break-glass account (argon2 password).
    Local,
    /// The configured OpenID Provider (Microsoft Entra ID).
    Oidc,
}

/// The signed-in dashboard user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardUser {
    /// The local account id, or the directory user id for OIDC sign-ins.
    pub id: String,
    pub username: String,
    pub role: DashboardRole,
    pub source: SignInSource,
}

#[cfg(feature = "ssr")]
pub use ssr::*;

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use leptos::prelude::*;
    use std::sync::Arc;
    use toolgate_domain::snapshot::SnapshotHandle;
    use toolgate_domain::store::Store;

    /// What server functions need from the server, provided as Leptos context.
    #[derive(Clone, Debug)]
    pub struct DashboardContext {
        pub store: Store,
        pub snapshot: Arc<SnapshotHandle>,
        pub audit: toolgate_domain::audit::AuditSink,
        /// The URL people and agents use, for the values to paste into Entra.
        pub public_url: String,
        /// How the audit log is run (retention, fail mode), from the configuration.
        pub audit_policy: toolgate_domain::model::AuditPolicy,
        /// Elevation requests, decisions and per-call approvals.
        pub workflow: toolgate_domain::approvals::Workflow,
    }

    /// The context, or an error when the server forgot to provide it.
    pub fn context() -> Result<DashboardContext, ServerFnError> {
        use_context::<DashboardContext>()
            .ok_or_else(|| ServerFnError::new("server context missing"))
    }

    /// The session of the current request.
    pub async fn session() -> Result<tower_sessions::Session, ServerFnError> {
        leptos_axum::extract::<tower_sessions::Session>()
            .await
            .map_err(|_| ServerFnError::new("no session"))
    }

    /// The signed-in user, if any.
    pub async fn current_user() -> Result<Option<DashboardUser>, ServerFnError> {
        let s = session().await?;
        Ok(s.get::<DashboardUser>(SESSION_USER_KEY)
            .await
            .unwrap_or(None))
    }

    /// The signed-in user if their role may open `page`, or an error (HTTP 401/403) that stops
    /// the server function. Server functions call this first: they cannot reach the store
    /// without it.
    pub async fn require(page: Page) -> Result<(DashboardUser, DashboardContext), ServerFnError> {
        let Some(user) = current_user().await? else {
            if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
                opts.set_status(axum::http::StatusCode::UNAUTHORIZED);
            }
            return Err(ServerFnError::new("sign in first"));
        };
        if !user.role.may(page) {
            if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
                opts.set_status(axum::http::StatusCode::FORBIDDEN);
            }
            return Err(ServerFnError::new(format!(
                "your role ({}) does not give access to this page",
                user.role.as_str()
            )));
        }
        Ok((user, context()?))
    }

    /// `require` for the admin-only pages.
    pub async fn require_admin() -> Result<(DashboardUser, DashboardContext), ServerFnError> {
        require(Page::Settings).await
    }
}
