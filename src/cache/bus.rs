//! Keeps every instance's L1 coherent: leases, and invalidations that
//! writers wait to see acknowledged (ARCHITECTURE.md, "the L1 protocol").
//!
//! * An instance subscribes, then joins the members set with a lease
//!   (`LEASE` from Redis' clock), clears its L1 and serves from it until
//!   `LEASE - MARGIN` after it *sent* its last successful renewal, on its own
//!   monotonic clock. It renews every `RENEW_EVERY`; a renewal that finds it
//!   removed or expired ends the session: it stops serving, clears, and
//!   subscribes and joins again.
//! * A writer, after its commit and the Redis invalidation, publishes the
//!   write in the same script that reads the live members, drops its own
//!   entries, and waits up to `ACK_WAIT` for every other live member to
//!   acknowledge (they drop the entries first). Members that did not are
//!   removed (kept in the revoked set with their lease expiry) and the
//!   writer waits until that expiry: by then they have stopped serving.
//! * A writer that cannot reach Redis retries until one lease has passed
//!   since it first found Redis unreachable: by then no instance, unable to
//!   renew, serves from L1.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::Script;
use tokio::sync::Notify;

use super::l1::Local;
use super::redis_store::{Audience, RedisStore, Unavailable};
use crate::metrics::Metrics;

/// How long a lease lasts from the Redis clock's time of the renewal.
pub const LEASE: Duration = Duration::from_millis(1000);
/// An instance stops serving this much earlier than its lease ends, on its
/// own clock (clock rate differences, scheduling).
const MARGIN: Duration = Duration::from_millis(100);
pub const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How long a writer waits for acknowledgements before removing the
/// members that have not answered.
pub const ACK_WAIT: Duration = Duration::from_millis(150);
/// Between attempts to reach Redis, for a writer or a session.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// Bound on connecting and subscribing.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: members, revoked. ARGV: instance, lease ms.
const JOIN: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#;

/// KEYS: members. ARGV: instance, lease ms. 1 if renewed; 0 if removed or
/// expired (an expired member is removed: a writer may already have
/// skipped it).
const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) < now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

/// KEYS: members, revoked. ARGV: instances. Moves each live one to revoked
/// with its lease expiry; returns {now, the latest such expiry}.
const REVOKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local latest = now
for i = 1, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[2], score, ARGV[i])
    latest = math.max(latest, tonumber(score))
  end
end
return {now, latest}
"#;

/// A write as published: `writer|seq|ids` (`*` for everything).
struct Message<'a> {
    writer: &'a str,
    seq: u64,
    items: Option<Vec<i64>>,
}

impl<'a> Message<'a> {
    fn encode(writer: &str, seq: u64, items: Option<&[i64]>) -> String {
        let items = match items {
            None => "*".to_owned(),
            Some(ids) => ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
        };
        format!("{writer}|{seq}|{items}")
    }

    fn decode(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(3, '|');
        let writer = parts.next()?;
        let seq = parts.next()?.parse().ok()?;
        let items = match parts.next()? {
            "*" => None,
            "" => Some(Vec::new()),
            ids => Some(
                ids.split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            ),
        };
        Some(Self { writer, seq, items })
    }
}

#[derive(Default)]
struct Pending {
    acked: Mutex<HashSet<String>>,
    notify: Notify,
}

/// One write's announcement, registered before it is published so that no
/// acknowledgement can arrive unseen.
pub struct Announcement {
    seq: u64,
    pub channel: String,
    pub message: String,
    pending: Arc<Pending>,
}

/// How a write's wait for the L1s ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Every live member acknowledged (or there was none).
    Acknowledged,
    /// Some did not: they were removed and their leases waited out.
    Revoked,
    /// Redis could not be reached for one lease: nobody serves from L1.
    LeasesLapsed,
}

pub struct Bus {
    pub instance: String,
    redis: Arc<RedisStore>,
    /// `None`: this instance has no L1; it announces its writes and waits
    /// for the others', but never joins.
    local: Option<Arc<Local>>,
    seq: AtomicU64,
    pending: Mutex<HashMap<u64, Arc<Pending>>>,
    /// When this instance first failed to reach Redis, since it last did.
    unreachable_since: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
    join: Script,
    renew: Script,
    revoke: Script,
}

impl Bus {
    pub fn start(
        redis: Arc<RedisStore>,
        local: Option<Arc<Local>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let bus = Arc::new(Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            redis,
            local,
            seq: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            unreachable_since: Mutex::new(None),
            metrics,
            join: Script::new(JOIN),
            renew: Script::new(RENEW),
            revoke: Script::new(REVOKE),
        });
        tokio::spawn(bus.clone().run());
        bus
    }

    pub fn announcement(&self, items: Option<&[i64]>) -> Announcement {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(Pending::default());
        self.pending
            .lock()
            .expect("pending lock")
            .insert(seq, pending.clone());
        Announcement {
            seq,
            channel: self.redis.keys().l1_invalidations(),
            message: Message::encode(&self.instance, seq, items),
            pending,
        }
    }

    /// After a successful announcement: waits for the audience's
    /// acknowledgements, removing and waiting out whoever does not answer.
    pub async fn settle(&self, announcement: Announcement, audience: Audience) -> Settled {
        self.reached();
        let started = Instant::now();
        let revoked_until = started + audience.revoked_for;
        let expected: Vec<String> = audience
            .live
            .into_iter()
            .filter(|member| *member != self.instance)
            .collect();
        let deadline = started + ACK_WAIT;
        let missing = loop {
            let notified = announcement.pending.notify.notified();
            let missing: Vec<String> = {
                let acked = announcement.pending.acked.lock().expect("ack lock");
                expected
                    .iter()
                    .filter(|member| !acked.contains(*member))
                    .cloned()
                    .collect()
            };
            if missing.is_empty()
                || tokio::time::timeout_at(deadline.into(), notified)
                    .await
                    .is_err()
            {
                break missing;
            }
        };
        self.forget(&announcement);
        let mut wait_until = revoked_until;
        let settled = if missing.is_empty() {
            if !expected.is_empty() {
                self.metrics.l1_ack(started.elapsed());
            }
            Settled::Acknowledged
        } else {
            tracing::warn!(
                ?missing,
                "no acknowledgement from L1 members: removing them"
            );
            wait_until = wait_until.max(self.revoked(&missing).await);
            Settled::Revoked
        };
        // Only when there is something to wait out: even a deadline already
        // passed costs a timer tick (up to 1 ms) in tokio.
        if wait_until > Instant::now() {
            tokio::time::sleep_until(wait_until.into()).await;
            tracing::debug!(
                waited_ms = started.elapsed().as_millis() as u64,
                "waited out L1 leases"
            );
        }
        settled
    }

    fn forget(&self, announcement: &Announcement) {
        self.pending
            .lock()
            .expect("pending lock")
            .remove(&announcement.seq);
    }

    /// Removes `members`; returns when the last lease they may serve under
    /// ends (a full lease from now if Redis cannot say).
    async fn revoked(&self, members: &[String]) -> Instant {
        let keys = self.redis.keys();
        let mut invocation = self.revoke.prepare_invoke();
        invocation.key(keys.l1_members()).key(keys.l1_revoked());
        for member in members {
            invocation.arg(member);
        }
        let sent = Instant::now();
        let result: Result<(i64, i64), Unavailable> = match self.redis.connection() {
            Ok(mut conn) => self.redis.call(invocation.invoke_async(&mut conn)).await,
            Err(err) => Err(err),
        };
        match result {
            Ok((now, latest)) => {
                Instant::now() + Duration::from_millis((latest - now).max(0) as u64)
            }
            Err(_) => sent + LEASE,
        }
    }

    /// After a failed announcement: `Some` once one lease has passed since
    /// this instance first found Redis unreachable (retry until then).
    pub fn unreachable(&self, announcement: &Announcement) -> Option<Settled> {
        let now = Instant::now();
        let since = *self
            .unreachable_since
            .lock()
            .expect("reachability lock")
            .get_or_insert(now);
        (now >= since + LEASE).then(|| {
            self.forget(announcement);
            Settled::LeasesLapsed
        })
    }

    pub fn retry_pause() -> Duration {
        RETRY_EVERY
    }

    fn reached(&self) {
        *self.unreachable_since.lock().expect("reachability lock") = None;
    }

    fn failed_to_reach(&self) {
        self.unreachable_since
            .lock()
            .expect("reachability lock")
            .get_or_insert_with(Instant::now);
    }

    /// Whether this instance serves from L1 now.
    pub fn serving(&self) -> bool {
        self.local.as_ref().is_some_and(|local| local.lease.holds())
    }

    /// Sessions, one after another, for the life of the process.
    async fn run(self: Arc<Self>) {
        let mut attempt = 0;
        loop {
            let reason = self.session(attempt).await;
            if let Some(local) = &self.local {
                let was_serving = local.lease.holds();
                local.lease.stop();
                local.clear();
                self.metrics.l1_serving(false);
                if was_serving {
                    tracing::warn!(reason, "L1 lease lost: cleared, joining again");
                }
                self.leave().await;
            }
            attempt += 1;
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Subscribes, joins (with an L1), and then handles messages and keeps
    /// the lease until either fails; returns why.
    async fn session(&self, attempt: usize) -> &'static str {
        let keys = self.redis.keys();
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let client = self.redis.pubsub_client(attempt)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(keys.l1_acks(&self.instance)).await?;
            if self.local.is_some() {
                pubsub.subscribe(keys.l1_invalidations()).await?;
            }
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            _ => {
                self.failed_to_reach();
                return "could not subscribe";
            }
        };
        self.reached();
        let (_sink, stream) = pubsub.split();
        tokio::select! {
            reason = self.read(stream) => reason,
            reason = self.keep_lease() => reason,
        }
    }

    async fn read(&self, mut stream: redis::aio::PubSubStream) -> &'static str {
        while let Some(message) = stream.next().await {
            let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
                continue;
            };
            if message.get_channel_name() == self.redis.keys().l1_invalidations() {
                self.apply(text);
            } else if let Some((seq, member)) = text.split_once('|') {
                self.acknowledged(seq, member);
            }
        }
        "subscription ended"
    }

    /// Another instance's write: drop the entries, then acknowledge.
    fn apply(&self, text: &str) {
        let (Some(local), Some(message)) = (&self.local, Message::decode(text)) else {
            return;
        };
        if message.writer == self.instance {
            return;
        }
        match &message.items {
            Some(items) => local.invalidate(items),
            None => local.clear(),
        }
        let ack = format!("{}|{}", message.seq, self.instance);
        let channel = self.redis.keys().l1_acks(message.writer);
        let Ok(mut conn) = self.redis.connection() else {
            return;
        };
        let redis = self.redis.clone();
        tokio::spawn(async move {
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(channel).arg(ack);
            let _ = redis.call(publish.query_async::<i64>(&mut conn)).await;
        });
    }

    fn acknowledged(&self, seq: &str, member: &str) {
        let Ok(seq) = seq.parse::<u64>() else {
            return;
        };
        let pending = self
            .pending
            .lock()
            .expect("pending lock")
            .get(&seq)
            .cloned();
        if let Some(pending) = pending {
            pending
                .acked
                .lock()
                .expect("ack lock")
                .insert(member.to_owned());
            pending.notify.notify_one();
        }
    }

    /// Joins and renews until removed; without an L1, only keeps track of
    /// whether Redis answers.
    async fn keep_lease(&self) -> &'static str {
        let Some(local) = &self.local else {
            return self.keep_in_touch().await;
        };
        loop {
            let sent = Instant::now();
            match self.lease_call(&self.join, true).await {
                Ok(_) => {
                    self.reached();
                    local.clear();
                    local.lease.hold_until(sent + LEASE - MARGIN);
                    self.metrics.l1_serving(true);
                    tracing::debug!(instance = %self.instance, "L1 joined");
                    break;
                }
                Err(_) => {
                    self.failed_to_reach();
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
        let mut ticks = tokio::time::interval(RENEW_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let sent = Instant::now();
            match self.lease_call(&self.renew, false).await {
                Ok(1) => {
                    self.reached();
                    local.lease.hold_until(sent + LEASE - MARGIN);
                }
                Ok(_) => return "removed from the members",
                Err(_) => {
                    self.failed_to_reach();
                    if !local.lease.holds() {
                        self.metrics.l1_serving(false);
                    }
                }
            }
        }
    }

    /// An instance without L1 still writes: it must know when Redis last
    /// answered, or a failure long after an earlier outage would count from
    /// that outage's start (and skip the wait for the others' leases).
    async fn keep_in_touch(&self) -> &'static str {
        let mut ticks = tokio::time::interval(RENEW_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let answered = match self.redis.connection() {
                Ok(mut conn) => self
                    .redis
                    .call(redis::cmd("PING").query_async::<()>(&mut conn))
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if answered {
                self.reached();
            } else {
                self.failed_to_reach();
            }
        }
    }

    async fn lease_call(&self, script: &Script, join: bool) -> Result<i64, Unavailable> {
        let keys = self.redis.keys();
        let mut invocation = script.prepare_invoke();
        invocation.key(keys.l1_members());
        if join {
            invocation.key(keys.l1_revoked());
        }
        invocation.arg(&self.instance).arg(LEASE.as_millis() as u64);
        let mut conn = self.redis.connection()?;
        self.redis.call(invocation.invoke_async(&mut conn)).await
    }

    /// At shutdown: stop serving and leave, so that no writer waits for
    /// an instance that is gone.
    pub async fn shut_down(&self) {
        if let Some(local) = &self.local {
            local.lease.stop();
            local.clear();
            self.leave().await;
        }
    }

    /// Best effort, once no longer serving: writers need not wait for us.
    async fn leave(&self) {
        let Ok(mut conn) = self.redis.connection() else {
            return;
        };
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(self.redis.keys().l1_members()).arg(&self.instance);
        let _ = self.redis.call(zrem.query_async::<i64>(&mut conn)).await;
    }

    /// Live members and when each lease ends (ms, Redis clock), for the
    /// admin view.
    pub async fn members(&self) -> Result<Vec<(String, i64)>, Unavailable> {
        let mut conn = self.redis.connection()?;
        let mut range = redis::cmd("ZRANGE");
        range
            .arg(self.redis.keys().l1_members())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let members: Vec<(String, f64)> = self.redis.call(range.query_async(&mut conn)).await?;
        Ok(members
            .into_iter()
            .map(|(member, score)| (member, score as i64))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let text = Message::encode("abc", 7, Some(&[1, 22, 333]));
        let message = Message::decode(&text).unwrap();
        assert_eq!((message.writer, message.seq), ("abc", 7));
        assert_eq!(message.items, Some(vec![1, 22, 333]));
        let create = Message::encode("abc", 8, Some(&[]));
        assert_eq!(Message::decode(&create).unwrap().items, Some(vec![]));
        let flush = Message::encode("abc", 9, None);
        assert_eq!(Message::decode(&flush).unwrap().items, None);
        assert!(Message::decode("abc|x|1").is_none());
        assert!(Message::decode("abc|1|1,x").is_none());
    }

    #[test]
    fn an_instance_stops_serving_before_its_lease_ends() {
        assert!(MARGIN < LEASE && RENEW_EVERY * 3 < LEASE - MARGIN);
        assert!(ACK_WAIT < LEASE);
    }
}
