//! HTTP: routes, extractors, problem+json errors, request ids, OpenAPI.
//! Handlers only translate between HTTP and the domain.

pub mod contents;
pub mod extract;
pub mod openapi;
pub mod problem;
pub mod request_id;
pub mod root;
pub mod users;

use actix_web::{web, HttpRequest, HttpResponse, Resource};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::domain::AppError;

/// A resource whose other methods answer 405 with `Allow`.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(AppError::MethodNotAllowed { allow })
    }))
}

async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(extract::route_not_found(&req))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", "GET").route(web::get().to(root::index)))
        .service(resource("/health/live", "GET").route(web::get().to(root::live)))
        .service(resource("/health/ready", "GET").route(web::get().to(root::ready)))
        .service(resource("/docs", "GET").route(web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header((actix_web::http::header::LOCATION, "/docs/"))
                .finish()
        })))
        // Before the /api/v1 scope, which would otherwise claim /api/v1/openapi.json.
        .service(
            SwaggerUi::new("/docs/{_:.*}").url("/api/v1/openapi.json", openapi::ApiDoc::openapi()),
        )
        .service(
            web::scope("/api/v1")
                .service(resource("/signup", "POST").route(web::post().to(users::signup)))
                .service(resource("/login", "POST").route(web::post().to(users::login)))
                .service(resource("/users", "GET").route(web::get().to(users::list)))
                .service(resource("/post-content", "POST").route(web::post().to(contents::create)))
                .service(
                    resource("/content", "GET, POST")
                        .route(web::get().to(contents::list))
                        .route(web::post().to(contents::create_alias)),
                )
                .service(
                    resource("/content/{id}", "GET, PUT, PATCH, DELETE")
                        .route(web::get().to(contents::get))
                        .route(web::put().to(contents::update))
                        .route(web::patch().to(contents::update))
                        .route(web::delete().to(contents::delete)),
                )
                .service(
                    resource("/users/{id}", "GET, PUT, PATCH")
                        .route(web::get().to(users::get))
                        .route(web::put().to(users::update))
                        .route(web::patch().to(users::update)),
                ),
        )
        .default_service(web::to(unknown_route));
}
