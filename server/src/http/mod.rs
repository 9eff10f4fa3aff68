//! HTTP plumbing shared by the protocols: the admin API's error renderer and JSON extractor, the
//! bearer-token extractors, request limits and rate limits.

pub mod auth;
pub mod client_ip;
pub mod error;
pub mod limits;
pub mod rate_limit;
pub mod security_headers;

pub use error::{ApiError, ApiJson, ApiResult};
