//! The Redis cache of content items and listings (one Redis or a Redis
//! Cluster), and the single-flight of concurrent misses.
//!
//! * Values are the exact response bytes; keys come from [`keys::Keys`],
//!   each guard in the hash slot of what it guards.
//! * Listing keys are registered in a tag set when stored, so invalidating
//!   `content_with_user:*` costs the number of listing keys, not a walk of
//!   the keyspace.
//! * Race guards, as narrow as the data: an item miss takes (or learns) the
//!   item's lease and a fill must still find it there; a listing miss reads
//!   the listing version and a fill must still find it unchanged. A write
//!   deletes the leases of its items and replaces the listing version.
//! * Degradation: every call has a short timeout; failures open a circuit
//!   (Redis is skipped, reads go to PostgreSQL); a background probe closes
//!   it once Redis answers again, after flushing the service's keys if an
//!   invalidation was skipped or failed meanwhile, or a cluster's topology
//!   changed.

pub mod body;
pub mod bus;
mod flight;
pub mod keys;
mod l1;
mod redis_store;
mod slugs;

use std::sync::Arc;
use std::time::Duration;

pub use body::{accepts_gzip, Chosen, ListingBody, Representation};
use bus::{Bus, Settled};
pub use flight::{Flight, Flights};
pub use keys::Keys;
pub use l1::Usage;
use l1::{Local, Stamp};
use redis_store::{Invalidation, ItemLookup, ListingLookup, RedisStore, Unavailable};
use slugs::SlugOwners;

use crate::metrics::Metrics;

/// What a fill must carry to prove no invalidation happened since the
/// lookup that missed: the item's lease or the listing version in Redis,
/// and the L1 stamp. Readers that carry the same Redis guard may share one
/// load (the one that started it fills L1 with its own, older, stamp).
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    stamp: Option<Stamp>,
}

impl Guard {
    #[cfg(test)]
    pub(crate) fn for_test(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            stamp: None,
        }
    }
}

impl PartialEq for Guard {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
    }
}

impl Eq for Guard {}

impl std::hash::Hash for Guard {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.token.hash(state);
    }
}

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
    Degraded,
}

#[derive(Clone)]
pub struct Cache {
    keys: Keys,
    ttl_seconds: u64,
    redis: Option<Arc<RedisStore>>,
    local: Option<Arc<Local>>,
    bus: Option<Arc<Bus>>,
    metrics: Arc<Metrics>,
    before_l1_fill: Option<PauseHook>,
    slug_owners: SlugOwners,
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
    /// The L1's bound; 0 turns it off. L1 needs Redis (its leases).
    pub l1_bytes: u64,
    /// HTTP worker threads: each keeps a small front of L1's items.
    pub l1_threads: usize,
    pub before_l1_fill: Option<PauseHook>,
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
    /// Never fails on an unreachable Redis: the circuit starts open and the
    /// background probe closes it once Redis answers; only a malformed URL
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
        let local = (redis.is_some() && settings.l1_bytes > 0)
            .then(|| Local::new(settings.l1_bytes, settings.l1_threads));
        let bus = redis
            .as_ref()
            .map(|redis| Bus::start(redis.clone(), local.clone(), metrics.clone()));
        Ok(Self {
            keys,
            ttl_seconds: settings.ttl_seconds,
            redis,
            local,
            bus,
            metrics,
            before_l1_fill: settings.before_l1_fill,
            slug_owners: SlugOwners::new(),
        })
    }

    /// Gives a reachable Redis up to `limit` to connect before serving.
    /// And for L1 to join, within the same limit.
    pub async fn connect(&self, limit: Duration) {
        let started = std::time::Instant::now();
        if let Some(redis) = &self.redis {
            if !redis.wait_until_available(limit).await {
                tracing::warn!("redis not reachable at startup: serving from PostgreSQL");
                return;
            }
        }
        while self.local.is_some() && !self.l1_serving() && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Leaves the L1 members (at shutdown).
    pub async fn shut_down(&self) {
        if let Some(bus) = &self.bus {
            bus.shut_down().await;
        }
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
            Some(redis) if redis.is_available() => Health::Ok,
            _ => Health::Degraded,
        }
    }

    /// Whether L1 serves now (false without one).
    pub fn l1_serving(&self) -> bool {
        self.bus.as_ref().is_some_and(|bus| bus.serving())
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
            }),
        });
        match self.record(ITEM, found) {
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
            }),
        });
        match self.record(LISTING, found) {
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

    /// Counts a Redis lookup: a value, or the guard of a miss.
    fn record<T>(&self, family: &str, found: Result<Result<T, Guard>, Unavailable>) -> Lookup<T> {
        let (result, lookup) = match found {
            Ok(Ok(value)) => ("hit", Lookup::Hit(value)),
            Ok(Err(guard)) => ("miss", Lookup::Miss(Some(guard))),
            Err(Unavailable::Skipped) => ("skipped", Lookup::Miss(None)),
            Err(Unavailable::Failed) => ("error", Lookup::Miss(None)),
        };
        self.metrics.cache_lookup(family, result);
        lookup
    }

    /// Stores in Redis, guarded; then in L1 if Redis took it.
    pub async fn store_item(&self, guard: &Guard, id: i64, value: &Representation) {
        if let Some(redis) = &self.redis {
            if redis
                .store_item(id, &guard.token, &value.bytes, self.ttl_seconds)
                .await
            {
                self.fill_item(guard.stamp, id, value, self.ttl());
            }
        }
    }

    pub async fn store_listing(&self, guard: &Guard, key: &str, page: &CachedPage) {
        if let Some(redis) = &self.redis {
            if redis
                .store_listing(
                    &guard.token,
                    key,
                    page.body.stored(),
                    page.next_cursor.as_deref(),
                    self.ttl_seconds,
                )
                .await
            {
                self.fill_listing(guard.stamp, key, page, self.ttl());
            }
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds)
    }

    /// Deletes `all_contents`, every listing (replacing the listing
    /// version), and the given items with their leases, in Redis and in
    /// every instance's L1. Call after the database commit; returns once no
    /// instance can serve what was deleted.
    pub async fn invalidate(&self, item_ids: &[i64]) {
        self.invalidate_everywhere(Some(item_ids)).await;
    }

    /// `None`: everything (the admin flush, after Redis was flushed).
    async fn invalidate_everywhere(&self, item_ids: Option<&[i64]>) -> Option<Settled> {
        let (Some(redis), Some(bus)) = (&self.redis, &self.bus) else {
            return None;
        };
        let announcement = bus.announcement(item_ids);
        loop {
            let outcome = redis
                .invalidate(
                    item_ids.unwrap_or_default(),
                    &announcement.channel,
                    &announcement.message,
                )
                .await;
            if let Some(local) = &self.local {
                match item_ids {
                    Some(ids) => local.invalidate(ids),
                    None => local.clear(),
                }
            }
            match outcome {
                Invalidation::Done { elapsed, audience } => {
                    self.metrics.invalidation("done", Some(elapsed));
                    return Some(bus.settle(announcement, audience).await);
                }
                Invalidation::Failed => {
                    self.metrics.invalidation("failed", None);
                    if let Some(settled) = bus.unreachable(&announcement) {
                        return Some(settled);
                    }
                    tokio::time::sleep(Bus::retry_pause()).await;
                }
            }
        }
    }

    /// Empties Redis (the service's keys) and every live instance's L1;
    /// `Err` if Redis could not be flushed.
    pub async fn flush(&self) -> Result<(), anyhow::Error> {
        if let Some(local) = &self.local {
            local.clear();
        }
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        redis.flush().await?;
        match self.invalidate_everywhere(None).await {
            Some(Settled::LeasesLapsed) => {
                Err(anyhow::anyhow!("redis unreachable after the flush"))
            }
            _ => Ok(()),
        }
    }

    pub fn l1_state_details(&self) -> Option<L1State> {
        let (local, bus) = (self.local.as_ref()?, self.bus.as_ref()?);
        let (items, listings) = local.usage();
        Some(L1State {
            instance: bus.instance.clone(),
            serving: local.lease.holds(),
            lease_remaining: local.lease.remaining(),
            items,
            listings,
        })
    }

    /// Instances holding an L1 lease and when it ends (ms since the Unix
    /// epoch, Redis clock); empty if Redis cannot say.
    pub async fn live_instances(&self) -> Vec<(String, i64)> {
        match &self.bus {
            Some(bus) => bus.members().await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Keys and bytes of the whole Redis; `None` without one or while it
    /// does not answer.
    pub async fn redis_usage(&self) -> Option<Usage> {
        let (entries, bytes) = self.redis.as_ref()?.usage().await.ok()?;
        Some(Usage { entries, bytes })
    }

    pub fn redis_configured(&self) -> bool {
        self.redis.is_some()
    }
}
