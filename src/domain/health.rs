//! `/health/ready`: PostgreSQL must answer; Redis only degrades (or is off).

use diesel::RunQueryDsl;

use super::views::Readiness;
use super::{AppContext, AppError};
use crate::db;

pub async fn readiness(ctx: &AppContext) -> Result<Readiness, AppError> {
    db::interact(&ctx.pool, |conn| {
        Ok(diesel::sql_query("SELECT 1").execute(conn)?)
    })
    .await?;
    Ok(Readiness {
        status: "ok",
        database: "ok",
        cache: ctx.cache.health().name(),
        l1: ctx.cache.l1_state(),
    })
}
