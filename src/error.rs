//! The one error type of appkeys, and its policy.
//!
//! - Every error a client can see carries a stable `extensions.code` (docs/reference.md: "Errors").
//! - Messages are written for the caller and never say more than it may know: every authentication
//!   failure reads the same, whether the key exists or not.
//! - Database and other unexpected failures are logged here, with their context, and reach the client
//!   only as `INTERNAL_SERVER_ERROR` with a fixed message: no SQL, no stack, no secret.
use async_graphql::ErrorExtensions;

use crate::domain::Invalid;

///
/// It deliberately does not implement `Display`: async-graphql converts any `Display` type into an
/// error *without* extensions, so the only way into a GraphQL error is the `From` impl below, which
/// always carries the code.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated,
    Forbidden {
        missing: Vec<String>,
    },
    /// Forbidden whatever the caller holds, e.g. a key renewing its own token.
    NotAllowed(String),
    /// Bad input, with the path of the input field at fault (`input.label`, `roleIds`), so a form
    /// can point at it.
    BadUserInput {
        field: String,
        message: String,
    },
    NotFound(String),
    Conflict(String),
    RemovedExternalKey,
    /// Too many requests: failed authentications of one subject (`limit: None`), or a key's named
    /// rate limit in its policy.
    RateLimited {
        retry_after_secs: u64,
        limit: Option<String>,
    },
    /// The client's address is not in the key's allowlist here (FORBIDDEN, `reason: IP_NOT_ALLOWED`).
    IpNotAllowed,
    /// The key's credits here do not cover the request; `retry_after_secs`: until the next refill.
    UsageExceeded {
        retry_after_secs: Option<u64>,
    },
    /// The database is away or too slow (unreachable, its connections cut, the pool's wait or a
    /// statement's time limit run out): nothing was changed, and the same request may succeed in a
    /// moment. Logged with its cause; the client sees only that it should retry.
    Unavailable(anyhow::Error),
    Internal(anyhow::Error),
}

/// The seconds an `UNAVAILABLE` answer asks the client to wait (`Retry-After`).
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// The code of `Unavailable`, for the HTTP layer to find among a response's errors.
    pub const UNAVAILABLE: &'static str = "UNAVAILABLE";

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "UNAUTHENTICATED",
            AppError::Forbidden { .. } | AppError::NotAllowed(_) | AppError::IpNotAllowed => "FORBIDDEN",
            AppError::BadUserInput { .. } => "BAD_USER_INPUT",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict(_) => "CONFLICT",
            AppError::RemovedExternalKey => "REMOVED_EXTERNAL_KEY",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::UsageExceeded { .. } => "USAGE_EXCEEDED",
            AppError::Unavailable(_) => Self::UNAVAILABLE,
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> String {
        match self {
            AppError::Unauthenticated => "authentication failed: missing, invalid or unauthorised credentials".into(),
            AppError::Forbidden { missing } => format!("missing permission: {}", missing.join(", ")),
            AppError::BadUserInput { message, .. }
            | AppError::NotFound(message)
            | AppError::Conflict(message)
            | AppError::NotAllowed(message) => message.clone(),
            AppError::RemovedExternalKey => {
                "this external key was removed from the account; add it again instead of activating it".into()
            }
            AppError::RateLimited { retry_after_secs, limit: None } => {
                format!("too many attempts; retry in {retry_after_secs} s")
            }
            AppError::RateLimited { retry_after_secs, limit: Some(name) } => {
                format!("the key's rate limit {name:?} is reached; retry in {retry_after_secs} s")
            }
            AppError::IpNotAllowed => "the key may not be used from this address".into(),
            AppError::UsageExceeded { retry_after_secs: Some(secs) } => {
                format!("the key's credits are used up; they are refilled in {secs} s")
            }
            AppError::UsageExceeded { retry_after_secs: None } => "the key's credits are used up".into(),
            AppError::Unavailable(_) => {
                format!("the service is unavailable for a moment; retry in {UNAVAILABLE_RETRY_AFTER_SECS} s")
            }
            AppError::Internal(_) => "internal server error".into(),
        }
    }

    /// For the command line, where there is no client: keep an internal error's whole context.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            AppError::Internal(error) | AppError::Unavailable(error) => error,
            other => anyhow::anyhow!(other.message()),
        }
    }

    pub fn forbidden<I: IntoIterator<Item = S>, S: Into<String>>(missing: I) -> Self {
        AppError::Forbidden { missing: missing.into_iter().map(Into::into).collect() }
    }

    /// Logs an internal error once, with its whole chain of context (an unavailable database as a
    /// warning: it is the database's state, not a fault of this code).
    pub fn log_if_internal(&self) {
        match self {
            AppError::Internal(error) => tracing::error!(error = format!("{error:#}"), "internal error"),
            AppError::Unavailable(error) => tracing::warn!(error = format!("{error:#}"), "database unavailable"),
            _ => {}
        }
    }

    /// The seconds a client should wait before trying again, when the answer says so.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::RateLimited { retry_after_secs, .. } => Some(*retry_after_secs),
            AppError::UsageExceeded { retry_after_secs } => *retry_after_secs,
            AppError::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(error: anyhow::Error) -> Self {
        AppError::Internal(error)
    }
}

impl AppError {
    /// Bad input in the field at `field` (its path in the request, e.g. `input.label`).
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadUserInput { field: field.into(), message: message.into() }
    }
}

impl Invalid {
    /// This value's rule failed in the field at `field`.
    pub fn at(self, field: &str) -> AppError {
        AppError::bad_input(field, self.0)
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(error: sea_orm::DbErr) -> Self {
        // The services check uniqueness first; a violation here means a concurrent request created
        // the same thing a moment earlier, which is the caller's conflict, not our fault.
        if let Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) = error.sql_err() {
            return AppError::Conflict("it already exists (created by a concurrent request)".into());
        }
        if is_unavailable(&error) {
            return AppError::Unavailable(anyhow::Error::new(error).context("the database is unavailable"));
        }
        AppError::Internal(anyhow::Error::new(error).context("database operation failed"))
    }
}

impl From<sea_orm::sqlx::Error> for AppError {
    /// An error of a query sent through sqlx directly (an export's `COPY`), judged as SeaORM's are.
    fn from(error: sea_orm::sqlx::Error) -> Self {
        AppError::from(sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(error))))
    }
}

/// Whether a database error says the database is away or too slow rather than that the statement
/// or this code is wrong: no connection to be had in time, a connection lost or cut (I/O, TLS,
/// protocol), the server shutting down or refusing connections, a statement cancelled at its time
/// limit, SQLite's file busy past its timeout.
fn is_unavailable(error: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    let sqlx = match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(sqlx)) | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => sqlx,
        _ => return false,
    };
    match &**sqlx {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => true,
        Sqlx::Database(database) => {
            let code = database.code();
            if database.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                return code.and_then(|code| code.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6));
            }
            code.is_some_and(|code| is_unavailable_sqlstate(&code))
        }
        _ => false,
    }
}

/// PostgreSQL's SQLSTATEs for a statement cancelled at its time limit (57014), the server shutting
/// down or not accepting connections yet (57P01–57P05), connection exceptions (class 08) and too
/// many connections (53300).
fn is_unavailable_sqlstate(code: &str) -> bool {
    code == "57014" || code.starts_with("57P") || code.starts_with("08") || code == "53300"
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        self.log_if_internal();
        async_graphql::Error::new(self.message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                AppError::Forbidden { missing } => ext.set("missingResources", missing.clone()),
                AppError::RateLimited { retry_after_secs, limit } => {
                    ext.set("retryAfter", *retry_after_secs);
                    if let Some(name) = limit {
                        ext.set("limit", name.as_str());
                    }
                }
                AppError::IpNotAllowed => ext.set("reason", "IP_NOT_ALLOWED"),
                AppError::UsageExceeded { retry_after_secs: Some(secs) } => ext.set("retryAfter", *secs),
                AppError::Unavailable(_) => ext.set("retryAfter", UNAVAILABLE_RETRY_AFTER_SECS),
                AppError::BadUserInput { field, .. } => ext.set("field", field.as_str()),
                _ => {}
            }
        })
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> Self {
        error.extend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = AppError::from(sea_orm::DbErr::Custom("SELECT secret FROM users".into()));
        assert_eq!(error.message(), "internal server error");
        assert_eq!(error.code(), "INTERNAL_SERVER_ERROR");
    }

    #[test]
    fn an_unavailable_database_asks_for_a_retry_and_hides_its_cause() {
        use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
        let timed_out = AppError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert_eq!(timed_out.code(), "UNAVAILABLE");
        assert_eq!(timed_out.retry_after_secs(), Some(UNAVAILABLE_RETRY_AFTER_SECS));
        assert!(!timed_out.message().contains("pool"), "{}", timed_out.message());
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by 10.0.0.5");
        let reset = AppError::from(DbErr::Query(RuntimeErr::SqlxError(sea_orm::sqlx::Error::Io(cut).into())));
        assert_eq!(reset.code(), "UNAVAILABLE");
        assert!(!reset.message().contains("10.0.0.5"));
        let wrong = AppError::from(DbErr::Query(RuntimeErr::Internal("syntax error".into())));
        assert_eq!(wrong.code(), "INTERNAL_SERVER_ERROR");
    }

    #[test]
    fn sqlstates_of_an_unavailable_database() {
        for code in ["57014", "57P01", "57P03", "08006", "08001", "53300"] {
            assert!(is_unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "40001", "22001"] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn forbidden_names_the_missing_resources() {
        let error = AppError::forbidden(["LicenseManager.SaveUser"]);
        assert_eq!(error.message(), "missing permission: LicenseManager.SaveUser");
        assert_eq!(error.code(), "FORBIDDEN");
    }
}
