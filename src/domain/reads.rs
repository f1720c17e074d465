//! Where a read that may go to a replica goes (contract §14).
//!
//! A replica serves a read only if (1) this instance is a live member of
//! the coherence channel, so it has heard of every answered write (each was
//! announced to it, with its commit position, before being answered), and
//! (2) the replica has replayed past the newest of those positions and past
//! the one the read's cache guard carries. Otherwise, or if the replica
//! fails, the primary serves it: a replica never causes a stale read or a
//! 5xx, only a miss of the chance to offload the primary.

use std::sync::Arc;
use std::time::Duration;

use diesel::PgConnection;

use super::AppContext;
use crate::cache::{Cache, Guard};
use crate::db::replicas::Replicas;
use crate::db::{self, DbError, DbPool};
use crate::metrics::Metrics;

/// How long a read may take on a replica before the primary is asked
/// instead (a replica that froze mid-read).
const REPLICA_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs reads on a replica when one may serve them, else on the primary.
#[derive(Clone)]
pub struct Reader {
    primary: DbPool,
    replicas: Option<Arc<Replicas>>,
    cache: Cache,
    metrics: Arc<Metrics>,
    /// A position the read must not be behind, besides this instance's floor.
    at_least: u64,
}

impl AppContext {
    /// Reads that may go to a replica (user reads, public listings,
    /// searches, tags, revisions).
    pub fn reader(&self) -> Reader {
        Reader::new(&self.pool, &self.replicas, &self.cache, &self.metrics)
    }

    /// A cache fill under `guard`: its replica must also have replayed the
    /// write that set the version the guard carries.
    pub fn reader_for_fill(&self, guard: &Guard) -> Reader {
        Reader {
            at_least: self.cache.read_floor(Some(guard)),
            ..self.reader()
        }
    }
}

impl Reader {
    pub fn new(
        primary: &DbPool,
        replicas: &Option<Arc<Replicas>>,
        cache: &Cache,
        metrics: &Arc<Metrics>,
    ) -> Self {
        Self {
            primary: primary.clone(),
            replicas: replicas.clone(),
            cache: cache.clone(),
            metrics: metrics.clone(),
            at_least: 0,
        }
    }

    pub async fn run<T, F>(&self, query: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Clone + Send + 'static,
    {
        if let Some(replicas) = &self.replicas {
            // A member that lost its lease may have missed announcements.
            if self.cache.l1_serving() {
                let floor = self.cache.read_floor(None).max(self.at_least);
                if let Some(replica) = replicas.pick(floor) {
                    let read = db::interact(&replica.pool, query.clone());
                    match tokio::time::timeout(REPLICA_READ_TIMEOUT, read).await {
                        Ok(Ok(found)) => {
                            self.metrics.db_read("replica");
                            return Ok(found);
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "replica read failed: reading the primary");
                            replica.failed();
                        }
                        Err(_) => {
                            tracing::debug!("replica read timed out: reading the primary");
                            replica.failed();
                        }
                    }
                }
            }
            self.metrics.db_read("primary");
        }
        db::interact(&self.primary, query).await
    }
}
