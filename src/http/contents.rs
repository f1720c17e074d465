//! Content items, listings, slugs, tags and revisions. Public
//! reads answer with the cached bytes, a strong `ETag` and `304` on
//! `If-None-Match`; listings in gzip when the client accepts it,
//! with their own `ETag`. Reads of unpublished items and the caller's own
//! listings answer `Cache-Control: private, no-store`. Writes answer the
//! item's new `ETag` and honour `If-Match`.

use actix_web::body::BoxBody;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

use super::extract::{viewer, Auth, IfMatch, JsonObject, PathId, QueryParams};
use super::rate_limit::WriteRateLimit;
use crate::cache::{accepts_gzip, CachedPage, Representation};
use crate::domain::content_input::{parse_content_changes, NewContent};
use crate::domain::contents::{self, ContentListQuery, ItemRead, SlugRead};
use crate::domain::editorial::{self, Written};
use crate::domain::pagination::BeforeQuery;
use crate::domain::rules::{self, SLUG_CHARS};
use crate::domain::views::{Content, ContentWithUser, Revision, TagCount};
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

/// What a private read (an unpublished item, the caller's own listing)
/// answers: no cache may keep it.
const PRIVATE: HeaderValue = HeaderValue::from_static("private, no-store");

/// How a cached body is sent: its encoding, whether it varies by
/// `Accept-Encoding` (listings do), and whether it is the caller's own.
struct Encoding {
    content_encoding: Option<&'static str>,
    varies: bool,
    private: bool,
}

impl Encoding {
    const ITEM: Encoding = Encoding {
        content_encoding: None,
        varies: false,
        private: false,
    };
    const PRIVATE_ITEM: Encoding = Encoding {
        content_encoding: None,
        varies: false,
        private: true,
    };
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("Accept-Encoding");

/// The response of a cached read. Built on the response's own header map
/// (not the builder): this is the hot path of every cached read.
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
        HttpResponse::new(StatusCode::NOT_MODIFIED)
    } else {
        HttpResponse::with_body(StatusCode::OK, BoxBody::new(body.bytes.clone()))
    };
    let headers = response.headers_mut();
    if encoding.private {
        headers.insert(header::CACHE_CONTROL, PRIVATE);
    } else if let Some(policy) = req.app_data::<web::Data<ReadCachePolicy>>() {
        headers.insert(header::CACHE_CONTROL, policy.cache_control.clone());
    }
    headers.insert(header::ETAG, body.etag.clone());
    if encoding.varies {
        headers.insert(header::VARY, ACCEPT_ENCODING);
    }
    if let Some(link) = link.and_then(|link| HeaderValue::try_from(link).ok()) {
        headers.insert(header::LINK, link);
    }
    if !not_modified {
        if let Some(coding) = encoding.content_encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        headers.insert(header::CONTENT_TYPE, JSON);
    }
    response
}

/// Post an item as yourself (admins may name another `user_id`).
#[utoipa::path(
    post, path = "/api/v1/post-content", tag = "content",
    responses(
        (status = 201, body = Content, headers(("Location" = String, description = "/api/v1/content/{id}"),
            ("ETag" = String, description = "The item's strong tag, for `If-Match`"))),
    ),
)]
pub async fn create(
    ctx: Ctx,
    auth: Auth,
    _limit: WriteRateLimit,
    body: JsonObject,
) -> Result<HttpResponse, AppError> {
    let input = NewContent::parse(body.0, chrono::Utc::now())?;
    let written = editorial::create(&ctx, auth.0, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/content/{}", written.content.id),
        ))
        .insert_header((header::ETAG, written.etag))
        .json(written.content))
}

/// The same as `POST /api/v1/post-content`.
#[utoipa::path(
    post, path = "/api/v1/content", tag = "content",
    responses(
        (status = 201, body = Content, headers(("Location" = String), ("ETag" = String))),
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

/// An item as `req`'s caller may see it: a public one to everyone (the
/// bearer credential is not even read), an unpublished one only to its
/// owner and admins.
async fn item_response(
    req: &HttpRequest,
    read: ItemRead,
    id: i64,
) -> Result<HttpResponse, AppError> {
    Ok(match read {
        ItemRead::Public(body) => cached_read(req, &body, Encoding::ITEM, None),
        hidden => {
            let body = hidden.for_viewer(viewer(req).await?, id)?;
            cached_read(req, &body, Encoding::PRIVATE_ITEM, None)
        }
    })
}

/// One item with its author (cached when published; drafts and scheduled
/// items only for their owner and admins).
#[utoipa::path(
    get, path = "/api/v1/content/{id}", tag = "content",
    responses(
        (status = 200, body = ContentWithUser, headers(("ETag" = String), ("Cache-Control" = String,
            description = "`CACHE_CONTROL` when published; `private, no-store` otherwise"))),
        (status = 304, description = "`If-None-Match` matched the current `ETag`"),
    )
)]
pub async fn get(ctx: Ctx, req: HttpRequest, id: PathId) -> Result<HttpResponse, AppError> {
    let read = contents::get(&ctx, id.0).await?;
    item_response(&req, read, id.0).await
}

/// One item by its slug (as `GET /content/{id}`); an old slug redirects
/// to the current one.
#[utoipa::path(
    get, path = "/api/v1/content/slug/{slug}", tag = "content",
    responses(
        (status = 200, body = ContentWithUser, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 301, description = "An old slug of the item: `Location` is its current one",
            headers(("Location" = String))),
        (status = 304, description = "`If-None-Match` matched the current `ETag`"),
    )
)]
pub async fn get_by_slug(ctx: Ctx, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let slug = req.match_info().get("slug").unwrap_or_default().to_owned();
    if !SLUG_CHARS.contains(&slug.len()) || !rules::SLUG.matches(&slug) {
        return Err(super::extract::route_not_found(&req));
    }
    let read = contents::get_by_slug(&ctx, slug, async || viewer(&req).await).await?;
    Ok(match read {
        SlugRead::Item {
            representation,
            public,
        } => {
            let encoding = if public {
                Encoding::ITEM
            } else {
                Encoding::PRIVATE_ITEM
            };
            cached_read(&req, &representation, encoding, None)
        }
        SlugRead::MovedTo(current) => HttpResponse::MovedPermanently()
            .insert_header((header::LOCATION, format!("/api/v1/content/slug/{current}")))
            .finish(),
    })
}

/// A listing page in the encoding the client accepts.
fn page_response(
    req: &HttpRequest,
    page: &CachedPage,
    link: Option<String>,
    private: bool,
) -> Result<HttpResponse, AppError> {
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
        private,
    };
    Ok(cached_read(req, chosen.representation, encoding, link))
}

/// Items with their authors, newest first (or best match first with `q`,
/// or by `sort`), keyset-paginated. Published items are everyone's and
/// cached per query; other statuses list the caller's own (an admin's:
/// everyone's).
#[utoipa::path(
    get, path = "/api/v1/content", tag = "content",
    responses(
        (status = 200, body = Vec<ContentWithUser>,
            headers(("ETag" = String, description = "Strong; each encoding has its own"),
                ("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"),
                ("Vary" = String, description = "`Accept-Encoding`"),
                ("Cache-Control" = String, description = "`CACHE_CONTROL` for published items; `private, no-store` for other statuses"),
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
    let public = query.is_public();
    let caller = if public { None } else { viewer(&req).await? };
    let page = contents::list(&ctx, &query, caller).await?;
    let link = page
        .next_cursor
        .as_deref()
        .map(|cursor| format!("<{}>; rel=\"next\"", query.next_link(cursor)));
    page_response(&req, &page, link, !public)
}

/// How many public items carry each tag, most used first (cached).
#[utoipa::path(
    get, path = "/api/v1/tags", tag = "content",
    responses(
        (status = 200, body = Vec<TagCount>,
            headers(("ETag" = String, description = "Strong; each encoding has its own"),
                ("Vary" = String, description = "`Accept-Encoding`"))),
        (status = 304, description = "`If-None-Match` matched the current `ETag`"),
    )
)]
pub async fn tags(ctx: Ctx, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let page = contents::tags(&ctx).await?;
    page_response(&req, &page, None, false)
}

fn written_response(written: Written) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, written.etag))
        .json(written.content)
}

/// Change an item (owner or admin). Absent fields are left alone;
/// `image: null` clears the image, `tags: null` the tags. With `If-Match`,
/// only if the item is still as that tag says.
#[utoipa::path(
    method(put, patch), path = "/api/v1/content/{id}", tag = "content",
    responses(
        (status = 200, body = Content, headers(("ETag" = String, description = "The item's new strong tag"))),
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
    let changes = parse_content_changes(body.0)?;
    let written = editorial::update(&ctx, auth.0, id.0, changes, if_match.0).await?;
    Ok(written_response(written))
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
    if_match: IfMatch,
    _: WriteRateLimit,
) -> Result<HttpResponse, AppError> {
    editorial::delete(&ctx, auth.0, id.0, if_match.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The states an item's changes replaced, newest first (owner or admin).
#[utoipa::path(
    get, path = "/api/v1/content/{id}/revisions", tag = "content",
    responses(
        (status = 200, body = Vec<Revision>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
    ),
)]
pub async fn revisions(
    ctx: Ctx,
    id: PathId,
    auth: Auth,
    params: QueryParams,
) -> Result<HttpResponse, AppError> {
    let query = BeforeQuery::parse(params.0)?;
    let limit = query.limit;
    let page = editorial::revisions(&ctx, auth.0, id.0, query).await?;
    let path = format!("/api/v1/content/{}/revisions", id.0);
    Ok(super::page_response(&path, limit, page))
}

/// The `{version}` segment: a positive integer, else no such route.
fn version_segment(req: &HttpRequest) -> Result<i64, AppError> {
    req.match_info()
        .get("version")
        .and_then(crate::domain::validation::digits)
        .filter(|version| *version > 0)
        .ok_or_else(|| super::extract::route_not_found(req))
}

/// One revision of an item (owner or admin).
#[utoipa::path(
    get, path = "/api/v1/content/{id}/revisions/{version}", tag = "content",
    responses(
        (status = 200, body = Revision),
    ),
)]
pub async fn revision(
    ctx: Ctx,
    req: HttpRequest,
    id: PathId,
    auth: Auth,
) -> Result<HttpResponse, AppError> {
    let version = version_segment(&req)?;
    Ok(HttpResponse::Ok().json(editorial::revision(&ctx, auth.0, id.0, version).await?))
}

/// Make a revision's fields the item's again, as a new version (owner or
/// admin); honours `If-Match` like an update.
#[utoipa::path(
    post, path = "/api/v1/content/{id}/revisions/{version}/restore", tag = "content",
    responses(
        (status = 200, body = Content, headers(("ETag" = String, description = "The item's new strong tag"))),
    ),
)]
pub async fn restore(
    ctx: Ctx,
    req: HttpRequest,
    id: PathId,
    auth: Auth,
    if_match: IfMatch,
    _: WriteRateLimit,
) -> Result<HttpResponse, AppError> {
    let version = version_segment(&req)?;
    let written = editorial::restore(&ctx, auth.0, id.0, version, if_match.0).await?;
    Ok(written_response(written))
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
