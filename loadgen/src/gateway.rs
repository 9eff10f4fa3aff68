//! A real `toolgate serve` for the benchmark: SQLite in a temporary folder, a free port, an admin
//! token from the CLI, and the admin API calls that set up connectors, a user, a group, its
//! policy and a personal token. Also reads a process's memory from `/proc`.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A user set up by [`Toolgate::agent`]: their group's id and their personal token (`tgp_…`).
pub struct Agent {
    pub group: String,
    pub token: String,
}

/// A toolgate installation in a temporary folder, and its server process while it runs.
pub struct Toolgate {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub admin_token: String,
    http: reqwest::Client,
    child: Option<tokio::process::Child>,
    /// Extra environment of the server (experiments: `LD_PRELOAD`, `TOOLGATE_SQLITE_SYNCHRONOUS`).
    extra_env: Vec<(String, String)>,
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr().context("local address")?.port())
}

impl Toolgate {
    /// A fresh database (migrated) and an admin token; the server is not started yet.
    pub async fn prepare(
        binary: &Path,
        extra_env: &[(String, String)],
        http: &reqwest::Client,
    ) -> Result<Toolgate> {
        let dir = tempfile::Builder::new()
            .prefix("toolgate-bench-")
            .tempdir()
            .context("temporary folder")?;
        let port = free_port()?;
        let mut tg = Toolgate {
            binary: binary.to_path_buf(),
            dir,
            port,
            base: format!("http://127.0.0.1:{port}"),
            admin_token: String::new(),
            http: http.clone(),
            child: None,
            extra_env: extra_env.to_vec(),
        };
        tg.cli(&["migrate"]).await?;
        tg.admin_token = tg.token("bench", "admin").await?;
        Ok(tg)
    }

    /// An API token from the CLI: `role` is `admin` (admin API) or `scim` (`/scim/v2`).
    pub async fn token(&self, name: &str, role: &str) -> Result<String> {
        let out = self
            .cli(&["token", "create", "--name", name, "--role", role])
            .await?;
        out.lines()
            .rfind(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .ok_or_else(|| anyhow!("`token create` printed no token"))
    }

    /// The command with this installation's settings and nothing of the caller's `TOOLGATE_*`.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.binary);
        c.args(args).current_dir(self.dir.path()).kill_on_drop(true);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TOOLGATE_") {
                c.env_remove(k);
            }
        }
        let dir = self.dir.path().display();
        c.env_remove("RUST_LOG")
            .env("TOOLGATE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env(
                "TOOLGATE_DATABASE_URL",
                format!("sqlite://{dir}/toolgate.db"),
            )
            .env("TOOLGATE_DATA_DIR", dir.to_string())
            .env("TOOLGATE_PUBLIC_URL", &self.base)
            // The benchmark measures the proxy path at up to thousands of calls per second from
            // one token; the per-credential rate limit would measure the limiter instead.
            .env("TOOLGATE_RATE_LIMIT_MCP_PER_SEC", "0");
        c.envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        c
    }

    async fn cli(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("run {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "toolgate {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts `toolgate serve` (log appended to `server.log` in the folder) and returns the time
    /// from spawning it to the first `200` from `/readyz` (polled every millisecond).
    pub async fn start(&mut self) -> Result<Duration> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("server log")?;
        let err = log.try_clone().context("server log")?;
        let started = Instant::now();
        let mut child = self
            .command(&["serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .context("spawn toolgate serve")?;
        let ready = format!("{}/readyz", self.base);
        loop {
            if let Some(status) = child.try_wait().context("toolgate serve")? {
                bail!("toolgate serve exited ({status}):\n{}", self.log_tail());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("toolgate not ready after 60 s:\n{}", self.log_tail());
            }
            if let Ok(r) = self
                .http
                .get(&ready)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status() == reqwest::StatusCode::OK
            {
                let took = started.elapsed();
                self.child = Some(child);
                return Ok(took);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// SIGTERM, then up to 15 s for a graceful exit (killed after that).
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
            Ok(r) => r.map(drop).context("wait for toolgate"),
            Err(_) => child.kill().await.context("kill toolgate"),
        }
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The installation's folder (database, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The whole server log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Size of the server log in bytes (what the run made it write).
    pub fn log_bytes(&self) -> u64 {
        std::fs::metadata(self.log_path())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// An admin API request; the JSON answer (Null when empty). Non-2xx is an error.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let res = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A streamable-HTTP connector; its tools discovered now (an error if discovery failed).
    pub async fn connector(&self, name: &str, url: &str) -> Result<String> {
        let c = self
            .api(
                reqwest::Method::POST,
                "/connectors",
                json!({"name": name, "url": url, "transport": "streamable_http"}),
            )
            .await?;
        if c["discovery"]["ok"] != Value::Bool(true) {
            bail!("connector {name}: discovery failed: {}", c["discovery"]);
        }
        id(&c)
    }

    /// A user in a new group of the same name whose policy allows `allow` on `connectors`, and
    /// a personal token for them.
    pub async fn agent(&self, name: &str, connectors: &[String], allow: &[&str]) -> Result<Agent> {
        let user = id(&self
            .api(
                reqwest::Method::POST,
                "/users",
                json!({"user_name": format!("{name}@example.com"), "display_name": name}),
            )
            .await?)?;
        let group = id(&self
            .api(
                reqwest::Method::POST,
                "/groups",
                json!({"display_name": name}),
            )
            .await?)?;
        self.api(
            reqwest::Method::PUT,
            &format!("/groups/{group}/members/{user}"),
            Value::Null,
        )
        .await?;
        for c in connectors {
            self.policy(&group, c, allow).await?;
        }
        let t = self
            .api(
                reqwest::Method::POST,
                &format!("/users/{user}/tokens"),
                json!({"name": "loadgen"}),
            )
            .await?;
        let token = t["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no token in {t}"))?;
        Ok(Agent { group, token })
    }

    /// The group's rule on a connector: `allow` these names or globs, block nothing.
    pub async fn policy(&self, group: &str, connector: &str, allow: &[&str]) -> Result<()> {
        self.api(
            reqwest::Method::PUT,
            &format!("/groups/{group}/policies/{connector}"),
            json!({"allow": allow, "block": []}),
        )
        .await
        .map(drop)
    }
}

fn id(v: &Value) -> Result<String> {
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no id in {v}"))
}

impl Drop for Toolgate {
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            // SAFETY: as in `stop`; a graceful end so the temporary folder can go.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Megabytes (MiB) of a KiB count.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let status = "Name:\ttoolgate\nVmHWM:\t   81234 kB\nVmRSS:\t   40960 kB\nThreads:\t5\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(81234));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert!((mib(40960) - 40.0).abs() < 1e-12);
    }

    #[test]
    fn our_own_rss_is_readable() {
        let rss = proc_kib(std::process::id(), "VmRSS").expect("VmRSS of this process");
        assert!(rss > 0);
    }
}
