//! Audit benchmarks on SQLite (or PostgreSQL with `--db`): sustained append rate through the
//! group-commit writer, the latency a tool call pays for its record while the writer is busy,
//! and search by subject + time range over a large log.
//!
//! `cargo run --release -p toolgate-domain --features ssr --example audit_bench -- --events 10000000`

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use toolgate_domain::audit::AuditSink;
use toolgate_domain::clock::SystemClock;
use toolgate_domain::crypto::MasterKey;
use toolgate_domain::model::{AuditDecision, AuditFilter, Outcome};
use toolgate_domain::store::{NewAuditEvent, SqliteSync, Store};

struct Args {
    db: Option<String>,
    events: u64,
    append_secs: u64,
    producers: usize,
    sync_normal: bool,
}

fn args() -> Args {
    let mut a = Args {
        db: None,
        events: 10_000_000,
        append_secs: 10,
        producers: 256,
        sync_normal: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--db" => a.db = Some(v),
            "--events" => a.events = v.parse().expect("--events N"),
            "--append-secs" => a.append_secs = v.parse().expect("--append-secs N"),
            "--producers" => a.producers = v.parse().expect("--producers N"),
            "--sqlite-sync" => a.sync_normal = v == "normal",
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

const SUBJECTS: u64 = 1000;

fn event(i: u64) -> NewAuditEvent {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        + ChronoDuration::milliseconds((i * 250) as i64);
    NewAuditEvent {
        principal_id: Some(format!("user-{}", i % SUBJECTS)),
        subject_kind: Some("person".into()),
        client_name: Some("claude-code 2.1".into()),
        session_id: Some(format!("s-{}", i / 50)),
        ip: Some("10.1.2.3".into()),
        connector: Some(["github", "jira", "salesforce", "drive"][(i % 4) as usize].into()),
        tool: Some(
            ["create_issue", "get_file", "search", "update_record"][(i % 7 % 4) as usize].into(),
        ),
        decision: if i.is_multiple_of(23) {
            AuditDecision::Deny
        } else {
            AuditDecision::Allow
        },
        rule: Some("group Engineering allows github: create_*".into()),
        outcome: if i.is_multiple_of(23) {
            Outcome::Denied
        } else {
            Outcome::Forwarded
        },
        latency_us: 180,
        request_id: Some(format!("req-{i}")),
        call_id: Some(format!("call-{i}")),
        args_redacted: Some(format!(
            "{{\"title\":\"fix flaky test number {i}\",\"labels\":[\"ci\"]}}"
        )),
        args_hash: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        bytes_in: Some(64),
        ..NewAuditEvent::new(
            at,
            "tool_call",
            &format!("user{}@example.com", i % SUBJECTS),
        )
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile_dir();
    let url =
        a.db.clone()
            .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display()));
    let sync = if a.sync_normal {
        SqliteSync::Normal
    } else {
        SqliteSync::Full
    };
    let store = Store::connect_with(
        &url,
        MasterKey::generate().cipher(),
        Arc::new(SystemClock),
        sync,
    )
    .await
    .expect("connect");
    println!("sqlite synchronous: {sync:?}");
    store.migrate().await.expect("migrate");
    println!("database: {url}");

    // 1. Sustained append through the writer: many producers, each waiting for its commit (as a
    //    tool call does), while a probe measures what one record costs.
    let sink = AuditSink::start(store.clone());
    // As the server does: the full-text index follows the log once a second, off the append path.
    let indexer = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                store.index_audit_text().await.expect("index");
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let probe = |sink: AuditSink, n: usize| async move {
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            sink.record(event(i as u64)).await.expect("record");
            lat.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.sort();
        lat
    };
    let idle = probe(sink.clone(), 200).await;
    let mut tasks = Vec::new();
    for p in 0..a.producers {
        let (sink, stop, count) = (sink.clone(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = p as u64;
            while !stop.load(Ordering::Relaxed) {
                sink.record(event(i)).await.expect("record");
                count.fetch_add(1, Ordering::Relaxed);
                i += 1_000_000;
            }
        }));
    }
    let started = Instant::now();
    let busy = tokio::spawn(probe(sink.clone(), 400));
    tokio::time::sleep(Duration::from_secs(a.append_secs)).await;
    let appended = count.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let busy = busy.await.expect("probe");
    println!(
        "append, closed loop: {} events in {:.1} s = {:.0} events/s ({} producers, each waiting for its commit)",
        appended,
        elapsed.as_secs_f64(),
        appended as f64 / elapsed.as_secs_f64(),
        a.producers
    );
    println!(
        "one record (what a tool call waits for): idle p50 {:?} p99 {:?}; under load p50 {:?} p99 {:?}",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&busy, 0.5),
        pct(&busy, 0.99)
    );

    // 1b. Open loop at a fixed offered rate (what a busy gateway produces): does a tool call's
    //     record get slower while the writer appends `rate` events per second?
    let rate = 20_000u64;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let senders = 200u64;
    for p in 0..senders {
        let (sink, stop, count) = (sink.clone(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            // Each sender fires its share of the rate without waiting for earlier records.
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * senders / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = p;
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (sink, count) = (sink.clone(), count.clone());
                inflight.spawn(async move {
                    sink.record(event(i)).await.expect("record");
                    count.fetch_add(1, Ordering::Relaxed);
                });
                while inflight.try_join_next().is_some() {}
                i += senders;
            }
            while inflight.join_next().await.is_some() {}
        }));
    }
    let started = Instant::now();
    let busy = tokio::spawn(probe(sink.clone(), 400));
    tokio::time::sleep(Duration::from_secs(a.append_secs)).await;
    let appended = count.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let busy = busy.await.expect("probe");
    println!(
        "open loop at {rate} events/s offered: {:.0} events/s written; one record p50 {:?} p99 {:?}",
        appended as f64 / elapsed.as_secs_f64(),
        pct(&busy, 0.5),
        pct(&busy, 0.99)
    );

    indexer.abort();

    // 2. Fill to `events` with large batches, then search by subject + time range.
    let have = store.audit_head().await.expect("head") as u64;
    let fill_started = Instant::now();
    let mut i = have;
    while i < a.events {
        let n = (a.events - i).min(5000);
        let batch: Vec<NewAuditEvent> = (i..i + n).map(event).collect();
        store.insert_audit_batch(&batch).await.expect("insert");
        i += n;
        if i % 1_000_000 < n {
            println!(
                "  filled {i} events ({:.0} s)",
                fill_started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "log holds {} events",
        store.audit_head().await.expect("head")
    );
    let t = Instant::now();
    let indexed = store.index_audit_text().await.expect("index");
    println!(
        "full-text index catch-up: {indexed} events in {:.1} s ({:.0} events/s)",
        t.elapsed().as_secs_f64(),
        indexed as f64 / t.elapsed().as_secs_f64().max(1e-9)
    );

    let span_ms = (a.events * 250) as i64;
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut lat = Vec::new();
    let mut rows = 0usize;
    for q in 0..200u64 {
        // A subject and a one-day window somewhere in the log.
        let start =
            t0 + ChronoDuration::milliseconds(((q * 7919) as i64 * 3_600_000) % span_ms.max(1));
        let filter = AuditFilter {
            subject: Some(format!("user{}@example.com", (q * 37) % SUBJECTS)),
            from: Some(start),
            to: Some(start + ChronoDuration::days(1)),
            ..Default::default()
        };
        let t = Instant::now();
        let (items, _) = store.search_audit(&filter, None, 50).await.expect("search");
        lat.push(t.elapsed());
        rows += items.len();
    }
    lat.sort();
    println!(
        "search subject + 1-day range, first page of 50, over {} events: p50 {:?} p95 {:?} p99 {:?} ({} rows returned in 200 queries)",
        a.events,
        pct(&lat, 0.5),
        pct(&lat, 0.95),
        pct(&lat, 0.99),
        rows
    );
    let mut lat = Vec::new();
    for q in 0..50u64 {
        let filter = AuditFilter {
            text: Some(format!("flaky number {}", q * 100_003 % a.events.max(1))),
            ..Default::default()
        };
        let t = Instant::now();
        store.search_audit(&filter, None, 50).await.expect("search");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "search free text (2 words, rare), over {} events: p50 {:?} p95 {:?}",
        a.events,
        pct(&lat, 0.5),
        pct(&lat, 0.95)
    );
    let t = Instant::now();
    let report = store.verify_audit_chain(None, None).await.expect("verify");
    println!(
        "verify whole chain: {} events in {:.1} s (intact: {})",
        report.checked,
        t.elapsed().as_secs_f64(),
        report.first_break.is_none()
    );
    store.close().await;
}

/// A scratch folder under target/ (the log can reach several GB).
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::var("AUDIT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from("target/audit-bench"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}
