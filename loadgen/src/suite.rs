//! `toolgate-loadgen suite` (what `make bench-proxy` runs): the echo upstream and a real release
//! toolgate (auth, policy, audit and DLP on, as installed), then every scenario of issue 8 with
//! the direct and the gateway side interleaved, and a Markdown report with the targets.

use crate::client::{self, Session, Target};
use crate::drive::{self, Op, Pace, Plan, Side};
use crate::gateway::{self, Toolgate, mib, proc_kib};
use crate::stats::{self, Comparison, Summary};
use crate::upstream::wide_connector;
use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// What the suite runs against and how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub toolgate: PathBuf,
    pub echo_upstream: PathBuf,
    /// `dist/index.js` of `@modelcontextprotocol/server-everything`; its scenario is skipped
    /// without it.
    pub everything: Option<PathBuf>,
    /// Extra environment of toolgate (experiments; named in the report).
    pub gateway_env: Vec<(String, String)>,
    pub phase: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    /// Concurrent sessions of the max-rate tools/call scenarios.
    pub sessions: Vec<usize>,
    /// Total calls per second of the fixed-rate scenario at 32 sessions.
    pub fixed_rate: f64,
    /// Sessions held open for the memory figure.
    pub idle_sessions: usize,
    /// Session setups timed per side.
    pub setup_samples: usize,
    /// Size of the large tool response (DLP scenario).
    pub big_bytes: usize,
    pub wide_tools: usize,
    pub wide_copies: usize,
}

/// One direct-vs-gateway measurement.
#[derive(Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    pub sessions: usize,
    pub load: String,
    pub result: Comparison,
}

/// Everything the suite measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// Extra environment toolgate ran with (experiments), as `KEY=VALUE`.
    pub gateway_env: Vec<String>,
    /// Spawn to `/readyz` 200, fresh database (migrated, no connectors), three starts.
    pub ready_ms: Vec<f64>,
    /// The same after all scenarios: restart with every connector of the run configured.
    pub ready_configured_ms: f64,
    pub connectors: usize,
    /// RSS 2 s after the first ready, nothing configured.
    pub rss_idle_mib: f64,
    /// RSS 2 s after setup (connector discovered, agent created), before any load.
    pub rss_idle_configured_mib: f64,
    /// RSS 2 s after the restart with every connector configured.
    pub rss_idle_restart_mib: f64,
    pub open_sessions: usize,
    /// Memory with `open_sessions` sessions held, after the call scenarios.
    pub held_after_load: Held,
    /// The same on the freshly restarted process.
    pub held_after_restart: Held,
    /// Peak RSS (VmHWM) of the gateway over the load scenarios.
    pub rss_peak_mib: f64,
    pub upstream_rss_mib: f64,
    pub rows: Vec<Row>,
    pub big_bytes: usize,
    pub listed_tools: usize,
    pub server_log_bytes: u64,
    pub seconds: f64,
}

/// The machine the figures come from.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub mem_gib: f64,
    pub kernel: String,
    pub commit: String,
}

impl Machine {
    pub(crate) fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            mem_gib: mem_kib as f64 / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            commit,
        }
    }
}

/// Progress on stderr, with the time since the suite started.
pub(crate) struct Progress(pub(crate) Instant);

impl Progress {
    pub(crate) fn say(&self, what: impl std::fmt::Display) {
        eprintln!("[loadgen {:6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

/// A child process stopped (killed) when dropped.
pub(crate) struct Child {
    child: tokio::process::Child,
    pub(crate) url: String,
}

impl Child {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

/// Starts `echo-upstream` (`wide_tools` x `wide_copies` for the tools/list scenario) and waits
/// for its address.
pub(crate) async fn spawn_echo_upstream(
    binary: &Path,
    wide_tools: usize,
    wide_copies: usize,
) -> Result<Child> {
    let mut child = tokio::process::Command::new(binary)
        .args([
            "--wide-tools",
            &wide_tools.to_string(),
            "--wide-copies",
            &wide_copies.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    let out = child.stdout.take().context("echo-upstream stdout")?;
    let mut lines = tokio::io::BufReader::new(out).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("echo-upstream did not start")??
        .ok_or_else(|| anyhow!("echo-upstream exited"))?;
    let base = line
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow!("echo-upstream said {line:?}"))?
        .to_string();
    Ok(Child { child, url: base })
}

async fn spawn_everything(index: &PathBuf) -> Result<Child> {
    if !index.exists() {
        bail!(
            "{} is missing (run `npm ci` in end2end/, or `make test-deps`)",
            index.display()
        );
    }
    let port = gateway::free_port()?;
    let child = tokio::process::Command::new("node")
        .arg(index)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawn node (server-everything)")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("server-everything did not listen on port {port} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Child {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    })
}

/// RSS of `pid` after `settle` of quiet, in MiB.
async fn rss_after(pid: u32, settle: Duration) -> f64 {
    tokio::time::sleep(settle).await;
    mib(proc_kib(pid, "VmRSS").unwrap_or(0))
}

/// Opens a session, lists its tools, and times both on each side in turn; closing is not timed.
async fn session_setup(
    http: &reqwest::Client,
    direct: &Target,
    gateway: &Target,
    samples: usize,
) -> Result<Comparison> {
    let mut hist = [stats::histogram(), stats::histogram()];
    let mut spent = [Duration::ZERO; 2];
    for i in 0..samples {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let target = if side == 0 { direct } else { gateway };
            let t0 = Instant::now();
            let mut s = Session::open(http, target).await?;
            s.list_tools().await?;
            let took = t0.elapsed();
            stats::record(&mut hist[side], took);
            spent[side] += took;
            s.close().await;
        }
    }
    Ok(Comparison {
        direct: Summary::of(&hist[0], 0, spent[0]),
        gateway: Summary::of(&hist[1], 0, spent[1]),
    })
}

/// One tools/call scenario: `n` sessions per side, compared under `plan`.
async fn calls(
    http: &reqwest::Client,
    direct: (&Target, &Op),
    gateway: (&Target, &Op),
    n: usize,
    plan: Plan,
) -> Result<Comparison> {
    let mut d = Side::open(http, direct.0.clone(), direct.1.clone(), n).await?;
    let mut g = Side::open(http, gateway.0.clone(), gateway.1.clone(), n).await?;
    let r = drive::compare(&mut d, &mut g, plan).await;
    d.close().await;
    g.close().await;
    Ok(r)
}

fn load_name(p: Pace) -> String {
    match p {
        Pace::Max => "max rate".into(),
        Pace::Rate(r) => format!("{r:.0} calls/s"),
    }
}

/// RSS (MiB) of toolgate before and while holding many idle sessions.
#[derive(Debug, Serialize)]
pub struct Held {
    pub before_mib: f64,
    /// Sessions initialized and their tools listed, over at most 32 connections.
    pub sessions_mib: f64,
    /// The same sessions each also holding its GET SSE stream (one connection each).
    pub streams_mib: f64,
}

impl Held {
    fn per_session_kib(&self, n: usize) -> f64 {
        (self.streams_mib - self.before_mib) * 1024.0 / n.max(1) as f64
    }
}

/// Opens `n` sessions on the gateway, lists their tools, then opens each one's GET stream,
/// reading toolgate's RSS at each step; closes them all.
async fn hold_sessions(http: &reqwest::Client, gw: &Target, n: usize, pid: u32) -> Result<Held> {
    let before_mib = rss_after(pid, Duration::from_secs(1)).await;
    let mut held = drive::open_sessions(http, gw, n).await?;
    futures::stream::iter(held.iter_mut())
        .map(Session::list_tools)
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let sessions_mib = rss_after(pid, Duration::from_secs(2)).await;
    // As agents keep them: each session also holds its GET stream, one connection each.
    let streams = futures::stream::iter(held.iter())
        .map(Session::open_stream)
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let streams_mib = rss_after(pid, Duration::from_secs(2)).await;
    drop(streams);
    drive::close_sessions(held).await;
    Ok(Held {
        before_mib,
        sessions_mib,
        streams_mib,
    })
}

/// Runs every scenario and returns the figures.
pub async fn run(opts: &Options) -> Result<Report> {
    let progress = Progress(Instant::now());
    let http = client::http_client();
    let machine = Machine::detect();

    let upstream =
        spawn_echo_upstream(&opts.echo_upstream, opts.wide_tools, opts.wide_copies).await?;
    progress.say(format!("echo-upstream at {}", upstream.url));

    let mut tg = Toolgate::prepare(&opts.toolgate, &opts.gateway_env, &http).await?;
    let mut ready_ms = Vec::new();
    let mut rss_idle_mib = 0.0;
    for i in 0..3 {
        let took = tg.start().await?;
        ready_ms.push(took.as_secs_f64() * 1000.0);
        if i == 0 {
            rss_idle_mib = rss_after(tg.pid().unwrap_or(0), Duration::from_secs(2)).await;
        }
        if i < 2 {
            tg.stop().await?;
        }
    }
    let pid = tg.pid().context("toolgate pid")?;
    progress.say(format!(
        "toolgate ready in {ready_ms:.0?} ms, idle RSS {rss_idle_mib:.1} MiB"
    ));

    let echo_id = tg
        .connector("echo", &format!("{}/mcp", upstream.url))
        .await?;
    let bench = tg
        .agent("bench", std::slice::from_ref(&echo_id), &["*"])
        .await?;
    let rss_idle_configured_mib = rss_after(pid, Duration::from_secs(2)).await;

    let direct = Target {
        label: "direct".into(),
        url: format!("{}/mcp", upstream.url),
        token: None,
    };
    let gw = Target {
        label: "gateway".into(),
        url: format!("{}/mcp", tg.base),
        token: Some(bench.token.clone()),
    };
    let text = json!({"text": "hello from the load generator, a short tool argument"});
    let d_echo = Op::call("echo", &text);
    let g_echo = Op::call("echo__echo", &text);
    let plan = |pace| Plan {
        warmup: opts.warmup,
        phase: opts.phase,
        rounds: opts.rounds,
        pace,
    };
    let mut rows = Vec::new();

    progress.say("session setup (initialize + tools/list)");
    let setup = session_setup(&http, &direct, &gw, opts.setup_samples).await?;
    rows.push(Row {
        scenario: "session setup: initialize + initialized + tools/list".into(),
        sessions: 1,
        load: "one after another".into(),
        result: setup,
    });

    for &n in &opts.sessions {
        progress.say(format!("tools/call echo, {n} sessions, max rate"));
        let r = calls(
            &http,
            (&direct, &d_echo),
            (&gw, &g_echo),
            n,
            plan(Pace::Max),
        )
        .await?;
        rows.push(Row {
            scenario: "tools/call echo".into(),
            sessions: n,
            load: load_name(Pace::Max),
            result: r,
        });
    }
    let pace = Pace::Rate(opts.fixed_rate);
    progress.say(format!("tools/call echo, 32 sessions, {}", load_name(pace)));
    let r = calls(&http, (&direct, &d_echo), (&gw, &g_echo), 32, plan(pace)).await?;
    rows.push(Row {
        scenario: "tools/call echo".into(),
        sessions: 32,
        load: load_name(pace),
        result: r,
    });

    progress.say(format!(
        "tools/call big: {} bytes through DLP",
        opts.big_bytes
    ));
    let bytes = json!({"bytes": opts.big_bytes});
    let (d_big, g_big) = (Op::call("big", &bytes), Op::call("echo__big", &bytes));
    for (t, op) in [(&direct, &d_big), (&gw, &g_big)] {
        let mut s = Session::open(&http, t).await?;
        let Op::Call(params) = op else { unreachable!() };
        let got = s.call(params).await?;
        if got != opts.big_bytes {
            bail!(
                "{}: big answered {got} characters of text, not {} (redacted?)",
                t.label,
                opts.big_bytes
            );
        }
        s.close().await;
    }
    let r = calls(&http, (&direct, &d_big), (&gw, &g_big), 1, plan(Pace::Max)).await?;
    rows.push(Row {
        scenario: format!(
            "tools/call big: {} MB text response, DLP scan",
            opts.big_bytes / 1_000_000
        ),
        sessions: 1,
        load: load_name(Pace::Max),
        result: r,
    });
    let rss_peak_mib = mib(proc_kib(pid, "VmHWM").unwrap_or(0));

    progress.say(format!("{} open sessions", opts.idle_sessions));
    let held_after_load = hold_sessions(&http, &gw, opts.idle_sessions, pid).await?;

    let mut connectors = 1;
    if let Some(index) = &opts.everything {
        progress.say("server-everything: tools/call echo, 32 sessions");
        let every = spawn_everything(index).await?;
        let id = tg.connector("everything", &every.url).await?;
        connectors += 1;
        tg.policy(&bench.group, &id, &["echo"]).await?;
        let message = json!({"message": "hello from the load generator"});
        let d = Target {
            label: "server-everything direct".into(),
            url: every.url.clone(),
            token: None,
        };
        let r = calls(
            &http,
            (&d, &Op::call("echo", &message)),
            (&gw, &Op::call("everything__echo", &message)),
            32,
            plan(Pace::Max),
        )
        .await?;
        rows.push(Row {
            scenario: "server-everything (Node) tools/call echo".into(),
            sessions: 32,
            load: load_name(Pace::Max),
            result: r,
        });
        drop(every);
    }

    progress.say(format!(
        "tools/list with {} connectors x {} tools",
        opts.wide_copies, opts.wide_tools
    ));
    let mut wide = Vec::with_capacity(opts.wide_copies);
    for i in 0..opts.wide_copies {
        let name = wide_connector(i);
        wide.push(
            tg.connector(&name, &format!("{}/wide/{i}", upstream.url))
                .await?,
        );
    }
    connectors += wide.len();
    let lister = tg.agent("lister", &wide, &["*"]).await?;
    let d_all = Target {
        label: "direct (one listing)".into(),
        url: format!("{}/wide-all", upstream.url),
        token: None,
    };
    let g_all = Target {
        label: "gateway (aggregate)".into(),
        url: format!("{}/mcp", tg.base),
        token: Some(lister.token),
    };
    let want = opts.wide_tools * opts.wide_copies;
    for t in [&d_all, &g_all] {
        let mut s = Session::open(&http, t).await?;
        let n = s.list_tools().await?;
        if n != want {
            bail!("{}: tools/list named {n} tools, not {want}", t.label);
        }
        s.close().await;
    }
    let r = calls(
        &http,
        (&d_all, &Op::ListTools),
        (&g_all, &Op::ListTools),
        1,
        plan(Pace::Max),
    )
    .await?;
    rows.push(Row {
        scenario: format!(
            "tools/list: {} connectors x {} tools ({want} listed)",
            opts.wide_copies, opts.wide_tools
        ),
        sessions: 1,
        load: load_name(Pace::Max),
        result: r,
    });

    progress.say("restart with every connector configured");
    let upstream_rss_mib = mib(proc_kib(upstream.pid(), "VmRSS").unwrap_or(0));
    tg.stop().await?;
    let ready_configured_ms = tg.start().await?.as_secs_f64() * 1000.0;
    let pid = tg.pid().context("toolgate pid")?;
    let rss_idle_restart_mib = rss_after(pid, Duration::from_secs(2)).await;
    progress.say(format!(
        "{} open sessions after the restart",
        opts.idle_sessions
    ));
    let held_after_restart = hold_sessions(&http, &gw, opts.idle_sessions, pid).await?;
    tg.stop().await?;
    let server_log_bytes = tg.log_bytes();
    drop(upstream);
    progress.say("done");

    Ok(Report {
        machine,
        gateway_env: opts
            .gateway_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        ready_ms,
        ready_configured_ms,
        connectors,
        rss_idle_mib,
        rss_idle_configured_mib,
        rss_idle_restart_mib,
        open_sessions: opts.idle_sessions,
        held_after_load,
        held_after_restart,
        rss_peak_mib,
        upstream_rss_mib,
        rows,
        big_bytes: opts.big_bytes,
        listed_tools: want,
        server_log_bytes,
        seconds: progress.0.elapsed().as_secs_f64(),
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

impl Report {
    fn row(&self, scenario: &str, sessions: usize, load: &str) -> Option<&Comparison> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.sessions == sessions && r.load.starts_with(load))
            .map(|r| &r.result)
    }

    /// The report as Markdown: machine, tables, targets.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Machine: {} cores ({}), {:.1} GiB RAM, Linux {}; commit {}; the load generator, the \
             echo upstream and toolgate share the cores. Suite wall time {:.0} s.\n",
            m.cores, m.cpu, m.mem_gib, m.kernel, m.commit, self.seconds
        );
        if !self.gateway_env.is_empty() {
            let _ = writeln!(
                s,
                "**Experiment: toolgate ran with `{}`; not the figures of the defaults.**\n",
                self.gateway_env.join(" ")
            );
        }
        let _ = writeln!(
            s,
            "| scenario | sessions | load | direct calls/s | gateway calls/s | ratio | direct p50 / p90 / p99 / max ms | gateway p50 / p90 / p99 / max ms | added p50 ms | added p99 ms | errors d/g |"
        );
        let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let pct = |x: &Summary| {
            format!(
                "{:.2} / {:.2} / {:.2} / {:.1}",
                x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms
            )
        };
        for r in &self.rows {
            let c = &r.result;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {:.2} | {:.2} | {}/{} |",
                r.scenario,
                r.sessions,
                r.load,
                c.direct.per_sec,
                c.gateway.per_sec,
                c.ratio(),
                pct(&c.direct),
                pct(&c.gateway),
                c.added_p50_ms(),
                c.added_p99_ms(),
                c.direct.errors,
                c.gateway.errors
            );
        }
        let ready: Vec<String> = self.ready_ms.iter().map(|t| format!("{t:.0}")).collect();
        let _ = writeln!(s, "\n| process | figure |\n|---|---:|");
        let _ = writeln!(
            s,
            "| ready (spawn to `/readyz` 200), migrated database, 3 starts | {} ms |",
            ready.join(" / ")
        );
        let _ = writeln!(
            s,
            "| ready, restart with {} connectors configured | {:.0} ms |",
            self.connectors, self.ready_configured_ms
        );
        let _ = writeln!(s, "| RSS idle after start | {:.1} MiB |", self.rss_idle_mib);
        let _ = writeln!(
            s,
            "| RSS idle, one connector and an agent set up | {:.1} MiB |",
            self.rss_idle_configured_mib
        );
        let _ = writeln!(
            s,
            "| RSS idle after restart, {} connectors | {:.1} MiB |",
            self.connectors, self.rss_idle_restart_mib
        );
        for (when, h) in [
            ("after the call scenarios", &self.held_after_load),
            ("after the restart", &self.held_after_restart),
        ] {
            let _ = writeln!(
                s,
                "| RSS with {n} sessions open (initialized, tools listed), {when} | {:.1} MiB (before: {:.1}) |",
                h.sessions_mib,
                h.before_mib,
                n = self.open_sessions,
            );
            let _ = writeln!(
                s,
                "| the same {n} sessions each holding its GET SSE stream ({n} connections), {when} | {:.1} MiB ({:.1} KiB per session and stream) |",
                h.streams_mib,
                h.per_session_kib(self.open_sessions),
                n = self.open_sessions,
            );
        }
        let _ = writeln!(
            s,
            "| peak RSS (VmHWM) through the call scenarios | {:.1} MiB |",
            self.rss_peak_mib
        );
        let _ = writeln!(
            s,
            "| echo-upstream RSS at the end | {:.1} MiB |",
            self.upstream_rss_mib
        );
        let _ = writeln!(
            s,
            "| server log written by the whole run | {:.1} KiB |",
            self.server_log_bytes as f64 / 1024.0
        );

        let _ = writeln!(s, "\nTargets:\n");
        if let Some(c) = self.row("tools/call echo", 32, "max") {
            let _ = writeln!(
                s,
                "- gateway throughput >= 0.8x direct (32 sessions, max rate): {:.2}x, {}",
                c.ratio(),
                verdict(c.ratio() >= 0.8)
            );
        }
        if let Some(c) = self
            .rows
            .iter()
            .find(|r| {
                r.sessions == 32 && r.scenario == "tools/call echo" && !r.load.starts_with("max")
            })
            .map(|r| &r.result)
        {
            let _ = writeln!(
                s,
                "- added p50 <= 0.3 ms at 32 sessions (fixed rate): {:.2} ms, {}",
                c.added_p50_ms(),
                verdict(c.added_p50_ms() <= 0.3)
            );
            let _ = writeln!(
                s,
                "- added p99 <= 1 ms at 32 sessions (fixed rate): {:.2} ms, {}",
                c.added_p99_ms(),
                verdict(c.added_p99_ms() <= 1.0)
            );
        }
        let _ = writeln!(
            s,
            "- RSS idle <= 60 MB: {:.1} MiB after start, {:.1} MiB after a restart with {} connectors, {}",
            self.rss_idle_mib,
            self.rss_idle_restart_mib,
            self.connectors,
            verdict(self.rss_idle_mib.max(self.rss_idle_restart_mib) * 1.048576 <= 60.0)
        );
        let (a, b) = (&self.held_after_load, &self.held_after_restart);
        let after_load = a.streams_mib.max(a.sessions_mib);
        let fresh = b.streams_mib.max(b.sessions_mib);
        let _ = writeln!(
            s,
            "- RSS <= 250 MB with {} open sessions (with their streams): {:.1} MiB ({:.1} MB) after the call scenarios, {:.1} MiB ({:.1} MB) on the restarted process, {}",
            self.open_sessions,
            after_load,
            after_load * 1.048576,
            fresh,
            fresh * 1.048576,
            verdict(after_load.max(fresh) * 1.048576 <= 250.0)
        );
        let worst = self
            .ready_ms
            .iter()
            .copied()
            .fold(self.ready_configured_ms, f64::max);
        let _ = writeln!(
            s,
            "- process ready <= 0.5 s: worst of {} starts {:.0} ms, {}",
            self.ready_ms.len() + 1,
            worst,
            verdict(worst <= 500.0)
        );
        s
    }
}
