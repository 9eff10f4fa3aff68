//! tower-sessions store over the Toolgate store, so dashboard sessions live in the same
//! database (and survive restarts, and work across replicas). Session ids are kept as SHA-256.

use async_trait::async_trait;
use toolgate_domain::crypto::sha256_hex;
use toolgate_domain::store::Store;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// Dashboard sessions in the database.
#[derive(Clone, Debug)]
pub struct DbSessionStore {
    store: Store,
}

impl DbSessionStore {
    pub fn new(store: Store) -> Self {
        DbSessionStore { store }
    }
}

fn key(id: &Id) -> String {
    // Why hashed: a read of the sessions table must not hand out live session cookies.
    sha256_hex(id.to_string().as_bytes())
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn encode(record: &Record) -> session_store::Result<(String, i64)> {
    let data = serde_json::to_string(&record.data)
        .map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let expires_ms = (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64;
    Ok((data, expires_ms))
}

/// The directory user a session belongs to (people signed in with the OpenID Provider), so that
/// offboarding can end their sessions; local break-glass accounts have none.
fn session_user(record: &Record) -> Option<String> {
    let user = record.data.get(toolgate_app::auth::SESSION_USER_KEY)?;
    (user.get("source")?.as_str()? == "oidc")
        .then(|| user.get("id")?.as_str().map(str::to_string))
        .flatten()
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (data, expires) = encode(record)?;
        // Sign-in renews the session id, which arrives here: the owner must be recorded too, or
        // offboarding could not find the session.
        let user = session_user(record);
        // A (vanishingly unlikely) id collision picks a new id rather than overwrite a session.
        while !self
            .store
            .create_session(&key(&record.id), &data, expires, user.as_deref())
            .await
            .map_err(backend)?
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (data, expires) = encode(record)?;
        self.store
            .save_session(
                &key(&record.id),
                &data,
                expires,
                session_user(record).as_deref(),
            )
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some((data, expires_ms)) = self.store.load_session(&key(id)).await.map_err(backend)?
        else {
            return Ok(None);
        };
        let data =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires_ms) * 1_000_000)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store.delete_session(&key(id)).await.map_err(backend)
    }
}
