//! Configuration: an optional TOML file, overridden by `TOOLGATE_*` environment variables.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Everything `toolgate` reads at start. Field names are the TOML keys; each has an env override
/// `TOOLGATE_<UPPERCASE NAME>`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// `sqlite://path` (default, created on first run) or `postgres://...`.
    pub database_url: String,
    /// The URL people and agents use to reach Toolgate; defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// 32 bytes, standard base64. Without it the key is read from (or generated into)
    /// `{data_dir}/master.key`.
    pub master_key: Option<String>,
    /// Folder for the generated master key (and the SQLite file by default).
    pub data_dir: PathBuf,
    /// Folder with the dashboard's static files (`pkg/`); found next to the binary when unset.
    pub site_root: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Seconds an upstream call may take before the caller gets an error, for connectors
    /// without a `timeout_ms` of their own.
    pub upstream_timeout_secs: u64,
    /// Seconds between health pings of each enabled connector.
    pub connector_health_secs: u64,
    /// Seconds between sweeps that record expired elevations (events and notices). Expiry
    /// itself is enforced at every call, whatever this is.
    pub elevation_settle_secs: u64,
    /// Hours a dashboard session lasts without activity.
    pub session_ttl_hours: i64,
    /// Forward tool calls even when their audit event cannot be written. Off by default (calls
    /// are refused); when on, every such call is logged at error level and counted.
    pub audit_fail_open: bool,
    /// Days audit events are kept (0: forever). Purges stop at a signed checkpoint and never
    /// remove events a SIEM sink has not received.
    pub audit_retention_days: u32,
    /// Seconds between audit integrity checks (each signs a checkpoint at the chain's head).
    pub audit_checkpoint_secs: u64,
    /// SQLite only: `full` (default) flushes every commit to disk, so nothing acknowledged is
    /// lost even on power loss; `normal` survives a process crash but may lose the last commits
    /// on power loss, for about half the commit latency.
    pub sqlite_synchronous: String,
    /// Reverse proxies and load balancers (addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed for the caller's address (audit, logs). Empty (default): the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Host names `/mcp` answers to besides the public URL's host and loopback (e.g. an internal
    /// service name agents in the cluster use). Other Host headers are refused (DNS rebinding).
    pub mcp_allowed_hosts: Vec<String>,
    /// Seconds between SIGTERM and closing the listener, with `/readyz` answering 503 and
    /// requests still served, so a load balancer stops routing here first (0: close at once).
    pub shutdown_delay_secs: u64,
    /// Seconds in-flight requests get to finish once the listener is closed.
    pub shutdown_grace_secs: u64,
    /// Largest request body read on any endpoint (bytes); larger ones get 413 in the
    /// endpoint's own error format.
    pub max_request_bytes: usize,
    /// Largest total size of a request's headers (bytes); larger ones get 431.
    pub max_header_bytes: usize,
    /// Deepest nesting of arrays and objects accepted in a JSON request body.
    pub max_json_depth: usize,
    /// Most JSON-RPC messages in one batch posted to `/mcp`.
    pub max_batch_messages: usize,
    /// Largest answer taken from an upstream MCP server (bytes); a larger one gives the caller
    /// an error instead.
    pub upstream_max_response_bytes: usize,
    /// Requests per second each MCP credential (token, service principal) may make on `/mcp`;
    /// bursts of twice that are allowed. 0: no limit.
    pub rate_limit_mcp_per_sec: u32,
    /// Requests per second each SCIM token may make; bursts of twice that. 0: no limit.
    pub rate_limit_scim_per_sec: u32,
    /// Requests per minute each client address may make to the OAuth endpoints (authorize,
    /// token, register, revoke); bursts of that many. 0: no limit.
    pub rate_limit_oauth_per_min: u32,
    /// Sign-in attempts per minute per client address and per user name (dashboard password
    /// sign-in and the OpenID Connect flow); bursts of that many. 0: no limit.
    pub rate_limit_signin_per_min: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://data/toolgate.db".into(),
            public_url: None,
            master_key: None,
            data_dir: PathBuf::from("data"),
            site_root: None,
            log_format: LogFormat::Text,
            upstream_timeout_secs: 30,
            connector_health_secs: 30,
            elevation_settle_secs: 10,
            session_ttl_hours: 12,
            audit_fail_open: false,
            audit_retention_days: 0,
            audit_checkpoint_secs: 60,
            sqlite_synchronous: "full".into(),
            trusted_proxies: Vec::new(),
            mcp_allowed_hosts: Vec::new(),
            shutdown_delay_secs: 0,
            shutdown_grace_secs: 10,
            max_request_bytes: 4 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_json_depth: 64,
            max_batch_messages: 32,
            upstream_max_response_bytes: 4 * 1024 * 1024,
            rate_limit_mcp_per_sec: 100,
            rate_limit_scim_per_sec: 100,
            rate_limit_oauth_per_min: 300,
            rate_limit_signin_per_min: 20,
        }
    }
}

impl Config {
    /// Reads `path` (or `toolgate.toml` if it exists) and applies env overrides from `env`.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let default_path = Path::new("toolgate.toml");
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None if default_path.exists() => Some(default_path.to_path_buf()),
            None => None,
        };
        let mut cfg = match &file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str::<Config>(&text)
                    .with_context(|| format!("parsing config file {}", p.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        // Whole-number settings: `TOOLGATE_<FIELD>` parsed into the field.
        macro_rules! numbers {
            ($($field:ident),* $(,)?) => {$(
                let key = concat!("TOOLGATE_", stringify!($field)).to_ascii_uppercase();
                if let Some(v) = get(&key) {
                    self.$field = v
                        .parse()
                        .with_context(|| format!("{key} must be a whole number"))?;
                }
            )*};
        }
        numbers!(
            upstream_timeout_secs,
            connector_health_secs,
            elevation_settle_secs,
            session_ttl_hours,
            audit_retention_days,
            audit_checkpoint_secs,
            shutdown_delay_secs,
            shutdown_grace_secs,
            max_request_bytes,
            max_header_bytes,
            max_json_depth,
            max_batch_messages,
            upstream_max_response_bytes,
            rate_limit_mcp_per_sec,
            rate_limit_scim_per_sec,
            rate_limit_oauth_per_min,
            rate_limit_signin_per_min,
        );
        if let Some(v) = get("TOOLGATE_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("TOOLGATE_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("TOOLGATE_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("TOOLGATE_MASTER_KEY") {
            self.master_key = Some(v);
        }
        if let Some(v) = get("TOOLGATE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("TOOLGATE_SITE_ROOT") {
            self.site_root = Some(PathBuf::from(v));
        }
        if let Some(v) = get("TOOLGATE_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => bail!("TOOLGATE_LOG_FORMAT must be text or json, got {other:?}"),
            };
        }
        if let Some(v) = get("TOOLGATE_AUDIT_FAIL_OPEN") {
            self.audit_fail_open = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => bail!("TOOLGATE_AUDIT_FAIL_OPEN must be true or false, got {other:?}"),
            };
        }
        if let Some(v) = get("TOOLGATE_SQLITE_SYNCHRONOUS") {
            self.sqlite_synchronous = v;
        }
        let list = |v: String| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        if let Some(v) = get("TOOLGATE_TRUSTED_PROXIES") {
            self.trusted_proxies = list(v);
        }
        if let Some(v) = get("TOOLGATE_MCP_ALLOWED_HOSTS") {
            self.mcp_allowed_hosts = list(v);
        }
        Ok(())
    }

    /// How the audit log is run, as the dashboard and API show it.
    pub fn audit_policy(&self) -> toolgate_domain::model::AuditPolicy {
        toolgate_domain::model::AuditPolicy {
            retention_days: self.audit_retention_days,
            fail_open: self.audit_fail_open,
            checkpoint_secs: self.audit_checkpoint_secs,
            sqlite_synchronous: self
                .database_url
                .starts_with("sqlite:")
                .then(|| self.sqlite_synchronous.clone()),
        }
    }

    /// The SQLite durability the config asks for.
    pub fn sqlite_sync(&self) -> anyhow::Result<toolgate_domain::store::SqliteSync> {
        match self.sqlite_synchronous.as_str() {
            "full" => Ok(toolgate_domain::store::SqliteSync::Full),
            "normal" => Ok(toolgate_domain::store::SqliteSync::Normal),
            other => bail!("sqlite_synchronous must be full or normal, got {other:?}"),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("listen address {:?} is not host:port", self.listen))?;
        toolgate_domain::store::Backend::from_url(&self.database_url)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("public_url must start with http:// or https://");
        }
        if !(1..=3600).contains(&self.upstream_timeout_secs) {
            bail!("upstream_timeout_secs must be 1-3600");
        }
        if !(1..=3600).contains(&self.connector_health_secs) {
            bail!("connector_health_secs must be 1-3600");
        }
        if !(1..=3600).contains(&self.elevation_settle_secs) {
            bail!("elevation_settle_secs must be 1-3600");
        }
        if !(1..=24 * 30).contains(&self.session_ttl_hours) {
            bail!("session_ttl_hours must be 1-720");
        }
        self.sqlite_sync()?;
        if !(1..=86_400).contains(&self.audit_checkpoint_secs) {
            bail!("audit_checkpoint_secs must be 1-86400");
        }
        if self.shutdown_delay_secs > 300 {
            bail!("shutdown_delay_secs must be 0-300");
        }
        if !(1..=3600).contains(&self.shutdown_grace_secs) {
            bail!("shutdown_grace_secs must be 1-3600");
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.max_request_bytes) {
            bail!("max_request_bytes must be 1024-1073741824");
        }
        if !(1024..=1024 * 1024).contains(&self.max_header_bytes) {
            bail!("max_header_bytes must be 1024-1048576");
        }
        if !(2..=128).contains(&self.max_json_depth) {
            bail!("max_json_depth must be 2-128");
        }
        if !(1..=1000).contains(&self.max_batch_messages) {
            bail!("max_batch_messages must be 1-1000");
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.upstream_max_response_bytes) {
            bail!("upstream_max_response_bytes must be 1024-1073741824");
        }
        self.trusted_proxy_nets()?;
        for h in &self.mcp_allowed_hosts {
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
            {
                bail!("mcp_allowed_hosts: {h:?} is not a host name (no port, no scheme)");
            }
        }
        Ok(())
    }

    /// `trusted_proxies` parsed: an address is a one-address range.
    pub fn trusted_proxy_nets(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("trusted_proxies: {p:?} is not an address or CIDR range")
                    })
            })
            .collect()
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    /// Whether people reach Toolgate over HTTPS (cookies then get `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url().starts_with("https://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_without_file_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert!(
            Config::load(Some(&missing), env(&[])).is_err(),
            "a named missing file is an error"
        );
        let cfg = Config::load(None, env(&[])).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080");
        assert_eq!(cfg.database_url, "sqlite://data/toolgate.db");
        assert_eq!(cfg.public_url(), "http://127.0.0.1:8080");
        assert!(!cfg.is_https());
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9000\"\npublic_url = \"https://tg.example.com/\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&p), env(&[])).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000");
        assert_eq!(cfg.public_url(), "https://tg.example.com");
        assert!(cfg.is_https());
        let cfg = Config::load(
            Some(&p),
            env(&[
                ("TOOLGATE_LISTEN", "0.0.0.0:7000"),
                ("TOOLGATE_DATABASE_URL", "postgres://x@h/db"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:7000");
        assert_eq!(cfg.database_url, "postgres://x@h/db");
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("toolgate.toml");
        std::fs::write(&p, include_str!("../../deploy/toolgate.toml")).unwrap();
        let cfg = Config::load(Some(&p), env(&[])).expect("deploy/toolgate.toml is valid");
        assert_eq!(cfg.trusted_proxy_nets().unwrap().len(), 1);
    }

    #[test]
    fn proxies_and_hosts_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            "trusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]\nmcp_allowed_hosts = [\"toolgate.svc\"]\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&p), env(&[])).unwrap();
        assert_eq!(cfg.trusted_proxy_nets().unwrap().len(), 2);
        assert_eq!(cfg.mcp_allowed_hosts, vec!["toolgate.svc"]);
        let cfg = Config::load(
            Some(&p),
            env(&[
                ("TOOLGATE_TRUSTED_PROXIES", " 172.16.0.0/12 , fd00::/8,"),
                ("TOOLGATE_MCP_ALLOWED_HOSTS", "a.internal,b.internal"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.trusted_proxies, vec!["172.16.0.0/12", "fd00::/8"]);
        assert_eq!(cfg.mcp_allowed_hosts, vec!["a.internal", "b.internal"]);
        for (key, bad) in [
            ("TOOLGATE_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TOOLGATE_TRUSTED_PROXIES", "proxy.example"),
            ("TOOLGATE_MCP_ALLOWED_HOSTS", "https://x.example"),
            ("TOOLGATE_MCP_ALLOWED_HOSTS", "x.example/path"),
        ] {
            assert!(
                Config::load(Some(&p), env(&[(key, bad)])).is_err(),
                "{key}={bad} accepted"
            );
        }
    }

    #[test]
    fn bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "lisen = \"typo\"\n").unwrap();
        let err = Config::load(Some(&p), env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        assert!(Config::load(None, env(&[("TOOLGATE_LISTEN", "nope")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_DATABASE_URL", "mysql://x")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_LOG_FORMAT", "xml")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_PUBLIC_URL", "ftp://x")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_AUDIT_FAIL_OPEN", "maybe")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_SQLITE_SYNCHRONOUS", "off")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_AUDIT_CHECKPOINT_SECS", "0")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_CONNECTOR_HEALTH_SECS", "0")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_CONNECTOR_HEALTH_SECS", "3601")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_CONNECTOR_HEALTH_SECS", "often")])).is_err());
        let cfg = Config::load(None, env(&[("TOOLGATE_CONNECTOR_HEALTH_SECS", "5")])).unwrap();
        assert_eq!(cfg.connector_health_secs, 5);
        assert_eq!(Config::default().connector_health_secs, 30);
        assert!(Config::load(None, env(&[("TOOLGATE_MAX_REQUEST_BYTES", "12")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_MAX_JSON_DEPTH", "deep")])).is_err());
        assert!(Config::load(None, env(&[("TOOLGATE_RATE_LIMIT_MCP_PER_SEC", "-1")])).is_err());
    }

    #[test]
    fn limits_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            "max_request_bytes = 65536\nrate_limit_mcp_per_sec = 5\nupstream_max_response_bytes = 2048\n",
        )
        .unwrap();
        let cfg = Config::load(
            Some(&p),
            env(&[("TOOLGATE_RATE_LIMIT_SIGNIN_PER_MIN", "0")]),
        )
        .unwrap();
        assert_eq!(cfg.max_request_bytes, 65536);
        assert_eq!(cfg.rate_limit_mcp_per_sec, 5);
        assert_eq!(cfg.upstream_max_response_bytes, 2048);
        assert_eq!(
            cfg.rate_limit_signin_per_min, 0,
            "the env turns the limit off"
        );
        assert_eq!(cfg.max_json_depth, 64, "defaults for the rest");
    }

    #[test]
    fn audit_settings_from_env() {
        let cfg = Config::load(
            None,
            env(&[
                ("TOOLGATE_AUDIT_FAIL_OPEN", "true"),
                ("TOOLGATE_AUDIT_RETENTION_DAYS", "400"),
                ("TOOLGATE_SQLITE_SYNCHRONOUS", "normal"),
            ]),
        )
        .unwrap();
        assert!(cfg.audit_fail_open);
        assert_eq!(cfg.audit_retention_days, 400);
        assert_eq!(
            cfg.sqlite_sync().unwrap(),
            toolgate_domain::store::SqliteSync::Normal
        );
        let defaults = Config::load(None, env(&[])).unwrap();
        assert!(!defaults.audit_fail_open, "fail closed by default");
        assert_eq!(
            defaults.sqlite_sync().unwrap(),
            toolgate_domain::store::SqliteSync::Full
        );
    }
}
