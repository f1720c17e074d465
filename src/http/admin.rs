//! §11: cache administration (admins).

use actix_web::{web, HttpResponse};

use super::extract::Auth;
use crate::domain::views::CacheOverview;
use crate::domain::{cache_admin, AppContext, AppError};

type Ctx = web::Data<AppContext>;

/// What each cache layer of this instance holds and has answered, the
/// Redis state, and the instances holding an L1 lease.
#[utoipa::path(
    get, path = "/api/v1/admin/cache", tag = "admin",
    responses(
        (status = 200, body = CacheOverview),
    )
)]
pub async fn cache(ctx: Ctx, auth: Auth) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(cache_admin::overview(&ctx, auth.0).await?))
}

/// Empties Redis (the service's keys) and the L1 of every live instance;
/// answers once all are empty.
#[utoipa::path(
    post, path = "/api/v1/admin/cache/flush", tag = "admin",
    responses(
        (status = 204, description = "Every layer of every live instance is empty"),
    )
)]
pub async fn flush_cache(ctx: Ctx, auth: Auth) -> Result<HttpResponse, AppError> {
    cache_admin::flush(&ctx, auth.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
