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
use redis_store::RedisStore;

/// What a store must carry to prove no invalidation happened since the
/// lookup that missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation(String);

pub enum Lookup<T> {
    Hit(T),
    /// Missed; `Some` when the value may be stored afterwards.
    Miss(Option<Generation>),
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
}

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
    pub fn new(settings: CacheSettings<'_>) -> anyhow::Result<Self> {
        let keys = Keys::new(settings.key_prefix);
        let redis = settings
            .redis_url
            .map(|url| RedisStore::new(url, settings.timeout, keys.clone()).map(Arc::new))
            .transpose()?;
        Ok(Self {
            keys,
            ttl_seconds: settings.ttl_seconds,
            redis,
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
        let Some(redis) = &self.redis else {
            return Lookup::Miss(None);
        };
        match redis.lookup(key, None).await {
            Some((Some(value), _, _)) => Lookup::Hit(value),
            Some((None, _, generation)) => Lookup::Miss(Some(generation)),
            None => Lookup::Miss(None),
        }
    }

    pub async fn lookup_listing(&self, key: &str) -> Lookup<CachedPage> {
        let Some(redis) = &self.redis else {
            return Lookup::Miss(None);
        };
        let next_key = self.keys.listing_next(key);
        match redis.lookup(key, Some(&next_key)).await {
            Some((Some(body), next_cursor, _)) => Lookup::Hit(CachedPage { body, next_cursor }),
            Some((None, _, generation)) => Lookup::Miss(Some(generation)),
            None => Lookup::Miss(None),
        }
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
        if let Some(redis) = &self.redis {
            let mut direct = vec![self.keys.all_contents()];
            direct.extend(item_ids.iter().map(|id| self.keys.item(*id)));
            redis.invalidate(&direct).await;
        }
    }
}
