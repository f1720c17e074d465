use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Float4, Nullable, Text, Timestamptz};

use super::models::{
    AuthorColumns, AuthorRow, ContentRow, ContentState, ListingRow, NewContentRow, RevisionRow,
};
use super::schema::{content_revisions, content_slugs, contents, users};
use super::DbError;

/// The one status every reader may see.
pub const PUBLISHED: &str = "published";
pub const SCHEDULED: &str = "scheduled";

/// Unique constraint on the current slug.
pub const SLUG_UNIQUE: &str = "contents_slug_key";

/// The indexed search vector (see the `contents_search_idx` migration):
/// queries must repeat this exact expression to use the GIN index.
const SEARCH_VECTOR: &str = "(setweight(to_tsvector('english', c.title), 'A') || \
                             setweight(to_tsvector('english', c.content), 'B'))";

/// Every column of `ContentRow`, from `contents c`, for raw queries.
pub const CONTENT_COLUMNS: &str = "c.id, c.title, c.content, c.image, c.user_id, c.created_at, \
                               c.updated_at, c.status, c.publish_at, c.published_at, c.slug, \
                               c.tags, c.version, c.updated_by";

/// An id for an item about to be inserted (its slug is claimed first).
pub fn next_id(conn: &mut PgConnection) -> Result<i64, DbError> {
    diesel::define_sql_function!(fn nextval(sequence: Text) -> BigInt);
    Ok(diesel::select(nextval("contents_id_seq")).get_result(conn)?)
}

/// Claims `slug` for item `id`: `true` if it was free or already one of
/// this item's. Waits for a concurrent claimer of the same slug to finish.
pub fn claim_slug(conn: &mut PgConnection, slug: &str, id: i64) -> Result<bool, DbError> {
    let claimed: Option<String> = diesel::sql_query(
        "INSERT INTO content_slugs (slug, content_id) VALUES ($1, $2) \
         ON CONFLICT (slug) DO UPDATE SET content_id = EXCLUDED.content_id \
         WHERE content_slugs.content_id = EXCLUDED.content_id \
         RETURNING slug",
    )
    .bind::<Text, _>(slug)
    .bind::<BigInt, _>(id)
    .get_result::<SlugRow>(conn)
    .optional()?
    .map(|row| row.slug);
    Ok(claimed.is_some())
}

#[derive(QueryableByName)]
struct SlugRow {
    #[diesel(sql_type = Text)]
    slug: String,
}

/// Claims `base` for item `id`, else `{base}-{n}` with the next number
/// (`claim_generated_slug` in the migrations); returns the slug claimed.
/// The number's row lock lasts until the commit.
pub fn claim_generated_slug(
    conn: &mut PgConnection,
    base: &str,
    id: i64,
) -> Result<String, DbError> {
    diesel::define_sql_function!(fn claim_generated_slug(base: Text, id: BigInt) -> Text);
    Ok(diesel::select(claim_generated_slug(base, id)).get_result(conn)?)
}

/// A new item, as `create_content` (see the migrations) takes it.
pub struct NewItem<'a> {
    pub title: &'a str,
    pub content: &'a str,
    pub image: Option<&'a str>,
    pub user_id: i64,
    pub status: &'a str,
    pub publish_at: Option<DateTime<Utc>>,
    /// The slug asked for, or the base of the one to generate.
    pub slug: &'a str,
    pub slug_generated: bool,
    pub tags: &'a [String],
    pub updated_by: i64,
    /// Records the invalidation of every listing in the outbox.
    pub invalidates: bool,
}

/// A created or changed item with its author, and its outbox record's id.
#[derive(QueryableByName)]
pub struct WrittenRow {
    #[diesel(embed)]
    pub content: ContentRow,
    #[diesel(embed)]
    pub author: AuthorColumns,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub outbox_id: Option<i64>,
}

impl WrittenRow {
    pub fn author(&self) -> AuthorRow {
        self.author.of(&self.content)
    }
}

/// Creates an item in one statement, its own transaction: the slug claim,
/// the row, the outbox record and the author for the answer. `None`: the
/// slug asked for is taken.
pub fn create(conn: &mut PgConnection, item: &NewItem<'_>) -> Result<Option<WrittenRow>, DbError> {
    Ok(Create(item).load::<WrittenRow>(conn)?.pop())
}

/// The statement of `create`, kept prepared (a `sql_query` is parsed and
/// planned on every call).
struct Create<'a>(&'a NewItem<'a>);

/// `Create`'s statement cache key: its text never changes.
pub struct CreateStatement;

impl QueryId for Create<'_> {
    type QueryId = CreateStatement;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for Create<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for Create<'_> {}

impl QueryFragment<Pg> for Create<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let item = self.0;
        out.push_sql("SELECT * FROM create_content(");
        out.push_bind_param::<Text, _>(&item.title)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&item.content)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&item.image)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&item.user_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&item.status)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&item.publish_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&item.slug)?;
        out.push_sql(", ");
        out.push_bind_param::<diesel::sql_types::Bool, _>(&item.slug_generated)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&item.tags)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&item.updated_by)?;
        out.push_sql(", ");
        out.push_bind_param::<diesel::sql_types::Bool, _>(&item.invalidates)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The next version of an item, as `write_content_version` (see the
/// migrations) takes it.
pub struct NextVersion<'a> {
    pub id: i64,
    /// The version the state was built from.
    pub expected: i64,
    pub state: &'a ContentState,
    pub editor: i64,
    pub revisions_kept: i64,
    /// Records the invalidation of the item and every listing.
    pub invalidates: bool,
}

/// Writes the next version in one statement, its own transaction (slug
/// claim, revision, row, outbox record, author for the answer). `None`:
/// the item changed or went since version `expected` was read (nothing
/// was written; read it again). A slug another item had is a
/// `UniqueViolation` on `SLUG_UNIQUE`.
pub fn write_next_version(
    conn: &mut PgConnection,
    next: &NextVersion<'_>,
) -> Result<Option<WrittenRow>, DbError> {
    match WriteVersion(next).load::<WrittenRow>(conn) {
        Ok(mut rows) => Ok(rows.pop()),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::SerializationFailure,
            _,
        )) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

struct WriteVersion<'a>(&'a NextVersion<'a>);

/// `WriteVersion`'s statement cache key: its text never changes.
pub struct WriteVersionStatement;

impl QueryId for WriteVersion<'_> {
    type QueryId = WriteVersionStatement;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for WriteVersion<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for WriteVersion<'_> {}

impl QueryFragment<Pg> for WriteVersion<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let next = self.0;
        let state = next.state;
        out.push_sql("SELECT * FROM write_content_version(");
        out.push_bind_param::<BigInt, _>(&next.id)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&next.expected)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&state.title)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&state.content)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&state.image)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&state.status)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&state.publish_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&state.slug)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&state.tags)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&next.editor)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&next.revisions_kept)?;
        out.push_sql(", ");
        out.push_bind_param::<diesel::sql_types::Bool, _>(&next.invalidates)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The item a slug belongs to: `None` if the slug was never claimed or its
/// item is deleted.
pub fn slug_owner(conn: &mut PgConnection, slug: &str) -> Result<Option<i64>, DbError> {
    Ok(content_slugs::table
        .filter(content_slugs::slug.eq(slug))
        .select(content_slugs::content_id)
        .first::<Option<i64>>(conn)
        .optional()?
        .flatten())
}

/// A published item is published at its creation (`published_at` is set
/// by the `contents_fill_defaults` trigger).
pub fn insert(conn: &mut PgConnection, row: &NewContentRow) -> Result<ContentRow, DbError> {
    Ok(diesel::insert_into(contents::table)
        .values(row)
        .returning(ContentRow::as_returning())
        .get_result(conn)?)
}

pub fn find_with_author(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<(ContentRow, AuthorRow)>, DbError> {
    Ok(contents::table
        .inner_join(users::table)
        .filter(contents::id.eq(id))
        .select((ContentRow::as_select(), AuthorRow::as_select()))
        .first(conn)
        .optional()?)
}

/// The item, locked until the transaction ends, with its author (not
/// locked: writers of one author's items must not queue on the author).
pub fn lock_with_author(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<(ContentRow, AuthorRow)>, DbError> {
    let Some(row) = contents::table
        .find(id)
        .select(ContentRow::as_select())
        .for_update()
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let author = users::table
        .find(row.user_id)
        .select(AuthorRow::as_select())
        .first(conn)?;
    Ok(Some((row, author)))
}

/// Writes a new version: `state`, one more than the current version, made
/// by `editor`. `published_at` is set the first time the item is public.
pub fn write_version(
    conn: &mut PgConnection,
    id: i64,
    state: &ContentState,
    editor: i64,
) -> Result<ContentRow, DbError> {
    diesel::define_sql_function!(fn coalesce(a: Nullable<Timestamptz>, b: Nullable<Timestamptz>) -> Nullable<Timestamptz>);
    let published_at = coalesce(
        contents::published_at,
        diesel::dsl::sql::<Nullable<Timestamptz>>(if state.status == PUBLISHED {
            "now()"
        } else {
            "NULL"
        }),
    );
    Ok(diesel::update(contents::table.find(id))
        .set((
            state,
            contents::published_at.eq(published_at),
            contents::version.eq(contents::version + 1),
            contents::updated_by.eq(Some(editor)),
        ))
        .returning(ContentRow::as_returning())
        .get_result(conn)?)
}

/// Keeps `replaced` as a revision, and only the newest `kept` of its item.
pub fn keep_revision(
    conn: &mut PgConnection,
    replaced: &ContentRow,
    kept: i64,
) -> Result<(), DbError> {
    diesel::insert_into(content_revisions::table)
        .values(RevisionRow::of(replaced))
        .execute(conn)?;
    diesel::delete(
        content_revisions::table
            .filter(content_revisions::content_id.eq(replaced.id))
            .filter(content_revisions::version.le(replaced.version - kept)),
    )
    .execute(conn)?;
    Ok(())
}

/// Revisions of item `id`, newest first, before `before_version`.
pub fn revisions(
    conn: &mut PgConnection,
    id: i64,
    before_version: Option<i64>,
    limit: i64,
) -> Result<Vec<RevisionRow>, DbError> {
    let mut query = content_revisions::table
        .filter(content_revisions::content_id.eq(id))
        .select(RevisionRow::as_select())
        .order(content_revisions::version.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before_version {
        query = query.filter(content_revisions::version.lt(before));
    }
    Ok(query.load(conn)?)
}

pub fn revision(
    conn: &mut PgConnection,
    id: i64,
    version: i64,
) -> Result<Option<RevisionRow>, DbError> {
    Ok(content_revisions::table
        .find((id, version))
        .select(RevisionRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn owner_and_status(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<(i64, String)>, DbError> {
    Ok(contents::table
        .find(id)
        .select((contents::user_id, contents::status))
        .first(conn)
        .optional()?)
}

/// `true` when a row was deleted.
pub fn delete(conn: &mut PgConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(contents::table.find(id)).execute(conn)? > 0)
}

pub fn ids_of_user(conn: &mut PgConnection, user_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(contents::table
        .filter(contents::user_id.eq(user_id))
        .select(contents::id)
        .load(conn)?)
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct DueRow {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    due: Option<DateTime<Utc>>,
}

/// Publishes every scheduled item whose time has come, each as a new
/// version (its scheduled state kept as a revision, at most `kept`), and
/// answers their ids and when the next one is due. Rows another instance
/// is publishing are skipped, so each item is published exactly once.
/// The invalidation of what they change is recorded in the same
/// transaction.
/// Items the scheduler published, and the outbox record of their
/// invalidation.
pub struct Published {
    pub record: i64,
    pub items: Vec<i64>,
}

pub fn publish_due(
    conn: &mut PgConnection,
    kept: i64,
) -> Result<(Option<Published>, Option<DateTime<Utc>>), DbError> {
    conn.transaction(|conn| {
        let published: Vec<IdRow> = diesel::sql_query(
            "WITH due AS ( \
                 SELECT * FROM contents WHERE status = 'scheduled' AND publish_at <= now() \
                 ORDER BY publish_at LIMIT 1000 FOR UPDATE SKIP LOCKED \
             ), kept AS ( \
                 INSERT INTO content_revisions (content_id, version, title, content, image, \
                     status, publish_at, slug, tags, changed_at, changed_by) \
                 SELECT id, version, title, content, image, status, publish_at, slug, tags, \
                     updated_at, updated_by FROM due \
             ), pruned AS ( \
                 DELETE FROM content_revisions r USING due \
                 WHERE r.content_id = due.id AND r.version <= due.version - $1 \
             ) \
             UPDATE contents c SET status = 'published', \
                 published_at = coalesce(c.published_at, c.publish_at), \
                 version = c.version + 1, updated_by = NULL \
             FROM due WHERE c.id = due.id RETURNING c.id",
        )
        .bind::<BigInt, _>(kept)
        .load(conn)?;
        let next: DueRow = diesel::sql_query(
            "SELECT min(publish_at) AS due FROM contents WHERE status = 'scheduled'",
        )
        .get_result(conn)?;
        let items: Vec<i64> = published.into_iter().map(|row| row.id).collect();
        let published = match items.is_empty() {
            true => None,
            false => Some(Published {
                record: super::outbox::record(conn, &items)?,
                items,
            }),
        };
        Ok((published, next.due))
    })
}

/// Where a listing page starts: after the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum After {
    /// Listings by time: (created_at or updated_at, id) of the last row.
    Time(DateTime<Utc>, i64),
    /// Searches, best first: (rank, id) of the last row.
    Rank(f32, i64),
}

/// The order of a listing (`sort=`, and rank for a search).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Newest,
    Oldest,
    Updated,
    Rank,
}

/// Which items a listing may show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Published items: what everyone sees.
    #[default]
    Public,
    /// Items of these statuses (`None`: any), of `owner` (`None`: anyone's,
    /// for admins).
    Own {
        status: Option<&'static str>,
        owner: Option<i64>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub visibility: Visibility,
    pub user_id: Option<i64>,
    pub search: Option<String>,
    /// Items carrying every one of these tags.
    pub tags: Vec<String>,
    pub order: Order,
    pub after: Option<After>,
}

/// One keyset page, in the filter's order. Every order continues from the
/// cursor along an index, so a deep page costs what page 1 costs.
pub fn list(
    conn: &mut PgConnection,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<ListingRow>, DbError> {
    Ok(Listing { filter, limit }.load(conn)?)
}

/// The statement of `list`. Its text depends only on the filter's shape
/// (which conditions, which order), never on its values, so Diesel keeps
/// one prepared statement per shape (a `sql_query` would be parsed and
/// planned on every read).
struct Listing<'a> {
    filter: &'a ListFilter,
    limit: i64,
}

impl QueryId for Listing<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for Listing<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for Listing<'_> {}

impl QueryFragment<Pg> for Listing<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let filter = self.filter;
        // The search text, when there is one, is always bound first: `$1`.
        let rank = format!("ts_rank({SEARCH_VECTOR}, websearch_to_tsquery('english', $1))");
        out.push_sql(&format!(
            "SELECT {CONTENT_COLUMNS}, \
             u.name AS author_name, u.country AS author_country, u.state AS author_state, \
             u.created_at AS author_created_at, {} AS rank \
             FROM contents c JOIN users u ON u.id = c.user_id WHERE TRUE",
            if filter.search.is_some() {
                rank.as_str()
            } else {
                "NULL::real"
            }
        ));
        if let Some(search) = &filter.search {
            out.push_sql(&format!(
                " AND {SEARCH_VECTOR} @@ websearch_to_tsquery('english', "
            ));
            out.push_bind_param::<Text, _>(search)?;
            out.push_sql(")");
        }
        match &filter.visibility {
            // A literal, so the partial indexes of published items apply.
            Visibility::Public => out.push_sql(" AND c.status = 'published'"),
            Visibility::Own { status, owner } => {
                if let Some(status) = status {
                    out.push_sql(" AND c.status = ");
                    out.push_bind_param::<Text, _>(status)?;
                }
                if let Some(owner) = owner {
                    out.push_sql(" AND c.user_id = ");
                    out.push_bind_param::<BigInt, _>(owner)?;
                }
            }
        }
        if let Some(user_id) = &filter.user_id {
            out.push_sql(" AND c.user_id = ");
            out.push_bind_param::<BigInt, _>(user_id)?;
        }
        if !filter.tags.is_empty() {
            out.push_sql(" AND c.tags @> ");
            out.push_bind_param::<Array<Text>, _>(&filter.tags)?;
            out.push_sql("::text[]");
        }
        let (time_column, direction) = match filter.order {
            Order::Newest | Order::Rank => ("c.created_at", "DESC"),
            Order::Oldest => ("c.created_at", "ASC"),
            Order::Updated => ("c.updated_at", "DESC"),
        };
        let beyond = if direction == "DESC" { "<" } else { ">" };
        // The cursor: the row after (position, id) in the listing's order.
        if let Some(after) = &filter.after {
            let (position, id) = match after {
                After::Time(_, id) => (format!("{time_column}, c.id) {beyond} ("), id),
                After::Rank(_, id) => (format!("{rank}, c.id) < ("), id),
            };
            out.push_sql(&format!(" AND ({position}"));
            match after {
                After::Time(at, _) => out.push_bind_param::<Timestamptz, _>(at)?,
                After::Rank(last_rank, _) => out.push_bind_param::<Float4, _>(last_rank)?,
            }
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(id)?;
            out.push_sql(")");
        }
        if filter.order == Order::Rank {
            out.push_sql(" ORDER BY rank DESC, c.id DESC");
        } else {
            out.push_sql(&format!(
                " ORDER BY {time_column} {direction}, c.id {direction}"
            ));
        }
        out.push_sql(" LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        Ok(())
    }
}

#[derive(Debug, QueryableByName)]
pub struct TagCount {
    #[diesel(sql_type = Text)]
    pub tag: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// How many public items carry each tag: by count descending, then tag.
pub fn tag_counts(conn: &mut PgConnection) -> Result<Vec<TagCount>, DbError> {
    Ok(diesel::sql_query(
        "SELECT tag, count(*) AS count FROM contents, unnest(tags) AS tag \
         WHERE status = 'published' GROUP BY tag ORDER BY count DESC, tag",
    )
    .load(conn)?)
}
