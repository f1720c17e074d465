//! `GET /metrics` and the middleware that records every request.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::cache::Health;
use crate::domain::AppContext;
use crate::metrics::PoolState;

/// Counts the request and its latency under its route template (so ids do
/// not explode the label set); unknown paths are `unmatched`.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let context = req.app_data::<web::Data<AppContext>>().cloned();
    let method = req.method().clone();
    let res = next.call(req).await?;
    if let Some(context) = context {
        let route = res.request().match_pattern();
        context.metrics.observe_request(
            method.as_str(),
            route.as_deref().unwrap_or("unmatched"),
            res.status().as_u16(),
            started.elapsed(),
        );
    }
    Ok(res)
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(ctx: web::Data<AppContext>) -> HttpResponse {
    let status = ctx.pool.status();
    let pool = PoolState {
        max_size: status.max_size,
        size: status.size,
        available: status.available,
        waiting: status.waiting,
    };
    let body = ctx.metrics.render(pool, ctx.cache.health() != Health::Ok);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}
