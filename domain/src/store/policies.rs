//! Tool policies: per group and connector, the tool patterns allowed and blocked.

use super::groups::require_exists;
use super::{Store, from_json_list, to_json_list};
use crate::clock::from_millis;
use crate::model::ToolPolicy;
use crate::policy::ToolRules;
use crate::risk::Risk;
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
    allow_risk: Option<String>,
    block_risk: Option<String>,
    resources: String,
    prompts: String,
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
            allow_risk: r.allow_risk.as_deref().and_then(Risk::parse),
            block_risk: r.block_risk.as_deref().and_then(Risk::parse),
            resources: from_json_list(&r.resources),
            prompts: from_json_list(&r.prompts),
            updated_at: from_millis(r.updated_at),
        }
    }
}

/// Sets a group's rules on a connector ($1 group, $2 connector, $3-$8 rule lists and levels, $9 now).
const UPSERT_RULES: &str =
    "INSERT INTO tool_policies (group_id, connector_id, allow_patterns, block_patterns,
        allow_risk, block_risk, resources, prompts, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (group_id, connector_id) DO UPDATE
     SET allow_patterns = excluded.allow_patterns, block_patterns = excluded.block_patterns,
         allow_risk = excluded.allow_risk, block_risk = excluded.block_risk,
         resources = excluded.resources, prompts = excluded.prompts,
         updated_at = excluded.updated_at";

const POLICY_SELECT: &str =
    "SELECT p.group_id, p.connector_id, c.name AS connector_name, p.allow_patterns,
    p.block_patterns, p.allow_risk, p.block_risk, p.resources, p.prompts, p.updated_at FROM tool_policies p JOIN connectors c ON c.id = p.connector_id";

impl Store {
    /// Sets (replaces) a group's name rules on a connector (the Foundation's shape).
    pub async fn put_policy(
        &self,
        group_id: &str,
        connector_id: &str,
        allow: Vec<String>,
        block: Vec<String>,
    ) -> Result<ToolPolicy> {
        self.put_rules(group_id, connector_id, ToolRules::names(allow, block))
            .await
    }

    /// Sets (replaces) a group's rules on a connector. Both must exist; the rules are validated.
    pub async fn put_rules(
        &self,
        group_id: &str,
        connector_id: &str,
        rules: ToolRules,
    ) -> Result<ToolPolicy> {
        let mut tx = self.write_tx().await?;
        upsert_rules(&mut tx, group_id, connector_id, rules, self.now_ms()).await?;
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
                    rules: p.rules(),
                    group_id: p.group_id,
                    connector_id: p.connector_id,
                }
            })
            .collect())
    }
}

/// Validates `rules` and sets them as the group's rules on the connector, inside `tx`; both
/// must exist.
async fn upsert_rules(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    group_id: &str,
    connector_id: &str,
    rules: ToolRules,
    now: i64,
) -> Result<()> {
    let rules = rules.validated().map_err(Error::Invalid)?;
    require_exists(
        tx,
        "SELECT 1 FROM access_groups WHERE id = $1",
        group_id,
        "group",
    )
    .await?;
    require_exists(
        tx,
        "SELECT 1 FROM connectors WHERE id = $1",
        connector_id,
        "connector",
    )
    .await?;
    sqlx::query(UPSERT_RULES)
        .bind(group_id)
        .bind(connector_id)
        .bind(to_json_list(&rules.allow))
        .bind(to_json_list(&rules.block))
        .bind(rules.allow_risk.map(Risk::as_str))
        .bind(rules.block_risk.map(Risk::as_str))
        .bind(to_json_list(&rules.resources))
        .bind(to_json_list(&rules.prompts))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Removes a group's rules on a connector (no rules: default deny).
    pub async fn delete_policy(&self, group_id: &str, connector_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM tool_policies WHERE group_id = $1 AND connector_id = $2")
            .bind(group_id)
            .bind(connector_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One change of a policy file, applied with the others in one transaction
/// (`Store::apply_policy_changes`).
#[derive(Clone, Debug)]
pub enum PolicyChange {
    /// Set (replace) a group's rules on a connector; the rules are validated.
    PutRules {
        group_id: String,
        connector_id: String,
        rules: ToolRules,
    },
    /// Remove a group's rules on a connector.
    DeleteRules {
        group_id: String,
        connector_id: String,
    },
    /// Set a tool's risk level (`None`: back to the suggestion).
    SetRisk {
        connector_id: String,
        tool: String,
        risk: Option<Risk>,
    },
    /// Replace the catalog settings.
    CatalogSettings(crate::store::CatalogSettings),
}

impl Store {
    /// Applies every change in ONE transaction: all of them or, on any failure, none. Returns,
    /// for each `SetRisk`, the level and whether it is an admin's (in order of the changes).
    pub async fn apply_policy_changes(
        &self,
        changes: &[PolicyChange],
    ) -> Result<Vec<(Risk, bool)>> {
        let now = self.now_ms();
        let mut risks = Vec::new();
        let mut tx = self.write_tx().await?;
        for change in changes {
            match change {
                PolicyChange::PutRules {
                    group_id,
                    connector_id,
                    rules,
                } => upsert_rules(&mut tx, group_id, connector_id, rules.clone(), now).await?,
                PolicyChange::DeleteRules {
                    group_id,
                    connector_id,
                } => {
                    sqlx::query(
                        "DELETE FROM tool_policies WHERE group_id = $1 AND connector_id = $2",
                    )
                    .bind(group_id)
                    .bind(connector_id)
                    .execute(&mut *tx)
                    .await?;
                }
                PolicyChange::SetRisk {
                    connector_id,
                    tool,
                    risk,
                } => {
                    let found: Option<(String,)> = sqlx::query_as(
                        "SELECT annotations FROM connector_tools WHERE connector_id = $1 AND name = $2",
                    )
                    .bind(connector_id)
                    .bind(tool)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((annotations,)) = found else {
                        return Err(Error::NotFound("tool"));
                    };
                    let (level, reason, overridden) = match risk {
                        Some(r) => (*r, "set by an admin".to_string(), true),
                        None => {
                            let hints = serde_json::from_str(&annotations).unwrap_or_default();
                            let (r, why) = crate::risk::suggest(tool, &hints);
                            (r, why, false)
                        }
                    };
                    sqlx::query(
                        "UPDATE connector_tools SET risk = $1, risk_reason = $2, risk_overridden = $3, updated_at = $4
                         WHERE connector_id = $5 AND name = $6",
                    )
                    .bind(level.as_str())
                    .bind(&reason)
                    .bind(i64::from(overridden))
                    .bind(now)
                    .bind(connector_id)
                    .bind(tool)
                    .execute(&mut *tx)
                    .await?;
                    risks.push((level, overridden));
                }
                PolicyChange::CatalogSettings(settings) => {
                    let json = serde_json::to_string(settings)
                        .map_err(|e| Error::Internal(format!("catalog settings: {e}")))?;
                    sqlx::query(super::settings::UPSERT_SETTING)
                        .bind(crate::store::setting_keys::CATALOG)
                        .bind(json)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(risks)
    }
}
