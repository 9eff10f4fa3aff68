//! Connectors: upstream MCP servers and the credentials (headers) the gateway holds for them,
//! sealed with the master key.

use super::{ResultExt, Store, from_json_list, new_id, to_json_list};
use crate::clock::from_millis;
use crate::model::{Connector, Transport};
use crate::names::{
    validate_connector_name, validate_header_name, validate_header_value, validate_upstream_url,
};
use crate::{Error, Result};
use std::collections::BTreeMap;

/// Input for a new connector.
#[derive(Clone, Debug)]
pub struct NewConnector {
    pub name: String,
    pub transport: Transport,
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

/// A connector with its decrypted headers, for the proxy only.
#[derive(Clone)]
pub struct ConnectorSecrets {
    pub connector: Connector,
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for ConnectorSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are secrets: never in logs.
        f.debug_struct("ConnectorSecrets")
            .field("connector", &self.connector)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(sqlx::FromRow)]
struct ConnectorRow {
    id: String,
    name: String,
    transport: String,
    url: String,
    header_names: String,
    headers_sealed: String,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

impl ConnectorRow {
    fn into_model(self) -> Result<(Connector, String)> {
        let transport = Transport::parse(&self.transport).ok_or_else(|| {
            Error::Internal(format!("unknown transport {:?} in store", self.transport))
        })?;
        let connector = Connector {
            id: self.id,
            name: self.name,
            transport,
            url: self.url,
            header_names: from_json_list(&self.header_names),
            enabled: self.enabled != 0,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        };
        Ok((connector, self.headers_sealed))
    }
}

const CONNECTOR_COLUMNS: &str =
    "id, name, transport, url, header_names, headers_sealed, enabled, created_at, updated_at";

/// Checks a new connector's fields, naming the first problem.
pub fn validate_new_connector(input: &NewConnector) -> Result<()> {
    validate_connector_name(&input.name).map_err(Error::Invalid)?;
    validate_upstream_url(&input.url).map_err(Error::Invalid)?;
    if input.headers.len() > 32 {
        return Err(Error::invalid("at most 32 headers per connector"));
    }
    for (k, v) in &input.headers {
        validate_header_name(k).map_err(Error::Invalid)?;
        validate_header_value(k, v).map_err(Error::Invalid)?;
    }
    Ok(())
}

impl Store {
    /// Creates a connector, sealing its header values under the master key.
    pub async fn create_connector(&self, input: NewConnector) -> Result<Connector> {
        validate_new_connector(&input)?;
        let id = new_id();
        let now = self.now_ms();
        let plain = serde_json::to_vec(&input.headers)
            .map_err(|e| Error::Internal(format!("headers: {e}")))?;
        let sealed = self.cipher.seal(&plain, id.as_bytes())?;
        let names: Vec<String> = input.headers.keys().cloned().collect();
        sqlx::query(
            "INSERT INTO connectors (id, name, transport, url, header_names, headers_sealed, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)",
        )
        .bind(&id)
        .bind(&input.name)
        .bind(input.transport.as_str())
        .bind(&input.url)
        .bind(to_json_list(&names))
        .bind(&sealed)
        .bind(now)
        .execute(&self.pool)
        .await
        .on_unique(|| format!("a connector named {:?} already exists", input.name))?;
        Ok(Connector {
            id,
            name: input.name,
            transport: input.transport,
            url: input.url,
            header_names: names,
            enabled: true,
            created_at: from_millis(now),
            updated_at: from_millis(now),
        })
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
        let done = sqlx::query("UPDATE connectors SET enabled = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(enabled))
            .bind(self.now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("connector"));
        }
        self.get_connector(id).await
    }

    /// Every connector with decrypted headers, for the proxy's snapshot. A connector whose
    /// secrets cannot be opened (wrong master key) is left out and logged, not served unauthenticated.
    pub async fn connectors_with_secrets(&self) -> Result<Vec<ConnectorSecrets>> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors ORDER BY name");
        let rows = sqlx::query_as::<_, ConnectorRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (connector, sealed) = row.into_model()?;
            let headers = self
                .cipher
                .open(&sealed, connector.id.as_bytes())
                .and_then(|plain| {
                    serde_json::from_slice::<BTreeMap<String, String>>(&plain)
                        .map_err(|e| Error::Internal(format!("headers: {e}")))
                });
            match headers {
                Ok(headers) => out.push(ConnectorSecrets { connector, headers }),
                Err(e) => {
                    tracing::error!(connector = %connector.name, error = %e, "connector secrets unreadable; connector skipped")
                }
            }
        }
        Ok(out)
    }

    /// The stored (sealed) header blob of a connector, for tests that prove encryption at rest.
    #[cfg(feature = "test-util")]
    pub async fn raw_sealed_headers(&self, id: &str) -> Result<String> {
        let (s,): (String,) = sqlx::query_as("SELECT headers_sealed FROM connectors WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(s)
    }
}
