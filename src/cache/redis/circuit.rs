//! The circuit breaker in front of Redis: what opens it, the probe that
//! closes it (after the recovery flush when an invalidation was missed),
//! the watch `PING` while it is closed, and the bounds on maintenance
//! commands.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::{RedisResult, Script, Value};
use tokio::sync::Notify;

use super::cluster::{by_address, primaries};
use super::connection::{Connection, Deployment};
use super::{token, LISTING_INVALIDATE};
use crate::cache::Keys;

/// Consecutive failures (errors or timeouts) that open the circuit.
pub(super) const FAILURE_THRESHOLD: u32 = 3;
/// How often an open circuit checks whether Redis is back, and how often a
/// cluster's topology is compared with the last one seen.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on each command of the recovery flush and of probes.
pub(super) const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(2);

/// The mark, kept in PostgreSQL, that some instance's write could not
/// delete in Redis: an instance that was not told (it started later) still
/// flushes before it trusts Redis.
pub trait SharedMark: Send + Sync {
    /// `Some(epoch)` if a flush is pending; `Err` if the mark cannot be read.
    fn pending(&self) -> BoxFuture<'_, Result<Option<i64>, ()>>;
    /// A flush that began after `epoch` was read has completed.
    fn flushed(&self, epoch: i64) -> BoxFuture<'_, ()>;
}

pub(super) struct Circuit {
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
    pub(super) closings: AtomicU64,
    pub(super) wake_probe: Notify,
    pub(super) closed: Notify,
    /// Told when the circuit closes after a flush (the caches are cold).
    pub(super) recovered: Notify,
    pub(super) shared: OnceLock<Arc<dyn SharedMark>>,
}

impl Circuit {
    /// Open: nothing is sent to Redis until the probe has heard from it.
    pub(super) fn new() -> Self {
        Self {
            open: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            missed_invalidation: Mutex::new(false),
            closings: AtomicU64::new(0),
            wake_probe: Notify::new(),
            closed: Notify::new(),
            recovered: Notify::new(),
            shared: OnceLock::new(),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(super) fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, reason: &str, threshold: u32) {
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
    pub(super) fn distrust(&self, reason: &str) {
        *self.missed_invalidation.lock().expect("circuit lock") = true;
        self.trip(reason);
    }

    /// Whether a flush must come before Redis is used again.
    pub(super) fn flush_pending(&self) -> bool {
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

/// Sleeps until the circuit opens, then probes until Redis answers (every
/// primary of a cluster), flushes if an invalidation was missed, and closes
/// the circuit. Logs each transition once. Each attempt connects afresh: a
/// cluster client learns a new topology only when it connects or a keyed
/// command is redirected, and while the circuit is open none is sent.
pub(super) async fn probe_loop(deployment: Arc<Deployment>, keys: Keys, circuit: Arc<Circuit>) {
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
                let shared = match circuit.shared.get() {
                    Some(mark) => mark.pending().await,
                    None => Ok(None),
                };
                // A pending mark, or one that cannot be read (unless this
                // round flushed already): flush first.
                if shared.is_err() && !flushed || matches!(shared, Ok(Some(_))) {
                    if let Err(err) = flush(&mut conn, &keys).await {
                        tracing::debug!(error = %err, "recovery flush failed");
                        tokio::time::sleep(PROBE_INTERVAL).await;
                        continue;
                    }
                    flushed = true;
                    if let (Some(mark), Ok(Some(epoch))) = (circuit.shared.get(), shared) {
                        mark.flushed(epoch).await;
                    }
                }
                if circuit.close_unless_missed() {
                    if first_connect {
                        tracing::info!(flushed, "redis connected");
                    } else {
                        tracing::info!(flushed, "redis reachable again: circuit closed");
                    }
                    if flushed {
                        circuit.recovered.notify_one();
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
pub(super) async fn within<T>(
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

pub(super) async fn bounded<T>(op: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
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

/// Replaces the listing version, deletes every key of the service's
/// families on every primary (SCAN + UNLINK: a rare, recovery-only walk of
/// the keyspace), then invalidates the listings (their tag set with its
/// members, atomically: whatever was stored during the walk).
pub(super) async fn flush(conn: &mut Connection, keys: &Keys) -> RedisResult<()> {
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
        let mut deleted = 0;
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
                deleted += unlink(conn, &batch).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        tracing::debug!(?node, deleted, "redis flushed");
    }
    let script = Script::new(LISTING_INVALIDATE);
    let mut listings = script.prepare_invoke();
    listings
        .key(keys.listing_version())
        .key(keys.listing_tags())
        .arg(token());
    bounded(listings.invoke_async::<i64>(conn)).await?;
    bounded(
        redis::cmd("UNLINK")
            .arg(keys.all_contents())
            .query_async::<i64>(conn),
    )
    .await?;
    Ok(())
}

/// Deletes `batch`: in one command on one server; key by key on a
/// cluster, where a multi-slot `UNLINK` leaves out a shard without a live
/// connection and still reports success.
async fn unlink(conn: &mut Connection, batch: &[String]) -> RedisResult<i64> {
    if batch.is_empty() {
        return Ok(0);
    }
    if let Connection::Single(single) = conn {
        return bounded(redis::cmd("UNLINK").arg(batch).query_async(single)).await;
    }
    let each = batch.iter().map(|key| {
        let mut conn = conn.clone();
        async move { bounded(redis::cmd("UNLINK").arg(key).query_async::<i64>(&mut conn)).await }
    });
    Ok(futures_util::future::try_join_all(each)
        .await?
        .into_iter()
        .sum())
}
