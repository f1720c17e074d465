use actix_web::HttpResponse;

use crate::domain::views::Message;

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
