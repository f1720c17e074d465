//! The content cache: an in-process L1 on every instance, kept coherent
//! through PostgreSQL, in front of Redis (one server or a Redis Cluster),
//! and the single-flight of concurrent misses.
//!
//! * Values are the exact response bytes; keys come from [`keys::Keys`],
//!   each guard in the hash slot of what it guards.
//! * L1 (`l1.rs`) serves while this instance holds its lease; the lease,
//!   the announcements of writes and their acknowledgements go through
//!   PostgreSQL (`coherence.rs`), so L1 keeps serving whatever Redis does.
//! * Redis (`redis/`) holds the shared copies (L2) and their fill
//!   guards: an item miss takes (or learns) the item's lease and a fill
//!   must still find it there; a listing miss reads the listing version and
//!   a fill must still find it unchanged.
//! * A write records its invalidation in its own transaction (`outbox.rs`),
//!   then deletes in Redis, announces, waits for the acknowledgements and
//!   answers. A delete that fails makes every instance distrust Redis (no
//!   fill from it, no serving its copies) until it has been flushed.

mod announcement;
pub mod body;
pub mod coherence;
mod flight;
mod hot;
pub mod keys;
mod l1;
pub mod outbox;
mod redis;
mod session;
mod slugs;

use std::sync::Arc;
use std::time::Duration;

use announcement::Announced;
pub use body::{accepts_gzip, Chosen, ListingBody, Representation};
use coherence::{Coherence, Settled};
pub use flight::{Flight, Flights, Guard};
use hot::HotItems;
pub use keys::Keys;
pub use l1::Usage;
use l1::{Local, Stamp};
use outbox::Recorded;
use redis::{ItemLookup, ListingLookup, RedisStore, Unavailable};
use slugs::SlugOwners;
use tokio::sync::Notify;

use crate::metrics::Metrics;

pub enum Lookup<T> {
    Hit(T),
    /// Missed; `Some` when the value may be stored afterwards.
    Miss(Option<Guard>),
}

/// A cached listing page: the body and its next-page cursor, if any.
#[derive(Clone)]
pub struct CachedPage {
    pub body: Arc<ListingBody>,
    pub next_cursor: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Configured, but failing (or not yet flushed after failing).
    Degraded,
    /// `REDIS_URL` is unset.
    Off,
}

impl Health {
    /// As `/health/ready` and the admin view name it.
    pub fn name(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Off => "off",
        }
    }
}

#[derive(Clone)]
pub struct Cache {
    keys: Keys,
    ttl_seconds: u64,
    redis: Option<Arc<RedisStore>>,
    local: Option<Arc<Local>>,
    coherence: Arc<Coherence>,
    metrics: Arc<Metrics>,
    before_l1_fill: Option<PauseHook>,
    slug_owners: SlugOwners,
    /// Completed outbox records, deleted in batches (`outbox.rs`).
    completed: tokio::sync::mpsc::UnboundedSender<i64>,
    hot: Arc<HotItems>,
    /// Told when this instance's caches were emptied (`domain::warming`).
    warm: Arc<Notify>,
}

/// A pause point: called with a cache key, it may hold the request (a test
/// seam; production leaves it empty).
pub type PauseHook = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

/// Key families, as metrics label them.
pub const ITEM: &str = "item";
pub const LISTING: &str = "listing";

pub struct CacheSettings<'a> {
    pub redis_url: Option<&'a str>,
    /// `redis_url` lists a Redis Cluster's seed nodes, comma-separated.
    pub redis_cluster: bool,
    pub key_prefix: &'a str,
    pub ttl_seconds: u64,
    pub timeout: Duration,
    /// The coherence channel's session (`DATABASE_LISTEN_URL`).
    pub listen_url: &'a str,
    /// The L1's bound; 0 turns it off.
    pub l1_bytes: u64,
    /// HTTP worker threads: each keeps a small front of L1's items.
    pub l1_threads: usize,
    pub before_l1_fill: Option<PauseHook>,
    /// Read replicas are in use: writes announce their commit positions.
    pub tracks_positions: bool,
}

/// This instance's L1, for the admin view.
pub struct L1State {
    pub instance: String,
    pub serving: bool,
    pub lease_remaining: Duration,
    pub items: Usage,
    pub listings: Usage,
}

impl Cache {
    /// Never fails on an unreachable Redis or PostgreSQL: the circuit
    /// starts open and the background probe closes it once Redis answers,
    /// and L1 joins once the coherence channel is up; only a malformed URL
    /// is an error.
    pub fn new(settings: CacheSettings<'_>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let keys = Keys::new(settings.key_prefix);
        let redis = settings
            .redis_url
            .map(|url| {
                RedisStore::new(url, settings.redis_cluster, settings.timeout, keys.clone())
                    .map(Arc::new)
            })
            .transpose()?;
        let local =
            (settings.l1_bytes > 0).then(|| Local::new(settings.l1_bytes, settings.l1_threads));
        let distrusted = redis.clone();
        let warm = Arc::new(Notify::new());
        let coherence = Coherence::start(
            settings.listen_url.to_owned(),
            local.clone(),
            Arc::new(move || {
                if let Some(redis) = &distrusted {
                    redis.distrust("another instance could not delete in it");
                }
            }),
            metrics.clone(),
            settings.tracks_positions,
            warm.clone(),
        );
        if let Some(redis) = &redis {
            redis.share_mark(coherence.clone());
        }
        let (completed, to_forget) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(outbox::forget_completed(coherence.clone(), to_forget));
        let cache = Self {
            keys,
            ttl_seconds: settings.ttl_seconds,
            redis,
            local,
            coherence,
            metrics,
            before_l1_fill: settings.before_l1_fill,
            slug_owners: SlugOwners::new(),
            completed,
            hot: Arc::new(HotItems::new()),
            warm,
        };
        tokio::spawn(outbox::sweep(cache.clone()));
        Ok(cache)
    }

    /// Gives a reachable Redis, the coherence channel and L1 its lease up
    /// to `limit` before serving.
    pub async fn connect(&self, limit: Duration) {
        let started = std::time::Instant::now();
        if let Some(redis) = &self.redis {
            if !redis.wait_until_available(limit).await {
                tracing::warn!("redis not reachable at startup: serving from PostgreSQL and L1");
            }
        }
        // A write announced before the listening session is up could hear
        // no acknowledgement (and would revoke every member).
        let ready =
            || self.coherence.client().is_some() && (self.local.is_none() || self.l1_serving());
        while !ready() && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Leaves the L1 members (at shutdown).
    pub async fn shut_down(&self) {
        self.coherence.shut_down().await;
    }

    /// `off`, `serving`, or `joining` (no lease: L1 is bypassed).
    pub fn l1_state(&self) -> &'static str {
        match (&self.local, self.l1_serving()) {
            (None, _) => "off",
            (Some(_), true) => "serving",
            (Some(_), false) => "joining",
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn health(&self) -> Health {
        match &self.redis {
            None => Health::Off,
            Some(redis) if redis.is_available() => Health::Ok,
            Some(_) => Health::Degraded,
        }
    }

    /// Whether L1 serves now (false without one).
    pub fn l1_serving(&self) -> bool {
        self.coherence.serving()
    }

    /// An L1 lookup, counted; `None` without L1 or on a miss.
    fn lookup_l1<T>(&self, family: &str, lookup: impl FnOnce(&Local) -> Option<T>) -> Option<T> {
        let local = self.local.as_ref()?;
        let found = lookup(local);
        self.metrics.l1_lookup(family, found.is_some());
        found
    }

    fn stamp(&self) -> Option<Stamp> {
        self.local.as_ref().and_then(|local| local.stamp())
    }

    /// A read of item `id`, for the warm-ups (sampled, in memory).
    pub fn record_read(&self, id: i64) {
        self.hot.record(id);
    }

    /// The `n` items read most over about the last hour.
    pub fn hottest(&self, n: usize) -> Vec<i64> {
        self.hot.hottest(n)
    }

    /// Returns when this instance's caches were emptied: it joined (L1
    /// cleared), Redis was flushed on recovery, or a flush was announced.
    pub async fn warming_wanted(&self) {
        match &self.redis {
            Some(redis) => tokio::select! {
                _ = self.warm.notified() => {}
                _ = redis.recovered() => {}
            },
            None => self.warm.notified().await,
        }
    }

    /// The item `slug` belongs to, if this instance has read it before.
    pub fn slug_owner(&self, slug: &str) -> Option<i64> {
        self.slug_owners.get(slug)
    }

    /// Remembers the owner of a slug, as read from PostgreSQL.
    pub fn remember_slug_owner(&self, slug: &str, id: i64) {
        self.slug_owners.remember(slug, id);
    }

    /// An item from this instance's L1 (counted), without awaiting anything.
    pub fn item_in_l1(&self, id: i64) -> Option<Representation> {
        self.lookup_l1(ITEM, |local| local.item(id))
    }

    /// An item from Redis (after `item_in_l1` missed), copied into L1 on a hit.
    pub async fn lookup_item_below_l1(&self, id: i64) -> Lookup<Representation> {
        let stamp = self.stamp();
        let found = match &self.redis {
            Some(redis) => redis.lookup_item(id).await,
            None => Err(Unavailable::Skipped),
        };
        let found = found.map(|lookup| match lookup {
            ItemLookup::Hit(bytes, ttl) => Ok((Representation::new(bytes), ttl)),
            ItemLookup::Miss { lease } => Err(Guard {
                token: lease,
                stamp,
                in_redis: true,
            }),
        });
        match self.record(ITEM, found, stamp) {
            Lookup::Hit((found, ttl)) => {
                self.pause_before_l1_fill(|| self.keys.item(id)).await;
                self.fill_item(stamp, id, &found, ttl);
                Lookup::Hit(found)
            }
            Lookup::Miss(guard) => Lookup::Miss(guard),
        }
    }

    /// A listing page from this instance's L1 (counted).
    pub fn listing_in_l1(&self, key: &str) -> Option<CachedPage> {
        self.lookup_l1(LISTING, |local| local.listing(key))
    }

    /// A listing page from Redis (after `listing_in_l1` missed), copied into L1 on a hit.
    pub async fn lookup_listing_below_l1(&self, key: &str) -> Lookup<CachedPage> {
        let stamp = self.stamp();
        let found = match &self.redis {
            Some(redis) => redis.lookup_listing(key).await,
            None => Err(Unavailable::Skipped),
        };
        let found = found.map(|lookup| match lookup {
            ListingLookup::Hit(stored, next_cursor, ttl) => Ok((
                CachedPage {
                    body: Arc::new(ListingBody::from_stored(stored)),
                    next_cursor: next_cursor.map(Arc::from),
                },
                ttl,
            )),
            ListingLookup::Miss { version } => Err(Guard {
                token: version,
                stamp,
                in_redis: true,
            }),
        });
        match self.record(LISTING, found, stamp) {
            Lookup::Hit((page, ttl)) => {
                self.pause_before_l1_fill(|| key.to_owned()).await;
                self.fill_listing(stamp, key, &page, ttl);
                Lookup::Hit(page)
            }
            Lookup::Miss(guard) => Lookup::Miss(guard),
        }
    }

    async fn pause_before_l1_fill(&self, key: impl FnOnce() -> String) {
        if let Some(hook) = &self.before_l1_fill {
            hook(key()).await;
        }
    }

    fn fill_item(&self, stamp: Option<Stamp>, id: i64, value: &Representation, ttl: Duration) {
        if let (Some(local), Some(stamp)) = (&self.local, stamp) {
            local.fill_item(stamp, id, value.clone(), ttl);
        }
    }

    fn fill_listing(&self, stamp: Option<Stamp>, key: &str, page: &CachedPage, ttl: Duration) {
        if let (Some(local), Some(stamp)) = (&self.local, stamp) {
            local.fill_listing(stamp, key, page.clone(), ttl);
        }
    }

    /// Counts a Redis lookup: a value, or the guard of a miss (an L1-only
    /// one when Redis was not read).
    fn record<T>(
        &self,
        family: &str,
        found: Result<Result<T, Guard>, Unavailable>,
        stamp: Option<Stamp>,
    ) -> Lookup<T> {
        let (result, lookup) = match found {
            Ok(Ok(value)) => ("hit", Lookup::Hit(value)),
            Ok(Err(guard)) => ("miss", Lookup::Miss(Some(guard))),
            Err(Unavailable::Skipped) => ("skipped", Lookup::Miss(Guard::l1_only(stamp))),
            Err(Unavailable::Failed) => ("error", Lookup::Miss(Guard::l1_only(stamp))),
        };
        if self.redis.is_some() {
            self.metrics.cache_lookup(family, result);
        }
        lookup
    }

    /// Stores in Redis, guarded, then in L1 if Redis took it; with an
    /// L1-only guard, in L1 alone.
    pub async fn store_item(&self, guard: &Guard, id: i64, value: &Representation) {
        let stored = match (&self.redis, guard.in_redis) {
            (Some(redis), true) => {
                redis
                    .store_item(id, &guard.token, &value.bytes, self.ttl_seconds)
                    .await
            }
            _ => true,
        };
        if stored {
            self.fill_item(guard.stamp, id, value, self.ttl());
        }
    }

    pub async fn store_listing(&self, guard: &Guard, key: &str, page: &CachedPage) {
        let stored = match (&self.redis, guard.in_redis) {
            (Some(redis), true) => {
                redis
                    .store_listing(
                        &guard.token,
                        key,
                        page.body.stored(),
                        page.next_cursor.as_deref(),
                        self.ttl_seconds,
                    )
                    .await
            }
            _ => true,
        };
        if stored {
            self.fill_listing(guard.stamp, key, page, self.ttl());
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds)
    }

    /// Completes a committed write's outbox record: deletes `all_contents`,
    /// every listing (replacing the listing version) and the record's items
    /// with their leases in Redis and in every instance's L1, then forgets
    /// the record. Returns once no instance can serve what was deleted.
    pub async fn complete(&self, recorded: Recorded) {
        self.invalidate_everywhere(Some(&recorded.items), false)
            .await;
        self.forget(recorded.id);
    }

    /// A completed outbox record, to delete with the next batch.
    fn forget(&self, id: i64) {
        let _ = self.completed.send(id);
    }

    /// `None`: everything (the admin flush, after Redis was flushed).
    /// `redis_failed`: Redis already missed a delete (a failed flush).
    pub(crate) async fn invalidate_everywhere(
        &self,
        item_ids: Option<&[i64]>,
        redis_failed: bool,
    ) -> Settled {
        let started = std::time::Instant::now();
        // Before the Redis deletes: the listing version they set carries it,
        // so a fill that saw that version reads no replica behind the write.
        let position = self.coherence.commit_position().await;
        let redis_distrusted = redis_failed
            || match (&self.redis, item_ids) {
                (Some(redis), Some(ids)) => !redis.invalidate(ids, position).await,
                _ => false,
            };
        if redis_failed {
            if let Some(redis) = &self.redis {
                redis.distrust("the flush failed");
            }
        }
        if let Some(local) = &self.local {
            match item_ids {
                Some(ids) => local.invalidate(ids),
                None => local.clear(),
            }
        }
        if item_ids.is_none() {
            self.warm.notify_one();
        }
        let settled = self
            .coherence
            .announce(&Announced {
                items: item_ids.map(<[i64]>::to_vec),
                invalidates: true,
                redis_distrusted,
                position,
            })
            .await;
        let outcome = if redis_distrusted { "failed" } else { "done" };
        self.metrics.invalidation(outcome, Some(started.elapsed()));
        settled
    }

    /// With read replicas, announces a committed write no cache holds (a
    /// signup), so that no instance reads it from a replica behind it;
    /// returns once every live instance knows.
    pub async fn announce_commit(&self) {
        let position = self.coherence.commit_position().await;
        if position == 0 {
            return;
        }
        self.coherence
            .announce(&Announced {
                items: Some(Vec::new()),
                invalidates: false,
                redis_distrusted: false,
                position,
            })
            .await;
    }

    /// The newest commit position a read on this instance must not be
    /// behind, at least `guard`'s (a listing fill that saw a version set by
    /// a write reads nothing older than that write).
    pub fn read_floor(&self, guard: Option<&Guard>) -> u64 {
        let seen = guard
            .filter(|guard| guard.in_redis)
            .and_then(|guard| guard.token.rsplit_once('@'))
            .and_then(|(_, position)| position.parse().ok())
            .unwrap_or(0);
        self.coherence.floor().max(seen)
    }

    /// Empties Redis (the service's keys) and every live instance's L1;
    /// `Err` if Redis could not be flushed.
    pub async fn flush(&self) -> Result<(), anyhow::Error> {
        let flushed = match &self.redis {
            Some(redis) => redis.flush().await,
            None => Ok(()),
        };
        self.invalidate_everywhere(None, flushed.is_err()).await;
        Ok(flushed?)
    }

    pub fn l1_state_details(&self) -> Option<L1State> {
        let local = self.local.as_ref()?;
        let (items, listings) = local.usage();
        Some(L1State {
            instance: self.coherence.instance.clone(),
            serving: local.lease.holds(),
            lease_remaining: local.lease.remaining(),
            items,
            listings,
        })
    }

    /// Instances holding an L1 lease and when it ends (ms since the Unix
    /// epoch, PostgreSQL's clock); empty if PostgreSQL cannot say.
    pub async fn live_instances(&self) -> Vec<(String, i64)> {
        self.coherence.members().await.unwrap_or_default()
    }

    /// Keys and bytes of the whole Redis; `None` without one or while it
    /// does not answer.
    pub async fn redis_usage(&self) -> Option<Usage> {
        let (entries, bytes) = self.redis.as_ref()?.usage().await.ok()?;
        Some(Usage { entries, bytes })
    }
}
