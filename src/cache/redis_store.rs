//! Redis — one server or a Redis Cluster, through one code path — behind a
//! short timeout and a circuit breaker.
//!
//! Every command and script touches keys of one hash slot (see `keys.rs`),
//! except the plain `UNLINK` of several items, which the cluster client
//! splits by slot. So nothing here differs between the two kinds but how a
//! connection is made, how the recovery flush finds every primary, and the
//! topology watch of a cluster.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Script, Value};
use tokio::sync::Notify;

use super::Keys;

/// Consecutive failures (errors or timeouts) that open the circuit.
const FAILURE_THRESHOLD: u32 = 3;
/// How often an open circuit checks whether Redis is back, and how often a
/// cluster's topology is compared with the last one seen.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on each command of the recovery flush and of probes.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(2);
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

/// A connection to either kind of deployment; both multiplex, clone
/// cheaply and reconnect by themselves.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// How connections are made: a URL, or a cluster's seed nodes.
enum Deployment {
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Cluster {
        client: ClusterClient,
    },
}

impl Deployment {
    fn new(url: &str, cluster: bool) -> anyhow::Result<Self> {
        if !cluster {
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100))
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(MAINTENANCE_TIMEOUT));
            return Ok(Deployment::Single {
                client: redis::Client::open(url)?,
                config,
            });
        }
        let seeds: Vec<String> = url.split(',').map(|seed| seed.trim().to_owned()).collect();
        let client = ClusterClient::builder(seeds)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .connection_timeout(Duration::from_millis(500))
            .response_timeout(MAINTENANCE_TIMEOUT)
            .build()?;
        Ok(Deployment::Cluster { client })
    }

    /// Connects in the background: no caller waits on a connect.
    fn connect(&self) -> RedisResult<Connection> {
        match self {
            Deployment::Single { client, config } => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Connection::Single)
            }
            Deployment::Cluster { client, .. } => Ok(Connection::Cluster(
                client.get_pending_async_connection_with_config(ClusterConfig::new()),
            )),
        }
    }
}

struct Circuit {
    /// Read on every call without locking.
    open: AtomicBool,
    failures: AtomicU32,
    /// The circuit opened, an invalidation failed, or a cluster's topology
    /// changed: Redis may hold entries some write could not delete (this
    /// instance's or another's) and must be flushed before the circuit
    /// closes. Taken around the closing itself, so a write that fails
    /// marks it either before the probe's last check or after the close,
    /// and then trips the circuit again.
    missed_invalidation: Mutex<bool>,
    /// Bumped each time the circuit closes: workers then replace their
    /// connections, which may still hold a socket from before the outage.
    closings: AtomicU64,
    wake_probe: Notify,
    closed: Notify,
}

impl Circuit {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    fn failed(&self, reason: &str, threshold: u32) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(failures, reason, "redis call failed");
        if failures >= threshold {
            self.distrust(reason);
        }
    }

    fn trip(&self, reason: &str) {
        if !self.open.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                reason,
                "redis unavailable: circuit opened, serving from PostgreSQL"
            );
            self.wake_probe.notify_one();
        }
    }

    /// Redis may now hold entries that should be gone: nothing is served
    /// from it until the recovery flush.
    fn distrust(&self, reason: &str) {
        *self.missed_invalidation.lock().expect("circuit lock") = true;
        self.trip(reason);
    }

    /// Whether a flush must come before Redis is used again.
    fn flush_pending(&self) -> bool {
        *self.missed_invalidation.lock().expect("circuit lock")
    }

    /// Closes the circuit unless an invalidation was missed; in that case
    /// clears the mark and answers `false`: flush, then try again.
    fn close_unless_missed(&self) -> bool {
        let mut missed = self.missed_invalidation.lock().expect("circuit lock");
        if *missed {
            *missed = false;
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        self.closings.fetch_add(1, Ordering::AcqRel);
        self.open.store(false, Ordering::Release);
        self.closed.notify_waiters();
        true
    }
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
        let circuit = Arc::new(Circuit {
            open: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            missed_invalidation: Mutex::new(false),
            closings: AtomicU64::new(0),
            wake_probe: Notify::new(),
            closed: Notify::new(),
        });
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
    pub(super) fn connection(&self) -> Result<Connection, Unavailable> {
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
    pub(super) async fn call<T>(
        &self,
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Unavailable> {
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
    pub async fn invalidate(&self, item_ids: &[i64]) -> bool {
        if self.circuit.flush_pending() {
            return false;
        }
        let Ok(conn) = self.connection() else {
            self.circuit.distrust("no connection");
            return false;
        };
        let mut listings = self.listing_invalidate.prepare_invoke();
        listings
            .key(self.keys.listing_version())
            .key(self.keys.listing_tags())
            .arg(token());
        let mut deletes: Vec<Cmd> = vec![redis::cmd("UNLINK").arg(self.keys.all_contents()).clone()];
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
        flush(&mut conn, &self.keys).await
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

/// Sleeps until the circuit opens, then probes until Redis answers (every
/// primary of a cluster), flushes if an invalidation was missed, and closes
/// the circuit. Logs each transition once. Each attempt connects afresh: a
/// cluster client learns a new topology only when it connects or a keyed
/// command is redirected, and while the circuit is open none is sent.
async fn probe_loop(deployment: Arc<Deployment>, keys: Keys, circuit: Arc<Circuit>) {
    let mut first_connect = true;
    let mut watch = None;
    loop {
        tokio::select! {
            _ = circuit.wake_probe.notified() => {}
            _ = tokio::time::sleep(PROBE_INTERVAL) => {
                watch_while_closed(&deployment, &circuit, &mut watch).await;
            }
        }
        // A wake-up may be left over from an opening this loop handled.
        if !circuit.is_open() {
            continue;
        }
        let mut flushed = false;
        loop {
            let Ok(mut conn) = deployment.connect() else {
                tokio::time::sleep(PROBE_INTERVAL).await;
                continue;
            };
            let answered = bounded(ping(&mut conn)).await;
            if let Err(err) = &answered {
                tracing::debug!(error = %err, "redis probe failed");
            }
            if answered.is_ok() {
                if circuit.close_unless_missed() {
                    if first_connect {
                        tracing::info!(flushed, "redis connected");
                    } else {
                        tracing::info!(flushed, "redis reachable again: circuit closed");
                    }
                    first_connect = false;
                    break;
                }
                match flush(&mut conn, &keys).await {
                    Ok(()) => {
                        flushed = true;
                        continue;
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "recovery flush failed");
                        *circuit.missed_invalidation.lock().expect("circuit lock") = true;
                    }
                }
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

/// `Err` with the reason unless `op` succeeded within `timeout`.
async fn within<T>(
    timeout: Duration,
    op: impl Future<Output = RedisResult<T>>,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// How long a watch `PING` may take before it counts as a failure.
const WATCH_TIMEOUT: Duration = Duration::from_millis(250);

/// While the circuit is closed: a `PING`, counted like any call, so that an
/// outage is noticed (and reported) even when L1 serves every read.
async fn watch_while_closed(
    deployment: &Deployment,
    circuit: &Circuit,
    watch: &mut Option<Connection>,
) {
    if circuit.is_open() {
        return;
    }
    if watch.is_none() {
        *watch = deployment.connect().ok();
    }
    let Some(conn) = watch.as_mut() else {
        return;
    };
    let answered = match tokio::time::timeout(WATCH_TIMEOUT, ping(conn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    match answered {
        Ok(()) => circuit.succeeded(),
        Err(reason) => {
            *watch = None;
            circuit.failed(&reason, FAILURE_THRESHOLD);
        }
    }
}

async fn bounded<T>(op: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(MAINTENANCE_TIMEOUT, op)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))?
}

/// `PING`, to every primary of a cluster.
async fn ping(conn: &mut Connection) -> RedisResult<()> {
    match conn {
        Connection::Single(single) => redis::cmd("PING").query_async::<()>(single).await,
        Connection::Cluster(cluster) => {
            for (host, port) in primaries(cluster).await? {
                cluster
                    .route_command(redis::cmd("PING"), by_address(&host, port))
                    .await?;
            }
            Ok(())
        }
    }
}

fn by_address(host: &str, port: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port,
    })
}

/// `CLUSTER NODES` as one node sees it.
async fn cluster_nodes(cluster: &mut ClusterConnection) -> RedisResult<String> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let nodes = cluster
        .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
        .await?;
    Ok(redis::from_redis_value(nodes)?)
}

/// The primaries serving slots, as one node sees them: `(host, port)` of
/// each; an error unless they serve every slot (a failover in progress).
async fn primaries(cluster: &mut ClusterConnection) -> RedisResult<Vec<(String, u16)>> {
    let nodes = cluster_nodes(cluster).await?;
    if covered_slots(&nodes) < SLOTS {
        return Err((redis::ErrorKind::Io, "not every slot is served").into());
    }
    let mut out = Vec::new();
    for node in serving_primaries(&nodes) {
        let address = node.address.split('@').next().unwrap_or_default();
        if let Some((host, port)) = address.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                out.push((host.to_owned(), port));
            }
        }
    }
    if out.is_empty() {
        return Err((redis::ErrorKind::Io, "no primary serves slots").into());
    }
    Ok(out)
}

struct Node<'a> {
    id: &'a str,
    address: &'a str,
    slots: Vec<&'a str>,
}

/// Primaries that are not failing and serve slots, from `CLUSTER NODES`
/// lines (`id addr flags master ping pong epoch link slot…`).
fn serving_primaries(nodes: &str) -> Vec<Node<'_>> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let primary = flags.split(',').any(|flag| flag == "master");
            let failing = flags
                .split(',')
                .any(|flag| flag == "fail" || flag == "fail?");
            (primary && !failing && fields.len() > 8).then(|| Node {
                id: fields[0],
                address: fields[1],
                slots: fields[8..].to_vec(),
            })
        })
        .collect()
}

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// How many slots healthy primaries serve (`0-5460`, `5461`; migrating
/// `[…]` entries aside).
fn covered_slots(nodes: &str) -> usize {
    serving_primaries(nodes)
        .iter()
        .flat_map(|node| node.slots.iter())
        .filter(|range| !range.starts_with('['))
        .filter_map(|range| match range.split_once('-') {
            Some((from, to)) => Some(to.parse::<usize>().ok()? + 1 - from.parse::<usize>().ok()?),
            None => range.parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

/// Which node serves which slots: equal while the topology is unchanged.
fn topology(nodes: &str) -> Vec<String> {
    let mut primaries: Vec<String> = serving_primaries(nodes)
        .into_iter()
        .map(|node| format!("{} {}", node.id, node.slots.join(",")))
        .collect();
    primaries.sort();
    primaries
}

/// A cluster whose primaries change (a failover, a resharding) may have
/// lost acknowledged invalidations (replication is asynchronous): what it
/// holds is distrusted, like after an outage, until flushed.
async fn watch_topology(deployment: Arc<Deployment>, circuit: Arc<Circuit>) {
    let mut known: Option<Vec<String>> = None;
    let mut connection = None;
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        if connection.is_none() {
            connection = deployment.connect().ok();
        }
        let Some(Connection::Cluster(cluster)) = connection.as_mut() else {
            continue;
        };
        let Ok(nodes) = bounded(cluster_nodes(cluster)).await else {
            connection = None;
            continue;
        };
        let now = topology(&nodes);
        if now.is_empty() {
            continue;
        }
        match &known {
            Some(before) if *before != now => {
                tracing::warn!(
                    "redis cluster topology changed: distrusting the cache until flushed"
                );
                circuit.distrust("topology changed");
            }
            _ => {}
        }
        known = Some(now);
    }
}

/// Replaces the listing version and deletes every key of the service's
/// families on every primary (SCAN + UNLINK: a rare, recovery-only walk of
/// the keyspace).
async fn flush(conn: &mut Connection, keys: &Keys) -> RedisResult<()> {
    bounded(
        redis::cmd("SET")
            .arg(keys.listing_version())
            .arg(token())
            .query_async::<()>(conn),
    )
    .await?;
    let nodes = match conn {
        Connection::Single(_) => vec![None],
        Connection::Cluster(cluster) => bounded(primaries(cluster))
            .await?
            .into_iter()
            .map(Some)
            .collect(),
    };
    for node in nodes {
        for pattern in keys.flushed_families() {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = match (&node, &mut *conn) {
                    (Some((host, port)), Connection::Cluster(cluster)) => {
                        bounded(cluster.route_command(scan, by_address(host, *port))).await?
                    }
                    (_, any) => bounded(scan.query_async::<Value>(any)).await?,
                };
                let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)?;
                if !batch.is_empty() {
                    bounded(redis::cmd("UNLINK").arg(&batch).query_async::<i64>(conn)).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    bounded(
        redis::cmd("UNLINK")
            .arg(keys.all_contents())
            .query_async::<i64>(conn),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";

    #[test]
    fn tokens_are_never_reused() {
        let tokens: std::collections::HashSet<String> = (0..1000).map(|_| token()).collect();
        assert_eq!(tokens.len(), 1000);
    }

    #[test]
    fn serving_primaries_are_read_from_cluster_nodes() {
        let primaries: Vec<&str> = serving_primaries(NODES).iter().map(|n| n.address).collect();
        assert_eq!(
            primaries,
            [
                "127.0.0.1:30002@31002",
                "127.0.0.1:30003@31003",
                "127.0.0.1:30001@31001"
            ]
        );
    }

    #[test]
    fn every_slot_must_be_served() {
        assert_eq!(covered_slots(NODES), SLOTS);
        let failing = NODES.replace("myself,master -", "myself,master,fail? -");
        assert_eq!(covered_slots(&failing), SLOTS - 5461);
    }

    #[test]
    fn a_failover_changes_the_topology() {
        let failed_over = NODES
            .replace(
                "myself,master - 0 0 1 connected 0-5460",
                "myself,master,fail - 0 0 1 connected",
            )
            .replace(
                "slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected",
                "master - 0 1426238317239 4 connected 0-5460",
            );
        assert_ne!(topology(NODES), topology(&failed_over));
        assert_eq!(
            topology(NODES),
            topology(&NODES.replace("1426238316232", "1426238399999"))
        );
    }
}
