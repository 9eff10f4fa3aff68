//! The server's integration tests, in one binary: the store suite on SQLite and PostgreSQL, the
//! admin API, and the MCP gateway against an rmcp upstream, all over real sockets.

#[path = "integration/api.rs"]
mod api;
#[path = "integration/attacks.rs"]
mod attacks;
#[path = "integration/audit.rs"]
mod audit;
#[path = "integration/cli_policy.rs"]
mod cli_policy;
#[path = "integration/common.rs"]
mod common;
#[path = "integration/connectors.rs"]
mod connectors;
#[path = "integration/crash.rs"]
mod crash;
#[path = "integration/db_faults.rs"]
mod db_faults;
#[path = "integration/elevation.rs"]
mod elevation;
#[path = "integration/faults.rs"]
mod faults;
#[path = "integration/fuzz.rs"]
mod fuzz;
#[path = "integration/limits.rs"]
mod limits;
#[path = "integration/mcp.rs"]
mod mcp;
#[path = "integration/oauth.rs"]
mod oauth;
#[path = "integration/oidc.rs"]
mod oidc;
#[path = "integration/replicas.rs"]
mod replicas;
#[path = "integration/scim.rs"]
mod scim;
#[path = "integration/shutdown.rs"]
mod shutdown;
#[path = "integration/siem.rs"]
mod siem;
#[path = "integration/store.rs"]
mod store;
#[path = "integration/transports.rs"]
mod transports;
