//! Redis behind a short timeout and a circuit breaker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use tokio::sync::Notify;

use super::{Generation, Keys};

/// Consecutive failures (errors or timeouts) that open the circuit.
const FAILURE_THRESHOLD: u32 = 3;
/// How often an open circuit checks whether Redis is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on each command of the recovery flush and of probes.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: generation, value key, and for a listing its next-cursor key and
/// the tag set. ARGV: expected generation, value, ttl, [next cursor].
/// Writes only if no invalidation happened since the reader's lookup.
const STORE: &str = r#"
local current = redis.call('GET', KEYS[1]) or '0'
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
if #KEYS >= 4 then
  redis.call('UNLINK', KEYS[3])
  if ARGV[4] then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3]) end
  redis.call('SADD', KEYS[4], KEYS[2], KEYS[3])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
return 1
"#;

/// KEYS: generation, tag set, then keys to delete directly.
/// Atomic: no store can slip in between the bump and the deletes.
const INVALIDATE: &str = r#"
redis.call('INCR', KEYS[1])
local members = redis.call('SMEMBERS', KEYS[2])
for i = 1, #members, 500 do
  redis.call('UNLINK', unpack(members, i, math.min(i + 499, #members)))
end
for i = 2, #KEYS do redis.call('UNLINK', KEYS[i]) end
return #members
"#;

struct Circuit {
    /// Read on every call without locking.
    open: AtomicBool,
    failures: AtomicU32,
    /// An invalidation was skipped (circuit open) or failed: Redis may hold
    /// stale entries and must be flushed before the circuit closes. Taken
    /// around every decision that involves it and the closing itself, so a
    /// write either marks it before the probe's last check or sees the
    /// circuit closed and invalidates Redis itself.
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
            self.trip(reason);
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

    /// `true` if the circuit is open, after recording the skipped
    /// invalidation; `false` means the caller must invalidate Redis.
    fn skip_invalidation(&self) -> bool {
        let mut missed = self.missed_invalidation.lock().expect("circuit lock");
        if self.is_open() {
            *missed = true;
            true
        } else {
            false
        }
    }

    fn invalidation_failed(&self, reason: &str) {
        *self.missed_invalidation.lock().expect("circuit lock") = true;
        self.trip(reason);
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

pub enum Invalidation {
    Done(Duration),
    /// Not attempted (circuit open); the cache will be flushed on recovery.
    Skipped,
    Failed,
}

pub struct RedisStore {
    /// Tells stores apart in the per-thread connection table (tests run
    /// several apps in one process).
    id: u64,
    client: redis::Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
    keys: Keys,
    circuit: Arc<Circuit>,
    store: Script,
    invalidate: Script,
}

impl RedisStore {
    /// Starts with the circuit open; the probe task connects, and closes
    /// it as soon as Redis answers (so no request waits on a connect).
    pub fn new(url: &str, timeout: Duration, keys: Keys) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(MAINTENANCE_TIMEOUT));
        let probe_connection =
            ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        let circuit = Arc::new(Circuit {
            open: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            missed_invalidation: Mutex::new(false),
            closings: AtomicU64::new(0),
            wake_probe: Notify::new(),
            closed: Notify::new(),
        });
        tokio::spawn(probe_loop(probe_connection, keys.clone(), circuit.clone()));
        circuit.wake_probe.notify_one();
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            client,
            config,
            timeout,
            keys,
            circuit,
            store: Script::new(STORE),
            invalidate: Script::new(INVALIDATE),
        })
    }

    /// This thread's connection. Each HTTP worker gets its own, driven on its
    /// own runtime: a shared one is driven on the main runtime, and every
    /// request's round trip then hops threads twice (A/B on this machine:
    /// cached item 0.37–0.47 × baseline shared, 0.51–0.58 × per worker).
    fn connection(&self) -> Result<ConnectionManager, Unavailable> {
        thread_local! {
            static CONNECTIONS: RefCell<HashMap<u64, (u64, ConnectionManager)>> =
                RefCell::new(HashMap::new());
        }
        let closings = self.circuit.closings.load(Ordering::Acquire);
        CONNECTIONS.with(|connections| {
            let mut connections = connections.borrow_mut();
            match connections.get(&self.id) {
                Some((made_at, connection)) if *made_at == closings => Ok(connection.clone()),
                _ => {
                    let connection = ConnectionManager::new_lazy_with_config(
                        self.client.clone(),
                        self.config.clone(),
                    )
                    .map_err(|_| Unavailable::Failed)?;
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

    /// One round trip: the value, an optional companion key, and the
    /// generation.
    pub async fn lookup(
        &self,
        key: &str,
        companion: Option<&str>,
    ) -> Result<(Option<Bytes>, Option<String>, Generation), Unavailable> {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(key);
        if let Some(companion) = companion {
            cmd.arg(companion);
        }
        cmd.arg(self.keys.generation());
        let mut conn = self.connection()?;
        let mut values: Vec<Option<Vec<u8>>> = self.call(cmd.query_async(&mut conn)).await?;
        let generation = values.pop().flatten().unwrap_or_else(|| b"0".to_vec());
        let generation = Generation(String::from_utf8_lossy(&generation).into_owned());
        let companion = if companion.is_some() {
            values
                .pop()
                .flatten()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        } else {
            None
        };
        let value = values.pop().flatten().map(Bytes::from);
        Ok((value, companion, generation))
    }

    /// Stores unless an invalidation happened since the lookup. A listing
    /// passes `Some(next)`: its companion key and tag-set registration.
    pub async fn store(
        &self,
        generation: Generation,
        key: &str,
        value: &Bytes,
        listing_next: Option<Option<&str>>,
        ttl_seconds: u64,
    ) {
        let mut invocation = self.store.prepare_invoke();
        invocation.key(self.keys.generation()).key(key);
        invocation
            .arg(generation.0)
            .arg(value.as_ref())
            .arg(ttl_seconds);
        if let Some(cursor) = listing_next {
            invocation
                .key(self.keys.listing_next(key))
                .key(self.keys.listing_tags());
            if let Some(cursor) = cursor {
                invocation.arg(cursor);
            }
        }
        let Ok(mut conn) = self.connection() else {
            return;
        };
        let stored: Result<i64, Unavailable> = self.call(invocation.invoke_async(&mut conn)).await;
        if stored == Ok(0) {
            tracing::debug!(key, "store skipped: invalidated since the lookup");
        }
    }

    /// Skipped while the circuit is open (marking the cache for a flush);
    /// a failure opens the circuit at once: until the recovery flush,
    /// nothing may be served from Redis.
    pub async fn invalidate(&self, direct_keys: &[String]) -> Invalidation {
        if self.circuit.skip_invalidation() {
            return Invalidation::Skipped;
        }
        let mut invocation = self.invalidate.prepare_invoke();
        invocation
            .key(self.keys.generation())
            .key(self.keys.listing_tags());
        for key in direct_keys {
            invocation.key(key);
        }
        let Ok(mut conn) = self.connection() else {
            self.circuit.invalidation_failed("no connection");
            return Invalidation::Failed;
        };
        let started = std::time::Instant::now();
        let reason =
            match tokio::time::timeout(self.timeout, invocation.invoke_async::<i64>(&mut conn))
                .await
            {
                Ok(Ok(deleted)) => {
                    self.circuit.succeeded();
                    let elapsed = started.elapsed();
                    tracing::debug!(
                        deleted_listing_keys = deleted,
                        elapsed_us = elapsed.as_micros() as u64,
                        "cache invalidated"
                    );
                    return Invalidation::Done(elapsed);
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => "timed out".to_owned(),
            };
        self.circuit.invalidation_failed(&reason);
        Invalidation::Failed
    }
}

/// Sleeps until the circuit opens, then probes until Redis answers, flushes
/// if an invalidation was missed, and closes the circuit. Logs each
/// transition once.
async fn probe_loop(manager: ConnectionManager, keys: Keys, circuit: Arc<Circuit>) {
    let mut first_connect = true;
    loop {
        circuit.wake_probe.notified().await;
        let mut flushed = false;
        loop {
            let mut conn = manager.clone();
            let answered = matches!(
                tokio::time::timeout(
                    MAINTENANCE_TIMEOUT,
                    redis::cmd("PING").query_async::<String>(&mut conn)
                )
                .await,
                Ok(Ok(_))
            );
            if answered {
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

/// Bumps the generation and deletes every key of the service's families
/// (SCAN + UNLINK: a rare, recovery-only walk of the keyspace).
async fn flush(conn: &mut ConnectionManager, keys: &Keys) -> RedisResult<()> {
    redis::cmd("INCR")
        .arg(keys.generation())
        .query_async::<i64>(conn)
        .await?;
    for pattern in keys.families() {
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            if !batch.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&batch)
                    .query_async::<i64>(conn)
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    redis::cmd("UNLINK")
        .arg(keys.listing_tags())
        .arg(keys.all_contents())
        .query_async::<i64>(conn)
        .await?;
    Ok(())
}
