use crate::db::{self, DbError};

/// One field that broke a rule; all of them are reported at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

/// Every failure the service can answer with. `http::problem` renders each
/// variant as an RFC 9457 problem; only `Internal` hides its detail.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{} field(s) are invalid", .0.len())]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("This method is not allowed here; use {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Too many requests; retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("Redis is unavailable: the cache could not be flushed; retry shortly")]
    CacheUnavailable,
    /// A feature whose settings are missing (503, the detail names it).
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` names a tag that is no longer current (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// `REQUIRE_IF_MATCH` is on and the write has no `If-Match` (428).
    #[error("This write needs an If-Match header with the resource's current ETag")]
    PreconditionRequired,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn user_not_found(id: i64) -> Self {
        AppError::NotFound(format!("User with id {id} not found"))
    }

    pub fn content_not_found(id: i64) -> Self {
        AppError::NotFound(format!("Content with id {id} not found"))
    }

    /// Every defect of a bearer credential, and an ended session, look
    /// the same to the client.
    pub fn invalid_token() -> Self {
        AppError::Unauthorized("Invalid or expired token".into())
    }

    pub fn forbidden() -> Self {
        AppError::Forbidden("You are not allowed to change this resource".into())
    }
}

/// The outcome of a load shared by several requests (single-flight) is
/// handed to each of them; a load only fails as "not found", "unavailable"
/// or internally.
impl From<std::sync::Arc<AppError>> for AppError {
    fn from(shared: std::sync::Arc<AppError>) -> Self {
        std::sync::Arc::try_unwrap(shared).unwrap_or_else(|shared| match &*shared {
            AppError::NotFound(message) => AppError::NotFound(message.clone()),
            AppError::Unavailable(reason) => AppError::Unavailable(reason.clone()),
            other => AppError::Internal(anyhow::anyhow!("{other}")),
        })
    }
}

impl From<DbError> for AppError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(reason) => AppError::Unavailable(reason),
            DbError::UniqueViolation(constraint) if constraint == db::users::EMAIL_UNIQUE => {
                AppError::BadRequest("Email already registered".into())
            }
            DbError::UniqueViolation(constraint) if constraint == db::users::PHONE_UNIQUE => {
                AppError::BadRequest("Phone number already registered".into())
            }
            DbError::UniqueViolation(constraint) if constraint == db::contents::SLUG_UNIQUE => {
                AppError::Conflict("Slug already in use".into())
            }
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}
