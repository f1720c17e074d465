//! Signup, login and users.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::extract::{Auth, ClientInfo, IfMatch, JsonObject, MaybeAuth, PathId, QueryParams};
use super::rate_limit::{AuthRateLimit, WriteRateLimit};
use crate::domain::sessions;
use crate::domain::user_input::{parse_user_changes, Login, Signup};
use crate::domain::users::{self, UserListQuery};
use crate::domain::views::{LoginResponse, User, UserWithContents};
use crate::domain::{AppContext, AppError};

type Ctx = web::Data<AppContext>;

/// Create an account. Answers the private view of the new user.
#[utoipa::path(
    post, path = "/api/v1/signup", tag = "users",
    responses(
        (status = 201, description = "Created", body = User,
            headers(("Location" = String, description = "/api/v1/users/{id}"))),
    )
)]
pub async fn signup(
    ctx: Ctx,
    _: AuthRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let input = Signup::parse(body.0, &ctx.phones)?;
    let user = users::signup(&ctx, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/users/{}", user.id)))
        .json(user))
}

/// Exchange email and password for an access token and a refresh token
/// (a new session). 10 failed logins for one address within 15 minutes
/// lock it for 15 minutes (429), from any client.
#[utoipa::path(
    post, path = "/api/v1/login", tag = "users",
    responses(
        (status = 200, body = LoginResponse),
    )
)]
pub async fn login(
    ctx: Ctx,
    _: AuthRateLimit,
    client: ClientInfo,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let input = Login::parse(body.0)?;
    Ok(HttpResponse::Ok().json(sessions::login(&ctx, input, client.0).await?))
}

/// Users ordered by id, each with their newest items. Email and phone
/// number appear only for the caller's own entry (or to an admin).
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    responses(
        (status = 200, body = Vec<UserWithContents>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
    ),
)]
pub async fn list(
    ctx: Ctx,
    viewer: MaybeAuth,
    params: QueryParams,
) -> Result<HttpResponse, AppError> {
    let query = UserListQuery::parse(params.0)?;
    let (limit, contents_limit) = (query.limit(), query.contents_limit);
    let page = users::list(&ctx, viewer.0, query).await?;
    let mut response = HttpResponse::Ok();
    if let Some(cursor) = page.next_cursor {
        response.insert_header((
            header::LINK,
            format!(
                "</api/v1/users?limit={limit}&contents_limit={contents_limit}&cursor={cursor}>; rel=\"next\""
            ),
        ));
    }
    Ok(response.json(page.items))
}

/// One user with their newest items. To the user themself (or an admin)
/// with the account's `ETag`, for `If-Match` on a profile change.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    responses(
        (status = 200, body = UserWithContents, headers(("ETag" = String,
            description = "Only to the user themself or an admin: the strong tag of the account's \
                fields (not of the embedded items)"))),
    ),
)]
pub async fn get(
    ctx: Ctx,
    id: PathId,
    viewer: MaybeAuth,
    params: QueryParams,
) -> Result<HttpResponse, AppError> {
    let contents_limit = users::parse_contents_limit_param(params.0)?;
    let read = users::get(&ctx, viewer.0, id.0, contents_limit).await?;
    let mut response = HttpResponse::Ok();
    if let Some(etag) = read.etag {
        response.insert_header((header::ETAG, etag));
    }
    Ok(response.json(read.user))
}

/// Change your own profile (or, as an admin, anyone's). Absent fields are
/// left alone; `PUT` takes the same partial body as `PATCH`. With
/// `If-Match`, only if the account is still as that tag says.
#[utoipa::path(
    method(put, patch), path = "/api/v1/users/{id}", tag = "users",
    responses(
        (status = 200, body = User, headers(("ETag" = String, description = "The account's new strong tag"))),
    ),
)]
pub async fn update(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    if_match: IfMatch,
    _: WriteRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let changes = parse_user_changes(body.0, &ctx.phones)?;
    let written = users::update(&ctx, auth.0, id.0, changes, if_match.0).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, written.etag))
        .json(written.user))
}
