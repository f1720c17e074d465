use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable};

use super::contents::CONTENT_COLUMNS;
use super::models::{ContentRow, NewUserRow, UserChanges, UserRow};
use super::schema::{contents, users};
use super::DbError;

/// Unique index on `lower(email)`.
pub const EMAIL_UNIQUE: &str = "users_email_lower_key";
/// Unique constraint on the E.164 phone number.
pub const PHONE_UNIQUE: &str = "users_phone_number_key";

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

pub fn insert(conn: &mut PgConnection, new_user: &NewUserRow) -> Result<UserRow, DbError> {
    Ok(diesel::insert_into(users::table)
        .values(new_user)
        .returning(UserRow::as_returning())
        .get_result(conn)?)
}

/// Which users a read wants with their newest items.
#[derive(Debug, Clone)]
pub enum UserSelection {
    /// These ids (the reads of several requests share one statement).
    Some(Vec<i64>),
    /// Ordered by id, after `after` (0: from the start), at most `limit`.
    Page { after: i64, limit: i64 },
}

/// The statement of `with_newest_contents`: the users in a CTE, then a
/// row per user (its columns, no item) and a row per item (the user's id
/// and the item's columns) from a LATERAL walk of the (user_id,
/// created_at, id) index that stops after `per_user` items (a plain join
/// would read and sort every item). A user's columns come once, not on
/// each of their items' rows, and the rows are put in order here rather
/// than sorted by PostgreSQL. Its text is fixed per selection, so unlike
/// `sql_query` (which Diesel never keeps prepared) it is parsed and planned
/// once per connection.
#[derive(Debug, Clone)]
struct NewestContents {
    selection: UserSelection,
    per_user: i64,
}

impl diesel::query_builder::QueryId for NewestContents {
    type QueryId = Self;
    // Two texts (some users by id, a page): told apart by the prepared-statement
    // cache's SQL key, not the type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for NewestContents {
    /// The user's id, then either the user or one of their items.
    type SqlType = (
        BigInt,
        Nullable<users::SqlType>,
        Nullable<contents::SqlType>,
    );
}

/// The user columns, in `UserRow`'s order.
const USER_COLUMNS: &str = "u.id, u.name, u.email, u.phone_number, u.country, u.state, u.role, \
                            u.password_hash, u.created_at, u.updated_at";
/// `USER_COLUMNS`' types, on an item's row.
const NO_USER: &str = "NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::TEXT, \
                       NULL::TEXT, NULL::TEXT, NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ";
/// `CONTENT_COLUMNS`' types, on a user's row.
const NO_CONTENT: &str = "NULL::BIGINT, NULL::content_title, NULL::content_body, \
                          NULL::content_image, NULL::BIGINT, NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ, \
                          NULL::content_status, NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ, \
                          NULL::content_slug, NULL::content_tags, NULL::BIGINT, NULL::BIGINT";

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for NewestContents {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("WITH u AS (SELECT * FROM users WHERE ");
        match &self.selection {
            UserSelection::Some(ids) => {
                out.push_sql("id = ANY(");
                out.push_bind_param::<Array<BigInt>, _>(ids)?;
                out.push_sql(")");
            }
            UserSelection::Page { after, limit } => {
                out.push_sql("id > ");
                out.push_bind_param::<BigInt, _>(after)?;
                out.push_sql(" ORDER BY id LIMIT ");
                out.push_bind_param::<BigInt, _>(limit)?;
            }
        }
        out.push_sql(&format!(
            ") SELECT u.id, {USER_COLUMNS}, {NO_CONTENT} FROM u \
             UNION ALL \
             SELECT u.id, {NO_USER}, {CONTENT_COLUMNS} FROM u CROSS JOIN LATERAL ( \
                 SELECT * FROM contents WHERE contents.user_id = u.id \
                     AND contents.status = 'published' \
                 ORDER BY created_at DESC, id DESC LIMIT "
        ));
        out.push_bind_param::<BigInt, _>(&self.per_user)?;
        out.push_sql(") AS c");
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for NewestContents {}

/// Users and the newest `per_user` public items of each, in one statement:
/// the users by primary key (or a keyset page of them) and their items,
/// in the order of their ids.
pub fn with_newest_contents(
    conn: &mut PgConnection,
    selection: UserSelection,
    per_user: i64,
) -> Result<Vec<(UserRow, Vec<ContentRow>)>, DbError> {
    let rows: Vec<(i64, Option<UserRow>, Option<ContentRow>)> = NewestContents {
        selection,
        per_user,
    }
    .load(conn)?;
    let mut out: Vec<(UserRow, Vec<ContentRow>)> = Vec::new();
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            (_, Some(user), _) => out.push((user, Vec::new())),
            (user_id, None, Some(item)) => items.push((user_id, item)),
            (_, None, None) => {}
        }
    }
    out.sort_unstable_by_key(|(user, _)| user.id);
    for (user_id, item) in items {
        if let Ok(at) = out.binary_search_by_key(&user_id, |(user, _)| user.id) {
            out[at].1.push(item);
        }
    }
    for (_, items) in &mut out {
        items.sort_by_key(|item| std::cmp::Reverse((item.created_at, item.id)));
    }
    Ok(out)
}

pub fn find(conn: &mut PgConnection, id: i64) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// An address holding U+0000 matches nobody (PostgreSQL text cannot hold
/// one, so no stored email does) and is not sent, since PostgreSQL would
/// refuse the parameter.
pub fn find_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<UserRow>, DbError> {
    if email.contains('\0') {
        return Ok(None);
    }
    Ok(users::table
        .filter(lower(users::email).eq(lower(email)))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// The user, locked until the transaction ends, so that what a write
/// checks stays true until it is written.
pub fn lock(conn: &mut PgConnection, id: i64) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .for_update()
        .first(conn)
        .optional()?)
}

/// Applies the changes to an existing user.
pub fn update(conn: &mut PgConnection, id: i64, changes: &UserChanges) -> Result<UserRow, DbError> {
    Ok(diesel::update(users::table.find(id))
        .set(changes)
        .returning(UserRow::as_returning())
        .get_result(conn)?)
}

pub fn set_password_hash(conn: &mut PgConnection, id: i64, hash: &str) -> Result<(), DbError> {
    diesel::update(users::table.find(id))
        .set(users::password_hash.eq(hash))
        .execute(conn)?;
    Ok(())
}

/// Locks every admin row, in id order (so that two demotions or deletions
/// racing see each other's effect), and answers whether `id` is the only
/// admin left.
fn is_last_admin(conn: &mut PgConnection, id: i64) -> Result<bool, DbError> {
    let admins: Vec<i64> = users::table
        .filter(users::role.eq("admin"))
        .order(users::id.asc())
        .select(users::id)
        .for_update()
        .load(conn)?;
    Ok(admins == [id])
}

pub enum RoleChange {
    /// The user now has the role; `changed` is false when they had it already.
    Done {
        user: Box<UserRow>,
        changed: bool,
    },
    NotFound,
    LastAdmin,
}

/// Sets the role, refusing to demote the last admin. Call inside a
/// transaction.
pub fn set_role(conn: &mut PgConnection, id: i64, role: &str) -> Result<RoleChange, DbError> {
    let last_admin = is_last_admin(conn, id)?;
    let Some(user) = find(conn, id)? else {
        return Ok(RoleChange::NotFound);
    };
    if user.role == role {
        return Ok(RoleChange::Done {
            user: Box::new(user),
            changed: false,
        });
    }
    if last_admin {
        return Ok(RoleChange::LastAdmin);
    }
    let user = diesel::update(users::table.find(id))
        .set(users::role.eq(role))
        .returning(UserRow::as_returning())
        .get_result(conn)?;
    Ok(RoleChange::Done {
        user: Box::new(user),
        changed: true,
    })
}

pub enum Deletion {
    /// Gone, with the ids of the items that went with them.
    Deleted {
        content_ids: Vec<i64>,
    },
    NotFound,
    LastAdmin,
}

/// Deletes the user, their items, and (by cascade) their sessions, tokens
/// and resets, refusing to remove the last admin. Call inside a transaction.
pub fn delete(conn: &mut PgConnection, id: i64) -> Result<Deletion, DbError> {
    if is_last_admin(conn, id)? {
        return Ok(Deletion::LastAdmin);
    }
    // The items go first, in a statement of their own: their webhook
    // events (`content.deleted`) are then recorded before the user's.
    let content_ids = diesel::delete(contents::table.filter(contents::user_id.eq(id)))
        .returning(contents::id)
        .get_results(conn)?;
    let deleted = diesel::delete(users::table.find(id)).execute(conn)?;
    Ok(if deleted == 0 {
        Deletion::NotFound
    } else {
        Deletion::Deleted { content_ids }
    })
}
