//! Bearer tokens: admin API tokens and personal access tokens for agents. Only SHA-256 hashes
//! are stored; the secret is returned once, at creation.

use super::{Store, new_id};
use crate::clock::from_millis;
use crate::crypto::{hash_token, new_token};
use crate::model::{ApiToken, Scopes, TokenKind};
use crate::{Error, Result};

/// What a presented token grants, resolved from its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    pub token_id: String,
    pub token_name: String,
    pub kind: TokenKind,
    /// The user a personal token acts for.
    pub user_id: Option<String>,
    /// Unix milliseconds after which the token is refused.
    pub expires_at: Option<i64>,
    pub scopes: Scopes,
}

/// Stored scopes: NULL (tokens from before scopes existed) means every scope.
fn stored_scopes(text: Option<&str>) -> Scopes {
    text.map_or(Scopes::ALL, |t| Scopes::parse(t).unwrap_or(Scopes::NONE))
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    kind: String,
    user_id: Option<String>,
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    scopes: Option<String>,
}

impl TokenRow {
    fn into_model(self) -> Result<ApiToken> {
        Ok(ApiToken {
            kind: TokenKind::parse(&self.kind)
                .ok_or_else(|| Error::Internal(format!("unknown token kind {:?}", self.kind)))?,
            id: self.id,
            name: self.name,
            user_id: self.user_id,
            prefix: self.prefix,
            created_at: from_millis(self.created_at),
            revoked: self.revoked_at.is_some(),
            expires_at: self.expires_at.map(from_millis),
            scopes: stored_scopes(self.scopes.as_deref()).names(),
        })
    }
}

fn validate_token_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "token name must be 1-128 printable characters",
        ));
    }
    Ok(())
}

impl Store {
    /// Creates a token and returns it with its one-time secret. Personal tokens need an
    /// existing, active user.
    pub async fn create_token(
        &self,
        kind: TokenKind,
        name: &str,
        user_id: Option<&str>,
    ) -> Result<(ApiToken, String)> {
        self.create_token_with(kind, name, user_id, None, Scopes::ALL)
            .await
    }

    /// A personal access token for scripts, with an expiry (unix milliseconds, in the future)
    /// and scopes.
    pub async fn create_personal_token(
        &self,
        user_id: &str,
        name: &str,
        expires_at: Option<i64>,
        scopes: Scopes,
    ) -> Result<(ApiToken, String)> {
        if scopes.is_empty() {
            return Err(Error::invalid("a token needs at least one scope"));
        }
        if expires_at.is_some_and(|at| at <= self.now_ms()) {
            return Err(Error::invalid("the expiry must be in the future"));
        }
        self.create_token_with(TokenKind::Personal, name, Some(user_id), expires_at, scopes)
            .await
    }

    async fn create_token_with(
        &self,
        kind: TokenKind,
        name: &str,
        user_id: Option<&str>,
        expires_at: Option<i64>,
        scopes: Scopes,
    ) -> Result<(ApiToken, String)> {
        validate_token_name(name)?;
        match (kind, user_id) {
            (TokenKind::Personal, Some(uid)) => {
                let user = self.get_user(uid).await?;
                if !user.active {
                    return Err(Error::invalid("cannot issue a token to a disabled user"));
                }
            }
            (TokenKind::Personal, None) => {
                return Err(Error::invalid("personal tokens need a user"));
            }
            (TokenKind::Admin | TokenKind::Scim, Some(_)) => {
                return Err(Error::invalid("admin and SCIM tokens have no user"));
            }
            (TokenKind::Admin | TokenKind::Scim, None) => {}
        }
        let prefix = match kind {
            TokenKind::Admin => "tga",
            TokenKind::Personal => "tgp",
            TokenKind::Scim => "tgs",
        };
        let (secret, hash) = new_token(prefix);
        let row = TokenRow {
            id: new_id(),
            name: name.trim().to_string(),
            kind: kind.as_str().to_string(),
            user_id: user_id.map(str::to_string),
            prefix: secret.chars().take(10).collect(),
            created_at: self.now_ms(),
            revoked_at: None,
            expires_at,
            scopes: Some(scopes.to_string()),
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, name, kind, user_id, token_hash, prefix, created_at,
                                     expires_at, scopes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.kind)
        .bind(&row.user_id)
        .bind(&hash)
        .bind(&row.prefix)
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(&row.scopes)
        .execute(&self.pool)
        .await?;
        Ok((row.into_model()?, secret))
    }

    /// Resolves a presented token: unknown, revoked, expired, or (personal) belonging to a
    /// disabled user all give `None`.
    pub async fn find_token(&self, secret: &str) -> Result<Option<TokenGrant>> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT t.id, t.name, t.kind, t.user_id, t.expires_at, t.scopes FROM api_tokens t
             LEFT JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > $2)
               AND (t.user_id IS NULL OR u.active = 1)",
        )
        .bind(hash_token(secret))
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(
            |(token_id, token_name, kind, user_id, expires_at, scopes)| {
                Some(TokenGrant {
                    token_id,
                    token_name,
                    kind: TokenKind::parse(&kind)?,
                    user_id,
                    expires_at,
                    scopes: stored_scopes(scopes.as_deref()),
                })
            },
        ))
    }

    /// Every live personal token as (hash, grant), for the snapshot.
    pub async fn active_personal_tokens(&self) -> Result<Vec<(String, TokenGrant)>> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT token_hash, id, name, user_id, expires_at, scopes FROM api_tokens
             WHERE kind = 'personal' AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(self.now_ms())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(hash, token_id, token_name, user_id, expires_at, scopes)| {
                    (
                        hash,
                        TokenGrant {
                            token_id,
                            token_name,
                            kind: TokenKind::Personal,
                            user_id,
                            expires_at,
                            scopes: stored_scopes(scopes.as_deref()),
                        },
                    )
                },
            )
            .collect())
    }

    pub async fn list_user_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query_as::<_, TokenRow>(
            "SELECT id, name, kind, user_id, prefix, created_at, revoked_at, expires_at, scopes
             FROM api_tokens
             WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TokenRow::into_model).collect()
    }

    /// Tokens of one kind (e.g. every SCIM token), newest first.
    pub async fn list_tokens_of_kind(&self, kind: TokenKind) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query_as::<_, TokenRow>(
            "SELECT id, name, kind, user_id, prefix, created_at, revoked_at, expires_at, scopes
             FROM api_tokens
             WHERE kind = $1 ORDER BY created_at DESC",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TokenRow::into_model).collect()
    }

    /// Revokes a token; revoking twice changes nothing.
    pub async fn revoke_token(&self, token_id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(self.now_ms())
        .bind(token_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("token"));
        }
        Ok(())
    }
}
