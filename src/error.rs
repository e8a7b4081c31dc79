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
    RateLimited {
        retry_after_secs: u64,
    },
    Internal(anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "UNAUTHENTICATED",
            AppError::Forbidden { .. } | AppError::NotAllowed(_) => "FORBIDDEN",
            AppError::BadUserInput { .. } => "BAD_USER_INPUT",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict(_) => "CONFLICT",
            AppError::RemovedExternalKey => "REMOVED_EXTERNAL_KEY",
            AppError::RateLimited { .. } => "RATE_LIMITED",
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
            AppError::RateLimited { retry_after_secs } => format!("too many attempts; retry in {retry_after_secs} s"),
            AppError::Internal(_) => "internal server error".into(),
        }
    }

    /// For the command line, where there is no client: keep an internal error's whole context.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            AppError::Internal(error) => error,
            other => anyhow::anyhow!(other.message()),
        }
    }

    pub fn forbidden<I: IntoIterator<Item = S>, S: Into<String>>(missing: I) -> Self {
        AppError::Forbidden { missing: missing.into_iter().map(Into::into).collect() }
    }

    /// Logs an internal error once, with its whole chain of context.
    pub fn log_if_internal(&self) {
        if let AppError::Internal(error) = self {
            tracing::error!(error = format!("{error:#}"), "internal error");
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
        AppError::Internal(anyhow::Error::new(error).context("database operation failed"))
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        self.log_if_internal();
        async_graphql::Error::new(self.message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                AppError::Forbidden { missing } => ext.set("missingResources", missing.clone()),
                AppError::RateLimited { retry_after_secs } => ext.set("retryAfter", *retry_after_secs),
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
    fn forbidden_names_the_missing_resources() {
        let error = AppError::forbidden(["LicenseManager.SaveUser"]);
        assert_eq!(error.message(), "missing permission: LicenseManager.SaveUser");
        assert_eq!(error.code(), "FORBIDDEN");
    }
}
