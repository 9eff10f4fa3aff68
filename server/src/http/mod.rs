//! HTTP plumbing shared by the protocols: the admin API's error renderer and JSON extractor, and
//! the bearer-token extractors.

pub mod auth;
pub mod client_ip;
pub mod error;
pub mod security_headers;

pub use error::{ApiError, ApiJson, ApiResult};
