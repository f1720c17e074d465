//! Admin endpoints: the audit log and cache administration.

use actix_web::{web, HttpResponse};

use super::extract::{Auth, QueryParams};
use crate::domain::audit;
use crate::domain::pagination::BeforeQuery;
use crate::domain::views::{AuditEvent, CacheOverview};
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

/// Security events, newest first, keyset-paginated (admins).
#[utoipa::path(
    get, path = "/api/v1/admin/audit", tag = "admin",
    responses(
        (status = 200, body = Vec<AuditEvent>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
    )
)]
pub async fn audit(ctx: Ctx, auth: Auth, params: QueryParams) -> Result<HttpResponse, AppError> {
    let query = BeforeQuery::parse(params.0)?;
    let limit = query.limit;
    let page = audit::page(&ctx, auth.0, query).await?;
    Ok(super::page_response("/api/v1/admin/audit", limit, page))
}
