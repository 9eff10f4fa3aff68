//! Audit events in the store: chained, batched inserts (one transaction per batch), search with
//! keyset pages, chain verification, signed checkpoints and retention.

use super::{Backend, Store};
use crate::clock::{from_millis, to_millis};
use crate::model::{AuditDecision, AuditEvent, AuditFilter, Outcome, Overview};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// The hash scheme new events are written with.
const CHAIN_VERSION: i64 = 2;
/// Columns written per event, and events per INSERT statement (30 x 32 = 960 bind values, well
/// under SQLite's and PostgreSQL's limits).
const INSERT_COLUMNS: usize = 30;
const ROWS_PER_INSERT: usize = 32;
/// Arguments kept in an event are cut at this many bytes (the hash covers them whole).
pub const MAX_ARGS_BYTES: usize = 8 * 1024;

/// An event to record. Fields that do not apply stay at their defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewAuditEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub principal: String,
    pub principal_id: Option<String>,
    pub subject_kind: Option<String>,
    pub client_name: Option<String>,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub connector: Option<String>,
    pub tool: Option<String>,
    pub decision: AuditDecision,
    pub rule: Option<String>,
    pub outcome: Outcome,
    pub latency_us: i64,
    pub error: Option<String>,
    pub request_id: Option<String>,
    pub call_id: Option<String>,
    pub args_redacted: Option<String>,
    pub args_hash: Option<String>,
    pub elevation_id: Option<String>,
    pub approval_id: Option<String>,
    pub bytes_in: Option<i64>,
    pub bytes_out: Option<i64>,
    pub dlp_findings: BTreeMap<String, u64>,
    pub detail: Option<String>,
}

impl NewAuditEvent {
    /// An event of `kind` by `principal` at `at`; set the rest with struct update syntax.
    pub fn new(at: DateTime<Utc>, kind: &str, principal: &str) -> Self {
        NewAuditEvent {
            at,
            kind: kind.into(),
            principal: principal.chars().take(256).collect(),
            ..Default::default()
        }
    }

    /// A change made by an administrator (or SCIM client): `detail` records before and after.
    pub fn change(
        at: DateTime<Utc>,
        kind: &str,
        principal: &str,
        subject_kind: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Self {
        let detail = serde_json::json!({ "before": before, "after": after });
        NewAuditEvent {
            subject_kind: Some(subject_kind.into()),
            detail: Some(detail.to_string()),
            ..NewAuditEvent::new(at, kind, principal)
        }
    }
}

/// Cuts a string at a character boundary at or below `max` bytes.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A page of the audit log: newest first, older than `before_id` when given.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub limit: i64,
    pub before_id: Option<i64>,
}

/// Where a search page ends: the next page starts after this (time, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    pub at_ms: i64,
    pub id: i64,
}

impl AuditCursor {
    /// `"{at_ms}.{id}"`, opaque to callers.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at_ms, self.id)
    }

    pub fn decode(s: &str) -> Result<Self> {
        let bad = || Error::invalid("cursor is not one this server handed out");
        let (a, i) = s.split_once('.').ok_or_else(bad)?;
        Ok(AuditCursor {
            at_ms: a.parse().map_err(|_| bad())?,
            id: i.parse().map_err(|_| bad())?,
        })
    }
}

const COLUMNS: &str = "id, at, kind, principal, principal_id, subject_kind, client_name, client_id,
    session_id, ip, user_agent, connector, tool, decision, rule, outcome, latency_us, error,
    request_id, call_id, args_redacted, args_hash, elevation_id, approval_id, bytes_in, bytes_out,
    dlp_findings, detail";

#[derive(sqlx::FromRow, Clone, Debug)]
struct AuditRow {
    id: i64,
    at: i64,
    kind: String,
    principal: String,
    principal_id: Option<String>,
    subject_kind: Option<String>,
    client_name: Option<String>,
    client_id: Option<String>,
    session_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    connector: Option<String>,
    tool: Option<String>,
    decision: String,
    rule: Option<String>,
    outcome: String,
    latency_us: i64,
    error: Option<String>,
    request_id: Option<String>,
    call_id: Option<String>,
    args_redacted: Option<String>,
    args_hash: Option<String>,
    elevation_id: Option<String>,
    approval_id: Option<String>,
    bytes_in: Option<i64>,
    bytes_out: Option<i64>,
    dlp_findings: Option<String>,
    detail: Option<String>,
}

impl AuditRow {
    fn into_model(self) -> Result<AuditEvent> {
        let dlp_findings = match self.dlp_findings.as_deref() {
            None | Some("") => BTreeMap::new(),
            Some(s) => serde_json::from_str(s).map_err(|e| {
                Error::Internal(format!("bad dlp_findings on event {}: {e}", self.id))
            })?,
        };
        Ok(AuditEvent {
            id: self.id,
            at: from_millis(self.at),
            decision: AuditDecision::parse(&self.decision)
                .ok_or_else(|| Error::Internal(format!("bad decision {:?}", self.decision)))?,
            outcome: Outcome::parse(&self.outcome)
                .ok_or_else(|| Error::Internal(format!("bad outcome {:?}", self.outcome)))?,
            latency_ms: self.latency_us as f64 / 1000.0,
            kind: self.kind,
            principal: self.principal,
            principal_id: self.principal_id,
            subject_kind: self.subject_kind,
            client_name: self.client_name,
            client_id: self.client_id,
            session_id: self.session_id,
            ip: self.ip,
            user_agent: self.user_agent,
            connector: self.connector,
            tool: self.tool,
            rule: self.rule,
            error: self.error,
            request_id: self.request_id,
            call_id: self.call_id,
            args_redacted: self.args_redacted,
            args_hash: self.args_hash,
            elevation_id: self.elevation_id,
            approval_id: self.approval_id,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            dlp_findings,
            detail: self.detail,
        })
    }
}

/// A bind value for a query assembled at run time.
enum Arg {
    I(i64),
    S(String),
}

/// A statement assembled from optional parts, with `$n` placeholders numbered as they are added.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn fetch_rows<'a>(
        &'a self,
    ) -> sqlx::query::QueryAs<'a, sqlx::Any, AuditRow, sqlx::any::AnyArguments<'a>> {
        let mut q = sqlx::query_as::<_, AuditRow>(&self.text);
        for a in &self.args {
            q = match a {
                Arg::I(v) => q.bind(*v),
                Arg::S(v) => q.bind(v.as_str()),
            };
        }
        q
    }
}

/// Free text as an FTS5 query: every word must occur (each quoted, so no operator syntax).
fn fts5_query(text: &str) -> String {
    text.split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a checkpoint's MAC signs.
pub(super) fn checkpoint_message(event_id: i64, hash: &str) -> Vec<u8> {
    format!("audit-checkpoint-v1\n{event_id}\n{hash}").into_bytes()
}

/// Events read per query when verifying the chain. Small, because the verification runs every
/// `audit_checkpoint_secs` and the allocator keeps each batch's peak: 5,000 full rows per batch
/// held ~50 MiB of RSS for good in the 10-minute soak.
const VERIFY_BATCH: i64 = 500;

impl Store {
    /// Writes a batch of events in one transaction: all are durable, or none (and the caller
    /// refuses the calls they describe). Each event is chained to the one before it.
    pub async fn insert_audit_batch(&self, events: &[NewAuditEvent]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
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
        // Hash every event in order first, then write them with multi-row INSERTs: on SQLite each
        // statement is a hop to the connection's thread, so rows per statement is what counts.
        let dlp: Vec<Option<String>> = events
            .iter()
            .map(|e| {
                (!e.dlp_findings.is_empty())
                    .then(|| serde_json::to_string(&e.dlp_findings).unwrap_or_default())
            })
            .collect();
        let mut rows: Vec<(Canonical<'_>, String, String)> = Vec::with_capacity(events.len());
        for (e, dlp) in events.iter().zip(&dlp) {
            let canon = Canonical::of(e, dlp.as_deref());
            let hash = canon.hash(CHAIN_VERSION, &prev);
            rows.push((canon, std::mem::replace(&mut prev, hash.clone()), hash));
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut sql = String::with_capacity(256 + chunk.len() * 200);
            sql.push_str(
                "INSERT INTO audit_events (at, kind, principal, principal_id, subject_kind,
                    client_name, client_id, session_id, ip, user_agent, connector, tool, decision,
                    rule, outcome, latency_us, error, request_id, call_id, args_redacted, args_hash,
                    elevation_id, approval_id, bytes_in, bytes_out, dlp_findings, detail,
                    prev_hash, hash, chain_v) VALUES ",
            );
            for r in 0..chunk.len() {
                if r > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for c in 0..INSERT_COLUMNS {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    // SQLite looks `$n` names up one by one (quadratic in a long statement);
                    // plain positional `?` costs nothing. PostgreSQL needs `$n`.
                    match self.backend {
                        Backend::Sqlite => sql.push('?'),
                        Backend::Postgres => {
                            sql.push_str(&format!("${}", r * INSERT_COLUMNS + c + 1))
                        }
                    }
                }
                sql.push(')');
            }
            let mut q = sqlx::query(&sql);
            for (c, prev, hash) in chunk {
                q = q
                    .bind(c.at)
                    .bind(c.kind)
                    .bind(c.principal)
                    .bind(c.principal_id)
                    .bind(c.subject_kind)
                    .bind(c.client_name)
                    .bind(c.client_id)
                    .bind(c.session_id)
                    .bind(c.ip)
                    .bind(c.user_agent)
                    .bind(c.connector)
                    .bind(c.tool)
                    .bind(c.decision)
                    .bind(c.rule)
                    .bind(c.outcome)
                    .bind(c.latency_us)
                    .bind(c.error)
                    .bind(c.request_id)
                    .bind(c.call_id)
                    .bind(c.args_redacted)
                    .bind(c.args_hash)
                    .bind(c.elevation_id)
                    .bind(c.approval_id)
                    .bind(c.bytes_in)
                    .bind(c.bytes_out)
                    .bind(c.dlp_findings)
                    .bind(c.detail)
                    .bind(prev.as_str())
                    .bind(hash.as_str())
                    .bind(CHAIN_VERSION);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Walks the chain in id order and reports the first event whose link, contents or
    /// checkpoint do not check out. Without `from` the walk starts at the oldest retained event:
    /// either the genesis of the chain or an event whose predecessor a valid signed checkpoint
    /// vouches for (older events were purged by retention). With `from` it trusts that event's
    /// recorded predecessor.
    pub async fn verify_audit_chain(
        &self,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<ChainReport> {
        self.verify_audit_chain_with(from, to, |_| {}).await
    }

    /// `verify_audit_chain`, calling `progress` with the number of events checked after every
    /// batch (for long checks on the console).
    pub async fn verify_audit_chain_with(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        progress: impl Fn(u64),
    ) -> Result<ChainReport> {
        let mut report = ChainReport::default();
        let last = to.unwrap_or(i64::MAX);
        let checkpoints = self
            .checkpoints_between(from.unwrap_or(i64::MIN), last)
            .await?;
        let mut by_event: HashMap<i64, &Checkpoint> = HashMap::new();
        for c in &checkpoints {
            if !self.checkpoint_mac_ok(c) {
                report.first_break = Some(ChainBreak::at(
                    c.event_id,
                    &format!("checkpoint {} carries a MAC that does not verify", c.id),
                ));
                return Ok(report);
            }
            by_event.insert(c.event_id, c);
        }
        let mut expected: Option<String> = None;
        let mut first = true;
        let mut next_id = from.unwrap_or(i64::MIN);
        let mut chain_started = false;
        loop {
            let rows = sqlx::query_as::<_, ChainRow>(&format!(
                "SELECT {COLUMNS}, prev_hash, hash, chain_v FROM audit_events
                 WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT {VERIFY_BATCH}"
            ))
            .bind(next_id)
            .bind(last)
            .fetch_all(&self.pool)
            .await?;
            let Some(tail) = rows.last() else { break };
            next_id = tail.row.id.saturating_add(1);
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
                if first {
                    first = false;
                    if from.is_none() && !prev.is_empty() {
                        // Older events are gone: a signed checkpoint must vouch for the link.
                        match self.checkpoint_for_hash(prev, r.row.id).await? {
                            Some(c) => report.anchored_at = Some(c.event_id),
                            None => {
                                report.first_break = Some(ChainBreak::at(
                                    r.row.id,
                                    "the oldest event links to one that is missing, and no signed checkpoint vouches for it (events were deleted)",
                                ));
                                return Ok(report);
                            }
                        }
                    }
                    expected = Some(prev.clone());
                }
                if expected.as_deref() != Some(prev.as_str()) {
                    report.first_break = Some(ChainBreak::at(
                        r.row.id,
                        "its link does not match the event before it (an event was deleted, inserted or reordered)",
                    ));
                    return Ok(report);
                }
                let version = r.chain_v.unwrap_or(1);
                if r.canonical().hash(version, prev) != *hash {
                    report.first_break = Some(ChainBreak::at(
                        r.row.id,
                        "its contents were changed after it was written",
                    ));
                    return Ok(report);
                }
                if let Some(c) = by_event.get(&r.row.id)
                    && c.hash != *hash
                {
                    report.first_break = Some(ChainBreak::at(
                        r.row.id,
                        &format!("it does not match signed checkpoint {}", c.id),
                    ));
                    return Ok(report);
                }
                report.checked += 1;
                report.last_id = Some(r.row.id);
                report.last_hash = Some(hash.clone());
                expected = Some(hash.clone());
            }
            progress(report.checked);
            if next_id > last {
                break;
            }
        }
        // A checkpoint past the last event means events at the end of the log were deleted.
        if let Some(c) = checkpoints
            .iter()
            .find(|c| report.last_id.is_none_or(|l| c.event_id > l))
            && to.is_none_or(|t| c.event_id <= t)
        {
            report.first_break = Some(ChainBreak::at(
                c.event_id,
                &format!(
                    "signed checkpoint {} names an event that is missing (events at the end were deleted)",
                    c.id
                ),
            ));
        }
        Ok(report)
    }

    async fn checkpoints_between(&self, from: i64, to: i64) -> Result<Vec<Checkpoint>> {
        Ok(sqlx::query_as::<_, Checkpoint>(
            "SELECT id, at, event_id, hash, mac FROM audit_checkpoints
             WHERE event_id >= $1 AND event_id <= $2 ORDER BY event_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn checkpoint_for_hash(&self, hash: &str, before_id: i64) -> Result<Option<Checkpoint>> {
        let found = sqlx::query_as::<_, Checkpoint>(
            "SELECT id, at, event_id, hash, mac FROM audit_checkpoints
             WHERE hash = $1 AND event_id < $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(hash)
        .bind(before_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.filter(|c| self.checkpoint_mac_ok(c)))
    }

    fn checkpoint_mac(&self, event_id: i64, hash: &str) -> String {
        self.cipher.mac_hex(&checkpoint_message(event_id, hash))
    }

    fn checkpoint_mac_ok(&self, c: &Checkpoint) -> bool {
        let want = self.checkpoint_mac(c.event_id, &c.hash);
        // Both are hex of equal length; compare without an early exit.
        want.len() == c.mac.len()
            && want
                .bytes()
                .zip(c.mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Verifies the events added since the last checkpoint and, when they check out, signs a
    /// new checkpoint at the head of the chain. Returns the integrity status to show.
    pub async fn audit_checkpoint(&self) -> Result<crate::model::AuditIntegrity> {
        let last: Option<Checkpoint> = sqlx::query_as(
            "SELECT id, at, event_id, hash, mac FROM audit_checkpoints ORDER BY event_id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let from = match &last {
            Some(c) if self.checkpoint_mac_ok(c) => Some(c.event_id),
            _ => None,
        };
        let report = self.verify_audit_chain(from, None).await?;
        let now = self.clock.now();
        let mut status = crate::model::AuditIntegrity {
            checked_at: Some(now),
            ok: report.first_break.is_none() && (last.is_none() || from.is_some()),
            verified_to: report.last_id,
            checkpoint: last.as_ref().map(|c| c.event_id),
            break_id: report.first_break.as_ref().map(|b| b.id),
            reason: report.first_break.as_ref().map(|b| b.reason.clone()),
        };
        if last.is_some() && from.is_none() {
            status.reason = Some("the newest checkpoint's MAC does not verify".into());
        }
        if status.ok
            && let (Some(id), Some(hash)) = (report.last_id, report.last_hash)
            && last.as_ref().is_none_or(|c| c.event_id < id)
        {
            let mac = self.checkpoint_mac(id, &hash);
            sqlx::query(
                "INSERT INTO audit_checkpoints (at, event_id, hash, mac) VALUES ($1, $2, $3, $4)",
            )
            .bind(to_millis(now))
            .bind(id)
            .bind(&hash)
            .bind(&mac)
            .execute(&self.pool)
            .await?;
            status.checkpoint = Some(id);
        }
        self.put_setting(super::setting_keys::AUDIT_INTEGRITY, &status)
            .await?;
        Ok(status)
    }

    /// The result of the last integrity check (not yet checked: `ok` false, no time).
    pub async fn audit_integrity(&self) -> Result<crate::model::AuditIntegrity> {
        Ok(self
            .setting(super::setting_keys::AUDIT_INTEGRITY)
            .await?
            .unwrap_or_default())
    }

    /// Retention: deletes events older than `cutoff` up to the newest signed checkpoint that is
    /// older than the cutoff and at or below `keep_after` (the lowest SIEM cursor, so nothing
    /// undelivered is purged). The chain stays verifiable from that checkpoint. Returns the
    /// number of events deleted.
    pub async fn purge_audit(&self, cutoff: DateTime<Utc>, keep_after: i64) -> Result<u64> {
        let anchor: Option<Checkpoint> = sqlx::query_as(
            "SELECT c.id, c.at, c.event_id, c.hash, c.mac FROM audit_checkpoints c
             JOIN audit_events e ON e.id = c.event_id
             WHERE e.at < $1 AND c.event_id <= $2 ORDER BY c.event_id DESC LIMIT 1",
        )
        .bind(to_millis(cutoff))
        .bind(keep_after)
        .fetch_optional(&self.pool)
        .await?;
        let Some(anchor) = anchor.filter(|c| self.checkpoint_mac_ok(c)) else {
            return Ok(0);
        };
        let mut deleted = 0u64;
        loop {
            // Small transactions: a purge of millions of rows must not hold the writer for long.
            let mut tx = self.write_tx().await?;
            let n = sqlx::query(
                "DELETE FROM audit_events WHERE id IN
                    (SELECT id FROM audit_events WHERE id <= $1 ORDER BY id LIMIT 5000)",
            )
            .bind(anchor.event_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            deleted += n;
            if n == 0 {
                break;
            }
        }
        // Checkpoints older than the anchor vouch for nothing that is left.
        sqlx::query("DELETE FROM audit_checkpoints WHERE event_id < $1")
            .bind(anchor.event_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted)
    }

    /// Newest-first page of the audit log (keyset pagination on id). `limit` is clamped to
    /// 1..=1001 (callers ask for one extra row to learn whether another page follows).
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let limit = q.limit.clamp(1, 1001);
        let mut sql = Sql {
            text: format!("SELECT {COLUMNS} FROM audit_events"),
            ..Default::default()
        };
        if let Some(b) = q.before_id {
            let p = sql.arg(Arg::I(b));
            sql.text.push_str(&format!(" WHERE id < {p}"));
        }
        let p = sql.arg(Arg::I(limit));
        sql.text.push_str(&format!(" ORDER BY id DESC LIMIT {p}"));
        sql.fetch_rows()
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(AuditRow::into_model)
            .collect()
    }

    /// One page of a search, newest first, after `cursor`. Each forwarded `tool_call` carries
    /// the outcome, latency, size and DLP findings of its `tool_result`. `limit` is clamped to
    /// 1..=1000. Returns the page and the cursor of the next one (None on the last page).
    pub async fn search_audit(
        &self,
        filter: &AuditFilter,
        cursor: Option<AuditCursor>,
        limit: i64,
    ) -> Result<(Vec<AuditEvent>, Option<AuditCursor>)> {
        let limit = limit.clamp(1, 1000);
        let mut sql = Sql::default();
        let mut cond: Vec<String> = Vec::new();
        match filter.kind.as_deref() {
            Some(kind) => {
                let p = sql.arg(Arg::S(kind.into()));
                cond.push(format!("kind = {p}"));
            }
            None => cond.push("kind <> 'tool_result'".into()),
        }
        if let Some(from) = filter.from {
            let p = sql.arg(Arg::I(to_millis(from)));
            cond.push(format!("at >= {p}"));
        }
        if let Some(to) = filter.to {
            let p = sql.arg(Arg::I(to_millis(to)));
            cond.push(format!("at < {p}"));
        }
        if let Some(s) = &filter.subject {
            let p = sql.arg(Arg::S(s.clone()));
            cond.push(format!("principal = {p}"));
        }
        if let Some(g) = &filter.group {
            let p = sql.arg(Arg::S(g.clone()));
            cond.push(format!(
                "principal_id IN (SELECT gm.user_id FROM group_members gm
                    JOIN access_groups g ON g.id = gm.group_id WHERE g.display_name = {p})"
            ));
        }
        if let Some(c) = &filter.connector {
            let p = sql.arg(Arg::S(c.clone()));
            cond.push(format!("connector = {p}"));
        }
        if let Some(t) = &filter.tool {
            let p = sql.arg(Arg::S(t.clone()));
            cond.push(format!("tool = {p}"));
        }
        if let Some(d) = filter.decision {
            let p = sql.arg(Arg::S(d.as_str().into()));
            cond.push(format!("decision = {p}"));
        }
        if filter.elevated_only {
            cond.push("elevation_id IS NOT NULL".into());
        }
        if let Some(text) = filter.text.as_deref().filter(|t| !t.trim().is_empty()) {
            // Whatever was appended since the last background pass is indexed first, so a text
            // search sees every event.
            self.index_audit_text().await?;
            match self.backend {
                // A call matches by its own words or by those of its result (errors).
                Backend::Sqlite => {
                    let p = sql.arg(Arg::S(fts5_query(text)));
                    let hits =
                        format!("SELECT rowid FROM audit_search WHERE audit_search MATCH {p}");
                    cond.push(format!(
                        "(id IN ({hits}) OR call_id IN (SELECT call_id FROM audit_events
                            WHERE kind = 'tool_result' AND id IN ({hits})))"
                    ));
                }
                Backend::Postgres => {
                    let p = sql.arg(Arg::S(text.into()));
                    cond.push(format!(
                        "(search @@ plainto_tsquery('simple', {p}) OR call_id IN (SELECT call_id
                            FROM audit_events WHERE kind = 'tool_result'
                            AND search @@ plainto_tsquery('simple', {p})))"
                    ));
                }
            }
        }
        if let Some(c) = cursor {
            let a = sql.arg(Arg::I(c.at_ms));
            let i = sql.arg(Arg::I(c.id));
            cond.push(format!("(at < {a} OR (at = {a} AND id < {i}))"));
        }
        let l = sql.arg(Arg::I(limit + 1));
        sql.text = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE {} ORDER BY at DESC, id DESC LIMIT {l}",
            cond.join(" AND ")
        );
        let mut rows = sql.fetch_rows().fetch_all(&self.pool).await?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| AuditCursor {
                at_ms: r.at,
                id: r.id,
            })
        } else {
            None
        };
        let mut events: Vec<AuditEvent> = rows
            .into_iter()
            .map(AuditRow::into_model)
            .collect::<Result<_>>()?;
        self.fold_results(&mut events).await?;
        Ok((events, next))
    }

    /// Puts each forwarded call's result (from its `tool_result` event) onto the call.
    async fn fold_results(&self, events: &mut [AuditEvent]) -> Result<()> {
        let calls: Vec<String> = events
            .iter()
            .filter(|e| e.kind == "tool_call" && e.outcome == Outcome::Forwarded)
            .filter_map(|e| e.call_id.clone())
            .collect();
        if calls.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::default();
        let params: Vec<String> = calls.into_iter().map(|c| sql.arg(Arg::S(c))).collect();
        sql.text = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE kind = 'tool_result' AND call_id IN ({})",
            params.join(", ")
        );
        let mut results: HashMap<String, AuditEvent> = HashMap::new();
        for row in sql.fetch_rows().fetch_all(&self.pool).await? {
            let e = row.into_model()?;
            if let Some(c) = e.call_id.clone() {
                results.insert(c, e);
            }
        }
        for e in events.iter_mut() {
            let Some(r) = e.call_id.as_ref().and_then(|c| results.remove(c)) else {
                continue;
            };
            e.outcome = r.outcome;
            e.latency_ms = r.latency_ms;
            e.error = r.error;
            e.bytes_out = r.bytes_out;
            e.dlp_findings = r.dlp_findings;
        }
        Ok(())
    }

    /// SQLite: adds the events not yet in the full-text index to it, in bulk (a no-op when it is
    /// caught up, and on PostgreSQL, where a generated column keeps the index). Returns how many
    /// events were indexed.
    pub async fn index_audit_text(&self) -> Result<u64> {
        if self.backend != Backend::Sqlite {
            return Ok(0);
        }
        let mut total = 0u64;
        loop {
            let mut tx = self.write_tx().await?;
            let (done,): (Option<i64>,) = sqlx::query_as(
                "SELECT (SELECT rowid FROM audit_search ORDER BY rowid DESC LIMIT 1)",
            )
            .fetch_one(&mut *tx)
            .await?;
            let n = sqlx::query(
                "INSERT INTO audit_search (rowid, body)
                 SELECT id, coalesce(principal, '') || ' ' || coalesce(connector, '') || ' ' ||
                    coalesce(tool, '') || ' ' || coalesce(args_redacted, '') || ' ' ||
                    coalesce(error, '') || ' ' || coalesce(detail, '') || ' ' ||
                    coalesce(client_name, '')
                 FROM audit_events WHERE id > $1 ORDER BY id LIMIT 5000",
            )
            .bind(done.unwrap_or(0))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    /// Events with ids above `after`, oldest first (for SIEM delivery and exports).
    pub async fn audit_events_after(&self, after: i64, limit: i64) -> Result<Vec<AuditEvent>> {
        sqlx::query_as::<_, AuditRow>(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(AuditRow::into_model)
        .collect()
    }

    /// One event by id.
    pub async fn audit_event(&self, id: i64) -> Result<AuditEvent> {
        let row = sqlx::query_as::<_, AuditRow>(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::NotFound("audit event"))?;
        row.into_model()
    }

    /// The lowest delivery cursor of the enabled SIEM sinks (`i64::MAX` without sinks): events
    /// above it have not reached every sink yet and must not be purged.
    pub async fn siem_low_water(&self) -> Result<i64> {
        let (low,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(cursor) FROM siem_sinks WHERE enabled = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(low.unwrap_or(i64::MAX))
    }

    /// The newest event id (0 when the log is empty).
    pub async fn audit_head(&self) -> Result<i64> {
        let (id,): (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// Charts for the Overview page.
    pub async fn audit_stats(&self) -> Result<crate::model::AuditStats> {
        let now = self.now_ms();
        let hour_ago = (now / 60_000 - 59) * 60_000;
        let day_ago = now - 24 * 3600 * 1000;
        let minutes: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT at / 60000, COUNT(*), SUM(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END)
             FROM audit_events WHERE kind = 'tool_call' AND at >= $1 GROUP BY at / 60000",
        )
        .bind(hour_ago)
        .fetch_all(&self.pool)
        .await?;
        let by_minute: HashMap<i64, (i64, i64)> =
            minutes.into_iter().map(|(m, c, d)| (m, (c, d))).collect();
        let per_minute = (0..60)
            .map(|i| {
                let m = hour_ago / 60_000 + i;
                let (c, d) = by_minute.get(&m).copied().unwrap_or((0, 0));
                (from_millis(m * 60_000), c, d)
            })
            .collect();
        let tools: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT connector, tool, COUNT(*) AS n FROM audit_events
             WHERE kind = 'tool_call' AND at >= $1 AND connector IS NOT NULL AND tool IS NOT NULL
             GROUP BY connector, tool ORDER BY n DESC LIMIT 5",
        )
        .bind(day_ago)
        .fetch_all(&self.pool)
        .await?;
        let top_users: Vec<(String, i64)> = sqlx::query_as(
            "SELECT principal, COUNT(*) AS n FROM audit_events
             WHERE kind = 'tool_call' AND at >= $1 GROUP BY principal ORDER BY n DESC LIMIT 5",
        )
        .bind(day_ago)
        .fetch_all(&self.pool)
        .await?;
        let connector_health: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT connector, COUNT(*), SUM(CASE WHEN outcome = 'upstream_error' THEN 1 ELSE 0 END)
             FROM audit_events WHERE kind = 'tool_result' AND at >= $1 AND connector IS NOT NULL
             GROUP BY connector ORDER BY connector",
        )
        .bind(hour_ago)
        .fetch_all(&self.pool)
        .await?;
        Ok(crate::model::AuditStats {
            per_minute,
            top_tools: tools
                .into_iter()
                .map(|(c, t, n)| (format!("{c}__{t}"), n))
                .collect(),
            top_users,
            connector_health,
        })
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
    /// The id and hash of the last checked event (compare with a later run).
    pub last_id: Option<i64>,
    pub last_hash: Option<String>,
    /// When older events were purged: the checkpoint event the check started from.
    pub anchored_at: Option<i64>,
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

#[derive(sqlx::FromRow, Clone, Debug)]
struct Checkpoint {
    id: i64,
    #[allow(dead_code)]
    at: i64,
    event_id: i64,
    hash: String,
    mac: String,
}

/// The stored form of an event, field by field, as its hash covers it.
struct Canonical<'a> {
    at: i64,
    kind: &'a str,
    principal: &'a str,
    principal_id: Option<&'a str>,
    subject_kind: Option<&'a str>,
    client_name: Option<&'a str>,
    client_id: Option<&'a str>,
    session_id: Option<&'a str>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    connector: Option<&'a str>,
    tool: Option<&'a str>,
    decision: &'a str,
    rule: Option<&'a str>,
    outcome: &'a str,
    latency_us: i64,
    error: Option<&'a str>,
    request_id: Option<&'a str>,
    call_id: Option<&'a str>,
    args_redacted: Option<&'a str>,
    args_hash: Option<&'a str>,
    elevation_id: Option<&'a str>,
    approval_id: Option<&'a str>,
    bytes_in: Option<i64>,
    bytes_out: Option<i64>,
    dlp_findings: Option<&'a str>,
    detail: Option<&'a str>,
}

impl<'a> Canonical<'a> {
    fn of(e: &'a NewAuditEvent, dlp_findings: Option<&'a str>) -> Self {
        Canonical {
            at: to_millis(e.at),
            kind: &e.kind,
            principal: &e.principal,
            principal_id: e.principal_id.as_deref(),
            subject_kind: e.subject_kind.as_deref(),
            client_name: e.client_name.as_deref(),
            client_id: e.client_id.as_deref(),
            session_id: e.session_id.as_deref(),
            ip: e.ip.as_deref(),
            user_agent: e.user_agent.as_deref(),
            connector: e.connector.as_deref(),
            tool: e.tool.as_deref(),
            decision: e.decision.as_str(),
            rule: e.rule.as_deref(),
            outcome: e.outcome.as_str(),
            latency_us: e.latency_us,
            error: e.error.as_deref(),
            request_id: e.request_id.as_deref(),
            call_id: e.call_id.as_deref(),
            args_redacted: e.args_redacted.as_deref(),
            args_hash: e.args_hash.as_deref(),
            elevation_id: e.elevation_id.as_deref(),
            approval_id: e.approval_id.as_deref(),
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            dlp_findings,
            detail: e.detail.as_deref(),
        }
    }

    /// SHA-256 (hex) over a version tag, the previous hash and the fields as a JSON array.
    /// Version 1 (events written before the full event model) covers the original fields.
    fn hash(&self, version: i64, prev: &str) -> String {
        let canonical = if version == 1 {
            serde_json::json!([
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
            ])
        } else {
            serde_json::json!([
                self.at,
                self.kind,
                self.principal,
                self.principal_id,
                self.subject_kind,
                self.client_name,
                self.client_id,
                self.session_id,
                self.ip,
                self.user_agent,
                self.connector,
                self.tool,
                self.decision,
                self.rule,
                self.outcome,
                self.latency_us,
                self.error,
                self.request_id,
                self.call_id,
                self.args_redacted,
                self.args_hash,
                self.elevation_id,
                self.approval_id,
                self.bytes_in,
                self.bytes_out,
                self.dlp_findings,
                self.detail
            ])
        };
        crate::crypto::sha256_hex(format!("audit-v{version}\n{prev}\n{canonical}").as_bytes())
    }
}

#[derive(sqlx::FromRow)]
struct ChainRow {
    #[sqlx(flatten)]
    row: AuditRow,
    prev_hash: Option<String>,
    hash: Option<String>,
    chain_v: Option<i64>,
}

impl ChainRow {
    fn canonical(&self) -> Canonical<'_> {
        let r = &self.row;
        Canonical {
            at: r.at,
            kind: &r.kind,
            principal: &r.principal,
            principal_id: r.principal_id.as_deref(),
            subject_kind: r.subject_kind.as_deref(),
            client_name: r.client_name.as_deref(),
            client_id: r.client_id.as_deref(),
            session_id: r.session_id.as_deref(),
            ip: r.ip.as_deref(),
            user_agent: r.user_agent.as_deref(),
            connector: r.connector.as_deref(),
            tool: r.tool.as_deref(),
            decision: &r.decision,
            rule: r.rule.as_deref(),
            outcome: &r.outcome,
            latency_us: r.latency_us,
            error: r.error.as_deref(),
            request_id: r.request_id.as_deref(),
            call_id: r.call_id.as_deref(),
            args_redacted: r.args_redacted.as_deref(),
            args_hash: r.args_hash.as_deref(),
            elevation_id: r.elevation_id.as_deref(),
            approval_id: r.approval_id.as_deref(),
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            dlp_findings: r.dlp_findings.as_deref(),
            detail: r.detail.as_deref(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_every_word() {
        assert_eq!(fts5_query("a  b\"c"), "\"a\" \"b\"\"c\"");
        assert_eq!(fts5_query("OR NOT"), "\"OR\" \"NOT\"");
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = AuditCursor { at_ms: 5, id: -3 };
        assert_eq!(AuditCursor::decode(&c.encode()).unwrap(), c);
        assert!(AuditCursor::decode("x.1").is_err());
        assert!(AuditCursor::decode("12").is_err());
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
