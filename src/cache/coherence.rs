//! Keeps every instance's L1 coherent through PostgreSQL, the one component
//! every write must reach (ARCHITECTURE.md, "the L1 protocol").
//!
//! * Each instance keeps one listening session (`DATABASE_LISTEN_URL`). An
//!   instance with an L1 listens for announcements, then joins
//!   `cache_members` with a lease (PostgreSQL's clock), clears its L1 and
//!   serves from it until `LEASE - MARGIN` after it *sent* its last
//!   successful renewal, on its own monotonic clock. A renewal that finds it
//!   revoked or expired ends the session: it stops serving, clears, and
//!   joins again with a new session.
//! * A writer, after its commit and its Redis deletes, announces the write
//!   (`pg_notify`) in the statement that reads the live members, and waits
//!   up to `ACK_WAIT` for every other live member to acknowledge (they drop
//!   the entries first). Members that did not are revoked (their listening
//!   session terminated) and the writer waits until their lease ends: by
//!   then they have stopped serving.
//! * A writer that cannot announce keeps trying; the write's outbox row
//!   (see `outbox.rs`) lets any other instance complete it meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

use super::announcement::{Announced, Message, Queued};
use super::l1::Local;
use super::redis::SharedMark;
use super::session::Session;
use crate::metrics::Metrics;

/// How long a lease lasts from PostgreSQL's time of the renewal.
pub const LEASE: Duration = Duration::from_millis(1000);
/// An instance stops serving this much earlier than its lease ends, on its
/// own clock (clock rate differences, scheduling).
const MARGIN: Duration = Duration::from_millis(100);
pub const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How long a writer waits for acknowledgements before revoking the
/// members that have not answered.
pub const ACK_WAIT: Duration = Duration::from_millis(150);
/// Between attempts to reach PostgreSQL, for a writer or a session.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// Bound on connecting and on each statement of the channel.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The channel every announcement goes to.
const ANNOUNCEMENTS: &str = "cache_invalidations";
fn ack_channel(instance: &str) -> String {
    format!("cache_ack_{instance}")
}

#[derive(Default)]
struct Pending {
    acked: Mutex<HashSet<String>>,
    notify: Notify,
}

/// How a write's wait for the L1s ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Every live member acknowledged (or there was none).
    Acknowledged,
    /// Some did not: they were revoked and their leases waited out.
    Revoked,
}

/// What the other instances are told to do besides dropping L1 entries.
pub type DistrustRedis = Arc<dyn Fn() + Send + Sync>;

pub struct Coherence {
    pub instance: String,
    listen_url: String,
    /// `None`: this instance has no L1; it announces its writes and waits
    /// for the others', but never joins.
    local: Option<Arc<Local>>,
    /// The live listening session's client, if any.
    session: Mutex<Option<Arc<Session>>>,
    seq: AtomicU64,
    pending: Mutex<HashMap<u64, Arc<Pending>>>,
    /// Writes waiting for the announcement being sent: sent next, as one.
    queued: Mutex<Queued>,
    distrust_redis: DistrustRedis,
    metrics: Arc<Metrics>,
    /// Read replicas are in use: writers announce their commit positions.
    tracks_positions: bool,
    /// The newest commit position this instance was told of (or read when
    /// it joined): a replica serves it only once replayed past it.
    floor: AtomicU64,
    /// Told when L1 was emptied by a join or an announced flush.
    emptied: Arc<Notify>,
}

/// The primary's WAL insert position, as a byte offset: at or past every
/// commit that has returned.
const INSERT_POSITION: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8";

/// Who must acknowledge an announcement, as PostgreSQL saw the members
/// when it was sent.
struct Audience {
    live: Vec<String>,
    /// How long revoked members may still serve under their last lease.
    revoked_for: Duration,
}

impl Coherence {
    pub fn start(
        listen_url: String,
        local: Option<Arc<Local>>,
        distrust_redis: DistrustRedis,
        metrics: Arc<Metrics>,
        tracks_positions: bool,
        emptied: Arc<Notify>,
    ) -> Arc<Self> {
        let coherence = Arc::new(Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            listen_url,
            local,
            session: Mutex::new(None),
            seq: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            queued: Mutex::new(Queued::default()),
            distrust_redis,
            metrics,
            tracks_positions,
            floor: AtomicU64::new(0),
            emptied,
        });
        tokio::spawn(coherence.clone().run());
        coherence
    }

    /// Whether this instance serves from L1 now.
    pub fn serving(&self) -> bool {
        self.local.as_ref().is_some_and(|local| local.lease.holds())
    }

    /// The newest commit position a read on this instance must not be
    /// behind (0 without replicas).
    pub fn floor(&self) -> u64 {
        self.floor.load(Ordering::Acquire)
    }

    /// With replicas, the primary's position now (this instance's write
    /// has committed), raising this instance's floor; 0 without them.
    /// Retries while PostgreSQL cannot be reached, like `announce`.
    pub async fn commit_position(&self) -> u64 {
        if !self.tracks_positions {
            return 0;
        }
        loop {
            let read = async {
                let row = match self.client() {
                    Some(session) => {
                        let statement = bounded(session.prepared(INSERT_POSITION)).await?;
                        bounded(session.query_one(&statement, &[])).await
                    }
                    None => {
                        let client = connect_once(&self.listen_url).await?;
                        bounded(client.query_one(INSERT_POSITION, &[])).await
                    }
                }?;
                Ok::<_, ChannelError>(row.get::<_, i64>(0) as u64)
            };
            match read.await {
                Ok(position) => {
                    self.floor.fetch_max(position, Ordering::AcqRel);
                    return position;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading the commit position failed: retrying");
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
    }

    /// The live listening session, to run a statement on (the outbox's).
    pub(super) fn client(&self) -> Option<Arc<Session>> {
        self.session.lock().expect("session lock").clone()
    }

    /// Announces `announced` to every live member and returns once each has
    /// acknowledged it or been revoked and outlived its lease. Retries while
    /// PostgreSQL cannot be reached.
    ///
    /// Writes that come while an announcement is being sent are announced
    /// together after it, in one notification standing for all of them
    /// (`Announced::merge`): under load each write's own announcement was a
    /// tenth of a create's cost, a statement and a commit under PostgreSQL's
    /// global notification lock, heard by every member. Only sending is one
    /// at a time; the waits for acknowledgements overlap, so a member that
    /// stops answering delays the writes of one announcement, not the next.
    pub async fn announce(self: &Arc<Self>, announced: &Announced) -> Settled {
        let (done, settled) = oneshot::channel();
        let lead = {
            let mut queued = self.queued.lock().expect("queue lock");
            queued.waiting.push((announced.clone(), done));
            !std::mem::replace(&mut queued.sending, true)
        };
        if lead {
            // Not on the request's task: a request dropped mid-way must not
            // strand the writes queued behind it.
            tokio::spawn(self.clone().send_queued());
        }
        match settled.await {
            Ok(settled) => settled,
            // The sender died (a bug): this write is announced on its own.
            Err(_) => {
                let (seq, pending, audience, heard) = self.send_until_sent(announced).await;
                self.settle_and_forget(seq, &pending, audience, heard).await
            }
        }
    }

    /// Sends what is queued, as one announcement at a time, until nothing is.
    async fn send_queued(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queued = self.queued.lock().expect("queue lock");
                if queued.waiting.is_empty() {
                    queued.sending = false;
                    return;
                }
                std::mem::take(&mut queued.waiting)
            };
            let mut merged = batch[0].0.clone();
            for (announced, _) in &batch[1..] {
                merged.merge(announced);
            }
            let (seq, pending, audience, heard) = self.send_until_sent(&merged).await;
            let this = self.clone();
            tokio::spawn(async move {
                let settled = this.settle_and_forget(seq, &pending, audience, heard).await;
                for (_, done) in batch {
                    let _ = done.send(settled);
                }
            });
        }
    }

    /// Registers and sends one announcement, retrying while PostgreSQL
    /// cannot be reached.
    async fn send_until_sent(&self, announced: &Announced) -> (u64, Arc<Pending>, Audience, bool) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(Pending::default());
        self.pending
            .lock()
            .expect("pending lock")
            .insert(seq, pending.clone());
        let message = Message::encode(&self.instance, seq, announced);
        loop {
            match self.send(&message, announced.redis_distrusted).await {
                Ok((audience, heard)) => return (seq, pending, audience, heard),
                Err(err) => {
                    tracing::warn!(error = %err, "announcing an invalidation failed: retrying");
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
    }

    async fn settle_and_forget(
        &self,
        seq: u64,
        pending: &Pending,
        audience: Audience,
        heard: bool,
    ) -> Settled {
        let settled = self.settle(pending, audience, heard).await;
        self.pending.lock().expect("pending lock").remove(&seq);
        settled
    }

    /// Sends the announcement on the listening session (which hears the
    /// acknowledgements), or else on a connection of its own (`false`:
    /// nobody's acknowledgement can be heard).
    async fn send(
        &self,
        message: &str,
        redis_distrusted: bool,
    ) -> Result<(Audience, bool), ChannelError> {
        // A missed Redis delete is also marked for instances not listening
        // now (see `redis::SharedMark`).
        const ANNOUNCE: &str = "WITH marked AS ( \
                 UPDATE cache_redis_marks SET dirty_epoch = dirty_epoch + 1 \
                 WHERE $4 RETURNING 1) \
             SELECT pg_notify($1, $2), \
             ARRAY(SELECT instance FROM cache_members \
                   WHERE lease_until > now() AND NOT revoked AND instance <> $3), \
             COALESCE((SELECT EXTRACT(EPOCH FROM max(lease_until) - now()) * 1000 \
                       FROM cache_members WHERE revoked AND lease_until > now()), 0)::float8, \
             (SELECT count(*) FROM marked)";
        let audience = |row: tokio_postgres::Row| Audience {
            live: row.get(1),
            revoked_for: millis(row.get(2)),
        };
        if let Some(session) = self.client() {
            let row = async {
                let statement = bounded(session.prepared(ANNOUNCE)).await?;
                bounded(session.query_one(
                    &statement,
                    &[&ANNOUNCEMENTS, &message, &self.instance, &redis_distrusted],
                ))
                .await
            };
            if let Ok(row) = row.await {
                return Ok((audience(row), true));
            }
        }
        let client = connect_once(&self.listen_url).await?;
        let row = bounded(client.query_one(
            ANNOUNCE,
            &[&ANNOUNCEMENTS, &message, &self.instance, &redis_distrusted],
        ))
        .await?;
        Ok((audience(row), false))
    }

    async fn settle(&self, pending: &Pending, audience: Audience, heard: bool) -> Settled {
        let started = Instant::now();
        let revoked_until = started + audience.revoked_for;
        let deadline = started + ACK_WAIT;
        let missing = loop {
            let notified = pending.notify.notified();
            let missing: Vec<String> = {
                let acked = pending.acked.lock().expect("ack lock");
                audience
                    .live
                    .iter()
                    .filter(|member| !acked.contains(*member))
                    .cloned()
                    .collect()
            };
            if missing.is_empty()
                || !heard
                || tokio::time::timeout_at(deadline.into(), notified)
                    .await
                    .is_err()
            {
                break missing;
            }
        };
        let mut wait_until = revoked_until;
        let settled = if missing.is_empty() {
            if !audience.live.is_empty() {
                self.metrics.l1_ack(started.elapsed());
            }
            Settled::Acknowledged
        } else {
            tracing::warn!(
                ?missing,
                "no acknowledgement from L1 members: revoking them"
            );
            wait_until = wait_until.max(self.revoke(&missing).await);
            Settled::Revoked
        };
        // Only when there is something to wait out: even a deadline already
        // passed costs a timer tick (up to 1 ms) in tokio.
        if wait_until > Instant::now() {
            tokio::time::sleep_until(wait_until.into()).await;
        }
        settled
    }

    /// Revokes `members` and terminates their listening sessions; returns
    /// when the last lease they may serve under ends (a full lease from now
    /// if PostgreSQL cannot say).
    async fn revoke(&self, members: &[String]) -> Instant {
        const REVOKE: &str = "WITH gone AS ( \
                 UPDATE cache_members SET revoked = true \
                 WHERE instance = ANY($1) RETURNING backend_pid, lease_until) \
             SELECT COALESCE(EXTRACT(EPOCH FROM max(lease_until) - now()) * 1000, 0)::float8, \
                    ARRAY(SELECT backend_pid FROM gone) FROM gone";
        const TERMINATE: &str = "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid";
        let sent = Instant::now();
        let members = members.to_vec();
        let revoked = async {
            let client = match self.client() {
                Some(client) => client,
                None => Arc::new(Session::new(connect_once(&self.listen_url).await?)),
            };
            let row = bounded(client.query_one(REVOKE, &[&members])).await?;
            let pids: Vec<i32> = row.get(1);
            // Best effort: the revoked mark alone stops their renewals.
            if let Err(err) = bounded(client.execute(TERMINATE, &[&pids])).await {
                tracing::debug!(error = %err, "terminating revoked sessions failed");
            }
            Ok::<_, ChannelError>(millis(row.get(0)))
        };
        match revoked.await {
            Ok(remaining) => Instant::now() + remaining,
            Err(err) => {
                tracing::warn!(error = %err, "revoking L1 members failed: waiting out a lease");
                sent + LEASE
            }
        }
    }

    /// Sessions, one after another, for the life of the process.
    async fn run(self: Arc<Self>) {
        loop {
            let reason = self.session().await;
            *self.session.lock().expect("session lock") = None;
            if let Some(local) = &self.local {
                let was_serving = local.lease.holds();
                local.lease.stop();
                local.clear();
                self.metrics.l1_serving(false);
                if was_serving {
                    tracing::warn!(reason, "L1 lease lost: cleared, joining again");
                }
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Connects and listens, joins (with an L1), then handles notifications
    /// and keeps the lease until either fails; returns why.
    async fn session(&self) -> String {
        let (client, mut connection) =
            match bounded(tokio_postgres::connect(&self.listen_url, NoTls)).await {
                Ok(connected) => connected,
                Err(err) => return format!("could not connect: {err}"),
            };
        let (notifications, received) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        if notifications.send(notification).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, "listening session failed");
                        break;
                    }
                }
            }
        });
        let client = Arc::new(Session::new(client));
        // Every instance hears announcements (an instance without L1 for
        // the Redis flag); then reads the shared mark, which covers what it
        // could not hear before.
        // Its statements have one shape each: a custom plan per call (what
        // PostgreSQL picks when a parameter folds a branch away, as the
        // announcement's `WHERE $4` does) was 11 % of its CPU under creates.
        let setup = format!(
            "SET application_name = 'content-api cache coherence'; \
             SET synchronous_commit = off; SET plan_cache_mode = force_generic_plan; \
             LISTEN {}; LISTEN {ANNOUNCEMENTS};",
            ack_channel(&self.instance)
        );
        let listening = async {
            bounded(client.batch_execute(&setup)).await?;
            Ok::<_, ChannelError>(redis_mark_pending(&client).await?.is_some())
        };
        let reason = match listening.await {
            Ok(redis_marked) => {
                if redis_marked {
                    (self.distrust_redis)();
                }
                *self.session.lock().expect("session lock") = Some(client.clone());
                tokio::select! {
                    reason = self.read(&client, received) => reason,
                    reason = self.keep_lease(&client) => reason,
                }
            }
            Err(err) => format!("could not listen: {err}"),
        };
        driver.abort();
        reason
    }

    /// Applies announcements (then acknowledges them, one statement per
    /// batch and writer) and collects acknowledgements of this instance's.
    async fn read(
        &self,
        client: &Arc<Session>,
        mut received: mpsc::UnboundedReceiver<Notification>,
    ) -> String {
        let own_acks = ack_channel(&self.instance);
        while let Some(first) = received.recv().await {
            let mut acks: HashMap<String, Vec<u64>> = HashMap::new();
            let mut next = Some(first);
            while let Some(notification) = next {
                if notification.channel() == own_acks {
                    self.acknowledged(notification.payload());
                } else if let Some(message) = Message::decode(notification.payload()) {
                    if message.writer != self.instance {
                        // Before the acknowledgement: once the writer
                        // answers, no read here goes to a replica behind it.
                        self.floor
                            .fetch_max(message.announced.position, Ordering::AcqRel);
                        self.apply(&message.announced);
                        if self.local.is_some() {
                            acks.entry(message.writer.to_owned())
                                .or_default()
                                .push(message.seq);
                        }
                    }
                }
                next = received.try_recv().ok();
            }
            for (writer, seqs) in acks {
                let seqs: Vec<String> = seqs.iter().map(u64::to_string).collect();
                let payload = format!("{}|{}", seqs.join(","), self.instance);
                let client = client.clone();
                tokio::spawn(async move {
                    let sent = async {
                        let statement = client.prepared("SELECT pg_notify($1, $2)").await?;
                        client
                            .execute(&statement, &[&ack_channel(&writer), &payload])
                            .await
                    };
                    let sent = sent.await;
                    if let Err(err) = sent {
                        tracing::debug!(error = %err, "acknowledging failed");
                    }
                });
            }
        }
        "listening session ended".to_owned()
    }

    /// Another instance's write: Redis first (no refill from a copy it may
    /// have kept), then the entries.
    fn apply(&self, announced: &Announced) {
        if announced.redis_distrusted {
            (self.distrust_redis)();
        }
        if !announced.invalidates {
            return;
        }
        if let Some(local) = &self.local {
            match &announced.items {
                Some(items) => local.invalidate(items),
                None => local.clear(),
            }
        }
        if announced.items.is_none() {
            self.emptied.notify_one();
        }
    }

    fn acknowledged(&self, payload: &str) {
        let Some((seqs, member)) = payload.split_once('|') else {
            return;
        };
        let pending = self.pending.lock().expect("pending lock");
        for seq in seqs.split(',').filter_map(|seq| seq.parse::<u64>().ok()) {
            if let Some(waiting) = pending.get(&seq) {
                waiting
                    .acked
                    .lock()
                    .expect("ack lock")
                    .insert(member.to_owned());
                waiting.notify.notify_one();
            }
        }
    }

    /// Joins and renews until revoked or expired; without an L1, keeps the
    /// session open.
    async fn keep_lease(&self, client: &Client) -> String {
        // Members long expired (processes gone without leaving) go at
        // every join: no writer waits for them, nobody lists them.
        const JOIN: &str = "WITH gone AS ( \
                 DELETE FROM cache_members WHERE lease_until < now() - interval '1 minute') \
             INSERT INTO cache_members (instance, backend_pid, lease_until) \
             VALUES ($1, pg_backend_pid(), now() + $2::float8 * interval '1 millisecond') \
             ON CONFLICT (instance) DO UPDATE SET backend_pid = EXCLUDED.backend_pid, \
                 lease_until = EXCLUDED.lease_until, revoked = false \
             RETURNING (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8";
        const RENEW: &str = "UPDATE cache_members \
             SET lease_until = now() + $2::float8 * interval '1 millisecond' \
             WHERE instance = $1 AND NOT revoked AND lease_until >= now()";
        let Some(local) = &self.local else {
            return std::future::pending().await;
        };
        let lease_ms = LEASE.as_millis() as f64;
        let sent = Instant::now();
        // Writes answered before the join were announced to others only:
        // the position now covers them.
        match bounded(client.query_one(JOIN, &[&self.instance, &lease_ms])).await {
            Ok(row) => {
                self.floor
                    .fetch_max(row.get::<_, i64>(0) as u64, Ordering::AcqRel);
            }
            Err(err) => return format!("could not join: {err}"),
        }
        local.clear();
        local.lease.hold_until(sent + LEASE - MARGIN);
        self.metrics.l1_serving(true);
        self.emptied.notify_one();
        tracing::debug!(instance = %self.instance, "L1 joined");
        let mut ticks = tokio::time::interval(RENEW_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let sent = Instant::now();
            match bounded(client.execute(RENEW, &[&self.instance, &lease_ms])).await {
                Ok(1) => local.lease.hold_until(sent + LEASE - MARGIN),
                Ok(_) => return "revoked or expired".to_owned(),
                Err(err) => return format!("could not renew: {err}"),
            }
        }
    }

    /// At shutdown: stop serving and leave, so that no writer waits for
    /// an instance that is gone.
    pub async fn shut_down(&self) {
        if let Some(local) = &self.local {
            local.lease.stop();
            local.clear();
        }
        if let Some(client) = self.client() {
            const LEAVE: &str = "DELETE FROM cache_members WHERE instance = $1";
            if let Err(err) = bounded(client.execute(LEAVE, &[&self.instance])).await {
                tracing::debug!(error = %err, "leaving the L1 members failed");
            }
        }
    }

    /// Live members and when each lease ends (ms since the Unix epoch,
    /// PostgreSQL's clock), for the admin view.
    pub async fn members(&self) -> Result<Vec<(String, i64)>, ChannelError> {
        let client = match self.client() {
            Some(client) => client,
            None => Arc::new(Session::new(connect_once(&self.listen_url).await?)),
        };
        let rows = bounded(client.query(
            "SELECT instance, (EXTRACT(EPOCH FROM lease_until) * 1000)::int8 FROM cache_members \
             WHERE lease_until > now() AND NOT revoked ORDER BY instance",
            &[],
        ))
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }
}

/// `Some(epoch)` if some write's Redis delete failed after the last flush.
async fn redis_mark_pending(client: &Client) -> Result<Option<i64>, ChannelError> {
    const PENDING: &str =
        "SELECT dirty_epoch FROM cache_redis_marks WHERE dirty_epoch > flushed_epoch";
    Ok(bounded(client.query_opt(PENDING, &[]))
        .await?
        .map(|row| row.get(0)))
}

impl SharedMark for Coherence {
    fn pending(&self) -> BoxFuture<'_, Result<Option<i64>, ()>> {
        Box::pin(async move {
            let client = match self.client() {
                Some(client) => client,
                None => Arc::new(Session::new(
                    connect_once(&self.listen_url).await.map_err(|_| ())?,
                )),
            };
            redis_mark_pending(&client).await.map_err(|_| ())
        })
    }

    fn flushed(&self, epoch: i64) -> BoxFuture<'_, ()> {
        const FLUSHED: &str =
            "UPDATE cache_redis_marks SET flushed_epoch = GREATEST(flushed_epoch, $1)";
        Box::pin(async move {
            let Some(client) = self.client() else {
                return;
            };
            if let Err(err) = bounded(client.execute(FLUSHED, &[&epoch])).await {
                tracing::debug!(error = %err, "recording the flush failed");
            }
        })
    }
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// A connection for one statement, driven until it is dropped.
async fn connect_once(url: &str) -> Result<Client, ChannelError> {
    let (client, connection) = bounded(tokio_postgres::connect(url, NoTls)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Why a statement of the channel gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("timed out")]
    TimedOut,
}

async fn bounded<T>(
    op: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ChannelError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, op).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(ChannelError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_stops_serving_before_its_lease_ends() {
        assert!(MARGIN < LEASE && RENEW_EVERY * 3 < LEASE - MARGIN);
        assert!(ACK_WAIT < LEASE);
    }
}
