//! HTTP: routes, extractors, problem+json errors, request ids, OpenAPI.
//! Handlers only translate between HTTP and the domain.

pub mod accounts;
pub mod admin;
pub mod contents;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
pub mod request_id;
pub mod root;
pub mod sessions;
pub mod tokens;
pub mod users;
pub mod webhooks;

use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::{guard, web, HttpRequest, HttpResponse, Resource, Route};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::domain::users::Page;
use crate::domain::AppError;

/// Browsers may call the API only from the configured origins.
pub fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            header::IF_MATCH,
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::LINK,
            header::LOCATION,
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(3600)
}

/// GET, and HEAD answered like GET without the body (RFC 9110, section 9.3.2).
fn read() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A resource whose other methods answer 405 with `Allow`.
/// Named after its full path: the metrics label, read without building it.
fn resource(path: &str, allow: &'static str) -> Resource {
    named_resource(path, path, allow)
}

/// A resource inside the `/api/v1` scope.
fn api_resource(path: &str, allow: &'static str) -> Resource {
    named_resource(path, &format!("{API}{path}"), allow)
}

const API: &str = "/api/v1";

fn named_resource(path: &str, name: &str, allow: &'static str) -> Resource {
    web::resource(path)
        .name(name)
        .default_service(web::to(move || async move {
            Err::<HttpResponse, _>(AppError::MethodNotAllowed { allow })
        }))
}

async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(extract::route_not_found(&req))
}

/// Every route; `openapi` is the document served at `/api/v1/openapi.json`.
pub fn routes(openapi: serde_json::Value) -> impl Fn(&mut web::ServiceConfig) {
    let document = actix_web::web::Bytes::from(
        serde_json::to_vec(&openapi).expect("a JSON value always serialises"),
    );
    move |cfg| configure(cfg, document.clone())
}

const OPENAPI_PATH: &str = "/api/v1/openapi.json";

fn configure(cfg: &mut web::ServiceConfig, document: actix_web::web::Bytes) {
    // Routes are tried in order (each dynamic segment is a regular
    // expression): the API first, its most requested resources first.
    cfg.service(
        web::scope(API)
            .service(
                api_resource("/content/{id}", "GET, HEAD, PUT, PATCH, DELETE")
                    .route(read().to(contents::get))
                    .route(web::put().to(contents::update))
                    .route(web::patch().to(contents::update))
                    .route(web::delete().to(contents::delete)),
            )
            .service(
                api_resource("/content", "GET, HEAD, POST")
                    .route(read().to(contents::list))
                    .route(web::post().to(contents::create_alias)),
            )
            .service(
                api_resource("/content/slug/{slug}", "GET, HEAD")
                    .route(read().to(contents::get_by_slug)),
            )
            .service(
                api_resource("/users/{id}", "GET, HEAD, PUT, PATCH, DELETE")
                    .route(read().to(users::get))
                    .route(web::put().to(users::update))
                    .route(web::patch().to(users::update))
                    .route(web::delete().to(accounts::delete_user)),
            )
            .service(api_resource("/users", "GET, HEAD").route(read().to(users::list)))
            .service(api_resource("/tags", "GET, HEAD").route(read().to(contents::tags)))
            .service(api_resource("/signup", "POST").route(web::post().to(users::signup)))
            .service(api_resource("/login", "POST").route(web::post().to(users::login)))
            .service(api_resource("/post-content", "POST").route(web::post().to(contents::create)))
            .service(
                api_resource("/content/{id}/revisions", "GET, HEAD")
                    .route(read().to(contents::revisions)),
            )
            .service(
                api_resource("/content/{id}/revisions/{version}", "GET, HEAD")
                    .route(read().to(contents::revision)),
            )
            .service(
                api_resource("/content/{id}/revisions/{version}/restore", "POST")
                    .route(web::post().to(contents::restore)),
            )
            .service(
                api_resource("/users/{id}/password", "POST")
                    .route(web::post().to(accounts::change_password)),
            )
            .service(
                api_resource("/users/{id}/role", "PUT").route(web::put().to(accounts::set_role)),
            )
            .service(
                api_resource("/token/refresh", "POST").route(web::post().to(sessions::refresh)),
            )
            .service(api_resource("/logout", "POST").route(web::post().to(sessions::logout)))
            .service(api_resource("/sessions", "GET, HEAD").route(read().to(sessions::list)))
            .service(
                api_resource("/sessions/{id}", "DELETE").route(web::delete().to(sessions::end)),
            )
            .service(
                api_resource("/password-reset", "POST")
                    .route(web::post().to(accounts::request_reset)),
            )
            .service(
                api_resource("/password-reset/confirm", "POST")
                    .route(web::post().to(accounts::confirm_reset)),
            )
            .service(
                api_resource("/tokens", "GET, HEAD, POST")
                    .route(read().to(tokens::list))
                    .route(web::post().to(tokens::create)),
            )
            .service(api_resource("/tokens/{id}", "DELETE").route(web::delete().to(tokens::revoke)))
            .service(api_resource("/admin/audit", "GET, HEAD").route(read().to(admin::audit)))
            .service(api_resource("/admin/cache", "GET, HEAD").route(read().to(admin::cache)))
            .service(
                api_resource("/admin/cache/flush", "POST")
                    .route(web::post().to(admin::flush_cache)),
            )
            .service(
                api_resource("/admin/webhooks", "GET, HEAD, POST")
                    .route(read().to(webhooks::list))
                    .route(web::post().to(webhooks::create)),
            )
            .service(
                api_resource("/admin/webhooks/{id}", "GET, HEAD, PATCH, DELETE")
                    .route(read().to(webhooks::get))
                    .route(web::patch().to(webhooks::update))
                    .route(web::delete().to(webhooks::delete)),
            )
            .service(
                api_resource("/admin/webhooks/{id}/deliveries", "GET, HEAD")
                    .route(read().to(webhooks::deliveries)),
            )
            .service(
                api_resource(
                    "/admin/webhooks/{id}/deliveries/{delivery_id}/redeliver",
                    "POST",
                )
                .route(web::post().to(webhooks::redeliver)),
            )
            .service(
                named_resource("/openapi.json", OPENAPI_PATH, "GET, HEAD").route(read().to(
                    move || {
                        let document = document.clone();
                        async move {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .body(document)
                        }
                    },
                )),
            ),
    )
    .service(resource("/", "GET, HEAD").route(read().to(root::index)))
    .service(resource("/health/live", "GET, HEAD").route(read().to(root::live)))
    .service(resource("/health/ready", "GET, HEAD").route(read().to(root::ready)))
    .service(resource("/metrics", "GET, HEAD").route(read().to(metrics::metrics)))
    .service(resource("/docs", "GET, HEAD").route(read().to(|| async {
        HttpResponse::PermanentRedirect()
            .insert_header((actix_web::http::header::LOCATION, "/docs/"))
            .finish()
    })))
    // After the API: its `{_:.*}` pattern is a regular expression that
    // every request before it would be matched against.
    .service(SwaggerUi::new("/docs/{_:.*}").config(Config::new([OPENAPI_PATH])))
    .default_service(web::to(unknown_route));
}

/// A keyset page as JSON, with `Link: <{path}?limit=…&cursor=…>; rel="next"`
/// when a next page exists.
pub fn page_response<T: serde::Serialize>(path: &str, limit: i64, page: Page<T>) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if let Some(cursor) = page.next_cursor {
        response.insert_header((
            header::LINK,
            format!("<{path}?limit={limit}&cursor={cursor}>; rel=\"next\""),
        ));
    }
    response.json(page.items)
}
