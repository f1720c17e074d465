//! One transaction per use case that may refuse: a refusal (an
//! `AppError` decided under the transaction's locks) rolls back what the
//! transaction did and is answered; a database failure is an error.

use diesel::{Connection, PgConnection};

use super::{AppContext, AppError};
use crate::db::{self, DbError};

/// A transaction's reasons to roll back: the database failed, or a rule
/// refused the write.
pub enum Abort {
    Db(DbError),
    Refused(AppError),
}

impl From<diesel::result::Error> for Abort {
    fn from(err: diesel::result::Error) -> Self {
        Abort::Db(err.into())
    }
}

impl From<DbError> for Abort {
    fn from(err: DbError) -> Self {
        Abort::Db(err)
    }
}

impl From<AppError> for Abort {
    fn from(err: AppError) -> Self {
        Abort::Refused(err)
    }
}

/// Runs `change` in one transaction; a refusal rolls it back.
pub async fn in_transaction<T: Send + 'static>(
    ctx: &AppContext,
    change: impl FnOnce(&mut PgConnection) -> Result<T, Abort> + Send + 'static,
) -> Result<T, AppError> {
    db::interact(&ctx.pool, move |conn| match conn.transaction(change) {
        Ok(done) => Ok(Ok(done)),
        Err(Abort::Refused(refusal)) => Ok(Err(refusal)),
        Err(Abort::Db(err)) => Err(err),
    })
    .await?
}
