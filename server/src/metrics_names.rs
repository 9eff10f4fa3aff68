//! Names of the Prometheus metrics, in one place so dashboards and code agree.

/// Counter of HTTP requests, by method and status.
pub const HTTP_REQUESTS: &str = "toolgate_http_requests_total";
/// Counter of tool calls, by decision (allow/deny) and outcome.
pub const TOOL_CALLS: &str = "toolgate_tool_calls_total";
/// Histogram of upstream call latency in seconds, by connector.
pub const UPSTREAM_LATENCY: &str = "toolgate_upstream_latency_seconds";
