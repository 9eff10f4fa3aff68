//! Health of each connector as this replica sees it (every connect, request and ping counts) and
//! the circuit breaker: after a connection failure, calls fail fast for a backoff window (1 s,
//! doubling to 30 s) instead of each waiting for a dead upstream.

use super::UpstreamError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use toolgate_domain::model::Connector;
use toolgate_domain::model::ConnectorHealth;

pub use crate::metrics_names::UPSTREAM_HEALTH;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `last_error` kept (it is shown to admins and in fail-fast errors).
const MAX_ERROR_CHARS: usize = 300;

/// How a failure counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// The connection could not be opened or broke: calls fail fast for a while.
    Broken,
    /// The upstream answered too late on a live connection: unhealthy, but calls still go
    /// through (one slow tool is not a dead upstream; a hung one fails its pings, which break).
    Slow,
}

#[derive(Default)]
struct Entry {
    health: ConnectorHealth,
    /// `updated_at` of the settings the failures were seen with; new settings are tried at once.
    version: i64,
    /// Connection failures in a row (sets the backoff).
    breaks: u32,
    open_until: Option<Instant>,
}

/// The health map and breaker of every connector, keyed by connector id.
#[derive(Default)]
pub(super) struct HealthBook {
    map: Mutex<HashMap<String, Entry>>,
}

fn version_of(c: &Connector) -> i64 {
    c.updated_at.timestamp_millis()
}

fn backoff(breaks: u32) -> Duration {
    let shift = breaks.saturating_sub(1).min(5);
    (FIRST_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl HealthBook {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    /// Fails fast while the breaker is open (a connection failure happened less than the
    /// backoff ago); settings changed since then close it.
    pub(super) fn check(&self, c: &Connector) -> Result<(), UpstreamError> {
        let now = Instant::now();
        self.with(|map| {
            let Some(e) = map.get_mut(&c.id) else {
                return Ok(());
            };
            if e.version != version_of(c) {
                e.open_until = None;
                e.breaks = 0;
                return Ok(());
            }
            match e.open_until {
                Some(until) if until > now => Err(UpstreamError::Unhealthy {
                    connector: c.name.clone(),
                    last_error: e.health.last_error.clone().unwrap_or_default(),
                    retry_in: until - now,
                }),
                _ => Ok(()),
            }
        })
    }

    /// The upstream answered (a result or a JSON-RPC error).
    pub(super) fn success(&self, c: &Connector) {
        self.with(|map| {
            let e = map.entry(c.id.clone()).or_default();
            e.version = version_of(c);
            e.breaks = 0;
            e.open_until = None;
            e.health = ConnectorHealth {
                status: "healthy".into(),
                last_error: None,
                checked_at: Some(chrono::Utc::now()),
                failures: 0,
            };
        });
        metrics::gauge!(UPSTREAM_HEALTH, "connector" => c.name.clone()).set(1.0);
    }

    /// A connect, request or ping failed.
    pub(super) fn failure(&self, c: &Connector, error: &str, kind: Failure) {
        self.failure_at(c, error, kind, Instant::now());
    }

    /// A failure noticed at `at` (a connection that closed by itself is noticed when it closes).
    pub(super) fn failure_at(&self, c: &Connector, error: &str, kind: Failure, at: Instant) {
        let error = shorten(error);
        tracing::warn!(connector = %c.name, error = %error, ?kind, "upstream failure");
        self.with(|map| {
            let e = map.entry(c.id.clone()).or_default();
            if e.version != version_of(c) {
                e.breaks = 0;
                e.open_until = None;
            }
            e.version = version_of(c);
            if kind == Failure::Broken {
                e.breaks = e.breaks.saturating_add(1);
                e.open_until = Some(at + backoff(e.breaks));
            }
            e.health = ConnectorHealth {
                status: "unhealthy".into(),
                last_error: Some(error),
                checked_at: Some(chrono::Utc::now()),
                failures: e.health.failures.saturating_add(1),
            };
        });
        metrics::gauge!(UPSTREAM_HEALTH, "connector" => c.name.clone()).set(0.0);
    }

    /// How a connector looks (`unknown` before anything was tried).
    pub(super) fn get(&self, connector_id: &str) -> ConnectorHealth {
        self.with(|map| {
            map.get(connector_id)
                .map(|e| e.health.clone())
                .unwrap_or_else(|| ConnectorHealth {
                    status: "unknown".into(),
                    ..ConnectorHealth::default()
                })
        })
    }

    /// Forgets connectors that are gone or disabled (enabled again, they start afresh).
    pub(super) fn retain(&self, keep: &[String]) {
        self.with(|map| map.retain(|id, _| keep.contains(id)));
    }
}

fn shorten(error: &str) -> String {
    if error.chars().count() <= MAX_ERROR_CHARS {
        return error.to_string();
    }
    let mut s: String = error.chars().take(MAX_ERROR_CHARS).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_domain::model::Transport;

    fn connector(updated_ms: i64) -> Connector {
        let at = chrono::DateTime::from_timestamp_millis(updated_ms).unwrap();
        Connector {
            id: "c1".into(),
            name: "one".into(),
            transport: Transport::StreamableHttp,
            url: "http://127.0.0.1:9/mcp".into(),
            command: None,
            args: vec![],
            header_names: vec![],
            env_names: vec![],
            oauth: None,
            timeout_ms: 1000,
            max_concurrency: 1,
            enabled: true,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let got: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn broken_opens_the_breaker_slow_does_not_and_success_closes_it() {
        let book = HealthBook::default();
        let c = connector(1_000);
        assert_eq!(book.get("c1").status, "unknown");
        book.failure(&c, "slow", Failure::Slow);
        assert!(book.check(&c).is_ok(), "a slow answer does not fail fast");
        assert_eq!(book.get("c1").status, "unhealthy");
        book.failure(&c, "connection refused", Failure::Broken);
        let err = book.check(&c).unwrap_err().to_string();
        assert!(
            err.contains("\"one\" is unhealthy (last error: connection refused); retrying in 1 s"),
            "{err}"
        );
        assert_eq!(book.get("c1").failures, 2);
        // New settings are tried at once.
        assert!(book.check(&connector(2_000)).is_ok());
        book.failure(&c, "again", Failure::Broken);
        book.success(&c);
        assert!(book.check(&c).is_ok());
        let h = book.get("c1");
        assert_eq!(
            (h.status.as_str(), h.failures, h.last_error),
            ("healthy", 0, None)
        );
    }

    #[test]
    fn a_failure_noticed_long_ago_has_already_waited_out_its_backoff() {
        let book = HealthBook::default();
        let c = connector(1_000);
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(5))
            .expect("an instant 5 s ago");
        book.failure_at(&c, "the process exited", Failure::Broken, long_ago);
        assert!(book.check(&c).is_ok());
        assert_eq!(book.get("c1").status, "unhealthy");
    }
}
