//! Audit events in the store: batched inserts (one transaction per batch) and newest-first reads.

use super::Store;
use crate::clock::{from_millis, to_millis};
use crate::model::{AuditDecision, AuditEvent, Outcome, Overview};
use crate::{Error, Result};
use chrono::{DateTime, Utc};

/// An event to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub principal: String,
    pub principal_id: Option<String>,
    pub connector: Option<String>,
    pub tool: Option<String>,
    pub decision: AuditDecision,
    pub rule: Option<String>,
    pub outcome: Outcome,
    pub latency_us: i64,
    pub error: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

/// A page of the audit log: newest first, older than `before_id` when given.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub limit: i64,
    pub before_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    kind: String,
    principal: String,
    principal_id: Option<String>,
    connector: Option<String>,
    tool: Option<String>,
    decision: String,
    rule: Option<String>,
    outcome: String,
    latency_us: i64,
    error: Option<String>,
    request_id: Option<String>,
    detail: Option<String>,
}

impl AuditRow {
    fn into_model(self) -> Result<AuditEvent> {
        Ok(AuditEvent {
            id: self.id,
            at: from_millis(self.at),
            kind: self.kind,
            principal: self.principal,
            principal_id: self.principal_id,
            connector: self.connector,
            tool: self.tool,
            decision: AuditDecision::parse(&self.decision)
                .ok_or_else(|| Error::Internal(format!("bad decision {:?}", self.decision)))?,
            rule: self.rule,
            outcome: Outcome::parse(&self.outcome)
                .ok_or_else(|| Error::Internal(format!("bad outcome {:?}", self.outcome)))?,
            latency_ms: self.latency_us as f64 / 1000.0,
            error: self.error,
            request_id: self.request_id,
            detail: self.detail,
        })
    }
}

impl Store {
    /// Writes a batch of events in one transaction: all are durable, or none (and the caller
    /// refuses the calls they describe).
    pub async fn insert_audit_batch(&self, events: &[NewAuditEvent]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO audit_events (at, kind, principal, principal_id, connector, tool, decision,
                    rule, outcome, latency_us, error, request_id, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(to_millis(e.at))
            .bind(&e.kind)
            .bind(&e.principal)
            .bind(&e.principal_id)
            .bind(&e.connector)
            .bind(&e.tool)
            .bind(e.decision.as_str())
            .bind(&e.rule)
            .bind(e.outcome.as_str())
            .bind(e.latency_us)
            .bind(&e.error)
            .bind(&e.request_id)
            .bind(&e.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Newest-first page of the audit log (keyset pagination on id). `limit` is clamped to 1..=1001
    /// (callers ask for one extra row to learn whether another page follows).
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let limit = q.limit.clamp(1, 1001);
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT id, at, kind, principal, principal_id, connector, tool, decision, rule, outcome,
                    latency_us, error, request_id, detail
             FROM audit_events WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(q.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditRow::into_model).collect()
    }

    /// Live counts for the Overview page.
    pub async fn overview(&self) -> Result<Overview> {
        let since = self.now_ms() - 24 * 3600 * 1000;
        let (users, groups, connectors, calls_24h, denied_24h): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM access_groups),
                        (SELECT COUNT(*) FROM connectors),
                        (SELECT COUNT(*) FROM audit_events WHERE at >= $1 AND kind = 'tool_call'),
                        (SELECT COUNT(*) FROM audit_events
                         WHERE at >= $1 AND kind = 'tool_call' AND decision = 'deny')",
            )
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(Overview {
            users,
            groups,
            connectors,
            calls_24h,
            denied_24h,
        })
    }
}
