//! MCP sessions shared by every replica: the client's initialize parameters and the principal
//! that opened each streamable-HTTP session, keyed by the SHA-256 of its id.

use super::Store;
use crate::Result;
use crate::crypto::sha256_hex;

/// Sessions not used for this long are removed (rmcp closes idle ones in memory much sooner;
/// a client returning after that starts a new session).
pub const MCP_SESSION_TTL_MS: i64 = 24 * 3600 * 1000;

/// One stored MCP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpSessionRow {
    /// `aggregate` (/mcp) or `connector` (/mcp/{connector}).
    pub service: String,
    /// `kind:id` of the principal that opened it; `None` while its handshake is under way.
    pub owner: Option<String>,
    /// The client's initialize parameters (JSON).
    pub state: String,
}

impl Store {
    /// Records (or replaces) a session's initialize parameters after its handshake.
    pub async fn save_mcp_session(&self, id: &str, service: &str, state: &str) -> Result<()> {
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO mcp_sessions (id_hash, service, owner, state, created_at, last_seen_at)
             VALUES ($1, $2, NULL, $3, $4, $4)
             ON CONFLICT (id_hash) DO UPDATE SET state = excluded.state,
                 last_seen_at = excluded.last_seen_at",
        )
        .bind(sha256_hex(id.as_bytes()))
        .bind(service)
        .bind(state)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Binds a session to the principal that opened it. Only an unowned session can be bound:
    /// `false` when the session is unknown or already someone's.
    pub async fn claim_mcp_session(&self, id: &str, owner: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE mcp_sessions SET owner = $2, last_seen_at = $3
             WHERE id_hash = $1 AND (owner IS NULL OR owner = $2)",
        )
        .bind(sha256_hex(id.as_bytes()))
        .bind(owner)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The session unless unknown or unused for longer than [`MCP_SESSION_TTL_MS`].
    pub async fn load_mcp_session(&self, id: &str) -> Result<Option<McpSessionRow>> {
        let row: Option<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT service, owner, state FROM mcp_sessions WHERE id_hash = $1 AND last_seen_at > $2",
        )
        .bind(sha256_hex(id.as_bytes()))
        .bind(self.now_ms() - MCP_SESSION_TTL_MS)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(service, owner, state)| McpSessionRow {
            service,
            owner,
            state,
        }))
    }

    /// Marks sessions as in use now (one statement for a batch of ids).
    pub async fn touch_mcp_sessions(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = self.now_ms();
        for chunk in ids.chunks(500) {
            let list = (0..chunk.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql =
                format!("UPDATE mcp_sessions SET last_seen_at = $1 WHERE id_hash IN ({list})");
            let mut q = sqlx::query(&sql).bind(now);
            for id in chunk {
                q = q.bind(sha256_hex(id.as_bytes()));
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Forgets a session (closed by its client with DELETE).
    pub async fn delete_mcp_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM mcp_sessions WHERE id_hash = $1")
            .bind(sha256_hex(id.as_bytes()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes sessions unused for longer than [`MCP_SESSION_TTL_MS`]; returns how many.
    pub async fn purge_mcp_sessions(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM mcp_sessions WHERE last_seen_at <= $1")
            .bind(self.now_ms() - MCP_SESSION_TTL_MS)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
