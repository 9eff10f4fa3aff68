//! SIEM sinks in the store: configuration, sealed secrets, delivery cursors and leases.
//!
//! The audit log is the outbox: a sink's `cursor` is the id of the last audit event it has
//! received, and delivery reads the events after it. A lease (`lease_owner`, `lease_until`) lets
//! one replica at a time deliver to a sink; the cursor only moves by compare-and-set from the
//! value the delivery started at, so it never skips or goes back.

use super::{ResultExt, Store, new_id};
use crate::clock::from_millis;
use crate::siem::{
    NewSink, SiemSink, SinkConfig, SinkKind, SinkSecret, SinkUpdate, validate_secret,
    validate_sink_name,
};
use crate::{Error, Result};

/// Longest error text kept on a sink.
const MAX_ERROR: usize = 1024;

#[derive(sqlx::FromRow)]
struct SinkRow {
    id: String,
    name: String,
    kind: String,
    config: String,
    secret: Option<String>,
    enabled: i64,
    cursor: i64,
    delivered: i64,
    failures: i64,
    last_error: Option<String>,
    last_attempt_at: Option<i64>,
    last_success_at: Option<i64>,
    created_at: i64,
}

const SINK_COLUMNS: &str = "id, name, kind, config, secret, enabled, cursor, delivered, failures,
    last_error, last_attempt_at, last_success_at, created_at";

impl SinkRow {
    fn into_view(self, head: i64) -> Result<(SiemSink, Option<String>)> {
        let kind = SinkKind::parse(&self.kind)
            .ok_or_else(|| Error::Internal(format!("unknown SIEM sink kind {:?}", self.kind)))?;
        let config: SinkConfig = serde_json::from_str(&self.config).map_err(|e| {
            Error::Internal(format!("bad configuration of SIEM sink {}: {e}", self.id))
        })?;
        let sink = SiemSink {
            id: self.id,
            name: self.name,
            kind,
            config,
            secret_set: self.secret.is_some(),
            enabled: self.enabled != 0,
            cursor: self.cursor,
            lag: head.saturating_sub(self.cursor).max(0),
            delivered: self.delivered,
            failures: self.failures,
            last_error: self.last_error,
            last_attempt_at: self.last_attempt_at.map(from_millis),
            last_success_at: self.last_success_at.map(from_millis),
            created_at: from_millis(self.created_at),
        };
        Ok((sink, self.secret))
    }
}

/// Cuts a string at a character boundary at or below `max` bytes.
fn clip(s: &str, max: usize) -> &str {
    super::truncate_utf8(s, max)
}

impl Store {
    /// Creates a sink after checking its name, configuration and secret; the secret is sealed
    /// under the master key. A new sink starts at the oldest retained event, or at the newest
    /// with `start_at_head`.
    pub async fn create_siem_sink(&self, input: NewSink) -> Result<SiemSink> {
        let name = input.name.trim().to_string();
        validate_sink_name(&name).map_err(Error::Invalid)?;
        let config = input
            .config
            .normalized(input.kind)
            .map_err(Error::Invalid)?;
        let secret = input.secret.filter(|s| !s.is_empty());
        validate_secret(input.kind, secret.as_deref()).map_err(Error::Invalid)?;
        let id = new_id();
        let sealed = secret
            .map(|s| self.cipher.seal(s.as_bytes(), id.as_bytes()))
            .transpose()?;
        let config_json = serde_json::to_string(&config)
            .map_err(|e| Error::Internal(format!("sink configuration: {e}")))?;
        let cursor = if input.start_at_head {
            self.audit_head().await?
        } else {
            0
        };
        sqlx::query(
            "INSERT INTO siem_sinks (id, name, kind, config, secret, enabled, cursor, delivered,
                failures, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8)",
        )
        .bind(&id)
        .bind(&name)
        .bind(input.kind.as_str())
        .bind(&config_json)
        .bind(sealed.as_deref())
        .bind(i64::from(input.enabled))
        .bind(cursor)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await
        .on_unique(|| format!("a SIEM sink named {name:?} already exists"))?;
        self.get_siem_sink(&id).await
    }

    /// Every sink, by name, with its delivery state.
    pub async fn list_siem_sinks(&self) -> Result<Vec<SiemSink>> {
        let head = self.audit_head().await?;
        let sql = format!("SELECT {SINK_COLUMNS} FROM siem_sinks ORDER BY name");
        sqlx::query_as::<_, SinkRow>(&sql)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.into_view(head).map(|(s, _)| s))
            .collect()
    }

    /// One sink.
    pub async fn get_siem_sink(&self, id: &str) -> Result<SiemSink> {
        let head = self.audit_head().await?;
        Ok(self.sink_row(id).await?.into_view(head)?.0)
    }

    async fn sink_row(&self, id: &str) -> Result<SinkRow> {
        let sql = format!("SELECT {SINK_COLUMNS} FROM siem_sinks WHERE id = $1");
        sqlx::query_as::<_, SinkRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("SIEM sink"))
    }

    /// A sink with its decrypted secret, for the transports only.
    pub async fn siem_sink_with_secret(&self, id: &str) -> Result<(SiemSink, Option<SinkSecret>)> {
        let head = self.audit_head().await?;
        let (sink, sealed) = self.sink_row(id).await?.into_view(head)?;
        let secret = self.open_sink_secret(&sink.id, sealed.as_deref())?;
        Ok((sink, secret))
    }

    /// Every enabled sink with its secret, for the delivery worker. A secret that cannot be
    /// opened (another master key) is an error for that sink alone.
    pub async fn siem_sinks_for_delivery(
        &self,
    ) -> Result<Vec<(SiemSink, Result<Option<SinkSecret>>)>> {
        let head = self.audit_head().await?;
        let sql = format!("SELECT {SINK_COLUMNS} FROM siem_sinks WHERE enabled = 1 ORDER BY name");
        let rows = sqlx::query_as::<_, SinkRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (sink, sealed) = row.into_view(head)?;
            let secret = self.open_sink_secret(&sink.id, sealed.as_deref());
            out.push((sink, secret));
        }
        Ok(out)
    }

    fn open_sink_secret(&self, id: &str, sealed: Option<&str>) -> Result<Option<SinkSecret>> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = self.cipher.open(sealed, id.as_bytes())?;
        let text = String::from_utf8(plain)
            .map_err(|_| Error::Internal("sink secret is not UTF-8".into()))?;
        Ok(Some(SinkSecret::new(text)))
    }

    /// Changes a sink's name, configuration, secret or enabled flag. The delivery cursor stays:
    /// a corrected address picks up where delivery stopped.
    pub async fn update_siem_sink(&self, id: &str, change: SinkUpdate) -> Result<SiemSink> {
        let mut tx = self.write_tx().await?;
        let sql = format!("SELECT {SINK_COLUMNS} FROM siem_sinks WHERE id = $1");
        let row = sqlx::query_as::<_, SinkRow>(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound("SIEM sink"))?;
        let (current, sealed) = row.into_view(0)?;
        let name = match change.name {
            Some(n) => {
                let n = n.trim().to_string();
                validate_sink_name(&n).map_err(Error::Invalid)?;
                n
            }
            None => current.name.clone(),
        };
        let config = change
            .config
            .unwrap_or(current.config)
            .normalized(current.kind)
            .map_err(Error::Invalid)?;
        let sealed = match change.secret {
            None => sealed,
            Some(s) if s.is_empty() => None,
            Some(s) => {
                validate_secret(current.kind, Some(&s)).map_err(Error::Invalid)?;
                Some(self.cipher.seal(s.as_bytes(), id.as_bytes())?)
            }
        };
        if sealed.is_none() {
            validate_secret(current.kind, None).map_err(Error::Invalid)?;
        }
        let enabled = change.enabled.unwrap_or(current.enabled);
        let config_json = serde_json::to_string(&config)
            .map_err(|e| Error::Internal(format!("sink configuration: {e}")))?;
        sqlx::query(
            "UPDATE siem_sinks SET name = $1, config = $2, secret = $3, enabled = $4 WHERE id = $5",
        )
        .bind(&name)
        .bind(&config_json)
        .bind(sealed.as_deref())
        .bind(i64::from(enabled))
        .bind(id)
        .execute(&mut *tx)
        .await
        .on_unique(|| format!("a SIEM sink named {name:?} already exists"))?;
        tx.commit().await?;
        self.get_siem_sink(id).await
    }

    /// Deletes a sink; returns it as it was.
    pub async fn delete_siem_sink(&self, id: &str) -> Result<SiemSink> {
        let sink = self.get_siem_sink(id).await?;
        let done = sqlx::query("DELETE FROM siem_sinks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("SIEM sink"));
        }
        Ok(sink)
    }

    /// Takes (or renews) the delivery lease of an enabled sink for `ttl_ms`. Returns the sink's
    /// cursor as of taking it when `owner` holds the lease now (deliver from there, not from an
    /// older read: another replica may have moved it), `None` when another replica holds it.
    /// Free, held by `owner`, or expired leases can be taken.
    pub async fn siem_take_lease(&self, id: &str, owner: &str, ttl_ms: i64) -> Result<Option<i64>> {
        let now = self.now_ms();
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE siem_sinks SET lease_owner = $1, lease_until = $2
             WHERE id = $3 AND enabled = 1
               AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until IS NULL OR lease_until < $4)
             RETURNING cursor",
        )
        .bind(owner)
        .bind(now.saturating_add(ttl_ms))
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(cursor,)| cursor))
    }

    /// Gives up a lease `owner` holds (nothing when it does not).
    pub async fn siem_release_lease(&self, id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE siem_sinks SET lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up every lease `owner` holds (at shutdown).
    pub async fn siem_release_leases(&self, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE siem_sinks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that events up to id `to` reached the sink: the cursor moves from `from` to `to`
    /// only if it is still at `from` and `owner` still holds the lease (false otherwise: another
    /// replica took over, and the events may arrive twice). With `keep_lease` the lease is
    /// renewed for `ttl_ms` (more events are waiting), otherwise released.
    pub async fn siem_advance(
        &self,
        id: &str,
        owner: &str,
        from: i64,
        to: i64,
        count: i64,
        keep_lease: Option<i64>,
    ) -> Result<bool> {
        if to <= from {
            return Err(Error::Internal(format!(
                "SIEM cursor may only move forward ({from} -> {to})"
            )));
        }
        let now = self.now_ms();
        let (lease_owner, lease_until) = match keep_lease {
            Some(ttl) => (Some(owner), Some(now.saturating_add(ttl))),
            None => (None, None),
        };
        let done = sqlx::query(
            "UPDATE siem_sinks SET cursor = $1, delivered = delivered + $2, last_success_at = $3,
                last_attempt_at = $3, last_error = NULL, lease_owner = $4, lease_until = $5
             WHERE id = $6 AND lease_owner = $7 AND cursor = $8",
        )
        .bind(to)
        .bind(count)
        .bind(now)
        .bind(lease_owner)
        .bind(lease_until)
        .bind(id)
        .bind(owner)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed delivery attempt (the cursor stays) and releases `owner`'s lease, so
    /// another replica may try after its own backoff.
    pub async fn siem_failed(&self, id: &str, owner: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE siem_sinks SET failures = failures + 1, last_error = $1, last_attempt_at = $2,
                lease_owner = CASE WHEN lease_owner = $3 THEN NULL ELSE lease_owner END,
                lease_until = CASE WHEN lease_owner = $3 THEN NULL ELSE lease_until END
             WHERE id = $4",
        )
        .bind(clip(error, MAX_ERROR))
        .bind(self.now_ms())
        .bind(owner)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
