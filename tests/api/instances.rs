//! Several instances on one PostgreSQL and one Redis (own key prefix), each
//! with its L1: no read sent after a write was answered returns older data,
//! on any instance (ARCHITECTURE.md, "the L1 protocol").

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use content_api::cache::coherence::{ACK_WAIT, LEASE};
use content_api::config::Settings;
use content_api::domain::{Hooks, PauseHook};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::binary::{base_vars, ServerProcess};
use crate::helpers::{
    base_settings, free_port, OwnRedis, PgRelay, TestApp, TestDatabase, TestUser,
};

type Redis = fn(&mut Settings);

on_redis_and_cluster!(
    every_instance_acknowledges_a_write_before_it_is_answered,
    reads_after_an_acknowledged_write_see_it_on_all_three_instances,
);

/// `count` instances sharing the first one's database, Redis and key
/// prefix, each serving from its L1.
async fn instances(count: usize, customize: impl FnOnce(&mut Settings)) -> Vec<TestApp> {
    let first = TestApp::spawn_with(customize).await;
    let mut all = vec![];
    for _ in 1..count {
        all.push(TestApp::start(first.settings.clone(), None).await);
    }
    all.insert(0, first);
    for app in &all {
        app.await_l1_serving().await;
    }
    all
}

async fn set_title(app: &TestApp, user: &TestUser, id: i64, title: &str) -> Duration {
    let started = Instant::now();
    let response = app
        .request(Method::PATCH, &format!("/api/v1/content/{id}"))
        .bearer_auth(&user.token)
        .json(&json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    started.elapsed()
}

async fn title_of(app: &TestApp, id: i64) -> String {
    let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    item["title"].as_str().unwrap().to_owned()
}

async fn first_listed_title(app: &TestApp) -> String {
    let list: Value = app.get_json("/api/v1/content").await;
    list[0]["title"].as_str().unwrap().to_owned()
}

/// The item's title, `None` unless the read answered 200.
async fn read_title(app: &TestApp, id: i64) -> Option<String> {
    let response = app.get(&format!("/api/v1/content/{id}")).await;
    if response.status() != 200 {
        return None;
    }
    let item: Value = response.json().await.ok()?;
    item["title"].as_str().map(str::to_owned)
}

async fn read_listed_title(app: &TestApp) -> Option<String> {
    let response = app.get("/api/v1/content").await;
    if response.status() != 200 {
        return None;
    }
    let list: Value = response.json().await.ok()?;
    list[0]["title"].as_str().map(str::to_owned)
}

/// Reads the item and the default listing twice: the second read is an L1
/// hit.
async fn warm(app: &TestApp, id: i64) {
    for _ in 0..2 {
        title_of(app, id).await;
        first_listed_title(app).await;
    }
}

async fn acknowledged_writes(app: &TestApp) -> f64 {
    app.metric("cache_l1_ack_duration_seconds_count").await
}

async fn every_instance_acknowledges_a_write_before_it_is_answered(redis: Redis) {
    let apps = instances(3, redis).await;
    let user = apps[0].new_user().await;
    let id = apps[0].post_item(&user, "Version 0").await;
    for app in &apps {
        warm(app, id).await;
        assert!(app.l1_hits("item").await >= 1.0);
        assert!(app.l1_hits("listing").await >= 1.0);
    }
    for (round, writer) in apps.iter().enumerate() {
        let title = format!("Version {}", round + 1);
        let took = set_title(writer, &user, id, &title).await;
        for app in &apps {
            assert_eq!(title_of(app, id).await, title, "item, after {took:?}");
            assert_eq!(first_listed_title(app).await, title, "listing");
        }
        // Read again: served from L1 once more, still the new title.
        let hits = writer.l1_hits("item").await;
        assert_eq!(title_of(writer, id).await, title);
        assert_eq!(writer.l1_hits("item").await, hits + 1.0);
    }
    // Every write waited for the others' acknowledgements (the create and
    // each update) and nobody had to be removed.
    assert_eq!(acknowledged_writes(&apps[0]).await, 2.0);
    assert_eq!(acknowledged_writes(&apps[1]).await, 1.0);
    assert_eq!(acknowledged_writes(&apps[2]).await, 1.0);
    for app in &apps {
        assert_eq!(app.l1_state().await, "serving");
    }
}

/// The read-your-writes checker: writes round-robin over three instances;
/// readers on every instance note the last acknowledged version before
/// sending and must get it or a later one, from the item and the listing.
async fn reads_after_an_acknowledged_write_see_it_on_all_three_instances(redis: Redis) {
    const WRITES: u64 = 45;
    let apps = Arc::new(instances(3, redis).await);
    let user = apps[0].new_user().await;
    let id = apps[0].post_item(&user, "rev 0").await;
    let mut checker = Checker::start(apps.clone(), id);
    let slowest = checker.write(&user, WRITES).await;
    let total_reads = checker.finish().await;
    let l1_hits = l1_hits(&apps).await;
    assert!(l1_hits > 0.0, "the readers were served from L1 too");
    println!("{WRITES} writes, {total_reads} checked reads, {l1_hits} L1 hits, slowest write {slowest:?}");
}

fn settings_on(redis: &OwnRedis) -> impl FnOnce(&mut Settings) {
    let url = redis.url();
    move |s: &mut Settings| {
        s.redis_url = Some(url);
        s.cache_key_prefix = String::new();
    }
}

/// A writer without L1 and a reader with one, on `redis`.
async fn writer_and_reader(redis: &OwnRedis) -> (TestApp, TestApp) {
    let writer = TestApp::spawn_with(|s| {
        settings_on(redis)(s);
        s.l1_cache_bytes = 0;
    })
    .await;
    let mut reader_settings = writer.settings.clone();
    reader_settings.l1_cache_bytes = 64 << 20;
    let reader = TestApp::start(reader_settings, None).await;
    reader.await_l1_serving().await;
    (writer, reader)
}

async fn l1_hits(apps: &[TestApp]) -> f64 {
    let mut sum = 0.0;
    for app in apps {
        sum += app.l1_hits("item").await + app.l1_hits("listing").await;
    }
    sum
}

#[tokio::test]
async fn an_instance_whose_listening_session_is_terminated_serves_nothing_stale() {
    let redis = OwnRedis::start_on(free_port()).await;
    let (writer, reader) = writer_and_reader(&redis).await;
    let user = writer.new_user().await;
    let id = writer.post_item(&user, "Before the drop").await;
    warm(&reader, id).await;
    assert!(reader.l1_hits("item").await >= 1.0);

    // The writer has no L1: the reader is the only member.
    let terminated = writer
        .sql_text("(SELECT count(pg_terminate_backend(backend_pid))::text FROM cache_members)");
    assert_eq!(terminated, "1", "the reader's listening session");
    set_title(&writer, &user, id, "After the drop").await;
    assert_eq!(title_of(&reader, id).await, "After the drop");
    assert_eq!(first_listed_title(&reader).await, "After the drop");

    // It listens and joins again, and serves from L1 once more.
    reader.await_l1_serving().await;
    assert_eq!(
        writer.sql_text("(SELECT count(*)::text FROM cache_members WHERE NOT revoked)"),
        "1"
    );
    warm(&reader, id).await;
    let hits = reader.l1_hits("item").await;
    assert_eq!(title_of(&reader, id).await, "After the drop");
    assert_eq!(reader.l1_hits("item").await, hits + 1.0);
    set_title(&writer, &user, id, "After the rejoin").await;
    assert_eq!(title_of(&reader, id).await, "After the rejoin");
}

#[tokio::test]
async fn with_redis_frozen_every_l1_keeps_serving_and_every_write_is_seen() {
    let redis = OwnRedis::start_on(free_port()).await;
    let apps = instances(2, settings_on(&redis)).await;
    let user = apps[0].new_user().await;
    let id = apps[0].post_item(&user, "Before the outage").await;
    for app in &apps {
        warm(app, id).await;
    }

    // Frozen, not stopped: connections stay open and nothing answers.
    redis.freeze(true);
    for app in &apps {
        app.await_cache("degraded").await;
        assert_eq!(app.l1_state().await, "serving");
    }
    let took = set_title(&apps[0], &user, id, "During the outage").await;
    assert!(took < Duration::from_millis(500), "{took:?}");
    for app in &apps {
        assert_eq!(title_of(app, id).await, "During the outage");
        assert_eq!(first_listed_title(app).await, "During the outage");
    }
    let hits = l1_hits(&apps).await;
    for app in &apps {
        assert_eq!(title_of(app, id).await, "During the outage");
        assert_eq!(first_listed_title(app).await, "During the outage");
        assert_eq!(app.l1_state().await, "serving");
    }
    assert_eq!(
        l1_hits(&apps).await,
        hits + 4.0,
        "served from L1 while Redis is frozen"
    );

    // Back: Redis still holds the entries from before the write, which
    // could not be deleted; each instance flushes before using it again.
    redis.freeze(false);
    for app in &apps {
        app.await_cache_ok().await;
    }
    let reader = TestApp::start(apps[0].settings.clone(), None).await;
    reader.await_cache_ok().await;
    for app in apps.iter().chain([&reader]) {
        assert_eq!(title_of(app, id).await, "During the outage");
        assert_eq!(first_listed_title(app).await, "During the outage");
    }
}

/// The read-your-writes checker of three instances while their private
/// Redis is killed, replaced, frozen (SIGSTOP, then `CLIENT PAUSE`) and
/// restarted.
#[tokio::test]
async fn a_redis_killed_frozen_and_restarted_never_makes_a_read_stale() {
    let port = free_port();
    let redis = OwnRedis::start_on(port).await;
    let apps = Arc::new(instances(3, settings_on(&redis)).await);
    let user = apps[0].new_user().await;
    let id = apps[0].post_item(&user, "rev 0").await;
    let mut checker = Checker::start(apps.clone(), id);
    checker.write(&user, 5).await;
    let mut redis = redis;
    redis.stop();
    checker.write(&user, 5).await;
    let mut replaced = OwnRedis::start_on(port).await;
    for app in apps.iter() {
        app.await_cache_ok().await;
    }
    checker.write(&user, 5).await;
    replaced.freeze(true);
    checker.write(&user, 5).await;
    replaced.freeze(false);
    checker.write(&user, 5).await;
    // Frozen the other way: every client's commands held (`CLIENT PAUSE`).
    crate::helpers::pause_clients(&replaced.url(), 1500).await;
    checker.write(&user, 5).await;
    for app in apps.iter() {
        app.await_cache_ok().await;
    }
    replaced.stop();
    checker.write(&user, 3).await;
    let _restarted = OwnRedis::start_on(port).await;
    for app in apps.iter() {
        app.await_cache_ok().await;
    }
    checker.write(&user, 5).await;
    let reads = checker.finish().await;
    assert!(l1_hits(&apps).await > 0.0);
    println!("38 writes, {reads} checked reads through kill, freeze, pause and restart");
}

/// A stale read: (instance, the acknowledged floor, item, listed) versions.
type StaleRead = (usize, u64, u64, u64);

/// Readers on every instance, each noting the last acknowledged version
/// before it sends a read: an item or listing older than that is stale.
/// The writes go round-robin over the instances, each acknowledged before
/// the next.
struct Checker {
    apps: Arc<Vec<TestApp>>,
    id: i64,
    written: u64,
    acknowledged: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    readers: Vec<tokio::task::JoinHandle<(u64, Vec<StaleRead>)>>,
}

impl Checker {
    fn start(apps: Arc<Vec<TestApp>>, id: i64) -> Self {
        let acknowledged = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let version = |title: &str| -> u64 { title.trim_start_matches("rev ").parse().unwrap() };
        let readers = (0..apps.len())
            .map(|reader| {
                let (apps, acknowledged, done) = (apps.clone(), acknowledged.clone(), done.clone());
                tokio::spawn(async move {
                    let (mut reads, mut stale) = (0u64, Vec::new());
                    let mut turn = reader;
                    while !done.load(Ordering::SeqCst) {
                        let app = &apps[turn % apps.len()];
                        turn += 1;
                        let floor = acknowledged.load(Ordering::SeqCst);
                        // Unavailable (PostgreSQL cut off) is not stale.
                        let (Some(item), Some(listed)) =
                            (read_title(app, id).await, read_listed_title(app).await)
                        else {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        let (item, listed) = (version(&item), version(&listed));
                        reads += 2;
                        if item < floor || listed < floor {
                            stale.push((turn % apps.len(), floor, item, listed));
                        }
                    }
                    (reads, stale)
                })
            })
            .collect();
        Self {
            apps,
            id,
            written: 0,
            acknowledged,
            done,
            readers,
        }
    }

    /// `count` more writes (titles `rev {n}`); returns the slowest.
    async fn write(&mut self, user: &TestUser, count: u64) -> Duration {
        let mut slowest = Duration::ZERO;
        for _ in 0..count {
            self.written += 1;
            let writer = &self.apps[self.written as usize % self.apps.len()];
            let title = format!("rev {}", self.written);
            slowest = slowest.max(set_title(writer, user, self.id, &title).await);
            self.acknowledged.store(self.written, Ordering::SeqCst);
        }
        slowest
    }

    /// Stops the readers; fails on any stale read; returns how many reads
    /// were checked.
    async fn finish(self) -> u64 {
        self.done.store(true, Ordering::SeqCst);
        let (mut reads, mut stale) = (0, Vec::new());
        for reader in self.readers {
            let (count, found) = reader.await.unwrap();
            reads += count;
            stale.extend(found);
        }
        assert!(
            stale.is_empty(),
            "stale reads (instance, floor, item, listed): {stale:?}"
        );
        assert!(
            reads > self.written,
            "{reads} reads of {} writes",
            self.written
        );
        reads
    }
}

#[tokio::test]
async fn without_redis_every_instance_serves_l1_and_sees_every_write() {
    reads_after_an_acknowledged_write_see_it_on_all_three_instances(|_| {}).await;
}

#[tokio::test]
async fn a_fill_racing_an_invalidation_loses() {
    let writer = TestApp::spawn_with(crate::helpers::use_redis).await;
    let user = writer.new_user().await;
    let id = writer.post_item(&user, "Old title").await;
    title_of(&writer, id).await;

    // The reader's first read of the item: a Redis hit (the old title),
    // held before its copy into L1 until the write is answered.
    let item_key = writer.keys().item(id);
    let (reached, mut held) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let hook: PauseHook = {
        let release = release.clone();
        Arc::new(move |key: String| {
            let hold = key == item_key && reached.send(()).is_ok();
            let release = release.clone();
            Box::pin(async move {
                if hold {
                    release.acquire().await.unwrap().forget();
                }
            })
        })
    };
    let hooks = Hooks {
        before_l1_fill: Some(hook),
        ..Hooks::default()
    };
    let reader = Arc::new(TestApp::start_with_hooks(writer.settings.clone(), None, hooks).await);
    reader.await_l1_serving().await;
    let racing = {
        let reader = reader.clone();
        tokio::spawn(async move { title_of(&reader, id).await })
    };
    held.recv().await.unwrap();
    set_title(&writer, &user, id, "New title").await;
    release.add_permits(1);
    assert_eq!(racing.await.unwrap(), "Old title", "it raced the write");
    assert_eq!(title_of(&reader, id).await, "New title");
    assert_eq!(
        title_of(&reader, id).await,
        "New title",
        "and L1 holds the new one"
    );
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_paused_instance_serves_nothing_older_than_a_write_answered_meanwhile() {
    let writer = TestApp::spawn_with(crate::helpers::use_redis).await;
    let mut vars = base_vars(&writer.settings.database_url);
    vars.retain(|(name, _)| *name != "REDIS_URL");
    vars.push(("REDIS_URL", writer.settings.redis_url.clone().unwrap()));
    vars.push(("CACHE_KEY_PREFIX", writer.settings.cache_key_prefix.clone()));
    vars.push(("RUN_MIGRATIONS", "false".to_owned()));
    let paused = ServerProcess::start(vars).await;
    let read = |path: String| {
        let port = paused.port;
        async move {
            let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while read("/health/ready".into()).await["l1"] != "serving" {
        assert!(
            Instant::now() < deadline,
            "the second instance never served L1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let user = writer.new_user().await;
    let id = writer.post_item(&user, "Before the pause").await;
    for _ in 0..2 {
        assert_eq!(
            read(format!("/api/v1/content/{id}")).await["title"],
            "Before the pause"
        );
        read("/api/v1/content".into()).await;
    }

    signal(paused.pid(), "STOP");
    let paused_at = Instant::now();
    // While its lease still holds: no acknowledgement comes, so the writer
    // removes it and waits its lease out.
    let within_lease = set_title(&writer, &user, id, "While paused").await;
    assert!(within_lease >= ACK_WAIT, "{within_lease:?}");
    assert!(
        within_lease < ACK_WAIT + LEASE + Duration::from_millis(300),
        "{within_lease:?}"
    );
    // Paused longer than a lease; a write answered meanwhile.
    tokio::time::sleep((LEASE + Duration::from_millis(500)).saturating_sub(paused_at.elapsed()))
        .await;
    let after_lease = set_title(&writer, &user, id, "Written during the pause").await;
    signal(paused.pid(), "CONT");

    assert_eq!(
        read(format!("/api/v1/content/{id}")).await["title"],
        "Written during the pause",
        "its first read after SIGCONT"
    );
    assert_eq!(
        read("/api/v1/content".into()).await[0]["title"],
        "Written during the pause"
    );
    println!("writes while paused: {within_lease:?} within its lease, {after_lease:?} after it");
    paused.stop();
}

/// A writer killed right after its commit (the seam holds it there, after
/// cutting off its coherence channel: it can neither complete nor hear of
/// its write again): another instance completes the write's invalidation
/// from the outbox, and stops serving the old value within 2 s.
#[tokio::test]
async fn a_writer_killed_after_its_commit_leaves_nothing_stale_beyond_two_seconds() {
    let database = TestDatabase::cloned().await;
    let relay = Arc::new(PgRelay::start().await);
    let mut settings = base_settings(database.url.clone());
    crate::helpers::use_redis(&mut settings);
    let mut writer_settings = settings.clone();
    writer_settings.database_listen_url = relay.url(&database);
    let reader = TestApp::start(settings, Some(database)).await;
    reader.await_l1_serving().await;

    let armed = Arc::new(AtomicBool::new(false));
    let (committed, mut commit) = mpsc::unbounded_channel();
    let hook: PauseHook = {
        let (armed, relay) = (armed.clone(), relay.clone());
        Arc::new(move |_record: String| {
            let killed = armed.load(Ordering::SeqCst);
            if killed {
                relay.cut();
                let _ = committed.send(Instant::now());
            }
            Box::pin(async move {
                if killed {
                    std::future::pending::<()>().await;
                }
            })
        })
    };
    let hooks = Hooks {
        after_commit: Some(hook),
        ..Hooks::default()
    };
    let writer = Arc::new(TestApp::start_with_hooks(writer_settings, None, hooks).await);
    writer.await_l1_serving().await;
    let user = Arc::new(writer.new_user().await);
    let id = writer.post_item(&user, "Before the crash").await;
    warm(&reader, id).await;
    assert_eq!(title_of(&reader, id).await, "Before the crash");

    armed.store(true, Ordering::SeqCst);
    let never_answered = {
        let (writer, user) = (writer.clone(), user.clone());
        tokio::spawn(async move { set_title(&writer, &user, id, "After the crash").await })
    };
    let committed_at = commit.recv().await.unwrap();
    let mut reads = 0;
    loop {
        let (item, listed) = (
            title_of(&reader, id).await,
            first_listed_title(&reader).await,
        );
        reads += 1;
        if item == "After the crash" && listed == "After the crash" {
            break;
        }
        assert!(
            committed_at.elapsed() < Duration::from_secs(2),
            "still {item:?} / {listed:?} {:?} after the commit",
            committed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = committed_at.elapsed();
    // Redis too: an instance without L1 reads the new title.
    let mut fresh_settings = reader.settings.clone();
    fresh_settings.l1_cache_bytes = 0;
    let fresh = TestApp::start(fresh_settings, None).await;
    assert_eq!(title_of(&fresh, id).await, "After the crash");
    assert_eq!(first_listed_title(&fresh).await, "After the crash");
    assert_eq!(
        reader.sql_text("(SELECT count(*)::text FROM cache_outbox)"),
        "0",
        "the record was completed and deleted"
    );
    assert!(
        !never_answered.is_finished(),
        "the killed writer never answered"
    );
    never_answered.abort();
    println!("new title everywhere {took:?} after the commit ({reads} reads)");
}

/// Two instances with L1 on a Redis Cluster of three primaries with a
/// replica each; the primary holding `key_of(item)` is killed while the
/// read-your-writes checker runs and both instances write.
async fn a_cluster_primary_killed_under_the_checker(key_of: fn(&TestApp, i64) -> String) {
    let cluster = tokio::task::spawn_blocking(|| crate::helpers::TestCluster::start(3, 1))
        .await
        .map(Arc::new)
        .unwrap();
    let url = cluster.url();
    let apps = Arc::new(
        instances(2, move |s| {
            s.redis_url = Some(url);
            s.redis_cluster = true;
            s.cache_key_prefix = "own-cluster:".into();
        })
        .await,
    );
    for app in apps.iter() {
        app.await_cache_ok().await;
    }
    let user = apps[0].new_user().await;
    let id = apps[0].post_item(&user, "rev 0").await;
    for app in apps.iter() {
        warm(app, id).await;
    }
    let mut checker = Checker::start(apps.clone(), id);
    checker.write(&user, 6).await;
    let killed = cluster.kill_primary_of(&key_of(&apps[0], id));
    checker.write(&user, 10).await;
    // The cluster's own failover first, so that a slow election on a
    // loaded machine is told apart from an instance that does not recover.
    let failing_over = cluster.clone();
    tokio::task::spawn_blocking(move || {
        failing_over.wait_for_failover(killed, Duration::from_secs(30))
    })
    .await
    .unwrap();
    for app in apps.iter() {
        app.await_cache_ok().await;
    }
    checker.write(&user, 6).await;
    let reads = checker.finish().await;
    println!("primary on port {killed} killed: 22 writes, {reads} checked reads, none stale");
}

#[tokio::test]
async fn the_cluster_primary_of_the_items_key_killed_makes_no_read_stale() {
    a_cluster_primary_killed_under_the_checker(|app, id| app.keys().item(id)).await;
}

#[tokio::test]
async fn the_cluster_primary_of_the_listings_keys_killed_makes_no_read_stale() {
    a_cluster_primary_killed_under_the_checker(|app, _| app.keys().listing("all")).await;
}

/// Two instances reaching PostgreSQL (pool and listening session) through
/// a relay the test cuts for a moment while the checker runs.
#[tokio::test]
async fn postgres_unreachable_for_a_moment_makes_no_read_stale() {
    let database = TestDatabase::cloned().await;
    let relay = PgRelay::start().await;
    let mut settings = base_settings(relay.url(&database));
    crate::helpers::use_redis(&mut settings);
    let first = TestApp::start(settings.clone(), Some(database)).await;
    let second = TestApp::start(settings, None).await;
    let apps = Arc::new(vec![first, second]);
    for app in apps.iter() {
        app.await_l1_serving().await;
    }
    let user = apps[0].new_user().await;
    let id = apps[0].post_item(&user, "rev 0").await;
    let mut checker = Checker::start(apps.clone(), id);
    checker.write(&user, 5).await;
    relay.cut();
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    relay.restore();
    for app in apps.iter() {
        app.await_l1_serving().await;
    }
    checker.write(&user, 5).await;
    let reads = checker.finish().await;
    println!(
        "PostgreSQL cut for {:?}: 10 writes, {reads} checked reads, none stale",
        LEASE + Duration::from_millis(200)
    );
}
