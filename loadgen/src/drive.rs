//! Load: N open sessions sending one request in a loop, either as fast as answers come (closed
//! loop) or at a fixed total rate (open loop; latency counted from the intended send time, so a
//! stall is not hidden by the requests it delayed). `compare` runs the same load against the
//! direct and the gateway side in alternating short phases (ABBA), so drift and noise of the
//! shared machine fall on both sides alike.

use crate::client::{Session, Target};
use crate::stats::{self, Comparison, Summary};
use anyhow::Result;
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How fast the sessions send.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each session sends its next request when the previous answer arrives.
    Max,
    /// This many requests per second in total, spread evenly over the sessions.
    Rate(f64),
}

/// The request every session of a side repeats.
#[derive(Debug, Clone)]
pub enum Op {
    /// `tools/call` with these params (JSON text).
    Call(Arc<str>),
    /// `tools/list`.
    ListTools,
}

impl Op {
    /// A `tools/call` of `tool` with `arguments`.
    pub fn call(tool: &str, arguments: &serde_json::Value) -> Op {
        Op::Call(
            serde_json::json!({"name": tool, "arguments": arguments})
                .to_string()
                .into(),
        )
    }

    async fn run(&self, s: &mut Session) -> Result<()> {
        match self {
            Op::Call(params) => s.call(params).await.map(drop),
            Op::ListTools => s.list_tools().await.map(drop),
        }
    }
}

/// One side of a comparison: its target, what it sends, and its open sessions.
pub struct Side {
    pub target: Target,
    pub op: Op,
    pub sessions: Vec<Session>,
}

impl Side {
    /// Opens `n` sessions on `target` (at most 32 handshakes at a time).
    pub async fn open(http: &reqwest::Client, target: Target, op: Op, n: usize) -> Result<Side> {
        let sessions = open_sessions(http, &target, n).await?;
        Ok(Side {
            target,
            op,
            sessions,
        })
    }

    /// Ends every session.
    pub async fn close(self) {
        close_sessions(self.sessions).await;
    }
}

/// Opens `n` sessions on `target`, at most 32 handshakes in flight.
pub async fn open_sessions(
    http: &reqwest::Client,
    target: &Target,
    n: usize,
) -> Result<Vec<Session>> {
    futures::stream::iter(0..n)
        .map(|_| Session::open(http, target))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Ends sessions, 64 at a time.
pub async fn close_sessions(sessions: Vec<Session>) {
    futures::stream::iter(sessions)
        .map(Session::close)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// What one phase on one side measured.
pub struct PhaseResult {
    pub hist: Histogram<u64>,
    pub errors: u64,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

/// Runs `op` on every session for `duration` at `pace`; the sessions come back with the result.
/// Throughput counts until the last answer of the phase is in.
pub async fn phase(
    sessions: Vec<Session>,
    op: &Op,
    duration: Duration,
    pace: Pace,
) -> (Vec<Session>, PhaseResult) {
    let n = sessions.len().max(1);
    let start = Instant::now();
    let deadline = start + duration;
    // Per session: the gap between its requests, and where in that gap it starts.
    let gap = match pace {
        Pace::Max => None,
        Pace::Rate(r) => Some(Duration::from_secs_f64(n as f64 / r.max(1e-9))),
    };
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let op = op.clone();
            let first = gap.map(|g| start + g.mul_f64(i as f64 / n as f64));
            tokio::spawn(async move {
                let mut hist = stats::histogram();
                let mut errors = 0u64;
                let mut first_error = None;
                let mut intended = first;
                loop {
                    let t0 = match intended {
                        Some(at) => {
                            if at >= deadline {
                                break;
                            }
                            tokio::time::sleep_until(at.into()).await;
                            at
                        }
                        None => {
                            let now = Instant::now();
                            if now >= deadline {
                                break;
                            }
                            now
                        }
                    };
                    match op.run(&mut s).await {
                        Ok(()) => stats::record(&mut hist, t0.elapsed()),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                    if let (Some(at), Some(g)) = (intended.as_mut(), gap) {
                        *at += g;
                    }
                }
                (s, hist, errors, first_error)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    let mut hist = stats::histogram();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (s, h, e, fe) = t.await.expect("load task panicked");
        out.push(s);
        hist.add(&h).expect("same histogram bounds");
        errors += e;
        if first_error.is_none() {
            first_error = fe;
        }
    }
    let elapsed = start.elapsed();
    (
        out,
        PhaseResult {
            hist,
            errors,
            elapsed,
            first_error,
        },
    )
}

/// How a comparison is run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// One unmeasured phase per side first (connections, caches, allocator).
    pub warmup: Duration,
    /// Length of each measured phase.
    pub phase: Duration,
    /// Measured phases per side.
    pub rounds: usize,
    pub pace: Pace,
}

/// The same load on `direct` and `gateway`, alternating D G G D D G …, merged per side.
pub async fn compare(direct: &mut Side, gateway: &mut Side, plan: Plan) -> Comparison {
    let mut acc = [Acc::new(), Acc::new()];
    for side in [&mut *direct, &mut *gateway] {
        run_on(side, plan.warmup, plan.pace, None).await;
    }
    for round in 0..plan.rounds {
        // ABBA: who goes first alternates, so a trend over the run hits both sides equally.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let side = if i == 0 { &mut *direct } else { &mut *gateway };
            run_on(side, plan.phase, plan.pace, Some(&mut acc[i])).await;
        }
    }
    let [d, g] = acc;
    Comparison {
        direct: d.summary(&direct.target),
        gateway: g.summary(&gateway.target),
    }
}

async fn run_on(side: &mut Side, duration: Duration, pace: Pace, acc: Option<&mut Acc>) {
    let sessions = std::mem::take(&mut side.sessions);
    let (sessions, r) = phase(sessions, &side.op, duration, pace).await;
    side.sessions = sessions;
    if let Some(a) = acc {
        a.hist.add(&r.hist).expect("same histogram bounds");
        a.errors += r.errors;
        a.elapsed += r.elapsed;
        if a.first_error.is_none() {
            a.first_error = r.first_error;
        }
    }
}

struct Acc {
    hist: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
    first_error: Option<String>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            hist: stats::histogram(),
            errors: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        }
    }

    fn summary(self, target: &Target) -> Summary {
        if let Some(e) = &self.first_error {
            eprintln!(
                "[loadgen] {}: {} failed calls; first: {e}",
                target.label, self.errors
            );
        }
        Summary::of(&self.hist, self.errors, self.elapsed)
    }
}
