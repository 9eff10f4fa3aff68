//! Toolgate's load generator (issue 8): opens N MCP sessions and drives `tools/call` (or
//! `tools/list`) at a fixed or maximum rate against an upstream directly and through the
//! gateway in one run, alternating short phases so the shared machine's noise cancels, and
//! reports throughput and HDR latency percentiles. `suite` is the whole `make bench-proxy`;
//! `soak` is issue 9's long run with policy changes and SCIM churn (`make soak`).

pub mod client;
pub mod drive;
pub mod gateway;
pub mod soak;
pub mod stats;
pub mod suite;
pub mod upstream;
