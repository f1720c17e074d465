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

/// A user and their newest `limit` public items: the user by primary key,
/// then a walk of the (user_id, created_at, id) index that stops after
/// `limit` items (a join would read and sort every item of the user).
pub fn find_with_newest_contents(
    conn: &mut PgConnection,
    id: i64,
    limit: i64,
) -> Result<Option<(UserRow, Vec<ContentRow>)>, DbError> {
    let Some(user) = find(conn, id)? else {
        return Ok(None);
    };
    let items = super::contents::newest_for_users(conn, &[id], limit)?;
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

/// Deletes the user and (by cascade) their items, sessions, tokens and
/// resets, refusing to remove the last admin. Call inside a transaction.
pub fn delete(conn: &mut PgConnection, id: i64) -> Result<Deletion, DbError> {
    if is_last_admin(conn, id)? {
        return Ok(Deletion::LastAdmin);
    }
    let content_ids = contents::table
        .filter(contents::user_id.eq(id))
        .select(contents::id)
        .load(conn)?;
    let deleted = diesel::delete(users::table.find(id)).execute(conn)?;
    Ok(if deleted == 0 {
        Deletion::NotFound
    } else {
        Deletion::Deleted { content_ids }
    })
}
