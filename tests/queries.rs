//! Both list endpoints cost a fixed number of queries per page, however
//! many users or items it holds (the old service's N+1, defect 6.5); an
//! item read costs one query (a slug read, once per slug, one more), a user
//! read one; a create one after the bearer check, also when its generated
//! slug is taken; an update two (a read, then one write).
//!
//! A test binary of its own: it counts every query of the process through
//! Diesel's default instrumentation, which no concurrent test may disturb.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
use serde_json::Value;

use helpers::TestApp;

static CONTENT_QUERIES: AtomicUsize = AtomicUsize::new(0);
static USER_QUERIES: AtomicUsize = AtomicUsize::new(0);
static ALL_QUERIES: AtomicUsize = AtomicUsize::new(0);
static LAST_QUERY: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

struct QueryCounter;

impl Instrumentation for QueryCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let sql = query.to_string();
            if is_scheduler_poll(&sql) || is_webhook_sender(&sql) {
                return;
            }
            ALL_QUERIES.fetch_add(1, Ordering::SeqCst);
            *LAST_QUERY.lock().unwrap() = sql.clone();
            if sql.contains("contents") {
                CONTENT_QUERIES.fetch_add(1, Ordering::SeqCst);
            }
            if sql.contains("users") {
                USER_QUERIES.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The scheduler polls in the background every 200 ms, in a transaction
/// of its own; the reads measured here use no transaction.
fn is_scheduler_poll(sql: &str) -> bool {
    let statement = sql.trim().to_ascii_uppercase();
    sql.contains("status = 'scheduled'")
        || ["BEGIN", "COMMIT", "ROLLBACK"]
            .iter()
            .any(|word| statement.starts_with(word))
}

/// The webhook sender looks for due deliveries (and reports its lag) in
/// the background every 250 ms.
fn is_webhook_sender(sql: &str) -> bool {
    sql.contains("webhook_deliveries") || sql.contains("synchronous_commit")
}

fn counter() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(QueryCounter))
}

/// Queries (touching contents, touching users) made by one request; this
/// binary's only test runs them one at a time.
async fn queries_of(app: &TestApp, path: &str) -> (usize, usize, Value) {
    let (contents_before, users_before) = (
        CONTENT_QUERIES.load(Ordering::SeqCst),
        USER_QUERIES.load(Ordering::SeqCst),
    );
    let response = app.get(path).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    (
        CONTENT_QUERIES.load(Ordering::SeqCst) - contents_before,
        USER_QUERIES.load(Ordering::SeqCst) - users_before,
        body,
    )
}

#[tokio::test]
async fn list_endpoints_make_one_query_per_page_not_one_per_row() {
    set_default_instrumentation(counter).unwrap();
    let app = TestApp::spawn().await;
    for _ in 0..12 {
        let user = app.new_user().await;
        for n in 0..2 {
            app.create_content(&user, &format!("Item {n}"), "A body long enough.")
                .await;
        }
    }

    let before = ALL_QUERIES.load(Ordering::SeqCst);
    let (contents, users, body) = queries_of(&app, "/api/v1/users?limit=10").await;
    assert_eq!(
        ALL_QUERIES.load(Ordering::SeqCst) - before,
        1,
        "a page of users"
    );
    assert_eq!(body.as_array().unwrap().len(), 10);
    assert!(body
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["contents"].as_array().unwrap().len() == 2));
    assert_eq!(
        contents, 1,
        "one statement for the page of users and their items"
    );
    assert_eq!(users, 1, "the same statement");

    let (contents, _, body) = queries_of(&app, "/api/v1/content?limit=20").await;
    assert_eq!(body.as_array().unwrap().len(), 20);
    assert_eq!(contents, 1, "items and their authors in one query");

    // One user and their newest items: one statement, whatever the
    // contents_limit. An item miss: one round trip.
    let id = body[0]["user"]["id"].as_i64().unwrap();
    for (path, items, queries) in [
        (format!("/api/v1/users/{id}"), 2, 1),
        (format!("/api/v1/users/{id}?contents_limit=1"), 1, 1),
        (format!("/api/v1/users/{id}?contents_limit=0"), 0, 1),
    ] {
        let before = ALL_QUERIES.load(Ordering::SeqCst);
        let (_, _, user) = queries_of(&app, &path).await;
        assert_eq!(
            ALL_QUERIES.load(Ordering::SeqCst) - before,
            queries,
            "{path}"
        );
        assert_eq!(user["contents"].as_array().unwrap().len(), items, "{path}");
    }
    let item = body[0]["id"].as_i64().unwrap();
    let before = ALL_QUERIES.load(Ordering::SeqCst);
    queries_of(&app, &format!("/api/v1/content/{item}")).await;
    assert_eq!(
        ALL_QUERIES.load(Ordering::SeqCst) - before,
        1,
        "an item miss"
    );

    // A slug: its owner is looked up once per instance, then remembered
    // (the item itself is in L1 since its read above: L1 needs no Redis).
    let slug = body[0]["slug"].as_str().unwrap().to_owned();
    for (read, queries) in [("first", 1), ("second", 0)] {
        let before = ALL_QUERIES.load(Ordering::SeqCst);
        let (_, _, found) = queries_of(&app, &format!("/api/v1/content/slug/{slug}")).await;
        assert_eq!(found["id"], item);
        assert_eq!(
            ALL_QUERIES.load(Ordering::SeqCst) - before,
            queries,
            "{read} slug read"
        );
    }

    // A create: the bearer check, then one statement (its own transaction:
    // slug claim, row, outbox record, author), also for a taken slug.
    let user = app.new_user().await;
    for (title, slug) in [("Same title", "same-title"), ("Same title", "same-title-2")] {
        let before = ALL_QUERIES.load(Ordering::SeqCst);
        let created = app
            .create_content(&user, title, "A body long enough.")
            .await;
        assert_eq!(created["slug"], slug);
        assert_eq!(
            ALL_QUERIES.load(Ordering::SeqCst) - before,
            2,
            "the bearer check and the create"
        );
        assert!(LAST_QUERY.lock().unwrap().contains("create_content("));
    }

    // An update: the bearer check, one read of the item and its author,
    // then one statement (slug claim, revision, next version, outbox row,
    // author), also when the slug changes.
    let id = app
        .create_content(&user, "To be changed", "A body long enough.")
        .await["id"]
        .as_i64()
        .unwrap();
    for body in [
        serde_json::json!({"title": "Changed once"}),
        serde_json::json!({"title": "Changed twice", "slug": "changed-twice"}),
    ] {
        let before = ALL_QUERIES.load(Ordering::SeqCst);
        let response = app
            .request(reqwest::Method::PATCH, &format!("/api/v1/content/{id}"))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            ALL_QUERIES.load(Ordering::SeqCst) - before,
            3,
            "the bearer check, the read and the write"
        );
        assert!(LAST_QUERY
            .lock()
            .unwrap()
            .contains("write_content_version("));
    }
}
