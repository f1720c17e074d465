//! Account endpoints: password change and reset, roles, account deletion.

use actix_web::{web, HttpResponse};

use super::extract::{Auth, ClientInfo, JsonObject, PathId};
use super::rate_limit::{AuthRateLimit, WriteRateLimit};
use crate::domain::account_input::{
    parse_password_change, parse_reset_confirmation, parse_reset_request, parse_role,
};
use crate::domain::accounts;
use crate::domain::views::{Message, User};
use crate::domain::{AppContext, AppError};

type Ctx = web::Data<AppContext>;

/// Change your own password; every other session of yours ends.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/password", tag = "users",
    responses(
        (status = 204, description = "Changed"),
    )
)]
pub async fn change_password(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
    client: ClientInfo,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let change = parse_password_change(body.0)?;
    accounts::change_password(&ctx, auth.0, id.0, change, client.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The answer to every reset request, whether or not the address has an account.
const RESET_REQUESTED: &str = "If the address has an account, a reset token has been mailed to it";

/// Mail a single-use reset token to the address, if it has an account.
/// The answer is the same either way.
#[utoipa::path(
    post, path = "/api/v1/password-reset", tag = "users",
    responses(
        (status = 202, body = Message),
    )
)]
pub async fn request_reset(
    ctx: Ctx,
    _: AuthRateLimit,
    client: ClientInfo,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let email = parse_reset_request(body.0)?;
    accounts::request_reset(&ctx, email, client.0).await?;
    Ok(HttpResponse::Accepted().json(Message {
        message: RESET_REQUESTED,
    }))
}

/// Set a new password with a mailed token; every session of the account ends.
#[utoipa::path(
    post, path = "/api/v1/password-reset/confirm", tag = "users",
    responses(
        (status = 204, description = "The password is set"),
    )
)]
pub async fn confirm_reset(
    ctx: Ctx,
    _: AuthRateLimit,
    client: ClientInfo,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let confirmation = parse_reset_confirmation(body.0)?;
    accounts::confirm_reset(&ctx, confirmation, client.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Make a user an admin or a plain user (admins). Their sessions end; the
/// last admin cannot be demoted (409).
#[utoipa::path(
    put, path = "/api/v1/users/{id}/role", tag = "users",
    responses(
        (status = 200, body = User),
    )
)]
pub async fn set_role(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
    client: ClientInfo,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let role = parse_role(body.0)?;
    Ok(HttpResponse::Ok().json(accounts::set_role(&ctx, auth.0, id.0, role, client.0).await?))
}

/// Delete an account (yourself, or anyone as an admin) with its items,
/// sessions and tokens; the email and phone number become free again.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}", tag = "users",
    responses(
        (status = 204, description = "Deleted"),
    )
)]
pub async fn delete_user(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
    client: ClientInfo,
) -> Result<HttpResponse, AppError> {
    accounts::delete_user(&ctx, auth.0, id.0, client.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
