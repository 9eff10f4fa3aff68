//! Names of the Prometheus metrics, in one place so dashboards and code agree.

/// Counter of HTTP requests, by method and status.
pub const HTTP_REQUESTS: &str = "toolgate_http_requests_total";
/// Counter of tool calls, by decision (allow/deny) and outcome.
pub const TOOL_CALLS: &str = "toolgate_tool_calls_total";
/// Histogram of upstream call latency in seconds, by connector.
pub const UPSTREAM_LATENCY: &str = "toolgate_upstream_latency_seconds";
/// Counter of tool calls forwarded although their audit event could not be written
/// (`audit_fail_open`), or refused because it could not be (by `action`).
pub const AUDIT_FAILURES: &str = "toolgate_audit_failures_total";
/// Gauge: 1 when the last audit integrity check passed, 0 when it found a break.
pub const AUDIT_CHAIN_OK: &str = "toolgate_audit_chain_ok";
/// Counter of audit events purged by retention.
pub const AUDIT_PURGED: &str = "toolgate_audit_purged_total";
/// Counter of DLP findings in tool traffic, by detector and action.
pub const DLP_FINDINGS: &str = "toolgate_dlp_findings_total";
/// Gauge per connector: 1 healthy, 0 unhealthy.
pub const UPSTREAM_HEALTH: &str = "toolgate_upstream_health";
