//! Service principals: unattended agents with groups (so policy applies to them as to people),
//! client secrets (argon2id, shown once, rotated with an overlap), an optional expiry, and the
//! Entra application whose app-only tokens act as them.

use super::{ResultExt, Store, new_id};
use crate::clock::from_millis;
use crate::crypto::{hash_password, new_token, verify_password};
use crate::model::{ServicePrincipal, SpSecret};
use crate::{Error, Result};

/// A service principal to create.
#[derive(Clone, Debug, Default)]
pub struct NewServicePrincipal {
    pub name: String,
    pub description: String,
    pub owner: String,
    pub groups: Vec<String>,
    /// Unix ms.
    pub expires_at: Option<i64>,
    pub entra_app_id: Option<String>,
    pub created_by: Option<String>,
}

/// A change to a service principal; `None` keeps the field.
#[derive(Clone, Debug, Default)]
pub struct SpUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub groups: Option<Vec<String>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<i64>>,
    /// `Some(None)` removes the mapping.
    pub entra_app_id: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// What the snapshot needs of a service principal.
#[derive(Clone, Debug)]
pub struct SpSnapshotRow {
    pub id: String,
    pub name: String,
    pub entra_app_id: Option<String>,
    pub expires_at: Option<i64>,
    pub groups: Vec<String>,
    /// Live secrets: (id, expires_at).
    pub secrets: Vec<(String, Option<i64>)>,
}

/// Default overlap of a rotation: the previous secret keeps working this long.
pub const DEFAULT_ROTATION_OVERLAP_MS: i64 = 24 * 3_600_000;

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::invalid("name must be 1-128 printable characters"));
    }
    Ok(())
}

fn validate_text(field: &str, value: &str, max: usize, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    if value.chars().count() > max || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(format!(
            "{field} must be at most {max} printable characters"
        )));
    }
    Ok(())
}

fn validate_app_id(id: &str) -> Result<()> {
    let ok = id.len() == 36
        && id.chars().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "entra_app_id must be the application (client) id, a GUID",
        ))
    }
}

#[derive(sqlx::FromRow)]
struct SpRow {
    id: String,
    name: String,
    description: String,
    owner: String,
    entra_app_id: Option<String>,
    expires_at: Option<i64>,
    disabled_at: Option<i64>,
    created_at: i64,
    created_by: Option<String>,
    last_used_at: Option<i64>,
}

const SP_COLUMNS: &str = "id, name, description, owner, entra_app_id, expires_at, disabled_at,
    created_at, created_by, last_used_at";

impl Store {
    /// Creates a service principal with its first secret; returns it and the secret (shown once).
    pub async fn create_service_principal(
        &self,
        new: NewServicePrincipal,
    ) -> Result<(ServicePrincipal, String)> {
        validate_name(&new.name)?;
        validate_text("owner", &new.owner, 256, true)?;
        validate_text("description", &new.description, 1024, false)?;
        if let Some(app) = &new.entra_app_id {
            validate_app_id(app)?;
        }
        let now = self.now_ms();
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("the expiry must be in the future"));
        }
        let (secret, _) = new_token("tgk");
        let phc = hash_password(secret.clone()).await?;
        let id = new_id();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO service_principals (id, name, description, owner, entra_app_id,
                                             expires_at, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(new.name.trim())
        .bind(new.description.trim())
        .bind(new.owner.trim())
        .bind(new.entra_app_id.as_deref().map(str::to_ascii_lowercase))
        .bind(new.expires_at)
        .bind(now)
        .bind(&new.created_by)
        .execute(&mut *tx)
        .await
        .on_unique(|| {
            "a service principal with this name or Entra application already exists".to_string()
        })?;
        set_groups(&mut tx, &id, &new.groups).await?;
        // The principal's own expiry is checked on every use; its secrets expire by rotation.
        insert_secret(&mut tx, &id, &phc, &secret, now, None).await?;
        tx.commit().await?;
        Ok((self.service_principal(&id).await?, secret))
    }

    pub async fn service_principal(&self, id: &str) -> Result<ServicePrincipal> {
        let sql = format!("SELECT {SP_COLUMNS} FROM service_principals WHERE id = $1");
        let row = sqlx::query_as::<_, SpRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("service principal"))?;
        let mut all = self.assemble_sps(vec![row]).await?;
        all.pop().ok_or(Error::NotFound("service principal"))
    }

    pub async fn list_service_principals(&self) -> Result<Vec<ServicePrincipal>> {
        let sql = format!("SELECT {SP_COLUMNS} FROM service_principals ORDER BY lower(name)");
        let rows = sqlx::query_as::<_, SpRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        self.assemble_sps(rows).await
    }

    async fn assemble_sps(&self, rows: Vec<SpRow>) -> Result<Vec<ServicePrincipal>> {
        let groups: Vec<(String, String)> =
            sqlx::query_as("SELECT sp_id, group_id FROM sp_groups ORDER BY group_id")
                .fetch_all(&self.pool)
                .await?;
        type SecretRow = (String, String, String, i64, Option<i64>, Option<i64>);
        let secrets: Vec<SecretRow> = sqlx::query_as(
            "SELECT id, sp_id, prefix, created_at, expires_at, revoked_at FROM sp_secrets
             ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ServicePrincipal {
                groups: groups
                    .iter()
                    .filter(|(sp, _)| *sp == r.id)
                    .map(|(_, g)| g.clone())
                    .collect(),
                secrets: secrets
                    .iter()
                    .filter(|s| s.1 == r.id)
                    .map(|(id, _, prefix, created, expires, revoked)| SpSecret {
                        id: id.clone(),
                        prefix: prefix.clone(),
                        created_at: from_millis(*created),
                        expires_at: expires.map(from_millis),
                        revoked: revoked.is_some(),
                    })
                    .collect(),
                id: r.id,
                name: r.name,
                description: r.description,
                owner: r.owner,
                entra_app_id: r.entra_app_id,
                expires_at: r.expires_at.map(from_millis),
                disabled: r.disabled_at.is_some(),
                created_at: from_millis(r.created_at),
                created_by: r.created_by,
                last_used_at: r.last_used_at.map(from_millis),
            })
            .collect())
    }

    pub async fn update_service_principal(
        &self,
        id: &str,
        update: SpUpdate,
    ) -> Result<ServicePrincipal> {
        if let Some(n) = &update.name {
            validate_name(n)?;
        }
        if let Some(o) = &update.owner {
            validate_text("owner", o, 256, true)?;
        }
        if let Some(d) = &update.description {
            validate_text("description", d, 1024, false)?;
        }
        if let Some(Some(app)) = &update.entra_app_id {
            validate_app_id(app)?;
        }
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM service_principals WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(Error::NotFound("service principal"));
        }
        let conflict =
            || "a service principal with this name or Entra application already exists".to_string();
        if let Some(n) = &update.name {
            sqlx::query("UPDATE service_principals SET name = $1 WHERE id = $2")
                .bind(n.trim())
                .bind(id)
                .execute(&mut *tx)
                .await
                .on_unique(conflict)?;
        }
        if let Some(d) = &update.description {
            sqlx::query("UPDATE service_principals SET description = $1 WHERE id = $2")
                .bind(d.trim())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(o) = &update.owner {
            sqlx::query("UPDATE service_principals SET owner = $1 WHERE id = $2")
                .bind(o.trim())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(exp) = update.expires_at {
            sqlx::query("UPDATE service_principals SET expires_at = $1 WHERE id = $2")
                .bind(exp)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(app) = &update.entra_app_id {
            sqlx::query("UPDATE service_principals SET entra_app_id = $1 WHERE id = $2")
                .bind(app.as_deref().map(str::to_ascii_lowercase))
                .bind(id)
                .execute(&mut *tx)
                .await
                .on_unique(conflict)?;
        }
        if let Some(disabled) = update.disabled {
            sqlx::query(
                "UPDATE service_principals SET disabled_at = CASE WHEN $1 = 1
                     THEN COALESCE(disabled_at, $2) ELSE NULL END WHERE id = $3",
            )
            .bind(i64::from(disabled))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(groups) = &update.groups {
            set_groups(&mut tx, id, groups).await?;
        }
        tx.commit().await?;
        self.service_principal(id).await
    }

    pub async fn delete_service_principal(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM service_principals WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("service principal"));
        }
        for sql in [
            "DELETE FROM sp_groups WHERE sp_id = $1",
            "DELETE FROM sp_secrets WHERE sp_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Rotation: a new secret (shown once); every older live secret expires after `overlap_ms`
    /// (or keeps an earlier expiry it already had). Returns (secret id, secret).
    pub async fn add_sp_secret(
        &self,
        sp_id: &str,
        overlap_ms: i64,
        expires_at: Option<i64>,
    ) -> Result<(String, String)> {
        if !(0..=90 * 86_400_000).contains(&overlap_ms) {
            return Err(Error::invalid("the overlap must be between 0 and 90 days"));
        }
        let now = self.now_ms();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("the expiry must be in the future"));
        }
        let (secret, _) = new_token("tgk");
        let phc = hash_password(secret.clone()).await?;
        let mut tx = self.write_tx().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM service_principals WHERE id = $1")
                .bind(sp_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(Error::NotFound("service principal"));
        }
        let cutoff = now + overlap_ms;
        sqlx::query(
            "UPDATE sp_secrets SET expires_at = $1
             WHERE sp_id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(cutoff)
        .bind(sp_id)
        .execute(&mut *tx)
        .await?;
        let id = insert_secret(&mut tx, sp_id, &phc, &secret, now, expires_at).await?;
        tx.commit().await?;
        Ok((id, secret))
    }

    pub async fn revoke_sp_secret(&self, sp_id: &str, secret_id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE sp_secrets SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND sp_id = $3",
        )
        .bind(self.now_ms())
        .bind(secret_id)
        .bind(sp_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("secret"));
        }
        Ok(())
    }

    /// Checks a client secret of a service principal (argon2id on the blocking pool): the id of
    /// the live secret it matches, or `None` (unknown principal, disabled, expired, wrong or
    /// expired secret all look the same).
    pub async fn verify_sp_secret(&self, sp_id: &str, secret: &str) -> Result<Option<String>> {
        let now = self.now_ms();
        let prefix: String = secret.chars().take(12).collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.id, s.secret_hash FROM sp_secrets s
             JOIN service_principals p ON p.id = s.sp_id
             WHERE s.sp_id = $1 AND s.prefix = $2 AND s.revoked_at IS NULL
               AND (s.expires_at IS NULL OR s.expires_at > $3)
               AND p.disabled_at IS NULL AND (p.expires_at IS NULL OR p.expires_at > $3)",
        )
        .bind(sp_id)
        .bind(&prefix)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            // The same work as a real check, so a miss does not answer faster than a mismatch.
            let dummy = DUMMY_PHC
                .get_or_try_init(|| hash_password("not a secret".into()))
                .await?;
            let _ = verify_password(secret.to_string(), dummy.clone()).await;
            return Ok(None);
        }
        for (id, phc) in rows {
            if verify_password(secret.to_string(), phc).await {
                sqlx::query("UPDATE service_principals SET last_used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(sp_id)
                    .execute(&self.pool)
                    .await?;
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Enabled service principals with their groups and live secrets, for the snapshot (expiry
    /// is checked at decision time, against the clock).
    pub async fn snapshot_service_principals(&self) -> Result<Vec<SpSnapshotRow>> {
        let rows: Vec<(String, String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT id, name, entra_app_id, expires_at FROM service_principals
             WHERE disabled_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let groups: Vec<(String, String)> = sqlx::query_as("SELECT sp_id, group_id FROM sp_groups")
            .fetch_all(&self.pool)
            .await?;
        let secrets: Vec<(String, String, Option<i64>)> =
            sqlx::query_as("SELECT id, sp_id, expires_at FROM sp_secrets WHERE revoked_at IS NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, entra_app_id, expires_at)| SpSnapshotRow {
                groups: groups
                    .iter()
                    .filter(|(sp, _)| *sp == id)
                    .map(|(_, g)| g.clone())
                    .collect(),
                secrets: secrets
                    .iter()
                    .filter(|(_, sp, _)| *sp == id)
                    .map(|(s, _, e)| (s.clone(), *e))
                    .collect(),
                id,
                name,
                entra_app_id,
                expires_at,
            })
            .collect())
    }

    /// Notes that a service principal was used (token issued or Entra token accepted).
    pub async fn touch_service_principal(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE service_principals SET last_used_at = $1 WHERE id = $2")
            .bind(self.now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// An argon2id hash checked when no secret matches the prefix, so unknown principals cost one
/// verification too.
static DUMMY_PHC: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

async fn set_groups(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sp_id: &str,
    groups: &[String],
) -> Result<()> {
    sqlx::query("DELETE FROM sp_groups WHERE sp_id = $1")
        .bind(sp_id)
        .execute(&mut **tx)
        .await?;
    let mut seen = std::collections::BTreeSet::new();
    for g in groups {
        if !seen.insert(g.as_str()) {
            continue;
        }
        let found: Option<(String,)> = sqlx::query_as("SELECT id FROM access_groups WHERE id = $1")
            .bind(g)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            return Err(Error::invalid(format!("unknown group {g}")));
        }
        sqlx::query("INSERT INTO sp_groups (sp_id, group_id) VALUES ($1, $2)")
            .bind(sp_id)
            .bind(g)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn insert_secret(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sp_id: &str,
    phc: &str,
    secret: &str,
    now: i64,
    expires_at: Option<i64>,
) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO sp_secrets (id, sp_id, secret_hash, prefix, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(sp_id)
    .bind(phc)
    .bind(secret.chars().take(12).collect::<String>())
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}
