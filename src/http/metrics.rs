//! `GET /metrics`, and the recording of every request.

use std::borrow::Cow;
use std::time::Instant;

use actix_web::dev::ServiceResponse;
use actix_web::http::Method;
use actix_web::{web, HttpResponse};

use crate::cache::Health;
use crate::domain::AppContext;
use crate::metrics::PoolState;

/// Counts a finished request and its latency under its route template (so
/// ids do not explode the label set); unknown paths are `unmatched`. Called
/// by the request-id middleware (one layer for both).
pub fn record<B>(res: &ServiceResponse<B>, method: &Method, started: Instant) {
    let request = res.request();
    let Some(context) = request.app_data::<web::Data<AppContext>>() else {
        return;
    };
    // Our resources are named after their full path (no string built);
    // others (the Swagger UI) by their pattern.
    let route = match request.match_name() {
        Some(name) => Cow::Borrowed(name),
        None => request
            .match_pattern()
            .map_or(Cow::Borrowed("unmatched"), Cow::Owned),
    };
    context.metrics.observe_request(
        method.as_str(),
        &route,
        res.status().as_u16(),
        started.elapsed(),
    );
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
