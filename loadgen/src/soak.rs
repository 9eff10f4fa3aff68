//! `toolgate-loadgen soak` (issue 9, `make soak`): a fresh release toolgate and the echo upstream,
//! N MCP sessions (each holding its GET stream) calling a tool at a steady total rate for a long
//! run, while the admin API keeps changing the callers' policies and a SCIM client creates,
//! enrols, disables and deletes users. Every sample period it reads the server's RSS, open file
//! descriptors and threads and the window's calls, errors and latency; at the end a Markdown
//! report with the curve and a verdict (errors, RSS growth, descriptor growth).

use crate::client::{self, Session, Target};
use crate::gateway::{Toolgate, mib, proc_kib};
use crate::stats;
use crate::suite::{Machine, Progress, spawn_echo_upstream};
use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server's MCP rate limit per principal when the run does not set one (its default).
pub const DEFAULT_MCP_LIMIT: u32 = 100;
/// Fraction of the per-principal limit the steady load may use (calls that catch up after a
/// stall come in a burst, which the limiter's burst of twice the rate absorbs).
const LIMIT_SHARE: f64 = 0.8;
/// Churned users kept enrolled at a time: each is retired this many SCIM ticks after creation.
const CHURN_LAG: usize = 3;
/// Distinct examples kept per error kind.
const EXAMPLES: usize = 3;
const SCIM_JSON: &str = "application/scim+json";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What the soak runs against, how hard and how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub toolgate: PathBuf,
    pub echo_upstream: PathBuf,
    /// Extra environment of toolgate (after the soak's own, so it wins).
    pub gateway_env: Vec<(String, String)>,
    /// MCP sessions held open for the whole run.
    pub sessions: usize,
    /// Principals (user + group + personal token) the sessions are spread over.
    pub principals: usize,
    /// Total tools/call per second over all sessions.
    pub rate: f64,
    pub duration: Duration,
    pub sample_every: Duration,
    /// One policy change through the admin API this often.
    pub policy_every: Duration,
    /// One SCIM churn step (create + enrol a user, retire an older one) this often.
    pub scim_every: Duration,
    /// Each session also holds its GET SSE stream.
    pub streams: bool,
    pub limits: Limits,
}

/// Where the verdict's baseline window starts and ends, as fractions of the run: minute 4 to 5 of
/// 10. Not earlier, because a fresh process warms up for the first minutes of this load and that
/// growth is bounded, not a leak: each of rmcp's four tokio channels per session allocates its
/// second 32-slot block (about 12 KiB) at the session's 33rd message (minute 3 at one call every
/// 5 s: about 48 MiB for 1,000 sessions), SQLite connections fill their statement caches, and
/// glibc's per-thread arenas keep the peak of the minute's audit checkpoint (5,000 audit rows
/// per batch). The first full run (BENCHMARKS.md) rose from 150 to 283 MiB by minute 4 and then
/// by 1.2 % in six minutes; judged from minute 2, that warm-up alone was +20.8 %.
pub const BASE_WINDOW: (f64, f64) = (0.4, 0.5);
/// Where the end window starts: the last 10 % of the run.
pub const END_FROM: f64 = 0.9;

/// How much growth the verdict tolerates between the baseline window ([`BASE_WINDOW`]) and the
/// end window (the last 10 %).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// RSS growth as a fraction of the baseline (0.1 = 10 %).
    pub rss_growth: f64,
    /// Open descriptors the end may have more than the baseline.
    pub fd_margin: u64,
}

/// One reading of the server and of what the load did since the previous one.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started (0: sessions open, no calls yet).
    pub at_s: f64,
    pub rss_mib: f64,
    pub fds: u64,
    pub threads: u64,
    /// The anonymous part of the RSS (`RssAnon`: heap and stacks, no mapped files), MiB.
    pub anon_mib: f64,
    /// Size of the SQLite database with its WAL, MiB (the audit log grows with every call).
    pub db_mib: f64,
    pub calls_ok: u64,
    pub calls_failed: u64,
    /// Every error of the window (failed calls, refused admin or SCIM requests, ended streams).
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub policy_changes: u64,
    pub scim_requests: u64,
    #[serde(skip)]
    hist: Option<Histogram<u64>>,
}

/// What the window since the last sample collected.
struct Window {
    hist: Histogram<u64>,
    failed: u64,
    errors: BTreeMap<String, u64>,
    policy: u64,
    scim: u64,
}

impl Window {
    fn new() -> Window {
        Window {
            hist: stats::histogram(),
            failed: 0,
            errors: BTreeMap::new(),
            policy: 0,
            scim: 0,
        }
    }
}

/// An error kind over the whole run: how often, and the first few messages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub count: u64,
    pub examples: Vec<String>,
}

/// Run totals besides the calls.
struct Totals {
    errors: BTreeMap<String, Tally>,
    admin: Histogram<u64>,
    scim: Histogram<u64>,
}

/// What every task of the run reports into.
struct Shared {
    window: Mutex<Window>,
    totals: Mutex<Totals>,
    /// Set when the run ends: streams closing after this are not errors.
    stopping: AtomicBool,
    churn_created: AtomicU64,
    churn_retired: AtomicU64,
    churn_calls: AtomicU64,
    disabled_refused: AtomicU64,
    stream_bytes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new() -> Shared {
        Shared {
            window: Mutex::new(Window::new()),
            totals: Mutex::new(Totals {
                errors: BTreeMap::new(),
                admin: stats::histogram(),
                scim: stats::histogram(),
            }),
            stopping: AtomicBool::new(false),
            churn_created: AtomicU64::new(0),
            churn_retired: AtomicU64::new(0),
            churn_calls: AtomicU64::new(0),
            disabled_refused: AtomicU64::new(0),
            stream_bytes: AtomicU64::new(0),
        }
    }

    fn call_ok(&self, took: Duration) {
        stats::record(&mut lock(&self.window).hist, took);
    }

    fn call_failed(&self, e: &anyhow::Error) {
        lock(&self.window).failed += 1;
        self.error(format!("call: {}", classify(e)), format!("{e:#}"));
    }

    fn error(&self, kind: String, detail: String) {
        *lock(&self.window).errors.entry(kind.clone()).or_default() += 1;
        let mut t = lock(&self.totals);
        let tally = t.errors.entry(kind).or_default();
        tally.count += 1;
        if tally.examples.len() < EXAMPLES && !tally.examples.contains(&detail) {
            tally.examples.push(detail.chars().take(300).collect());
        }
    }

    fn admin_done(&self, took: Duration) {
        stats::record(&mut lock(&self.totals).admin, took);
    }

    fn policy_changed(&self) {
        lock(&self.window).policy += 1;
    }

    fn scim_done(&self, took: Duration) {
        lock(&self.window).scim += 1;
        stats::record(&mut lock(&self.totals).scim, took);
    }

    /// Closes the window: its figures with the server's RSS, descriptors and threads now.
    fn sample(&self, at_s: f64, pid: u32, dir: &Path) -> Sample {
        let w = std::mem::replace(&mut *lock(&self.window), Window::new());
        let ms = |us: u64| us as f64 / 1000.0;
        Sample {
            at_s,
            rss_mib: mib(proc_kib(pid, "VmRSS").unwrap_or(0)),
            anon_mib: mib(proc_kib(pid, "RssAnon").unwrap_or(0)),
            fds: fd_count(pid),
            // `Threads:` is a plain number; the KiB reader takes the first number of the field.
            threads: proc_kib(pid, "Threads").unwrap_or(0),
            db_mib: db_mib(dir),
            calls_ok: w.hist.len(),
            calls_failed: w.failed,
            errors: w.errors.values().sum(),
            errors_by_kind: w.errors,
            p50_ms: ms(w.hist.value_at_quantile(0.50)),
            p99_ms: ms(w.hist.value_at_quantile(0.99)),
            max_ms: ms(w.hist.max()),
            policy_changes: w.policy,
            scim_requests: w.scim,
            hist: Some(w.hist),
        }
    }
}

/// Adds what came in after the last sample (calls in flight at the end) to it.
fn fold_into(last: &mut Sample, rest: Sample) {
    if let (Some(h), Some(r)) = (last.hist.as_mut(), rest.hist.as_ref()) {
        h.add(r).expect("same histogram bounds");
        last.p50_ms = h.value_at_quantile(0.50) as f64 / 1000.0;
        last.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
        last.max_ms = h.max() as f64 / 1000.0;
        last.calls_ok = h.len();
    }
    last.calls_failed += rest.calls_failed;
    last.errors += rest.errors;
    for (k, n) in rest.errors_by_kind {
        *last.errors_by_kind.entry(k).or_default() += n;
    }
    last.policy_changes += rest.policy_changes;
    last.scim_requests += rest.scim_requests;
}

/// The kind of a failed call for the error table: HTTP status, JSON-RPC code, tool error, or
/// the transport failure.
pub fn classify(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(r) = cause.downcast_ref::<reqwest::Error>() {
            return if r.is_timeout() {
                "timeout".into()
            } else if r.is_connect() {
                "connect".into()
            } else if r.is_body() || r.is_decode() {
                "reading the answer".into()
            } else {
                "transport".into()
            };
        }
    }
    classify_message(&format!("{e:#}"))
}

/// [`classify`] on the message alone (the client's errors name the status or JSON-RPC code).
pub fn classify_message(m: &str) -> String {
    if let Some(i) = m.find("HTTP ") {
        let code: String = m[i + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if code.len() == 3 {
            return format!("HTTP {code}");
        }
    }
    if let Some(i) = m.find("JSON-RPC error ") {
        let code: String = m[i + 15..]
            .chars()
            .take_while(|c| *c == '-' || c.is_ascii_digit())
            .collect();
        return format!("JSON-RPC {code}");
    }
    if m.contains("tool error") {
        return "tool error".into();
    }
    "other".into()
}

/// Size of `toolgate.db` and its WAL in `dir`, MiB.
fn db_mib(dir: &Path) -> f64 {
    ["toolgate.db", "toolgate.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len() as f64 / 1024.0 / 1024.0)
        .sum()
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// The server's listening port and the upstream's, to tell the server's sockets apart.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub listen: u16,
    pub upstream: u16,
}

/// Open descriptors of `pid` by kind: sockets by direction (agents' connections to the server,
/// the server's to the upstream) and TCP state, pipes, event fds, database files by name.
pub fn fd_kinds(pid: u32, ports: Ports) -> BTreeMap<String, u64> {
    let mut tcp = HashMap::new();
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            tcp.extend(parse_proc_net_tcp(&text));
        }
    }
    let mut kinds = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(link) = std::fs::read_link(e.path()) {
                let link = link.to_string_lossy();
                let kind = match link
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|i| i.parse::<u64>().ok())
                {
                    Some(inode) => socket_kind(tcp.get(&inode).copied(), ports),
                    None => fd_kind(&link),
                };
                *kinds.entry(kind).or_default() += 1;
            }
        }
    }
    kinds
}

/// TCP sockets of a `/proc/PID/net/tcp` table by inode: local port, remote port, state.
pub fn parse_proc_net_tcp(text: &str) -> HashMap<u64, (u16, u16, u8)> {
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = port(f.get(1)?)?;
            let remote = port(f.get(2)?)?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some((inode, (local, remote, state)))
        })
        .collect()
}

/// A socket as the report groups it (`None`: not a TCP socket of the tables).
pub fn socket_kind(tcp: Option<(u16, u16, u8)>, ports: Ports) -> String {
    let Some((local, remote, state)) = tcp else {
        return "socket (not TCP)".into();
    };
    let state = match state {
        0x01 => "",
        0x06 => " TIME_WAIT",
        0x08 => " CLOSE_WAIT",
        0x0A => return "socket listening".into(),
        _ => " (other state)",
    };
    let side = if local == ports.listen {
        "socket from agents"
    } else if remote == ports.upstream {
        "socket to the upstream"
    } else {
        "socket other TCP"
    };
    format!("{side}{state}")
}

/// What a `/proc/PID/fd` link points at, as the report groups it.
pub fn fd_kind(link: &str) -> String {
    if link.starts_with("socket:") {
        return "socket".into();
    }
    if link.starts_with("pipe:") {
        return "pipe".into();
    }
    if let Some(rest) = link.strip_prefix("anon_inode:") {
        return format!("anon_inode {}", rest.trim_matches(['[', ']']));
    }
    if link.starts_with("/dev/") {
        return link.into();
    }
    match link.rsplit('/').next() {
        Some(name) if name.contains(".db") => name.trim_end_matches(" (deleted)").into(),
        _ => "other file".into(),
    }
}

/// The growth verdict on the samples: errors, RSS and descriptors of the end window against
/// the baseline window.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub errors: u64,
    /// Lowest RSS of the baseline window, MiB.
    pub rss_base_mib: f64,
    /// Lowest RSS of the end window, MiB.
    pub rss_end_mib: f64,
    /// `rss_end / rss_base - 1`.
    pub rss_growth: f64,
    /// Least-squares slope of RSS from the baseline window on, MiB per minute.
    pub rss_slope_mib_per_min: f64,
    pub fd_base: u64,
    pub fd_end: u64,
    pub base_window_s: (f64, f64),
    pub end_window_s: (f64, f64),
    pub limits: Limits,
    pub errors_ok: bool,
    pub rss_ok: bool,
    pub fds_ok: bool,
}

impl Verdict {
    pub fn pass(&self) -> bool {
        self.errors_ok && self.rss_ok && self.fds_ok
    }
}

/// One reading the verdict looks at.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub at_s: f64,
    pub rss_mib: f64,
    pub fds: u64,
}

/// Judges a run of `duration_s`. The baseline is the lowest reading of [`BASE_WINDOW`] of the
/// run, the end the lowest of the last 10 %: lowest, so a transient peak (a burst's extra pooled
/// connections, a freshly grown allocator arena) is not taken for growth, while a leak raises
/// every reading and so the floor. A window without readings (short runs) takes the reading
/// nearest its start.
pub fn judge(points: &[Point], duration_s: f64, errors: u64, limits: Limits) -> Verdict {
    let base_window = (duration_s * BASE_WINDOW.0, duration_s * BASE_WINDOW.1);
    let end_window = (duration_s * END_FROM, f64::INFINITY);
    let pick = |(from, to): (f64, f64)| -> Vec<Point> {
        let inside: Vec<Point> = points
            .iter()
            .copied()
            .filter(|p| p.at_s >= from - 1e-6 && p.at_s < to)
            .collect();
        if !inside.is_empty() {
            return inside;
        }
        points
            .iter()
            .copied()
            .min_by(|a, b| (a.at_s - from).abs().total_cmp(&(b.at_s - from).abs()))
            .into_iter()
            .collect()
    };
    let floor = |ps: &[Point]| {
        (
            ps.iter().map(|p| p.rss_mib).fold(f64::INFINITY, f64::min),
            ps.iter().map(|p| p.fds).min().unwrap_or(0),
        )
    };
    let (rss_base, fd_base) = floor(&pick(base_window));
    let (rss_end, fd_end) = floor(&pick(end_window));
    let (rss_base, rss_end) = if points.is_empty() {
        (0.0, 0.0)
    } else {
        (rss_base, rss_end)
    };
    let rss_growth = if rss_base > 0.0 {
        rss_end / rss_base - 1.0
    } else {
        0.0
    };
    let later: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.at_s >= base_window.0 - 1e-6)
        .map(|p| (p.at_s / 60.0, p.rss_mib))
        .collect();
    Verdict {
        errors,
        rss_base_mib: rss_base,
        rss_end_mib: rss_end,
        rss_growth,
        rss_slope_mib_per_min: slope(&later),
        fd_base,
        fd_end,
        base_window_s: base_window,
        end_window_s: (end_window.0, duration_s),
        limits,
        errors_ok: errors == 0,
        rss_ok: rss_growth <= limits.rss_growth,
        fds_ok: fd_end <= fd_base + limits.fd_margin,
    }
}

/// Least-squares slope of `y` over `x` (0 for fewer than two distinct `x`).
pub fn slope(xy: &[(f64, f64)]) -> f64 {
    let n = xy.len() as f64;
    if xy.len() < 2 {
        return 0.0;
    }
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// One row of the curve table: the readings at the end of a period and what the load did in it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub at_s: f64,
    pub rss_mib: f64,
    pub anon_mib: f64,
    pub db_mib: f64,
    pub fds: u64,
    pub threads: u64,
    pub calls_ok: u64,
    pub calls_failed: u64,
    pub seconds: f64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub policy_changes: u64,
    pub scim_requests: u64,
}

/// Groups samples into rows of `period_s` (by the period each sample's window ends in); the
/// sample at 0 is a row of its own.
pub fn rows(samples: &[Sample], period_s: f64) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    let mut hist = stats::histogram();
    let mut current: Option<(i64, Row)> = None;
    let mut prev_at = 0.0;
    let finish = |(_, mut r): (i64, Row), h: &mut Histogram<u64>, out: &mut Vec<Row>| {
        if !h.is_empty() {
            r.p50_ms = h.value_at_quantile(0.50) as f64 / 1000.0;
            r.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            r.max_ms = h.max() as f64 / 1000.0;
        }
        h.reset();
        out.push(r);
    };
    for s in samples {
        let period = (s.at_s / period_s - 1e-9).ceil() as i64;
        if current.as_ref().is_some_and(|(p, _)| *p != period)
            && let Some(c) = current.take()
        {
            finish(c, &mut hist, &mut out);
        }
        let (_, row) = current.get_or_insert({
            (
                period,
                Row {
                    at_s: s.at_s,
                    rss_mib: 0.0,
                    anon_mib: 0.0,
                    db_mib: 0.0,
                    fds: 0,
                    threads: 0,
                    calls_ok: 0,
                    calls_failed: 0,
                    seconds: 0.0,
                    errors: 0,
                    p50_ms: 0.0,
                    p99_ms: 0.0,
                    max_ms: 0.0,
                    policy_changes: 0,
                    scim_requests: 0,
                },
            )
        });
        row.at_s = s.at_s;
        row.rss_mib = s.rss_mib;
        row.anon_mib = s.anon_mib;
        row.db_mib = s.db_mib;
        row.fds = s.fds;
        row.threads = s.threads;
        row.calls_ok += s.calls_ok;
        row.calls_failed += s.calls_failed;
        row.seconds += s.at_s - prev_at;
        row.errors += s.errors;
        row.policy_changes += s.policy_changes;
        row.scim_requests += s.scim_requests;
        if let Some(h) = &s.hist {
            hist.add(h).expect("same histogram bounds");
        }
        prev_at = s.at_s;
    }
    if let Some(c) = current.take() {
        finish(c, &mut hist, &mut out);
    }
    out
}

/// Everything the soak measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// The working tree had uncommitted changes (the binary is built from them).
    pub uncommitted_changes: bool,
    /// Minutes between the toolgate binary's last change and the run (a binary older than the
    /// checkout was built from other sources than `commit` names).
    pub binary_age_min: f64,
    pub gateway_env: Vec<String>,
    pub sessions: usize,
    pub principals: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub streams: bool,
    pub mcp_limit_per_sec: u32,
    pub policy_every_s: f64,
    pub scim_every_s: f64,
    pub setup_s: f64,
    pub rss_before_sessions_mib: f64,
    pub fds_before_sessions: u64,
    pub samples: Vec<Sample>,
    pub rows: Vec<Row>,
    pub calls_ok: u64,
    pub calls_failed: u64,
    pub call_p50_ms: f64,
    pub call_p99_ms: f64,
    pub call_max_ms: f64,
    /// Admin API requests: the policy changes and the churned users' tokens.
    pub admin_requests: u64,
    pub policy_changes: u64,
    pub admin_p50_ms: f64,
    pub admin_p99_ms: f64,
    pub scim_requests: u64,
    pub scim_p50_ms: f64,
    pub scim_p99_ms: f64,
    pub churn_created: u64,
    pub churn_retired: u64,
    pub churn_calls: u64,
    pub disabled_refused: u64,
    pub stream_bytes: u64,
    pub errors: BTreeMap<String, Tally>,
    pub fd_kinds_base: BTreeMap<String, u64>,
    pub fd_kinds_end: BTreeMap<String, u64>,
    pub fd_kinds_after_close: BTreeMap<String, u64>,
    pub rss_after_close_mib: f64,
    pub fds_after_close: u64,
    pub rss_peak_mib: f64,
    pub upstream_rss_end_mib: f64,
    pub server_log_bytes: u64,
    pub server_log_warn: u64,
    pub server_log_error: u64,
    pub server_log_examples: Vec<String>,
    pub verdict: Verdict,
}

/// The SCIM endpoint with its token.
struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Scim {
    /// One request; the status and the JSON answer (Null when empty or not JSON).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/scim/v2{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, SCIM_JSON);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                .body(b.to_string());
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// Everything the churn tasks use.
struct Ctx<'a> {
    tg: &'a Toolgate,
    scim: Scim,
    http: reqwest::Client,
    shared: &'a Shared,
    /// The callers' groups (their policies are changed, never so that `echo` is refused).
    caller_groups: Vec<String>,
    echo: String,
    side: String,
    churn_group: String,
    deadline: Instant,
}

impl Ctx<'_> {
    /// A SCIM request that must answer `want`; an error of kind `scim: {what}` otherwise.
    async fn scim(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: &[u16],
    ) -> Option<Value> {
        let t0 = Instant::now();
        let r = self.scim.send(method, path, body).await;
        self.shared.scim_done(t0.elapsed());
        match r {
            Ok((s, v)) if want.contains(&s.as_u16()) => Some(v),
            Ok((s, v)) => {
                self.shared
                    .error(format!("scim: {what}: HTTP {}", s.as_u16()), v.to_string());
                None
            }
            Err(e) => {
                self.shared
                    .error(format!("scim: {what}: {}", classify(&e)), format!("{e:#}"));
                None
            }
        }
    }

    /// An admin API request; an error of kind `admin: {what}` when it fails.
    async fn admin(&self, what: &str, method: Method, path: &str, body: Value) -> Option<Value> {
        let t0 = Instant::now();
        let r = self.tg.api(method, path, body).await;
        self.shared.admin_done(t0.elapsed());
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.shared
                    .error(format!("admin: {what}: {}", classify(&e)), format!("{e:#}"));
                None
            }
        }
    }
}

/// Policy change `k` (every 4 changes go to the next caller group): give the group a rule on the
/// side connector, block `big` on echo (`echo` stays allowed by `*`), take the side rule away,
/// unblock `big`. Every change republishes the snapshot the calls are decided on.
async fn policy_change(ctx: &Ctx<'_>, k: usize) {
    let group = &ctx.caller_groups[(k / 4) % ctx.caller_groups.len()];
    let (what, method, connector, body) = match k % 4 {
        0 => (
            "put side rule",
            Method::PUT,
            &ctx.side,
            json!({"allow": ["echo"], "block": []}),
        ),
        1 => (
            "block big on echo",
            Method::PUT,
            &ctx.echo,
            json!({"allow": ["*"], "block": ["big"]}),
        ),
        2 => ("delete side rule", Method::DELETE, &ctx.side, Value::Null),
        _ => (
            "unblock big on echo",
            Method::PUT,
            &ctx.echo,
            json!({"allow": ["*"], "block": []}),
        ),
    };
    if ctx
        .admin(
            what,
            method,
            &format!("/groups/{group}/policies/{connector}"),
            body,
        )
        .await
        .is_some()
    {
        ctx.shared.policy_changed();
    }
}

async fn policy_churn(ctx: &Ctx<'_>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut k = 0;
    loop {
        tick.tick().await;
        if Instant::now() >= ctx.deadline {
            return;
        }
        policy_change(ctx, k).await;
        k += 1;
    }
}

/// A user the SCIM churn created: their id and personal token.
struct Churned {
    id: String,
    token: String,
}

/// Creates user `i` through SCIM, adds them to the churn group, gives them a personal token
/// (admin API) and makes one call with it, which the group's rule must allow.
async fn enrol(ctx: &Ctx<'_>, i: u64) -> Option<Churned> {
    let name = format!("churn-{i}@example.com");
    let user = ctx
        .scim(
            "create user",
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [USER_URN],
                "userName": name,
                "externalId": format!("churn-{i}"),
                "active": true,
                "displayName": format!("Churn {i}"),
                "emails": [{"type": "work", "primary": true, "value": name}],
            })),
            &[201],
        )
        .await?;
    let Some(id) = user["id"].as_str().map(str::to_string) else {
        ctx.shared
            .error("scim: create user: no id".into(), user.to_string());
        return None;
    };
    ctx.shared.churn_created.fetch_add(1, Ordering::Relaxed);
    ctx.scim(
        "add member",
        Method::PATCH,
        &format!("/Groups/{}", ctx.churn_group),
        Some(json!({"schemas": [PATCH_URN], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": id}]}
        ]})),
        &[200, 204],
    )
    .await?;
    if i.is_multiple_of(10) {
        let filter = format!("userName eq \"{name}\"");
        let found = ctx
            .scim(
                "filter users",
                Method::GET,
                &format!(
                    "/Users?filter={}",
                    form_urlencode(&filter) // the filter has spaces and quotes
                ),
                None,
                &[200],
            )
            .await;
        if let Some(v) = found
            && v["totalResults"] != json!(1)
        {
            ctx.shared
                .error("scim: filter users: not exactly one".into(), v.to_string());
        }
    }
    let t = ctx
        .admin(
            "create token",
            Method::POST,
            &format!("/users/{id}/tokens"),
            json!({"name": "churn"}),
        )
        .await?;
    let Some(token) = t["token"].as_str().map(str::to_string) else {
        ctx.shared
            .error("admin: create token: no token".into(), t.to_string());
        return None;
    };
    let target = Target {
        label: "churn".into(),
        url: format!("{}/mcp", ctx.tg.base),
        token: Some(token.clone()),
    };
    let called = async {
        let mut s = Session::open(&ctx.http, &target).await?;
        let r = s
            .call(r#"{"name":"echo__echo","arguments":{"text":"churn"}}"#)
            .await;
        s.close().await;
        r
    }
    .await;
    match called {
        Ok(_) => {
            ctx.shared.churn_calls.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => ctx.shared.error(
            format!("churn: member's call: {}", classify(&e)),
            format!("{e:#}"),
        ),
    }
    Some(Churned { id, token })
}

/// Takes the user out of the group, disables them (their token must then be refused with 401)
/// and deletes them.
async fn retire(ctx: &Ctx<'_>, u: Churned) {
    let id = &u.id;
    ctx.scim(
        "remove member",
        Method::PATCH,
        &format!("/Groups/{}", ctx.churn_group),
        Some(json!({"schemas": [PATCH_URN], "Operations": [
            {"op": "Remove", "path": format!("members[value eq \"{id}\"]")}
        ]})),
        &[200, 204],
    )
    .await;
    ctx.scim(
        "disable user",
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH_URN], "Operations": [
            {"op": "Replace", "path": "active", "value": false}
        ]})),
        &[200, 204],
    )
    .await;
    let res = ctx
        .http
        .post(format!("{}/mcp", ctx.tg.base))
        .bearer_auth(&u.token)
        .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{}","capabilities":{{}},"clientInfo":{{"name":"soak","version":"1"}}}}}}"#,
            client::PROTOCOL_VERSION
        ))
        .send()
        .await;
    match res {
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
            ctx.shared.disabled_refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(r) => ctx.shared.error(
            format!(
                "churn: disabled user's token not refused: HTTP {}",
                r.status().as_u16()
            ),
            format!("user {id}"),
        ),
        Err(e) => ctx.shared.error(
            format!(
                "churn: disabled user's initialize: {}",
                classify(&anyhow::Error::from(e))
            ),
            format!("user {id}"),
        ),
    }
    ctx.scim(
        "delete user",
        Method::DELETE,
        &format!("/Users/{id}"),
        None,
        &[204],
    )
    .await;
    ctx.shared.churn_retired.fetch_add(1, Ordering::Relaxed);
}

async fn scim_churn(ctx: &Ctx<'_>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live: VecDeque<Churned> = VecDeque::new();
    let mut i = 0u64;
    loop {
        tick.tick().await;
        if Instant::now() >= ctx.deadline {
            return;
        }
        if let Some(u) = enrol(ctx, i).await {
            live.push_back(u);
        }
        i += 1;
        while live.len() > CHURN_LAG {
            if let Some(u) = live.pop_front() {
                retire(ctx, u).await;
            }
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Reads the session's GET stream until it ends; an end before the run stops is an error.
fn drain(mut res: reqwest::Response, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (kind, detail) = loop {
            match res.chunk().await {
                Ok(Some(c)) => {
                    shared
                        .stream_bytes
                        .fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                Ok(None) => break ("stream: ended by the server".to_string(), String::new()),
                Err(e) => {
                    let e = anyhow::Error::from(e);
                    break (format!("stream: {}", classify(&e)), format!("{e:#}"));
                }
            }
        };
        if !shared.stopping.load(Ordering::SeqCst) {
            shared.error(kind, detail);
        }
    })
}

/// Session `i`'s call loop: one call every `gap` from `first` until `deadline`, latency counted
/// from the intended send time (a stall is not hidden by the calls it delayed).
fn caller(
    mut s: Session,
    params: Arc<str>,
    first: Instant,
    gap: Duration,
    deadline: Instant,
    shared: Arc<Shared>,
) -> tokio::task::JoinHandle<Session> {
    tokio::spawn(async move {
        let mut at = first;
        while at < deadline {
            tokio::time::sleep_until(at.into()).await;
            match s.call(&params).await {
                Ok(_) => shared.call_ok(at.elapsed()),
                Err(e) => shared.call_failed(&e),
            }
            at += gap;
        }
        s
    })
}

/// The MCP rate limit per principal the server runs with (from the environment given to it).
fn mcp_limit(env: &[(String, String)]) -> u32 {
    env.iter()
        .rev()
        .find(|(k, _)| k == "TOOLGATE_RATE_LIMIT_MCP_PER_SEC")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(DEFAULT_MCP_LIMIT)
}

fn git_dirty() -> bool {
    std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty())
}

/// Lines of the server log at WARN and ERROR, and a few distinct examples (timestamps cut).
fn scan_log(text: &str) -> (u64, u64, Vec<String>) {
    let (mut warn, mut error) = (0, 0);
    let mut examples: Vec<String> = Vec::new();
    for line in text.lines() {
        let level = line.split_whitespace().take(3).find_map(|w| match w {
            "WARN" => Some(false),
            "ERROR" => Some(true),
            _ => None,
        });
        match level {
            Some(true) => error += 1,
            Some(false) => warn += 1,
            None => continue,
        }
        let body = line
            .split_once(if level == Some(true) { "ERROR" } else { "WARN" })
            .map_or(line, |(_, b)| b)
            .trim();
        let body: String = body.chars().take(200).collect();
        if examples.len() < 5 && !examples.contains(&body) {
            examples.push(body);
        }
    }
    (warn, error, examples)
}

/// Session `i` opened, with the task reading its GET stream.
type Opened = (usize, Session, Option<tokio::task::JoinHandle<()>>);

/// Runs the soak and returns the figures (the caller prints them and judges the verdict).
pub async fn run(opts: &Options) -> Result<Report> {
    let progress = Progress(Instant::now());
    let machine = Machine::detect();
    let uncommitted_changes = git_dirty();
    let binary_age_min = std::fs::metadata(&opts.toolgate)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(0.0, |d| d.as_secs_f64() / 60.0);
    let shared = Arc::new(Shared::new());
    // Short pool idle time: extra connections a burst opened close within the minute.
    let http = client::http_client_idle(Duration::from_secs(20));
    if opts.sessions == 0 || opts.principals == 0 || opts.rate <= 0.0 {
        bail!("--sessions, --principals and --rate must be positive");
    }

    // The server's default limits, stated so a changed default does not silently change the
    // soak; --gateway-env comes after and wins.
    let mut env = vec![
        (
            "TOOLGATE_RATE_LIMIT_MCP_PER_SEC".to_string(),
            DEFAULT_MCP_LIMIT.to_string(),
        ),
        ("TOOLGATE_RATE_LIMIT_SCIM_PER_SEC".to_string(), "100".into()),
    ];
    env.extend(opts.gateway_env.iter().cloned());
    let limit = mcp_limit(&env);
    let per_principal = opts.rate / opts.principals as f64;
    if limit > 0 && per_principal > f64::from(limit) * LIMIT_SHARE {
        bail!(
            "{per_principal:.0} calls/s per principal is over {:.0} % of the MCP rate limit of \
             {limit}/s: use more --principals",
            LIMIT_SHARE * 100.0
        );
    }

    let upstream = spawn_echo_upstream(&opts.echo_upstream, 1, 1).await?;
    // The admin API has a client of its own, so dropping the agents' client at the end closes
    // every connection the agents held.
    let admin_http = client::http_client_idle(Duration::from_secs(20));
    let mut tg = Toolgate::prepare(&opts.toolgate, &env, &admin_http).await?;
    let scim_token = tg.token("soak-scim", "scim").await?;
    tg.start().await?;
    let pid = tg.pid().context("toolgate pid")?;
    progress.say(format!(
        "toolgate (pid {pid}), echo-upstream at {}",
        upstream.url
    ));
    let port_of = |url: &str| {
        url.rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(0)
    };
    let ports = Ports {
        listen: port_of(&tg.base),
        upstream: port_of(&upstream.url),
    };

    let echo = tg
        .connector("echo", &format!("{}/mcp", upstream.url))
        .await?;
    let side = tg
        .connector("side", &format!("{}/mcp", upstream.url))
        .await?;
    let mut callers = Vec::new();
    let mut targets = Vec::new();
    for p in 0..opts.principals {
        let a = tg
            .agent(&format!("soak-{p:02}"), std::slice::from_ref(&echo), &["*"])
            .await?;
        targets.push(Target {
            label: format!("soak-{p:02}"),
            url: format!("{}/mcp", tg.base),
            token: Some(a.token),
        });
        callers.push(a.group);
    }
    let scim = Scim {
        http: http.clone(),
        base: tg.base.clone(),
        token: scim_token,
    };
    let (status, group) = scim
        .send(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP_URN], "displayName": "soak-churn"})),
        )
        .await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("SCIM POST /Groups: HTTP {status}: {group}");
    }
    let churn_group = group["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no id in {group}"))?
        .to_string();
    tg.policy(&churn_group, &echo, &["echo"]).await?;

    let rss_before_sessions_mib = mib(proc_kib(pid, "VmRSS").unwrap_or(0));
    let fds_before_sessions = fd_count(pid);
    progress.say(format!(
        "opening {} sessions over {} principals{}",
        opts.sessions,
        opts.principals,
        if opts.streams {
            ", each with its GET stream"
        } else {
            ""
        }
    ));
    // Each session costs 4 requests (initialize, initialized, tools/list, GET): opened at a
    // pace that keeps each principal under the rate limit.
    let open_gap = (limit > 0).then(|| {
        Duration::from_secs_f64(1.0 / (opts.principals as f64 * f64::from(limit) * 0.8 / 4.0))
    });
    let open_start = Instant::now();
    let opened: Vec<Result<Opened>> = futures::stream::iter(0..opts.sessions)
        .map(|i| {
            let target = &targets[i % opts.principals];
            let http = &http;
            let shared = shared.clone();
            async move {
                if let Some(g) = open_gap {
                    tokio::time::sleep_until((open_start + g * i as u32).into()).await;
                }
                let mut s = Session::open(http, target).await?;
                let (tools, _) = s
                    .request::<client::ToolList>("tools/list", "{}")
                    .await
                    .context("tools/list")?;
                if tools.tools.is_empty() {
                    bail!("{}: tools/list is empty", target.label);
                }
                let stream = if opts.streams {
                    Some(drain(s.open_stream().await?, shared))
                } else {
                    None
                };
                Ok((i, s, stream))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut sessions = Vec::with_capacity(opts.sessions);
    let mut streams = Vec::new();
    for r in opened {
        let (i, s, st) = r.context("opening the sessions")?;
        sessions.push((i, s));
        streams.extend(st);
    }
    sessions.sort_by_key(|(i, _)| *i);
    let setup_s = progress.0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Load.
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut samples = vec![shared.sample(0.0, pid, tg.dir())];
    let fd_kinds_start = fd_kinds(pid, ports);
    progress.say(format!(
        "{} sessions open: RSS {:.1} MiB, {} fds ({fd_kinds_start:?}); load for {} s",
        sessions.len(),
        samples[0].rss_mib,
        samples[0].fds,
        opts.duration.as_secs()
    ));
    let n = sessions.len();
    let gap = Duration::from_secs_f64(n as f64 / opts.rate);
    let params: Arc<str> =
        r#"{"name":"echo__echo","arguments":{"text":"soak: a short tool argument"}}"#.into();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|(i, s)| {
            caller(
                s,
                params.clone(),
                start + gap.mul_f64(i as f64 / n as f64),
                gap,
                deadline,
                shared.clone(),
            )
        })
        .collect();
    let ctx = Ctx {
        tg: &tg,
        scim,
        http: http.clone(),
        shared: &shared,
        caller_groups: callers,
        echo: echo.clone(),
        side,
        churn_group,
        deadline,
    };
    let duration_s = opts.duration.as_secs_f64();
    let mut fd_kinds_base = BTreeMap::new();
    let sampler = async {
        let mut k = 1u32;
        loop {
            let at = (start + opts.sample_every * k).min(deadline);
            tokio::time::sleep_until(at.into()).await;
            let s = shared.sample((at - start).as_secs_f64(), pid, tg.dir());
            if fd_kinds_base.is_empty() && s.at_s >= duration_s * BASE_WINDOW.0 - 1e-6 {
                fd_kinds_base = fd_kinds(pid, ports);
            }
            progress.say(format!(
                "t={:4.0}s RSS {:6.1} MiB ({:.1} anon), {} fds, {} threads, database {:.1} MiB; {} calls ({} \
                 failed), p50 {:.2} ms, p99 {:.2} ms; {} policy changes, {} SCIM requests; errors \
                 {:?}",
                s.at_s,
                s.rss_mib,
                s.anon_mib,
                s.fds,
                s.threads,
                s.db_mib,
                s.calls_ok + s.calls_failed,
                s.calls_failed,
                s.p50_ms,
                s.p99_ms,
                s.policy_changes,
                s.scim_requests,
                s.errors_by_kind
            ));
            samples.push(s);
            if at >= deadline {
                return;
            }
            k += 1;
        }
    };
    tokio::join!(
        sampler,
        policy_churn(&ctx, opts.policy_every),
        scim_churn(&ctx, opts.scim_every)
    );
    let mut sessions = Vec::with_capacity(n);
    for t in tasks {
        sessions.push(t.await.context("call task")?);
    }
    let fd_kinds_end = fd_kinds(pid, ports);
    shared.stopping.store(true, Ordering::SeqCst);
    let rest = shared.sample(duration_s, pid, tg.dir());
    if let Some(last) = samples.last_mut() {
        fold_into(last, rest);
    }
    let rss_peak_mib = mib(proc_kib(pid, "VmHWM").unwrap_or(0));
    let upstream_rss_end_mib = mib(proc_kib(upstream.pid(), "VmRSS").unwrap_or(0));

    progress.say("closing the sessions");
    crate::drive::close_sessions(sessions).await;
    for s in &streams {
        s.abort();
    }
    // Every agent connection ends with the client that holds it.
    drop(ctx);
    drop(http);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after_close_mib = mib(proc_kib(pid, "VmRSS").unwrap_or(0));
    let fds_after_close = fd_count(pid);
    let fd_kinds_after_close = fd_kinds(pid, ports);
    tg.stop().await?;
    let log = tg.log_text();
    let (server_log_warn, server_log_error, server_log_examples) = scan_log(&log);
    progress.say("done");

    let mut calls = stats::histogram();
    let (mut calls_failed, mut errors_total) = (0, 0);
    for s in &samples {
        if let Some(h) = &s.hist {
            calls.add(h).expect("same histogram bounds");
        }
        calls_failed += s.calls_failed;
        errors_total += s.errors;
    }
    let points: Vec<Point> = samples
        .iter()
        .filter(|s| s.at_s > 0.0)
        .map(|s| Point {
            at_s: s.at_s,
            rss_mib: s.rss_mib,
            fds: s.fds,
        })
        .collect();
    let verdict = judge(&points, duration_s, errors_total, opts.limits);
    let policy_changes = samples.iter().map(|s| s.policy_changes).sum();
    let t = lock(&shared.totals);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        machine,
        uncommitted_changes,
        binary_age_min,
        gateway_env: opts
            .gateway_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        sessions: n,
        principals: opts.principals,
        rate: opts.rate,
        duration_s,
        streams: opts.streams,
        mcp_limit_per_sec: limit,
        policy_every_s: opts.policy_every.as_secs_f64(),
        scim_every_s: opts.scim_every.as_secs_f64(),
        setup_s,
        rss_before_sessions_mib,
        fds_before_sessions,
        rows: rows(&samples, 60.0),
        samples,
        calls_ok: calls.len(),
        calls_failed,
        call_p50_ms: ms(&calls, 0.5),
        call_p99_ms: ms(&calls, 0.99),
        call_max_ms: calls.max() as f64 / 1000.0,
        admin_requests: t.admin.len(),
        policy_changes,
        admin_p50_ms: ms(&t.admin, 0.5),
        admin_p99_ms: ms(&t.admin, 0.99),
        scim_requests: t.scim.len(),
        scim_p50_ms: ms(&t.scim, 0.5),
        scim_p99_ms: ms(&t.scim, 0.99),
        churn_created: shared.churn_created.load(Ordering::Relaxed),
        churn_retired: shared.churn_retired.load(Ordering::Relaxed),
        churn_calls: shared.churn_calls.load(Ordering::Relaxed),
        disabled_refused: shared.disabled_refused.load(Ordering::Relaxed),
        stream_bytes: shared.stream_bytes.load(Ordering::Relaxed),
        errors: t.errors.clone(),
        fd_kinds_base,
        fd_kinds_end,
        fd_kinds_after_close,
        rss_after_close_mib,
        fds_after_close,
        rss_peak_mib,
        upstream_rss_end_mib,
        server_log_bytes: log.len() as u64,
        server_log_warn,
        server_log_error,
        server_log_examples,
        verdict,
    })
}

fn ok(b: bool) -> &'static str {
    if b { "pass" } else { "**FAIL**" }
}

impl Report {
    /// The report as Markdown: set-up, the curve (one row per minute), totals, errors, verdict.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let v = &self.verdict;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Machine: {} cores ({}), {:.1} GiB RAM, Linux {}; commit {}{}, toolgate binary built \
             {:.0} min before the run; toolgate, the echo upstream and the load generator share \
             the cores.\n",
            m.cores,
            m.cpu,
            m.mem_gib,
            m.kernel,
            m.commit,
            if self.uncommitted_changes {
                " plus uncommitted changes in the working tree"
            } else {
                ""
            },
            self.binary_age_min
        );
        if !self.gateway_env.is_empty() {
            let _ = writeln!(
                s,
                "**toolgate ran with `{}`.**\n",
                self.gateway_env.join(" ")
            );
        }
        let _ = writeln!(
            s,
            "Load: {} MCP sessions{} over {} principals (personal tokens, one group each), \
             `tools/call echo__echo` at {:.0} calls/s in total (each session every {:.1} s, open \
             loop: latency from the intended send time) for {:.0} s; MCP rate limit {} per \
             principal ({:.0} calls/s each). In parallel: a policy change of a caller's group every \
             {:.1} s through the admin API (rule on a second connector put/deleted, `big` \
             blocked/unblocked on echo; `echo` stays allowed), and a SCIM churn step every {:.1} s \
             (create a user, add to a group with a rule, personal token, one call; {} steps later: \
             remove from the group, disable, check the token gets 401, delete). Set-up took {:.1} s.\n",
            self.sessions,
            if self.streams {
                " (each holding its GET SSE stream)"
            } else {
                ""
            },
            self.principals,
            self.rate,
            self.sessions as f64 / self.rate,
            self.duration_s,
            if self.mcp_limit_per_sec == 0 {
                "off".to_string()
            } else {
                format!("{}/s", self.mcp_limit_per_sec)
            },
            self.rate / self.principals as f64,
            self.policy_every_s,
            self.scim_every_s,
            CHURN_LAG,
            self.setup_s,
        );
        let _ = writeln!(
            s,
            "| minute | RSS MiB | of it anon | open fds | threads | database MiB | calls | calls/s | errors | p50 ms | p99 ms | max ms | policy changes | SCIM requests |"
        );
        let _ = writeln!(
            s,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let calls = r.calls_ok + r.calls_failed;
            if r.at_s == 0.0 {
                let _ = writeln!(
                    s,
                    "| 0 (sessions open, before the load) | {:.1} | {:.1} | {} | {} | {:.1} | | | | | | | | |",
                    r.rss_mib, r.anon_mib, r.fds, r.threads, r.db_mib
                );
                continue;
            }
            let _ = writeln!(
                s,
                "| {:.0} | {:.1} | {:.1} | {} | {} | {:.1} | {} | {:.1} | {} | {:.2} | {:.2} | {:.1} | {} | {} |",
                r.at_s / 60.0,
                r.rss_mib,
                r.anon_mib,
                r.fds,
                r.threads,
                r.db_mib,
                calls,
                calls as f64 / r.seconds.max(1e-9),
                r.errors,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.policy_changes,
                r.scim_requests
            );
        }
        let _ = writeln!(
            s,
            "\nBefore the sessions: RSS {:.1} MiB, {} fds. After closing them (5 s later): RSS \
             {:.1} MiB, {} fds. Peak RSS (VmHWM) {:.1} MiB. echo-upstream RSS at the end {:.1} MiB.\n",
            self.rss_before_sessions_mib,
            self.fds_before_sessions,
            self.rss_after_close_mib,
            self.fds_after_close,
            self.rss_peak_mib,
            self.upstream_rss_end_mib
        );
        let _ = writeln!(s, "| totals | |\n|---|---:|");
        let _ = writeln!(
            s,
            "| tools/call answered / failed | {} / {} |",
            self.calls_ok, self.calls_failed
        );
        let _ = writeln!(
            s,
            "| tools/call p50 / p99 / max ms | {:.2} / {:.2} / {:.1} |",
            self.call_p50_ms, self.call_p99_ms, self.call_max_ms
        );
        let _ = writeln!(
            s,
            "| policy changes made; admin API requests (policy changes and churned users' tokens), p50 / p99 ms | {}; {} ({:.1} / {:.1}) |",
            self.policy_changes, self.admin_requests, self.admin_p50_ms, self.admin_p99_ms
        );
        let _ = writeln!(
            s,
            "| SCIM requests p50 / p99 ms | {} ({:.1} / {:.1}) |",
            self.scim_requests, self.scim_p50_ms, self.scim_p99_ms
        );
        let _ = writeln!(
            s,
            "| churned users created / retired; their calls answered; disabled tokens refused (401) | {} / {}; {}; {} |",
            self.churn_created, self.churn_retired, self.churn_calls, self.disabled_refused
        );
        let _ = writeln!(
            s,
            "| bytes read from the GET streams | {} |",
            self.stream_bytes
        );
        let _ = writeln!(
            s,
            "| server log: bytes, WARN lines, ERROR lines | {}, {}, {} |",
            self.server_log_bytes, self.server_log_warn, self.server_log_error
        );
        for e in &self.server_log_examples {
            let _ = writeln!(s, "| log example | `{}` |", e.replace('|', "\\|"));
        }
        if self.errors.is_empty() {
            let _ = writeln!(s, "\nErrors: none.");
        } else {
            let _ = writeln!(
                s,
                "\n| error kind | count | first messages |\n|---|---:|---|"
            );
            for (k, t) in &self.errors {
                let _ = writeln!(
                    s,
                    "| {k} | {} | {} |",
                    t.count,
                    t.examples
                        .iter()
                        .map(|e| format!("`{}`", e.replace('|', "\\|").replace('\n', " ")))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
        let kinds = |k: &BTreeMap<String, u64>| {
            k.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "\nOpen fds by kind at {:.0} s: {}; at the end: {}; after closing the sessions: {}.",
            v.base_window_s.0,
            kinds(&self.fd_kinds_base),
            kinds(&self.fd_kinds_end),
            kinds(&self.fd_kinds_after_close)
        );
        let _ = writeln!(
            s,
            "\nVerdict (baseline: lowest reading of {:.0}-{:.0} s; end: lowest of {:.0}-{:.0} s):\n",
            v.base_window_s.0, v.base_window_s.1, v.end_window_s.0, v.end_window_s.1
        );
        let _ = writeln!(
            s,
            "- errors not caused by the test: {}, {}",
            v.errors,
            ok(v.errors_ok)
        );
        let _ = writeln!(
            s,
            "- RSS {:.1} -> {:.1} MiB ({:+.1} %, limit +{:.0} %; slope from the baseline on {:+.2} MiB/min), {}",
            v.rss_base_mib,
            v.rss_end_mib,
            v.rss_growth * 100.0,
            v.limits.rss_growth * 100.0,
            v.rss_slope_mib_per_min,
            ok(v.rss_ok)
        );
        let _ = writeln!(
            s,
            "- open fds {} -> {} ({:+}, limit +{}), {}",
            v.fd_base,
            v.fd_end,
            v.fd_end as i64 - v.fd_base as i64,
            v.limits.fd_margin,
            ok(v.fds_ok)
        );
        let _ = writeln!(s, "\n**{}**", if v.pass() { "PASS" } else { "FAIL" });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        rss_growth: 0.1,
        fd_margin: 32,
    };

    /// A 600 s run sampled every 10 s.
    fn run(rss: impl Fn(f64) -> f64, fds: impl Fn(f64) -> u64) -> Vec<Point> {
        (1..=60)
            .map(|k| {
                let at_s = k as f64 * 10.0;
                Point {
                    at_s,
                    rss_mib: rss(at_s),
                    fds: fds(at_s),
                }
            })
            .collect()
    }

    #[test]
    fn a_flat_run_passes() {
        let v = judge(&run(|_| 150.0, |_| 1050), 600.0, 0, LIMITS);
        assert!(v.pass(), "{v:?}");
        assert_eq!((v.rss_base_mib, v.rss_end_mib), (150.0, 150.0));
        assert_eq!((v.fd_base, v.fd_end), (1050, 1050));
        assert_eq!(v.base_window_s, (240.0, 300.0));
        assert_eq!(v.end_window_s, (540.0, 600.0));
        assert!(v.rss_slope_mib_per_min.abs() < 1e-9);
    }

    #[test]
    fn any_error_fails() {
        let v = judge(&run(|_| 150.0, |_| 1050), 600.0, 1, LIMITS);
        assert!(!v.errors_ok && v.rss_ok && v.fds_ok && !v.pass());
    }

    #[test]
    fn steady_rss_growth_beyond_the_limit_fails() {
        // +5 MiB a minute: 170 MiB at minute 4, 195 at minute 9 (+14.7 %).
        let v = judge(&run(|t| 150.0 + t / 12.0, |_| 1050), 600.0, 0, LIMITS);
        assert!(!v.rss_ok, "{v:?}");
        assert!((v.rss_base_mib - 170.0).abs() < 1e-9);
        assert!((v.rss_end_mib - 195.0).abs() < 1e-9, "{}", v.rss_end_mib);
        assert!((v.rss_slope_mib_per_min - 5.0).abs() < 1e-9);
        // +1 MiB a minute stays inside 10 %.
        let v = judge(&run(|t| 150.0 + t / 60.0, |_| 1050), 600.0, 0, LIMITS);
        assert!(v.rss_ok, "{v:?}");
    }

    #[test]
    fn warm_up_before_the_baseline_is_not_growth() {
        // The first full run's curve (MiB at the end of each minute): bounded warm-up to minute
        // 4, then flat. Judged from minute 2 it would have grown 20.8 %.
        let minutes = [
            199.8, 236.9, 275.2, 283.0, 284.7, 285.2, 285.3, 286.1, 286.2, 286.4,
        ];
        let points: Vec<Point> = minutes
            .iter()
            .enumerate()
            .map(|(m, rss)| Point {
                at_s: (m + 1) as f64 * 60.0,
                rss_mib: *rss,
                fds: 1050,
            })
            .collect();
        let v = judge(&points, 600.0, 0, LIMITS);
        assert!(v.pass(), "{v:?}");
        assert_eq!((v.rss_base_mib, v.rss_end_mib), (283.0, 286.2));
        assert!(v.rss_growth < 0.012, "{}", v.rss_growth);
    }

    #[test]
    fn a_peak_at_the_end_is_not_growth_but_a_raised_floor_is() {
        let peak = |t: f64| if t == 580.0 { 260.0 } else { 150.0 };
        assert!(judge(&run(peak, |_| 1050), 600.0, 0, LIMITS).rss_ok);
        let burst = |t: f64| {
            if (570.0..590.0).contains(&t) {
                1200
            } else {
                1050
            }
        };
        assert!(judge(&run(|_| 150.0, burst), 600.0, 0, LIMITS).fds_ok);
        // Two descriptors leaked every 10 s: 1098 at minute 4, 1158 at minute 9.
        let leak = |t: f64| 1050 + (t / 5.0) as u64;
        let v = judge(&run(|_| 150.0, leak), 600.0, 0, LIMITS);
        assert!(!v.fds_ok, "{v:?}");
        assert_eq!((v.fd_base, v.fd_end), (1098, 1158));
        // A few more pooled connections stay inside the margin.
        let few = |t: f64| if t > 300.0 { 1070 } else { 1050 };
        assert!(judge(&run(|_| 150.0, few), 600.0, 0, LIMITS).fds_ok);
    }

    #[test]
    fn short_runs_fall_back_to_the_nearest_readings() {
        // 30 s sampled every 10 s: no reading in [6, 9) s, the nearest to 6 is at 10 s.
        let points: Vec<Point> = [(10.0, 100.0, 500), (20.0, 110.0, 505), (30.0, 130.0, 510)]
            .into_iter()
            .map(|(at_s, rss_mib, fds)| Point { at_s, rss_mib, fds })
            .collect();
        let v = judge(&points, 30.0, 0, LIMITS);
        assert_eq!((v.rss_base_mib, v.fd_base), (100.0, 500));
        assert_eq!((v.rss_end_mib, v.fd_end), (130.0, 510));
        assert!(!v.rss_ok && v.fds_ok);
        let empty = judge(&[], 600.0, 0, LIMITS);
        assert_eq!(empty.rss_growth, 0.0);
        assert!(empty.pass());
    }

    #[test]
    fn slope_of_a_line_and_of_too_little() {
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), 0.0);
    }

    #[test]
    fn failed_calls_are_classified_by_status_code_and_tool_error() {
        assert_eq!(
            classify_message("tools/call: HTTP 429 Too Many Requests: slow down"),
            "HTTP 429"
        );
        assert_eq!(
            classify_message("JSON-RPC error -32602: tool not permitted"),
            "JSON-RPC -32602"
        );
        assert_eq!(classify_message("tool error"), "tool error");
        assert_eq!(
            classify_message("no answer to request 3 in the reply"),
            "other"
        );
        assert_eq!(
            classify(&anyhow!("POST: HTTP 503 Service Unavailable")),
            "HTTP 503"
        );
    }

    #[test]
    fn descriptor_kinds() {
        assert_eq!(fd_kind("socket:[12345]"), "socket");
        let ports = Ports {
            listen: 8080,
            upstream: 9000,
        };
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
           1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n\
           2: 0100007F:D432 0100007F:2328 08 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1\n";
        let tcp = parse_proc_net_tcp(table);
        assert_eq!(tcp[&111], (8080, 0, 0x0A));
        assert_eq!(tcp[&222], (8080, 0xD431, 0x01));
        let kind = |i: u64| socket_kind(tcp.get(&i).copied(), ports);
        assert_eq!(kind(111), "socket listening");
        assert_eq!(kind(222), "socket from agents");
        assert_eq!(kind(333), "socket to the upstream CLOSE_WAIT");
        assert_eq!(kind(444), "socket (not TCP)");
        assert_eq!(fd_kind("pipe:[77]"), "pipe");
        assert_eq!(fd_kind("anon_inode:[eventpoll]"), "anon_inode eventpoll");
        assert_eq!(
            fd_kind("/tmp/toolgate-bench-x/toolgate.db-wal"),
            "toolgate.db-wal"
        );
        assert_eq!(fd_kind("/dev/null"), "/dev/null");
        assert_eq!(fd_kind("/tmp/toolgate-bench-x/server.log"), "other file");
        // Our own descriptors are readable and include stdin/out/err or at least one socket.
        assert!(fd_count(std::process::id()) > 0);
    }

    fn sample(at_s: f64, rss_mib: f64, calls: &[u64]) -> Sample {
        let mut h = stats::histogram();
        for ms in calls {
            stats::record(&mut h, Duration::from_millis(*ms));
        }
        Sample {
            at_s,
            rss_mib,
            fds: 1000 + at_s as u64,
            threads: 5,
            anon_mib: rss_mib - 10.0,
            db_mib: at_s,
            calls_ok: h.len(),
            calls_failed: 0,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            policy_changes: 1,
            scim_requests: 2,
            hist: Some(h),
        }
    }

    #[test]
    fn rows_merge_samples_per_minute() {
        let mut samples = vec![sample(0.0, 100.0, &[])];
        for k in 1..=12 {
            samples.push(sample(k as f64 * 10.0, 100.0 + k as f64, &[k]));
        }
        samples.push(sample(125.0, 120.0, &[50]));
        let r = rows(&samples, 60.0);
        assert_eq!(r.len(), 4, "{r:?}");
        assert_eq!(r[0].at_s, 0.0);
        assert_eq!(r[0].calls_ok, 0);
        // Minute 1: samples at 10..=60 s, calls of 1..=6 ms; readings of the sample at 60 s.
        assert_eq!((r[1].at_s, r[1].rss_mib, r[1].fds), (60.0, 106.0, 1060));
        assert_eq!(r[1].calls_ok, 6);
        assert_eq!(r[1].seconds, 60.0);
        assert_eq!(r[1].policy_changes, 6);
        assert!((r[1].max_ms - 6.0).abs() < 0.01);
        assert_eq!(r[2].at_s, 120.0);
        // The last, partial period.
        assert_eq!((r[3].at_s, r[3].calls_ok, r[3].seconds), (125.0, 1, 5.0));
        assert!((r[3].p50_ms - 50.0).abs() < 0.1);
    }

    #[test]
    fn late_answers_fold_into_the_last_sample() {
        let mut last = sample(600.0, 150.0, &[1, 2]);
        let mut rest = sample(600.0, 150.0, &[100]);
        rest.calls_failed = 1;
        rest.errors = 1;
        rest.errors_by_kind.insert("call: timeout".into(), 1);
        fold_into(&mut last, rest);
        assert_eq!((last.calls_ok, last.calls_failed, last.errors), (3, 1, 1));
        assert!((last.max_ms - 100.0).abs() < 0.1);
        assert_eq!(last.errors_by_kind["call: timeout"], 1);
    }

    #[test]
    fn the_servers_mcp_limit_comes_from_its_environment() {
        let env = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(mcp_limit(&[]), DEFAULT_MCP_LIMIT);
        let both = env(&[
            ("TOOLGATE_RATE_LIMIT_MCP_PER_SEC", "100"),
            ("TOOLGATE_RATE_LIMIT_MCP_PER_SEC", "0"),
        ]);
        assert_eq!(
            mcp_limit(&both),
            0,
            "the last setting wins, as for the process"
        );
    }

    #[test]
    fn server_log_levels_are_counted() {
        let log = "2026-11-27T08:00:00.1Z  WARN toolgate::mcp: slow upstream\n\
                   2026-11-27T08:00:00.2Z ERROR toolgate::audit: write failed\n\
                   2026-11-27T08:00:00.3Z  INFO toolgate: listening WARN in text\n\
                   2026-11-27T08:00:00.4Z  WARN toolgate::mcp: slow upstream\n";
        let (warn, error, examples) = scan_log(log);
        assert_eq!((warn, error), (2, 1));
        assert_eq!(
            examples,
            vec![
                "toolgate::mcp: slow upstream",
                "toolgate::audit: write failed"
            ]
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            form_urlencode("userName eq \"a@b.c\""),
            "userName%20eq%20%22a%40b.c%22"
        );
    }
}
