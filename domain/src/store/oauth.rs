//! The OAuth authorization server's state: clients, consents, authorization codes, grants
//! (refresh-token families) and refresh tokens. Codes and refresh tokens are stored as SHA-256;
//! confidential client secrets as argon2id.

use super::{ResultExt, Store, new_id, settings::keys};
use crate::clock::from_millis;
use crate::crypto::hash_password;
use crate::crypto::{hash_token, new_token};
use crate::model::{Consent, OAuthClient, OAuthClientKind, OAuthSettings, Scopes};
use crate::{Error, Result};

/// A client to register (validated by the caller: redirect URIs, name, auth method).
#[derive(Clone, Debug)]
pub struct NewOAuthClient {
    /// Set for CIMD clients (the metadata URL); generated otherwise.
    pub id: Option<String>,
    pub kind: OAuthClientKind,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// argon2id PHC of the secret of a confidential client.
    pub secret_hash: Option<String>,
    pub auth_method: String,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub created_by: Option<String>,
}

/// A client with what only the server may see.
#[derive(Clone, Debug)]
pub struct ClientRecord {
    pub client: OAuthClient,
    pub secret_hash: Option<String>,
    /// When the CIMD document was last fetched (unix ms).
    pub fetched_at: Option<i64>,
}

/// An authorization code's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCode {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)).
    pub code_challenge: String,
    pub resource: String,
    pub scopes: Scopes,
    pub expires_at: i64,
}

/// Why a code or refresh token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantRefusal {
    Unknown,
    Expired,
    /// Used before: the grant it produced is revoked.
    Replayed,
    /// Its grant was revoked.
    Revoked,
    /// Presented by another client than the one it was issued to.
    WrongClient,
    /// A refresh asked for scopes the grant does not have.
    ScopeNotGranted,
    /// A refresh named another resource than the grant's.
    WrongResource,
    /// The person is disabled or withdrew consent since the code was issued.
    NoLongerAuthorized,
}

impl GrantRefusal {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unknown => "unknown or malformed grant",
            Self::Expired => "the grant has expired",
            Self::Replayed => "the grant was already used; every token issued from it is revoked",
            Self::Revoked => "the grant was revoked",
            Self::WrongClient => "the grant was issued to another client",
            Self::ScopeNotGranted => "a refresh may only narrow the granted scopes",
            Self::WrongResource => "the grant is for another resource",
            Self::NoLongerAuthorized => "the person is disabled or withdrew consent",
        }
    }
}

/// A live authorization, for access tokens and the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantInfo {
    pub grant_id: String,
    pub user_id: String,
    pub client_id: String,
    pub client_name: String,
    pub scopes: Scopes,
    pub resource: String,
}

/// New tokens of a grant: its id and a fresh refresh token.
#[derive(Clone, Debug)]
pub struct Issued {
    pub grant: GrantInfo,
    pub refresh_token: String,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    kind: String,
    name: String,
    redirect_uris: String,
    secret_hash: Option<String>,
    auth_method: String,
    client_uri: Option<String>,
    created_at: i64,
    created_by: Option<String>,
    disabled_at: Option<i64>,
    last_used_at: Option<i64>,
    fetched_at: Option<i64>,
}

const CLIENT_COLUMNS: &str = "id, kind, name, redirect_uris, secret_hash, auth_method, client_uri,
    created_at, created_by, disabled_at, last_used_at, fetched_at";

impl ClientRow {
    fn into_record(self) -> ClientRecord {
        ClientRecord {
            client: OAuthClient {
                kind: OAuthClientKind::parse(&self.kind).unwrap_or(OAuthClientKind::Dcr),
                redirect_uris: serde_json::from_str(&self.redirect_uris).unwrap_or_default(),
                confidential: self.secret_hash.is_some(),
                id: self.id,
                name: self.name,
                auth_method: self.auth_method,
                client_uri: self.client_uri,
                created_at: from_millis(self.created_at),
                created_by: self.created_by,
                disabled: self.disabled_at.is_some(),
                last_used_at: self.last_used_at.map(from_millis),
            },
            secret_hash: self.secret_hash,
            fetched_at: self.fetched_at,
        }
    }
}

/// Revokes every live grant matching `condition` (SQL over `oauth_grants`, `$3`.. bound by the
/// caller's `binds`), with a reason, inside a transaction.
async fn revoke_grants_where(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    condition: &str,
    now: i64,
    reason: &str,
    binds: &[&str],
) -> Result<u64> {
    let sql = format!(
        "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2
         WHERE revoked_at IS NULL AND {condition}"
    );
    let mut q = sqlx::query(&sql).bind(now).bind(reason.to_string());
    for b in binds {
        q = q.bind(b.to_string());
    }
    Ok(q.execute(&mut **tx).await?.rows_affected())
}

/// Offboarding: every OAuth grant of the user ends (inside the caller's transaction).
pub(super) async fn revoke_user_grants(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
    now: i64,
    reason: &str,
) -> Result<u64> {
    revoke_grants_where(tx, "user_id = $3", now, reason, &[user_id]).await
}

impl Store {
    pub async fn oauth_settings(&self) -> Result<OAuthSettings> {
        Ok(self.setting(keys::OAUTH).await?.unwrap_or_default())
    }

    pub async fn put_oauth_settings(&self, settings: &OAuthSettings) -> Result<()> {
        settings.validate().map_err(Error::invalid)?;
        self.put_setting(keys::OAUTH, settings).await
    }

    /// Registers a client; a CIMD client's row is replaced by [`Store::upsert_cimd_client`].
    pub async fn create_oauth_client(&self, new: NewOAuthClient) -> Result<OAuthClient> {
        let id = new.id.clone().unwrap_or_else(new_id);
        let uris = serde_json::to_string(&new.redirect_uris)
            .map_err(|e| Error::Internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO oauth_clients (id, kind, name, redirect_uris, secret_hash, auth_method,
                                        client_uri, logo_uri, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(new.kind.as_str())
        .bind(&new.name)
        .bind(&uris)
        .bind(&new.secret_hash)
        .bind(&new.auth_method)
        .bind(&new.client_uri)
        .bind(&new.logo_uri)
        .bind(self.now_ms())
        .bind(&new.created_by)
        .execute(&self.pool)
        .await
        .on_unique(|| format!("client {id} already exists"))?;
        Ok(self
            .oauth_client(&id)
            .await?
            .ok_or(Error::NotFound("client"))?
            .client)
    }

    /// Records the metadata of a CIMD client after a successful fetch (a disabled client stays
    /// disabled).
    pub async fn upsert_cimd_client(
        &self,
        url: &str,
        name: &str,
        redirect_uris: &[String],
        client_uri: Option<&str>,
    ) -> Result<ClientRecord> {
        let uris =
            serde_json::to_string(redirect_uris).map_err(|e| Error::Internal(e.to_string()))?;
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO oauth_clients (id, kind, name, redirect_uris, auth_method, client_uri,
                                        created_at, fetched_at)
             VALUES ($1, 'cimd', $2, $3, 'none', $4, $5, $5)
             ON CONFLICT (id) DO UPDATE SET name = $2, redirect_uris = $3, client_uri = $4,
                                            fetched_at = $5",
        )
        .bind(url)
        .bind(name)
        .bind(&uris)
        .bind(client_uri)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.oauth_client(url)
            .await?
            .ok_or(Error::NotFound("client"))
    }

    pub async fn oauth_client(&self, id: &str) -> Result<Option<ClientRecord>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1");
        let row = sqlx::query_as::<_, ClientRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(ClientRow::into_record))
    }

    pub async fn list_oauth_clients(&self) -> Result<Vec<OAuthClient>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, id");
        let rows = sqlx::query_as::<_, ClientRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.into_record().client).collect())
    }

    /// Disables or enables a client; disabling revokes every grant it holds.
    pub async fn set_oauth_client_disabled(&self, id: &str, disabled: bool) -> Result<OAuthClient> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE oauth_clients SET disabled_at = CASE WHEN $1 = 1 THEN COALESCE(disabled_at, $2)
                                                        ELSE NULL END
             WHERE id = $3",
        )
        .bind(i64::from(disabled))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("client"));
        }
        if disabled {
            revoke_grants_where(&mut tx, "client_id = $3", now, "client disabled", &[id]).await?;
        }
        tx.commit().await?;
        Ok(self
            .oauth_client(id)
            .await?
            .ok_or(Error::NotFound("client"))?
            .client)
    }

    /// Deletes a client with its consents; its grants are revoked.
    pub async fn delete_oauth_client(&self, id: &str) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("client"));
        }
        sqlx::query("DELETE FROM oauth_consents WHERE client_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        revoke_grants_where(&mut tx, "client_id = $3", now, "client deleted", &[id]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The scopes a person has consented to for a client (`None`: never, or revoked).
    pub async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<Scopes>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT scopes FROM oauth_consents WHERE user_id = $1 AND client_id = $2",
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(s,)| Scopes::parse(&s).unwrap_or(Scopes::NONE)))
    }

    /// Records (or widens) a person's consent to a client (two concurrent approvals both
    /// succeed).
    pub async fn record_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: Scopes,
    ) -> Result<()> {
        let now = self.now_ms();
        let existing = self
            .consent(user_id, client_id)
            .await?
            .unwrap_or(Scopes::NONE);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO oauth_consents (user_id, client_id, scopes, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = $3, updated_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(existing.union(scopes).to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A person's consents with their clients, newest first.
    pub async fn list_consents(&self, user_id: &str) -> Result<Vec<Consent>> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            String,
            i64,
            i64,
            i64,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT c.client_id, k.name, k.kind, c.scopes, c.created_at, c.updated_at,
                    (SELECT COUNT(*) FROM oauth_grants g WHERE g.user_id = c.user_id
                        AND g.client_id = c.client_id AND g.revoked_at IS NULL),
                    (SELECT MAX(g.last_used_at) FROM oauth_grants g WHERE g.user_id = c.user_id
                        AND g.client_id = c.client_id)
             FROM oauth_consents c LEFT JOIN oauth_clients k ON k.id = c.client_id
             WHERE c.user_id = $1 ORDER BY c.updated_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(client_id, name, kind, scopes, created, updated, live, last)| Consent {
                    client_name: name.unwrap_or_else(|| client_id.clone()),
                    client_id,
                    client_kind: kind.as_deref().and_then(OAuthClientKind::parse),
                    scopes: Scopes::parse(&scopes).unwrap_or(Scopes::NONE).names(),
                    created_at: from_millis(created),
                    updated_at: from_millis(updated),
                    live_grants: live,
                    last_used_at: last.map(from_millis),
                },
            )
            .collect())
    }

    /// Withdraws a person's consent: the client's grants for them end, and the next
    /// authorization asks again.
    pub async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("consent"));
        }
        revoke_grants_where(
            &mut tx,
            "user_id = $3 AND client_id = $4",
            now,
            "consent revoked",
            &[user_id, client_id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new authorization code; returns the code (shown to the client once).
    pub async fn create_auth_code(&self, code: &AuthCode) -> Result<String> {
        let (secret, hash) = new_token("tgc");
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, code_challenge,
                                      resource, scopes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&hash)
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.resource)
        .bind(code.scopes.to_string())
        .bind(self.now_ms())
        .bind(code.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }

    /// Reads a code without using it (the caller checks client, redirect and PKCE, then calls
    /// [`Store::exchange_code`] or [`Store::burn_code`]). A used code reports `Replayed` and
    /// revokes whatever it produced.
    pub async fn peek_code(
        &self,
        code: &str,
    ) -> Result<std::result::Result<AuthCode, GrantRefusal>> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
            Option<String>,
        );
        let hash = hash_token(code);
        let row: Option<Row> = sqlx::query_as(
            "SELECT client_id, user_id, redirect_uri, code_challenge, resource, scopes, expires_at,
                    used_at, grant_id
             FROM oauth_codes WHERE code_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some((
            client_id,
            user_id,
            redirect_uri,
            code_challenge,
            resource,
            scopes,
            expires_at,
            used_at,
            grant_id,
        )) = row
        else {
            return Ok(Err(GrantRefusal::Unknown));
        };
        if used_at.is_some() {
            self.code_replayed(&hash, grant_id.as_deref()).await?;
            return Ok(Err(GrantRefusal::Replayed));
        }
        if expires_at <= self.now_ms() {
            return Ok(Err(GrantRefusal::Expired));
        }
        Ok(Ok(AuthCode {
            client_id,
            user_id,
            redirect_uri,
            code_challenge,
            resource,
            scopes: Scopes::parse(&scopes).unwrap_or(Scopes::NONE),
            expires_at,
        }))
    }

    async fn code_replayed(&self, hash: &str, grant_id: Option<&str>) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        if let Some(g) = grant_id {
            revoke_grants_where(&mut tx, "id = $3", now, "authorization code replayed", &[g])
                .await?;
        }
        tx.commit().await?;
        tracing::warn!(code = %&hash[..12], "authorization code replayed");
        Ok(())
    }

    /// Marks a code used without issuing anything (a failed exchange attempt burns it).
    pub async fn burn_code(&self, code: &str) -> Result<()> {
        sqlx::query("UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
            .bind(self.now_ms())
            .bind(hash_token(code))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Uses a code once: creates its grant and first refresh token in one transaction. A second
    /// use (a race with another exchange) reports `Replayed` and revokes the first grant.
    pub async fn exchange_code(
        &self,
        code: &str,
        client_name: &str,
        refresh_expires_at: i64,
    ) -> Result<std::result::Result<Issued, GrantRefusal>> {
        let Ok(found) = self.peek_code(code).await? else {
            return Ok(Err(GrantRefusal::Unknown));
        };
        let hash = hash_token(code);
        let now = self.now_ms();
        let grant_id = new_id();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE oauth_codes SET used_at = $1, grant_id = $2 WHERE code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&grant_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            let previous: Option<(Option<String>,)> =
                sqlx::query_as("SELECT grant_id FROM oauth_codes WHERE code_hash = $1")
                    .bind(&hash)
                    .fetch_optional(&self.pool)
                    .await?;
            self.code_replayed(&hash, previous.and_then(|p| p.0).as_deref())
                .await?;
            return Ok(Err(GrantRefusal::Replayed));
        }
        // Withdrawn consent or a disabled person since the code was issued: nothing is granted.
        let still: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM users u JOIN oauth_consents c ON c.user_id = u.id
             WHERE u.id = $1 AND u.active = 1 AND c.client_id = $2",
        )
        .bind(&found.user_id)
        .bind(&found.client_id)
        .fetch_optional(&mut *tx)
        .await?;
        if still.is_none() {
            tx.commit().await?;
            return Ok(Err(GrantRefusal::NoLongerAuthorized));
        }
        sqlx::query(
            "INSERT INTO oauth_grants (id, user_id, client_id, scopes, resource, created_at, last_used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&grant_id)
        .bind(&found.user_id)
        .bind(&found.client_id)
        .bind(found.scopes.to_string())
        .bind(&found.resource)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let refresh_token =
            insert_refresh_token(&mut tx, &grant_id, now, refresh_expires_at).await?;
        sqlx::query("UPDATE oauth_clients SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&found.client_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(Issued {
            grant: GrantInfo {
                grant_id,
                user_id: found.user_id,
                client_id: found.client_id,
                client_name: client_name.to_string(),
                scopes: found.scopes,
                resource: found.resource,
            },
            refresh_token,
        }))
    }

    /// Rotates a refresh token: the presented one is used up and a new one issued in the same
    /// grant. A refresh token presented a second time revokes the whole grant (reuse detection).
    ///
    /// `narrow` (scopes asked for) and `resource` are checked before the token is used up, so a
    /// refused request leaves it valid.
    pub async fn rotate_refresh_token(
        &self,
        token: &str,
        client_id: &str,
        resource: &str,
        narrow: Option<Scopes>,
        refresh_expires_at: i64,
    ) -> Result<std::result::Result<Issued, GrantRefusal>> {
        type Row = (
            String,
            i64,
            Option<i64>,
            String,
            String,
            String,
            String,
            Option<i64>,
            Option<String>,
        );
        let hash = hash_token(token);
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let row: Option<Row> = sqlx::query_as(
            "SELECT r.grant_id, r.expires_at, r.used_at, g.user_id, g.client_id, g.scopes,
                    g.resource, g.revoked_at, k.name
             FROM oauth_refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id
             LEFT JOIN oauth_clients k ON k.id = g.client_id
             WHERE r.token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((
            grant_id,
            expires_at,
            used_at,
            user_id,
            grant_client,
            scopes,
            grant_resource,
            revoked_at,
            name,
        )) = row
        else {
            return Ok(Err(GrantRefusal::Unknown));
        };
        if grant_client != client_id {
            return Ok(Err(GrantRefusal::WrongClient));
        }
        if revoked_at.is_some() {
            return Ok(Err(GrantRefusal::Revoked));
        }
        if used_at.is_some() {
            revoke_grants_where(
                &mut tx,
                "id = $3",
                now,
                "refresh token reused",
                &[&grant_id],
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(grant = %grant_id, "refresh token reused: grant revoked");
            return Ok(Err(GrantRefusal::Replayed));
        }
        if expires_at <= now {
            return Ok(Err(GrantRefusal::Expired));
        }
        if grant_resource != resource {
            return Ok(Err(GrantRefusal::WrongResource));
        }
        let granted = Scopes::parse(&scopes).unwrap_or(Scopes::NONE);
        let scopes = match narrow {
            Some(n) if !granted.contains(n) => return Ok(Err(GrantRefusal::ScopeNotGranted)),
            Some(n) => n,
            None => granted,
        };
        let done = sqlx::query(
            "UPDATE oauth_refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Used by a concurrent request a moment ago: the same reuse, the same answer.
            revoke_grants_where(
                &mut tx,
                "id = $3",
                now,
                "refresh token reused",
                &[&grant_id],
            )
            .await?;
            tx.commit().await?;
            return Ok(Err(GrantRefusal::Replayed));
        }
        let refresh_token =
            insert_refresh_token(&mut tx, &grant_id, now, refresh_expires_at).await?;
        sqlx::query("UPDATE oauth_grants SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&grant_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE oauth_clients SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(Issued {
            grant: GrantInfo {
                grant_id,
                user_id,
                client_name: name.unwrap_or_else(|| grant_client.clone()),
                client_id: grant_client,
                scopes,
                resource: grant_resource,
            },
            refresh_token,
        }))
    }

    /// Revokes the grant a refresh token belongs to (RFC 7009); `Ok(None)` for unknown tokens.
    /// With `client_id`, only that client's tokens are revoked.
    pub async fn revoke_refresh_token(
        &self,
        token: &str,
        client_id: Option<&str>,
    ) -> Result<Option<String>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT r.grant_id, g.client_id FROM oauth_refresh_tokens r
             JOIN oauth_grants g ON g.id = r.grant_id WHERE r.token_hash = $1",
        )
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some((grant_id, owner)) = row else {
            return Ok(None);
        };
        if client_id.is_some_and(|c| c != owner) {
            return Ok(None);
        }
        self.revoke_grant(&grant_id, "revoked by the client")
            .await?;
        Ok(Some(grant_id))
    }

    /// Revokes one grant (and with it its refresh and access tokens).
    pub async fn revoke_grant(&self, grant_id: &str, reason: &str) -> Result<bool> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let n = revoke_grants_where(&mut tx, "id = $3", now, reason, &[grant_id]).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// The grant an access token names, if it is still live (for token revocation by the client).
    pub async fn grant(&self, grant_id: &str) -> Result<Option<GrantInfo>> {
        Ok(self
            .live_grants_where("g.id = $1", Some(grant_id))
            .await?
            .pop())
    }

    /// Every live grant (not revoked, client enabled, person active), for the snapshot.
    pub async fn live_grants(&self) -> Result<Vec<GrantInfo>> {
        self.live_grants_where("1 = 1 OR $1 IS NULL", None).await
    }

    async fn live_grants_where(
        &self,
        condition: &str,
        bind: Option<&str>,
    ) -> Result<Vec<GrantInfo>> {
        let sql = format!(
            "SELECT g.id, g.user_id, g.client_id, k.name, g.scopes, g.resource
             FROM oauth_grants g JOIN oauth_clients k ON k.id = g.client_id
             JOIN users u ON u.id = g.user_id
             WHERE g.revoked_at IS NULL AND k.disabled_at IS NULL AND u.active = 1 AND ({condition})"
        );
        let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(&sql)
            .bind(bind.map(str::to_string))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(grant_id, user_id, client_id, client_name, scopes, resource)| GrantInfo {
                    grant_id,
                    user_id,
                    client_id,
                    client_name,
                    scopes: Scopes::parse(&scopes).unwrap_or(Scopes::NONE),
                    resource,
                },
            )
            .collect())
    }

    /// Removes used, expired codes and refresh tokens of ended grants (housekeeping).
    pub async fn purge_oauth_leftovers(&self) -> Result<u64> {
        let now = self.now_ms();
        let a = sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(now - 86_400_000)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let b = sqlx::query(
            "DELETE FROM oauth_refresh_tokens WHERE expires_at < $1
                OR grant_id IN (SELECT id FROM oauth_grants WHERE revoked_at IS NOT NULL)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(a + b)
    }
}

async fn insert_refresh_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    grant_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<String> {
    let (secret, hash) = new_token("tgr");
    sqlx::query(
        "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&hash)
    .bind(grant_id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(secret)
}

/// Redirect URIs a client may register: https, http on a loopback address (native apps, RFC
/// 8252 §7.3), or a private-use scheme with a dot (RFC 8252 §7.1); never a fragment, userinfo or
/// a `javascript:`/`data:` style scheme.
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > 2048 {
        return Err("redirect URI longer than 2048 characters".into());
    }
    let url = url::Url::parse(uri).map_err(|_| format!("{uri:?} is not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{uri:?} carries credentials"));
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        "http" if is_loopback_host(url.host_str().unwrap_or_default()) => Ok(()),
        "http" => Err(format!(
            "{uri:?}: plain http is only allowed to a loopback address"
        )),
        s if s.contains('.') => Ok(()),
        _ => Err(format!("{uri:?}: scheme not allowed")),
    }
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "::1" | "localhost")
}

/// Whether a requested redirect URI matches a registered one: exactly, except that a loopback
/// IP redirect registered without a port accepts any port (RFC 8252 §7.3, OAuth 2.1 §8.4.2:
/// native apps get an ephemeral port). A registered port must match exactly.
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && reg.port().is_none()
        && matches!(reg.host_str(), Some("127.0.0.1" | "[::1]"))
        && reg.host_str() == req.host_str()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
}

/// Whether a redirect URI goes back to this machine (consent warns when every one does).
pub fn is_loopback_redirect(uri: &str) -> bool {
    url::Url::parse(uri)
        .ok()
        .is_some_and(|u| is_loopback_host(u.host_str().unwrap_or_default()))
}

/// The host (or scheme, for private-use schemes) a redirect goes to, for the consent page.
pub fn redirect_host(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) => match u.host_str() {
            Some(h) => match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            },
            None => format!("{}:", u.scheme()),
        },
        Err(_) => uri.to_string(),
    }
}

fn validate_client_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "client name must be 1-128 printable characters",
        ));
    }
    Ok(name.to_string())
}

impl Store {
    /// Registers a client from the dashboard or the admin API; a confidential client's secret
    /// is returned once (only its argon2id hash is kept).
    pub async fn create_preregistered_client(
        &self,
        name: &str,
        redirect_uris: &[String],
        confidential: bool,
        created_by: &str,
    ) -> Result<(OAuthClient, Option<String>)> {
        let name = validate_client_name(name)?;
        if redirect_uris.is_empty() || redirect_uris.len() > 20 {
            return Err(Error::invalid("give 1-20 redirect URIs"));
        }
        for u in redirect_uris {
            validate_redirect_uri(u).map_err(Error::invalid)?;
        }
        let (secret, secret_hash) = if confidential {
            let (s, _) = new_token("tgcs");
            let phc = hash_password(s.clone()).await?;
            (Some(s), Some(phc))
        } else {
            (None, None)
        };
        let client = self
            .create_oauth_client(NewOAuthClient {
                id: None,
                kind: OAuthClientKind::Preregistered,
                name,
                redirect_uris: redirect_uris.to_vec(),
                secret_hash,
                auth_method: if confidential {
                    "client_secret_basic".into()
                } else {
                    "none".into()
                },
                client_uri: None,
                logo_uri: None,
                created_by: Some(created_by.into()),
            })
            .await?;
        Ok((client, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1:33418/callback",
            "http://localhost:8080/cb",
            "http://[::1]:9/cb",
            "com.example.app:/oauth2redirect",
            "cursor.app://callback",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "/relative",
            "",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_for_the_consent_page() {
        assert_eq!(redirect_host("https://a.example.com/cb"), "a.example.com");
        assert_eq!(redirect_host("http://127.0.0.1:5000/cb"), "127.0.0.1:5000");
        assert!(is_loopback_redirect("http://localhost:1/cb"));
        assert!(!is_loopback_redirect("https://a.example.com/cb"));
    }
}
