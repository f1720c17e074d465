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

mod flight;
pub mod keys;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;

pub use flight::{Flight, Flights};
pub use keys::Keys;
use redis_store::{Invalidation, ItemLookup, ListingLookup, RedisStore, Unavailable};

use crate::metrics::Metrics;

/// What a fill must carry to prove no invalidation happened since the
/// lookup that missed: the item's lease or the listing version. Readers
/// that carry the same guard may share one load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Guard(String);

pub enum Lookup<T> {
    Hit(T),
    /// Missed; `Some` when the value may be stored afterwards.
    Miss(Option<Guard>),
}

/// A cached listing page: the body and its next-page cursor, if any.
#[derive(Clone)]
pub struct CachedPage {
    pub body: Bytes,
    pub next_cursor: Option<String>,
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
    metrics: Arc<Metrics>,
}

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
        Ok(Self {
            keys,
            ttl_seconds: settings.ttl_seconds,
            redis,
            metrics,
        })
    }

    /// Gives a reachable Redis up to `limit` to connect before serving.
    pub async fn connect(&self, limit: Duration) {
        if let Some(redis) = &self.redis {
            if !redis.wait_until_available(limit).await {
                tracing::warn!("redis not reachable at startup: serving from PostgreSQL");
            }
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

    pub async fn lookup_item(&self, id: i64) -> Lookup<Bytes> {
        let found = match &self.redis {
            Some(redis) => redis.lookup_item(id).await,
            None => Err(Unavailable::Skipped),
        };
        self.record(
            ITEM,
            found.map(|lookup| match lookup {
                ItemLookup::Hit(value) => Lookup::Hit(value),
                ItemLookup::Miss { lease } => Lookup::Miss(Some(Guard(lease))),
            }),
        )
    }

    pub async fn lookup_listing(&self, key: &str) -> Lookup<CachedPage> {
        let found = match &self.redis {
            Some(redis) => redis.lookup_listing(key).await,
            None => Err(Unavailable::Skipped),
        };
        self.record(
            LISTING,
            found.map(|lookup| match lookup {
                ListingLookup::Hit(body, next_cursor) => {
                    Lookup::Hit(CachedPage { body, next_cursor })
                }
                ListingLookup::Miss { version } => Lookup::Miss(Some(Guard(version))),
            }),
        )
    }

    fn record<T>(&self, family: &str, found: Result<Lookup<T>, Unavailable>) -> Lookup<T> {
        let (result, lookup) = match found {
            Ok(Lookup::Hit(value)) => ("hit", Lookup::Hit(value)),
            Ok(miss) => ("miss", miss),
            Err(Unavailable::Skipped) => ("skipped", Lookup::Miss(None)),
            Err(Unavailable::Failed) => ("error", Lookup::Miss(None)),
        };
        self.metrics.cache_lookup(family, result);
        lookup
    }

    pub async fn store_item(&self, guard: &Guard, id: i64, value: &Bytes) {
        if let Some(redis) = &self.redis {
            redis
                .store_item(id, &guard.0, value, self.ttl_seconds)
                .await;
        }
    }

    pub async fn store_listing(&self, guard: &Guard, key: &str, page: &CachedPage) {
        if let Some(redis) = &self.redis {
            redis
                .store_listing(
                    &guard.0,
                    key,
                    &page.body,
                    page.next_cursor.as_deref(),
                    self.ttl_seconds,
                )
                .await;
        }
    }

    /// Deletes `all_contents`, every listing (replacing the listing
    /// version), and the given items with their leases. Call after the
    /// database commit, before answering.
    pub async fn invalidate(&self, item_ids: &[i64]) {
        let Some(redis) = &self.redis else {
            return;
        };
        match redis.invalidate(item_ids).await {
            Invalidation::Done(elapsed) => self.metrics.invalidation("done", Some(elapsed)),
            Invalidation::Skipped => self.metrics.invalidation("skipped", None),
            Invalidation::Failed => self.metrics.invalidation("failed", None),
        }
    }
}
