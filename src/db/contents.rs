use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt};

use super::models::ContentRow;
use super::DbError;

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
         ) AS c",
    )
    .bind::<Array<BigInt>, _>(user_ids)
    .bind::<BigInt, _>(per_user)
    .load(conn)?)
}
