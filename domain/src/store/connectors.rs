//! Connectors: upstream MCP servers (streamable HTTP, legacy SSE, stdio commands) and the
//! credentials the gateway holds for them (headers, environment, OAuth client secret), each
//! sealed with the master key and bound to the connector's id.

use super::{ResultExt, Store, from_json_list, new_id, to_json_list};
use crate::clock::from_millis;
use crate::model::{Connector, Transport, UpstreamOAuth};
use crate::names::{
    validate_connector_name, validate_header_name, validate_header_value, validate_upstream_url,
};
use crate::{Error, Result};
use std::collections::BTreeMap;

/// Default time one upstream request may take.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default number of requests in flight to one upstream.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 32;

/// Input for a new connector.
#[derive(Clone, Debug)]
pub struct NewConnector {
    pub name: String,
    pub transport: Transport,
    pub url: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub oauth: Option<UpstreamOAuth>,
    pub oauth_client_secret: Option<String>,
    pub timeout_ms: u64,
    pub max_concurrency: u32,
}

impl NewConnector {
    /// A streamable-HTTP connector with defaults (the Foundation's shape).
    pub fn http(name: &str, url: &str) -> Self {
        NewConnector {
            name: name.into(),
            transport: Transport::StreamableHttp,
            url: url.into(),
            command: None,
            args: vec![],
            headers: BTreeMap::new(),
            env: BTreeMap::new(),
            oauth: None,
            oauth_client_secret: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// A change to a connector; `None` leaves a field as it is. Secret maps replace the stored ones
/// whole (values are write-only, so there is nothing to merge with).
#[derive(Clone, Debug, Default)]
pub struct ConnectorUpdate {
    pub url: Option<String>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub env: Option<BTreeMap<String, String>>,
    /// `Some(None)` removes OAuth; `Some(Some(..))` sets it (with `oauth_client_secret`, or keeping
    /// the stored secret when that is `None`).
    pub oauth: Option<Option<UpstreamOAuth>>,
    pub oauth_client_secret: Option<String>,
    pub timeout_ms: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub enabled: Option<bool>,
}

/// A connector with its decrypted secrets, for the proxy only.
#[derive(Clone)]
pub struct ConnectorSecrets {
    pub connector: Connector,
    pub headers: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub oauth_client_secret: Option<String>,
}

impl std::fmt::Debug for ConnectorSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secret values never reach logs.
        f.debug_struct("ConnectorSecrets")
            .field("connector", &self.connector)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("oauth_client_secret", &self.oauth_client_secret.is_some())
            .finish()
    }
}

#[derive(sqlx::FromRow)]
struct ConnectorRow {
    id: String,
    name: String,
    transport: String,
    url: String,
    command: Option<String>,
    args: String,
    header_names: String,
    headers_sealed: String,
    env_names: String,
    env_sealed: Option<String>,
    oauth: Option<String>,
    oauth_secret_sealed: Option<String>,
    timeout_ms: i64,
    max_concurrency: i64,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

/// The sealed parts of a row.
struct Sealed {
    headers: String,
    env: Option<String>,
    oauth_secret: Option<String>,
}

impl ConnectorRow {
    fn into_model(self) -> Result<(Connector, Sealed)> {
        let transport = Transport::parse(&self.transport).ok_or_else(|| {
            Error::Internal(format!("unknown transport {:?} in store", self.transport))
        })?;
        let oauth = match self.oauth.as_deref() {
            Some(s) => Some(
                serde_json::from_str::<UpstreamOAuth>(s)
                    .map_err(|e| Error::Internal(format!("stored oauth settings: {e}")))?,
            ),
            None => None,
        };
        let connector = Connector {
            id: self.id,
            name: self.name,
            transport,
            url: self.url,
            command: self.command,
            args: from_json_list(&self.args),
            header_names: from_json_list(&self.header_names),
            env_names: from_json_list(&self.env_names),
            oauth,
            timeout_ms: self.timeout_ms.max(0) as u64,
            max_concurrency: self.max_concurrency.clamp(1, i64::from(u32::MAX)) as u32,
            enabled: self.enabled != 0,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        };
        Ok((
            connector,
            Sealed {
                headers: self.headers_sealed,
                env: self.env_sealed,
                oauth_secret: self.oauth_secret_sealed,
            },
        ))
    }
}

const CONNECTOR_COLUMNS: &str = "id, name, transport, url, command, args, header_names, headers_sealed, env_names, env_sealed, oauth, oauth_secret_sealed, timeout_ms, max_concurrency, enabled, created_at, updated_at";

/// The AAD of a connector's sealed environment.
pub(super) fn env_aad(id: &str) -> Vec<u8> {
    format!("{id}:env").into_bytes()
}

/// The AAD of a connector's sealed OAuth client secret.
pub(super) fn oauth_aad(id: &str) -> Vec<u8> {
    format!("{id}:oauth").into_bytes()
}

fn check_text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.is_empty() || v.len() > max || v.contains('\0') {
        return Err(Error::Invalid(format!(
            "{field} must be 1-{max} characters without NUL"
        )));
    }
    Ok(())
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters.
pub fn validate_env_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(Error::Invalid(format!(
            "environment variable name {name:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 128)"
        )));
    }
    Ok(())
}

/// The fields of a connector that must fit its transport.
struct Shape<'a> {
    transport: Transport,
    url: &'a str,
    command: Option<&'a str>,
    args: &'a [String],
    headers: &'a BTreeMap<String, String>,
    env: &'a BTreeMap<String, String>,
    oauth: Option<&'a UpstreamOAuth>,
    timeout_ms: u64,
    max_concurrency: u32,
}

/// Checks the parts every connector shape shares with its transport, naming the first problem.
fn validate_shape(shape: Shape<'_>) -> Result<()> {
    let Shape {
        transport,
        url,
        command,
        args,
        headers,
        env,
        oauth,
        timeout_ms,
        max_concurrency,
    } = shape;
    match transport {
        Transport::StreamableHttp | Transport::Sse => {
            validate_upstream_url(url).map_err(Error::Invalid)?;
            if command.is_some() || !args.is_empty() {
                return Err(Error::invalid(
                    "command and args are for the stdio transport only",
                ));
            }
            if !env.is_empty() {
                return Err(Error::invalid(
                    "env is for the stdio transport only; send credentials in headers",
                ));
            }
        }
        Transport::Stdio => {
            if !url.is_empty() {
                return Err(Error::invalid("a stdio connector has a command, not a url"));
            }
            let command =
                command.ok_or_else(|| Error::invalid("a stdio connector needs a command"))?;
            check_text("command", command, 1024)?;
            if args.len() > 64 {
                return Err(Error::invalid("at most 64 args"));
            }
            for a in args {
                if a.len() > 4096 || a.contains('\0') {
                    return Err(Error::invalid(
                        "each arg must be at most 4096 characters without NUL",
                    ));
                }
            }
            if !headers.is_empty() || oauth.is_some() {
                return Err(Error::invalid(
                    "headers and oauth are for HTTP transports; give a stdio command its credentials in env",
                ));
            }
        }
    }
    if headers.len() > 32 {
        return Err(Error::invalid("at most 32 headers per connector"));
    }
    for (k, v) in headers {
        validate_header_name(k).map_err(Error::Invalid)?;
        validate_header_value(k, v).map_err(Error::Invalid)?;
    }
    if env.len() > 64 {
        return Err(Error::invalid(
            "at most 64 environment variables per connector",
        ));
    }
    for (k, v) in env {
        validate_env_name(k)?;
        if v.len() > 32 * 1024 || v.contains('\0') {
            return Err(Error::Invalid(format!(
                "value of environment variable {k:?} must be at most 32 KiB without NUL"
            )));
        }
    }
    if let Some(o) = oauth {
        validate_upstream_url(&o.token_url)
            .map_err(|e| Error::Invalid(format!("oauth.token_url: {e}")))?;
        check_text("oauth.client_id", &o.client_id, 512)?;
        if let Some(s) = &o.scope {
            check_text("oauth.scope", s, 1024)?;
        }
        if let Some(r) = &o.resource {
            validate_upstream_url(r).map_err(|e| Error::Invalid(format!("oauth.resource: {e}")))?;
        }
    }
    if !(100..=600_000).contains(&timeout_ms) {
        return Err(Error::invalid("timeout_ms must be between 100 and 600000"));
    }
    if !(1..=10_000).contains(&max_concurrency) {
        return Err(Error::invalid(
            "max_concurrency must be between 1 and 10000",
        ));
    }
    Ok(())
}

/// Checks a new connector's fields, naming the first problem.
pub fn validate_new_connector(input: &NewConnector) -> Result<()> {
    validate_connector_name(&input.name).map_err(Error::Invalid)?;
    // Why: the gateway answers `toolgate__…` tool names itself (`toolgate__request_elevation`);
    // a connector of that name would have its upstream's tools listed under names the gateway
    // routes to its own, with descriptions nobody at Toolgate wrote.
    let (reserved, _) = crate::elevation::REQUEST_TOOL
        .split_once(crate::names::TOOL_SEPARATOR)
        .unwrap_or_default();
    if input.name == reserved {
        return Err(Error::invalid(format!(
            "connector name {reserved:?} is reserved for the gateway's own tools"
        )));
    }
    validate_shape(Shape {
        transport: input.transport,
        url: &input.url,
        command: input.command.as_deref(),
        args: &input.args,
        headers: &input.headers,
        env: &input.env,
        oauth: input.oauth.as_ref(),
        timeout_ms: input.timeout_ms,
        max_concurrency: input.max_concurrency,
    })?;
    if input.oauth.is_some() != input.oauth_client_secret.is_some() {
        return Err(Error::invalid(
            "oauth needs its client_secret, and a client_secret needs oauth",
        ));
    }
    if let Some(s) = &input.oauth_client_secret {
        check_text("oauth.client_secret", s, 4096)?;
    }
    Ok(())
}

impl Store {
    fn seal_map(&self, map: &BTreeMap<String, String>, aad: &[u8]) -> Result<String> {
        let plain =
            serde_json::to_vec(map).map_err(|e| Error::Internal(format!("secrets: {e}")))?;
        self.cipher.seal(&plain, aad)
    }

    fn open_map(&self, sealed: &str, aad: &[u8]) -> Result<BTreeMap<String, String>> {
        let plain = self.cipher.open(sealed, aad)?;
        serde_json::from_slice(&plain).map_err(|e| Error::Internal(format!("secrets: {e}")))
    }

    /// Creates a connector, sealing its secrets under the master key.
    pub async fn create_connector(&self, input: NewConnector) -> Result<Connector> {
        validate_new_connector(&input)?;
        let id = new_id();
        let now = self.now_ms();
        let headers_sealed = self.seal_map(&input.headers, id.as_bytes())?;
        let env_sealed = if input.env.is_empty() {
            None
        } else {
            Some(self.seal_map(&input.env, &env_aad(&id))?)
        };
        let oauth_secret_sealed = match &input.oauth_client_secret {
            Some(s) => Some(self.cipher.seal(s.as_bytes(), &oauth_aad(&id))?),
            None => None,
        };
        let oauth_json = input
            .oauth
            .as_ref()
            .map(|o| serde_json::to_string(o).unwrap_or_default());
        sqlx::query(
            "INSERT INTO connectors (id, name, transport, url, command, args, header_names, headers_sealed,
                env_names, env_sealed, oauth, oauth_secret_sealed, timeout_ms, max_concurrency, enabled,
                catalog_initialized, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, 0, $15, $15)",
        )
        .bind(&id)
        .bind(&input.name)
        .bind(input.transport.as_str())
        .bind(&input.url)
        .bind(&input.command)
        .bind(to_json_list(&input.args))
        .bind(to_json_list(&input.headers.keys().cloned().collect::<Vec<_>>()))
        .bind(&headers_sealed)
        .bind(to_json_list(&input.env.keys().cloned().collect::<Vec<_>>()))
        .bind(&env_sealed)
        .bind(&oauth_json)
        .bind(&oauth_secret_sealed)
        .bind(input.timeout_ms as i64)
        .bind(i64::from(input.max_concurrency))
        .bind(now)
        .execute(&self.pool)
        .await
        .on_unique(|| format!("a connector named {:?} already exists", input.name))?;
        self.get_connector(&id).await
    }

    pub async fn get_connector(&self, id: &str) -> Result<Connector> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1");
        let row = sqlx::query_as::<_, ConnectorRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("connector"))?;
        Ok(row.into_model()?.0)
    }

    /// A connector by id or by name.
    pub async fn find_connector(&self, id_or_name: &str) -> Result<Connector> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1 OR name = $1");
        let row = sqlx::query_as::<_, ConnectorRow>(&sql)
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("connector"))?;
        Ok(row.into_model()?.0)
    }

    pub async fn list_connectors(&self) -> Result<Vec<Connector>> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors ORDER BY name");
        let rows = sqlx::query_as::<_, ConnectorRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| r.into_model().map(|(c, _)| c))
            .collect()
    }

    /// Enables or disables a connector.
    pub async fn set_connector_enabled(&self, id: &str, enabled: bool) -> Result<Connector> {
        self.update_connector(
            id,
            ConnectorUpdate {
                enabled: Some(enabled),
                ..ConnectorUpdate::default()
            },
        )
        .await
    }

    /// Applies a change to a connector (validated as a whole, secrets resealed).
    pub async fn update_connector(&self, id: &str, change: ConnectorUpdate) -> Result<Connector> {
        let mut tx = self.write_tx().await?;
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1");
        let row = sqlx::query_as::<_, ConnectorRow>(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound("connector"))?;
        let (mut c, sealed) = row.into_model()?;
        let mut headers_sealed = sealed.headers;
        let mut env_sealed = sealed.env;
        let mut oauth_secret_sealed = sealed.oauth_secret;
        if let Some(url) = change.url {
            c.url = url;
        }
        if let Some(cmd) = change.command {
            c.command = Some(cmd);
        }
        if let Some(args) = change.args {
            c.args = args;
        }
        if let Some(o) = change.oauth {
            c.oauth = o;
        }
        if let Some(t) = change.timeout_ms {
            c.timeout_ms = t;
        }
        if let Some(m) = change.max_concurrency {
            c.max_concurrency = m;
        }
        if let Some(e) = change.enabled {
            c.enabled = e;
        }
        // Validate with the secrets that will be in force (only names matter for the shape).
        let headers_now = match &change.headers {
            Some(h) => h.clone(),
            None => c
                .header_names
                .iter()
                .map(|k| (k.clone(), "x".into()))
                .collect(),
        };
        let env_now = match &change.env {
            Some(e) => e.clone(),
            None => c
                .env_names
                .iter()
                .map(|k| (k.clone(), String::new()))
                .collect(),
        };
        validate_shape(Shape {
            transport: c.transport,
            url: &c.url,
            command: c.command.as_deref(),
            args: &c.args,
            headers: &headers_now,
            env: &env_now,
            oauth: c.oauth.as_ref(),
            timeout_ms: c.timeout_ms,
            max_concurrency: c.max_concurrency,
        })?;
        if let Some(h) = change.headers {
            headers_sealed = self.seal_map(&h, id.as_bytes())?;
            c.header_names = h.keys().cloned().collect();
        }
        if let Some(e) = change.env {
            env_sealed = if e.is_empty() {
                None
            } else {
                Some(self.seal_map(&e, &env_aad(id))?)
            };
            c.env_names = e.keys().cloned().collect();
        }
        if let Some(s) = change.oauth_client_secret {
            check_text("oauth.client_secret", &s, 4096)?;
            oauth_secret_sealed = Some(self.cipher.seal(s.as_bytes(), &oauth_aad(id))?);
        }
        if c.oauth.is_none() {
            oauth_secret_sealed = None;
        } else if oauth_secret_sealed.is_none() {
            return Err(Error::invalid("oauth needs its client_secret"));
        }
        let now = self.now_ms();
        sqlx::query(
            "UPDATE connectors SET url = $1, command = $2, args = $3, header_names = $4, headers_sealed = $5,
                env_names = $6, env_sealed = $7, oauth = $8, oauth_secret_sealed = $9, timeout_ms = $10,
                max_concurrency = $11, enabled = $12, updated_at = $13 WHERE id = $14",
        )
        .bind(&c.url)
        .bind(&c.command)
        .bind(to_json_list(&c.args))
        .bind(to_json_list(&c.header_names))
        .bind(&headers_sealed)
        .bind(to_json_list(&c.env_names))
        .bind(&env_sealed)
        .bind(c.oauth.as_ref().map(|o| serde_json::to_string(o).unwrap_or_default()))
        .bind(&oauth_secret_sealed)
        .bind(c.timeout_ms as i64)
        .bind(i64::from(c.max_concurrency))
        .bind(i64::from(c.enabled))
        // Why: updated_at versions the live upstream connection; a change must reconnect.
        .bind(now.max(c.updated_at.timestamp_millis() + 1))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_connector(id).await
    }

    /// Deletes a connector with its catalog and policies.
    pub async fn delete_connector(&self, id: &str) -> Result<Connector> {
        let c = self.get_connector(id).await?;
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM connector_tools WHERE connector_id = $1",
            "DELETE FROM tool_policies WHERE connector_id = $1",
            "DELETE FROM connectors WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(c)
    }

    fn open_secrets(&self, connector: &Connector, sealed: &Sealed) -> Result<ConnectorSecrets> {
        let id = connector.id.as_bytes();
        let headers = self.open_map(&sealed.headers, id)?;
        let env = match &sealed.env {
            Some(s) => self.open_map(s, &env_aad(&connector.id))?,
            None => BTreeMap::new(),
        };
        let oauth_client_secret = match &sealed.oauth_secret {
            Some(s) => Some(
                String::from_utf8(self.cipher.open(s, &oauth_aad(&connector.id))?)
                    .map_err(|_| Error::Internal("oauth secret is not UTF-8".into()))?,
            ),
            None => None,
        };
        Ok(ConnectorSecrets {
            connector: connector.clone(),
            headers,
            env,
            oauth_client_secret,
        })
    }

    /// Every connector with decrypted secrets, for the proxy's snapshot. A connector whose
    /// secrets cannot be opened (wrong master key) is left out and logged, not served unauthenticated.
    pub async fn connectors_with_secrets(&self) -> Result<Vec<ConnectorSecrets>> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors ORDER BY name");
        let rows = sqlx::query_as::<_, ConnectorRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (connector, sealed) = row.into_model()?;
            match self.open_secrets(&connector, &sealed) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::error!(connector = %connector.name, error = %e, "connector secrets unreadable; connector skipped")
                }
            }
        }
        Ok(out)
    }

    /// One connector with decrypted secrets (for discovery from the admin API).
    pub async fn connector_with_secrets(&self, id: &str) -> Result<ConnectorSecrets> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1");
        let row = sqlx::query_as::<_, ConnectorRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("connector"))?;
        let (connector, sealed) = row.into_model()?;
        self.open_secrets(&connector, &sealed)
    }

    /// The stored (sealed) secret columns of a connector, for tests that prove encryption at rest.
    #[cfg(feature = "test-util")]
    pub async fn raw_sealed_headers(&self, id: &str) -> Result<String> {
        let (h, e, o): (String, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT headers_sealed, env_sealed, oauth_secret_sealed FROM connectors WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(format!(
            "{h}|{}|{}",
            e.unwrap_or_default(),
            o.unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdio() -> NewConnector {
        NewConnector {
            transport: Transport::Stdio,
            url: String::new(),
            command: Some("npx".into()),
            args: vec!["-y".into(), "server".into()],
            env: [("API_KEY".to_string(), "s3cret".to_string())].into(),
            ..NewConnector::http("local", "")
        }
    }

    #[test]
    fn shapes_per_transport() {
        assert!(validate_new_connector(&NewConnector::http("gh", "https://x/mcp")).is_ok());
        let sse = NewConnector {
            transport: Transport::Sse,
            ..NewConnector::http("gh", "https://x/sse")
        };
        assert!(validate_new_connector(&sse).is_ok());
        assert!(validate_new_connector(&stdio()).is_ok());
        let mut bad = stdio();
        bad.command = None;
        assert!(validate_new_connector(&bad).is_err());
        let mut bad = stdio();
        bad.url = "https://x".into();
        assert!(validate_new_connector(&bad).is_err());
        let mut bad = stdio();
        bad.env.insert("1BAD".into(), "x".into());
        assert!(validate_new_connector(&bad).is_err());
        let mut bad = NewConnector::http("gh", "https://x/mcp");
        bad.env.insert("A".into(), "x".into());
        assert!(validate_new_connector(&bad).is_err());
        let mut bad = NewConnector::http("gh", "https://x/mcp");
        bad.timeout_ms = 10;
        assert!(validate_new_connector(&bad).is_err());
        let mut bad = NewConnector::http("gh", "https://x/mcp");
        bad.max_concurrency = 0;
        assert!(validate_new_connector(&bad).is_err());
        // The gateway's own tool prefix is not a connector name.
        let err = validate_new_connector(&NewConnector::http("toolgate", "https://x/mcp"));
        assert!(
            matches!(&err, Err(Error::Invalid(m)) if m.contains("reserved")),
            "{err:?}"
        );
        assert!(validate_new_connector(&NewConnector::http("toolgate-2", "https://x/mcp")).is_ok());
    }

    #[test]
    fn oauth_needs_its_secret() {
        let mut c = NewConnector::http("gh", "https://x/mcp");
        c.oauth = Some(UpstreamOAuth {
            token_url: "https://login.example.com/token".into(),
            client_id: "app".into(),
            scope: None,
            resource: None,
        });
        assert!(validate_new_connector(&c).is_err());
        c.oauth_client_secret = Some("secret".into());
        assert!(validate_new_connector(&c).is_ok());
        c.oauth.as_mut().unwrap().token_url = "ftp://x".into();
        assert!(validate_new_connector(&c).is_err());
    }
}
