//! Who is signed in to the dashboard, as kept in the session.

use serde::{Deserialize, Serialize};

/// Session key of the signed-in dashboard user.
pub const SESSION_USER_KEY: &str = "dashboard_user";

/// Dashboard roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DashboardRole {
    Admin,
}

/// The signed-in dashboard user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardUser {
    pub id: String,
    pub username: String,
    pub role: DashboardRole,
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

    /// The signed-in admin, or an error (HTTP 401/403) that stops the server function. Mutating
    /// server functions call this first: they cannot reach the store without it.
    pub async fn require_admin() -> Result<(DashboardUser, DashboardContext), ServerFnError> {
        let Some(user) = current_user().await? else {
            if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
                opts.set_status(axum::http::StatusCode::UNAUTHORIZED);
            }
            return Err(ServerFnError::new("sign in first"));
        };
        if user.role != DashboardRole::Admin {
            if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
                opts.set_status(axum::http::StatusCode::FORBIDDEN);
            }
            return Err(ServerFnError::new("this needs the admin role"));
        }
        Ok((user, context()?))
    }
}
