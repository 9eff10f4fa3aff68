//! Groups and their members.

use super::users::{USER_COLUMNS, UserRow};
use super::{ResultExt, Store, new_id};
use crate::clock::from_millis;
use crate::model::{Group, GroupDetail, User};
use crate::names::validate_display_name;
use crate::{Error, Result};

#[derive(sqlx::FromRow)]
pub(super) struct GroupRow {
    id: String,
    display_name: String,
    external_id: Option<String>,
    source: String,
    created_at: i64,
    updated_at: i64,
}

impl From<GroupRow> for Group {
    fn from(r: GroupRow) -> Self {
        Group {
            id: r.id,
            display_name: r.display_name,
            external_id: r.external_id,
            source: r.source,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        }
    }
}

pub(super) const GROUP_COLUMNS: &str =
    "id, display_name, external_id, source, created_at, updated_at";

impl Store {
    /// Creates a group; a display name taken (case-insensitively) is a conflict.
    pub async fn create_group(
        &self,
        display_name: &str,
        external_id: Option<&str>,
    ) -> Result<Group> {
        validate_display_name("display_name", display_name).map_err(Error::Invalid)?;
        let now = self.now_ms();
        let row = GroupRow {
            id: new_id(),
            display_name: display_name.to_string(),
            external_id: external_id.map(str::to_string),
            source: "api".into(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO access_groups (id, display_name, external_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id)
        .bind(&row.display_name)
        .bind(&row.external_id)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await
        .on_unique(|| format!("group {display_name:?} already exists"))?;
        Ok(row.into())
    }

    pub async fn get_group(&self, id: &str) -> Result<Group> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM access_groups WHERE id = $1");
        sqlx::query_as::<_, GroupRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(Group::from)
            .ok_or(Error::NotFound("group"))
    }

    pub async fn list_groups(&self) -> Result<Vec<Group>> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM access_groups ORDER BY lower(display_name)");
        let rows = sqlx::query_as::<_, GroupRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Group::from).collect())
    }

    /// Adds a user to a group; adding an existing member changes nothing (idempotent).
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        require_exists(
            &mut tx,
            "SELECT 1 FROM access_groups WHERE id = $1",
            group_id,
            "group",
        )
        .await?;
        require_exists(
            &mut tx,
            "SELECT 1 FROM users WHERE id = $1",
            user_id,
            "user",
        )
        .await?;
        // Groups provisioned by SCIM keep the membership the identity provider sends.
        require_not_scim(&mut tx, group_id).await?;
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(user_id)
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a user from a group; removing a non-member changes nothing.
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        if self.get_group(group_id).await?.source == "scim" {
            return Err(scim_managed());
        }
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn group_members(&self, group_id: &str) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN group_members m ON m.user_id = u.id
             WHERE m.group_id = $1 ORDER BY lower(u.user_name)"
        );
        let rows = sqlx::query_as::<_, UserRow>(&sql)
            .bind(group_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// A group with its members and policies, for the Groups page.
    pub async fn group_detail(&self, group_id: &str) -> Result<GroupDetail> {
        let group = self.get_group(group_id).await?;
        let members = self.group_members(group_id).await?;
        let policies = self.group_policies(group_id).await?;
        Ok(GroupDetail {
            group,
            members,
            policies,
        })
    }

    /// (group id, user id) pairs of people who hold a live personal token, for the snapshot.
    pub async fn memberships_of_token_holders(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as::<_, (String, String)>(
            "SELECT m.group_id, m.user_id FROM group_members m
             WHERE m.user_id IN (SELECT user_id FROM api_tokens
                                 WHERE kind = 'personal' AND revoked_at IS NULL AND user_id IS NOT NULL)
                OR m.user_id IN (SELECT user_id FROM oauth_grants WHERE revoked_at IS NULL)",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every (group id, user id) pair.
    pub async fn all_memberships(&self) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as::<_, (String, String)>("SELECT group_id, user_id FROM group_members")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// Fails with `NotFound(what)` unless `sql` (selecting by one id) finds a row.
pub(super) async fn require_exists(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &str,
    id: &str,
    what: &'static str,
) -> Result<()> {
    let found = sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?;
    found.map(|_| ()).ok_or(Error::NotFound(what))
}

fn scim_managed() -> Error {
    Error::Conflict("this group's membership is managed by SCIM (the identity provider)".into())
}

async fn require_not_scim(tx: &mut sqlx::Transaction<'_, sqlx::Any>, group_id: &str) -> Result<()> {
    let (source,): (String,) = sqlx::query_as("SELECT source FROM access_groups WHERE id = $1")
        .bind(group_id)
        .fetch_one(&mut **tx)
        .await?;
    if source == "scim" {
        return Err(scim_managed());
    }
    Ok(())
}
