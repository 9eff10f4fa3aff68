//! Directory writes from provisioning (SCIM): users and groups stored as their full SCIM document
//! beside the indexed columns the rest of Toolgate reads, with a version for ETags. The store
//! keeps documents opaque; the SCIM layer owns their meaning.

use super::groups::{GROUP_COLUMNS, GroupRow};
use super::users::{USER_COLUMNS, UserRow};
use super::{ResultExt, Store, new_id};
use crate::model::{Group, User};
use crate::names::{validate_display_name, validate_user_name};
use crate::{Error, Result};

/// The indexed fields and the document of a provisioned user.
#[derive(Clone, Debug)]
pub struct UserWrite {
    pub user_name: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub active: bool,
    /// The SCIM document (JSON) without `id`, `meta` and `groups`.
    pub doc: String,
}

/// The indexed fields and the document of a provisioned group.
#[derive(Clone, Debug)]
pub struct GroupWrite {
    pub display_name: String,
    pub external_id: Option<String>,
    /// The SCIM document (JSON) without `id`, `meta` and `members`.
    pub doc: String,
}

/// A user with its SCIM document (absent for users created through the admin API) and version.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryUser {
    pub user: User,
    pub doc: Option<String>,
    pub version: i64,
}

/// A group with its SCIM document, version and member ids.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryGroup {
    pub group: Group,
    pub doc: Option<String>,
    pub version: i64,
    pub members: Vec<String>,
}

/// Which indexed column a lookup uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryKey {
    Id,
    /// User name (users) or display name (groups), case-insensitive.
    Name,
    ExternalId,
}

/// How a group's members change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberChange {
    /// Replace the whole member list with this one (applied first).
    pub replace: Option<Vec<String>>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl MemberChange {
    pub fn is_empty(&self) -> bool {
        self.replace.is_none() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(sqlx::FromRow)]
struct DirUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    scim_json: Option<String>,
    version: i64,
}

#[derive(sqlx::FromRow)]
struct DirGroupRow {
    #[sqlx(flatten)]
    group: GroupRow,
    scim_json: Option<String>,
    version: i64,
}

fn validate_user(w: &UserWrite) -> Result<()> {
    validate_user_name(&w.user_name).map_err(Error::Invalid)?;
    validate_display_name("displayName", &w.display_name).map_err(Error::Invalid)
}

#[derive(Clone, Copy)]
enum Entity {
    User,
    Group,
}

/// Fails with `NotFound` when the row is gone, and with `PreconditionFailed` when the caller's
/// `If-Match` version is not the current one.
async fn check_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entity: Entity,
    id: &str,
    expected: Option<i64>,
) -> Result<()> {
    let (sql, what) = match entity {
        Entity::User => ("SELECT version FROM users WHERE id = $1", "user"),
        Entity::Group => ("SELECT version FROM access_groups WHERE id = $1", "group"),
    };
    let current: Option<(i64,)> = sqlx::query_as(sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let (version,) = current.ok_or(Error::NotFound(what))?;
    match expected {
        Some(v) if v != version => Err(Error::PreconditionFailed(v.to_string())),
        _ => Ok(()),
    }
}

impl Store {
    /// Creates a provisioned user; a taken user name is a conflict.
    pub async fn directory_create_user(&self, w: UserWrite, source: &str) -> Result<DirectoryUser> {
        validate_user(&w)?;
        let id = new_id();
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO users (id, user_name, display_name, external_id, active, scim_json, source, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
        )
        .bind(&id)
        .bind(&w.user_name)
        .bind(&w.display_name)
        .bind(&w.external_id)
        .bind(i64::from(w.active))
        .bind(&w.doc)
        .bind(source)
        .bind(now)
        .execute(&self.pool)
        .await
        .on_unique(|| format!("userName {:?} is already taken", w.user_name))?;
        self.directory_user(&id).await
    }

    /// Replaces a user's fields and document, bumping its version. `expected_version` (from
    /// `If-Match`) must match when given.
    pub async fn directory_update_user(
        &self,
        id: &str,
        w: UserWrite,
        expected_version: Option<i64>,
    ) -> Result<DirectoryUser> {
        validate_user(&w)?;
        let mut tx = self.write_tx().await?;
        check_version(&mut tx, Entity::User, id, expected_version).await?;
        sqlx::query(
            "UPDATE users SET user_name = $1, display_name = $2, external_id = $3, active = $4,
                 scim_json = $5, version = version + 1, updated_at = $6 WHERE id = $7",
        )
        .bind(&w.user_name)
        .bind(&w.display_name)
        .bind(&w.external_id)
        .bind(i64::from(w.active))
        .bind(&w.doc)
        .bind(self.now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .on_unique(|| format!("userName {:?} is already taken", w.user_name))?;
        if !w.active {
            // Offboarding: a disabled person's dashboard sessions and agent authorizations end
            // with the change.
            sqlx::query("DELETE FROM dashboard_sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            super::oauth::revoke_user_grants(&mut tx, id, self.now_ms(), "user disabled").await?;
        }
        tx.commit().await?;
        self.directory_user(id).await
    }

    pub async fn directory_user(&self, id: &str) -> Result<DirectoryUser> {
        let mut found = self.directory_users(Some((DirectoryKey::Id, id))).await?;
        found.pop().ok_or(Error::NotFound("user"))
    }

    /// Users matching one indexed key (or all users), ordered by creation.
    pub async fn directory_users(
        &self,
        by: Option<(DirectoryKey, &str)>,
    ) -> Result<Vec<DirectoryUser>> {
        let condition = match by.map(|(k, _)| k) {
            None => "1 = 1 OR $1 IS NULL",
            Some(DirectoryKey::Id) => "u.id = $1",
            Some(DirectoryKey::Name) => "lower(u.user_name) = lower($1)",
            Some(DirectoryKey::ExternalId) => "u.external_id = $1",
        };
        let sql = format!(
            "SELECT {USER_COLUMNS}, u.scim_json, u.version FROM users u WHERE {condition}
             ORDER BY u.created_at, u.id"
        );
        let rows = sqlx::query_as::<_, DirUserRow>(&sql)
            .bind(by.map(|(_, v)| v.to_string()))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DirectoryUser {
                user: r.user.into(),
                doc: r.scim_json,
                version: r.version,
            })
            .collect())
    }

    /// Deletes a user with their memberships and tokens.
    pub async fn delete_user(&self, id: &str, expected_version: Option<i64>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        check_version(&mut tx, Entity::User, id, expected_version).await?;
        // Explicit deletes keep this independent of whether the backend enforces cascades.
        for sql in [
            "DELETE FROM group_members WHERE user_id = $1",
            "DELETE FROM api_tokens WHERE user_id = $1",
            "DELETE FROM dashboard_sessions WHERE user_id = $1",
            "DELETE FROM oauth_consents WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        super::oauth::revoke_user_grants(&mut tx, id, self.now_ms(), "user deleted").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a provisioned group with its initial members; a taken display name is a conflict.
    pub async fn directory_create_group(
        &self,
        w: GroupWrite,
        members: &[String],
        source: &str,
    ) -> Result<DirectoryGroup> {
        validate_display_name("displayName", &w.display_name).map_err(Error::Invalid)?;
        let id = new_id();
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO access_groups (id, display_name, external_id, scim_json, source, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
        )
        .bind(&id)
        .bind(&w.display_name)
        .bind(&w.external_id)
        .bind(&w.doc)
        .bind(source)
        .bind(now)
        .execute(&mut *tx)
        .await
        .on_unique(|| format!("group {:?} already exists", w.display_name))?;
        apply_members(
            &mut tx,
            &id,
            &MemberChange {
                add: members.to_vec(),
                ..Default::default()
            },
            now,
        )
        .await?;
        tx.commit().await?;
        self.directory_group(&id).await
    }

    /// Replaces a group's fields and document (when `w` is given) and changes its members, in one
    /// transaction, bumping its version.
    pub async fn directory_update_group(
        &self,
        id: &str,
        w: Option<GroupWrite>,
        members: &MemberChange,
        expected_version: Option<i64>,
    ) -> Result<DirectoryGroup> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        check_version(&mut tx, Entity::Group, id, expected_version).await?;
        if let Some(w) = &w {
            validate_display_name("displayName", &w.display_name).map_err(Error::Invalid)?;
            sqlx::query(
                "UPDATE access_groups SET display_name = $1, external_id = $2, scim_json = $3 WHERE id = $4",
            )
            .bind(&w.display_name)
            .bind(&w.external_id)
            .bind(&w.doc)
            .bind(id)
            .execute(&mut *tx)
            .await
            .on_unique(|| format!("group {:?} already exists", w.display_name))?;
        }
        apply_members(&mut tx, id, members, now).await?;
        sqlx::query(
            "UPDATE access_groups SET version = version + 1, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.directory_group(id).await
    }

    pub async fn directory_group(&self, id: &str) -> Result<DirectoryGroup> {
        let mut found = self.directory_groups(Some((DirectoryKey::Id, id))).await?;
        found.pop().ok_or(Error::NotFound("group"))
    }

    /// Groups matching one indexed key (or all groups), with member ids, ordered by creation.
    pub async fn directory_groups(
        &self,
        by: Option<(DirectoryKey, &str)>,
    ) -> Result<Vec<DirectoryGroup>> {
        let condition = match by.map(|(k, _)| k) {
            None => "1 = 1 OR $1 IS NULL",
            Some(DirectoryKey::Id) => "id = $1",
            Some(DirectoryKey::Name) => "lower(display_name) = lower($1)",
            Some(DirectoryKey::ExternalId) => "external_id = $1",
        };
        let sql = format!(
            "SELECT {GROUP_COLUMNS}, scim_json, version FROM access_groups WHERE {condition}
             ORDER BY created_at, id"
        );
        let rows = sqlx::query_as::<_, DirGroupRow>(&sql)
            .bind(by.map(|(_, v)| v.to_string()))
            .fetch_all(&self.pool)
            .await?;
        let members: Vec<(String, String)> = match by {
            Some((DirectoryKey::Id, id)) => {
                sqlx::query_as("SELECT group_id, user_id FROM group_members WHERE group_id = $1 ORDER BY created_at, user_id")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?
            }
            _ => {
                sqlx::query_as("SELECT group_id, user_id FROM group_members ORDER BY created_at, user_id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut by_group: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (g, u) in members {
            by_group.entry(g).or_default().push(u);
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let group: Group = r.group.into();
                let members = by_group.remove(&group.id).unwrap_or_default();
                DirectoryGroup {
                    group,
                    doc: r.scim_json,
                    version: r.version,
                    members,
                }
            })
            .collect())
    }

    /// Deletes a group (its memberships and policies go with it).
    pub async fn delete_group(&self, id: &str, expected_version: Option<i64>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        check_version(&mut tx, Entity::Group, id, expected_version).await?;
        for sql in [
            "DELETE FROM group_members WHERE group_id = $1",
            "DELETE FROM sp_groups WHERE group_id = $1",
            "DELETE FROM tool_policies WHERE group_id = $1",
            "DELETE FROM access_groups WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The groups of one user (or of everyone), as (user id, group id, group display name).
    pub async fn user_group_names(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<(String, String, String)>> {
        // Two statements: `$1 IS NULL OR m.user_id = $1` would keep SQLite from using the index.
        let base = "SELECT m.user_id, g.id, g.display_name FROM group_members m
                    JOIN access_groups g ON g.id = m.group_id";
        let rows = match user_id {
            Some(u) => {
                sqlx::query_as(&format!(
                    "{base} WHERE m.user_id = $1 ORDER BY g.display_name"
                ))
                .bind(u)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(&format!("{base} ORDER BY g.display_name"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Records SCIM requests for the provisioning log, in one transaction.
    pub async fn log_scim_requests(&self, entries: &[ScimRequestLog]) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO scim_requests (at, client, method, path, status, duration_us) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(now)
            .bind(&e.client)
            .bind(&e.method)
            .bind(&e.path)
            .bind(i64::from(e.status))
            .bind(e.duration_us)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest SCIM requests, newest first: (unix ms, client, method, path, status, duration µs).
    pub async fn recent_scim_requests(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, String, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT at, client, method, path, status, duration_us FROM scim_requests ORDER BY id DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?)
    }
}

/// One logged SCIM request.
#[derive(Clone, Debug)]
pub struct ScimRequestLog {
    pub client: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub duration_us: i64,
}

/// Applies a member change inside a transaction; every added member must be an existing user.
async fn apply_members(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    group_id: &str,
    change: &MemberChange,
    now: i64,
) -> Result<()> {
    if let Some(all) = &change.replace {
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(group_id)
            .execute(&mut **tx)
            .await?;
        add_members(tx, group_id, all, now).await?;
    }
    add_members(tx, group_id, &change.add, now).await?;
    for user_id in &change.remove {
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn add_members(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    group_id: &str,
    users: &[String],
    now: i64,
) -> Result<()> {
    // Two statements per chunk rather than two per member: on SQLite every statement is a
    // round trip to the connection's worker thread.
    for chunk in users.chunks(200) {
        let placeholders = |first: usize| {
            (0..chunk.len())
                .map(|i| format!("${}", first + i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!("SELECT id FROM users WHERE id IN ({})", placeholders(1));
        let mut q = sqlx::query_as::<_, (String,)>(&sql);
        for u in chunk {
            q = q.bind(u);
        }
        let known: std::collections::HashSet<String> = q
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect();
        if let Some(unknown) = chunk.iter().find(|u| !known.contains(*u)) {
            return Err(Error::Invalid(format!(
                "member {unknown:?} is not a known user"
            )));
        }
        let values = (0..chunk.len())
            .map(|i| format!("($1, ${}, $2)", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO group_members (group_id, user_id, created_at) VALUES {values}
             ON CONFLICT (group_id, user_id) DO NOTHING"
        );
        let mut q = sqlx::query(&sql).bind(group_id).bind(now);
        for u in chunk {
            q = q.bind(u);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
