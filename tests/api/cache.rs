//! The cache against the real Redis: keys, TTLs and values; hits
//! that never reach PostgreSQL; every invalidation path; the cache-aside
//! race; 304; the old service's defects 6.1, 6.2 and 6.6; and Redis absent,
//! stopped, slow and coming back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use content_api::cache::coherence::LEASE;
use content_api::config::Settings;
use content_api::domain::{Hooks, PauseHook};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::helpers::{free_port, pause_clients, problem, OwnRedis, TestApp, TestUser};

/// How a scenario reaches Redis: `use_redis` (one server) or `use_cluster`.
type Redis = fn(&mut Settings);

on_redis_and_cluster!(
    items_and_listings_are_stored_as_the_response_bytes_with_the_ttl,
    the_ttl_is_configurable,
    an_empty_listing_is_cached,
    a_hit_is_served_without_touching_postgres,
    a_repeated_item_read_keeps_its_author,
    a_create_deletes_every_listing_and_the_reserved_key_but_no_item,
    an_update_deletes_its_item_and_every_listing,
    a_delete_deletes_its_item_and_every_listing,
    a_user_update_shows_at_once_in_items_and_listings,
    a_reader_that_raced_an_update_does_not_store_its_old_value,
    a_listing_reader_that_raced_a_create_does_not_store_its_old_page,
    etags_give_304_without_a_body_and_change_with_the_content,
    concurrent_cold_reads_cost_one_query,
    a_write_to_one_item_refuses_no_fill_of_another,
);

async fn ttl_ms(app: &TestApp, key: &str) -> i64 {
    app.redis().await.pttl(key).await.unwrap()
}

async fn cached(app: &TestApp, key: &str) -> Option<Vec<u8>> {
    app.redis().await.get(key).await.unwrap()
}

async fn body_of(response: reqwest::Response) -> Vec<u8> {
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

async fn patch_content(app: &TestApp, user: &TestUser, id: i64, body: Value) -> reqwest::Response {
    app.request(Method::PATCH, &format!("/api/v1/content/{id}"))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn items_and_listings_are_stored_as_the_response_bytes_with_the_ttl(redis: Redis) {
    let app = TestApp::spawn_with(redis).await;
    let user = app.new_user().await;
    let item = app
        .create_content(&user, "Cached title", "A body long enough to pass.")
        .await;
    let id = item["id"].as_i64().unwrap();

    let body = body_of(app.get(&format!("/api/v1/content/{id}")).await).await;
    assert_eq!(cached(&app, &app.keys().item(id)).await.unwrap(), body);
    let ttl = ttl_ms(&app, &app.keys().item(id)).await;
    assert!((590_000..=600_000).contains(&ttl), "ttl {ttl}");

    let listing = body_of(app.get("/api/v1/content").await).await;
    assert_eq!(
        cached(&app, &app.keys().listing("all")).await.unwrap(),
        listing
    );
    assert!(ttl_ms(&app, &app.keys().listing("all")).await > 590_000);

    // Explicit defaults are the same page, and the same key.
    app.get("/api/v1/content?limit=20").await;
    let other = body_of(
        app.get(&format!(
            "/api/v1/content?q=Cached&user_id={}&limit=5",
            user.id
        ))
        .await,
    )
    .await;
    let name = app
        .keys()
        .listing(&format!("limit=5&user_id={}&q=cached", user.id));
    assert_eq!(cached(&app, &name).await.unwrap(), other);
    assert!(ttl_ms(&app, &name).await > 590_000);
}

async fn the_ttl_is_configurable(redis: Redis) {
    let app = TestApp::spawn_with(|s| {
        redis(s);
        s.cache_ttl_seconds = 120;
    })
    .await;
    app.get("/api/v1/content").await;
    let ttl = ttl_ms(&app, &app.keys().listing("all")).await;
    assert!((110_000..=120_000).contains(&ttl), "ttl {ttl}");
}

async fn an_empty_listing_is_cached(redis: Redis) {
    // Defect 6.6 of the old service.
    let app = TestApp::spawn_with(redis).await;
    assert_eq!(body_of(app.get("/api/v1/content").await).await, b"[]");
    assert_eq!(
        cached(&app, &app.keys().listing("all")).await.unwrap(),
        b"[]"
    );
    let filtered = body_of(app.get("/api/v1/content?user_id=999").await).await;
    assert_eq!(filtered, b"[]");
    assert_eq!(
        cached(&app, &app.keys().listing("limit=20&user_id=999"))
            .await
            .unwrap(),
        b"[]"
    );
}

async fn a_hit_is_served_without_touching_postgres(redis: Redis) {
    // Redis alone: with L1 on, the second read would not reach Redis.
    let app = TestApp::spawn_with(move |s| {
        redis(s);
        s.l1_cache_bytes = 0;
    })
    .await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Original title").await;
    let first_item = body_of(app.get(&format!("/api/v1/content/{id}")).await).await;
    let first_list = body_of(app.get("/api/v1/content").await).await;

    // Change the row behind the service's back: a hit cannot see it.
    app.sql(&format!(
        "UPDATE contents SET title = 'Changed behind' WHERE id = {id}"
    ));
    assert_eq!(
        body_of(app.get(&format!("/api/v1/content/{id}")).await).await,
        first_item
    );
    assert_eq!(body_of(app.get("/api/v1/content").await).await, first_list);

    // Once the key is gone, PostgreSQL is read again.
    let _: () = app.redis().await.del(app.keys().item(id)).await.unwrap();
    let fresh: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(fresh["title"], "Changed behind");
}

async fn a_repeated_item_read_keeps_its_author(redis: Redis) {
    // Defect 6.1: the old cache entry lacked the author and the second read was a 500.
    let app = TestApp::spawn_with(redis).await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Twice read").await;
    let first: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    let second = app.get(&format!("/api/v1/content/{id}")).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(second["user"]["id"], user.id);
    assert!(second["user"]["name"].is_string());
}

/// Fills the item key and three listing keys, plus the reserved name.
async fn warm(app: &TestApp, ids: &[i64]) {
    for id in ids {
        app.get(&format!("/api/v1/content/{id}")).await;
    }
    app.get("/api/v1/content").await;
    app.get("/api/v1/content?limit=1").await;
    app.get("/api/v1/content?q=body").await;
    let _: () = app
        .redis()
        .await
        .set(app.keys().all_contents(), "old")
        .await
        .unwrap();
}

async fn listing_keys(app: &TestApp) -> Vec<String> {
    app.scan(&app.key("content_with_user:*")).await
}

async fn a_create_deletes_every_listing_and_the_reserved_key_but_no_item(redis: Redis) {
    let app = TestApp::spawn_with(redis).await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "First item").await;
    warm(&app, &[id]).await;
    assert_eq!(listing_keys(&app).await.len(), 3);

    app.create_content(&user, "Second item", "Another body long enough.")
        .await;
    assert!(
        listing_keys(&app).await.is_empty(),
        "every content_with_user:* key is gone"
    );
    assert!(cached(&app, &app.keys().all_contents()).await.is_none());
    assert!(
        cached(&app, &app.keys().item(id)).await.is_some(),
        "items are untouched"
    );

    let list: Value = app.get_json("/api/v1/content").await;
    assert_eq!(
        list[0]["title"], "Second item",
        "no stale listing after the 201"
    );
}

async fn an_update_deletes_its_item_and_every_listing(redis: Redis) {
    let app = TestApp::spawn_with(redis).await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Before edit").await;
    let other = app.post_item(&user, "Untouched").await;
    warm(&app, &[id, other]).await;

    assert_eq!(
        patch_content(&app, &user, id, json!({"title": "After edit"}))
            .await
            .status(),
        200
    );
    assert!(cached(&app, &app.keys().item(id)).await.is_none());
    assert!(cached(&app, &app.keys().item(other)).await.is_some());
    assert!(listing_keys(&app).await.is_empty());
    assert!(cached(&app, &app.keys().all_contents()).await.is_none());

    let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(item["title"], "After edit");
    let list: Value = app.get_json("/api/v1/content").await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["title"] == "After edit"));
}

async fn a_delete_deletes_its_item_and_every_listing(redis: Redis) {
    let app = TestApp::spawn_with(redis).await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Doomed item").await;
    warm(&app, &[id]).await;

    let response = app
        .request(Method::DELETE, &format!("/api/v1/content/{id}"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(cached(&app, &app.keys().item(id)).await.is_none());
    assert!(listing_keys(&app).await.is_empty());
    problem(app.get(&format!("/api/v1/content/{id}")).await, 404).await;
    assert_eq!(body_of(app.get("/api/v1/content").await).await, b"[]");
}

async fn a_user_update_shows_at_once_in_items_and_listings(redis: Redis) {
    // Defect 6.2: listings showed the old name until expiry.
    let app = TestApp::spawn_with(redis).await;
    let author = app.new_user().await;
    let bystander = app.new_user().await;
    let mine = app.post_item(&author, "Author's item").await;
    let theirs = app.post_item(&bystander, "Other item").await;
    warm(&app, &[mine, theirs]).await;

    let response = app
        .request(Method::PATCH, &format!("/api/v1/users/{}", author.id))
        .bearer_auth(&author.token)
        .json(&json!({"name": "Renamed Author"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(cached(&app, &app.keys().item(mine)).await.is_none());
    assert!(cached(&app, &app.keys().item(theirs)).await.is_some());
    assert!(listing_keys(&app).await.is_empty());

    let item: Value = app.get_json(&format!("/api/v1/content/{mine}")).await;
    assert_eq!(item["user"]["name"], "Renamed Author");
    let list: Value = app.get_json("/api/v1/content").await;
    let shown = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == mine)
        .unwrap();
    assert_eq!(shown["user"]["name"], "Renamed Author");
}

/// Holds the next request that stores one chosen key until released.
struct StoreGate {
    target: Arc<Mutex<Option<String>>>,
    reached: mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
}

fn store_gate() -> (Hooks, StoreGate) {
    let target: Arc<Mutex<Option<String>>> = Arc::default();
    let release = Arc::new(Semaphore::new(0));
    let (reached_tx, reached) = mpsc::unbounded_channel();
    let hook: PauseHook = {
        let (target, release) = (target.clone(), release.clone());
        Arc::new(move |key: String| {
            // Holds once: the gate disarms itself.
            let mut armed = target.lock().unwrap();
            let hold = armed.as_deref() == Some(key.as_str());
            if hold {
                *armed = None;
            }
            drop(armed);
            let (release, reached_tx) = (release.clone(), reached_tx.clone());
            Box::pin(async move {
                if hold {
                    reached_tx.send(()).unwrap();
                    release.acquire().await.unwrap().forget();
                }
            })
        })
    };
    (
        Hooks {
            before_cache_store: Some(hook),
            ..Hooks::default()
        },
        StoreGate {
            target,
            reached,
            release,
        },
    )
}

async fn a_reader_that_raced_an_update_does_not_store_its_old_value(redis: Redis) {
    let (hooks, mut gate) = store_gate();
    let app = Arc::new(TestApp::spawn_with_hooks(redis, hooks).await);
    let user = app.new_user().await;
    let id = app.post_item(&user, "Old title").await;
    let key = app.keys().item(id);
    *gate.target.lock().unwrap() = Some(key.clone());

    // The reader misses, reads the old row, and is held before its store.
    let reader = tokio::spawn({
        let app = app.clone();
        async move {
            app.get(&format!("/api/v1/content/{id}"))
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::timeout(Duration::from_secs(10), gate.reached.recv())
        .await
        .expect("the reader reached its store")
        .unwrap();

    // The write commits and invalidates while the reader is held.
    assert_eq!(
        patch_content(&app, &user, id, json!({"title": "New title"}))
            .await
            .status(),
        200
    );
    gate.release.add_permits(1);
    let raced = reader.await.unwrap();
    assert_eq!(
        raced["title"], "Old title",
        "the reader read before the write"
    );

    assert!(
        cached(&app, &key).await.is_none(),
        "the old value was not stored"
    );
    let after: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(after["title"], "New title");
}

async fn a_listing_reader_that_raced_a_create_does_not_store_its_old_page(redis: Redis) {
    let (hooks, mut gate) = store_gate();
    let app = Arc::new(TestApp::spawn_with_hooks(redis, hooks).await);
    let user = app.new_user().await;
    app.create_content(&user, "Existing item", "A body long enough.")
        .await;
    *gate.target.lock().unwrap() = Some(app.keys().listing("all"));

    let reader = tokio::spawn({
        let app = app.clone();
        async move {
            app.get("/api/v1/content")
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::timeout(Duration::from_secs(10), gate.reached.recv())
        .await
        .expect("the reader reached its store")
        .unwrap();
    app.create_content(&user, "Created meanwhile", "A body long enough.")
        .await;
    gate.release.add_permits(1);
    assert_eq!(reader.await.unwrap().as_array().unwrap().len(), 1);

    assert!(cached(&app, &app.keys().listing("all")).await.is_none());
    let list: Value = app.get_json("/api/v1/content").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
}

async fn etags_give_304_without_a_body_and_change_with_the_content(redis: Redis) {
    let app = TestApp::spawn_with(redis).await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Tagged item").await;
    let path = format!("/api/v1/content/{id}");

    for path in [path.as_str(), "/api/v1/content"] {
        let first = app.get(path).await;
        assert_eq!(
            first.headers()["cache-control"],
            "public, max-age=0, must-revalidate"
        );
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong: {etag}"
        );
        // A miss and a hit give the same tag.
        let again = app.get(path).await;
        assert_eq!(again.headers()["etag"], etag.as_str());

        let conditional = app
            .request(Method::GET, path)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(conditional.status(), 304);
        assert_eq!(
            conditional.headers()["etag"],
            etag.as_str(),
            "a 304 repeats the ETag"
        );
        assert!(conditional.bytes().await.unwrap().is_empty());

        let stale = app
            .request(Method::GET, path)
            .header("if-none-match", "\"stale\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200);
    }

    let before = app.get(&path).await.headers()["etag"].clone();
    patch_content(&app, &user, id, json!({"title": "Retagged item"})).await;
    let after = app
        .request(Method::GET, &path)
        .header("if-none-match", before.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    assert_ne!(after.headers()["etag"], before);
}

#[tokio::test]
async fn cache_control_is_configurable() {
    let app = TestApp::spawn_with(|s| s.cache_control = "private, max-age=5".into()).await;
    assert_eq!(
        app.get("/api/v1/content").await.headers()["cache-control"],
        "private, max-age=5"
    );
}

/// Exercises every content endpoint and checks the answers are right. A
/// write may also wait out one L1 lease: it cannot tell other instances'
/// L1s of it, so it waits until none can still be serving.
async fn content_round_trip(app: &TestApp, max_each: Duration) {
    let user = app.new_user().await;
    let timed = |started: Instant, what: &str| {
        let limit = if what == "get" {
            max_each
        } else {
            max_each + LEASE
        };
        assert!(
            started.elapsed() < limit,
            "{what} took {:?}",
            started.elapsed()
        );
    };
    let started = Instant::now();
    let id = app.post_item(&user, "Outage item").await;
    timed(started, "create");
    for _ in 0..2 {
        let started = Instant::now();
        let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
        timed(started, "get");
        assert_eq!(item["title"], "Outage item");
        let list: Value = app.get_json("/api/v1/content").await;
        assert_eq!(list[0]["id"], id);
    }
    let started = Instant::now();
    assert_eq!(
        patch_content(app, &user, id, json!({"title": "Edited in outage"}))
            .await
            .status(),
        200
    );
    timed(started, "update");
    let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(item["title"], "Edited in outage");
    let list: Value = app.get_json("/api/v1/content").await;
    assert_eq!(list[0]["title"], "Edited in outage");
}

async fn readiness_cache(app: &TestApp) -> String {
    let response = app.get("/health/ready").await;
    assert_eq!(
        response.status(),
        200,
        "Redis never makes the service unready"
    );
    let body: Value = response.json().await.unwrap();
    body["cache"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn without_redis_url_everything_is_served_from_postgres_and_l1() {
    let app = TestApp::spawn().await;
    content_round_trip(&app, Duration::from_secs(1)).await;
    assert_eq!(readiness_cache(&app).await, "off");
    let ready: Value = app.get_json("/health/ready").await;
    assert_eq!(ready["l1"], "serving", "L1 needs no Redis");
}

#[tokio::test]
async fn an_unreachable_redis_is_skipped_quickly() {
    let port = free_port();
    let app = TestApp::spawn_with(|s| {
        s.redis_url = Some(format!("redis://127.0.0.1:{port}"));
        s.cache_key_prefix = "unreachable:".into();
    })
    .await;
    content_round_trip(&app, Duration::from_millis(500)).await;
    assert_eq!(readiness_cache(&app).await, "degraded");
}

async fn app_on(redis: &OwnRedis) -> TestApp {
    let url = redis.url();
    TestApp::spawn_with(move |s| {
        s.redis_url = Some(url);
        s.cache_key_prefix = String::new();
    })
    .await
}

/// Waits (bounded by `limit`) until readiness reports `want`.
async fn await_cache_state(app: &TestApp, want: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if readiness_cache(app).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "cache not {want} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_stopped_mid_test_then_back_is_picked_up_within_five_seconds() {
    let port = free_port();
    let mut redis = OwnRedis::start_on(port).await;
    let app = app_on(&redis).await;
    assert_eq!(readiness_cache(&app).await, "ok");
    let user = app.new_user().await;
    let id = app.post_item(&user, "Survives outages").await;
    app.get(&format!("/api/v1/content/{id}")).await;
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert!(conn.exists::<_, bool>(app.keys().item(id)).await.unwrap());

    redis.stop();
    content_round_trip(&app, Duration::from_millis(500)).await;
    assert_eq!(
        readiness_cache(&app).await,
        "degraded",
        "the circuit opened"
    );

    let restarted = OwnRedis::start_on(port).await;
    let took = await_cache_state(&app, "ok", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5));
    // An item L1 does not hold yet: its read fills Redis.
    let fresh = app.post_item(&user, "After the outage").await;
    app.get(&format!("/api/v1/content/{fresh}")).await;
    let mut conn = restarted
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert!(
        conn.exists::<_, bool>(app.keys().item(fresh))
            .await
            .unwrap(),
        "the cache is used again"
    );
}

#[tokio::test]
async fn a_slow_redis_is_bypassed_and_stale_entries_are_flushed_on_recovery() {
    let redis = OwnRedis::start_on(free_port()).await;
    let app = app_on(&redis).await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Before the stall").await;
    app.get(&format!("/api/v1/content/{id}")).await;
    app.get("/api/v1/content").await;
    assert!(cached(&app, &app.keys().item(id)).await.is_some());

    // Every command now waits 1.5 s: far over the 50 ms budget.
    pause_clients(&redis.url(), 1500).await;
    let started = Instant::now();
    // The write cannot invalidate Redis; the answers must still be right.
    // It waits out one L1 lease (no other instance can be told of it).
    assert_eq!(
        patch_content(&app, &user, id, json!({"title": "During the stall"}))
            .await
            .status(),
        200
    );
    let write = started.elapsed();
    assert!(write < LEASE + Duration::from_millis(300), "{write:?}");
    let started = Instant::now();
    let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(item["title"], "During the stall");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "no read waited on Redis"
    );
    assert_eq!(readiness_cache(&app).await, "degraded");

    // After the pause, the stale entries left from before must not be served.
    await_cache_state(&app, "ok", Duration::from_secs(5)).await;
    let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(item["title"], "During the stall");
    let list: Value = app.get_json("/api/v1/content").await;
    assert_eq!(list[0]["title"], "During the stall");
}

#[tokio::test]
async fn writes_while_redis_was_never_reached_are_flushed_before_it_is_used() {
    let redis = OwnRedis::start_on(free_port()).await;
    let first = app_on(&redis).await;
    let user = first.new_user().await;
    let id = first.post_item(&user, "Cached before start").await;
    first.get(&format!("/api/v1/content/{id}")).await;

    // A second instance starts while Redis stalls: it has never connected.
    // (3 s: its startup, which waits up to 1 s for Redis, must end inside it
    // even on a loaded machine.)
    pause_clients(&redis.url(), 3000).await;
    let second = TestApp::start(first.settings.clone(), None).await;
    assert_eq!(readiness_cache(&second).await, "degraded");
    assert_eq!(
        patch_content(&second, &user, id, json!({"title": "Written blind"}))
            .await
            .status(),
        200
    );

    await_cache_state(&second, "ok", Duration::from_secs(5)).await;
    for app in [&first, &second] {
        let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
        assert_eq!(
            item["title"], "Written blind",
            "no stale read after the write was answered"
        );
    }
}

/// Counts the loads that reach their store for one key, holding the first
/// until released.
fn counting_gate(target: String) -> (Hooks, Arc<std::sync::atomic::AtomicUsize>, Arc<Semaphore>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let loads = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let hook: PauseHook = {
        let (loads, release) = (loads.clone(), release.clone());
        Arc::new(move |key: String| {
            let first = key == target && loads.fetch_add(1, Ordering::SeqCst) == 0;
            let release = release.clone();
            Box::pin(async move {
                if first {
                    release.acquire().await.unwrap().forget();
                }
            })
        })
    };
    (
        Hooks {
            before_cache_store: Some(hook),
            ..Hooks::default()
        },
        loads,
        release,
    )
}

/// Bounded wait until `cache_coalesced_loads_total{family}` reaches `want`.
async fn await_coalesced(app: &TestApp, family: &str, want: u64) {
    let series = format!("cache_coalesced_loads_total{{family=\"{family}\"}} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.get("/metrics").await.text().await.unwrap();
        let joined = text
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |value| value.parse::<u64>().unwrap());
        if joined >= want {
            assert_eq!(joined, want);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{joined} of {want} requests joined"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn concurrent_cold_reads_cost_one_query(redis: Redis) {
    const READERS: usize = 100;
    let setup = TestApp::spawn_with(redis).await;
    let user = setup.new_user().await;
    let id = setup.post_item(&user, "Hot item").await;
    for (path, key, family) in [
        (
            format!("/api/v1/content/{id}"),
            setup.keys().item(id),
            "item",
        ),
        (
            "/api/v1/content?limit=5".to_owned(),
            setup.keys().listing("limit=5"),
            "listing",
        ),
    ] {
        // A second instance on the same database and Redis, with the gate.
        // A lookup slower than the usual 50 ms would read PostgreSQL without
        // joining (the degraded path, tested elsewhere): 100 lookups at once
        // on a loaded machine can be.
        let (hooks, loads, release) = counting_gate(key);
        let mut settings = setup.settings.clone();
        settings.redis_timeout = Duration::from_secs(2);
        let app = Arc::new(TestApp::start_with_hooks(settings, None, hooks).await);
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (app, path) = (app.clone(), path.clone());
                tokio::spawn(async move { body_of(app.get(&path).await).await })
            })
            .collect();
        await_coalesced(&app, family, READERS as u64 - 1).await;
        release.add_permits(1);
        let mut bodies = Vec::new();
        for reader in readers {
            bodies.push(reader.await.unwrap());
        }
        assert!(
            bodies.windows(2).all(|pair| pair[0] == pair[1]),
            "{family}: one answer"
        );
        assert_eq!(
            loads.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{family}: {READERS} cold reads, one PostgreSQL query"
        );
    }
}

/// A cluster of the test's own (`primaries` × (1 + `replicas`) nodes) and an
/// app on it whose cache serves.
async fn app_on_own_cluster(
    primaries: usize,
    replicas: usize,
) -> (crate::helpers::TestCluster, TestApp) {
    let cluster = tokio::task::spawn_blocking(move || {
        crate::helpers::TestCluster::start(primaries, replicas)
    })
    .await
    .unwrap();
    let url = cluster.url();
    let app = TestApp::spawn_with(move |s| {
        s.redis_url = Some(url);
        s.redis_cluster = true;
        s.cache_key_prefix = "own-cluster:".into();
    })
    .await;
    (cluster, app)
}

/// Posts `n` items titled `{title} {n}`, and reads each and the default
/// listing once, so that all are cached.
async fn cached_items(app: &TestApp, user: &TestUser, n: usize, title: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(app.post_item(user, &format!("{title} {i}")).await);
    }
    for id in &ids {
        app.get(&format!("/api/v1/content/{id}")).await;
    }
    app.get("/api/v1/content").await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failover_under_load_answers_every_request_and_serves_nothing_stale() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let (cluster, app) = app_on_own_cluster(3, 1).await;
    let (cluster, app) = (Arc::new(cluster), Arc::new(app));
    let user = Arc::new(app.new_user().await);
    let ids = cached_items(&app, &user, 12, "Item").await;

    // Readers over items and the listing; a writer that reads its own
    // write back after every acknowledgement.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (app, stop, ids) = (app.clone(), stop.clone(), ids.clone());
            tokio::spawn(async move {
                let (mut requests, mut failures) = (0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let path = match requests % 4 {
                        0 => "/api/v1/content".to_owned(),
                        n => format!(
                            "/api/v1/content/{}",
                            ids[(reader * 4 + n + requests) % ids.len()]
                        ),
                    };
                    match app.request(Method::GET, &path).send().await {
                        Ok(response) if response.status() == 200 => {}
                        Ok(response) => failures.push(format!("{path}: {}", response.status())),
                        Err(err) => failures.push(format!("{path}: {err}")),
                    }
                    requests += 1;
                }
                (requests, failures)
            })
        })
        .collect();
    let writer = {
        let (app, stop, user, ids) = (app.clone(), stop.clone(), user.clone(), ids.clone());
        tokio::spawn(async move {
            let (mut writes, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let id = ids[writes % ids.len()];
                let title = format!("Item {id} v{}", writes + 1);
                let answered = patch_content(&app, &user, id, json!({ "title": title })).await;
                if answered.status() != 200 {
                    failures.push(format!("write {id}: {}", answered.status()));
                    continue;
                }
                let read: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
                if read["title"] != title {
                    failures.push(format!(
                        "stale read of {id}: {} after {title}",
                        read["title"]
                    ));
                }
                writes += 1;
            }
            (writes, failures)
        })
    };

    // Kill the primary that holds the first item, under load.
    let key = app.keys().item(ids[0]);
    let killed_at = Instant::now();
    let killed = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.kill_primary_of(&key))
            .await
            .unwrap()
    };
    await_cache_state(&app, "degraded", Duration::from_secs(10)).await;
    let recovered = await_cache_state(&app, "ok", Duration::from_secs(30)).await;
    let recovery = killed_at.elapsed();
    // More load on the new topology, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut requests, mut failures) = (0, Vec::new());
    for reader in readers {
        let (count, mut failed) = reader.await.unwrap();
        requests += count;
        failures.append(&mut failed);
    }
    let (writes, mut failed) = writer.await.unwrap();
    failures.append(&mut failed);
    eprintln!(
        "failover of the primary on port {killed}: {requests} reads and {writes} writes, \
         {} failures, cache back {recovery:?} after the kill ({recovered:?} after it was seen)",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(writes > 0 && requests > 0);

    // Nothing stale afterwards, and the cache is used again.
    for id in &ids {
        let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
        let stored = app.sql_text(&format!("(SELECT title FROM contents WHERE id = {id})"));
        assert_eq!(item["title"], stored.as_str(), "item {id}");
    }
    let listing: Value = app.get_json("/api/v1/content?limit=100").await;
    for item in listing.as_array().unwrap() {
        let stored = app.sql_text(&format!(
            "(SELECT title FROM contents WHERE id = {})",
            item["id"]
        ));
        assert_eq!(item["title"], stored.as_str());
    }
    // Cached again on the new primary (bounded: under a loaded machine a
    // timed-out call may open the circuit for a probe interval).
    let deadline = Instant::now() + Duration::from_secs(10);
    while cached(&app, &app.keys().item(ids[0])).await.is_none() {
        assert!(Instant::now() < deadline, "the cache is not used again");
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.get(&format!("/api/v1/content/{}", ids[0])).await;
    }
}

async fn a_write_to_one_item_refuses_no_fill_of_another(redis: Redis) {
    let (hooks, mut gate) = store_gate();
    let app = Arc::new(TestApp::spawn_with_hooks(redis, hooks).await);
    let user = app.new_user().await;
    let written = app.post_item(&user, "Written item").await;
    let read = app.post_item(&user, "Read item").await;
    *gate.target.lock().unwrap() = Some(app.keys().item(read));

    // A reader of one item is held between its database read and its fill…
    let reader = tokio::spawn({
        let app = app.clone();
        async move { body_of(app.get(&format!("/api/v1/content/{read}")).await).await }
    });
    tokio::time::timeout(Duration::from_secs(10), gate.reached.recv())
        .await
        .expect("the reader reached its store")
        .unwrap();
    // …while another item is written.
    let answered = patch_content(&app, &user, written, json!({"title": "Changed meanwhile"})).await;
    assert_eq!(answered.status(), 200);
    gate.release.add_permits(1);
    let body = reader.await.unwrap();
    assert_eq!(
        cached(&app, &app.keys().item(read)).await,
        Some(body),
        "the guard of one item is not another's"
    );
}

#[tokio::test]
async fn on_a_cluster_stale_entries_are_flushed_from_every_primary_on_recovery() {
    let (cluster, app) = app_on_own_cluster(3, 0).await;
    let user = app.new_user().await;
    // Items whose keys land on different primaries, and the listing.
    let ids = cached_items(&app, &user, 6, "Before the stall").await;
    for id in &ids {
        assert!(cached(&app, &app.keys().item(*id)).await.is_some());
    }

    // Every node stalls past the 50 ms budget: the writes cannot invalidate.
    for node in cluster.node_urls() {
        pause_clients(&node, 1500).await;
    }
    for id in &ids {
        let answered = patch_content(
            &app,
            &user,
            *id,
            json!({"title": format!("During the stall {id}")}),
        )
        .await;
        assert_eq!(answered.status(), 200);
    }
    assert_eq!(readiness_cache(&app).await, "degraded");

    // Back: nothing written before the stall may be served, from any primary.
    await_cache_state(&app, "ok", Duration::from_secs(10)).await;
    for id in &ids {
        let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
        assert_eq!(item["title"], format!("During the stall {id}"));
    }
    let list: Value = app.get_json("/api/v1/content").await;
    assert!(list.as_array().unwrap().iter().all(|item| item["title"]
        .as_str()
        .unwrap()
        .starts_with("During the stall")));
}

/// Five items with long bodies: a default listing well over 1 KiB.
async fn large_listing(app: &TestApp) -> TestUser {
    let user = app.new_user().await;
    for n in 0..5 {
        app.create_content(
            &user,
            &format!("Long item {n}"),
            &"A long body. ".repeat(40),
        )
        .await;
    }
    user
}

async fn listing_with(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.request(Method::GET, "/api/v1/content");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .unwrap();
    json
}

async fn listings_are_stored_compressed_and_sent_by_accept_encoding(l1_cache_bytes: u64) {
    let app = TestApp::spawn_with(|s| {
        crate::helpers::use_redis(s);
        s.l1_cache_bytes = l1_cache_bytes;
    })
    .await;
    large_listing(&app).await;
    for _ in 0..2 {
        let gzip = listing_with(&app, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(gzip.status(), 200);
        assert_eq!(gzip.headers()["content-encoding"], "gzip");
        assert_eq!(gzip.headers()["vary"], "Accept-Encoding");
        let gzip_tag = gzip.headers()["etag"].to_str().unwrap().to_owned();
        let compressed = gzip.bytes().await.unwrap().to_vec();
        assert_eq!(
            cached(&app, &app.keys().listing("all")).await.unwrap(),
            compressed,
            "Redis holds the bytes sent"
        );

        let identity = listing_with(&app, &[]).await;
        assert_eq!(identity.status(), 200);
        assert!(identity.headers().get("content-encoding").is_none());
        assert_eq!(identity.headers()["vary"], "Accept-Encoding");
        let identity_tag = identity.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(identity_tag, gzip_tag, "one strong ETag per encoding");
        let json = identity.bytes().await.unwrap().to_vec();
        assert_eq!(gunzip(&compressed), json);
        assert_eq!(
            serde_json::from_slice::<Value>(&json)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            5
        );
        assert!(
            compressed.len() * 3 < json.len(),
            "{} of {}",
            compressed.len(),
            json.len()
        );

        let revalidate = |tag: &str, encoding: &str| {
            let (tag, encoding) = (tag.to_owned(), encoding.to_owned());
            let app = &app;
            async move {
                listing_with(
                    app,
                    &[("if-none-match", &tag), ("accept-encoding", &encoding)],
                )
                .await
                .status()
            }
        };
        assert_eq!(revalidate(&gzip_tag, "gzip").await, 304);
        assert_eq!(revalidate(&identity_tag, "identity").await, 304);
        assert_eq!(
            revalidate(&gzip_tag, "identity").await,
            200,
            "another representation"
        );
        assert_eq!(revalidate(&identity_tag, "gzip").await, 200);
    }
    let small = app
        .request(Method::GET, "/api/v1/content?user_id=999")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        small.headers().get("content-encoding").is_none(),
        "[] stays JSON"
    );
    assert_eq!(small.bytes().await.unwrap(), "[]");
}

#[tokio::test]
async fn listings_are_compressed_with_l1() {
    listings_are_stored_compressed_and_sent_by_accept_encoding(64 << 20).await;
}

#[tokio::test]
async fn listings_are_compressed_from_redis_alone() {
    listings_are_stored_compressed_and_sent_by_accept_encoding(0).await;
}

#[tokio::test]
async fn the_cache_overview_is_for_admins_and_shows_every_layer() {
    let app = TestApp::spawn_with_redis().await;
    app.await_l1_serving().await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Looked at").await;
    for _ in 0..2 {
        app.get(&format!("/api/v1/content/{id}")).await;
        app.get("/api/v1/content").await;
    }
    assert_eq!(app.get("/api/v1/admin/cache").await.status(), 401);
    let as_user = app
        .request(Method::GET, "/api/v1/admin/cache")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(as_user, 403).await["detail"],
        "Only an admin may manage the cache"
    );
    let flush_as_user = flush_cache(&app, &user.token).await;
    assert_eq!(flush_as_user.status(), 403);

    let admin = app.new_admin().await;
    let overview: Value = app
        .request(Method::GET, "/api/v1/admin/cache")
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let l1 = &overview["l1"];
    assert_eq!(l1["serving"], true, "{overview}");
    assert_eq!(l1["items"]["entries"], 1, "{overview}");
    assert_eq!(l1["listings"]["entries"], 1, "{overview}");
    assert!(l1["items"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(l1["hits"], 2, "{overview}");
    assert_eq!(l1["misses"], 2, "{overview}");
    assert!(l1["lease_remaining_ms"].as_u64().unwrap() > 0);
    assert_eq!(overview["redis"]["state"], "ok");
    assert_eq!(overview["redis"]["misses"], 2, "{overview}");
    assert!(overview["redis"]["usage"]["entries"].as_u64().unwrap() >= 2);
    let live: Vec<&str> = overview["live_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["instance"].as_str().unwrap())
        .collect();
    assert_eq!(live, [l1["instance"].as_str().unwrap()]);
}

/// `POST /admin/cache/flush` with `token`.
async fn flush_cache(app: &TestApp, token: &str) -> reqwest::Response {
    app.send_as(Method::POST, "/api/v1/admin/cache/flush", token)
        .await
}

#[tokio::test]
async fn a_flush_empties_every_layer_of_every_instance() {
    let first = TestApp::spawn_with_redis().await;
    let second = TestApp::start(first.settings.clone(), None).await;
    let user = first.new_user().await;
    let id = first.post_item(&user, "Cached twice").await;
    for app in [&first, &second] {
        app.await_l1_serving().await;
        for _ in 0..2 {
            app.get(&format!("/api/v1/content/{id}")).await;
            app.get("/api/v1/content").await;
        }
    }
    first.sql(&format!(
        "UPDATE contents SET title = 'Changed behind' WHERE id = {id}"
    ));
    let admin = first.new_admin().await;
    let flushed = flush_cache(&first, &admin.token).await;
    assert_eq!(flushed.status(), 204);
    assert!(first.scan(&first.key("content*")).await.is_empty());
    for app in [&first, &second] {
        let item: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
        assert_eq!(item["title"], "Changed behind");
        let list: Value = app.get_json("/api/v1/content").await;
        assert_eq!(list[0]["title"], "Changed behind");
    }
}

/// Pages stored by another instance while a flush walks the keyspace stay
/// in the tag set, so the next write still deletes every one of them (a
/// flush that deleted the tag set apart from its members left such a page
/// served, stale, until its TTL).
#[tokio::test]
async fn pages_stored_during_a_flush_are_deleted_by_the_next_write() {
    let flusher = TestApp::spawn_with(|s| {
        crate::helpers::use_redis(s);
        s.l1_cache_bytes = 0;
    })
    .await;
    let reader = Arc::new(TestApp::start(flusher.settings.clone(), None).await);
    let user = flusher.new_user().await;
    for n in 0..3 {
        flusher.post_item(&user, &format!("Listed {n}")).await;
    }
    let admin = flusher.new_admin().await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|reader_no| {
            let (reader, done) = (reader.clone(), done.clone());
            tokio::spawn(async move {
                let mut limit = reader_no;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    limit = limit % 40 + 1;
                    reader.get(&format!("/api/v1/content?limit={limit}")).await;
                }
            })
        })
        .collect();
    for _ in 0..100 {
        assert_eq!(flush_cache(&flusher, &admin.token).await.status(), 204);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    flusher.post_item(&user, "After the flushes").await;
    assert_eq!(
        flusher.scan(&flusher.key("content_with_user*")).await,
        Vec::<String>::new(),
        "pages left after a write"
    );
}

/// After an admin flush the items read most are loaded again in the
/// background: within 3 s, without any read of them, ≥ 90 % of their reads
/// are hits.
#[tokio::test]
async fn after_a_flush_the_most_read_items_are_warm_again_within_three_seconds() {
    let app = TestApp::spawn_with(|s| {
        crate::helpers::use_redis(s);
        s.warm_items = 20;
    })
    .await;
    let user = app.new_user().await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(app.post_item(&user, &format!("Warm or cold {n}")).await);
    }
    let (hot, cold) = ids.split_at(20);
    // Reads are sampled (about one in 16): enough that each hot item is.
    for _ in 0..96 {
        for id in hot {
            app.get(&format!("/api/v1/content/{id}")).await;
        }
    }
    for id in cold {
        app.get(&format!("/api/v1/content/{id}")).await;
    }
    let warmups = app.metric("cache_warmups_total").await;
    let admin = app.new_admin().await;
    assert_eq!(flush_cache(&app, &admin.token).await.status(), 204);
    let started = Instant::now();
    while app.metric("cache_warmups_total").await <= warmups {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no warm-up within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let warmed_in = started.elapsed();
    let hits_before = app.l1_hits("item").await;
    for id in hot {
        app.get(&format!("/api/v1/content/{id}")).await;
    }
    let hits = app.l1_hits("item").await - hits_before;
    println!("warm {warmed_in:?} after the flush: {hits} of 20 hot reads hit L1");
    assert!(hits >= 18.0, "{hits} of 20 reads of the hottest items hit");
}

#[tokio::test]
async fn a_flush_without_redis_is_a_503_problem() {
    let mut redis = OwnRedis::start_on(free_port()).await;
    let app = app_on(&redis).await;
    let admin = app.new_admin().await;
    redis.stop();
    let flushed = flush_cache(&app, &admin.token).await;
    assert!(flushed.headers().contains_key("retry-after"));
    assert_eq!(
        problem(flushed, 503).await["detail"],
        "Redis is unavailable: the cache could not be flushed; retry shortly"
    );
}

/// A delete some instance could not make is marked in PostgreSQL: an
/// instance that starts later (told of nothing) flushes Redis before it
/// trusts it, and records the flush.
#[tokio::test]
async fn an_instance_started_after_a_missed_delete_flushes_before_it_trusts_redis() {
    let writer = TestApp::spawn_with(|s| {
        crate::helpers::use_redis(s);
        s.l1_cache_bytes = 0;
    })
    .await;
    writer.await_cache_ok().await;
    let user = writer.new_user().await;
    let id = writer.post_item(&user, "Fresh").await;
    // What a delete that failed leaves behind: an old copy, and the mark.
    let key = writer.keys().item(id);
    let stale = br#"{"title":"Stale"}"#.to_vec();
    let _: () = writer.redis().await.set(&key, &stale).await.unwrap();
    writer.sql("UPDATE cache_redis_marks SET dirty_epoch = dirty_epoch + 1");

    let later = TestApp::start(writer.settings.clone(), None).await;
    later.await_cache_ok().await;
    let item: Value = later.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(item["title"], "Fresh");
    assert_eq!(
        later.sql_text("(SELECT (flushed_epoch = dirty_epoch)::text FROM cache_redis_marks)"),
        "true",
        "the flush is recorded"
    );
    let refilled = cached(&later, &key).await.unwrap();
    assert_ne!(refilled, stale, "the old copy was flushed, then refilled");
}
