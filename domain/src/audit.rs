//! The audit writer: callers hand it an event and wait until it is durable; one background task
//! groups concurrent events into one transaction (group commit), so a burst of calls costs one
//! database round trip, not one each.

use crate::store::{NewAuditEvent, Store};
use crate::{Error, Result};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most events written in one transaction.
const MAX_BATCH: usize = 1024;
/// Queue depth before callers wait (backpressure instead of unbounded memory).
const QUEUE: usize = 4096;
/// Longest a caller waits for its event to be durable, and longest one batch may take (pool
/// wait, SQLite's busy wait, the write). A database that stops answering without closing the
/// connection (a network black hole, a hung server) would otherwise hold every caller, and the
/// calls they make, until TCP gives up many minutes later.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Job = (NewAuditEvent, oneshot::Sender<Result<()>>);

/// Handle to the audit writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Job>,
}

impl AuditSink {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, rx));
        AuditSink { tx }
    }

    /// Records one event and returns once it is committed. `AuditUnavailable` when it could not be
    /// written within `WRITE_TIMEOUT`: the caller must then refuse the action (fail closed).
    pub async fn record(&self, event: NewAuditEvent) -> Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        let durable = async {
            self.tx
                .send((event, done_tx))
                .await
                .map_err(|_| Error::AuditUnavailable)?;
            done_rx.await.map_err(|_| Error::AuditUnavailable)?
        };
        // Behind a batch that hangs, an event would wait for that batch's timeout and then for its
        // own: the caller's deadline bounds the whole wait. The event may still be written later.
        tokio::time::timeout(WRITE_TIMEOUT, durable)
            .await
            .unwrap_or(Err(Error::AuditUnavailable))
    }

    /// Records an event for something that has already happened (a change that is stored, a
    /// sign-in that is decided): a failure cannot undo it, so it is logged at error level.
    pub async fn record_after_the_fact(&self, event: NewAuditEvent) {
        let kind = event.kind.clone();
        if let Err(e) = self.record(event).await {
            tracing::error!(error = %e, kind, "action taken but its audit event was not written");
        }
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, waiting): (Vec<NewAuditEvent>, Vec<oneshot::Sender<Result<()>>>) =
            batch.drain(..).unzip();
        // A batch cut short may still commit: its callers are refused (fail closed) and the log
        // then holds events of calls that were not made, never the other way round.
        let result = tokio::time::timeout(WRITE_TIMEOUT, store.insert_audit_batch(&events))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Internal(format!(
                    "audit write took longer than {WRITE_TIMEOUT:?}"
                )))
            });
        if let Err(e) = &result {
            tracing::error!(error = %e, events = events.len(), "audit batch not written; calls refused");
        }
        for done in waiting {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(_) => Err(Error::AuditUnavailable),
            };
            // The caller may have gone away (client disconnected); the event is written anyway.
            let _ = done.send(r);
        }
    }
}
