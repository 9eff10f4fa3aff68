//! Settings kept in the database (so every replica sees the same), one JSON document per key.
//! Secret settings are sealed with the master key, bound to their key name.

use super::Store;

/// Keys of the settings Toolgate keeps.
pub mod keys {
    /// `Option<OidcSettings>`: sign-in with the OpenID Provider.
    pub const OIDC: &str = "identity.oidc";
    /// Sealed: the OpenID Provider client secret.
    pub const OIDC_SECRET: &str = "identity.oidc.client_secret";
    /// `RoleMappings`: groups that give dashboard roles.
    pub const ROLES: &str = "identity.roles";
    /// `AuditIntegrity`: the last audit chain check.
    pub const AUDIT_INTEGRITY: &str = "audit.integrity";
    /// `DlpSettings`: detectors and actions for tool traffic.
    pub const DLP: &str = "dlp";
    /// String: changed by an out-of-process writer (the CLI) on SQLite; servers poll it.
    pub const CHANGE_MARKER: &str = "change.marker";
    /// `CatalogSettings`: how changed tool definitions are treated.
    pub const CATALOG: &str = "catalog";
    /// `OAuthSettings`: the authorization server's switches.
    pub const OAUTH: &str = "oauth";
    /// Entra app-only token acceptance (the server's `EntraAppSettings`).
    pub const ENTRA_APPS: &str = "entra_apps";
    /// Elevation and per-call approval settings (`elevation::ElevationSettings`).
    pub const ELEVATION: &str = "elevation";
    /// The notification webhook URL (sealed: Slack and Teams URLs carry their secret).
    pub const ELEVATION_WEBHOOK: &str = "elevation.webhook_url";
}
use crate::{Error, Result};

/// Stores a setting ($1 key, $2 JSON value, $3 now), replacing any previous value.
pub(super) const UPSERT_SETTING: &str =
    "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
use serde::Serialize;
use serde::de::DeserializeOwned;

impl Store {
    /// A setting, or `None` when never set.
    pub async fn setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(v,)| {
            serde_json::from_str(&v).map_err(|e| Error::Internal(format!("setting {key}: {e}")))
        })
        .transpose()
    }

    /// Stores a setting (replacing any previous value).
    pub async fn put_setting<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let json = serde_json::to_string(value)
            .map_err(|e| Error::Internal(format!("setting {key}: {e}")))?;
        sqlx::query(UPSERT_SETTING)
            .bind(key)
            .bind(json)
            .bind(self.now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes a setting (a later read gives `None`).
    pub async fn delete_setting(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A secret setting, decrypted.
    pub async fn secret_setting(&self, key: &str) -> Result<Option<String>> {
        let Some(sealed) = self.setting::<String>(key).await? else {
            return Ok(None);
        };
        let plain = self.cipher.open(&sealed, key.as_bytes())?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| Error::Internal(format!("secret {key} is not text")))
    }

    /// Stores a secret setting sealed under the master key.
    pub async fn put_secret_setting(&self, key: &str, secret: &str) -> Result<()> {
        let sealed = self.cipher.seal(secret.as_bytes(), key.as_bytes())?;
        self.put_setting(key, &sealed).await
    }

    /// Binds a user to the stable subject they sign in as (`tid:oid` for Entra, `iss|sub` else).
    pub async fn bind_oidc_subject(&self, user_id: &str, subject: &str) -> Result<()> {
        sqlx::query("UPDATE users SET oidc_subject = $1 WHERE id = $2")
            .bind(subject)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user bound to a subject.
    pub async fn user_by_oidc_subject(&self, subject: &str) -> Result<Option<crate::model::User>> {
        let sql = format!(
            "SELECT {} FROM users u WHERE u.oidc_subject = $1",
            super::users::USER_COLUMNS
        );
        Ok(sqlx::query_as::<_, super::users::UserRow>(&sql)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?
            .map(Into::into))
    }

    /// How many live dashboard sessions each person has, as (user id, count).
    pub async fn session_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT user_id, COUNT(*) FROM dashboard_sessions
             WHERE user_id IS NOT NULL AND expires_at > $1 GROUP BY user_id",
        )
        .bind(self.now_ms())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends every dashboard session of a user (offboarding); returns how many.
    pub async fn delete_user_sessions(&self, user_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// The subject a user is bound to, if any.
    pub async fn oidc_subject_of(&self, user_id: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT oidc_subject FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(s,)| s))
    }
}
