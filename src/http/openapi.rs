//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//! The request schemas below document bodies that the domain parses field
//! by field (so that every invalid field is reported at once).

use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    /// Trimmed; 2–100 characters; at least one letter (any script).
    #[schema(example = "Chloé Adé")]
    pub name: String,
    /// Uniqueness ignores case.
    #[schema(example = "chloe@example.com")]
    pub email: String,
    /// A valid number of an allowed region (default NG); national forms
    /// are read in the default region. Stored as E.164.
    #[schema(example = "0801 234 5678")]
    pub phone_number: String,
    /// Trimmed; 2–100 characters.
    pub country: String,
    /// Trimmed; 2–100 characters.
    pub state: String,
    /// 8–128 characters.
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Every field optional; same rules as signup.
#[derive(Deserialize, ToSchema)]
pub struct UserUpdateRequest {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub country: Option<String>,
    pub state: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewContentRequest {
    /// Trimmed; 3–200 characters.
    pub title: String,
    /// 10–100 000 characters, not blank.
    pub content: String,
    /// `null` or an absolute http(s) URL of at most 2048 characters.
    pub image: Option<String>,
    /// Defaults to the caller; only an admin may name another user.
    pub user_id: Option<i64>,
}

/// Every field optional; `image: null` clears the image.
#[derive(Deserialize, ToSchema)]
pub struct ContentUpdateRequest {
    pub title: Option<String>,
    pub content: Option<String>,
    pub image: Option<String>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Content API",
        description = "Users, auth and cached content. Errors are RFC 9457 problem+json."
    ),
    paths(
        super::root::index,
        super::root::live,
        super::root::ready,
        super::metrics::metrics,
        super::users::signup,
        super::users::login,
        super::users::list,
        super::users::get,
        super::users::update,
        super::contents::create,
        super::contents::create_alias,
        super::contents::get,
        super::contents::list,
        super::contents::update,
        super::contents::delete,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Accounts, login and profiles (§2)"),
        (name = "content", description = "Content items and listings, cached in Redis (§3)"),
        (name = "operations", description = "Service info, liveness and readiness"),
    )
)]
pub struct ApiDoc;
