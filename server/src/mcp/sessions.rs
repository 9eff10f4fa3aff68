//! MCP sessions that survive a load balancer: each streamable-HTTP session's initialize
//! parameters and owner are kept in the database, so a request carrying a session id opened on
//! another replica is served here (rmcp replays the handshake locally) — no sticky sessions.
//! Sessions are bound to the principal that opened them, on every replica.

use rmcp::transport::streamable_http_server::session::{SessionState, SessionStore};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use toolgate_domain::store::Store;

/// Which endpoint a session belongs to: a session of `/mcp` is not one of `/mcp/{connector}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `/mcp`: every connector's tools, `{connector}__{tool}`.
    Aggregate,
    /// `/mcp/{connector}`: one connector's tools under their own names.
    Connector,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Self::Aggregate => "aggregate",
            Self::Connector => "connector",
        }
    }
}

/// rmcp's external session store, backed by the `mcp_sessions` table.
pub struct DbSessionStore {
    store: Store,
    service: Service,
}

impl DbSessionStore {
    pub fn new(store: Store, service: Service) -> Self {
        Self { store, service }
    }
}

#[async_trait::async_trait]
impl SessionStore for DbSessionStore {
    async fn load(
        &self,
        session_id: &str,
    ) -> Result<
        Option<SessionState>,
        rmcp::transport::streamable_http_server::session::SessionStoreError,
    > {
        let Some(row) = self.store.load_mcp_session(session_id).await? else {
            return Ok(None);
        };
        // Another endpoint's session, or one whose handshake never finished: unknown here.
        if row.service != self.service.as_str() || row.owner.is_none() {
            return Ok(None);
        }
        match serde_json::from_str::<SessionState>(&row.state) {
            Ok(state) => Ok(Some(state)),
            Err(e) => {
                tracing::warn!(error = %e, "stored MCP session unreadable; treated as unknown");
                Ok(None)
            }
        }
    }

    async fn store(
        &self,
        session_id: &str,
        state: &SessionState,
    ) -> Result<(), rmcp::transport::streamable_http_server::session::SessionStoreError> {
        let json = serde_json::to_string(state)?;
        self.store
            .save_mcp_session(session_id, self.service.as_str(), &json)
            .await?;
        Ok(())
    }

    async fn delete(
        &self,
        session_id: &str,
    ) -> Result<(), rmcp::transport::streamable_http_server::session::SessionStoreError> {
        self.store.delete_mcp_session(session_id).await?;
        Ok(())
    }
}

/// Sessions remembered in memory at most this long without use.
const OWNER_TTL: Duration = Duration::from_secs(24 * 3600);

/// How often a session in use has its `last_seen_at` refreshed in the database.
const TOUCH_EVERY: Duration = Duration::from_secs(3600);

/// Who opened which MCP session: answered from memory for sessions this replica has seen, from
/// the database for the first request of a session opened elsewhere. A session id presented
/// with another principal's credential is refused as unknown (a leaked id reads nobody's
/// results).
pub struct SessionOwners {
    store: Store,
    owners: Mutex<HashMap<String, Known>>,
}

struct Known {
    owner: String,
    used: Instant,
    touched: Instant,
}

/// What the middleware should do with a request naming a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// The caller opened it (or nobody knows it: rmcp answers 404 for unknown sessions).
    Allowed,
    /// Someone else's session, or one whose handshake never finished.
    Refused,
}

impl SessionOwners {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            owners: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `owner` may use session `id`. A database error refuses (fail closed).
    pub async fn check(&self, id: &str, owner: &str) -> Access {
        let touch = {
            let mut map = self.lock();
            match map.get_mut(id) {
                Some(known) if known.owner == owner => {
                    known.used = Instant::now();
                    if known.touched.elapsed() >= TOUCH_EVERY {
                        known.touched = Instant::now();
                        Some(true)
                    } else {
                        Some(false)
                    }
                }
                Some(_) => return Access::Refused,
                None => None,
            }
        };
        match touch {
            Some(true) => {
                let store = self.store.clone();
                let id = id.to_string();
                tokio::spawn(async move {
                    if let Err(e) = store.touch_mcp_sessions(&[id]).await {
                        tracing::debug!(error = %e, "MCP session not marked as used");
                    }
                });
                return Access::Allowed;
            }
            Some(false) => return Access::Allowed,
            None => {}
        }
        // Not seen here: opened on another replica, before a restart, or never.
        match self.store.load_mcp_session(id).await {
            Ok(None) => Access::Allowed,
            Ok(Some(row)) if row.owner.as_deref() == Some(owner) => {
                self.remember(id, owner.to_string());
                Access::Allowed
            }
            Ok(Some(_)) => Access::Refused,
            Err(e) => {
                tracing::warn!(error = %e, "MCP session owner unreadable; request refused");
                Access::Refused
            }
        }
    }

    /// Binds a session this replica just opened to its principal, here and in the database,
    /// before its id reaches the client.
    pub async fn record(&self, id: &str, owner: String) {
        match self.store.claim_mcp_session(id, &owner).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("MCP session not stored; it stays on this replica"),
            Err(e) => {
                tracing::warn!(error = %e, "MCP session owner not stored; it stays on this replica")
            }
        }
        self.remember(id, owner);
    }

    fn remember(&self, id: &str, owner: String) {
        let mut map = self.lock();
        if map.len() >= 10_000 {
            map.retain(|_, k| k.used.elapsed() < OWNER_TTL);
        }
        let now = Instant::now();
        map.insert(
            id.to_string(),
            Known {
                owner,
                used: now,
                touched: now,
            },
        );
    }

    /// The session was closed by its client.
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}
