//! DLP scan throughput on a ~1 MB JSON tool response, with and without findings.
//!
//! Run with `cargo run --release -p toolgate-domain --features ssr --example dlp_bench [iterations]`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use toolgate_domain::dlp::{DlpSettings, Findings, Scanner};

const TARGET_BYTES: usize = 1 << 20;

const WORDS: &[&str] = &[
    "the",
    "service",
    "returned",
    "a",
    "list",
    "of",
    "open",
    "issues",
    "for",
    "project",
    "release",
    "pipeline",
    "deployment",
    "failed",
    "because",
    "the",
    "database",
    "migration",
    "timed",
    "out",
    "after",
    "retrying",
    "customer",
    "reported",
    "that",
    "invoice",
    "totals",
    "were",
    "rounded",
    "incorrectly",
    "in",
    "region",
    "eu-west-1",
    "see",
    "ticket",
    "and",
    "attached",
    "logs",
    "version",
    "2.14.3",
    "fixes",
    "it",
    "with",
    "priority",
    "high",
];

/// Deterministic pseudo-random numbers (no extra dependencies).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }

    fn sentence(&mut self, words: usize) -> String {
        let mut s = String::new();
        for i in 0..words {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(self.pick(WORDS));
        }
        s.push('.');
        s
    }
}

/// A tool response: a prose text block plus structured records, about 1 MB serialized.
/// With `secrets`, about one record in 50 carries an email, card, key or token.
fn response(secrets: bool) -> Value {
    let mut rng = Lcg(42);
    let mut prose = String::new();
    while prose.len() < TARGET_BYTES / 4 {
        prose.push_str(&rng.sentence(12));
        prose.push(' ');
        if secrets && rng.next().is_multiple_of(100) {
            prose.push_str("Contact ops-oncall@example.com or +44 20 7946 0958. ");
        }
    }
    let mut records = Vec::new();
    let mut size = prose.len();
    let mut i = 0u64;
    while size < TARGET_BYTES {
        let mut notes = rng.sentence(20);
        if secrets && i % 50 == 7 {
            notes.push_str(match (i / 50) % 6 {
                0 => " Reply to jane.doe@example.org.",
                1 => " Paid with 4111 1111 1111 1111.",
                2 => " Uses AKIAIOSFODNN7EXAMPLE in CI.",
                3 => " password: Zq3vN8rT1mWx7LpK2sYh4bGd",
                4 => " IBAN GB82 WEST 1234 5698 7654 32.",
                _ => " token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            });
        }
        let record = json!({
            "id": format!("550e8400-e29b-41d4-a716-{:012x}", i),
            "number": 1000 + i,
            "title": rng.sentence(6),
            "status": rng.pick(&["open", "closed", "in_progress"]),
            "created_at": format!("2024-01-{:02}T10:{:02}:00Z", 1 + i % 28, i % 60),
            "labels": [rng.pick(WORDS), rng.pick(WORDS)],
            "commit": format!("{:016x}{:016x}{:08x}", rng.next(), rng.next(), i),
            "notes": notes,
            "amount": (i % 997) as f64 * 1.25,
        });
        size += record.to_string().len();
        records.push(record);
        i += 1;
    }
    json!({
        "content": [{"type": "text", "text": prose}],
        "structuredContent": {"records": records, "next_page_token": "CiAKGjBpNDd2Nmp1ZkxmWjN1cDIwZA"},
        "isError": false
    })
}

fn bench(name: &str, scanner: &Scanner, value: &Value, iterations: u32) {
    let bytes = value.to_string().len();
    let mut total = Duration::ZERO;
    let mut findings = Findings::new();
    for _ in 0..iterations {
        let mut v = value.clone();
        let start = Instant::now();
        findings = scanner.scan_json(&mut v, true);
        total += start.elapsed();
        std::hint::black_box(&v);
    }
    let secs = total.as_secs_f64() / f64::from(iterations);
    let mb = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{name}: {bytes} bytes, {:.2} ms/scan, {:.1} MB/s, findings {findings:?}",
        secs * 1e3,
        mb / secs
    );
}

fn bench_text(scanner: &Scanner, text: &str, iterations: u32) {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let mut f = Findings::new();
        let start = Instant::now();
        let out = scanner.scan_str(text, true, &mut f);
        total += start.elapsed();
        std::hint::black_box(out);
    }
    let secs = total.as_secs_f64() / f64::from(iterations);
    let mb = text.len() as f64 / (1024.0 * 1024.0);
    println!(
        "(c) one {} byte text string, no findings: {:.2} ms/scan, {:.1} MB/s",
        text.len(),
        secs * 1e3,
        mb / secs
    );
}

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let scanner = Scanner::new(&DlpSettings::default()).expect("default DLP settings compile");
    let clean = response(false);
    let dirty = response(true);
    // Warm up the regex caches.
    let _ = scanner.scan_json(&mut clean.clone(), true);
    println!("{iterations} iterations, all built-in detectors, redacting");
    bench("(a) no findings", &scanner, &clean, iterations);
    bench("(b) with findings", &scanner, &dirty, iterations);
    let text = clean["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .repeat(4);
    bench_text(&scanner, &text, iterations);
}
