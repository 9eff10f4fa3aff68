//! The `toolgate` server: one process serving the MCP gateway (`/mcp`), the admin API
//! (`/api/v1`), the dashboard and the probes, over one store. `build_router` assembles them;
//! `start` binds and serves; `run` carries out a CLI command.

pub mod api;
pub mod audit_upkeep;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod elevation;
#[cfg(test)]
mod fuzz_jsonrpc;
pub mod http;
pub mod mcp;
pub mod metrics_names;
pub mod oauth;
pub mod oidc;
pub mod probes;
pub mod scim;
pub mod siem;
pub mod state;
pub mod telemetry;
pub mod web;

use anyhow::Context;
use axum::Router;
use cli::{AdminCommand, AuditCommand, Cli, Command, TokenCommand};
use config::Config;
use leptos::config::LeptosOptions;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use toolgate_domain::audit::AuditSink;
use toolgate_domain::clock::{SharedClock, SystemClock};
use toolgate_domain::crypto::MasterKey;
use toolgate_domain::model::TokenKind;
use toolgate_domain::snapshot::SnapshotHandle;
use toolgate_domain::store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Carries out one CLI command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    telemetry::init_logging(config.log_format);
    match cli.command {
        Command::Serve => {
            let server = start(config).await?;
            tracing::info!(url = %server.base_url, "toolgate is serving");
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.shutdown().await;
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Create(args),
        } => {
            let password = read_secret("TOOLGATE_ADMIN_PASSWORD")?;
            let store = open_store(&config).await?;
            let account = store
                .create_admin(&args.username, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let event = toolgate_domain::store::NewAuditEvent::change(
                store.clock().now(),
                "admin.account.create",
                "cli",
                "system",
                None,
                Some(serde_json::json!({ "username": account.username })),
            );
            store
                .insert_audit_batch(&[event])
                .await
                .map_err(|e| anyhow::anyhow!("account created but not audited: {e}"))?;
            store.close().await;
            println!("created administrator {}", account.username);
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify(args),
        } => {
            let store = open_store(&config).await?;
            let started = std::time::Instant::now();
            let last_note = std::sync::atomic::AtomicU64::new(0);
            let report = store
                .verify_audit_chain_with(args.from, args.to, |checked| {
                    // Progress on stderr every 100,000 events; stdout keeps the verdict only.
                    if checked / 100_000 > last_note.load(std::sync::atomic::Ordering::Relaxed) {
                        last_note.store(checked / 100_000, std::sync::atomic::Ordering::Relaxed);
                        eprintln!(
                            "  {checked} events verified ({:.0} s)",
                            started.elapsed().as_secs_f64()
                        );
                    }
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            match report.first_break {
                None => {
                    println!(
                        "audit chain intact: {} events verified{}{}; last event {}, hash {}",
                        report.checked,
                        if report.unchained > 0 {
                            format!(" ({} earlier events predate the chain)", report.unchained)
                        } else {
                            String::new()
                        },
                        match report.anchored_at {
                            Some(id) => format!(
                                " from the signed checkpoint at event {id} (older events were purged by retention)"
                            ),
                            None => String::new(),
                        },
                        report.last_id.map(|i| i.to_string()).unwrap_or("-".into()),
                        report.last_hash.as_deref().unwrap_or("-")
                    );
                    Ok(())
                }
                Some(b) => {
                    println!(
                        "audit chain BROKEN at event {}: {} ({} events verified before it)",
                        b.id, b.reason, report.checked
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::Policy { command } => cli::policy(&config, command).await,
        Command::Keys { command } => cli::keys(&config, command).await,
        Command::Token {
            command: TokenCommand::List(args),
        } => {
            let store = open_store(&config).await?;
            let tokens = store
                .list_tokens_of_kind(token_kind(args.role))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            println!("id\tname\tprefix\tcreated\tstate");
            for t in tokens {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    t.prefix,
                    t.created_at.to_rfc3339(),
                    if t.revoked { "revoked" } else { "active" }
                );
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke(args),
        } => {
            let store = open_store(&config).await?;
            let known = [TokenKind::Admin, TokenKind::Scim];
            let mut found = None;
            for kind in known {
                let tokens = store
                    .list_tokens_of_kind(kind)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                found = found.or(tokens.into_iter().find(|t| t.id == args.id));
            }
            let Some(token) = found else {
                store.close().await;
                return Err(cli::InvalidInput(format!(
                    "no admin or SCIM token has the id {:?} (see `toolgate token list`)",
                    args.id
                ))
                .into());
            };
            store
                .revoke_token(&token.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let event = toolgate_domain::store::NewAuditEvent::change(
                store.clock().now(),
                "admin.token.revoke",
                "cli",
                "system",
                serde_json::to_value(&token).ok(),
                None,
            );
            store
                .insert_audit_batch(&[event])
                .await
                .map_err(|e| anyhow::anyhow!("token revoked but not audited: {e}"))?;
            store.close().await;
            eprintln!(
                "revoked {} token {:?} ({})",
                token.kind.as_str(),
                token.name,
                token.id
            );
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create(args),
        } => {
            let kind = token_kind(args.role);
            let store = open_store(&config).await?;
            let (info, secret) = store
                .create_token(kind, &args.name, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Made on the server's console: recorded like any other token change.
            let event = toolgate_domain::store::NewAuditEvent::change(
                store.clock().now(),
                "admin.token.create",
                "cli",
                "system",
                None,
                serde_json::to_value(&info).ok(),
            );
            store
                .insert_audit_batch(&[event])
                .await
                .map_err(|e| anyhow::anyhow!("token created but not audited: {e}"))?;
            store.close().await;
            eprintln!(
                "created {} token {:?} ({}); it is shown once:",
                kind.as_str(),
                info.name,
                info.id
            );
            println!("{secret}");
            Ok(())
        }
    }
}

fn token_kind(role: cli::TokenRole) -> TokenKind {
    match role {
        cli::TokenRole::Admin => TokenKind::Admin,
        cli::TokenRole::Scim => TokenKind::Scim,
    }
}

/// A secret from `var`, or else the first line of standard input.
fn read_secret(var: &str) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(var)
        && !v.is_empty()
    {
        return Ok(v);
    }
    let mut input = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let line = input.lines().next().unwrap_or_default().to_string();
    anyhow::ensure!(
        !line.is_empty(),
        "no password given: set {var} or pipe it on standard input"
    );
    Ok(line)
}

/// The master key from config, or from `{data_dir}/master.key`, generated there (mode 0600) on
/// first run.
pub fn resolve_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(k) = &config.master_key {
        return MasterKey::from_base64(k).map_err(|e| anyhow::anyhow!("TOOLGATE_MASTER_KEY: {e}"));
    }
    let path = config.data_dir.join("master.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading master key {}", path.display()))?;
        return MasterKey::from_base64(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
    let key = MasterKey::generate();
    write_private(&path, key.to_base64().as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "no master key configured: generated a new one. Back it up; without it stored connector secrets cannot be read"
    );
    Ok(key)
}

fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Opens the store and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    open_store_with_clock(config, Arc::new(SystemClock)).await
}

/// `open_store` with the clock every decision takes its time from (tests move it).
pub async fn open_store_with_clock(config: &Config, clock: SharedClock) -> anyhow::Result<Store> {
    let key = resolve_master_key(config)?;
    let store = Store::connect_with(
        &config.database_url,
        key.cipher(),
        clock,
        config.sqlite_sync()?,
    )
    .await
    .map_err(|e| anyhow::anyhow!("opening the database: {e}"))?;
    store.migrate().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(store)
}

/// Where the dashboard's static files are: configured, next to the binary (`site/` beside it, or
/// `../site` as cargo-leptos lays out `target/`), or `target/site` in a checkout.
pub fn site_root(config: &Config) -> PathBuf {
    if let Some(p) = &config.site_root {
        return p.clone();
    }
    if let Ok(p) = std::env::var("LEPTOS_SITE_ROOT") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        for candidate in [
            dir.join("site"),
            dir.join("../site"),
            dir.join("../../site"),
        ] {
            if candidate.join("pkg").is_dir() {
                return candidate;
            }
        }
    }
    PathBuf::from("target/site")
}

fn leptos_options(config: &Config, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("toolgate")
        .site_root(site_root(config).to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

/// Builds the shared state: store, snapshot, audit writer, upstream pool.
pub async fn build_state(
    config: Config,
    store: Store,
    addr: SocketAddr,
) -> anyhow::Result<state::AppState> {
    let snapshot = SnapshotHandle::load(store.clone())
        .await
        .map_err(|e| anyhow::anyhow!("loading the policy snapshot: {e}"))?;
    if store.backend() == toolgate_domain::store::Backend::Postgres {
        // Replicas on one PostgreSQL: follow the others' changes (policy, directory, tokens).
        tokio::spawn(snapshot.clone().follow_changes(config.database_url.clone()));
    } else {
        // One server per SQLite file, but the CLI may change it too (`policy apply`).
        tokio::spawn(snapshot.clone().watch_marker(Duration::from_secs(1)));
    }
    let audit = AuditSink::start(store.clone());
    if config.audit_fail_open {
        tracing::error!(
            "audit_fail_open is ON: tool calls are forwarded even when their audit event cannot be written"
        );
    }
    tokio::spawn(audit_upkeep::index_text(
        store.clone(),
        Duration::from_secs(1),
    ));
    tokio::spawn(audit_upkeep::run(
        store.clone(),
        Duration::from_secs(config.audit_checkpoint_secs),
        config.audit_retention_days,
    ));
    let scim_log = scim::ScimLog::start(store.clone());
    let siem = siem::spawn(store.clone(), uuid::Uuid::new_v4().to_string());
    let upstreams = Arc::new(
        mcp::upstream::Upstreams::new(Duration::from_secs(config.upstream_timeout_secs))
            .with_max_response_bytes(config.upstream_max_response_bytes),
    );
    let catalog = connectors::Catalog::new(
        store.clone(),
        snapshot.clone(),
        upstreams.clone(),
        audit.clone(),
    );
    // Access tokens are signed under a key derived from the master key: the same on every
    // replica, and a master key rotation invalidates them (clients refresh).
    let oauth = Arc::new(oauth::OAuthRuntime::new(
        store.cipher().derive_key("oauth access token hs256"),
        config.public_url().trim_end_matches('/').to_string(),
    ));
    let workflow = toolgate_domain::approvals::Workflow {
        store: store.clone(),
        snapshot: snapshot.clone(),
        audit: audit.clone(),
        notifier: elevation::WebhookNotifier::start(store.clone(), config.public_url()),
    };
    let config_for_limits = config.clone();
    Ok(state::AppState {
        workflow,
        leptos_options: leptos_options(&config, addr),
        store,
        snapshot,
        audit,
        upstreams,
        catalog,
        config: Arc::new(config),
        metrics: telemetry::metrics_handle(),
        scim_log,
        oidc: Arc::new(oidc::OidcRuntime::default()),
        oauth,
        siem,
        draining: Arc::default(),
        rate_limits: http::rate_limit::RateLimits::from_config(&config_for_limits),
    })
}

/// All routes of the process, with request ids, tracing and metrics around them.
/// `streams` ends open MCP GET streams (the start of a shutdown); `sessions` ends the MCP
/// sessions themselves (after in-flight calls had their grace period).
pub fn build_router(
    state: state::AppState,
    streams: CancellationToken,
    sessions: CancellationToken,
) -> Router {
    // Validated at load; a bad entry cannot get here.
    let trusted =
        http::client_ip::TrustedProxies::new(state.config.trusted_proxy_nets().unwrap_or_default());
    Router::new()
        .merge(probes::router())
        .nest("/api/v1", api::router())
        .nest("/scim/v2", scim::router(&state))
        .merge(oidc::router().layer(web::session_layer(&state)))
        .merge(oauth::router(&state))
        .merge(mcp::router(&state, streams, sessions))
        .merge(web::router(&state))
        .layer(axum::middleware::from_fn_with_state(
            state.rate_limits.clone(),
            http::rate_limit::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            http::limits::Limits::from_config(&state.config),
            http::limits::enforce,
        ))
        // The extractors' own cap (2 MB by default) follows the configured one.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_request_bytes,
        ))
        .layer(axum::middleware::from_fn(probes::count_requests))
        .layer(axum::middleware::from_fn_with_state(
            http::security_headers::Https(state.config.is_https()),
            http::security_headers::add,
        ))
        .layer(axum::middleware::from_fn_with_state(
            trusted,
            http::client_ip::resolve,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// A server running in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub base_url: String,
    pub state: state::AppState,
    shutdown: CancellationToken,
    /// Ends the MCP sessions once in-flight requests are done (or the grace period is over).
    sessions: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Shuts down as a load balancer wants it: `/readyz` turns 503 at once while requests are
    /// still served for `shutdown_delay_secs` (the balancer notices and stops routing here), then
    /// the listener closes, open MCP GET streams end, and requests in flight (tool calls
    /// included) get up to `shutdown_grace_secs` to finish before the MCP sessions end.
    pub async fn shutdown(self) {
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let delay = Duration::from_secs(self.state.config.shutdown_delay_secs);
        if !delay.is_zero() {
            tracing::info!(
                seconds = delay.as_secs(),
                "not ready any more; still serving before closing"
            );
            tokio::time::sleep(delay).await;
        }
        self.shutdown.cancel();
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!(
                seconds = grace.as_secs(),
                "requests still running after the grace period; stopping anyway"
            );
        }
        self.sessions.cancel();
        self.state.siem.stop().await;
        self.state.store.close().await;
    }
}

/// Opens the store, binds `config.listen` (port 0 picks a free port) and serves in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// `start` with an injected clock (time-travel tests).
pub async fn start_with_clock(
    mut config: Config,
    clock: SharedClock,
) -> anyhow::Result<RunningServer> {
    let store = open_store_with_clock(&config, clock).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    if config.public_url.is_none() {
        config.public_url = Some(format!("http://{addr}"));
    }
    let base_url = config.public_url();
    let state = build_state(config, store, addr).await?;
    let shutdown = CancellationToken::new();
    // Ends the MCP sessions and upstream connections, after calls in flight had their grace.
    let sessions = CancellationToken::new();
    state.catalog.spawn_change_follower(shutdown.child_token());
    state.upstreams.clone().spawn_health_checks(
        state.snapshot.clone(),
        Duration::from_secs(state.config.connector_health_secs),
        sessions.child_token(),
    );
    tokio::spawn(forget_idle_rate_limits(
        Arc::downgrade(&state.rate_limits),
        shutdown.child_token(),
    ));
    tokio::spawn(elevation::settle_loop(
        state.workflow.clone(),
        Duration::from_secs(state.config.elevation_settle_secs.max(1)),
        shutdown.child_token(),
    ));
    let app = build_router(state.clone(), shutdown.child_token(), sessions.clone());
    let stop = shutdown.clone();
    // No Nagle: a JSON-RPC answer is written as headers, then SSE chunks; with Nagle on, the
    // second small write waits for the client's delayed ACK (~40 ms per call).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled_owned().await })
        .await
    });
    Ok(RunningServer {
        addr,
        base_url,
        state,
        shutdown,
        sessions,
        task,
    })
}

/// Drops idle rate-limit keys every minute so the limiters' memory follows the active callers.
async fn forget_idle_rate_limits(
    limits: std::sync::Weak<http::rate_limit::RateLimits>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match limits.upgrade() {
            Some(l) => l.forget_idle(),
            None => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
