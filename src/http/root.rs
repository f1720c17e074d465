use actix_web::{web, HttpResponse};

use crate::domain::views::{Message, Readiness};
use crate::domain::{health, AppContext, AppError};

/// Kept from the old service.
#[utoipa::path(get, path = "/", tag = "operations", responses((status = 200, body = Message)))]
pub async fn index() -> HttpResponse {
    HttpResponse::Ok().json(Message {
        message: "Up and running",
    })
}

/// 200 while the process serves requests.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Message)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Message { message: "live" })
}

/// 200 when PostgreSQL answers (Redis being down only degrades the cache),
/// else 503.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, body = Readiness),
    )
)]
pub async fn ready(ctx: web::Data<AppContext>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(health::readiness(&ctx).await?))
}
