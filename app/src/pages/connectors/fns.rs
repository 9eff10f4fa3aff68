//! Server functions behind the Connectors pages, and the hooks through which they reach what only
//! the server has (upstream connections, live health). Each checks the admin role first; every
//! change is audited (`admin.connector.*`, `admin.catalog.*`) and published to the snapshot.
// The add form's fields arrive one argument each.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use toolgate_domain::model::{CatalogTool, Connector, ConnectorStatus};
use toolgate_domain::risk::Risk;

#[cfg(feature = "ssr")]
pub use hooks::{ConnectorHooks, HookError, HookFuture};

#[cfg(feature = "ssr")]
mod hooks {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use toolgate_domain::model::ConnectorStatus;
    use toolgate_domain::store::{CatalogSync, ConnectorSecrets, DiscoveredTool};

    /// A hook's future.
    pub type HookFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    /// Why a hook failed.
    #[derive(Debug)]
    pub enum HookError {
        /// The upstream could not be reached or refused; the text names the connector and the
        /// kind of failure, never a secret, and is shown to the admin.
        Upstream(String),
        /// The store failed or refused.
        Domain(toolgate_domain::Error),
    }

    /// Connects with settings that are not saved yet and lists the tools.
    pub type Probe = Arc<
        dyn Fn(ConnectorSecrets) -> HookFuture<Result<Vec<DiscoveredTool>, HookError>>
            + Send
            + Sync,
    >;
    /// Lists a saved connector's tools now (by id) and records them in the catalog; on its first
    /// discovery only the definitions whose hashes are given (those the admin reviewed) are
    /// approved.
    pub type Discover = Arc<
        dyn Fn(
                String,
                Option<std::collections::HashSet<String>>,
            ) -> HookFuture<Result<CatalogSync, HookError>>
            + Send
            + Sync,
    >;
    /// Every connector with its live health (this replica) and catalog counts.
    pub type Statuses =
        Arc<dyn Fn() -> HookFuture<toolgate_domain::Result<Vec<ConnectorStatus>>> + Send + Sync>;
    /// One connector's status, by id or name.
    pub type Status =
        Arc<dyn Fn(String) -> HookFuture<toolgate_domain::Result<ConnectorStatus>> + Send + Sync>;
    /// After the snapshot was published: lets the upstream pool close connections of connectors
    /// that are gone or disabled.
    pub type ConnectionsChanged = Arc<dyn Fn() -> HookFuture<()> + Send + Sync>;

    /// What the connector server functions need from the server, provided as Leptos context.
    #[derive(Clone)]
    pub struct ConnectorHooks {
        pub probe: Probe,
        pub discover: Discover,
        pub statuses: Statuses,
        pub status: Status,
        pub connections_changed: ConnectionsChanged,
    }

    impl std::fmt::Debug for ConnectorHooks {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ConnectorHooks(..)")
        }
    }
}

/// A tool the wizard's "Test connection" found, with the risk it would be given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbedTool {
    pub name: String,
    pub description: String,
    pub risk: Risk,
    pub risk_reason: String,
    /// The definition's hash: what the admin reviewed, sent back on create.
    pub hash: String,
}

/// What one discovery changed in a catalog.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The connector's first discovery: its tools were accepted as found.
    pub initial: bool,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// A created connector and how its first discovery went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedConnector {
    pub connector: Connector,
    /// The catalog it starts with, or why discovery failed (the connector exists either way).
    pub discovery: Result<SyncReport, String>,
}

/// A connector's status and its whole catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectorDetail {
    pub status: ConnectorStatus,
    pub tools: Vec<CatalogTool>,
    /// Every group, for the per-tool "approve each call" choice.
    pub groups: Vec<toolgate_domain::model::Group>,
}

/// The add wizard's fields as typed. Secret values travel to the server once and are never
/// sent back.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub(crate) struct ConnectorForm {
    pub name: String,
    pub transport: String,
    pub url: String,
    pub command: String,
    /// One argument per line.
    pub args: String,
    /// `Name: value` lines.
    pub headers: String,
    /// `NAME=value` lines.
    pub env: String,
    pub oauth_token_url: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    pub oauth_scope: String,
    pub timeout_ms: String,
    pub max_concurrency: String,
}

/// `NAME=value` lines into a map; blank lines are skipped.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub(crate) fn parse_env_lines(
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("environment line {} must look like 'NAME=value'", i + 1))?;
        out.insert(k.trim().to_string(), v.trim_end_matches('\r').to_string());
    }
    Ok(out)
}

/// One argument per line; blank lines are skipped, other whitespace is kept.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub(crate) fn parse_args(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A positive number, or `default` when left empty.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
fn number_or<T: std::str::FromStr>(field: &str, text: &str, default: T) -> Result<T, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(default);
    }
    t.parse()
        .map_err(|_| format!("{field} must be a whole number"))
}

#[cfg(feature = "ssr")]
impl ConnectorForm {
    #[allow(clippy::too_many_arguments)]
    fn from_args(
        name: String,
        url: String,
        headers: String,
        transport: Option<String>,
        command: Option<String>,
        args: Option<String>,
        env: Option<String>,
        oauth_token_url: Option<String>,
        oauth_client_id: Option<String>,
        oauth_client_secret: Option<String>,
        oauth_scope: Option<String>,
        timeout_ms: Option<String>,
        max_concurrency: Option<String>,
    ) -> Self {
        ConnectorForm {
            name,
            transport: transport.unwrap_or_default(),
            url,
            command: command.unwrap_or_default(),
            args: args.unwrap_or_default(),
            headers,
            env: env.unwrap_or_default(),
            oauth_token_url: oauth_token_url.unwrap_or_default(),
            oauth_client_id: oauth_client_id.unwrap_or_default(),
            oauth_client_secret: oauth_client_secret.unwrap_or_default(),
            oauth_scope: oauth_scope.unwrap_or_default(),
            timeout_ms: timeout_ms.unwrap_or_default(),
            max_concurrency: max_concurrency.unwrap_or_default(),
        }
    }

    /// The connector to create (or probe) as typed; fields of other transports are ignored.
    fn to_new(&self) -> Result<toolgate_domain::store::NewConnector, String> {
        use toolgate_domain::model::{Transport, UpstreamOAuth};
        use toolgate_domain::store::{DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_MS, NewConnector};
        let transport = match self.transport.trim() {
            "" => Transport::StreamableHttp,
            t => Transport::parse(t).ok_or_else(|| format!("unknown transport {t:?}"))?,
        };
        let stdio = transport == Transport::Stdio;
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let oauth = given(&self.oauth_token_url).map(|token_url| UpstreamOAuth {
            token_url,
            client_id: self.oauth_client_id.trim().to_string(),
            scope: given(&self.oauth_scope),
            resource: None,
        });
        let oauth_client_secret = if oauth.is_some() && !self.oauth_client_secret.is_empty() {
            Some(self.oauth_client_secret.clone())
        } else {
            None
        };
        let input = NewConnector {
            name: self.name.trim().to_string(),
            transport,
            url: if stdio {
                String::new()
            } else {
                self.url.trim().to_string()
            },
            command: if stdio { given(&self.command) } else { None },
            args: if stdio {
                parse_args(&self.args)
            } else {
                vec![]
            },
            headers: if stdio {
                Default::default()
            } else {
                crate::server_fns::parse_header_lines(&self.headers)?
            },
            env: if stdio {
                parse_env_lines(&self.env)?
            } else {
                Default::default()
            },
            oauth,
            oauth_client_secret,
            timeout_ms: number_or("timeout", &self.timeout_ms, DEFAULT_TIMEOUT_MS)?,
            max_concurrency: number_or(
                "max concurrency",
                &self.max_concurrency,
                DEFAULT_MAX_CONCURRENCY,
            )?,
        };
        Ok(input)
    }
}

/// The checks a test connection needs before it connects anywhere: the same as creating.
#[cfg(feature = "ssr")]
fn check_probe(c: &toolgate_domain::store::NewConnector) -> Result<(), String> {
    toolgate_domain::store::validate_new_connector(c).map_err(|e| match e {
        toolgate_domain::Error::Invalid(m) => m,
        other => other.to_string(),
    })
}

#[cfg(feature = "ssr")]
fn hooks() -> Result<ConnectorHooks, ServerFnError> {
    use_context::<ConnectorHooks>()
        .ok_or_else(|| ServerFnError::new("connector status is not available on this server"))
}

#[cfg(feature = "ssr")]
fn hook_error(e: HookError) -> ServerFnError {
    match e {
        HookError::Upstream(m) => ServerFnError::new(m),
        HookError::Domain(e) => crate::server_fns::shown(e),
    }
}

#[cfg(feature = "ssr")]
impl From<toolgate_domain::store::CatalogSync> for SyncReport {
    fn from(s: toolgate_domain::store::CatalogSync) -> Self {
        SyncReport {
            initial: s.initial,
            added: s.added,
            changed: s.changed,
            removed: s.removed,
        }
    }
}

/// What an audit row keeps of a catalog entry (as the admin API records it).
#[cfg(feature = "ssr")]
fn review_view(t: &CatalogTool) -> serde_json::Value {
    serde_json::json!({
        "connector": t.connector_name, "tool": t.name, "review": t.review, "hash": t.hash,
        "risk": t.risk, "risk_reason": t.risk_reason,
    })
}

/// After a change to connectors: the snapshot is rebuilt, and the upstream pool lets go of
/// connectors that are gone or disabled.
#[cfg(feature = "ssr")]
async fn connectors_changed(ctx: &crate::auth::DashboardContext) {
    crate::server_fns::changed(ctx).await;
    if let Some(h) = use_context::<ConnectorHooks>() {
        (h.connections_changed)().await;
    }
}

/// Every connector with its health and catalog counts.
#[server(prefix = "/fn", endpoint = "connector_statuses")]
pub async fn connector_statuses() -> Result<Vec<ConnectorStatus>, ServerFnError> {
    let _ = crate::auth::require_admin().await?;
    (hooks()?.statuses)()
        .await
        .map_err(crate::server_fns::shown)
}

/// One connector (by name) with its catalog.
#[server(prefix = "/fn", endpoint = "connector_detail")]
pub async fn get_connector_detail(name: String) -> Result<ConnectorDetail, ServerFnError> {
    let (_, ctx) = crate::auth::require_admin().await?;
    let status = (hooks()?.status)(name)
        .await
        .map_err(crate::server_fns::shown)?;
    let tools = ctx
        .store
        .catalog(&status.connector.id)
        .await
        .map_err(crate::server_fns::shown)?;
    let groups = ctx
        .store
        .list_groups()
        .await
        .map_err(crate::server_fns::shown)?;
    Ok(ConnectorDetail {
        status,
        tools,
        groups,
    })
}

/// New and changed tools of every connector, waiting for an admin.
#[server(prefix = "/fn", endpoint = "review_queue")]
pub async fn review_queue() -> Result<Vec<CatalogTool>, ServerFnError> {
    let (_, ctx) = crate::auth::require_admin().await?;
    ctx.store
        .review_queue()
        .await
        .map_err(crate::server_fns::shown)
}

/// How many tools wait for review, for the navigation; `None` for those who are not admins
/// (no error, so the page around the navigation keeps its status).
#[server(prefix = "/fn", endpoint = "review_count")]
pub async fn review_count() -> Result<Option<usize>, ServerFnError> {
    let Some(user) = crate::auth::current_user().await? else {
        return Ok(None);
    };
    if !user.role.may(crate::auth::Page::Connectors) {
        return Ok(None);
    }
    let ctx = crate::auth::context()?;
    let queue = ctx
        .store
        .review_queue()
        .await
        .map_err(crate::server_fns::shown)?;
    Ok(Some(queue.len()))
}

/// The wizard's "Test connection": connects with the settings as typed (nothing is saved),
/// lists the tools and suggests a risk level for each.
#[server(prefix = "/fn", endpoint = "probe_connector")]
pub async fn probe_connector(
    name: String,
    url: String,
    headers: String,
    transport: Option<String>,
    command: Option<String>,
    args: Option<String>,
    env: Option<String>,
    oauth_token_url: Option<String>,
    oauth_client_id: Option<String>,
    oauth_client_secret: Option<String>,
    oauth_scope: Option<String>,
    timeout_ms: Option<String>,
    max_concurrency: Option<String>,
) -> Result<Vec<ProbedTool>, ServerFnError> {
    use toolgate_domain::model::Connector;
    use toolgate_domain::store::ConnectorSecrets;
    let (user, ctx) = crate::auth::require_admin().await?;
    let form = ConnectorForm::from_args(
        name,
        url,
        headers,
        transport,
        command,
        args,
        env,
        oauth_token_url,
        oauth_client_id,
        oauth_client_secret,
        oauth_scope,
        timeout_ms,
        max_concurrency,
    );
    let input = form.to_new().map_err(ServerFnError::new)?;
    check_probe(&input).map_err(ServerFnError::new)?;
    let hooks = hooks()?;
    let now = ctx.store.clock().now();
    let secrets = ConnectorSecrets {
        connector: Connector {
            // Not saved: the id only names the probe's connection.
            id: format!("probe-{}", input.name),
            header_names: input.headers.keys().cloned().collect(),
            env_names: input.env.keys().cloned().collect(),
            name: input.name,
            transport: input.transport,
            url: input.url,
            command: input.command,
            args: input.args,
            oauth: input.oauth,
            timeout_ms: input.timeout_ms,
            max_concurrency: input.max_concurrency,
            enabled: true,
            created_at: now,
            updated_at: now,
        },
        headers: input.headers,
        env: input.env,
        oauth_client_secret: input.oauth_client_secret,
    };
    // Why audited although nothing changes: a test runs a command (stdio) or connects from the
    // gateway's network on an admin's say-so.
    crate::server_fns::record(
        &ctx,
        &user.username,
        "admin.connector.test",
        true,
        format!(
            "{} ({}) {}",
            secrets.connector.name,
            secrets.connector.transport.as_str(),
            secrets
                .connector
                .command
                .clone()
                .unwrap_or_else(|| secrets.connector.url.clone())
        ),
    )
    .await;
    let tools = (hooks.probe)(secrets).await.map_err(hook_error)?;
    Ok(tools
        .into_iter()
        .map(|t| {
            let (risk, risk_reason) = toolgate_domain::risk::suggest(&t.name, &t.annotations);
            ProbedTool {
                hash: t.hash(),
                name: t.name,
                description: t.description,
                risk,
                risk_reason,
            }
        })
        .collect())
}

/// Creates a connector from the wizard (or the plain form: only `name`, `url` and `headers`),
/// then discovers its tools: what it lists now becomes the initial, approved catalog.
#[server(prefix = "/fn", endpoint = "add_connector")]
pub async fn add_connector(
    name: String,
    url: String,
    headers: String,
    transport: Option<String>,
    command: Option<String>,
    args: Option<String>,
    env: Option<String>,
    oauth_token_url: Option<String>,
    oauth_client_id: Option<String>,
    oauth_client_secret: Option<String>,
    oauth_scope: Option<String>,
    timeout_ms: Option<String>,
    max_concurrency: Option<String>,
    reviewed: Option<String>,
) -> Result<CreatedConnector, ServerFnError> {
    let (user, ctx) = crate::auth::require_admin().await?;
    let form = ConnectorForm::from_args(
        name,
        url,
        headers,
        transport,
        command,
        args,
        env,
        oauth_token_url,
        oauth_client_id,
        oauth_client_secret,
        oauth_scope,
        timeout_ms,
        max_concurrency,
    );
    let input = form.to_new().map_err(ServerFnError::new)?;
    let c = ctx
        .store
        .create_connector(input)
        .await
        .map_err(crate::server_fns::shown)?;
    tracing::info!(admin = %user.username, connector = %c.name, transport = c.transport.as_str(), "connector added from the dashboard");
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.connector.create",
        None,
        serde_json::to_value(&c).ok(),
    )
    .await;
    connectors_changed(&ctx).await;
    let discovery = match use_context::<ConnectorHooks>() {
        Some(h) => (h.discover)(c.id.clone(), reviewed_hashes(reviewed.as_deref()))
            .await
            .map(SyncReport::from)
            .map_err(|e| match e {
                HookError::Upstream(m) => m,
                HookError::Domain(e) => crate::pages::error_text(&crate::server_fns::shown(e)),
            }),
        None => Err("tool discovery is not available on this server".into()),
    };
    Ok(CreatedConnector {
        connector: c,
        discovery,
    })
}

/// The hashes of the definitions the admin saw in the wizard's test (comma-separated; empty
/// when the test found no tools); `None` when the form did not test (the plain form), so
/// everything found first is approved.
#[cfg(feature = "ssr")]
fn reviewed_hashes(reviewed: Option<&str>) -> Option<std::collections::HashSet<String>> {
    reviewed.map(|r| {
        r.split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect()
    })
}

/// Turns a connector on or off (off: agents no longer see its tools; the connection closes).
#[server(prefix = "/fn", endpoint = "set_connector_enabled")]
pub async fn set_connector_enabled(id: String, enabled: bool) -> Result<(), ServerFnError> {
    let (user, ctx) = crate::auth::require_admin().await?;
    let before = ctx
        .store
        .get_connector(&id)
        .await
        .map_err(crate::server_fns::shown)?;
    let after = ctx
        .store
        .update_connector(
            &id,
            toolgate_domain::store::ConnectorUpdate {
                enabled: Some(enabled),
                ..Default::default()
            },
        )
        .await
        .map_err(crate::server_fns::shown)?;
    tracing::info!(admin = %user.username, connector = %after.name, enabled, "connector switched from the dashboard");
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.connector.update",
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await;
    connectors_changed(&ctx).await;
    Ok(())
}

/// Deletes a connector with its catalog and the rules that name it.
#[server(prefix = "/fn", endpoint = "delete_connector")]
pub async fn delete_connector(id: String) -> Result<(), ServerFnError> {
    let (user, ctx) = crate::auth::require_admin().await?;
    let gone = ctx
        .store
        .delete_connector(&id)
        .await
        .map_err(crate::server_fns::shown)?;
    tracing::info!(admin = %user.username, connector = %gone.name, "connector deleted from the dashboard");
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.connector.delete",
        serde_json::to_value(&gone).ok(),
        None,
    )
    .await;
    connectors_changed(&ctx).await;
    Ok(())
}

/// Lists a connector's tools upstream now and records what changed.
#[server(prefix = "/fn", endpoint = "refresh_tools")]
pub async fn refresh_tools(id: String) -> Result<SyncReport, ServerFnError> {
    let (user, _) = crate::auth::require_admin().await?;
    let sync = (hooks()?.discover)(id.clone(), None)
        .await
        .map_err(hook_error)?;
    tracing::info!(admin = %user.username, connector = %id, "tools refreshed from the dashboard");
    Ok(sync.into())
}

/// An admin's review of a tool: approve (its current definition becomes the approved one) or
/// reject (never callable).
#[server(prefix = "/fn", endpoint = "review_tool")]
pub async fn review_tool(
    connector_id: String,
    tool: String,
    approve: bool,
) -> Result<(), ServerFnError> {
    let (user, ctx) = crate::auth::require_admin().await?;
    let before = ctx
        .store
        .catalog_tool(&connector_id, &tool)
        .await
        .map_err(crate::server_fns::shown)?;
    let after = ctx
        .store
        .review_tool(&connector_id, &tool, approve)
        .await
        .map_err(crate::server_fns::shown)?;
    tracing::info!(admin = %user.username, connector = %after.connector_name, tool = %tool, approve, "tool reviewed from the dashboard");
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.catalog.review",
        Some(review_view(&before)),
        Some(review_view(&after)),
    )
    .await;
    crate::server_fns::changed(&ctx).await;
    Ok(())
}

/// Sets a tool's risk level; an empty `risk` returns to the suggested level.
#[server(prefix = "/fn", endpoint = "set_tool_risk")]
pub async fn set_tool_risk(
    connector_id: String,
    tool: String,
    risk: String,
) -> Result<(), ServerFnError> {
    let (user, ctx) = crate::auth::require_admin().await?;
    let level = match risk.trim() {
        "" => None,
        r => Some(
            Risk::parse(r)
                .ok_or_else(|| ServerFnError::new(format!("unknown risk level {r:?}")))?,
        ),
    };
    let before = ctx
        .store
        .catalog_tool(&connector_id, &tool)
        .await
        .map_err(crate::server_fns::shown)?;
    let after = ctx
        .store
        .set_tool_risk(&connector_id, &tool, level)
        .await
        .map_err(crate::server_fns::shown)?;
    tracing::info!(admin = %user.username, connector = %after.connector_name, tool = %tool, risk = after.risk.as_str(), "tool risk set from the dashboard");
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.catalog.risk",
        Some(review_view(&before)),
        Some(review_view(&after)),
    )
    .await;
    crate::server_fns::changed(&ctx).await;
    Ok(())
}

/// Makes every call of a tool wait for a member of `group` to approve it; an empty `group` ends
/// that.
#[server(prefix = "/fn", endpoint = "set_tool_approval")]
pub async fn set_tool_approval(
    connector_id: String,
    tool: String,
    group: String,
) -> Result<(), ServerFnError> {
    let (user, ctx) = crate::auth::require_admin().await?;
    let group = Some(group.trim()).filter(|g| !g.is_empty());
    let before = ctx
        .store
        .catalog_tool(&connector_id, &tool)
        .await
        .map_err(crate::server_fns::shown)?;
    let after = ctx
        .store
        .set_tool_approval(&connector_id, &tool, group)
        .await
        .map_err(crate::server_fns::shown)?;
    tracing::info!(admin = %user.username, connector = %after.connector_name, tool = %tool, group = ?after.approval_group, "tool approval set from the dashboard");
    let view = |t: &CatalogTool| {
        serde_json::json!({
            "connector": t.connector_name, "tool": t.name, "approval_group": t.approval_group,
        })
    };
    crate::server_fns::record_change(
        &ctx,
        &user.username,
        "admin.catalog.approval",
        Some(view(&before)),
        Some(view(&after)),
    )
    .await;
    crate::server_fns::changed(&ctx).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines() {
        let e = parse_env_lines("API_KEY=a=b\n\nDEBUG=1").unwrap();
        assert_eq!(e.get("API_KEY").map(String::as_str), Some("a=b"));
        assert_eq!(e.get("DEBUG").map(String::as_str), Some("1"));
        assert!(parse_env_lines("NOEQUALS").unwrap_err().contains("line 1"));
    }

    #[test]
    fn args_keep_inner_spaces() {
        assert_eq!(
            parse_args("-y\n\n@scope/server\r\n--root /my docs"),
            vec!["-y", "@scope/server", "--root /my docs"]
        );
    }

    #[test]
    fn numbers_default_when_empty() {
        assert_eq!(number_or("timeout", " ", 30_000u64), Ok(30_000));
        assert_eq!(number_or("timeout", "500", 30_000u64), Ok(500));
        assert!(number_or("timeout", "soon", 30_000u64).is_err());
    }
}
