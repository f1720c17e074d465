//! Webhook administration (admins): the webhooks and their deliveries.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::extract::{route_not_found, Auth, JsonObject, PathId, QueryParams};
use super::rate_limit::WriteRateLimit;
use crate::domain::pagination::BeforeQuery;
use crate::domain::validation::digits;
use crate::domain::webhooks;
use crate::domain::webhooks::views::{CreatedWebhook, Webhook, WebhookDelivery};
use crate::domain::{AppContext, AppError};

type Ctx = web::Data<AppContext>;

/// Create a webhook. Its signing secret is in this answer only.
#[utoipa::path(
    post, path = "/api/v1/admin/webhooks", tag = "webhooks",
    responses(
        (status = 201, body = CreatedWebhook, headers(("Location" = String, description = "/api/v1/admin/webhooks/{id}"))),
    )
)]
pub async fn create(
    ctx: Ctx,
    auth: Auth,
    _: WriteRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    webhooks::admin_only(auth.0)?;
    let input = webhooks::parse_new(&ctx, body.0)?;
    let created = webhooks::create(&ctx, auth.0, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/admin/webhooks/{}", created.webhook.id),
        ))
        .json(created))
}

/// Every webhook, newest first, without secrets.
#[utoipa::path(
    get, path = "/api/v1/admin/webhooks", tag = "webhooks",
    responses(
        (status = 200, body = Vec<Webhook>),
    )
)]
pub async fn list(ctx: Ctx, auth: Auth) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(webhooks::list(&ctx, auth.0).await?))
}

/// One webhook, without its secret.
#[utoipa::path(
    get, path = "/api/v1/admin/webhooks/{id}", tag = "webhooks",
    responses(
        (status = 200, body = Webhook),
    )
)]
pub async fn get(ctx: Ctx, id: PathId, auth: Auth) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(webhooks::get(&ctx, auth.0, id.0).await?))
}

/// Change a webhook's URL, events, secret or state. Switching it off fails
/// its pending deliveries; switched on, it is sent the events that follow.
#[utoipa::path(
    patch, path = "/api/v1/admin/webhooks/{id}", tag = "webhooks",
    responses(
        (status = 200, body = Webhook),
    )
)]
pub async fn update(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    webhooks::admin_only(auth.0)?;
    let patch = webhooks::parse_patch(&ctx, body.0)?;
    Ok(HttpResponse::Ok().json(webhooks::update(&ctx, auth.0, id.0, patch).await?))
}

/// Delete a webhook with its deliveries.
#[utoipa::path(
    delete, path = "/api/v1/admin/webhooks/{id}", tag = "webhooks",
    responses(
        (status = 204, description = "Deleted"),
    )
)]
pub async fn delete(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
) -> Result<HttpResponse, AppError> {
    webhooks::delete(&ctx, auth.0, id.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A webhook's deliveries, newest first, keyset-paginated: attempts, the
/// last answer or error, and when the next attempt is due.
#[utoipa::path(
    get, path = "/api/v1/admin/webhooks/{id}/deliveries", tag = "webhooks",
    responses(
        (status = 200, body = Vec<WebhookDelivery>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
    )
)]
pub async fn deliveries(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    params: QueryParams,
) -> Result<HttpResponse, AppError> {
    let query = BeforeQuery::parse(params.0)?;
    let limit = query.limit;
    let page = webhooks::deliveries(&ctx, auth.0, id.0, query).await?;
    let path = format!("/api/v1/admin/webhooks/{}/deliveries", id.0);
    Ok(super::page_response(&path, limit, page))
}

/// Send a delivery's event again (same `Webhook-Id`), as a new delivery
/// due now.
#[utoipa::path(
    post, path = "/api/v1/admin/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    responses(
        (status = 202, body = WebhookDelivery),
    )
)]
pub async fn redeliver(
    ctx: Ctx,
    req: HttpRequest,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
) -> Result<HttpResponse, AppError> {
    let delivery_id = req
        .match_info()
        .get("delivery_id")
        .and_then(digits)
        .filter(|id| *id > 0)
        .ok_or_else(|| route_not_found(&req))?;
    Ok(HttpResponse::Accepted().json(webhooks::redeliver(&ctx, auth.0, id.0, delivery_id).await?))
}
