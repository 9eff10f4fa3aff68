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
    /// refuses the calls they describe). Each event is chained to the one before it.
    pub async fn insert_audit_batch(&self, events: &[NewAuditEvent]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if self.backend == super::Backend::Postgres {
            // Replicas append to one chain: one appender at a time, so ids follow the chain.
            sqlx::query("SELECT pg_advisory_xact_lock(74010)")
                .execute(&mut *tx)
                .await?;
        }
        let last: Option<(String,)> = sqlx::query_as(
            "SELECT hash FROM audit_events WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let mut prev = last.map(|(h,)| h).unwrap_or_default();
        for e in events {
            let fields = ChainFields {
                at: to_millis(e.at),
                kind: &e.kind,
                principal: &e.principal,
                principal_id: e.principal_id.as_deref(),
                connector: e.connector.as_deref(),
                tool: e.tool.as_deref(),
                decision: e.decision.as_str(),
                rule: e.rule.as_deref(),
                outcome: e.outcome.as_str(),
                latency_us: e.latency_us,
                error: e.error.as_deref(),
                request_id: e.request_id.as_deref(),
                detail: e.detail.as_deref(),
            };
            let hash = fields.hash(&prev);
            sqlx::query(
                "INSERT INTO audit_events (at, kind, principal, principal_id, connector, tool, decision,
                    rule, outcome, latency_us, error, request_id, detail, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(fields.at)
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
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            prev = hash;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Walks the chain in id order (from `from`, trusting that row's recorded predecessor, or
    /// from the start) and reports the first event whose link or contents do not check out.
    pub async fn verify_audit_chain(
        &self,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<ChainReport> {
        let mut report = ChainReport::default();
        let mut expected: Option<String> = if from.is_none() {
            Some(String::new())
        } else {
            None
        };
        let mut next_id = from.unwrap_or(i64::MIN);
        let last = to.unwrap_or(i64::MAX);
        let mut chain_started = false;
        loop {
            let rows = sqlx::query_as::<_, ChainRow>(
                "SELECT id, at, kind, principal, principal_id, connector, tool, decision, rule, outcome,
                        latency_us, error, request_id, detail, prev_hash, hash
                 FROM audit_events WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT 5000",
            )
            .bind(next_id)
            .bind(last)
            .fetch_all(&self.pool)
            .await?;
            let Some(tail) = rows.last() else { break };
            next_id = tail.row.id + 1;
            for r in &rows {
                let (Some(prev), Some(hash)) = (&r.prev_hash, &r.hash) else {
                    if chain_started {
                        report.first_break = Some(ChainBreak::at(
                            r.row.id,
                            "an event without a hash inside the chain",
                        ));
                        return Ok(report);
                    }
                    report.unchained += 1;
                    continue;
                };
                chain_started = true;
                if let Some(want) = &expected
                    && prev != want
                {
                    report.first_break = Some(ChainBreak::at(
                        r.row.id,
                        "its link does not match the event before it (an event was deleted, inserted or reordered)",
                    ));
                    return Ok(report);
                }
                if r.fields().hash(prev) != *hash {
                    report.first_break = Some(ChainBreak::at(
                        r.row.id,
                        "its contents were changed after it was written",
                    ));
                    return Ok(report);
                }
                report.checked += 1;
                report.last_hash = Some(hash.clone());
                expected = Some(hash.clone());
            }
            if next_id > last {
                break;
            }
        }
        Ok(report)
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

/// The outcome of a chain check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Events whose link and contents checked out.
    pub checked: u64,
    /// Events written before the chain existed (no hash), before the first chained one.
    pub unchained: u64,
    /// The hash of the last checked event (a checkpoint to compare with a later run).
    pub last_hash: Option<String>,
    pub first_break: Option<ChainBreak>,
}

/// Where and why the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub id: i64,
    pub reason: String,
}

impl ChainBreak {
    fn at(id: i64, reason: &str) -> Self {
        ChainBreak {
            id,
            reason: reason.into(),
        }
    }
}

/// The fields an event's hash covers, in a fixed order.
struct ChainFields<'a> {
    at: i64,
    kind: &'a str,
    principal: &'a str,
    principal_id: Option<&'a str>,
    connector: Option<&'a str>,
    tool: Option<&'a str>,
    decision: &'a str,
    rule: Option<&'a str>,
    outcome: &'a str,
    latency_us: i64,
    error: Option<&'a str>,
    request_id: Option<&'a str>,
    detail: Option<&'a str>,
}

impl ChainFields<'_> {
    /// SHA-256 (hex) over a version tag, the previous hash and the fields as a JSON array.
    fn hash(&self, prev: &str) -> String {
        let canonical = serde_json::json!([
            self.at,
            self.kind,
            self.principal,
            self.principal_id,
            self.connector,
            self.tool,
            self.decision,
            self.rule,
            self.outcome,
            self.latency_us,
            self.error,
            self.request_id,
            self.detail
        ]);
        crate::crypto::sha256_hex(format!("audit-v1\n{prev}\n{canonical}").as_bytes())
    }
}

#[derive(sqlx::FromRow)]
struct ChainRow {
    #[sqlx(flatten)]
    row: AuditRow,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl ChainRow {
    fn fields(&self) -> ChainFields<'_> {
        ChainFields {
            at: self.row.at,
            kind: &self.row.kind,
            principal: &self.row.principal,
            principal_id: self.row.principal_id.as_deref(),
            connector: self.row.connector.as_deref(),
            tool: self.row.tool.as_deref(),
            decision: &self.row.decision,
            rule: self.row.rule.as_deref(),
            outcome: &self.row.outcome,
            latency_us: self.row.latency_us,
            error: self.row.error.as_deref(),
            request_id: self.row.request_id.as_deref(),
            detail: self.row.detail.as_deref(),
        }
    }
}

impl Store {
    /// Test support: runs a statement directly (to tamper with rows in chain tests).
    #[cfg(feature = "test-util")]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        Ok(sqlx::query(sql).execute(&self.pool).await?.rows_affected())
    }
}
