//! The MCP server agents talk to: aggregates the tools of every enabled connector as
//! `{connector}__{tool}`, shows each caller only what policy allows, and relays allowed calls,
//! auditing every one.

use super::upstream::{UpstreamError, Upstreams};
use crate::metrics_names::{TOOL_CALLS, UPSTREAM_LATENCY};
use futures::future::join_all;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::Arc;
use std::time::Instant;
use toolgate_domain::audit::AuditSink;
use toolgate_domain::clock::SharedClock;
use toolgate_domain::model::{AuditDecision, Outcome};
use toolgate_domain::names::{exposed_tool_name, split_exposed_tool_name};
use toolgate_domain::snapshot::{Principal, SnapshotHandle};
use toolgate_domain::store::NewAuditEvent;

/// JSON-RPC error code for "the connector behind this tool failed" (implementation-defined range).
pub const UPSTREAM_UNAVAILABLE: ErrorCode = ErrorCode(-32001);
/// JSON-RPC error code for "refused because the audit log cannot be written".
pub const AUDIT_UNAVAILABLE: ErrorCode = ErrorCode(-32002);

/// What every session shares.
#[derive(Clone)]
pub struct GatewayShared {
    pub snapshot: Arc<SnapshotHandle>,
    pub upstreams: Arc<Upstreams>,
    pub audit: AuditSink,
    pub clock: SharedClock,
}

/// One MCP session's handler (rmcp makes one per session).
#[derive(Clone)]
pub struct Gateway {
    shared: GatewayShared,
}

impl Gateway {
    pub fn new(shared: GatewayShared) -> Self {
        Gateway { shared }
    }
}

/// The caller, put into the request by the auth middleware. Without it nothing is served.
fn principal(ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| ErrorData::invalid_request("not authenticated", None))
}

fn request_id(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.headers.get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The error a caller gets for a tool it may not use. Unknown and denied look the same, so the
/// error does not reveal which tools exist.
fn not_permitted(name: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_PARAMS,
        format!("tool \"{name}\" is not permitted for this caller"),
        None,
    )
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("toolgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Toolgate relays the tools of your organisation's MCP servers as \
                 {connector}__{tool}; you see only the tools your groups allow.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = principal(&ctx)?;
        let snap = self.shared.snapshot.get();
        let connectors: Vec<_> = snap.enabled_connectors().cloned().collect();
        let fetched = join_all(connectors.iter().map(|c| self.shared.upstreams.tools(c))).await;
        let mut out: Vec<Tool> = Vec::new();
        for (c, tools) in connectors.iter().zip(fetched) {
            let name = &c.connector.name;
            let tools = match tools {
                Ok(t) => t,
                Err(e) => {
                    // One broken connector must not hide the others' tools.
                    tracing::warn!(connector = %name, error = %e, "tools of connector left out of the list");
                    continue;
                }
            };
            for tool in tools.iter() {
                if !snap.decide(&who, name, &tool.name).is_allowed() {
                    continue;
                }
                let Some(exposed) = exposed_tool_name(name, &tool.name) else {
                    tracing::warn!(connector = %name, tool = %tool.name, "tool name does not fit connector__tool within 64 characters; not exposed");
                    continue;
                };
                let mut t = tool.clone();
                t.name = exposed.into();
                out.push(t);
            }
        }
        Ok(ListToolsResult::with_all_items(out))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let who = principal(&ctx)?;
        let exposed = request.name.to_string();
        let snap = self.shared.snapshot.get();
        let (connector, tool) = split_exposed_tool_name(&exposed).unwrap_or(("", &exposed));
        let verdict = if connector.is_empty() {
            toolgate_domain::policy::Verdict::Deny {
                rule: "not a {connector}__{tool} name".into(),
            }
        } else {
            snap.decide(&who, connector, tool)
        };
        let mut event = NewAuditEvent {
            at: self.shared.clock.now(),
            kind: "tool_call".into(),
            principal: who.user_name.clone(),
            principal_id: Some(who.user_id.clone()),
            connector: (!connector.is_empty()).then(|| connector.to_string()),
            tool: Some(if connector.is_empty() {
                exposed.clone()
            } else {
                tool.to_string()
            }),
            decision: if verdict.is_allowed() {
                AuditDecision::Allow
            } else {
                AuditDecision::Deny
            },
            rule: Some(verdict.rule().to_string()),
            outcome: Outcome::Denied,
            latency_us: 0,
            error: None,
            request_id: request_id(&ctx),
            detail: None,
        };

        let target = snap
            .connector(connector)
            .filter(|_| verdict.is_allowed())
            .cloned();
        let Some(target) = target else {
            tracing::info!(principal = %who.user_name, tool = %exposed, rule = %verdict.rule(), "tool call denied");
            event.latency_us = started.elapsed().as_micros() as i64;
            self.record(event).await?;
            return Err(not_permitted(&exposed));
        };

        let mut upstream_request = request;
        upstream_request.name = tool.to_string().into();
        let upstream_started = Instant::now();
        let result = self.shared.upstreams.call(&target, upstream_request).await;
        metrics::histogram!(UPSTREAM_LATENCY, "connector" => connector.to_string())
            .record(upstream_started.elapsed().as_secs_f64());
        event.latency_us = started.elapsed().as_micros() as i64;
        let response: Result<CallToolResult, ErrorData> = match result {
            Ok(r) => {
                event.outcome = if r.is_error == Some(true) {
                    Outcome::ToolError
                } else {
                    Outcome::Ok
                };
                Ok(r)
            }
            Err(UpstreamError::Rpc(data)) => {
                event.outcome = Outcome::UpstreamError;
                event.error = Some(data.message.to_string());
                Err(data)
            }
            Err(e) => {
                event.outcome = Outcome::UpstreamError;
                event.error = Some(e.to_string());
                Err(ErrorData::new(
                    UPSTREAM_UNAVAILABLE,
                    format!("tool \"{exposed}\" failed: {e}"),
                    None,
                ))
            }
        };
        self.record(event).await?;
        response.map(CallToolResponse::from)
    }
}

impl Gateway {
    /// Writes the audit event before the answer goes out; if it cannot be written the caller gets
    /// an error instead of the answer (fail closed).
    async fn record(&self, event: NewAuditEvent) -> Result<(), ErrorData> {
        let forwarded = event.decision == AuditDecision::Allow;
        metrics::counter!(
            TOOL_CALLS,
            "decision" => event.decision.as_str(),
            "outcome" => event.outcome.as_str()
        )
        .increment(1);
        self.shared.audit.record(event).await.map_err(|_| {
            let message = if forwarded {
                "the audit log is unavailable; the call's result was withheld"
            } else {
                "the audit log is unavailable; the call was refused"
            };
            ErrorData::new(AUDIT_UNAVAILABLE, message, None)
        })
    }
}
