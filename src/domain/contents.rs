//! Content reads: items, listings and tag counts, and their
//! cache policy (writes are in `editorial`).
//!
//! Reads: look up Redis (the value, or the guard a fill must carry, in one
//! round trip); on a miss, join or start the one load of that key under that
//! guard: read PostgreSQL, serialise once, store guarded. Only public
//! representations are ever stored: an item that is not published is
//! answered from PostgreSQL to its owner or an admin, and does not exist for
//! anyone else.

use std::sync::Arc;

use actix_web::web::Bytes;
use serde_json::{Map, Value};

use super::auth::{Principal, Scope};
use super::pagination::{self, DEFAULT_LIMIT, MAX_LIMIT};
use super::reads::Reader;
use super::rules::{MAX_TAGS, SEARCH_MAX_CHARS};
use super::validation::{digits, Fields, Rule};
use super::views::{ContentWithUser, TagCount};
use super::{content_input, AppContext, AppError};
use crate::cache::{
    keys::DEFAULT_LISTING, CachedPage, Flight, ListingBody, Lookup, Representation, ITEM, LISTING,
};
use crate::db;
use crate::db::contents::{After, ListFilter, Order, Visibility, PUBLISHED};
use crate::db::models::{AuthorRow, ContentRow, ListingRow};

/// `?status=` of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusFilter {
    Published,
    Only(&'static str),
    All,
}

fn parse_status(raw: String) -> Result<StatusFilter, Rule> {
    match raw.as_str() {
        "published" => Ok(StatusFilter::Published),
        "draft" => Ok(StatusFilter::Only("draft")),
        "scheduled" => Ok(StatusFilter::Only("scheduled")),
        "all" => Ok(StatusFilter::All),
        _ => Err(Rule::new(
            "enum",
            "value must be one of published, draft, scheduled, all",
        )),
    }
}

fn parse_sort(raw: String) -> Result<Order, Rule> {
    match raw.as_str() {
        "newest" => Ok(Order::Newest),
        "oldest" => Ok(Order::Oldest),
        "updated" => Ok(Order::Updated),
        _ => Err(Rule::new(
            "enum",
            "value must be one of newest, oldest, updated",
        )),
    }
}

fn sort_name(order: Order) -> &'static str {
    match order {
        Order::Newest => "newest",
        Order::Oldest => "oldest",
        Order::Updated => "updated",
        Order::Rank => "rank",
    }
}

/// `?limit=&cursor=&user_id=&q=&status=&tag=&sort=` of `GET /content`,
/// normalised so that equal queries share one cache key.
#[derive(Debug)]
pub struct ContentListQuery {
    limit: i64,
    user_id: Option<i64>,
    search: Option<String>,
    status: StatusFilter,
    /// Normalised, repeats dropped, sorted.
    tags: Vec<String>,
    order: Order,
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

/// Best match first for a search, else newest first.
fn default_order(searching: bool) -> Order {
    if searching {
        Order::Rank
    } else {
        Order::Newest
    }
}

/// A tag filter: normalised like the tags it is compared with. One with
/// nothing left matches no item.
const MATCHES_NOTHING: &str = "-";

impl ContentListQuery {
    pub fn parse(params: Map<String, Value>) -> Result<Self, AppError> {
        let mut fields = Fields::new(params);
        let limit = fields.optional("limit", |raw| pagination::bounded(&raw, 1, MAX_LIMIT));
        let user_id = fields.optional("user_id", parse_user_id);
        let search = fields.optional("q", parse_search).flatten();
        let status = fields.optional("status", parse_status);
        let sort = fields.optional("sort", parse_sort);
        let raw_tags = fields.repeated("tag");
        let tags = match raw_tags {
            Some(raw) if raw.len() > MAX_TAGS => {
                fields.reject(
                    "tag",
                    Rule::new("length", format!("at most {MAX_TAGS} tags")),
                );
                Vec::new()
            }
            Some(raw) => {
                let mut tags: Vec<String> = raw
                    .iter()
                    .map(|tag| {
                        content_input::normalise_tag(tag)
                            .unwrap_or_else(|| MATCHES_NOTHING.to_owned())
                    })
                    .collect();
                tags.sort();
                tags.dedup();
                tags
            }
            None => Vec::new(),
        };
        let order = sort.unwrap_or(default_order(search.is_some()));
        let cursor = fields.optional("cursor", |raw| {
            let after = pagination::decode_content_cursor(&raw, order == Order::Rank)?;
            Ok((raw, after))
        });
        fields.finish()?;
        Ok(Self {
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            user_id,
            search,
            status: status.unwrap_or(StatusFilter::Published),
            tags,
            order,
            cursor,
        })
    }

    /// Public listings are shared (cached); the others are the caller's.
    pub fn is_public(&self) -> bool {
        self.status == StatusFilter::Published
    }

    /// The query string in a fixed order, with `cursor` replaced.
    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut pairs = vec![("limit", self.limit.to_string())];
        match self.status {
            StatusFilter::Published => {}
            StatusFilter::Only(status) => pairs.push(("status", status.to_owned())),
            StatusFilter::All => pairs.push(("status", "all".to_owned())),
        }
        if let Some(user_id) = self.user_id {
            pairs.push(("user_id", user_id.to_string()));
        }
        for tag in &self.tags {
            pairs.push(("tag", tag.clone()));
        }
        if let Some(search) = &self.search {
            pairs.push(("q", search.clone()));
        }
        if self.order != default_order(self.search.is_some()) {
            pairs.push(("sort", sort_name(self.order).to_owned()));
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
            && self.tags.is_empty()
            && self.order == Order::Newest
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

    fn filter(&self, visibility: Visibility) -> ListFilter {
        ListFilter {
            visibility,
            user_id: self.user_id,
            search: self.search.clone(),
            tags: self.tags.clone(),
            order: self.order,
            after: self.cursor.as_ref().map(|(_, after)| *after),
        }
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

/// An item as a read finds it.
#[derive(Clone)]
pub enum ItemRead {
    /// Published: the same bytes for everyone, cached.
    Public(Representation),
    /// Not published: only its owner and admins may see it; never cached.
    Hidden {
        owner: i64,
        representation: Representation,
    },
}

impl ItemRead {
    /// The representation `viewer` may see, or 404 as if it did not exist.
    pub fn for_viewer(
        self,
        viewer: Option<Principal>,
        id: i64,
    ) -> Result<Representation, AppError> {
        match self {
            ItemRead::Public(representation) => Ok(representation),
            ItemRead::Hidden {
                owner,
                representation,
            } if viewer.is_some_and(|viewer| may_see_unpublished(viewer, owner)) => {
                Ok(representation)
            }
            ItemRead::Hidden { .. } => Err(AppError::content_not_found(id)),
        }
    }
}

/// Owners and admins see unpublished items; a machine token only with
/// `content:read`.
pub fn may_see_unpublished(viewer: Principal, owner: i64) -> bool {
    viewer.may_act_for(owner) && viewer.require_scope(Scope::ContentRead).is_ok()
}

/// The `ContentWithUser` bytes of an item: what a read sends, and what its
/// strong `ETag` is computed from (so writes can compare `If-Match` with it).
pub fn representation(row: ContentRow, author: AuthorRow) -> Result<Representation, AppError> {
    representation_of(&ContentWithUser {
        content: row.into(),
        user: author.into(),
    })
}

pub fn representation_of(view: &ContentWithUser) -> Result<Representation, AppError> {
    serialise(view).map(Representation::new)
}

/// `GET /content/{id}`: from L1 or Redis when cached. Concurrent misses
/// with the same lease share one load.
pub async fn get(ctx: &AppContext, id: i64) -> Result<ItemRead, AppError> {
    ctx.cache.record_read(id);
    match ctx.cache.item_in_l1(id) {
        Some(found) => Ok(ItemRead::Public(found)),
        // Boxed: an L1 hit then never moves the miss path's large future.
        None => Box::pin(get_below_l1(ctx, id)).await,
    }
}

/// Loads item `id` into the caches unless L1 holds it (a warm-up: not
/// counted as a read).
pub async fn warm_item(ctx: &AppContext, id: i64) -> Result<(), AppError> {
    if ctx.cache.item_in_l1(id).is_none() {
        Box::pin(get_below_l1(ctx, id)).await?;
    }
    Ok(())
}

async fn get_below_l1(ctx: &AppContext, id: i64) -> Result<ItemRead, AppError> {
    let guard = match ctx.cache.lookup_item_below_l1(id).await {
        Lookup::Hit(bytes) => return Ok(ItemRead::Public(bytes)),
        Lookup::Miss(guard) => guard,
    };
    let Some(guard) = guard else {
        return read_item(&ctx.pool, id).await;
    };
    let (pool, cache, hooks) = (ctx.pool.clone(), ctx.cache.clone(), ctx.hooks.clone());
    let fill_guard = guard.clone();
    let load = async move {
        let read = read_item(&pool, id).await.map_err(Arc::new)?;
        if let ItemRead::Public(bytes) = &read {
            hooks.before_cache_store(&cache.keys().item(id)).await;
            cache.store_item(&fill_guard, id, bytes).await;
        }
        Ok(read)
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

async fn read_item(pool: &db::DbPool, id: i64) -> Result<ItemRead, AppError> {
    let (content, author) =
        db::interact(pool, move |conn| db::contents::find_with_author(conn, id))
            .await?
            .ok_or_else(|| AppError::content_not_found(id))?;
    let (public, owner) = (content.status == PUBLISHED, content.user_id);
    let representation = representation(content, author)?;
    Ok(if public {
        ItemRead::Public(representation)
    } else {
        ItemRead::Hidden {
            owner,
            representation,
        }
    })
}

/// `GET /content/slug/{slug}`: the item, or where its slug moved.
pub enum SlugRead {
    /// `public: false` for an unpublished item its owner or an admin reads.
    Item {
        representation: Representation,
        public: bool,
    },
    MovedTo(String),
}

pub async fn get_by_slug(
    ctx: &AppContext,
    slug: String,
    viewer: impl AsyncFnOnce() -> Result<Option<Principal>, AppError>,
) -> Result<SlugRead, AppError> {
    let not_found = || AppError::NotFound(format!("Content with slug {slug} not found"));
    let id = match ctx.cache.slug_owner(&slug) {
        Some(id) => id,
        None => {
            let lookup = slug.clone();
            let id = db::interact(&ctx.pool, move |conn| {
                db::contents::slug_owner(conn, &lookup)
            })
            .await?
            .ok_or_else(not_found)?;
            ctx.cache.remember_slug_owner(&slug, id);
            id
        }
    };
    let read = match get(ctx, id).await {
        Err(AppError::NotFound(_)) => return Err(not_found()),
        read => read?,
    };
    let (viewer, public) = match &read {
        ItemRead::Public(_) => (None, true),
        ItemRead::Hidden { .. } => (viewer().await?, false),
    };
    // Checked before redirecting: an unpublished item's slug is not told.
    let representation = read.for_viewer(viewer, id).map_err(|_| not_found())?;
    let current = current_slug(&representation)?;
    Ok(if current == slug {
        SlugRead::Item {
            representation,
            public,
        }
    } else {
        SlugRead::MovedTo(current)
    })
}

/// The `slug` of a `ContentWithUser` body: read from the bytes a read
/// serves, so that a slug read needs nothing but the item.
fn current_slug(representation: &Representation) -> Result<String, AppError> {
    #[derive(serde::Deserialize)]
    struct Slugged {
        slug: String,
    }
    serde_json::from_slice::<Slugged>(&representation.bytes)
        .map(|item| item.slug)
        .map_err(|err| AppError::Internal(err.into()))
}

/// `GET /content`: one page (body bytes and next cursor). Public pages are
/// cached per canonical query (empty ones too), and concurrent misses of
/// one page under the same listing version share one load; the others
/// (`status` other than published) are the caller's, read from PostgreSQL.
pub async fn list(
    ctx: &AppContext,
    query: &ContentListQuery,
    viewer: Option<Principal>,
) -> Result<CachedPage, AppError> {
    if !query.is_public() {
        let viewer = viewer.ok_or_else(|| AppError::Unauthorized("Not authenticated".into()))?;
        let viewer = viewer.require_scope(Scope::ContentRead)?;
        let status = match query.status {
            StatusFilter::Only(status) => Some(status),
            StatusFilter::All | StatusFilter::Published => None,
        };
        let owner = (!viewer.is_admin()).then_some(viewer.user_id);
        let filter = query.filter(Visibility::Own { status, owner });
        return read_page(ctx.reader(), filter, query.limit).await;
    }
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
    let filter = query.filter(Visibility::Public);
    let limit = query.limit;
    cached_listing(ctx, key, move |reader| read_page(reader, filter, limit)).await
}

/// A page in the listings' family: from Redis, or loaded once by `load`
/// and stored under the listing version the lookup read.
async fn cached_listing<F, Fut>(
    ctx: &AppContext,
    key: String,
    load: F,
) -> Result<CachedPage, AppError>
where
    F: FnOnce(Reader) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<CachedPage, AppError>> + Send,
{
    let guard = match ctx.cache.lookup_listing_below_l1(&key).await {
        Lookup::Hit(page) => return Ok(page),
        Lookup::Miss(guard) => guard,
    };
    let Some(guard) = guard else {
        return load(ctx.reader()).await;
    };
    let (reader, cache, hooks) = (
        ctx.reader_for_fill(&guard),
        ctx.cache.clone(),
        ctx.hooks.clone(),
    );
    let (fill_guard, fill_key) = (guard.clone(), key.clone());
    let fill = async move {
        let page = load(reader).await.map_err(Arc::new)?;
        hooks.before_cache_store(&fill_key).await;
        cache.store_listing(&fill_guard, &fill_key, &page).await;
        Ok(page)
    };
    let flight = ctx.listing_flights.join_or_start(key, guard, fill);
    shared_outcome(ctx, LISTING, flight).await
}

/// `GET /tags`: tag counts over public items, cached like a listing.
pub async fn tags(ctx: &AppContext) -> Result<CachedPage, AppError> {
    let key = ctx.cache.keys().tag_counts();
    match ctx.cache.listing_in_l1(&key) {
        Some(found) => Ok(found),
        None => Box::pin(cached_listing(ctx, key, read_tag_counts)).await,
    }
}

async fn read_tag_counts(reader: Reader) -> Result<CachedPage, AppError> {
    let counts = reader.run(db::contents::tag_counts).await?;
    let counts: Vec<TagCount> = counts
        .into_iter()
        .map(|row| TagCount {
            tag: row.tag,
            count: row.count,
        })
        .collect();
    Ok(CachedPage {
        body: Arc::new(ListingBody::from_json(serialise(&counts)?)),
        next_cursor: None,
    })
}

async fn read_page(reader: Reader, filter: ListFilter, limit: i64) -> Result<CachedPage, AppError> {
    let order = filter.order;
    // One extra row tells whether a next page exists.
    let mut rows = reader
        .run(move |conn| db::contents::list(conn, &filter, limit + 1))
        .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = rows.last().filter(|_| has_more).map(|last| {
        let id = last.content.id;
        Arc::from(pagination::encode_content_cursor(
            match (order, last.rank) {
                (Order::Rank, Some(rank)) => After::Rank(rank, id),
                (Order::Updated, _) => After::Time(last.content.updated_at, id),
                _ => After::Time(last.content.created_at, id),
            },
        ))
    });
    let items: Vec<ContentWithUser> = rows.into_iter().map(with_user).collect();
    Ok(CachedPage {
        body: Arc::new(ListingBody::from_json(serialise(&items)?)),
        next_cursor,
    })
}
