//! The domain error: what went wrong in domain terms; each protocol layer renders it in its own format.

/// Result of domain operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Domain errors. The doc line on each variant says which HTTP status the protocol layers use.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400/422: the input failed validation; the text names the field and the rule.
    #[error("{0}")]
    Invalid(String),
    /// 404: the named kind of entity does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: a uniqueness rule would be broken; the text names what collides.
    #[error("{0}")]
    Conflict(String),
    /// 412: the caller's `If-Match` version is not the current one.
    #[error("the resource was changed since version {0}")]
    PreconditionFailed(String),
    /// 403: the caller is known but may not do this (separation of duties, eligibility).
    #[error("{0}")]
    Forbidden(String),
    /// 401: credentials were missing or wrong.
    #[error("invalid credentials")]
    Unauthenticated,
    /// 503: the audit log cannot take writes, so the action is refused (fail closed).
    #[error("audit log unavailable")]
    AuditUnavailable,
    /// 500: a database failure; logged with detail, shown generically.
    #[cfg(feature = "ssr")]
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// 500: anything else internal; logged with detail, shown generically.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for a validation error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}
