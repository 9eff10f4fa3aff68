//! Tool policies: per group and connector, the tool patterns allowed and blocked.

use super::groups::require_exists;
use super::{Store, from_json_list, to_json_list};
use crate::clock::from_millis;
use crate::model::ToolPolicy;
use crate::policy::ToolRules;
use crate::{Error, Result};

/// One stored policy, for the snapshot.
#[derive(Clone, Debug)]
pub struct PolicyRow {
    pub group_id: String,
    pub connector_id: String,
    pub rules: ToolRules,
}

#[derive(sqlx::FromRow)]
struct Row {
    group_id: String,
    connector_id: String,
    connector_name: String,
    allow_patterns: String,
    block_patterns: String,
    updated_at: i64,
}

impl From<Row> for ToolPolicy {
    fn from(r: Row) -> Self {
        ToolPolicy {
            group_id: r.group_id,
            connector_id: r.connector_id,
            connector_name: r.connector_name,
            allow: from_json_list(&r.allow_patterns),
            block: from_json_list(&r.block_patterns),
            updated_at: from_millis(r.updated_at),
        }
    }
}

const POLICY_SELECT: &str =
    "SELECT p.group_id, p.connector_id, c.name AS connector_name, p.allow_patterns,
    p.block_patterns, p.updated_at FROM tool_policies p JOIN connectors c ON c.id = p.connector_id";

impl Store {
    /// Sets (replaces) a group's rules on a connector. Both must exist; the patterns are validated.
    pub async fn put_policy(
        &self,
        group_id: &str,
        connector_id: &str,
        allow: Vec<String>,
        block: Vec<String>,
    ) -> Result<ToolPolicy> {
        let rules = ToolRules::normalized(allow, block).map_err(Error::Invalid)?;
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
            "SELECT 1 FROM connectors WHERE id = $1",
            connector_id,
            "connector",
        )
        .await?;
        sqlx::query(
            "INSERT INTO tool_policies (group_id, connector_id, allow_patterns, block_patterns, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_id, connector_id) DO UPDATE
             SET allow_patterns = excluded.allow_patterns, block_patterns = excluded.block_patterns,
                 updated_at = excluded.updated_at",
        )
        .bind(group_id)
        .bind(connector_id)
        .bind(to_json_list(&rules.allow))
        .bind(to_json_list(&rules.block))
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await?;
        let sql = format!("{POLICY_SELECT} WHERE p.group_id = $1 AND p.connector_id = $2");
        let row = sqlx::query_as::<_, Row>(&sql)
            .bind(group_id)
            .bind(connector_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    pub async fn group_policies(&self, group_id: &str) -> Result<Vec<ToolPolicy>> {
        let sql = format!("{POLICY_SELECT} WHERE p.group_id = $1 ORDER BY c.name");
        let rows = sqlx::query_as::<_, Row>(&sql)
            .bind(group_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(ToolPolicy::from).collect())
    }

    /// Every policy, for the snapshot.
    pub async fn all_policies(&self) -> Result<Vec<PolicyRow>> {
        let rows = sqlx::query_as::<_, Row>(POLICY_SELECT)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let p = ToolPolicy::from(r);
                PolicyRow {
                    group_id: p.group_id,
                    connector_id: p.connector_id,
                    rules: ToolRules {
                        allow: p.allow,
                        block: p.block,
                    },
                }
            })
            .collect())
    }
}
