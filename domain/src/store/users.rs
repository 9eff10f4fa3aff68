//! Users: the people agents act for.

use super::{ResultExt, Store, new_id};
use crate::clock::from_millis;
use crate::model::User;
use crate::names::{validate_display_name, validate_user_name};
use crate::{Error, Result};

/// Input for a new user.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub user_name: String,
    pub display_name: String,
    pub external_id: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: String,
    user_name: String,
    display_name: String,
    external_id: Option<String>,
    active: i64,
    source: String,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            user_name: r.user_name,
            display_name: r.display_name,
            external_id: r.external_id,
            active: r.active != 0,
            source: r.source,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        }
    }
}

pub(super) const USER_COLUMNS: &str = "u.id, u.user_name, u.display_name, u.external_id, u.active, u.source, u.created_at, u.updated_at";

impl Store {
    /// Creates a user; a user name taken (case-insensitively) is a conflict.
    pub async fn create_user(&self, input: NewUser) -> Result<User> {
        validate_user_name(&input.user_name).map_err(Error::Invalid)?;
        validate_display_name("display_name", &input.display_name).map_err(Error::Invalid)?;
        let now = self.now_ms();
        let row = UserRow {
            id: new_id(),
            user_name: input.user_name,
            display_name: input.display_name,
            external_id: input.external_id,
            active: 1,
            source: "api".into(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO users (id, user_name, display_name, external_id, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.user_name)
        .bind(&row.display_name)
        .bind(&row.external_id)
        .bind(row.active)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await
        .on_unique(|| format!("user_name {:?} is already taken", row.user_name))?;
        Ok(row.into())
    }

    pub async fn get_user(&self, id: &str) -> Result<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1");
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(User::from)
            .ok_or(Error::NotFound("user"))
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u ORDER BY lower(u.user_name)");
        let rows = sqlx::query_as::<_, UserRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// People who hold a live personal token (the only ones the proxy needs to know).
    pub async fn users_with_tokens(&self) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id IN (SELECT user_id FROM api_tokens
                 WHERE kind = 'personal' AND revoked_at IS NULL AND user_id IS NOT NULL)
               OR u.id IN (SELECT user_id FROM oauth_grants WHERE revoked_at IS NULL)"
        );
        let rows = sqlx::query_as::<_, UserRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// Enables or disables a user; a disabled user's tokens stop working at the next snapshot and
    /// their dashboard sessions end now.
    pub async fn set_user_active(&self, id: &str, active: bool) -> Result<User> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET active = $1, updated_at = $2, version = version + 1 WHERE id = $3",
        )
        .bind(i64::from(active))
        .bind(self.now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("user"));
        }
        if !active {
            sqlx::query("DELETE FROM dashboard_sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            super::oauth::revoke_user_grants(&mut tx, id, self.now_ms(), "user disabled").await?;
        }
        tx.commit().await?;
        self.get_user(id).await
    }
}
