//! The delivery worker: one task per process that moves each enabled sink's cursor through the
//! audit log. Per round and sink: skip when nothing is new or the sink is backing off; take the
//! sink's lease (one replica at a time); read up to 500 events after the cursor; send them; move
//! the cursor past what arrived. A failure records the error, keeps the cursor and backs off
//! (1 s doubling to 60 s). At-least-once: an event is re-sent when its receipt cannot be
//! recorded, never skipped.

use super::transport::{Delivery, Transport};
use super::{SIEM_DELIVERED, SIEM_FAILURES, SIEM_LAG};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use toolgate_domain::siem::{SiemSink, SinkSecret};
use toolgate_domain::store::Store;

/// Events read and sent per batch.
pub(crate) const BATCH: i64 = 500;
/// How long a lease lasts; a delivery ends well before (transport budgets are shorter).
const LEASE_MS: i64 = 30_000;
/// Hard limit on one send, below the lease.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between rounds when no sink has a full batch waiting.
const POLL: Duration = Duration::from_millis(500);
/// Pause after a round failed on the database.
const DB_RETRY: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Handle to the delivery worker; cheap to clone.
#[derive(Clone)]
pub struct SiemWorker {
    inner: Arc<Inner>,
}

struct Inner {
    wake: Notify,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SiemWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiemWorker")
            .field("stopped", &self.inner.stop.is_cancelled())
            .finish()
    }
}

impl SiemWorker {
    /// Starts a round now instead of at the next tick (after audit writes or sink changes).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops the worker: the send in flight finishes (and its cursor is recorded), leases are
    /// released so another replica (or the next start) takes over at once. Call before closing
    /// the store; without it the worker ends by itself once the store is closed.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.wake.notify_one();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(5), task).await;
        }
    }
}

/// Starts the delivery worker on the current runtime. `instance_id` names this process in
/// leases: unique per process (a fresh UUID at start is right).
pub fn spawn(store: Store, instance_id: String) -> SiemWorker {
    let inner = Arc::new(Inner {
        wake: Notify::new(),
        stop: CancellationToken::new(),
        task: Mutex::new(None),
    });
    let task = tokio::spawn(run(store, instance_id, inner.clone()));
    *inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    SiemWorker { inner }
}

/// Per-sink state this process keeps: the open transport and the backoff.
struct SinkState {
    fingerprint: u64,
    transport: Option<Transport>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl SinkState {
    fn new() -> Self {
        SinkState {
            fingerprint: 0,
            transport: None,
            backoff: Duration::ZERO,
            retry_at: None,
        }
    }
}

async fn run(store: Store, owner: String, inner: Arc<Inner>) {
    let mut states: HashMap<String, SinkState> = HashMap::new();
    let mut lag_labels: HashSet<String> = HashSet::new();
    loop {
        if inner.stop.is_cancelled() || store.is_closed() {
            break;
        }
        let pause = match round(&store, &owner, &mut states, &mut lag_labels, &inner.stop).await {
            Ok(true) => continue,
            Ok(false) => POLL,
            Err(e) if store.is_closed() => {
                tracing::debug!(error = %e, "store closed; SIEM delivery ends");
                break;
            }
            Err(e) => {
                // The database is unreachable: events wait in the log; try again a little later.
                tracing::warn!(error = %e, "SIEM delivery round failed");
                DB_RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = inner.wake.notified() => {}
            _ = inner.stop.cancelled() => {}
        }
    }
    if !store.is_closed()
        && let Err(e) = store.siem_release_leases(&owner).await
    {
        tracing::warn!(error = %e, "SIEM leases not released at shutdown; they expire in 30 s");
    }
}

/// One pass over the enabled sinks; true when some sink has more events waiting right away.
async fn round(
    store: &Store,
    owner: &str,
    states: &mut HashMap<String, SinkState>,
    lag_labels: &mut HashSet<String>,
    stop: &CancellationToken,
) -> toolgate_domain::Result<bool> {
    let sinks = store.siem_sinks_for_delivery().await?;
    let live: HashSet<String> = sinks.iter().map(|(s, _)| s.id.clone()).collect();
    states.retain(|id, _| live.contains(id));
    let names: HashSet<String> = sinks.iter().map(|(s, _)| s.name.clone()).collect();
    for gone in lag_labels.difference(&names) {
        // A deleted, disabled or renamed sink: its lag is no longer this process's to report.
        metrics::gauge!(SIEM_LAG, "sink" => gone.clone()).set(0.0);
    }
    *lag_labels = names;
    let mut busy = false;
    for (sink, secret) in sinks {
        if stop.is_cancelled() {
            break;
        }
        metrics::gauge!(SIEM_LAG, "sink" => sink.name.clone()).set(sink.lag as f64);
        if sink.lag == 0 {
            continue;
        }
        let state = states.entry(sink.id.clone()).or_insert_with(SinkState::new);
        let fp = fingerprint(&sink, secret.as_ref().ok().and_then(Option::as_ref));
        if state.fingerprint != fp {
            // New or changed: a fresh transport, and no waiting out an old backoff.
            *state = SinkState::new();
            state.fingerprint = fp;
        }
        if state.retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        busy |= deliver(store, owner, &sink, secret, state).await?;
    }
    Ok(busy)
}

/// What identifies a transport: kind, configuration and secret. A change (a corrected address,
/// a new token) starts a fresh transport without waiting out the backoff.
fn fingerprint(sink: &SiemSink, secret: Option<&SinkSecret>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sink.kind.as_str().hash(&mut h);
    serde_json::to_string(&sink.config)
        .unwrap_or_default()
        .hash(&mut h);
    secret.map(SinkSecret::expose).hash(&mut h);
    h.finish()
}

/// One batch to one sink; true when a full batch went out and more may be waiting.
async fn deliver(
    store: &Store,
    owner: &str,
    sink: &SiemSink,
    secret: toolgate_domain::Result<Option<SinkSecret>>,
    state: &mut SinkState,
) -> toolgate_domain::Result<bool> {
    let secret = match secret {
        Ok(s) => s,
        Err(e) => {
            fail(
                store,
                owner,
                sink,
                state,
                format!("the sink's secret cannot be read: {e}"),
            )
            .await?;
            return Ok(false);
        }
    };
    let Some(cursor) = store.siem_take_lease(&sink.id, owner, LEASE_MS).await? else {
        // Another replica is delivering to this sink.
        return Ok(false);
    };
    let events = match store.audit_events_after(cursor, BATCH).await {
        Ok(events) => events,
        Err(e) => {
            let _ = store.siem_release_lease(&sink.id, owner).await;
            return Err(e);
        }
    };
    if events.is_empty() {
        store.siem_release_lease(&sink.id, owner).await?;
        return Ok(false);
    }
    if state.transport.is_none() {
        match Transport::new(sink, secret.as_ref()) {
            Ok(t) => state.transport = Some(t),
            Err(e) => {
                fail(store, owner, sink, state, e).await?;
                return Ok(false);
            }
        }
    }
    let Some(transport) = state.transport.as_mut() else {
        return Ok(false);
    };
    let result = tokio::time::timeout(SEND_TIMEOUT, transport.send(&events))
        .await
        .unwrap_or_else(|_| Delivery {
            delivered: 0,
            error: Some(format!(
                "sending took longer than {} s",
                SEND_TIMEOUT.as_secs()
            )),
        });
    let delivered = result.delivered.min(events.len());
    let full = result.error.is_none() && delivered == events.len() && events.len() as i64 == BATCH;
    if let Some(last) = delivered.checked_sub(1).and_then(|i| events.get(i)) {
        let keep = full.then_some(LEASE_MS);
        let moved = store
            .siem_advance(&sink.id, owner, cursor, last.id, delivered as i64, keep)
            .await?;
        if moved {
            metrics::counter!(SIEM_DELIVERED, "sink" => sink.name.clone())
                .increment(delivered as u64);
            tracing::debug!(sink = %sink.name, events = delivered, cursor = last.id, "SIEM events delivered");
        } else {
            tracing::warn!(
                sink = %sink.name,
                "SIEM lease lost during a delivery: another replica took over; these events may arrive twice"
            );
        }
    }
    match result.error {
        None => {
            state.backoff = Duration::ZERO;
            state.retry_at = None;
            if delivered == 0 {
                store.siem_release_lease(&sink.id, owner).await?;
            }
            Ok(full)
        }
        Some(e) => {
            fail(store, owner, sink, state, e).await?;
            Ok(false)
        }
    }
}

/// Records a failed attempt: the transport is dropped (reconnect next time), the backoff grows
/// (1 s, 2 s, 4 s, … 60 s) and the error is stored for the dashboard.
async fn fail(
    store: &Store,
    owner: &str,
    sink: &SiemSink,
    state: &mut SinkState,
    error: String,
) -> toolgate_domain::Result<()> {
    state.transport = None;
    state.backoff = next_backoff(state.backoff);
    state.retry_at = Some(Instant::now() + state.backoff);
    metrics::counter!(SIEM_FAILURES, "sink" => sink.name.clone()).increment(1);
    tracing::warn!(
        sink = %sink.name,
        error = %error,
        retry_in_s = state.backoff.as_secs(),
        "SIEM delivery failed; events stay queued in the audit log"
    );
    store.siem_failed(&sink.id, owner, &error).await
}

/// The pause after another failure: 1 s first, then doubling, at most 60 s.
fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        BACKOFF_START
    } else {
        (current * 2).min(BACKOFF_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let mut backoff = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..9 {
            backoff = next_backoff(backoff);
            seen.push(backoff.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
