//! The tool catalog: every tool each connector has offered, with a hash of its definition, its
//! review state and risk level. Discovery (`sync_catalog`) adds and updates entries; a tool that
//! appears after the first discovery waits for review, and a changed definition of an approved
//! tool is flagged (and, by setting, blocked until re-approved).

use super::Store;
use crate::clock::from_millis;
use crate::crypto::sha256_hex;
use crate::model::CatalogTool;
use crate::policy::Review;
use crate::risk::{Risk, ToolHints, suggest};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A tool as an upstream lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveredTool {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub annotations: ToolHints,
    /// What else agents are shown and an upstream could change after review: the title, the
    /// annotations exactly as sent (title and hints) and the output schema (`null` when none).
    pub presentation: serde_json::Value,
}

/// A catalog row as a sync compares it: name, hash, approved hash, status, risk overridden,
/// present, hash version.
type StoredToolRow = (String, String, Option<String>, String, i64, i64, i64);

/// The definition [`DiscoveredTool::hash`] covers (see migration 0010).
pub const TOOL_HASH_VERSION: i64 = 2;

impl DiscoveredTool {
    /// SHA-256 over everything an agent is shown: name, description, input schema and the
    /// presentation (title, annotations, output schema), as a JSON array so the parts cannot run
    /// into each other. A hint turned to `readOnlyHint: true` after review is a change like any
    /// other.
    pub fn hash(&self) -> String {
        let canonical = serde_json::json!([
            self.name,
            self.description,
            self.input_schema,
            self.presentation
        ]);
        sha256_hex(canonical.to_string().as_bytes())
    }

    /// The hash older releases stored (version 1: name, description and input schema only), to
    /// carry reviews over on upgrade.
    pub fn hash_v1(&self) -> String {
        let canonical = serde_json::json!([self.name, self.description, self.input_schema]);
        sha256_hex(canonical.to_string().as_bytes())
    }
}

/// A catalog entry as the policy snapshot holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogFacts {
    pub connector_id: String,
    pub name: String,
    pub hash: String,
    pub review: Review,
    pub risk: Risk,
    /// Group whose yes each call needs (per-call approval), if any.
    pub approval_group: Option<String>,
}

/// Catalog-wide settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogSettings {
    /// Refuse an approved tool whose description or input schema changed until an admin
    /// re-approves it (default on).
    pub block_changed_tools: bool,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            block_changed_tools: true,
        }
    }
}

/// What one discovery changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogSync {
    /// This was the connector's first discovery: its tools were accepted as found.
    pub initial: bool,
    /// New tools (approved on the first discovery, waiting for review after).
    pub added: Vec<String>,
    /// Tools whose description or schema changed.
    pub changed: Vec<String>,
    /// Tools no longer listed by the upstream.
    pub removed: Vec<String>,
}

impl CatalogSync {
    pub fn is_empty(&self) -> bool {
        !self.initial && self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    connector_id: String,
    connector_name: String,
    name: String,
    description: String,
    input_schema: String,
    annotations: String,
    hash: String,
    status: String,
    risk: String,
    risk_reason: String,
    risk_overridden: i64,
    present: i64,
    first_seen: i64,
    updated_at: i64,
    approval_group: Option<String>,
}

impl Row {
    fn into_model(self) -> Result<CatalogTool> {
        Ok(CatalogTool {
            review: Review::parse(&self.status).ok_or_else(|| {
                Error::Internal(format!("unknown review state {:?}", self.status))
            })?,
            risk: Risk::parse(&self.risk)
                .ok_or_else(|| Error::Internal(format!("unknown risk {:?}", self.risk)))?,
            connector_id: self.connector_id,
            connector_name: self.connector_name,
            name: self.name,
            description: self.description,
            input_schema: serde_json::from_str(&self.input_schema).unwrap_or_default(),
            annotations: serde_json::from_str(&self.annotations).unwrap_or_default(),
            hash: self.hash,
            risk_reason: self.risk_reason,
            risk_overridden: self.risk_overridden != 0,
            present: self.present != 0,
            first_seen: from_millis(self.first_seen),
            updated_at: from_millis(self.updated_at),
            approval_group: self.approval_group,
        })
    }
}

const SELECT: &str =
    "SELECT t.connector_id, c.name AS connector_name, t.name, t.description, t.input_schema,
    t.annotations, t.hash, t.status, t.risk, t.risk_reason, t.risk_overridden, t.present,
    t.first_seen, t.updated_at, t.approval_group FROM connector_tools t JOIN connectors c ON c.id = t.connector_id";

/// Most tools one connector may list; more is refused as a misbehaving upstream.
pub const MAX_TOOLS_PER_CONNECTOR: usize = 10_000;

impl Store {
    /// Makes a tool's row look as an older release left it (hash version 1, `hash` as its
    /// reviewed hash), for the upgrade-path test.
    #[cfg(feature = "test-util")]
    pub async fn set_tool_hash_v1(&self, connector_id: &str, name: &str, hash: &str) -> Result<()> {
        sqlx::query(
            "UPDATE connector_tools SET hash = $1, approved_hash = $1, hash_version = 1
             WHERE connector_id = $2 AND name = $3",
        )
        .bind(hash)
        .bind(connector_id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A connector's catalog, by tool name.
    pub async fn catalog(&self, connector_id: &str) -> Result<Vec<CatalogTool>> {
        let sql = format!("{SELECT} WHERE t.connector_id = $1 ORDER BY t.name");
        let rows = sqlx::query_as::<_, Row>(&sql)
            .bind(connector_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Row::into_model).collect()
    }

    /// Every connector's catalog, for the snapshot.
    pub async fn all_catalogs(&self) -> Result<Vec<CatalogTool>> {
        let sql = format!("{SELECT} ORDER BY c.name, t.name");
        let rows = sqlx::query_as::<_, Row>(&sql).fetch_all(&self.pool).await?;
        rows.into_iter().map(Row::into_model).collect()
    }

    /// What the snapshot needs of every catalog entry that is still listed: (connector id, tool
    /// name, definition hash, review state, risk). No descriptions or schemas.
    pub async fn catalog_facts(&self) -> Result<Vec<CatalogFacts>> {
        type FactRow = (String, String, String, String, String, Option<String>);
        let rows: Vec<FactRow> = sqlx::query_as(
            "SELECT connector_id, name, hash, status, risk, approval_group FROM connector_tools
             WHERE present = 1",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(connector_id, name, hash, status, risk, approval_group)| {
                Ok(CatalogFacts {
                    review: Review::parse(&status).ok_or_else(|| {
                        Error::Internal(format!("unknown review state {status:?}"))
                    })?,
                    risk: Risk::parse(&risk)
                        .ok_or_else(|| Error::Internal(format!("unknown risk {risk:?}")))?,
                    connector_id,
                    name,
                    hash,
                    approval_group,
                })
            })
            .collect()
    }

    /// Tools waiting for an admin: new ones and changed ones, over all connectors.
    pub async fn review_queue(&self) -> Result<Vec<CatalogTool>> {
        let sql = format!(
            "{SELECT} WHERE t.status IN ('pending', 'changed') AND t.present = 1 ORDER BY c.name, t.name"
        );
        let rows = sqlx::query_as::<_, Row>(&sql).fetch_all(&self.pool).await?;
        rows.into_iter().map(Row::into_model).collect()
    }

    /// Records what a discovery found. On the connector's first discovery every tool is approved
    /// as found (the admin reviewed them in the add wizard, or created the connector through the
    /// API so that policy alone decides); after that a new tool waits for review and a changed
    /// definition of an approved tool is marked `changed`.
    pub async fn sync_catalog(
        &self,
        connector_id: &str,
        discovered: &[DiscoveredTool],
    ) -> Result<CatalogSync> {
        self.sync_catalog_reviewed(connector_id, discovered, None)
            .await
    }

    /// As `sync_catalog`, where the first discovery approves only the definitions an admin saw
    /// (`reviewed`: their hashes, from the add wizard's test connection); anything else found
    /// then (a server that showed one thing to the test and another at creation) waits for
    /// review. `None`: everything found first is approved (the API's way).
    pub async fn sync_catalog_reviewed(
        &self,
        connector_id: &str,
        discovered: &[DiscoveredTool],
        reviewed: Option<&std::collections::HashSet<String>>,
    ) -> Result<CatalogSync> {
        if discovered.len() > MAX_TOOLS_PER_CONNECTOR {
            return Err(Error::Invalid(format!(
                "the upstream lists {} tools; at most {MAX_TOOLS_PER_CONNECTOR} are accepted",
                discovered.len()
            )));
        }
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let initialized: Option<(i64,)> =
            sqlx::query_as("SELECT catalog_initialized FROM connectors WHERE id = $1")
                .bind(connector_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((initialized,)) = initialized else {
            return Err(Error::NotFound("connector"));
        };
        let initial = initialized == 0;
        let existing: Vec<StoredToolRow> = sqlx::query_as(
            "SELECT name, hash, approved_hash, status, risk_overridden, present, hash_version FROM connector_tools WHERE connector_id = $1",
        )
        .bind(connector_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut sync = CatalogSync {
            initial,
            ..CatalogSync::default()
        };
        for tool in discovered {
            let hash = tool.hash();
            let (risk, reason) = suggest(&tool.name, &tool.annotations);
            let schema = tool.input_schema.to_string();
            let annotations = serde_json::to_string(&tool.annotations).unwrap_or_default();
            match existing.iter().find(|e| e.0 == tool.name) {
                None => {
                    let approved = initial && reviewed.is_none_or(|r| r.contains(&hash));
                    let status = if approved {
                        Review::Approved
                    } else {
                        Review::Pending
                    };
                    sqlx::query(
                        "INSERT INTO connector_tools (connector_id, name, description, input_schema, annotations, hash,
                            approved_hash, status, risk, risk_reason, risk_overridden, present, first_seen, updated_at,
                            hash_version)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 1, $11, $11, $12)",
                    )
                    .bind(connector_id)
                    .bind(&tool.name)
                    .bind(&tool.description)
                    .bind(&schema)
                    .bind(&annotations)
                    .bind(&hash)
                    .bind(approved.then_some(&hash))
                    .bind(status.as_str())
                    .bind(risk.as_str())
                    .bind(&reason)
                    .bind(now)
                    .bind(TOOL_HASH_VERSION)
                    .execute(&mut *tx)
                    .await?;
                    sync.added.push(tool.name.clone());
                }
                Some((_, old_hash, approved_hash, status, _, present, version)) => {
                    if *old_hash == hash && *present == 1 {
                        continue;
                    }
                    if *version < TOOL_HASH_VERSION && *old_hash == tool.hash_v1() {
                        // Hashed by an older release over fewer parts, and those parts are
                        // unchanged: the same tool. Re-hash it, carrying its review over.
                        let approved = (approved_hash.as_deref() == Some(old_hash.as_str()))
                            .then_some(hash.as_str());
                        sqlx::query(
                            "UPDATE connector_tools SET hash = $1, approved_hash = COALESCE($2, approved_hash),
                                annotations = $3, hash_version = $4, present = 1, updated_at = $5
                             WHERE connector_id = $6 AND name = $7",
                        )
                        .bind(&hash)
                        .bind(approved)
                        .bind(&annotations)
                        .bind(TOOL_HASH_VERSION)
                        .bind(now)
                        .bind(connector_id)
                        .bind(&tool.name)
                        .execute(&mut *tx)
                        .await?;
                        continue;
                    }
                    let status = Review::parse(status).unwrap_or(Review::Pending);
                    let next = match status {
                        Review::Approved | Review::Changed => {
                            if approved_hash.as_deref() == Some(hash.as_str()) {
                                Review::Approved
                            } else {
                                Review::Changed
                            }
                        }
                        other => other,
                    };
                    if *old_hash != hash {
                        sync.changed.push(tool.name.clone());
                    }
                    sqlx::query(
                        "UPDATE connector_tools SET description = $1, input_schema = $2, annotations = $3, hash = $4,
                            status = $5, risk = CASE WHEN risk_overridden = 1 THEN risk ELSE $6 END,
                            risk_reason = CASE WHEN risk_overridden = 1 THEN risk_reason ELSE $7 END,
                            present = 1, updated_at = $8, hash_version = $11
                         WHERE connector_id = $9 AND name = $10",
                    )
                    .bind(&tool.description)
                    .bind(&schema)
                    .bind(&annotations)
                    .bind(&hash)
                    .bind(next.as_str())
                    .bind(risk.as_str())
                    .bind(&reason)
                    .bind(now)
                    .bind(connector_id)
                    .bind(&tool.name)
                    .bind(TOOL_HASH_VERSION)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        for (name, _, _, _, _, present, _) in &existing {
            if *present == 1 && !discovered.iter().any(|d| &d.name == name) {
                sqlx::query(
                    "UPDATE connector_tools SET present = 0, updated_at = $1 WHERE connector_id = $2 AND name = $3",
                )
                .bind(now)
                .bind(connector_id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
                sync.removed.push(name.clone());
            }
        }
        if initial {
            sqlx::query("UPDATE connectors SET catalog_initialized = 1 WHERE id = $1")
                .bind(connector_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(sync)
    }

    /// An admin's review of a tool: approve (its current definition becomes the approved one) or
    /// reject (never callable).
    pub async fn review_tool(
        &self,
        connector_id: &str,
        name: &str,
        approve: bool,
    ) -> Result<CatalogTool> {
        let status = if approve {
            Review::Approved
        } else {
            Review::Rejected
        };
        let done = sqlx::query(
            "UPDATE connector_tools SET status = $1,
                approved_hash = CASE WHEN $2 = 1 THEN hash ELSE approved_hash END, updated_at = $3
             WHERE connector_id = $4 AND name = $5",
        )
        .bind(status.as_str())
        .bind(i64::from(approve))
        .bind(self.now_ms())
        .bind(connector_id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("tool"));
        }
        self.catalog_tool(connector_id, name).await
    }

    /// Sets a tool's risk level (`None`: back to the suggestion).
    pub async fn set_tool_risk(
        &self,
        connector_id: &str,
        name: &str,
        risk: Option<Risk>,
    ) -> Result<CatalogTool> {
        self.apply_policy_changes(&[super::PolicyChange::SetRisk {
            connector_id: connector_id.to_string(),
            tool: name.to_string(),
            risk,
        }])
        .await?;
        self.catalog_tool(connector_id, name).await
    }

    /// Marks a tool "approve each call" by members of `group` (a group id), or clears it.
    pub async fn set_tool_approval(
        &self,
        connector_id: &str,
        name: &str,
        group: Option<&str>,
    ) -> Result<CatalogTool> {
        let mut tx = self.write_tx().await?;
        if let Some(g) = group {
            let found: Option<(String,)> =
                sqlx::query_as("SELECT id FROM access_groups WHERE id = $1")
                    .bind(g)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                return Err(Error::invalid(format!(
                    "approver group {g:?} does not exist"
                )));
            }
        }
        let done = sqlx::query(
            "UPDATE connector_tools SET approval_group = $1 WHERE connector_id = $2 AND name = $3",
        )
        .bind(group)
        .bind(connector_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("tool"));
        }
        tx.commit().await?;
        self.catalog_tool(connector_id, name).await
    }

    /// One catalog entry.
    pub async fn catalog_tool(&self, connector_id: &str, name: &str) -> Result<CatalogTool> {
        let sql = format!("{SELECT} WHERE t.connector_id = $1 AND t.name = $2");
        sqlx::query_as::<_, Row>(&sql)
            .bind(connector_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("tool"))?
            .into_model()
    }

    /// Catalog settings (defaults when never set).
    pub async fn catalog_settings(&self) -> Result<CatalogSettings> {
        Ok(self
            .setting(super::setting_keys::CATALOG)
            .await?
            .unwrap_or_default())
    }
}
