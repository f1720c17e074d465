use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Float4, Text, Timestamptz};

use super::models::{AuthorRow, ContentChanges, ContentRow, ListingRow, NewContentRow};
use super::schema::{contents, users};
use super::DbError;

/// The indexed search vector (see the `contents_search_idx` migration):
/// queries must repeat this exact expression to use the GIN index.
const SEARCH_VECTOR: &str = "(setweight(to_tsvector('english', c.title), 'A') || \
                             setweight(to_tsvector('english', c.content), 'B'))";

/// The newest `per_user` items of each of `user_ids`, in one query: a
/// LATERAL walk of the (user_id, created_at, id) index per user, so a page
/// of users never costs one query per user.
pub fn newest_for_users(
    conn: &mut PgConnection,
    user_ids: &[i64],
    per_user: i64,
) -> Result<Vec<ContentRow>, DbError> {
    if user_ids.is_empty() || per_user == 0 {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(
        "SELECT c.id, c.title, c.content, c.image, c.user_id, c.created_at, c.updated_at \
         FROM unnest($1::bigint[]) AS u(id) \
         CROSS JOIN LATERAL ( \
             SELECT * FROM contents WHERE contents.user_id = u.id \
             ORDER BY created_at DESC, id DESC LIMIT $2 \
         ) AS c \
         ORDER BY c.user_id, c.created_at DESC, c.id DESC",
    )
    .bind::<Array<BigInt>, _>(user_ids)
    .bind::<BigInt, _>(per_user)
    .load(conn)?)
}

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

pub fn owner_of(conn: &mut PgConnection, id: i64) -> Result<Option<i64>, DbError> {
    Ok(contents::table
        .find(id)
        .select(contents::user_id)
        .first(conn)
        .optional()?)
}

pub fn update(
    conn: &mut PgConnection,
    id: i64,
    changes: &ContentChanges,
) -> Result<Option<ContentRow>, DbError> {
    let query = contents::table.find(id);
    if changes.is_empty() {
        return Ok(query
            .select(ContentRow::as_select())
            .first(conn)
            .optional()?);
    }
    Ok(diesel::update(query)
        .set(changes)
        .returning(ContentRow::as_returning())
        .get_result(conn)
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

/// Where a listing page starts: after the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum After {
    /// Newest-first listings: (created_at, id) of the last row.
    Time(DateTime<Utc>, i64),
    /// Searches, best first: (rank, id) of the last row.
    Rank(f32, i64),
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub user_id: Option<i64>,
    pub search: Option<String>,
    pub after: Option<After>,
}

/// One keyset page: newest first, or by rank for a search. Both orders
/// continue from the cursor, so a deep page costs what page 1 costs.
pub fn list(
    conn: &mut PgConnection,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<ListingRow>, DbError> {
    // The search text, when there is one, is always bound first: `$1`.
    let rank = format!("ts_rank({SEARCH_VECTOR}, websearch_to_tsquery('english', $1))");
    let mut query = diesel::sql_query(format!(
        "SELECT c.id, c.title, c.content, c.image, c.user_id, c.created_at, c.updated_at, \
         u.name AS author_name, u.country AS author_country, u.state AS author_state, \
         u.created_at AS author_created_at, {} AS rank \
         FROM contents c JOIN users u ON u.id = c.user_id WHERE TRUE",
        if filter.search.is_some() {
            rank.as_str()
        } else {
            "NULL::real"
        }
    ))
    .into_boxed();
    let mut count = 0;
    let mut placeholder = || {
        count += 1;
        format!("${count}")
    };
    if let Some(search) = &filter.search {
        query = query
            .sql(format!(
                " AND {SEARCH_VECTOR} @@ websearch_to_tsquery('english', {})",
                placeholder()
            ))
            .bind::<Text, _>(search.clone());
    }
    if let Some(user_id) = filter.user_id {
        query = query
            .sql(format!(" AND c.user_id = {}", placeholder()))
            .bind::<BigInt, _>(user_id);
    }
    match filter.after {
        Some(After::Time(at, id)) => {
            query = query
                .sql(format!(
                    " AND (c.created_at, c.id) < ({}, {})",
                    placeholder(),
                    placeholder()
                ))
                .bind::<Timestamptz, _>(at)
                .bind::<BigInt, _>(id);
        }
        Some(After::Rank(last_rank, id)) => {
            query = query
                .sql(format!(
                    " AND ({rank}, c.id) < ({}, {})",
                    placeholder(),
                    placeholder()
                ))
                .bind::<Float4, _>(last_rank)
                .bind::<BigInt, _>(id);
        }
        None => {}
    }
    query = query.sql(if filter.search.is_some() {
        " ORDER BY rank DESC, c.id DESC"
    } else {
        " ORDER BY c.created_at DESC, c.id DESC"
    });
    Ok(query
        .sql(format!(" LIMIT {}", placeholder()))
        .bind::<BigInt, _>(limit)
        .load(conn)?)
}
