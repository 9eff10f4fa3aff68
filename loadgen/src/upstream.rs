//! The benchmark's upstream: a minimal rmcp server (streamable HTTP) that does next to nothing
//! per call, so the upstream is not what is measured. `/mcp` offers `echo` and `big` (N bytes of
//! plain text, for DLP); `/wide/{i}` offers a catalog of many tools (one per connector of the
//! tools/list scenario); `/wide-all` offers all of those catalogs in one listing, named as the
//! gateway exposes them, for the direct side of that scenario.

use axum::Router;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::{Arc, Mutex};

/// Name of the connector for copy `i` of the wide catalog (`w000`, `w001`, …).
pub fn wide_connector(i: usize) -> String {
    format!("w{i:03}")
}

/// One server instance: the tools it lists, and the last `big` text it made.
#[derive(Clone)]
pub struct Echo {
    tools: Arc<Vec<Tool>>,
    big: Arc<Mutex<Option<Arc<String>>>>,
}

fn schema(v: serde_json::Value) -> Arc<JsonObject> {
    match v {
        serde_json::Value::Object(m) => Arc::new(m),
        _ => unreachable!("schemas are objects"),
    }
}

impl Echo {
    fn with(tools: Vec<Tool>) -> Echo {
        Echo {
            tools: Arc::new(tools),
            big: Arc::default(),
        }
    }

    /// `echo` and `big`.
    pub fn basic() -> Echo {
        Echo::with(vec![
            Tool::new(
                "echo",
                "Echo the text back",
                schema(serde_json::json!({
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"]
                })),
            ),
            Tool::new(
                "big",
                "Return `bytes` bytes of plain text",
                schema(serde_json::json!({
                    "type": "object",
                    "properties": {"bytes": {"type": "integer", "minimum": 0}},
                    "required": ["bytes"]
                })),
            ),
        ])
    }

    /// `count` tools named `tool_00`, `tool_01`, … with a realistic description and schema;
    /// `prefix` is put before each name (`w003__`) for the all-in-one listing.
    pub fn wide(count: usize, prefix: &str) -> Echo {
        let input = schema(serde_json::json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "Identifier of the record"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Most items returned"}
            },
            "required": ["id"]
        }));
        Echo::with(
            (0..count)
                .map(|j| {
                    Tool::new(
                        format!("{prefix}tool_{j:02}"),
                        format!(
                            "Look up record details in system {j}: returns the fields, owner and history of one record by its identifier."
                        ),
                        input.clone(),
                    )
                })
                .collect(),
        )
    }

    /// Every copy of the wide catalog in one listing, named `w000__tool_00` … as the gateway
    /// exposes them.
    pub fn wide_all(count: usize, copies: usize) -> Echo {
        let tools = (0..copies)
            .flat_map(|i| {
                Echo::wide(count, &format!("{}__", wide_connector(i)))
                    .tools
                    .to_vec()
            })
            .collect();
        Echo::with(tools)
    }

    /// `bytes` bytes of lower-case words and spaces (nothing a DLP detector matches); the last
    /// size asked for is kept, so the upstream does not rebuild it per call.
    fn big_text(&self, bytes: usize) -> Arc<String> {
        let mut last = self.big.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = last.as_ref().filter(|t| t.len() == bytes) {
            return t.clone();
        }
        let text = Arc::new(filler(bytes));
        *last = Some(text.clone());
        text
    }
}

/// `bytes` bytes of plain words, lines of about 80 characters.
pub fn filler(bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "the", "gateway", "relays", "calls", "from", "agents", "to", "upstream", "servers", "and",
        "writes", "an", "audit", "record", "for", "each", "one", "policy", "decides", "which",
        "tools", "are", "shown",
    ];
    let mut s = String::with_capacity(bytes + 16);
    let mut line = 0;
    let mut i = 0usize;
    while s.len() < bytes {
        let w = WORDS[(i * 7 + i / 5) % WORDS.len()];
        s.push_str(w);
        line += w.len();
        if line > 76 {
            s.push('\n');
            line = 0;
        } else {
            s.push(' ');
            line += 1;
        }
        i += 1;
    }
    s.truncate(bytes);
    s
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arg = |k: &str| request.arguments.as_ref().and_then(|a| a.get(k));
        let text = match request.name.as_ref() {
            "echo" => arg("text")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            "big" => {
                let bytes = arg("bytes").and_then(|b| b.as_u64()).unwrap_or(0) as usize;
                self.big_text(bytes).as_str().to_string()
            }
            name if self.tools.iter().any(|t| t.name == name) => format!("{name}: ok"),
            name => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {name}"),
                    None,
                ));
            }
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

fn service(echo: Echo) -> StreamableHttpService<Echo, LocalSessionManager> {
    StreamableHttpService::new(
        move || Ok(echo.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    )
}

/// The upstream's routes: `/mcp`, `/wide/{i}` (`count` tools), `/wide-all` (`count` x `copies`).
pub fn router(count: usize, copies: usize) -> Router {
    Router::new()
        .route_service("/mcp", service(Echo::basic()))
        .route_service("/wide/{i}", service(Echo::wide(count, "")))
        .route_service("/wide-all", service(Echo::wide_all(count, copies)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_has_the_size_asked_for_and_only_words() {
        for n in [0, 1, 79, 1_000_000] {
            let t = filler(n);
            assert_eq!(t.len(), n);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b' ' || b == b'\n')
            );
        }
    }

    #[test]
    fn wide_all_names_tools_as_the_gateway_exposes_them() {
        let e = Echo::wide_all(50, 3);
        assert_eq!(e.tools.len(), 150);
        assert_eq!(e.tools[0].name, "w000__tool_00");
        assert_eq!(e.tools[149].name, "w002__tool_49");
    }
}
