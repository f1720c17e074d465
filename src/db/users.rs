use diesel::prelude::*;

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

/// A user and their newest `limit` items in one round trip: the user left
/// joined to the (user_id, created_at, id) index walk. A static query, so
/// the connection prepares it once and reuses it.
pub fn find_with_newest_contents(
    conn: &mut PgConnection,
    id: i64,
    limit: i64,
) -> Result<Option<(UserRow, Vec<ContentRow>)>, DbError> {
    let rows: Vec<(UserRow, Option<ContentRow>)> = users::table
        .left_join(contents::table)
        .filter(users::id.eq(id))
        .order((contents::created_at.desc(), contents::id.desc()))
        .limit(limit.max(1))
        .select((UserRow::as_select(), Option::<ContentRow>::as_select()))
        .load(conn)?;
    let mut rows = rows.into_iter();
    let Some((user, first)) = rows.next() else {
        return Ok(None);
    };
    let items = first
        .into_iter()
        .chain(rows.filter_map(|(_, item)| item))
        .take(limit as usize)
        .collect();
    Ok(Some((user, items)))
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

/// One keyset page ordered by id.
pub fn page_after(
    conn: &mut PgConnection,
    after_id: Option<i64>,
    limit: i64,
) -> Result<Vec<UserRow>, DbError> {
    let mut query = users::table
        .select(UserRow::as_select())
        .order(users::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after_id) = after_id {
        query = query.filter(users::id.gt(after_id));
    }
    Ok(query.load(conn)?)
}

/// Applies the changes; `None` when the user does not exist.
pub fn update(
    conn: &mut PgConnection,
    id: i64,
    changes: &UserChanges,
) -> Result<Option<UserRow>, DbError> {
    if changes.is_empty() {
        return find(conn, id);
    }
    Ok(diesel::update(users::table.find(id))
        .set(changes)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()?)
}
