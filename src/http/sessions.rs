//! Session endpoints: refresh, logout and the session list.

use actix_web::{web, HttpResponse};

use super::extract::{Auth, ClientInfo, JsonObject, OptionalJsonObject, PathId};
use super::rate_limit::{AuthRateLimit, WriteRateLimit};
use crate::domain::account_input::{parse_logout, parse_refresh};
use crate::domain::sessions;
use crate::domain::views::{LoginResponse, Session};
use crate::domain::{AppContext, AppError};

type Ctx = web::Data<AppContext>;

/// Exchange a refresh token for a new pair; the presented one is used up.
/// Presenting a used one again ends its whole session (401).
#[utoipa::path(
    post, path = "/api/v1/token/refresh", tag = "sessions",
    responses(
        (status = 200, body = LoginResponse),
    )
)]
pub async fn refresh(
    ctx: Ctx,
    _: AuthRateLimit,
    client: ClientInfo,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let token = parse_refresh(body.0)?;
    Ok(HttpResponse::Ok().json(sessions::refresh(&ctx, token, client.0).await?))
}

/// End this session (no body), or every session of the caller
/// (`{"all": true}`). Their access tokens fail from the next request on.
#[utoipa::path(
    post, path = "/api/v1/logout", tag = "sessions",
    responses(
        (status = 204, description = "Ended"),
    )
)]
pub async fn logout(
    ctx: Ctx,
    auth: Auth,
    client: ClientInfo,
    body: OptionalJsonObject,
) -> Result<HttpResponse, AppError> {
    let all = parse_logout(body.0)?;
    sessions::logout(&ctx, auth.0, all, client.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's live sessions, newest first.
#[utoipa::path(
    get, path = "/api/v1/sessions", tag = "sessions",
    responses(
        (status = 200, body = Vec<Session>),
    )
)]
pub async fn list(ctx: Ctx, auth: Auth) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(sessions::list(&ctx, auth.0).await?))
}

/// End one of the caller's sessions.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    responses(
        (status = 204, description = "Ended"),
    )
)]
pub async fn end(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
    client: ClientInfo,
) -> Result<HttpResponse, AppError> {
    sessions::end(&ctx, auth.0, id.0, client.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
