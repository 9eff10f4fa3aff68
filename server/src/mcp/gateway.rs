//! The MCP server agents talk to: aggregates the tools of every enabled connector as
//! `{connector}__{tool}` (or, at `/mcp/{connector}`, one connector's tools under their own
//! names), shows each caller only what policy allows, relays allowed calls, resources and
//! prompts, and audits every one. Listings that show tools the catalog does not know yet (new or
//! changed definitions) are recorded in the catalog before anything is decided.

use super::upstream::{UpstreamError, Upstreams};
use crate::metrics_names::{AUDIT_FAILURES, DLP_FINDINGS, TOOL_CALLS, UPSTREAM_LATENCY};
use futures::future::join_all;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::Arc;
use std::time::Instant;
use toolgate_domain::approvals::{Actor, Notice, Workflow};
use toolgate_domain::audit::AuditSink;
use toolgate_domain::clock::SharedClock;
use toolgate_domain::crypto::sha256_hex;
use toolgate_domain::dlp::{DlpAction, Findings};
use toolgate_domain::elevation::{ElevationAsk, REQUEST_TOOL};
use toolgate_domain::model::{AuditDecision, Outcome};
use toolgate_domain::names::{exposed_tool_name, split_exposed_tool_name};
use toolgate_domain::snapshot::{CallDecision, DlpPlan, Principal, SnapshotHandle};
use toolgate_domain::store::{CallBinding, Claim, MAX_ARGS_BYTES, NewAuditEvent, truncate_utf8};

/// JSON-RPC error code for "the connector behind this tool failed" (implementation-defined range).
pub const UPSTREAM_UNAVAILABLE: ErrorCode = ErrorCode(-32001);
/// JSON-RPC error code for "refused because the audit log cannot be written".
pub const AUDIT_UNAVAILABLE: ErrorCode = ErrorCode(-32002);
/// JSON-RPC error code for "withheld by data-loss prevention".
pub const DLP_BLOCKED: ErrorCode = ErrorCode(-32003);
/// JSON-RPC error code for "allowed only under an elevation the caller has not activated"; the
/// data names the profiles and the dashboard link.
pub const ELEVATION_REQUIRED: ErrorCode = ErrorCode(-32004);
/// JSON-RPC error code for "this exact call waits for an approver"; the data carries the
/// approval id. Retrying the same call with the same arguments runs it once approved.
pub const APPROVAL_PENDING: ErrorCode = ErrorCode(-32005);
/// JSON-RPC error code for "an approver refused this exact call".
pub const APPROVAL_DENIED: ErrorCode = ErrorCode(-32006);

/// What every session shares.
#[derive(Clone)]
pub struct GatewayShared {
    pub snapshot: Arc<SnapshotHandle>,
    pub upstreams: Arc<Upstreams>,
    pub audit: AuditSink,
    pub clock: SharedClock,
    /// Forward calls even when their audit event cannot be written (`audit_fail_open`).
    pub fail_open: bool,
    pub catalog: crate::connectors::Catalog,
    /// Each connector's tool list renamed `{connector}__{tool}`, made once per upstream listing.
    pub exposed: Arc<ExposedTools>,
    /// Elevation requests from agents, per-call approvals.
    pub workflow: Workflow,
    /// For the dashboard links in errors.
    pub public_url: String,
}

/// The aggregate endpoint's names for each connector's cached tool list: built when a listing
/// is first seen (by identity of the cached list), so `tools/list` formats no names.
#[derive(Default)]
pub struct ExposedTools {
    lists: std::sync::Mutex<std::collections::HashMap<String, ExposedList>>,
}

/// A cached upstream list (by identity) and its tools renamed (`None`: cannot be exposed).
type ExposedList = (std::sync::Weak<Vec<Tool>>, Arc<Vec<Option<Tool>>>);

impl ExposedTools {
    /// The renamed tools of `tools`, the list connector `connector` gave.
    pub fn of(&self, connector: &str, tools: &Arc<Vec<Tool>>) -> Arc<Vec<Option<Tool>>> {
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((list, exposed)) = lists.get(connector)
            && std::ptr::eq(list.as_ptr(), Arc::as_ptr(tools))
        {
            return exposed.clone();
        }
        let exposed: Arc<Vec<Option<Tool>>> = Arc::new(
            tools
                .iter()
                .map(|t| {
                    let Some(name) = exposed_tool_name(connector, &t.name) else {
                        tracing::warn!(connector, tool = %t.name, "tool name does not fit connector__tool within 64 characters; not exposed");
                        return None;
                    };
                    let mut t = t.clone();
                    t.name = name.into();
                    Some(t)
                })
                .collect(),
        );
        lists.insert(
            connector.to_string(),
            (Arc::downgrade(tools), exposed.clone()),
        );
        exposed
    }
}

/// Put into a request by the `/mcp/{connector}` route: this session sees one connector, its
/// tools and prompts under their own names.
#[derive(Clone, Debug)]
pub struct ConnectorScope(pub String);

fn scope(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<ConnectorScope>())
        .map(|s| s.0.clone())
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
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
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
        let scope = scope(&ctx);
        let mut snap = self.shared.snapshot.get();
        let now_ms = self.shared.clock.now().timestamp_millis();
        // Only connectors the caller may see anything of (rules or an elevation profile) are
        // asked for their tools: with 100 connectors and rules on one, one listing.
        let visible = |c: &&Arc<toolgate_domain::store::ConnectorSecrets>| {
            snap.listing(&who, &c.connector.name, now_ms)
                .is_some_and(|l| !l.is_empty())
        };
        let connectors: Vec<_> = match &scope {
            Some(name) => snap
                .connector(name)
                .filter(visible)
                .cloned()
                .into_iter()
                .collect(),
            None => snap.enabled_connectors().filter(visible).cloned().collect(),
        };
        let fetched = join_all(connectors.iter().map(|c| self.shared.upstreams.tools(c))).await;
        // New or changed definitions go to the catalog first (new ones wait for review there).
        let mut recorded = false;
        for (c, tools) in connectors.iter().zip(&fetched) {
            if let Ok(tools) = tools
                && self.shared.catalog.drifted(&c.connector.name, tools)
            {
                match self.shared.catalog.record(c, tools).await {
                    Ok(_) => recorded = true,
                    Err(e) => {
                        tracing::error!(connector = %c.connector.name, error = %e, "recording the tool catalog failed")
                    }
                }
            }
        }
        if recorded {
            snap = self.shared.snapshot.get();
        }
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
            let Some(listing) = snap.listing(&who, name, now_ms).filter(|l| !l.is_empty()) else {
                continue;
            };
            let exposed = self.shared.exposed.of(name, &tools);
            for (tool, renamed) in tools.iter().zip(exposed.iter()) {
                let shown = if scope.is_some() {
                    tool
                } else {
                    match renamed {
                        Some(r) => r,
                        None => continue,
                    }
                };
                if listing.allows(&tool.name) {
                    match listing.approval_group(&tool.name) {
                        Some(_) => out.push(annotated(
                            shown,
                            "[Each call needs an approver's yes: the first call returns an approval id; repeat the same call with the same arguments once approved.]",
                        )),
                        None => out.push(shown.clone()),
                    }
                } else if let Some(profile) = listing.eligible_for(&tool.name) {
                    out.push(annotated(
                        shown,
                        &format!(
                            "[Needs just-in-time elevation \"{profile}\": request it with {REQUEST_TOOL} or in the dashboard.]"
                        ),
                    ));
                }
            }
        }
        if scope.is_none() && snap.elevation_settings().agent_requests {
            let profiles = snap.eligible_profile_names(&who);
            if !profiles.is_empty() {
                out.push(request_tool(&profiles));
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
        let meta = CallMeta::of(&ctx);
        let exposed = request.name.to_string();
        let scope = scope(&ctx);
        let (connector, tool) = match &scope {
            Some(c) => (c.as_str(), exposed.as_str()),
            None => split_exposed_tool_name(&exposed).unwrap_or(("", &exposed)),
        };
        if scope.is_none() && exposed == REQUEST_TOOL {
            return self.request_elevation(&who, request).await;
        }
        let (snap, discovery_failed) = self.snapshot_knowing(connector, tool).await;
        let decision = if connector.is_empty() {
            CallDecision {
                verdict: toolgate_domain::policy::Verdict::Deny {
                    rule: "not a {connector}__{tool} name".into(),
                },
                elevation: None,
                eligible: vec![],
                approval_group: None,
            }
        } else {
            snap.decide_call(
                &who,
                connector,
                tool,
                self.shared.clock.now().timestamp_millis(),
            )
        };
        let verdict = &decision.verdict;
        let dlp = snap.dlp_plan(&who, connector);

        // The arguments as sent are hashed; the copy kept in the log is redacted.
        let args_value = request
            .arguments
            .clone()
            .map(serde_json::Value::Object)
            .unwrap_or(serde_json::Value::Null);
        let args_text = args_value.to_string();
        let mut args_logged = args_value.clone();
        let args_findings = dlp
            .as_ref()
            .map(|p| p.dlp.scanner.scan_json(&mut args_logged, true))
            .unwrap_or_default();
        let call_id = uuid::Uuid::new_v4().to_string();
        let mut event = NewAuditEvent {
            principal_id: Some(who.user_id.clone()),
            subject_kind: Some(who.kind.as_str().into()),
            client_name: who.client_name.clone().or_else(|| meta.client_name.clone()),
            client_id: Some(
                who.client_id
                    .clone()
                    .unwrap_or_else(|| who.token_id.clone()),
            ),
            session_id: meta.session_id.clone(),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
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
            request_id: meta.request_id.clone(),
            call_id: Some(call_id.clone()),
            args_redacted: (!args_logged.is_null())
                .then(|| truncate_utf8(&args_logged.to_string(), MAX_ARGS_BYTES).to_string()),
            args_hash: Some(sha256_hex(args_text.as_bytes())),
            elevation_id: decision.elevation.clone(),
            bytes_in: Some(args_text.len() as i64),
            dlp_findings: args_findings.clone(),
            ..NewAuditEvent::new(self.shared.clock.now(), "tool_call", &who.user_name)
        };

        let target = snap
            .connector(connector)
            .filter(|_| verdict.is_allowed())
            .cloned();
        // A connector whose tools could never be discovered: those with rules there learn why.
        if target.is_none()
            && let Some(e) = discovery_failed
            && snap.has_rules_on(&who, connector)
        {
            event.outcome = Outcome::UpstreamError;
            event.error = Some(e.to_string());
            event.latency_us = started.elapsed().as_micros() as i64;
            self.record(event, false).await?;
            return Err(ErrorData::new(
                UPSTREAM_UNAVAILABLE,
                format!("tool \"{exposed}\" failed: {e}"),
                None,
            ));
        }
        let Some(target) = target else {
            tracing::info!(principal = %who.user_name, tool = %exposed, rule = %verdict.rule(), "tool call denied");
            event.latency_us = started.elapsed().as_micros() as i64;
            if !decision.eligible.is_empty() {
                // The caller may ask for this: say how, instead of a bare refusal.
                event.rule = Some(format!(
                    "{}; eligible for elevation {}",
                    verdict.rule(),
                    decision.eligible.join(", ")
                ));
                self.record(event, false).await?;
                return Err(self.elevation_required(&exposed, &decision.eligible));
            }
            self.record(event, false).await?;
            return Err(not_permitted(&exposed));
        };

        // DLP on arguments, when asked for: block the call, or forward the redacted arguments.
        let mut upstream_request = request;
        if let Some(plan) = dlp.as_ref().filter(|p| p.dlp.settings.scan_arguments)
            && !args_findings.is_empty()
        {
            count_findings(&args_findings, plan.action);
            match plan.action {
                DlpAction::Block => {
                    event.decision = AuditDecision::Deny;
                    event.outcome = Outcome::Blocked;
                    event.rule = Some(format!(
                        "DLP: arguments contain {}",
                        finding_names(&args_findings)
                    ));
                    event.latency_us = started.elapsed().as_micros() as i64;
                    self.record(event, false).await?;
                    return Err(ErrorData::new(
                        DLP_BLOCKED,
                        format!(
                            "tool \"{exposed}\" was not called: its arguments contain {} (data-loss prevention)",
                            finding_names(&args_findings)
                        ),
                        None,
                    ));
                }
                DlpAction::Redact => {
                    if let serde_json::Value::Object(m) = args_logged.clone() {
                        upstream_request.arguments = Some(m);
                    }
                }
                DlpAction::LogOnly => {}
            }
        }

        // A tool that needs a yes for each call: run only against an unused approval of exactly
        // this caller, tool and arguments.
        if let Some(group) = &decision.approval_group {
            let binding = CallBinding {
                subject_kind: who.kind.as_str().into(),
                subject_id: who.user_id.clone(),
                subject_name: who.user_name.clone(),
                client_name: event.client_name.clone(),
                connector: connector.to_string(),
                tool: tool.to_string(),
                args_hash: event.args_hash.clone().unwrap_or_default(),
                args_redacted: event.args_redacted.clone(),
                approver_group: group.to_string(),
            };
            let ttl_ms = i64::from(snap.elevation_settings().approval_ttl_minutes) * 60_000;
            let claim = self
                .shared
                .workflow
                .store
                .claim_call_approval(&binding, ttl_ms)
                .await;
            match claim {
                Ok(Claim::Run(id)) => {
                    event.rule = Some(format!("{}; approved call {id}", verdict.rule()));
                    event.approval_id = Some(id);
                }
                Ok(Claim::Pending(id, new)) => {
                    event.outcome = Outcome::PendingApproval;
                    event.rule = Some(format!(
                        "{}; each call needs approval ({id})",
                        verdict.rule()
                    ));
                    event.approval_id = Some(id.clone());
                    event.latency_us = started.elapsed().as_micros() as i64;
                    self.record(event, false).await?;
                    if new && let Ok(a) = self.shared.workflow.store.call_approval(&id).await {
                        self.shared.workflow.notifier.notify(Notice::Approval {
                            event: "approval.requested",
                            approval: a,
                        });
                    }
                    return Err(ErrorData::new(
                        APPROVAL_PENDING,
                        format!(
                            "tool \"{exposed}\" needs an approver's yes for this exact call: approval {id} is pending. Repeat the same call with the same arguments once it is approved ({}).",
                            crate::elevation::approvals_link(&self.shared.public_url)
                        ),
                        Some(serde_json::json!({
                            "approval_id": id,
                            "status": "pending",
                            "link": crate::elevation::approvals_link(&self.shared.public_url),
                        })),
                    ));
                }
                Ok(Claim::Denied(id, comment)) => {
                    event.decision = AuditDecision::Deny;
                    event.rule = Some(format!("approval {id} was denied"));
                    event.approval_id = Some(id.clone());
                    event.latency_us = started.elapsed().as_micros() as i64;
                    self.record(event, false).await?;
                    return Err(ErrorData::new(
                        APPROVAL_DENIED,
                        format!(
                            "an approver refused this call of tool \"{exposed}\" (approval {id}){}",
                            comment.map(|c| format!(": {c}")).unwrap_or_default()
                        ),
                        Some(serde_json::json!({ "approval_id": id, "status": "denied" })),
                    ));
                }
                Err(e) => {
                    // Fail closed: without the approval store nothing that needs one runs.
                    tracing::error!(error = %e, "per-call approval lookup failed; call refused");
                    event.decision = AuditDecision::Deny;
                    event.rule = Some(format!("approval lookup failed: {e}"));
                    event.latency_us = started.elapsed().as_micros() as i64;
                    self.record(event, false).await?;
                    return Err(ErrorData::new(
                        UPSTREAM_UNAVAILABLE,
                        "the approval store is unavailable; the call was not made",
                        None,
                    ));
                }
            }
        }

        // Nothing is forwarded before its record is durable (fail closed).
        event.outcome = Outcome::Forwarded;
        event.latency_us = started.elapsed().as_micros() as i64;
        let call_record = event.clone();
        self.record(call_record, false).await?;

        upstream_request.name = tool.to_string().into();
        let upstream_started = Instant::now();
        let result = self.shared.upstreams.call(&target, upstream_request).await;
        metrics::histogram!(UPSTREAM_LATENCY, "connector" => connector.to_string())
            .record(upstream_started.elapsed().as_secs_f64());

        let mut done = NewAuditEvent {
            principal_id: event.principal_id.clone(),
            subject_kind: event.subject_kind.clone(),
            client_name: event.client_name.clone(),
            client_id: event.client_id.clone(),
            session_id: event.session_id.clone(),
            ip: event.ip.clone(),
            connector: event.connector.clone(),
            tool: event.tool.clone(),
            request_id: event.request_id.clone(),
            call_id: Some(call_id),
            elevation_id: event.elevation_id.clone(),
            approval_id: event.approval_id.clone(),
            ..NewAuditEvent::new(self.shared.clock.now(), "tool_result", &who.user_name)
        };
        let response: Result<CallToolResult, ErrorData> = match result {
            Ok(r) => {
                let (r, bytes, findings) = match dlp.as_ref() {
                    Some(plan) => scan_result(r, plan),
                    None => {
                        let bytes = serde_json::to_vec(&r).map(|v| v.len()).unwrap_or(0);
                        (r, bytes, Findings::new())
                    }
                };
                done.bytes_out = Some(bytes as i64);
                let blocked = !findings.is_empty()
                    && dlp.as_ref().is_some_and(|p| p.action == DlpAction::Block);
                if let Some(plan) = dlp.as_ref()
                    && !findings.is_empty()
                {
                    count_findings(&findings, plan.action);
                }
                let names = finding_names(&findings);
                done.dlp_findings = findings;
                if blocked {
                    done.outcome = Outcome::Blocked;
                    done.error = Some(format!("response withheld by DLP: it contains {names}"));
                    Err(ErrorData::new(
                        DLP_BLOCKED,
                        format!(
                            "the response of tool \"{exposed}\" was withheld: it contains {names} (data-loss prevention)"
                        ),
                        None,
                    ))
                } else {
                    done.outcome = if r.is_error == Some(true) {
                        Outcome::ToolError
                    } else {
                        Outcome::Ok
                    };
                    Ok(r)
                }
            }
            Err(UpstreamError::Rpc(data)) => {
                done.outcome = Outcome::UpstreamError;
                done.error = Some(data.message.to_string());
                Err(data)
            }
            Err(e) => {
                done.outcome = Outcome::UpstreamError;
                done.error = Some(e.to_string());
                Err(ErrorData::new(
                    UPSTREAM_UNAVAILABLE,
                    format!("tool \"{exposed}\" failed: {e}"),
                    None,
                ))
            }
        };
        done.latency_us = started.elapsed().as_micros() as i64;
        self.record(done, true).await?;
        response.map(CallToolResponse::from)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = principal(&ctx)?;
        let scope = scope(&ctx);
        let snap = self.shared.snapshot.get();
        let listed = self
            .gather(
                &snap,
                &scope,
                |up, c| async move { up.list_resources(&c).await },
            )
            .await;
        let mut out = Vec::new();
        for (name, resources) in listed {
            for mut r in resources {
                if !snap.decide_resource(&who, &name, &r.uri).is_allowed() {
                    continue;
                }
                if scope.is_none() {
                    r.uri = aggregate_uri(&name, &r.uri);
                }
                out.push(r);
            }
        }
        Ok(ListResourcesResult::with_all_items(out))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let who = principal(&ctx)?;
        let scope = scope(&ctx);
        let snap = self.shared.snapshot.get();
        let listed = self
            .gather(&snap, &scope, |up, c| async move {
                up.list_resource_templates(&c).await
            })
            .await;
        let mut out = Vec::new();
        for (name, templates) in listed {
            for mut t in templates {
                // A template is offered when its literal part could match an allowed resource
                // pattern; every read is still decided on the concrete URI.
                let literal = t.uri_template.split('{').next().unwrap_or_default();
                if !snap
                    .decide_resource(&who, &name, &format!("{literal}*"))
                    .is_allowed()
                    && !snap.decide_resource(&who, &name, literal).is_allowed()
                {
                    continue;
                }
                if scope.is_none() {
                    t.uri_template = aggregate_uri(&name, &t.uri_template);
                }
                out.push(t);
            }
        }
        Ok(ListResourceTemplatesResult::with_all_items(out))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let started = Instant::now();
        let who = principal(&ctx)?;
        let meta = CallMeta::of(&ctx);
        let scope = scope(&ctx);
        let asked = request.uri.clone();
        let (connector, uri) = match &scope {
            Some(c) => (c.clone(), asked.clone()),
            None => split_aggregate_uri(&asked)
                .map(|(c, u)| (c.to_string(), u.to_string()))
                .unwrap_or_default(),
        };
        let snap = self.shared.snapshot.get();
        let verdict = if connector.is_empty() {
            toolgate_domain::policy::Verdict::Deny {
                rule: "not a {connector}+{uri} resource URI".into(),
            }
        } else {
            snap.decide_resource(&who, &connector, &uri)
        };
        let refused = || {
            ErrorData::resource_not_found(
                format!("resource \"{asked}\" is not permitted for this caller"),
                None,
            )
        };
        let (target, mut event) = self
            .admit(
                &snap,
                &who,
                &meta,
                "resource_read",
                (&connector, &uri),
                verdict,
                started,
            )
            .await?
            .ok_or_else(refused)?;
        let mut upstream_request = request;
        upstream_request.uri = uri.clone();
        let result = self
            .shared
            .upstreams
            .read_resource(&target, upstream_request)
            .await;
        let dlp = snap.dlp_plan(&who, &connector);
        let response = match result {
            Ok(r) => {
                let mut value = serde_json::to_value(&r).unwrap_or_default();
                let mut findings = Findings::new();
                if let Some(items) = value.get_mut("contents").and_then(|c| c.as_array_mut()) {
                    for item in items {
                        if let Some(plan) = dlp.as_ref()
                            && let Some(text) = item.get_mut("text")
                        {
                            for (k, n) in plan
                                .dlp
                                .scanner
                                .scan_json(text, plan.action == DlpAction::Redact)
                            {
                                *findings.entry(k).or_insert(0) += n;
                            }
                        }
                        if scope.is_none()
                            && let Some(u) = item.get_mut("uri")
                            && let Some(s) = u.as_str()
                        {
                            *u = serde_json::Value::String(aggregate_uri(&connector, s));
                        }
                    }
                }
                event.bytes_out = serde_json::to_vec(&value).ok().map(|v| v.len() as i64);
                let blocked = !findings.is_empty()
                    && dlp.as_ref().is_some_and(|p| p.action == DlpAction::Block);
                if let Some(plan) = dlp.as_ref()
                    && !findings.is_empty()
                {
                    count_findings(&findings, plan.action);
                }
                let names = finding_names(&findings);
                event.dlp_findings = findings;
                if blocked {
                    event.outcome = Outcome::Blocked;
                    event.error = Some(format!("resource withheld by DLP: it contains {names}"));
                    Err(ErrorData::new(
                        DLP_BLOCKED,
                        format!(
                            "resource \"{asked}\" was withheld: it contains {names} (data-loss prevention)"
                        ),
                        None,
                    ))
                } else {
                    event.outcome = Outcome::Ok;
                    serde_json::from_value::<rmcp::model::ReadResourceResult>(value)
                        .map(ReadResourceResponse::from)
                        .map_err(|_| {
                            ErrorData::internal_error("the resource could not be relayed", None)
                        })
                }
            }
            Err(e) => Err(self.upstream_failed(&mut event, e, &format!("resource \"{asked}\""))),
        };
        event.latency_us = started.elapsed().as_micros() as i64;
        self.record(event, true).await?;
        response
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let who = principal(&ctx)?;
        let scope = scope(&ctx);
        let snap = self.shared.snapshot.get();
        let listed = self
            .gather(
                &snap,
                &scope,
                |up, c| async move { up.list_prompts(&c).await },
            )
            .await;
        let mut out = Vec::new();
        for (name, prompts) in listed {
            for mut p in prompts {
                if !snap.decide_prompt(&who, &name, &p.name).is_allowed() {
                    continue;
                }
                if scope.is_none() {
                    let Some(exposed) = exposed_tool_name(&name, &p.name) else {
                        continue;
                    };
                    p.name = exposed;
                }
                out.push(p);
            }
        }
        Ok(ListPromptsResult::with_all_items(out))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let started = Instant::now();
        let who = principal(&ctx)?;
        let meta = CallMeta::of(&ctx);
        let scope = scope(&ctx);
        let exposed = request.name.clone();
        let (connector, prompt) = match &scope {
            Some(c) => (c.clone(), exposed.clone()),
            None => split_exposed_tool_name(&exposed)
                .map(|(c, p)| (c.to_string(), p.to_string()))
                .unwrap_or_default(),
        };
        let snap = self.shared.snapshot.get();
        let verdict = if connector.is_empty() {
            toolgate_domain::policy::Verdict::Deny {
                rule: "not a {connector}__{prompt} name".into(),
            }
        } else {
            snap.decide_prompt(&who, &connector, &prompt)
        };
        let refused = || {
            ErrorData::invalid_params(
                format!("prompt \"{exposed}\" is not permitted for this caller"),
                None,
            )
        };
        let (target, mut event) = self
            .admit(
                &snap,
                &who,
                &meta,
                "prompt_get",
                (&connector, &prompt),
                verdict,
                started,
            )
            .await?
            .ok_or_else(refused)?;
        let mut upstream_request = request;
        upstream_request.name = prompt;
        let response = match self
            .shared
            .upstreams
            .get_prompt(&target, upstream_request)
            .await
        {
            Ok(r) => {
                event.outcome = Outcome::Ok;
                event.bytes_out = serde_json::to_vec(&r).ok().map(|v| v.len() as i64);
                Ok(GetPromptResponse::from(r))
            }
            Err(e) => Err(self.upstream_failed(&mut event, e, &format!("prompt \"{exposed}\""))),
        };
        event.latency_us = started.elapsed().as_micros() as i64;
        self.record(event, true).await?;
        response
    }
}

/// Where a call came from, for the audit log.
struct CallMeta {
    ip: Option<String>,
    user_agent: Option<String>,
    session_id: Option<String>,
    request_id: Option<String>,
    client_name: Option<String>,
}

impl CallMeta {
    fn of(ctx: &RequestContext<RoleServer>) -> Self {
        let parts = ctx.extensions.get::<http::request::Parts>();
        let header = |name: &str| {
            parts
                .and_then(|p| p.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(512).collect::<String>())
        };
        CallMeta {
            ip: parts
                .and_then(|p| {
                    p.extensions
                        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                })
                .map(|c| c.0.ip().to_string()),
            user_agent: header("user-agent"),
            session_id: header("mcp-session-id"),
            request_id: header("x-request-id"),
            client_name: ctx.peer.peer_info().map(|i| {
                format!("{} {}", i.client_info.name, i.client_info.version)
                    .chars()
                    .take(200)
                    .collect()
            }),
        }
    }
}

/// Scans (and, when the action says so, redacts) the text a tool returned: text content,
/// embedded resource text and structured content. Returns the result to send, its size in
/// bytes and the findings. Binary content (images, audio) is left alone.
/// A tool as listed, with a note in front of its description.
fn annotated(tool: &Tool, note: &str) -> Tool {
    let mut t = tool.clone();
    t.description = Some(match tool.description.as_deref() {
        Some(d) if !d.is_empty() => format!("{note} {d}").into(),
        _ => note.to_string().into(),
    });
    t
}

/// The gateway's own tool: ask for an elevation on the person's behalf (a human approves).
fn request_tool(profiles: &[String]) -> Tool {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "profile": {"type": "string", "enum": profiles, "description": "The elevation profile to request."},
            "justification": {"type": "string", "description": "Why the elevation is needed; approvers read this."},
            "minutes": {"type": "integer", "minimum": 1, "description": "How long; the profile's maximum when left out or larger."},
            "ticket": {"type": "string", "description": "A ticket or change reference, when the profile asks for one."}
        },
        "required": ["profile", "justification"],
        "additionalProperties": false
    });
    Tool::new(
        REQUEST_TOOL,
        format!(
            "Ask for a time-bounded elevation (just-in-time access) on behalf of the person you act for. An approver decides; nothing is unlocked before. Profiles you may request: {}.",
            profiles.join(", ")
        ),
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )
}

fn scan_result(r: CallToolResult, plan: &DlpPlan) -> (CallToolResult, usize, Findings) {
    let redact = plan.action == DlpAction::Redact;
    let mut value = match serde_json::to_value(&r) {
        Ok(v) => v,
        Err(_) => return (r, 0, Findings::new()),
    };
    let mut findings = Findings::new();
    let mut merge = |f: Findings| {
        for (k, n) in f {
            *findings.entry(k).or_insert(0) += n;
        }
    };
    if let Some(items) = value.get_mut("content").and_then(|c| c.as_array_mut()) {
        for item in items {
            if let Some(text) = item.get_mut("text") {
                merge(plan.dlp.scanner.scan_json(text, redact));
            }
            if let Some(text) = item.get_mut("resource").and_then(|r| r.get_mut("text")) {
                merge(plan.dlp.scanner.scan_json(text, redact));
            }
        }
    }
    if let Some(structured) = value.get_mut("structuredContent") {
        merge(plan.dlp.scanner.scan_json(structured, redact));
    }
    let bytes = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0);
    if !redact || findings.is_empty() {
        return (r, bytes, findings);
    }
    match serde_json::from_value::<CallToolResult>(value) {
        Ok(redacted) => (redacted, bytes, findings),
        // Cannot happen for a value that came from a CallToolResult; never leak on a surprise.
        Err(_) => (
            CallToolResult::error(vec![rmcp::model::ContentBlock::text(
                "the response could not be redacted and was withheld",
            )]),
            bytes,
            findings,
        ),
    }
}

fn finding_names(f: &Findings) -> String {
    f.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn count_findings(f: &Findings, action: DlpAction) {
    let action = match action {
        DlpAction::Block => "block",
        DlpAction::Redact => "redact",
        DlpAction::LogOnly => "log",
    };
    for (detector, n) in f {
        metrics::counter!(DLP_FINDINGS, "detector" => detector.clone(), "action" => action)
            .increment(*n);
    }
}

/// In the aggregated `/mcp`, a resource URI names its connector: `{connector}+{uri}` (a valid
/// URI scheme, since connector names are `[a-z0-9-]`).
fn aggregate_uri(connector: &str, uri: &str) -> String {
    format!("{connector}+{uri}")
}

fn split_aggregate_uri(uri: &str) -> Option<(&str, &str)> {
    let (c, rest) = uri.split_once('+')?;
    toolgate_domain::names::validate_connector_name(c).ok()?;
    (!rest.is_empty()).then_some((c, rest))
}

impl Gateway {
    /// The connectors a listing covers: the scoped one, or every enabled one.
    fn in_scope(
        &self,
        snap: &toolgate_domain::snapshot::Snapshot,
        scope: &Option<String>,
    ) -> Vec<Arc<toolgate_domain::store::ConnectorSecrets>> {
        match scope {
            Some(name) => snap.connector(name).cloned().into_iter().collect(),
            None => snap.enabled_connectors().cloned().collect(),
        }
    }

    /// Each connector in scope with what `list` got from it (connectors that failed are left out:
    /// one broken connector must not hide the others').
    async fn gather<T, F, Fut>(
        &self,
        snap: &toolgate_domain::snapshot::Snapshot,
        scope: &Option<String>,
        list: F,
    ) -> Vec<(String, Vec<T>)>
    where
        F: Fn(Arc<Upstreams>, Arc<toolgate_domain::store::ConnectorSecrets>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, UpstreamError>>,
    {
        let connectors = self.in_scope(snap, scope);
        let fetched = join_all(
            connectors
                .iter()
                .map(|c| list(self.shared.upstreams.clone(), c.clone())),
        )
        .await;
        connectors
            .into_iter()
            .zip(fetched)
            .filter_map(|(c, got)| match got {
                Ok(items) => Some((c.connector.name.clone(), items)),
                Err(e) => {
                    tracing::warn!(connector = %c.connector.name, error = %e, "connector left out of the list");
                    None
                }
            })
            .collect()
    }

    /// Admits a resource read or prompt get: returns the connector to ask and the audit event
    /// to complete, or records the refusal and returns `None` (the caller then answers with its
    /// protocol's error).
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        snap: &toolgate_domain::snapshot::Snapshot,
        who: &Principal,
        meta: &CallMeta,
        kind: &str,
        (connector, target): (&str, &str),
        verdict: toolgate_domain::policy::Verdict,
        started: Instant,
    ) -> Result<Option<(Arc<toolgate_domain::store::ConnectorSecrets>, NewAuditEvent)>, ErrorData>
    {
        let mut event = self.access_event(who, meta, kind, connector, target, &verdict);
        match snap.connector(connector).filter(|_| verdict.is_allowed()) {
            Some(c) => Ok(Some((c.clone(), event))),
            None => {
                event.latency_us = started.elapsed().as_micros() as i64;
                self.record(event, false).await?;
                Ok(None)
            }
        }
    }

    /// The audit event of a resource read or prompt get (outcome filled in later).
    fn access_event(
        &self,
        who: &Principal,
        meta: &CallMeta,
        kind: &str,
        connector: &str,
        target: &str,
        verdict: &toolgate_domain::policy::Verdict,
    ) -> NewAuditEvent {
        NewAuditEvent {
            principal_id: Some(who.user_id.clone()),
            subject_kind: Some(who.kind.as_str().into()),
            client_name: who.client_name.clone().or_else(|| meta.client_name.clone()),
            client_id: Some(
                who.client_id
                    .clone()
                    .unwrap_or_else(|| who.token_id.clone()),
            ),
            session_id: meta.session_id.clone(),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
            connector: (!connector.is_empty()).then(|| connector.to_string()),
            tool: Some(truncate_utf8(target, 1024).to_string()),
            decision: if verdict.is_allowed() {
                AuditDecision::Allow
            } else {
                AuditDecision::Deny
            },
            rule: Some(verdict.rule().to_string()),
            outcome: Outcome::Denied,
            request_id: meta.request_id.clone(),
            call_id: Some(uuid::Uuid::new_v4().to_string()),
            ..NewAuditEvent::new(self.shared.clock.now(), kind, &who.user_name)
        }
    }

    /// Notes an upstream failure in the event and turns it into the caller's error.
    fn upstream_failed(
        &self,
        event: &mut NewAuditEvent,
        e: UpstreamError,
        what: &str,
    ) -> ErrorData {
        event.outcome = Outcome::UpstreamError;
        match e {
            UpstreamError::Rpc(data) => {
                event.error = Some(data.message.to_string());
                data
            }
            other => {
                event.error = Some(other.to_string());
                ErrorData::new(
                    UPSTREAM_UNAVAILABLE,
                    format!("{what} failed: {other}"),
                    None,
                )
            }
        }
    }

    /// The snapshot to decide a call with. A connector whose catalog is still empty (created
    /// while its upstream was down) gets its first discovery now, at most every few seconds; a
    /// failed discovery is returned too.
    async fn snapshot_knowing(
        &self,
        connector: &str,
        tool: &str,
    ) -> (
        Arc<toolgate_domain::snapshot::Snapshot>,
        Option<crate::connectors::DiscoveryError>,
    ) {
        let snap = self.shared.snapshot.get();
        let needs_discovery = snap.catalog_entry(connector, tool).is_none()
            && snap.catalog_of(connector).is_some_and(|c| c.is_empty());
        if !needs_discovery {
            return (snap, None);
        }
        let Some(c) = snap.connector(connector) else {
            return (snap, None);
        };
        let failed = self
            .shared
            .catalog
            .discover_throttled(&c.connector.id)
            .await;
        (self.shared.snapshot.get(), failed)
    }

    /// The error for a tool only an elevation (that the caller may request) would allow.
    fn elevation_required(&self, exposed: &str, profiles: &[String]) -> ErrorData {
        let link = crate::elevation::access_link(
            &self.shared.public_url,
            profiles.first().map(String::as_str),
        );
        ErrorData::new(
            ELEVATION_REQUIRED,
            format!(
                "tool \"{exposed}\" needs a just-in-time elevation you have not activated: request profile {} at {link} (or call {REQUEST_TOOL}); an approver decides",
                profiles
                    .iter()
                    .map(|p| format!("\"{p}\""))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Some(serde_json::json!({
                "profiles": profiles,
                "link": link,
                "request_tool": REQUEST_TOOL,
            })),
        )
    }

    /// `toolgate__request_elevation`: validation problems come back as a tool error the agent
    /// can read; nothing is unlocked until an approver (or an auto-approving profile) says so.
    async fn request_elevation(
        &self,
        who: &Principal,
        request: CallToolRequestParams,
    ) -> Result<CallToolResponse, ErrorData> {
        let snap = self.shared.snapshot.get();
        if !snap.elevation_settings().agent_requests || snap.eligible_profile_names(who).is_empty()
        {
            return Err(not_permitted(REQUEST_TOOL));
        }
        let args = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let minutes = match args.get("minutes") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_u64().and_then(|m| u32::try_from(m).ok()) {
                Some(m) => Some(m),
                None => {
                    return Ok(CallToolResponse::from(CallToolResult::error(vec![
                        rmcp::model::ContentBlock::text("minutes must be a positive whole number"),
                    ])));
                }
            },
        };
        let ask = ElevationAsk {
            profile: args.get("profile").and_then(text).unwrap_or_default(),
            justification: args.get("justification").and_then(text).unwrap_or_default(),
            ticket: args.get("ticket").and_then(text),
            minutes,
        };
        let actor = Actor {
            id: who.user_id.clone(),
            name: who.user_name.clone(),
            kind: who.kind.as_str(),
        };
        let result = match self
            .shared
            .workflow
            .store
            .elevation_subject(who.kind.as_str(), &who.user_id)
            .await
        {
            Ok(subject) => {
                self.shared
                    .workflow
                    .request(subject, &actor, &ask, "agent")
                    .await
            }
            Err(e) => Err(e),
        };
        let link = crate::elevation::access_link(&self.shared.public_url, None);
        Ok(CallToolResponse::from(match result {
            Ok(e) if e.status == toolgate_domain::elevation::ElevationStatus::Active => {
                CallToolResult::success(vec![rmcp::model::ContentBlock::text(format!(
                    "Elevation {} (profile \"{}\") is active until {} (auto-approved). Retry the tool.",
                    e.id,
                    e.profile_name,
                    e.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                ))])
            }
            Ok(e) => CallToolResult::success(vec![rmcp::model::ContentBlock::text(format!(
                "Elevation request {} (profile \"{}\", {} minutes) is waiting for an approver. Nothing is unlocked until it is approved; the person can follow it at {link}.",
                e.id, e.profile_name, e.minutes
            ))]),
            Err(
                e @ (toolgate_domain::Error::Invalid(_)
                | toolgate_domain::Error::Conflict(_)
                | toolgate_domain::Error::Forbidden(_)
                | toolgate_domain::Error::NotFound(_)),
            ) => CallToolResult::error(vec![rmcp::model::ContentBlock::text(format!(
                "elevation not requested: {e}"
            ))]),
            Err(e) => {
                tracing::error!(error = %e, "elevation request from an agent failed");
                return Err(ErrorData::internal_error(
                    "the elevation request could not be recorded",
                    None,
                ));
            }
        }))
    }

    /// Writes an audit event and waits until it is durable. If it cannot be written the caller
    /// gets an error instead (fail closed) unless `audit_fail_open` is set, in which case the
    /// failure is logged at error level and counted.
    async fn record(&self, event: NewAuditEvent, is_result: bool) -> Result<(), ErrorData> {
        if event.kind == "tool_call" && event.outcome != Outcome::Forwarded
            || event.kind == "tool_result"
        {
            metrics::counter!(
                TOOL_CALLS,
                "decision" => event.decision.as_str(),
                "outcome" => event.outcome.as_str()
            )
            .increment(1);
        }
        // Only fail-open needs the event's names after it is handed over (for its log line).
        let lost = self.shared.fail_open.then(|| {
            (
                event.kind.clone(),
                event.principal.clone(),
                event.tool.clone(),
            )
        });
        match self.shared.audit.record(event).await {
            Ok(()) => Ok(()),
            Err(e) if let Some((kind, principal, tool)) = lost => {
                metrics::counter!(AUDIT_FAILURES, "action" => "forwarded").increment(1);
                tracing::error!(error = %e, kind, principal, tool = ?tool,
                    "AUDIT EVENT LOST: forwarded anyway because audit_fail_open is on");
                Ok(())
            }
            Err(_) => {
                metrics::counter!(AUDIT_FAILURES, "action" => "refused").increment(1);
                let message = if is_result {
                    "the audit log is unavailable; the call's result was withheld"
                } else {
                    "the audit log is unavailable; the call was refused"
                };
                Err(ErrorData::new(AUDIT_UNAVAILABLE, message, None))
            }
        }
    }
}
