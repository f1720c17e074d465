//! RFC 9457 problem+json for every failure: `AppError` values and the
//! errors actix produces by itself.

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{AppError, FieldError};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
const TYPE_BASE: &str = "https://content-api.dev/problems/";
/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "2";

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `…/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    /// The human message (the old service's `detail` texts are kept).
    pub detail: String,
    /// Only for 422: every invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl Problem {
    fn new(slug: &str, title: &'static str, status: StatusCode, detail: String) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors: None,
        }
    }

    fn to_response(&self, status: StatusCode) -> HttpResponse {
        let body = serde_json::to_vec(self).expect("a problem always serialises");
        HttpResponse::build(status)
            .content_type(PROBLEM_CONTENT_TYPE)
            .body(body)
    }
}

fn slug_and_title(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad-request", "Bad request"),
        401 => ("unauthorized", "Unauthorized"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not-found", "Not found"),
        405 => ("method-not-allowed", "Method not allowed"),
        409 => ("conflict", "Conflict"),
        412 => ("precondition-failed", "Precondition failed"),
        428 => ("precondition-required", "Precondition required"),
        413 => ("payload-too-large", "Payload too large"),
        415 => ("unsupported-media-type", "Unsupported media type"),
        422 => ("validation", "Validation failed"),
        429 => ("rate-limited", "Too many requests"),
        503 => ("unavailable", "Service unavailable"),
        500..=599 => ("internal", "Internal server error"),
        _ => ("error", "Request failed"),
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            AppError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            AppError::Unavailable(_) | AppError::CacheUnavailable | AppError::NotConfigured(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (slug, title) = slug_and_title(status);
        let detail = match self {
            AppError::Validation(errors) if errors.len() == 1 => "1 field is invalid".to_owned(),
            AppError::Validation(errors) => format!("{} fields are invalid", errors.len()),
            AppError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                "The database is unavailable; retry shortly".to_owned()
            }
            AppError::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                "An unexpected error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = Problem::new(slug, title, status, detail);
        if let AppError::Validation(errors) = self {
            problem.errors = Some(errors.clone());
        }
        let mut response = problem.to_response(status);
        let headers = response.headers_mut();
        match self {
            AppError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            AppError::Unavailable(_) | AppError::CacheUnavailable => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            AppError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::RateLimited {
                retry_after_seconds,
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            _ => {}
        }
        response
    }
}

/// Turns any error response that is not already a problem (one actix made
/// by itself) into one, keeping its status and headers; other responses
/// pass as they are. Called by the request-id middleware.
pub fn problem_for_other_errors<B>(res: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == PROBLEM_CONTENT_TYPE.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return res.map_into_left_body();
    }
    let (slug, title) = slug_and_title(status);
    let detail = if status.is_server_error() {
        "An unexpected error occurred; it has been logged".to_owned()
    } else {
        status.canonical_reason().unwrap_or(title).to_owned()
    };
    let problem = Problem::new(slug, title, status, detail);
    let (req, old) = res.into_parts();
    let mut response = problem.to_response(status);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let response: HttpResponse<BoxBody> = response;
    ServiceResponse::new(req, response).map_into_right_body::<B>()
}
