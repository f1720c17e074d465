//! PostgreSQL: pool, migrations, and the queries the domain needs.
//! Nothing here knows about HTTP or the cache.

pub mod accounts;
pub mod audit;
pub mod contents;
pub mod models;
pub mod outbox;
pub mod replicas;
pub mod schema;
pub mod users;
pub mod webhooks;

use anyhow::Context;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_diesel::postgres::Runtime;
use diesel::connection::{SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::Settings;

pub type DbPool = managed::Pool<Manager>;

/// deadpool-diesel's manager with a checkout check that needs no thread.
/// Its own check (the `Fast` method: is a transaction left broken?) reads
/// the connection through `interact`, a hop to the blocking pool and back on
/// every checkout, before the query's own hop; the same in-memory check is
/// done here in place.
pub struct Manager(deadpool_diesel::postgres::Manager);

impl managed::Manager for Manager {
    type Type = deadpool_diesel::Connection<PgConnection>;
    type Error = deadpool_diesel::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let conn = self.0.create().await?;
        conn.interact(|conn| conn.batch_execute(SESSION_SETTINGS))
            .await
            .map_err(|err| {
                deadpool_diesel::Error::Connection(ConnectionError::BadConnection(err.to_string()))
            })?
            .map_err(deadpool_diesel::Error::Ping)?;
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        // A pooled connection is idle: its lock is free unless poisoned.
        let mut conn = conn
            .try_lock()
            .map_err(|_| RecycleError::message("the connection's lock is poisoned"))?;
        type Transactions = <PgConnection as Connection>::TransactionManager;
        if Transactions::is_broken_transaction_manager(&mut *conn) {
            return Err(RecycleError::Backend(
                deadpool_diesel::Error::BrokenTransactionManger,
            ));
        }
        Ok(())
    }
}

/// Set on every pooled connection.
///
/// * The planner's default cost of a page read at random (4.0, from
///   spinning disks) makes it walk a user's items as a bitmap scan and sort
///   them instead of reading the ordered index it stops on after
///   `contents_limit` rows: 14 % more PostgreSQL CPU per user read,
///   measured. The data this service reads is cached or on SSD, where a
///   random page costs about what a sequential one does.
/// * No JIT: PostgreSQL compiles a statement at every execution whose
///   estimated cost passes `jit_above_cost`, and the estimates of bounded
///   index walks swell without statistics (a young table, autovacuum off):
///   a webhook claim over 5 000 deliveries was estimated at 520 000, past
///   the optimising threshold, and spent 307 ms compiling to run in 1 ms.
///   Every statement here is a bounded walk that JIT cannot shorten.
const SESSION_SETTINGS: &str = "SET random_page_cost = 1.1; SET jit = off";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Serialises migration runs of several instances starting together.
const MIGRATION_LOCK_KEY: i64 = 0x0063_6f6e_7465_6e74;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pool could not hand out a working connection in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Carries the constraint (or unique index) name so callers can map it.
    #[error("unique constraint {0} violated")]
    UniqueViolation(String),
    #[error("foreign key {0} violated")]
    ForeignKeyViolation(String),
    #[error(transparent)]
    Query(DieselError),
    #[error("database task failed: {0}")]
    Task(String),
}

impl From<DieselError> for DbError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                DbError::UniqueViolation(info.constraint_name().unwrap_or_default().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                DbError::ForeignKeyViolation(info.constraint_name().unwrap_or_default().to_owned())
            }
            // A connection lost before the query was sent (the socket
            // already reset) is as unavailable as one lost while waiting
            // for its answer: which of the two a client sees is timing.
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => DbError::Unavailable(info.message().to_owned()),
            DieselError::RollbackErrorOnCommit { commit_error, .. } => DbError::from(*commit_error),
            other => DbError::Query(other),
        }
    }
}

pub fn build_pool(settings: &Settings) -> anyhow::Result<DbPool> {
    build_pool_on(settings, &settings.database_url)
}

/// A pool like the primary's, on another server (a replica).
pub fn build_pool_on(settings: &Settings, url: &str) -> anyhow::Result<DbPool> {
    let manager = Manager(deadpool_diesel::postgres::Manager::new(
        url,
        Runtime::Tokio1,
    ));
    managed::Pool::builder(manager)
        .max_size(settings.db_pool_size)
        .wait_timeout(Some(settings.db_pool_wait_timeout))
        .create_timeout(Some(settings.db_connect_timeout))
        .recycle_timeout(Some(settings.db_connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .context("building the PostgreSQL pool")
}

/// Runs `query` on a pooled connection off the async executor.
pub async fn interact<T, F>(pool: &DbPool, query: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
{
    let conn = pool
        .get()
        .await
        .map_err(|err| DbError::Unavailable(err.to_string()))?;
    conn.interact(query)
        .await
        .map_err(|err| DbError::Task(err.to_string()))?
}

/// Splits a `postgres://…/name?…` URL into the database name and the same
/// URL pointing at the `postgres` maintenance database.
pub fn split_database_url(url: &str) -> anyhow::Result<(String, String)> {
    let scheme_end = url.find("://").context("DATABASE_URL has no scheme")? + 3;
    let (without_query, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let slash = without_query[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .context("DATABASE_URL must name a database")?;
    let name = &without_query[slash + 1..];
    anyhow::ensure!(!name.is_empty(), "DATABASE_URL must name a database");
    let maintenance = format!("{}/postgres{}", &without_query[..slash], query);
    Ok((name.to_owned(), maintenance))
}

/// Creates the database named in `url` if it does not exist yet.
pub fn ensure_database(url: &str) -> anyhow::Result<()> {
    let (name, maintenance_url) = split_database_url(url)?;
    let mut conn = PgConnection::establish(&maintenance_url)
        .context("connecting to the maintenance database `postgres`")?;
    create_database(&mut conn, &name, None)
}

/// `CREATE DATABASE name [TEMPLATE template]`, tolerating a concurrent creator.
pub fn create_database(
    conn: &mut PgConnection,
    name: &str,
    template: Option<&str>,
) -> anyhow::Result<()> {
    let exists = diesel::select(diesel::dsl::exists(
        pg_database::table.filter(pg_database::datname.eq(name)),
    ))
    .get_result::<bool>(conn)?;
    if exists {
        return Ok(());
    }
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(template) = template {
        sql.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
    }
    match diesel::sql_query(sql).execute(conn) {
        Ok(_) => Ok(()),
        Err(DieselError::DatabaseError(_, info)) if info.message().contains("already exists") => {
            Ok(())
        }
        Err(err) => Err(err).with_context(|| format!("creating database {name}")),
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies pending embedded migrations, one instance at a time.
pub fn run_migrations(url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::establish(url).context("connecting to run migrations")?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn)?;
    let outcome = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|applied| applied.len())
        .map_err(|err| anyhow::anyhow!("running migrations: {err}"));
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn)?;
    let applied = outcome?;
    tracing::info!(applied, "migrations up to date");
    Ok(())
}

diesel::table! {
    pg_database (datname) {
        datname -> Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_unavailable_however_it_was_noticed() {
        let lost = |kind| {
            DieselError::DatabaseError(kind, Box::new("server closed the connection".to_owned()))
        };
        for kind in [
            DatabaseErrorKind::ClosedConnection,
            DatabaseErrorKind::UnableToSendCommand,
        ] {
            assert!(matches!(DbError::from(lost(kind)), DbError::Unavailable(_)));
        }
        let failed_commit = DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(lost(DatabaseErrorKind::UnableToSendCommand)),
            commit_error: Box::new(lost(DatabaseErrorKind::ClosedConnection)),
        };
        assert!(matches!(
            DbError::from(failed_commit),
            DbError::Unavailable(_)
        ));
        assert!(matches!(
            DbError::from(DieselError::NotFound),
            DbError::Query(DieselError::NotFound)
        ));
    }

    #[test]
    fn splits_database_urls() {
        assert_eq!(
            split_database_url("postgres://u:p@h:5432/app?sslmode=disable").unwrap(),
            (
                "app".to_owned(),
                "postgres://u:p@h:5432/postgres?sslmode=disable".to_owned()
            )
        );
        assert!(split_database_url("postgres://h:5432").is_err());
        assert!(split_database_url("postgres://h:5432/").is_err());
    }
}
