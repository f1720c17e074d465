//! Streaming replicas (`DATABASE_REPLICA_URLS`): where each one has
//! replayed to and whether it is close enough to serve, tracked in the
//! background so that no request asks a replica how far it is.
//!
//! Every `TRACK_EVERY` one task samples the primary's WAL insert position
//! and each replica's replay position. A replica is usable while it answers
//! and its lag stays within `REPLICA_MAX_LAG_MS`; the lag is how long ago
//! the primary first held WAL the replica has not replayed yet. Which
//! replica may serve a given read is the caller's rule (`pick`, with the
//! newest commit position the read must not be behind).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::{build_pool_on, DbPool};
use crate::config::Settings;
use crate::metrics::Metrics;

/// How often positions are sampled.
const TRACK_EVERY: Duration = Duration::from_millis(20);
/// Bound on connecting to, and on each sample of, the primary or a replica.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);

/// A WAL position as a byte offset (`pg_lsn - '0/0'`).
const INSERT_POSITION: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8";
const REPLAY_POSITION: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8";

pub struct Replica {
    pub pool: DbPool,
    /// Its place in `DATABASE_REPLICA_URLS`, as metrics label it.
    pub index: usize,
    url: String,
    replayed: AtomicU64,
    usable: AtomicBool,
}

impl Replica {
    /// A read on it failed: skipped until the tracker hears from it again.
    pub fn failed(&self) {
        if self.usable.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                replica = self.index,
                "replica read failed: skipped until it answers"
            );
        }
    }

    pub fn usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Acquire)
    }
}

pub struct Replicas {
    members: Vec<Arc<Replica>>,
    next: AtomicUsize,
}

impl Replicas {
    /// `None` without `DATABASE_REPLICA_URLS`. Starts the tracker; every
    /// replica starts unusable until its first sample.
    pub fn start(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Option<Arc<Self>>> {
        if settings.database_replica_urls.is_empty() {
            return Ok(None);
        }
        let members = settings
            .database_replica_urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                Ok(Arc::new(Replica {
                    pool: build_pool_on(settings, url)?,
                    index,
                    url: url.clone(),
                    replayed: AtomicU64::new(0),
                    usable: AtomicBool::new(false),
                }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let replicas = Arc::new(Self {
            members,
            next: AtomicUsize::new(0),
        });
        tokio::spawn(track(
            replicas.clone(),
            settings.database_url.clone(),
            settings.replica_max_lag,
            metrics,
        ));
        Ok(Some(replicas))
    }

    /// A usable replica that has replayed at least `position`, taken in
    /// turn; `None`: read the primary.
    pub fn pick(&self, position: u64) -> Option<&Arc<Replica>> {
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.members[(start + offset) % count])
            .find(|replica| replica.usable() && replica.replayed() >= position)
    }

    pub fn members(&self) -> &[Arc<Replica>] {
        &self.members
    }
}

/// The primary's insert positions over the last `window`, oldest first.
struct Samples {
    taken: VecDeque<(Instant, u64)>,
    window: Duration,
}

impl Samples {
    fn push(&mut self, at: Instant, position: u64) {
        self.taken.push_back((at, position));
        while self
            .taken
            .front()
            .is_some_and(|(taken, _)| at.duration_since(*taken) > self.window)
        {
            self.taken.pop_front();
        }
    }

    /// How long ago the primary first held WAL beyond `replayed`, within
    /// the window (the whole window when it always did).
    fn lag(&self, now: Instant, replayed: u64) -> Duration {
        self.taken
            .iter()
            .find(|(_, position)| *position > replayed)
            .map_or(Duration::ZERO, |(taken, _)| now.duration_since(*taken))
    }
}

async fn connect(url: &str) -> Option<Client> {
    let (client, connection) =
        tokio::time::timeout(SAMPLE_TIMEOUT, tokio_postgres::connect(url, NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(client)
}

/// One position, or `None` (no answer in time, or not a replica).
async fn sample(client: &Client, query: &str) -> Option<u64> {
    let row = tokio::time::timeout(SAMPLE_TIMEOUT, client.query_one(query, &[]))
        .await
        .ok()?
        .ok()?;
    row.get::<_, Option<i64>>(0).map(|position| position as u64)
}

async fn track(
    replicas: Arc<Replicas>,
    primary_url: String,
    max_lag: Duration,
    metrics: Arc<Metrics>,
) {
    let mut primary: Option<Client> = None;
    let mut sessions: Vec<Option<Client>> = replicas.members.iter().map(|_| None).collect();
    let mut samples = Samples {
        taken: VecDeque::new(),
        window: max_lag * 2,
    };
    let mut ticks = tokio::time::interval(TRACK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if primary.as_ref().is_none_or(Client::is_closed) {
            primary = connect(&primary_url).await;
        }
        // The replicas are sampled after the primary: a replica at or past
        // this position has no lag.
        if let Some(position) = match &primary {
            Some(client) => sample(client, INSERT_POSITION).await,
            None => None,
        } {
            samples.push(Instant::now(), position);
        }
        let replayed =
            futures_util::future::join_all(replicas.members.iter().zip(sessions.iter_mut()).map(
                |(replica, session)| async move {
                    if session.as_ref().is_none_or(Client::is_closed) {
                        *session = connect(&replica.url).await;
                    }
                    match session.as_ref() {
                        Some(client) => sample(client, REPLAY_POSITION).await,
                        None => None,
                    }
                },
            ))
            .await;
        let now = Instant::now();
        for (replica, replayed) in replicas.members.iter().zip(replayed) {
            let usable = match replayed {
                Some(position) => {
                    replica.replayed.fetch_max(position, Ordering::AcqRel);
                    samples.lag(now, position) <= max_lag
                }
                None => false,
            };
            if replica.usable.swap(usable, Ordering::AcqRel) != usable {
                if usable {
                    tracing::info!(replica = replica.index, "replica usable");
                } else {
                    tracing::warn!(
                        replica = replica.index,
                        answered = replayed.is_some(),
                        "replica skipped: not answering or lagging past REPLICA_MAX_LAG_MS"
                    );
                }
            }
            metrics.replica_usable(replica.index, usable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_how_long_the_primary_has_been_ahead() {
        let start = Instant::now();
        let mut samples = Samples {
            taken: VecDeque::new(),
            window: Duration::from_secs(2),
        };
        for (ms, position) in [(0, 100), (100, 100), (200, 150), (300, 200)] {
            samples.push(start + Duration::from_millis(ms), position);
        }
        let now = start + Duration::from_millis(300);
        assert_eq!(samples.lag(now, 200), Duration::ZERO);
        assert_eq!(samples.lag(now, 150), Duration::from_millis(0));
        assert_eq!(samples.lag(now, 120), Duration::from_millis(100));
        assert_eq!(samples.lag(now, 50), Duration::from_millis(300));
    }
}
