//! The Redis cache of content items and listings.
//!
//! * Values are the exact response bytes; keys come from [`keys::Keys`].
//! * Listing keys are registered in a tag set when stored, so invalidating
//!   `content_with_user:*` costs the number of listing keys, not a walk of
//!   the keyspace.
//! * Race guard: a lookup returns the current generation; the store script
//!   writes only if the generation is unchanged, and every invalidation
//!   bumps it atomically with its deletes.
//! * Degradation: every call has a short timeout; failures open a circuit
//!   (Redis is skipped, reads go to PostgreSQL); a background probe closes
//!   it once Redis answers again, after flushing the service's keys if an
//!   invalidation was skipped or failed meanwhile.

pub mod keys;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;

pub use keys::Keys;
use redis_store::{Invalidation, RedisStore, Unavailable};

use crate::metrics::Metrics;

/// What a store must carry to prove no invalidation happened since the
/// lookup that missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation(String);

pub enum Lookup<T> {
    Hit(T),
    /// Missed; `Some` when the value may be stored afterwards.
    Miss(Option<Generation>),
}

impl<T> Lookup<T> {
    fn map_hit<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Hit(value) => Lookup::Hit(f(value)),
            Lookup::Miss(generation) => Lookup::Miss(generation),
        }
    }
}

/// A cached listing page: the body and its next-page cursor, if any.
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
const ITEM: &str = "item";
const LISTING: &str = "listing";

pub struct CacheSettings<'a> {
    pub redis_url: Option<&'a str>,
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
            .map(|url| RedisStore::new(url, settings.timeout, keys.clone()).map(Arc::new))
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

    pub async fn lookup_item(&self, key: &str) -> Lookup<Bytes> {
        self.lookup(ITEM, key, None)
            .await
            .map_hit(|(value, _)| value)
    }

    pub async fn lookup_listing(&self, key: &str) -> Lookup<CachedPage> {
        let next_key = self.keys.listing_next(key);
        self.lookup(LISTING, key, Some(&next_key))
            .await
            .map_hit(|(body, next_cursor)| CachedPage { body, next_cursor })
    }

    async fn lookup(
        &self,
        family: &str,
        key: &str,
        companion: Option<&str>,
    ) -> Lookup<(Bytes, Option<String>)> {
        let found = match &self.redis {
            Some(redis) => redis.lookup(key, companion).await,
            None => Err(Unavailable::Skipped),
        };
        let (result, lookup) = match found {
            Ok((Some(value), companion, _)) => ("hit", Lookup::Hit((value, companion))),
            Ok((None, _, generation)) => ("miss", Lookup::Miss(Some(generation))),
            Err(Unavailable::Skipped) => ("skipped", Lookup::Miss(None)),
            Err(Unavailable::Failed) => ("error", Lookup::Miss(None)),
        };
        self.metrics.cache_lookup(family, result);
        lookup
    }

    pub async fn store_item(&self, generation: Generation, key: &str, value: &Bytes) {
        if let Some(redis) = &self.redis {
            redis
                .store(generation, key, value, None, self.ttl_seconds)
                .await;
        }
    }

    pub async fn store_listing(
        &self,
        generation: Generation,
        key: &str,
        value: &Bytes,
        next_cursor: Option<&str>,
    ) {
        if let Some(redis) = &self.redis {
            redis
                .store(generation, key, value, Some(next_cursor), self.ttl_seconds)
                .await;
        }
    }

    /// Deletes `all_contents`, every listing, and the given items; bumps the
    /// generation. Call after the database commit, before answering.
    pub async fn invalidate(&self, item_ids: &[i64]) {
        let Some(redis) = &self.redis else {
            return;
        };
        let mut direct = vec![self.keys.all_contents()];
        direct.extend(item_ids.iter().map(|id| self.keys.item(*id)));
        match redis.invalidate(&direct).await {
            Invalidation::Done(elapsed) => self.metrics.invalidation("done", Some(elapsed)),
            Invalidation::Skipped => self.metrics.invalidation("skipped", None),
            Invalidation::Failed => self.metrics.invalidation("failed", None),
        }
    }
}
