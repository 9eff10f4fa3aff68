//! Local dashboard accounts (break-glass admins), with argon2id password hashes.

use super::{ResultExt, Store, new_id};
use crate::crypto::{hash_password, verify_password};
use crate::{Error, Result};

/// A local account that signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAccount {
    pub id: String,
    pub username: String,
}

/// A real argon2id hash to verify against when the user name is unknown, so a miss takes as
/// long as a wrong password (no user enumeration by timing).
static DUMMY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

async fn dummy_hash() -> Result<String> {
    DUMMY_HASH
        .get_or_try_init(|| hash_password("toolgate-dummy-password".into()))
        .await
        .cloned()
}

impl Store {
    /// Creates a local admin account; the password is hashed with argon2id off the async threads.
    pub async fn create_admin(&self, username: &str, password: &str) -> Result<LocalAccount> {
        crate::names::validate_user_name(username).map_err(Error::Invalid)?;
        if password.chars().count() < 12 {
            return Err(Error::invalid("password must be at least 12 characters"));
        }
        let hash = hash_password(password.to_string()).await?;
        let id = new_id();
        sqlx::query(
            "INSERT INTO admin_accounts (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(username)
        .bind(&hash)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await
        .on_unique(|| format!("admin {username:?} already exists"))?;
        Ok(LocalAccount {
            id,
            username: username.to_string(),
        })
    }

    /// Checks a local sign-in; `Unauthenticated` for an unknown name or a wrong password alike.
    pub async fn verify_admin(&self, username: &str, password: &str) -> Result<LocalAccount> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT id, username, password_hash FROM admin_accounts WHERE lower(username) = lower($1)",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let (id, name, hash) = match row {
            Some(found) => found,
            None => (String::new(), String::new(), dummy_hash().await?),
        };
        let ok = verify_password(password.to_string(), hash).await;
        if ok && !id.is_empty() {
            Ok(LocalAccount { id, username: name })
        } else {
            Err(Error::Unauthenticated)
        }
    }

    pub async fn count_admins(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM admin_accounts")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}
