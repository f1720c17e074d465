//! Machine-token endpoints.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::extract::{Auth, ClientInfo, JsonObject, PathId};
use super::rate_limit::WriteRateLimit;
use crate::domain::account_input::parse_new_machine_token;
use crate::domain::machine_tokens;
use crate::domain::views::{CreatedMachineToken, MachineToken};
use crate::domain::{AppContext, AppError};

type Ctx = web::Data<AppContext>;

/// Create a machine token for scripts. Its secret is in this answer only.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    responses(
        (status = 201, body = CreatedMachineToken, headers(("Location" = String, description = "/api/v1/tokens/{id}"))),
    )
)]
pub async fn create(
    ctx: Ctx,
    auth: Auth,
    _: WriteRateLimit,
    client: ClientInfo,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let input = parse_new_machine_token(body.0)?;
    let created = machine_tokens::create(&ctx, auth.0, input, client.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/tokens/{}", created.id)))
        .json(created))
}

/// Your machine tokens, newest first, without their secrets.
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    responses(
        (status = 200, body = Vec<MachineToken>),
    )
)]
pub async fn list(ctx: Ctx, auth: Auth) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(machine_tokens::list(&ctx, auth.0).await?))
}

/// Revoke one of your machine tokens.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    responses(
        (status = 204, description = "Revoked"),
    )
)]
pub async fn revoke(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
    client: ClientInfo,
) -> Result<HttpResponse, AppError> {
    machine_tokens::revoke(&ctx, auth.0, id.0, client.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
