use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};

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
#[derive(Debug, Clone, Copy)]
pub enum UserSelection {
    One(i64),
    /// Ordered by id, after `after` (0: from the start), at most `limit`.
    Page {
        after: i64,
        limit: i64,
    },
}

/// A user's columns, named apart from the item's in one joined row.
#[derive(QueryableByName)]
struct UserColumns {
    #[diesel(sql_type = BigInt)]
    u_id: i64,
    #[diesel(sql_type = Text)]
    u_name: String,
    #[diesel(sql_type = Text)]
    u_email: String,
    #[diesel(sql_type = Text)]
    u_phone_number: String,
    #[diesel(sql_type = Text)]
    u_country: String,
    #[diesel(sql_type = Text)]
    u_state: String,
    #[diesel(sql_type = Text)]
    u_role: String,
    #[diesel(sql_type = Text)]
    u_password_hash: String,
    #[diesel(sql_type = Timestamptz)]
    u_created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    u_updated_at: DateTime<Utc>,
}

impl From<UserColumns> for UserRow {
    fn from(user: UserColumns) -> Self {
        UserRow {
            id: user.u_id,
            name: user.u_name,
            email: user.u_email,
            phone_number: user.u_phone_number,
            country: user.u_country,
            state: user.u_state,
            role: user.u_role,
            password_hash: user.u_password_hash,
            created_at: user.u_created_at,
            updated_at: user.u_updated_at,
        }
    }
}

/// One user and one of their items (none: no items, or none asked for).
#[derive(QueryableByName)]
struct UserAndItem {
    #[diesel(embed)]
    user: UserColumns,
    #[diesel(embed)]
    item: Option<ContentRow>,
}

/// The statement of `with_newest_contents`: the users in a CTE, each
/// joined to a LATERAL walk of the (user_id, created_at, id) index that
/// stops after `per_user` items (a plain join would read and sort every
/// item). Its text is fixed per selection, so unlike `sql_query` (which
/// Diesel never keeps prepared) it is parsed and planned once per
/// connection: a query fragment with a static id.
#[derive(Debug, Clone, Copy)]
struct NewestContents {
    selection: UserSelection,
    per_user: i64,
}

impl diesel::query_builder::QueryId for NewestContents {
    type QueryId = Self;
    // Two texts (one user, a page): told apart by the prepared-statement
    // cache's SQL key, not the type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for NewestContents {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for NewestContents {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("WITH u AS (SELECT * FROM users WHERE ");
        match &self.selection {
            UserSelection::One(id) => {
                out.push_sql("id = ");
                out.push_bind_param::<BigInt, _>(id)?;
            }
            UserSelection::Page { after, limit } => {
                out.push_sql("id > ");
                out.push_bind_param::<BigInt, _>(after)?;
                out.push_sql(" ORDER BY id LIMIT ");
                out.push_bind_param::<BigInt, _>(limit)?;
            }
        }
        out.push_sql(&format!(
            ") SELECT u.id AS u_id, u.name AS u_name, u.email AS u_email, \
                u.phone_number AS u_phone_number, u.country AS u_country, u.state AS u_state, \
                u.role AS u_role, u.password_hash AS u_password_hash, \
                u.created_at AS u_created_at, u.updated_at AS u_updated_at, {CONTENT_COLUMNS} \
             FROM u LEFT JOIN LATERAL ( \
                 SELECT * FROM contents WHERE contents.user_id = u.id \
                     AND contents.status = 'published' \
                 ORDER BY created_at DESC, id DESC LIMIT "
        ));
        out.push_bind_param::<BigInt, _>(&self.per_user)?;
        out.push_sql(") AS c ON true ORDER BY u.id, c.created_at DESC, c.id DESC");
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for NewestContents {}

/// Users and the newest `per_user` public items of each, in one statement:
/// the users by primary key (or a keyset page of them) and their items.
pub fn with_newest_contents(
    conn: &mut PgConnection,
    selection: UserSelection,
    per_user: i64,
) -> Result<Vec<(UserRow, Vec<ContentRow>)>, DbError> {
    let rows: Vec<UserAndItem> = NewestContents {
        selection,
        per_user,
    }
    .load(conn)?;
    let mut out: Vec<(UserRow, Vec<ContentRow>)> = Vec::new();
    for UserAndItem { user, item } in rows {
        if out.last().is_none_or(|(last, _)| last.id != user.u_id) {
            out.push((user.into(), Vec::new()));
        }
        if let (Some(item), Some((_, items))) = (item, out.last_mut()) {
            items.push(item);
        }
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
