//! Audit upkeep in the background: periodic integrity checks that sign a checkpoint at the head
//! of the chain, and retention purges that stop at a checkpoint.

use crate::metrics_names::{AUDIT_CHAIN_OK, AUDIT_PURGED};
use std::time::Duration;
use toolgate_domain::store::Store;

/// Keeps the full-text index caught up with the log (SQLite; a no-op on PostgreSQL), every
/// `every`, until the store is closed.
pub async fn index_text(store: Store, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if store.is_closed() {
            return;
        }
        if let Err(e) = store.index_audit_text().await
            && !store.is_closed()
        {
            tracing::warn!(error = %e, "audit full-text indexing failed; retrying");
        }
    }
}

/// Runs until the store is closed.
pub async fn run(store: Store, every: Duration, retention_days: u32) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.is_closed() {
            return;
        }
        once(&store, retention_days).await;
        housekeeping(&store).await;
    }
}

/// Drops what has no use any more: expired dashboard sessions, MCP sessions unused for a day, old authorization codes and
/// refresh tokens of ended grants (the audit log keeps the history).
async fn housekeeping(store: &Store) {
    match store.delete_expired_sessions().await {
        Ok(n) if n > 0 => tracing::debug!(sessions = n, "expired sessions removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "removing expired sessions failed"),
    }
    match store.purge_mcp_sessions().await {
        Ok(n) if n > 0 => tracing::debug!(sessions = n, "MCP sessions unused for a day removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "removing old MCP sessions failed"),
    }
    match store.purge_oauth_leftovers().await {
        Ok(n) if n > 0 => tracing::debug!(rows = n, "used codes and dead refresh tokens removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "OAuth housekeeping failed"),
    }
}

/// One round: check and checkpoint, then purge what retention allows.
pub async fn once(store: &Store, retention_days: u32) {
    match store.audit_checkpoint().await {
        Ok(status) => {
            metrics::gauge!(AUDIT_CHAIN_OK).set(if status.ok { 1.0 } else { 0.0 });
            if !status.ok {
                tracing::error!(
                    break_id = ?status.break_id,
                    reason = ?status.reason,
                    "audit chain integrity check FAILED: the log was altered"
                );
            }
        }
        Err(e) if store.is_closed() => tracing::debug!(error = %e, "store closed"),
        Err(e) => tracing::warn!(error = %e, "audit integrity check did not run"),
    }
    if retention_days == 0 {
        return;
    }
    let cutoff = store.clock().now() - chrono::Duration::days(i64::from(retention_days));
    let low_water = match store.siem_low_water().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "retention skipped: SIEM cursors unreadable");
            return;
        }
    };
    match store.purge_audit(cutoff, low_water).await {
        Ok(0) => {}
        Ok(n) => {
            metrics::counter!(AUDIT_PURGED).increment(n);
            tracing::info!(events = n, "audit retention purged old events");
        }
        Err(e) => tracing::warn!(error = %e, "audit retention purge failed"),
    }
}
