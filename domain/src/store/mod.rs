//! The store: one storage API over SQLite (embedded default) and PostgreSQL (several replicas),
//! chosen by the URL scheme. Queries are written once in portable SQL over sqlx's `Any` driver;
//! each aggregate has its own module.

mod admins;
mod audit;
mod catalog;
mod connectors;
mod directory;
mod elevation;
mod groups;
mod mcp_sessions;
mod oauth;
mod policies;
pub mod rekey;
mod service_principals;
mod sessions;
mod settings;
mod siem;
mod tokens;
mod users;

pub use audit::{
    AuditCursor, AuditQuery, ChainBreak, ChainReport, MAX_ARGS_BYTES, NewAuditEvent, truncate_utf8,
};
pub use catalog::{
    CatalogFacts, CatalogSettings, CatalogSync, DiscoveredTool, MAX_TOOLS_PER_CONNECTOR,
};
pub use connectors::{
    ConnectorSecrets, ConnectorUpdate, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_MS, NewConnector,
    validate_env_name, validate_new_connector,
};
pub use directory::{
    DirectoryGroup, DirectoryKey, DirectoryUser, GroupWrite, MemberChange, ScimRequestLog,
    UserWrite,
};
pub use elevation::{
    ActiveElevationRow, ApprovalFilter, CallBinding, Claim, ElevationFilter, ElevationSubject,
    NewElevation,
};
pub use mcp_sessions::{MCP_SESSION_TTL_MS, McpSessionRow};
pub use oauth::{
    AuthCode, ClientRecord, GrantInfo, GrantRefusal, Issued, NewOAuthClient, is_loopback_redirect,
    redirect_host, redirect_matches, validate_redirect_uri,
};
pub use policies::{PolicyChange, PolicyRow};
pub use service_principals::{
    DEFAULT_ROTATION_OVERLAP_MS, NewServicePrincipal, SpSnapshotRow, SpUpdate,
};
pub use settings::keys as setting_keys;
pub use tokens::TokenGrant;
pub use users::NewUser;

use crate::clock::{SharedClock, to_millis};
use crate::crypto::Cipher;
use crate::{Error, Result};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::time::Duration;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL channel replicas announce changes on.
pub const CHANGE_CHANNEL: &str = "toolgate_changes";

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, or a clear error for anything else.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::invalid(
                "database URL must start with sqlite:// or postgres://",
            ))
        }
    }
}

/// Handle to the database; cheap to clone (a pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    cipher: Cipher,
    clock: SharedClock,
}

/// How SQLite makes commits durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// Every commit is flushed to disk (fsync) before it returns: nothing committed is lost even
    /// on power loss. Costs a disk flush per commit (per audit batch).
    #[default]
    Full,
    /// WAL with `synchronous = NORMAL`: a commit survives the process crashing (kill -9), but
    /// the last commits can be lost if the machine loses power. Much faster commits.
    Normal,
}

impl Store {
    /// Connects (creating a SQLite file and its folder on first run). Does not migrate.
    pub async fn connect(url: &str, cipher: Cipher, clock: SharedClock) -> Result<Self> {
        Self::connect_with(url, cipher, clock, SqliteSync::default()).await
    }

    /// `connect`, choosing SQLite's durability.
    pub async fn connect_with(
        url: &str,
        cipher: Cipher,
        clock: SharedClock,
        sync: SqliteSync,
    ) -> Result<Self> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(5));
        let options = if backend == Backend::Sqlite {
            options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(match sync {
                        SqliteSync::Full => "PRAGMA synchronous = FULL",
                        SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
                    })
                    .await?;
                    // WAL lets readers run beside the writer; the busy timeout makes writers queue
                    // instead of failing with SQLITE_BUSY; foreign keys are off by default in SQLite.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    // 32 MB of page cache per connection (default 2 MB): the audit log's indexes
                    // and full-text segments stay in memory instead of being re-read per insert.
                    conn.execute("PRAGMA cache_size = -32768").await?;
                    // Checkpoint the WAL every ~40 MB instead of every 4 MB: fewer copies of hot
                    // index pages into the main file under a steady audit load.
                    conn.execute("PRAGMA wal_autocheckpoint = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await?;
        Ok(Store {
            pool,
            backend,
            cipher,
            clock,
        })
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| Error::Internal(format!("migration failed: {e}")))
    }

    /// Tells other replicas that something changed (PostgreSQL `NOTIFY`; nothing on SQLite,
    /// which has no other replicas). `from` names this process.
    pub async fn notify_change(&self, from: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGE_CHANNEL)
                .bind(from)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// For a process that changed the database without being a server (the CLI): tells every
    /// running server to reload. PostgreSQL: `NOTIFY`. SQLite: a marker setting the server polls
    /// (`SnapshotHandle::watch_marker`).
    pub async fn announce_change(&self, from: &str) -> Result<()> {
        match self.backend {
            Backend::Postgres => self.notify_change(from).await,
            Backend::Sqlite => {
                let marker = format!("{from}:{}", uuid::Uuid::new_v4());
                self.put_setting(settings::keys::CHANGE_MARKER, &marker)
                    .await
            }
        }
    }

    /// The marker `announce_change` last wrote on SQLite, if any.
    pub async fn change_marker(&self) -> Result<Option<String>> {
        self.setting(settings::keys::CHANGE_MARKER).await
    }

    /// One round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// True once `close` has been called.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Closes the pool, waiting for connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction that writes. On SQLite it takes the write lock at the start (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads first and then writes fails at once with
    /// SQLITE_BUSY when another writer committed in between, which the busy timeout cannot help.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(self.pool.begin_with(begin).await?)
    }

    fn now_ms(&self) -> i64 {
        to_millis(self.clock.now())
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Turns `sqlite://path` into a URL sqlx opens read-write-create, creating the folder.
fn prepare_sqlite_url(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(Error::invalid("sqlite URL must name a file"));
    }
    let parent = std::path::Path::new(path).parent();
    if let Some(parent) = parent.filter(|p| path != ":memory:" && !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Internal(format!(
                "cannot create database folder {}: {e}",
                parent.display()
            ))
        })?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// Maps database errors that are the caller's fault to domain errors, in one place.
pub(crate) trait ResultExt<T> {
    /// A unique-constraint violation becomes `Conflict(msg)`.
    fn on_unique(self, msg: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for std::result::Result<T, sqlx::Error> {
    fn on_unique(self, msg: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(msg()),
            _ => Error::from(e),
        })
    }
}

fn to_json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn from_json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Test support: a PostgreSQL URL whose connections use a fresh schema of their own.
#[cfg(feature = "test-util")]
pub async fn isolated_postgres_url(base: &str) -> Result<String> {
    use sqlx::Connection;
    install_default_drivers();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(base).await?;
    conn.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await?;
    conn.close().await?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// Test support: a fresh PostgreSQL database (not just a schema: advisory locks, such as the audit
/// chain's, are per database, so a test that holds them up cannot stall other tests); its URL.
#[cfg(feature = "test-util")]
pub async fn isolated_postgres_database(base: &str) -> Result<String> {
    use sqlx::Connection;
    install_default_drivers();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base).await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    conn.close().await?;
    let mut url = url::Url::parse(base).map_err(|e| Error::invalid(e.to_string()))?;
    url.set_path(&name);
    Ok(url.to_string())
}

/// Test support: drops a database made by [`isolated_postgres_database`], ending its sessions.
#[cfg(feature = "test-util")]
pub async fn drop_postgres_database(base: &str, url: &str) -> Result<()> {
    use sqlx::Connection;
    let url = url::Url::parse(url).map_err(|e| Error::invalid(e.to_string()))?;
    let name = url.path().trim_start_matches('/');
    let mut conn = sqlx::PgConnection::connect(base).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    conn.close().await?;
    Ok(())
}

/// Test support: ends the PostgreSQL backends whose `application_name` is `name` (as a database
/// restart or a network cut would); how many were ended.
#[cfg(feature = "test-util")]
pub async fn terminate_postgres_backends(base: &str, name: &str) -> Result<u64> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base).await?;
    let ended: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(name)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(ended.iter().filter(|(ok,)| *ok).count() as u64)
}

/// Test support: another connection holding SQLite's write lock on the database at `url` (as a
/// second process, a backup tool or an operator's `sqlite3` shell would) until `release`.
#[cfg(feature = "test-util")]
pub struct SqliteWriteLock {
    conn: sqlx::SqliteConnection,
}

#[cfg(feature = "test-util")]
impl SqliteWriteLock {
    /// Takes the lock (`BEGIN EXCLUSIVE`), waiting up to 10 s for a writer in progress.
    pub async fn acquire(url: &str) -> Result<Self> {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&prepare_sqlite_url(url)?)?
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await?;
        conn.execute("BEGIN EXCLUSIVE").await?;
        Ok(SqliteWriteLock { conn })
    }

    /// Ends the transaction (nothing was written) and closes the connection.
    pub async fn release(mut self) -> Result<()> {
        use sqlx::Connection;
        self.conn.execute("ROLLBACK").await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// Test support: a PostgreSQL transaction holding `LOCK TABLE {table} IN EXCLUSIVE MODE` (reads go
/// on, writes wait: a migration, a hung replica or an operator's session) until `release`.
#[cfg(feature = "test-util")]
pub struct PostgresTableLock {
    conn: sqlx::PgConnection,
}

#[cfg(feature = "test-util")]
impl PostgresTableLock {
    pub async fn acquire(url: &str, table: &str) -> Result<Self> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        conn.execute("BEGIN").await?;
        conn.execute(format!("LOCK TABLE {table} IN EXCLUSIVE MODE").as_str())
            .await?;
        Ok(PostgresTableLock { conn })
    }

    /// Ends the transaction and closes the connection.
    pub async fn release(mut self) -> Result<()> {
        use sqlx::Connection;
        self.conn.execute("ROLLBACK").await?;
        self.conn.close().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("sqlite://data/x.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::from_url("mysql://x").is_err());
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = std::env::temp_dir().join(format!("tg-{}", new_id()));
        let url = format!("sqlite://{}/sub/x.db", dir.display());
        let out = prepare_sqlite_url(&url).unwrap();
        assert!(out.ends_with("/sub/x.db?mode=rwc"), "{out}");
        assert!(dir.join("sub").is_dir());
        assert_eq!(
            prepare_sqlite_url("sqlite://:memory:?cache=shared").unwrap(),
            "sqlite://:memory:?cache=shared&mode=rwc"
        );
        assert!(prepare_sqlite_url("sqlite://").is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
