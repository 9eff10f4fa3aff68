//! Toolgate's load generator (issue 8): opens N MCP sessions and drives `tools/call` (or
//! `tools/list`) at a fixed or maximum rate against an upstream directly and through the
//! gateway in one run, alternating short phases so the shared machine's noise cancels, and
//! reports throughput and HDR latency percentiles. `suite` is the whole `make bench-proxy`.

pub mod client;
pub mod drive;
pub mod gateway;
pub mod stats;
pub mod suite;
pub mod upstream;
