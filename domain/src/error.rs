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
    Database(#[source] sqlx::Error),
    /// 500: anything else internal; logged with detail, shown generically.
    #[error("internal error: {0}")]
    Internal(String),
}

#[cfg(feature = "ssr")]
impl From<sqlx::Error> for Error {
    /// Text PostgreSQL cannot store (a NUL character, SQLSTATE 22021) came from the caller:
    /// `Invalid`, not a database failure (found by fuzzing: `/scim/v2/Users/%00` answered 500).
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22021") => {
                Error::invalid("text must not contain NUL characters")
            }
            _ => Error::Database(e),
        }
    }
}

impl Error {
    /// Shorthand for a validation error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Whether the database (or the audit log) is unavailable for now rather than the request
    /// being wrong: no connection within the pool's wait, a broken connection, SQLite busy or
    /// locked, PostgreSQL shutting down or starting (57P0x) or a connection failure (08xxx).
    /// Callers answer 503 with `Retry-After`: retrying later may work.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::AuditUnavailable => true,
            #[cfg(feature = "ssr")]
            Error::Database(e) => match e {
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                    // SQLite primary codes 5 (BUSY) and 6 (LOCKED), extended ones included.
                    let sqlite = c.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
                    sqlite || c.starts_with("57P0") || c.starts_with("08")
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::Error;

    #[test]
    fn unavailable_database_errors() {
        assert!(Error::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(Error::AuditUnavailable.is_unavailable());
        assert!(!Error::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!Error::invalid("x").is_unavailable());
        assert!(!Error::Internal("x".into()).is_unavailable());
    }
}
