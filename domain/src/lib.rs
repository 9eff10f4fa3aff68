//! Toolgate's domain: the entities the dashboard and the MCP proxy share, tool-name rules and the
//! policy engine; behind the `ssr` feature also the store, crypto, audit writer and policy snapshot.

pub mod dlp;
pub mod elevation;
pub mod error;
#[cfg(any(test, feature = "test-util"))]
pub mod fuzz;
pub mod model;
pub mod names;
pub mod policy;
pub mod risk;
pub mod scim_filter;
pub mod siem;

#[cfg(feature = "ssr")]
pub mod approvals;
#[cfg(feature = "ssr")]
pub mod audit;
#[cfg(feature = "ssr")]
pub mod clock;
#[cfg(feature = "ssr")]
pub mod crypto;
#[cfg(feature = "ssr")]
pub mod identity;
#[cfg(feature = "ssr")]
pub mod policy_file;
#[cfg(feature = "ssr")]
pub mod simulator;
#[cfg(feature = "ssr")]
pub mod snapshot;
#[cfg(feature = "ssr")]
pub mod store;

pub use error::{Error, Result};
