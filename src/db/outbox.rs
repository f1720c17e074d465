//! The invalidation outbox, written inside each write's transaction (see
//! `cache::outbox`, which completes and deletes its records).

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt};

use super::DbError;

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Records that the write in progress invalidates every listing and
/// `items`; returns the record's id. Committed or rolled back with the
/// write.
pub fn record(conn: &mut PgConnection, items: &[i64]) -> Result<i64, DbError> {
    let recorded: Recorded =
        diesel::sql_query("INSERT INTO cache_outbox (items) VALUES ($1) RETURNING id")
            .bind::<Array<BigInt>, _>(items)
            .get_result(conn)?;
    Ok(recorded.id)
}
