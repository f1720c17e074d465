//! Use cases of §3: content items, listings, and their cache policy.
//!
//! Reads: look up Redis (the value, or the guard a fill must carry, in one
//! round trip); on a miss, join or start the one load of that key under that
//! guard: read PostgreSQL, serialise once, store guarded.
//! Writes: commit, then invalidate, then answer.

use std::sync::Arc;

use actix_web::web::Bytes;
use serde_json::{Map, Value};

use super::auth::{Principal, Scope};
use super::content_input::NewContent;
use super::pagination::{self, DEFAULT_LIMIT, MAX_LIMIT};
use super::rules::SEARCH_MAX_CHARS;
use super::validation::{digits, Fields, Rule};
use super::views::{Content, ContentWithUser};
use super::{AppContext, AppError};
use crate::cache::{
    keys::DEFAULT_LISTING, CachedPage, Flight, ListingBody, Lookup, Representation, ITEM, LISTING,
};
use crate::db::contents::{After, ListFilter};
use crate::db::models::{ContentChanges, ListingRow, NewContentRow};
use crate::db::{self, DbError};

/// `?limit=&cursor=&user_id=&q=` of `GET /content`, normalised so that
/// equal queries share one cache key.
#[derive(Debug)]
pub struct ContentListQuery {
    limit: i64,
    user_id: Option<i64>,
    search: Option<String>,
    cursor: Option<(String, After)>,
}

fn parse_user_id(raw: String) -> Result<i64, Rule> {
    digits(&raw)
        .filter(|id| *id > 0)
        .ok_or_else(|| Rule::new("id", "value is not a positive integer id"))
}

/// At most `SEARCH_MAX_CHARS` as sent; then whitespace collapsed and
/// lower-cased (the search is case-insensitive). Blank means no search.
fn parse_search(raw: String) -> Result<Option<String>, Rule> {
    if raw.chars().count() > SEARCH_MAX_CHARS {
        return Err(Rule::new(
            "length",
            format!("ensure this value has at most {SEARCH_MAX_CHARS} characters"),
        ));
    }
    let normalised = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    Ok(Some(normalised).filter(|q| !q.is_empty()))
}

impl ContentListQuery {
    pub fn parse(params: Map<String, Value>) -> Result<Self, AppError> {
        let mut fields = Fields::new(params);
        let limit = fields.optional("limit", |raw| pagination::bounded(&raw, 1, MAX_LIMIT));
        let user_id = fields.optional("user_id", parse_user_id);
        let search = fields.optional("q", parse_search).flatten();
        let searching = search.is_some();
        let cursor = fields.optional("cursor", |raw| {
            let after = pagination::decode_content_cursor(&raw, searching)?;
            Ok((raw, after))
        });
        fields.finish()?;
        Ok(Self {
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            user_id,
            search,
            cursor,
        })
    }

    /// The query string in a fixed order, with `cursor` replaced.
    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut pairs = vec![("limit", self.limit.to_string())];
        if let Some(user_id) = self.user_id {
            pairs.push(("user_id", user_id.to_string()));
        }
        if let Some(search) = &self.search {
            pairs.push(("q", search.clone()));
        }
        if let Some(cursor) = cursor {
            pairs.push(("cursor", cursor.to_owned()));
        }
        serde_urlencoded::to_string(pairs).expect("string pairs always encode")
    }

    /// `all` for the default first page, else the canonical query string.
    pub fn cache_name(&self) -> String {
        let default_page = self.limit == DEFAULT_LIMIT
            && self.user_id.is_none()
            && self.search.is_none()
            && self.cursor.is_none();
        if default_page {
            DEFAULT_LISTING.to_owned()
        } else {
            self.query_string(self.cursor.as_ref().map(|(raw, _)| raw.as_str()))
        }
    }

    /// The `Link: rel="next"` target for a page that ends at `cursor`.
    pub fn next_link(&self, cursor: &str) -> String {
        format!("/api/v1/content?{}", self.query_string(Some(cursor)))
    }
}

fn serialise(value: &impl serde::Serialize) -> Result<Bytes, AppError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|err| AppError::Internal(err.into()))
}

fn with_user(row: ListingRow) -> ContentWithUser {
    let user = row.author().into();
    ContentWithUser {
        content: row.content.into(),
        user,
    }
}

/// A load's outcome, shared by every request that waited for it.
type Shared<T> = Result<T, Arc<AppError>>;

/// `GET /content/{id}`: the `ContentWithUser` bytes, from L1 or Redis when
/// cached. Concurrent misses with the same lease share one load.
pub async fn get(ctx: &AppContext, id: i64) -> Result<Representation, AppError> {
    match ctx.cache.item_in_l1(id) {
        Some(found) => Ok(found),
        // Boxed: an L1 hit then never moves the miss path's large future.
        None => Box::pin(get_below_l1(ctx, id)).await,
    }
}

async fn get_below_l1(ctx: &AppContext, id: i64) -> Result<Representation, AppError> {
    let guard = match ctx.cache.lookup_item_below_l1(id).await {
        Lookup::Hit(bytes) => return Ok(bytes),
        Lookup::Miss(guard) => guard,
    };
    let Some(guard) = guard else {
        return read_item(&ctx.pool, id).await;
    };
    let (pool, cache, hooks) = (ctx.pool.clone(), ctx.cache.clone(), ctx.hooks.clone());
    let fill_guard = guard.clone();
    let load = async move {
        let bytes = read_item(&pool, id).await.map_err(Arc::new)?;
        hooks.before_cache_store(&cache.keys().item(id)).await;
        cache.store_item(&fill_guard, id, &bytes).await;
        Ok(bytes)
    };
    let flight = ctx.item_flights.join_or_start(id.to_string(), guard, load);
    shared_outcome(ctx, ITEM, flight).await
}

async fn shared_outcome<T: Clone>(
    ctx: &AppContext,
    family: &str,
    flight: Flight<Shared<T>>,
) -> Result<T, AppError> {
    if flight.joined {
        ctx.metrics.coalesced(family);
    }
    flight
        .outcome()
        .await
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a shared {family} load panicked")))?
        .map_err(AppError::from)
}

async fn read_item(pool: &db::DbPool, id: i64) -> Result<Representation, AppError> {
    let (content, author) =
        db::interact(pool, move |conn| db::contents::find_with_author(conn, id))
            .await?
            .ok_or_else(|| AppError::content_not_found(id))?;
    serialise(&ContentWithUser {
        content: content.into(),
        user: author.into(),
    })
    .map(Representation::new)
}

/// `GET /content`: one page (body bytes and next cursor), cached per
/// canonical query; empty pages are cached too. Concurrent misses of one
/// page under the same listing version share one load.
pub async fn list(ctx: &AppContext, query: &ContentListQuery) -> Result<CachedPage, AppError> {
    let key = ctx.cache.keys().listing(&query.cache_name());
    match ctx.cache.listing_in_l1(&key) {
        Some(found) => Ok(found),
        None => Box::pin(list_below_l1(ctx, query, key)).await,
    }
}

async fn list_below_l1(
    ctx: &AppContext,
    query: &ContentListQuery,
    key: String,
) -> Result<CachedPage, AppError> {
    let guard = match ctx.cache.lookup_listing_below_l1(&key).await {
        Lookup::Hit(page) => return Ok(page),
        Lookup::Miss(guard) => guard,
    };
    let filter = ListFilter {
        user_id: query.user_id,
        search: query.search.clone(),
        after: query.cursor.as_ref().map(|(_, after)| *after),
    };
    let limit = query.limit;
    let Some(guard) = guard else {
        return read_page(&ctx.pool, filter, limit).await;
    };
    let (pool, cache, hooks) = (ctx.pool.clone(), ctx.cache.clone(), ctx.hooks.clone());
    let (fill_guard, fill_key) = (guard.clone(), key.clone());
    let load = async move {
        let page = read_page(&pool, filter, limit).await.map_err(Arc::new)?;
        hooks.before_cache_store(&fill_key).await;
        cache.store_listing(&fill_guard, &fill_key, &page).await;
        Ok(page)
    };
    let flight = ctx.listing_flights.join_or_start(key, guard, load);
    shared_outcome(ctx, LISTING, flight).await
}

async fn read_page(
    pool: &db::DbPool,
    filter: ListFilter,
    limit: i64,
) -> Result<CachedPage, AppError> {
    // One extra row tells whether a next page exists.
    let mut rows = db::interact(pool, move |conn| {
        db::contents::list(conn, &filter, limit + 1)
    })
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = rows.last().filter(|_| has_more).map(|last| {
        let id = last.content.id;
        Arc::from(pagination::encode_content_cursor(match last.rank {
            Some(rank) => After::Rank(rank, id),
            None => After::Time(last.content.created_at, id),
        }))
    });
    let items: Vec<ContentWithUser> = rows.into_iter().map(with_user).collect();
    Ok(CachedPage {
        body: Arc::new(ListingBody::from_json(serialise(&items)?)),
        next_cursor,
    })
}

/// `POST /post-content`: as the caller, or (admins only) as another user.
pub async fn create(
    ctx: &AppContext,
    caller: Principal,
    input: NewContent,
) -> Result<Content, AppError> {
    caller.require_scope(Scope::ContentWrite)?;
    let owner = match input.user_id {
        None => caller.user_id,
        Some(id) if caller.may_act_for(id) => id,
        Some(_) => return Err(AppError::forbidden()),
    };
    let row = NewContentRow {
        title: input.title,
        content: input.content,
        image: input.image,
        user_id: owner,
    };
    let created = match db::interact(&ctx.pool, move |conn| db::contents::insert(conn, &row)).await
    {
        Err(DbError::ForeignKeyViolation(_)) => return Err(AppError::user_not_found(owner)),
        other => other?,
    };
    ctx.cache.invalidate(&[]).await;
    Ok(created.into())
}

/// Checks that the item exists and that the caller may change it.
fn authorise(
    conn: &mut diesel::PgConnection,
    caller: Principal,
    id: i64,
) -> Result<Result<(), AppError>, DbError> {
    Ok(match db::contents::owner_of(conn, id)? {
        None => Err(AppError::content_not_found(id)),
        Some(owner) if caller.may_act_for(owner) => Ok(()),
        Some(_) => Err(AppError::forbidden()),
    })
}

pub async fn update(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    changes: ContentChanges,
) -> Result<Content, AppError> {
    caller.require_scope(Scope::ContentWrite)?;
    let updated =
        db::interact(&ctx.pool, move |conn| {
            if let Err(denied) = authorise(conn, caller, id)? {
                return Ok(Err(denied));
            }
            Ok(db::contents::update(conn, id, &changes)?
                .ok_or_else(|| AppError::content_not_found(id)))
        })
        .await??;
    ctx.cache.invalidate(&[id]).await;
    Ok(updated.into())
}

pub async fn delete(ctx: &AppContext, caller: Principal, id: i64) -> Result<(), AppError> {
    caller.require_scope(Scope::ContentWrite)?;
    db::interact(&ctx.pool, move |conn| {
        if let Err(denied) = authorise(conn, caller, id)? {
            return Ok(Err(denied));
        }
        Ok(if db::contents::delete(conn, id)? {
            Ok(())
        } else {
            Err(AppError::content_not_found(id))
        })
    })
    .await??;
    ctx.cache.invalidate(&[id]).await;
    Ok(())
}
