//! `toolgate-loadgen`: the whole proxy benchmark (`suite`, what `make bench-proxy` runs), the
//! long soak with policy changes and SCIM churn (`soak`, what `make soak` runs), or one load
//! against any MCP endpoint, optionally compared with another (`run`).

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use toolgate_loadgen::client::{self, Target};
use toolgate_loadgen::drive::{self, Op, Pace, Plan, Side};
use toolgate_loadgen::{soak, suite};

/// Load generator for Toolgate's MCP proxy.
#[derive(Debug, Parser)]
#[command(name = "toolgate-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every scenario of the proxy benchmark against a fresh toolgate and the echo upstream;
    /// prints a Markdown report (progress on stderr).
    Suite(SuiteArgs),
    /// A long run against a fresh toolgate: many sessions at a steady rate with policy changes
    /// and SCIM churn in parallel; RSS, descriptors and threads sampled; prints a Markdown
    /// report and exits non-zero on errors or growth.
    Soak(SoakArgs),
    /// One load against an MCP endpoint, optionally compared with a second one (`--vs-url`).
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// The toolgate binary (a release build).
    #[arg(long, default_value = "target/release/toolgate")]
    toolgate: PathBuf,
    /// The echo-upstream binary; default: next to this program.
    #[arg(long)]
    echo_upstream: Option<PathBuf>,
    /// Extra environment for toolgate, KEY=VALUE, repeatable (the report names it).
    #[arg(long, value_parser = key_value)]
    gateway_env: Vec<(String, String)>,
    /// MCP sessions held open for the whole run.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Principals (personal tokens) the sessions are spread over; each stays under the
    /// server's default MCP rate limit of 100 requests/s.
    #[arg(long, default_value_t = 10)]
    principals: usize,
    /// Total tools/call per second over all sessions.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Length of the load: seconds, or with a unit (`600s`, `10m`).
    #[arg(long, default_value = "10m", value_parser = duration)]
    duration: Duration,
    /// Seconds between readings of the server.
    #[arg(long, default_value = "10s", value_parser = duration)]
    sample_every: Duration,
    /// Time between two policy changes (admin API).
    #[arg(long, default_value = "2s", value_parser = duration)]
    policy_every: Duration,
    /// Time between two SCIM churn steps.
    #[arg(long, default_value = "1s", value_parser = duration)]
    scim_every: Duration,
    /// Sessions do not open their GET SSE stream.
    #[arg(long)]
    no_streams: bool,
    /// RSS growth (fraction) tolerated from the baseline window (minute 4-5 of 10) to the end.
    #[arg(long, default_value_t = 0.1)]
    max_rss_growth: f64,
    /// Open file descriptors tolerated above the baseline at the end.
    #[arg(long, default_value_t = 32)]
    fd_margin: u64,
    /// Also write every sample and the totals as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SuiteArgs {
    /// The toolgate binary (a release build).
    #[arg(long, default_value = "target/release/toolgate")]
    toolgate: PathBuf,
    /// The echo-upstream binary; default: next to this program.
    #[arg(long)]
    echo_upstream: Option<PathBuf>,
    /// `dist/index.js` of @modelcontextprotocol/server-everything (scenario skipped without it).
    #[arg(long)]
    everything: Option<PathBuf>,
    /// Experiments: extra environment for toolgate, KEY=VALUE, repeatable (e.g.
    /// TOOLGATE_SQLITE_SYNCHRONOUS=normal, or LD_PRELOAD=target/nodelay_preload.so, see
    /// loadgen/tools/). The report names it.
    #[arg(long, value_parser = key_value)]
    gateway_env: Vec<(String, String)>,
    /// Length of each measured phase, ms.
    #[arg(long, default_value_t = 2000)]
    phase_ms: u64,
    /// Unmeasured warm-up phase per side, ms.
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// Measured phases per side and scenario (alternating direct and gateway).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Sessions of the max-rate tools/call scenarios.
    #[arg(long, value_delimiter = ',', default_value = "1,32,256")]
    sessions: Vec<usize>,
    /// Total calls per second of the fixed-rate scenario at 32 sessions.
    #[arg(long, default_value_t = 1000.0)]
    fixed_rate: f64,
    /// Sessions held open for the memory figure.
    #[arg(long, default_value_t = 1000)]
    idle_sessions: usize,
    /// Session setups timed per side.
    #[arg(long, default_value_t = 200)]
    setup_samples: usize,
    /// Size of the large tool response for the DLP scenario, bytes.
    #[arg(long, default_value_t = 1_000_000)]
    big_bytes: usize,
    /// Tools per connector in the tools/list scenario.
    #[arg(long, default_value_t = 50)]
    wide_tools: usize,
    /// Connectors in the tools/list scenario.
    #[arg(long, default_value_t = 100)]
    wide_copies: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// MCP endpoint (streamable HTTP).
    #[arg(long)]
    url: String,
    /// Bearer token for it.
    #[arg(long)]
    token: Option<String>,
    /// Tool to call; without it, `tools/list` is repeated.
    #[arg(long)]
    tool: Option<String>,
    /// Its arguments (JSON object).
    #[arg(long, default_value = "{}")]
    args: String,
    /// A second endpoint to compare with (same load, alternating phases).
    #[arg(long)]
    vs_url: Option<String>,
    #[arg(long)]
    vs_token: Option<String>,
    /// Tool name there (default: the same as --tool).
    #[arg(long)]
    vs_tool: Option<String>,
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// Total requests per second; without it, each session sends as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 2000)]
    phase_ms: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// `600`, `600s`, `10m`, `1h`, `500ms`.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Suite(a) => run_suite(a).await,
        Command::Soak(a) => run_soak(a).await,
        Command::Run(a) => run_one(a).await,
    }
}

/// Lifts the open-files limit to its hard maximum (1,000 sessions with their streams need over
/// 2,000 descriptors between this process and toolgate, which inherits the limit).
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn run_suite(a: SuiteArgs) -> Result<()> {
    raise_nofile_limit();
    let echo_upstream = match a.echo_upstream {
        Some(p) => p,
        None => std::env::current_exe()
            .context("own path")?
            .with_file_name("echo-upstream"),
    };
    // Absolute paths: the processes run in a temporary folder.
    let absolute = |p: PathBuf| {
        std::fs::canonicalize(&p).with_context(|| format!("{} not found", p.display()))
    };
    let opts = suite::Options {
        toolgate: absolute(a.toolgate)?,
        echo_upstream: absolute(echo_upstream)?,
        everything: a.everything.map(absolute).transpose()?,
        gateway_env: a.gateway_env,
        phase: Duration::from_millis(a.phase_ms),
        warmup: Duration::from_millis(a.warmup_ms),
        rounds: a.rounds,
        sessions: a.sessions,
        fixed_rate: a.fixed_rate,
        idle_sessions: a.idle_sessions,
        setup_samples: a.setup_samples,
        big_bytes: a.big_bytes,
        wide_tools: a.wide_tools,
        wide_copies: a.wide_copies,
    };
    let report = suite::run(&opts).await?;
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", out.display()))?;
    }
    println!("{}", report.markdown());
    Ok(())
}

async fn run_soak(a: SoakArgs) -> Result<()> {
    raise_nofile_limit();
    let echo_upstream = match a.echo_upstream {
        Some(p) => p,
        None => std::env::current_exe()
            .context("own path")?
            .with_file_name("echo-upstream"),
    };
    let absolute = |p: PathBuf| {
        std::fs::canonicalize(&p).with_context(|| format!("{} not found", p.display()))
    };
    let opts = soak::Options {
        toolgate: absolute(a.toolgate)?,
        echo_upstream: absolute(echo_upstream)?,
        gateway_env: a.gateway_env,
        sessions: a.sessions,
        principals: a.principals,
        rate: a.rate,
        duration: a.duration,
        sample_every: a.sample_every,
        policy_every: a.policy_every,
        scim_every: a.scim_every,
        streams: !a.no_streams,
        limits: soak::Limits {
            rss_growth: a.max_rss_growth,
            fd_margin: a.fd_margin,
        },
    };
    let report = soak::run(&opts).await?;
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", out.display()))?;
    }
    println!("{}", report.markdown());
    if !report.verdict.pass() {
        eprintln!("soak failed: see the verdict above");
        std::process::exit(1);
    }
    Ok(())
}

async fn run_one(a: RunArgs) -> Result<()> {
    let http = client::http_client();
    let args: serde_json::Value = serde_json::from_str(&a.args).context("--args is not JSON")?;
    let op = |tool: Option<&String>| match tool {
        Some(t) => Op::call(t, &args),
        None => Op::ListTools,
    };
    let pace = a.rate.map_or(Pace::Max, Pace::Rate);
    let plan = Plan {
        warmup: Duration::from_millis(a.phase_ms / 2),
        phase: Duration::from_millis(a.phase_ms),
        rounds: a.rounds,
        pace,
    };
    let first = Target {
        label: a.url.clone(),
        url: a.url,
        token: a.token,
    };
    let mut one = Side::open(&http, first, op(a.tool.as_ref()), a.sessions).await?;
    let Some(vs) = a.vs_url else {
        let mut total = toolgate_loadgen::stats::histogram();
        let (mut errors, mut elapsed) = (0, Duration::ZERO);
        for _ in 0..a.rounds {
            let sessions = std::mem::take(&mut one.sessions);
            let (back, r) = drive::phase(sessions, &one.op, plan.phase, pace).await;
            one.sessions = back;
            total.add(&r.hist)?;
            errors += r.errors;
            elapsed += r.elapsed;
            if let Some(e) = r.first_error {
                eprintln!("first error: {e}");
            }
        }
        one.close().await;
        let s = toolgate_loadgen::stats::Summary::of(&total, errors, elapsed);
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    };
    let second = Target {
        label: vs.clone(),
        url: vs,
        token: a.vs_token,
    };
    let mut two = Side::open(
        &http,
        second,
        op(a.vs_tool.as_ref().or(a.tool.as_ref())),
        a.sessions,
    )
    .await?;
    let c = drive::compare(&mut one, &mut two, plan).await;
    one.close().await;
    two.close().await;
    println!(
        "{}\nratio {:.3}, added p50 {:.3} ms, added p99 {:.3} ms",
        serde_json::to_string_pretty(&c)?,
        c.ratio(),
        c.added_p50_ms(),
        c.added_p99_ms()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("600s"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(duration("10 minutes").is_err());
        assert!(duration("m").is_err());
    }
}
