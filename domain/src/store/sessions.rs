//! Dashboard sessions: opaque records keyed by session id, with an expiry.

use super::Store;
use crate::Result;

impl Store {
    /// The session's data and expiry (unix ms) unless missing or expired.
    pub async fn load_session(&self, id: &str) -> Result<Option<(String, i64)>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT data, expires_at FROM dashboard_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Inserts or replaces a session; `user_id` names the directory user it belongs to, if any.
    pub async fn save_session(
        &self,
        id: &str,
        data: &str,
        expires_at_ms: i64,
        user_id: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboard_sessions (id, data, expires_at, user_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at,
                 user_id = excluded.user_id",
        )
        .bind(id)
        .bind(data)
        .bind(expires_at_ms)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Inserts a session only if the id is free; `false` when it was taken.
    pub async fn create_session(
        &self,
        id: &str,
        data: &str,
        expires_at_ms: i64,
        user_id: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO dashboard_sessions (id, data, expires_at, user_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(data)
        .bind(expires_at_ms)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn delete_expired_sessions(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(self.now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
