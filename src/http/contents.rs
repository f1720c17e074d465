//! §3: content items and listings. Cached reads answer with the stored
//! bytes, a strong `ETag` and `304` on `If-None-Match`; listings in gzip
//! when the client accepts it (§11), with their own `ETag`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

use super::extract::{Auth, JsonObject, PathId, QueryParams};
use super::rate_limit::WriteRateLimit;
use crate::cache::{accepts_gzip, Representation};
use crate::domain::content_input::{parse_content_changes, NewContent};
use crate::domain::contents::{self, ContentListQuery};
use crate::domain::views::{Content, ContentWithUser};
use crate::domain::{AppContext, AppError};

type Ctx = web::Data<AppContext>;

/// `Cache-Control` of cached reads (`CACHE_CONTROL`).
pub struct ReadCachePolicy {
    pub cache_control: HeaderValue,
}

fn matches_if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// How a cached body is sent: its encoding, and whether it varies by
/// `Accept-Encoding` (listings do).
struct Encoding {
    content_encoding: Option<&'static str>,
    varies: bool,
}

fn cached_read(
    req: &HttpRequest,
    body: &Representation,
    encoding: Encoding,
    link: Option<String>,
) -> HttpResponse {
    let not_modified = body
        .etag
        .to_str()
        .is_ok_and(|tag| matches_if_none_match(req, tag));
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    if let Some(policy) = req.app_data::<web::Data<ReadCachePolicy>>() {
        response.insert_header((header::CACHE_CONTROL, policy.cache_control.clone()));
    }
    response.insert_header((header::ETAG, body.etag.clone()));
    if encoding.varies {
        response.insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")));
    }
    if let Some(link) = link {
        response.insert_header((header::LINK, link));
    }
    if not_modified {
        return response.finish();
    }
    if let Some(coding) = encoding.content_encoding {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static(coding)));
    }
    response
        .content_type("application/json")
        .body(body.bytes.clone())
}

/// Post an item as yourself (admins may name another `user_id`).
#[utoipa::path(
    post, path = "/api/v1/post-content", tag = "content",
    responses(
        (status = 201, body = Content, headers(("Location" = String, description = "/api/v1/content/{id}"))),
    ),
)]
pub async fn create(
    ctx: Ctx,
    auth: Auth,
    _limit: WriteRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let input = NewContent::parse(body.0)?;
    let content = contents::create(&ctx, auth.0, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/content/{}", content.id)))
        .json(content))
}

/// The same as `POST /api/v1/post-content`.
#[utoipa::path(
    post, path = "/api/v1/content", tag = "content",
    responses(
        (status = 201, body = Content, headers(("Location" = String))),
    ),
)]
pub async fn create_alias(
    ctx: Ctx,
    auth: Auth,
    limit: WriteRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    create(ctx, auth, limit, body).await
}

/// One item with its author (cached).
#[utoipa::path(
    get, path = "/api/v1/content/{id}", tag = "content",
    responses(
        (status = 200, body = ContentWithUser, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "`If-None-Match` matched the current `ETag`"),
    )
)]
pub async fn get(ctx: Ctx, req: HttpRequest, id: PathId) -> Result<HttpResponse, AppError> {
    let body = contents::get(&ctx, id.0).await?;
    let encoding = Encoding {
        content_encoding: None,
        varies: false,
    };
    Ok(cached_read(&req, &body, encoding, None))
}

/// Items with their authors, newest first (or best match first with `q`),
/// keyset-paginated (cached per query).
#[utoipa::path(
    get, path = "/api/v1/content", tag = "content",
    responses(
        (status = 200, body = Vec<ContentWithUser>,
            headers(("ETag" = String, description = "Strong; each encoding has its own"),
                ("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"),
                ("Vary" = String, description = "`Accept-Encoding`"),
                ("Content-Encoding" = String, description = "`gzip` when `Accept-Encoding` allows it and the page is 1 KiB or more"))),
        (status = 304, description = "`If-None-Match` matched the current `ETag`"),
    )
)]
pub async fn list(
    ctx: Ctx,
    req: HttpRequest,
    params: QueryParams,
) -> Result<HttpResponse, AppError> {
    let query = ContentListQuery::parse(params.0)?;
    let page = contents::list(&ctx, &query).await?;
    let link = page
        .next_cursor
        .as_deref()
        .map(|cursor| format!("<{}>; rel=\"next\"", query.next_link(cursor)));
    let gzip = accepts_gzip(
        req.headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|value| value.to_str().ok()),
    );
    let chosen = page
        .body
        .choose(gzip)
        .map_err(|err| AppError::Internal(anyhow::anyhow!("a cached listing is corrupt: {err}")))?;
    let encoding = Encoding {
        content_encoding: chosen.content_encoding,
        varies: true,
    };
    Ok(cached_read(&req, chosen.representation, encoding, link))
}

/// Change an item (owner or admin). Absent fields are left alone;
/// `image: null` clears the image.
#[utoipa::path(
    method(put, patch), path = "/api/v1/content/{id}", tag = "content",
    responses(
        (status = 200, body = Content),
    ),
)]
pub async fn update(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let changes = parse_content_changes(body.0)?;
    Ok(HttpResponse::Ok().json(contents::update(&ctx, auth.0, id.0, changes).await?))
}

/// Delete an item (owner or admin).
#[utoipa::path(
    delete, path = "/api/v1/content/{id}", tag = "content",
    responses(
        (status = 204, description = "Deleted"),
    ),
)]
pub async fn delete(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    _: WriteRateLimit,
) -> Result<HttpResponse, AppError> {
    contents::delete(&ctx, auth.0, id.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn etag(bytes: &'static [u8]) -> String {
        crate::cache::body::etag(bytes).to_str().unwrap().to_owned()
    }

    #[test]
    fn etags_are_strong_and_stable() {
        assert_eq!(etag(b"[]"), etag(b"[]"));
        assert_ne!(etag(b"[]"), etag(b"[ ]"));
        assert!(etag(b"x").starts_with('"') && !etag(b"x").starts_with("W/"));
    }

    #[test]
    fn if_none_match_accepts_lists_weak_forms_and_star() {
        let tag = etag(b"body");
        for header in [
            tag.clone(),
            format!("\"other\", {tag}"),
            format!("W/{tag}"),
            "*".into(),
        ] {
            let req = TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, header.clone()))
                .to_http_request();
            assert!(matches_if_none_match(&req, &tag), "{header}");
        }
        let req = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, "\"other\""))
            .to_http_request();
        assert!(!matches_if_none_match(&req, &tag));
    }
}
