//! What a write invalidates in the caches: recorded inside its transaction
//! (so no commit can lose it) and completed after the commit, before the
//! answer.

use diesel::PgConnection;

use super::AppContext;
use crate::cache::outbox::Recorded;
use crate::db::{self, DbError};

/// Inside the write's transaction: every listing and `items` will be
/// invalidated, whatever happens to this instance after the commit.
pub fn record(conn: &mut PgConnection, items: Vec<i64>) -> Result<Recorded, DbError> {
    Ok(Recorded {
        id: db::outbox::record(conn, &items)?,
        items,
    })
}

/// After the commit: Redis, then every instance's L1; returns once no
/// instance can serve what the write replaced.
pub async fn complete(ctx: &AppContext, recorded: Recorded) {
    ctx.hooks.after_commit(recorded.id).await;
    ctx.cache.complete(recorded).await;
}
