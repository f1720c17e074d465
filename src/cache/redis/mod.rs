//! Redis — one server or a Redis Cluster, through one code path — behind a
//! short timeout and a circuit breaker.
//!
//! Every command and script touches keys of one hash slot (see `keys.rs`),
//! except the plain `UNLINK` of several items, which the cluster client
//! splits by slot. So nothing here differs between the two kinds but how a
//! connection is made, how the recovery flush finds every primary, and the
//! topology watch of a cluster.
//!
//! * `mod.rs`: [`RedisStore`] — its scripts, lookups, fills, invalidations
//!   and the admin entry points.
//! * `connection.rs`: how connections to either kind are made.
//! * `circuit.rs`: the circuit breaker, its probe and watch, and the
//!   recovery flush.
//! * `cluster.rs`: reading a cluster's primaries and watching its topology.
//!
//! `redis::` in these files is the client crate; in `cache/mod.rs`, where
//! this module is declared, `redis` names this module and `::redis` the
//! crate.

mod circuit;
mod cluster;
mod connection;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use redis::{Cmd, RedisResult, Script, Value};

use super::Keys;
pub use circuit::SharedMark;
use circuit::{probe_loop, within, Circuit, FAILURE_THRESHOLD};
use cluster::watch_topology;
use connection::{Connection, Deployment};

/// How long a reader may take between its miss and its fill of an item.
const LEASE_MS: u64 = 2_000;

/// KEYS: item, lease. ARGV: a fresh token, lease ms. The value and its
/// remaining ms if cached; else the token of the lease on filling it, taken
/// now unless another reader holds it (every reader of one lease may fill
/// with it).
const ITEM_LOOKUP: &str = r#"
local value = redis.call('GET', KEYS[1])
if value then return {value, redis.call('PTTL', KEYS[1])} end
local holder = redis.call('GET', KEYS[2])
if holder then return {false, holder} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {false, ARGV[1]}
"#;

/// KEYS: item, lease. ARGV: token, value, ttl. Writes only while the lease
/// is the one taken at the miss: an invalidation deletes it.
const ITEM_STORE: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"#;

/// KEYS: listing version, listing, its next-cursor key, tag set. ARGV:
/// version seen at the miss, value, ttl, [next cursor]. Writes only if no
/// listing invalidation happened since.
const LISTING_STORE: &str = r#"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('UNLINK', KEYS[3])
if ARGV[4] then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3]) end
redis.call('SADD', KEYS[4], KEYS[2], KEYS[3])
redis.call('EXPIRE', KEYS[4], ARGV[3])
return 1
"#;

/// KEYS: listing version, tag set. ARGV: a fresh version. Atomic: no
/// listing store can slip in between the new version and the deletes. A
/// version is never reused (unlike a counter, which a failover can set
/// back), so a store that saw an old one is refused whatever happened since.
const LISTING_INVALIDATE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1])
local members = redis.call('SMEMBERS', KEYS[2])
for i = 1, #members, 500 do
  redis.call('UNLINK', unpack(members, i, math.min(i + 499, #members)))
end
redis.call('UNLINK', KEYS[2])
return 1
"#;

/// A fresh, never reused token: this process's random nonce and a counter
/// (one random draw per process, not a system call per lookup).
fn token() -> String {
    static NONCE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", *NONCE, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Why Redis gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The circuit is open: Redis was not called.
    Skipped,
    /// Error or timeout.
    Failed,
}

/// An item lookup: the bytes and their remaining TTL, or the lease token a
/// fill must carry.
pub enum ItemLookup {
    Hit(Bytes, Duration),
    Miss { lease: String },
}

/// A listing lookup: the page, its next cursor and remaining TTL, or the
/// version a fill must carry.
pub enum ListingLookup {
    Hit(Bytes, Option<String>, Duration),
    Miss { version: String },
}

fn remaining(pttl_ms: i64) -> Duration {
    Duration::from_millis(pttl_ms.max(0) as u64)
}

pub struct RedisStore {
    /// Tells stores apart in the per-thread connection table (tests run
    /// several apps in one process).
    id: u64,
    deployment: Arc<Deployment>,
    timeout: Duration,
    keys: Keys,
    circuit: Arc<Circuit>,
    item_lookup: Script,
    item_store: Script,
    listing_store: Script,
    listing_invalidate: Script,
}

impl RedisStore {
    /// Starts with the circuit open; the probe task connects, and closes
    /// it as soon as Redis answers (so no request waits on a connect).
    /// `cluster`: `url` lists a Redis Cluster's seed nodes, comma-separated.
    pub fn new(url: &str, cluster: bool, timeout: Duration, keys: Keys) -> anyhow::Result<Self> {
        let deployment = Arc::new(Deployment::new(url, cluster)?);
        let circuit = Arc::new(Circuit::new());
        tokio::spawn(probe_loop(
            deployment.clone(),
            keys.clone(),
            circuit.clone(),
        ));
        if cluster {
            tokio::spawn(watch_topology(deployment.clone(), circuit.clone()));
        }
        circuit.wake_probe.notify_one();
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            deployment,
            timeout,
            keys,
            circuit,
            item_lookup: Script::new(ITEM_LOOKUP),
            item_store: Script::new(ITEM_STORE),
            listing_store: Script::new(LISTING_STORE),
            listing_invalidate: Script::new(LISTING_INVALIDATE),
        })
    }

    /// This thread's connection. Each HTTP worker gets its own, driven on its
    /// own runtime: a shared one is driven on the main runtime, and every
    /// request's round trip then hops threads twice (A/B on this machine:
    /// cached item 0.37–0.47 × baseline shared, 0.51–0.58 × per worker).
    fn connection(&self) -> Result<Connection, Unavailable> {
        thread_local! {
            static CONNECTIONS: RefCell<HashMap<u64, (u64, Connection)>> =
                RefCell::new(HashMap::new());
        }
        let closings = self.circuit.closings.load(Ordering::Acquire);
        CONNECTIONS.with(|connections| {
            let mut connections = connections.borrow_mut();
            match connections.get(&self.id) {
                Some((made_at, connection)) if *made_at == closings => Ok(connection.clone()),
                _ => {
                    let connection = self.deployment.connect().map_err(|_| Unavailable::Failed)?;
                    connections.insert(self.id, (closings, connection.clone()));
                    Ok(connection)
                }
            }
        })
    }

    pub fn is_available(&self) -> bool {
        !self.circuit.is_open()
    }

    /// Waits (bounded) for the circuit to close; used at startup so a
    /// reachable Redis serves from the first request.
    pub async fn wait_until_available(&self, limit: Duration) -> bool {
        let closed = self.circuit.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if self.circuit.is_open() {
            let _ = tokio::time::timeout(limit, closed).await;
        }
        self.is_available()
    }

    /// Runs `op` unless the circuit is open, bounded by the timeout.
    async fn call<T>(&self, op: impl Future<Output = RedisResult<T>>) -> Result<T, Unavailable> {
        if self.circuit.is_open() {
            return Err(Unavailable::Skipped);
        }
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => {
                self.circuit.succeeded();
                Ok(value)
            }
            Ok(Err(err)) => {
                self.circuit.failed(&err.to_string(), FAILURE_THRESHOLD);
                Err(Unavailable::Failed)
            }
            Err(_) => {
                self.circuit.failed("timed out", FAILURE_THRESHOLD);
                Err(Unavailable::Failed)
            }
        }
    }

    /// One round trip: the item, or the lease its fill must carry.
    pub async fn lookup_item(&self, id: i64) -> Result<ItemLookup, Unavailable> {
        let mut invocation = self.item_lookup.prepare_invoke();
        invocation
            .key(self.keys.item(id))
            .key(self.keys.item_lease(id))
            .arg(token())
            .arg(LEASE_MS);
        let mut conn = self.connection()?;
        let found: Vec<Value> = self.call(invocation.invoke_async(&mut conn)).await?;
        let mut found = found.into_iter();
        match (found.next(), found.next()) {
            (Some(Value::BulkString(value)), Some(Value::Int(pttl))) => {
                Ok(ItemLookup::Hit(Bytes::from(value), remaining(pttl)))
            }
            (Some(Value::Nil), Some(Value::BulkString(lease))) => Ok(ItemLookup::Miss {
                lease: String::from_utf8_lossy(&lease).into_owned(),
            }),
            _ => Err(Unavailable::Failed),
        }
    }

    /// One round trip (one slot): the page, its cursor, the version and
    /// the page's remaining TTL.
    pub async fn lookup_listing(&self, key: &str) -> Result<ListingLookup, Unavailable> {
        let mut pipe = redis::pipe();
        pipe.cmd("MGET")
            .arg(key)
            .arg(self.keys.listing_next(key))
            .arg(self.keys.listing_version())
            .cmd("PTTL")
            .arg(key);
        let mut conn = self.connection()?;
        let (mut values, pttl): (Vec<Option<Vec<u8>>>, i64) =
            self.call(pipe.query_async(&mut conn)).await?;
        if values.len() != 3 {
            return Err(Unavailable::Failed);
        }
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        let (version, next) = (values.pop().flatten(), values.pop().flatten());
        Ok(match values.pop().flatten() {
            Some(body) => ListingLookup::Hit(Bytes::from(body), next.map(text), remaining(pttl)),
            None => ListingLookup::Miss {
                version: version.map(text).unwrap_or_default(),
            },
        })
    }

    /// Fills an item unless it was invalidated since the miss; `true` if
    /// stored.
    pub async fn store_item(&self, id: i64, lease: &str, value: &Bytes, ttl_seconds: u64) -> bool {
        let mut invocation = self.item_store.prepare_invoke();
        invocation
            .key(self.keys.item(id))
            .key(self.keys.item_lease(id))
            .arg(lease)
            .arg(value.as_ref())
            .arg(ttl_seconds);
        self.store(invocation).await
    }

    /// Fills a listing (and its next cursor) unless listings were
    /// invalidated since the miss; `true` if stored.
    pub async fn store_listing(
        &self,
        version: &str,
        key: &str,
        value: &Bytes,
        next_cursor: Option<&str>,
        ttl_seconds: u64,
    ) -> bool {
        let mut invocation = self.listing_store.prepare_invoke();
        invocation
            .key(self.keys.listing_version())
            .key(key)
            .key(self.keys.listing_next(key))
            .key(self.keys.listing_tags())
            .arg(version)
            .arg(value.as_ref())
            .arg(ttl_seconds);
        if let Some(cursor) = next_cursor {
            invocation.arg(cursor);
        }
        self.store(invocation).await
    }

    async fn store(&self, invocation: redis::ScriptInvocation<'_>) -> bool {
        let Ok(mut conn) = self.connection() else {
            return false;
        };
        let stored: Result<i64, Unavailable> = self.call(invocation.invoke_async(&mut conn)).await;
        if stored == Ok(0) {
            tracing::debug!("store skipped: invalidated since the lookup");
        }
        stored == Ok(1)
    }

    /// Every listing, `all_contents`, and the given items with their
    /// leases; `true` once every delete is known done. One command per hash
    /// slot, each bounded by the timeout, all at once: a multi-slot
    /// `UNLINK` on a cluster leaves out a shard without a live connection
    /// and still reports success. Attempted even while the circuit is open
    /// (writes are rare, and a Redis that is back must hear of them), unless
    /// Redis is distrusted already; a failure distrusts Redis at once:
    /// until the recovery flush, nothing is filled from it or served.
    /// `position`: the write's commit position (0 without replicas), kept
    /// in the new listing version for the fills that read it.
    pub async fn invalidate(&self, item_ids: &[i64], position: u64) -> bool {
        if self.circuit.flush_pending() {
            return false;
        }
        let Ok(conn) = self.connection() else {
            self.circuit.distrust("no connection");
            return false;
        };
        let mut listings = self.listing_invalidate.prepare_invoke();
        let version = match position {
            0 => token(),
            position => format!("{}@{position}", token()),
        };
        listings
            .key(self.keys.listing_version())
            .key(self.keys.listing_tags())
            .arg(version);
        let mut deletes: Vec<Cmd> =
            vec![redis::cmd("UNLINK").arg(self.keys.all_contents()).clone()];
        for id in item_ids {
            deletes.push(
                redis::cmd("UNLINK")
                    .arg(self.keys.item(*id))
                    .arg(self.keys.item_lease(*id))
                    .clone(),
            );
        }
        let started = std::time::Instant::now();
        let timeout = self.timeout;
        let mut listing_conn = conn.clone();
        let listing = within(timeout, listings.invoke_async::<i64>(&mut listing_conn));
        let items = futures_util::future::join_all(deletes.iter().map(|delete| {
            let mut conn = conn.clone();
            async move { within(timeout, delete.query_async::<i64>(&mut conn)).await }
        }));
        let (listing, items) = tokio::join!(listing, items);
        match std::iter::once(listing).chain(items).find_map(Result::err) {
            None => {
                self.circuit.succeeded();
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "redis invalidated"
                );
                true
            }
            Some(reason) => {
                self.circuit.distrust(&reason);
                false
            }
        }
    }

    /// Returns after a recovery flush, once the circuit has closed.
    pub async fn recovered(&self) {
        self.circuit.recovered.notified().await;
    }

    /// Where the probe reads (and clears) the shared mark of a missed
    /// delete before it trusts Redis again.
    pub fn share_mark(&self, mark: Arc<dyn SharedMark>) {
        let _ = self.circuit.shared.set(mark);
    }

    /// Nothing is filled from Redis or served from it until it has been
    /// flushed: it may hold a value some write could not delete.
    pub fn distrust(&self, reason: &str) {
        self.circuit.distrust(reason);
    }

    /// Keys in the whole Redis (every prefix; every primary of a cluster)
    /// and the memory it uses, for the admin view.
    pub async fn usage(&self) -> Result<(u64, u64), Unavailable> {
        let mut conn = self.connection()?;
        let keys: u64 = self
            .call(redis::cmd("DBSIZE").query_async(&mut conn))
            .await?;
        let mut info = redis::cmd("INFO");
        info.arg("memory");
        let reply: Value = self.call(info.query_async(&mut conn)).await?;
        Ok((keys, used_memory(&reply)))
    }

    /// The recovery flush, on demand (admin): every key of the service's
    /// families on every primary.
    pub async fn flush(&self) -> RedisResult<()> {
        let mut conn = self
            .connection()
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "no connection")))?;
        circuit::flush(&mut conn, &self.keys).await
    }
}

/// `used_memory` of an `INFO memory` reply, summed over the nodes of a
/// cluster's (a map of node to text).
fn used_memory(reply: &Value) -> u64 {
    match reply {
        Value::BulkString(text) => String::from_utf8_lossy(text)
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|bytes| bytes.trim().parse().ok())
            .unwrap_or(0),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => {
            used_memory(&Value::BulkString(text.clone().into_bytes()))
        }
        Value::Map(nodes) => nodes.iter().map(|(_, text)| used_memory(text)).sum(),
        Value::Array(values) => values.iter().map(used_memory).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_reused() {
        let tokens: std::collections::HashSet<String> = (0..1000).map(|_| token()).collect();
        assert_eq!(tokens.len(), 1000);
    }
}
