//! The editorial workflow: statuses and visibility (nothing unpublished in a
//! public read or in the shared cache), scheduled publishing on two
//! instances, slugs with history, tags, sorting, revisions and lost-update
//! protection with `If-Match`.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{problem, use_redis, TestApp, TestUser};

const BODY: &str = "A body that is long enough to pass the rules.";

async fn post(app: &TestApp, user: &TestUser, body: Value) -> Response {
    app.request_as(Method::POST, "/api/v1/content", &user.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn posted(app: &TestApp, user: &TestUser, body: Value) -> Value {
    let response = post(app, user, body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

async fn patch(app: &TestApp, user: &TestUser, id: i64, body: Value) -> Response {
    app.request_as(Method::PATCH, &format!("/api/v1/content/{id}"), &user.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn patched(app: &TestApp, user: &TestUser, id: i64, body: Value) -> Value {
    let response = patch(app, user, id, body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect()
}

async fn public_ids(app: &TestApp, query: &str) -> Vec<i64> {
    ids(&app.get_json(&format!("/api/v1/content{query}")).await)
}

/// A stored body as text (listings of 1 KiB or more are gzip).
fn readable(stored: &[u8]) -> String {
    if stored.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(stored), &mut text)
            .unwrap();
        text
    } else {
        String::from_utf8_lossy(stored).into_owned()
    }
}

fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_new_item_is_published_version_1_with_a_slug_from_its_title() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let response = post(
        &app,
        &user,
        json!({"title": "Ọlá's First Post!", "content": BODY}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let write_tag = etag(&response);
    let item: Value = response.json().await.unwrap();
    assert_eq!(item["status"], "published");
    assert_eq!(item["version"], 1);
    assert_eq!(item["slug"], "ola-s-first-post");
    assert_eq!(item["tags"], json!([]));
    assert_eq!(item["publish_at"], Value::Null);
    assert_eq!(item["published_at"], item["created_at"]);
    let read = app.get(&format!("/api/v1/content/{}", item["id"])).await;
    assert_eq!(etag(&read), write_tag, "a write answers the tag a read has");

    let again = posted(
        &app,
        &user,
        json!({"title": "Ọlá's first post", "content": BODY}),
    )
    .await;
    assert_eq!(again["slug"], "ola-s-first-post-2");
    let chosen = post(
        &app,
        &user,
        json!({"title": "Other", "content": BODY, "slug": "ola-s-first-post"}),
    )
    .await;
    let problem = problem(chosen, 409).await;
    assert_eq!(problem["detail"], "Slug already in use");
    let tagged = posted(
        &app,
        &user,
        json!({"title": "Tagged", "content": BODY, "slug": "my-choice",
               "tags": ["Rust", "rust", " Web Dev ", "!!"]}),
    )
    .await;
    assert_eq!(tagged["slug"], "my-choice");
    assert_eq!(tagged["tags"], json!(["rust", "web-dev"]));
}

#[tokio::test]
async fn fields_that_break_a_rule_are_422_and_none_depends_on_the_clock() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let past = "2000-01-01T00:00:00Z";
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for (body, field) in [
        (json!({"status": "scheduled"}), "publish_at"),
        (
            json!({"status": "scheduled", "publish_at": null}),
            "publish_at",
        ),
        (json!({"status": "secret"}), "status"),
        (json!({"publish_at": "tomorrow"}), "publish_at"),
        (json!({"slug": "Not A Slug"}), "slug"),
        (
            json!({"tags": (0..11).map(|n| format!("t{n}")).collect::<Vec<_>>()}),
            "tags",
        ),
        (json!({"tags": ["ok", 5]}), "tags"),
    ] {
        let mut full = json!({"title": "Valid title", "content": BODY});
        full.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let problem = problem(post(&app, &user, full).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }

    let planned = posted(
        &app,
        &user,
        json!({"title": "Planned", "content": BODY, "status": "draft", "publish_at": past}),
    )
    .await;
    assert_eq!(planned["status"], "draft");
    assert_eq!(
        planned["publish_at"], "2000-01-01T00:00:00.000000Z",
        "a draft keeps its planned date"
    );
    let published = posted(
        &app,
        &user,
        json!({"title": "Now", "content": BODY, "status": "published", "publish_at": future}),
    )
    .await;
    assert_eq!(published["status"], "published");
    assert_eq!(
        published["publish_at"],
        Value::Null,
        "ignored on a published item"
    );
    let overdue = posted(
        &app,
        &user,
        json!({"title": "Overdue", "content": BODY, "status": "scheduled", "publish_at": past}),
    )
    .await;
    assert_eq!(
        overdue["status"], "published",
        "a schedule that has come publishes at once"
    );
    assert!(overdue["published_at"].is_string());
    let overdue_id = overdue["id"].as_i64().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/content/{overdue_id}"))
            .await
            .status(),
        200
    );

    let scheduled = posted(
        &app,
        &user,
        json!({"title": "Later", "content": BODY, "status": "scheduled", "publish_at": future}),
    )
    .await;
    assert_eq!(scheduled["status"], "scheduled");
    assert_eq!(scheduled["published_at"], Value::Null);
    let id = scheduled["id"].as_i64().unwrap();
    let drafted = patched(&app, &user, id, json!({"status": "draft"})).await;
    assert_eq!(drafted["status"], "draft");
    assert_eq!(
        drafted["publish_at"], scheduled["publish_at"],
        "kept as the planned date"
    );
    let rescheduled = patched(&app, &user, id, json!({"status": "scheduled"})).await;
    assert_eq!(
        rescheduled["status"], "scheduled",
        "scheduled at the stored date"
    );
    let refused = problem(
        patch(
            &app,
            &user,
            id,
            json!({"status": "scheduled", "publish_at": null}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "publish_at");
    let due = patched(&app, &user, id, json!({"publish_at": past})).await;
    assert_eq!(due["status"], "published", "a past time publishes at once");
    assert_eq!(
        app.get(&format!("/api/v1/content/{id}")).await.status(),
        200
    );

    let never_planned = published["id"].as_i64().unwrap();
    let conflict = problem(
        patch(&app, &user, never_planned, json!({"status": "scheduled"})).await,
        409,
    )
    .await;
    assert_eq!(
        conflict["detail"],
        format!("Content with id {never_planned} has no publish_at to schedule it at")
    );
    let ignored = patched(&app, &user, never_planned, json!({"publish_at": future})).await;
    assert_eq!(
        ignored["publish_at"],
        Value::Null,
        "ignored on a published item"
    );
}

/// Drafts are visible to their owner and admins only (private, never
/// cached); to everyone else they do not exist, anywhere.
#[tokio::test]
async fn a_draft_exists_only_for_its_owner_and_admins_and_never_in_the_shared_cache() {
    let app = TestApp::spawn_with(use_redis).await;
    app.await_cache_ok().await;
    let owner = app.new_user().await;
    let stranger = app.new_user().await;
    let admin = app.new_admin().await;
    let public = posted(
        &app,
        &owner,
        json!({"title": "Public searchable", "content": BODY, "tags": ["shared"]}),
    )
    .await;
    let draft = posted(
        &app,
        &owner,
        json!({"title": "Draft searchable", "content": BODY, "status": "draft", "tags": ["shared", "secret"]}),
    )
    .await;
    let (public_id, draft_id) = (
        public["id"].as_i64().unwrap(),
        draft["id"].as_i64().unwrap(),
    );
    assert_eq!(draft["published_at"], Value::Null);
    let path = format!("/api/v1/content/{draft_id}");
    for _ in 0..2 {
        assert_eq!(app.get(&path).await.status(), 404);
        let problem = problem(app.get_as(&path, &stranger.token).await, 404).await;
        assert_eq!(
            problem["detail"],
            format!("Content with id {draft_id} not found")
        );
    }
    for viewer in [&owner, &admin] {
        let response = app.get_as(&path, &viewer.token).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "private, no-store");
        let item: Value = response.json().await.unwrap();
        assert_eq!(item["status"], "draft");
    }
    let slug_path = format!("/api/v1/content/slug/{}", draft["slug"].as_str().unwrap());
    assert_eq!(app.get(&slug_path).await.status(), 404);
    assert_eq!(app.get_as(&slug_path, &owner.token).await.status(), 200);
    for query in [
        "",
        "?q=searchable",
        "?tag=shared",
        "?sort=updated",
        &format!("?user_id={}", owner.id),
    ] {
        assert_eq!(public_ids(&app, query).await, [public_id], "{query}");
    }
    let user_view: Value = app.get_json(&format!("/api/v1/users/{}", owner.id)).await;
    assert_eq!(ids(&user_view["contents"]), [public_id]);
    let tags: Value = app.get_json("/api/v1/tags").await;
    assert_eq!(tags, json!([{"tag": "shared", "count": 1}]));
    assert!(app
        .scan(&app.key(&format!("content:{{{draft_id}}}")))
        .await
        .is_empty());
    for key in app.scan(&app.key("content_with_user:*")).await {
        let stored: Vec<u8> = app.redis().await.get(&key).await.unwrap();
        let text = readable(&stored);
        assert!(!text.contains("Draft searchable"), "{key}: {text}");
    }

    // Their own listing: a token is needed; the owner's items only, an admin's all.
    let drafts = app.get("/api/v1/content?status=draft").await;
    assert_eq!(problem(drafts, 401).await["status"], 401);
    let other = posted(
        &app,
        &stranger,
        json!({"title": "Stranger draft", "content": BODY, "status": "draft"}),
    )
    .await;
    let own = app
        .get_as("/api/v1/content?status=draft", &owner.token)
        .await;
    assert_eq!(own.headers()["cache-control"], "private, no-store");
    assert_eq!(ids(&own.json().await.unwrap()), [draft_id]);
    let all: Value = app
        .get_as("/api/v1/content?status=draft", &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&all), [other["id"].as_i64().unwrap(), draft_id]);
    let everything: Value = app
        .get_as("/api/v1/content?status=all", &owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&everything), [draft_id, public_id]);

    // A stranger cannot change what does not exist for them.
    let response = patch(&app, &stranger, draft_id, json!({"title": "Taken over"})).await;
    assert_eq!(response.status(), 404);
    let response = patch(&app, &stranger, public_id, json!({"title": "Taken over"})).await;
    assert_eq!(response.status(), 403);

    // Publishing shows it everywhere at once; unpublishing hides it again.
    let published = patched(&app, &owner, draft_id, json!({"status": "published"})).await;
    assert!(published["published_at"].is_string());
    assert_eq!(public_ids(&app, "?tag=secret").await, [draft_id]);
    assert_eq!(app.get(&path).await.status(), 200);
    assert_eq!(app.get(&path).await.status(), 200);
    patched(&app, &owner, draft_id, json!({"status": "draft"})).await;
    assert_eq!(app.get(&path).await.status(), 404);
    assert_eq!(public_ids(&app, "?tag=secret").await, Vec::<i64>::new());
    let republished = patched(&app, &owner, draft_id, json!({"status": "published"})).await;
    assert_eq!(
        republished["published_at"], published["published_at"],
        "published_at is when it first became public"
    );
}

/// Two instances with their L1s: the item becomes public at `publish_at`
/// on both, without any write, within a second.
#[tokio::test]
async fn a_scheduled_item_becomes_public_on_every_instance_within_a_second() {
    let first = TestApp::spawn_with(use_redis).await;
    let second = TestApp::start(first.settings.clone(), None).await;
    for app in [&first, &second] {
        app.await_l1_serving().await;
    }
    let user = first.new_user().await;
    let visible = posted(
        &first,
        &user,
        json!({"title": "Already out", "content": BODY}),
    )
    .await;
    let due = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let scheduled = posted(
        &first,
        &user,
        json!({"title": "Coming soon", "content": BODY, "status": "scheduled",
               "publish_at": due.to_rfc3339()}),
    )
    .await;
    let id = scheduled["id"].as_i64().unwrap();
    let path = format!("/api/v1/content/{id}");
    let mut seen_at = [None, None];
    let deadline = due + chrono::Duration::seconds(3);
    while seen_at.iter().any(Option::is_none) && chrono::Utc::now() < deadline {
        for (n, app) in [&first, &second].into_iter().enumerate() {
            if seen_at[n].is_some() {
                continue;
            }
            let listed = public_ids(app, "").await;
            let response = app.get(&path).await;
            // A read answered before the due time must not see it public
            // (one sent earlier may be answered later, on a loaded machine).
            let answered = chrono::Utc::now();
            if response.status() == 200 {
                assert!(
                    answered >= due - chrono::Duration::milliseconds(50),
                    "public before its time"
                );
                let item: Value = response.json().await.unwrap();
                assert_eq!(item["status"], "published");
                assert_eq!(item["version"], 2);
                // The item may be read from PostgreSQL between the
                // publication's commit and its invalidation of the listings
                // (no client waits on it): listed soon after, not at once.
                let listed_soon = async {
                    while !public_ids(app, "").await.contains(&id) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                let in_time = tokio::time::timeout(Duration::from_millis(500), listed_soon).await;
                assert!(
                    listed.contains(&id) || in_time.is_ok(),
                    "not listed once public"
                );
                seen_at[n] = Some(chrono::Utc::now());
            } else {
                assert_eq!(response.status(), 404);
                assert!(!listed.contains(&id), "listed before it is public");
                assert!(listed.contains(&visible["id"].as_i64().unwrap()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (n, seen) in seen_at.iter().enumerate() {
        let seen = seen.unwrap_or_else(|| panic!("instance {n} never showed the item"));
        let delay = (seen - due).num_milliseconds();
        eprintln!("instance {n}: public {delay} ms after publish_at");
        assert!(delay < 1000, "instance {n}: {delay} ms after publish_at");
    }
    let revisions: Value = first
        .get_as(&format!("{path}/revisions"), &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(revisions[0]["status"], "scheduled");
    assert_eq!(revisions[0]["version"], 1);
}

#[tokio::test]
async fn an_old_slug_redirects_to_the_current_one_and_is_never_given_to_another_item() {
    let app = TestApp::spawn_with(use_redis).await;
    let user = app.new_user().await;
    let item = posted(&app, &user, json!({"title": "First name", "content": BODY})).await;
    let id = item["id"].as_i64().unwrap();
    let by_slug: Value = app.get_json("/api/v1/content/slug/first-name").await;
    assert_eq!(by_slug["id"], id);
    patched(&app, &user, id, json!({"slug": "second-name"})).await;
    let moved = app.get("/api/v1/content/slug/first-name").await;
    assert_eq!(moved.status(), 301);
    assert_eq!(
        moved.headers()["location"],
        "/api/v1/content/slug/second-name"
    );
    let current: Value = app.get_json("/api/v1/content/slug/second-name").await;
    assert_eq!(current["slug"], "second-name");
    let problem = problem(app.get("/api/v1/content/slug/no-such-slug").await, 404).await;
    assert_eq!(
        problem["detail"],
        "Content with slug no-such-slug not found"
    );
    assert_eq!(
        app.get("/api/v1/content/slug/Not_A_Slug").await.status(),
        404
    );

    // The old slug stays this item's: others cannot take it, generated or chosen.
    let other = posted(&app, &user, json!({"title": "First name", "content": BODY})).await;
    assert_eq!(other["slug"], "first-name-2");
    let response = patch(
        &app,
        &user,
        other["id"].as_i64().unwrap(),
        json!({"slug": "first-name"}),
    )
    .await;
    assert_eq!(response.status(), 409);
    // Its own item may go back to it.
    patched(&app, &user, id, json!({"slug": "first-name"})).await;
    assert_eq!(
        app.get("/api/v1/content/slug/first-name").await.status(),
        200
    );
    assert_eq!(
        app.get("/api/v1/content/slug/second-name").await.status(),
        301
    );
    // Deleted, its slugs answer 404 and are still never reused.
    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/content/{id}"),
            &user.token,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get("/api/v1/content/slug/first-name").await.status(),
        404
    );
    let third = posted(
        &app,
        &user,
        json!({"title": "Second name", "content": BODY}),
    )
    .await;
    assert_eq!(third["slug"], "second-name-2");
}

#[tokio::test]
async fn a_slug_read_before_needs_no_lookup_and_still_follows_changes_and_deletion() {
    let app = TestApp::spawn_with(use_redis).await;
    let user = app.new_user().await;
    let item = posted(&app, &user, json!({"title": "Remembered", "content": BODY})).await;
    let id = item["id"].as_i64().unwrap();
    let first: Value = app.get_json("/api/v1/content/slug/remembered").await;
    assert_eq!(first["id"], id);

    // Its history row removed behind the service's back: a lookup in
    // PostgreSQL would answer 404, the slug's remembered owner answers.
    app.sql("DELETE FROM content_slugs WHERE slug = 'remembered'");
    let again = app.get("/api/v1/content/slug/remembered").await;
    assert_eq!(again.status(), 200);

    // The owner is remembered, the item's state is not: a new slug turns
    // the remembered one into a redirect, unpublishing hides it, deleting
    // the item makes it 404.
    patched(&app, &user, id, json!({"slug": "renamed"})).await;
    let moved = app.get("/api/v1/content/slug/remembered").await;
    assert_eq!(moved.status(), 301);
    assert_eq!(moved.headers()["location"], "/api/v1/content/slug/renamed");
    patched(&app, &user, id, json!({"status": "draft"})).await;
    for slug in ["remembered", "renamed"] {
        let hidden = app.get(&format!("/api/v1/content/slug/{slug}")).await;
        assert_eq!(
            problem(hidden, 404).await["detail"],
            format!("Content with slug {slug} not found")
        );
    }
    let own = app
        .get_as("/api/v1/content/slug/renamed", &user.token)
        .await;
    assert_eq!(own.status(), 200);
    assert_eq!(own.headers()["cache-control"], "private, no-store");
    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/content/{id}"),
            &user.token,
        )
        .await;
    assert_eq!(response.status(), 204);
    for slug in ["remembered", "renamed"] {
        let gone = app
            .get_as(&format!("/api/v1/content/slug/{slug}"), &user.token)
            .await;
        assert_eq!(gone.status(), 404, "{slug}");
    }
}

#[tokio::test]
async fn items_created_at_once_with_one_title_get_distinct_numbered_slugs() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let first = posted(&app, &user, json!({"title": "Untitled", "content": BODY})).await;
    assert_eq!(first["slug"], "untitled");
    // Chosen ahead of the numbering: a generated slug skips it.
    let chosen = posted(
        &app,
        &user,
        json!({"title": "Other", "content": BODY, "slug": "untitled-4"}),
    )
    .await;
    assert_eq!(chosen["slug"], "untitled-4");
    let responses = futures_util::future::join_all(
        (0..12).map(|_| post(&app, &user, json!({"title": "Untitled", "content": BODY}))),
    )
    .await;
    let mut numbers = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let item: Value = response.json().await.unwrap();
        let slug = item["slug"].as_str().unwrap().to_owned();
        let number: u32 = slug.strip_prefix("untitled-").unwrap().parse().unwrap();
        numbers.push(number);
    }
    numbers.sort();
    let expected: Vec<u32> = (2..=14).filter(|n| *n != 4).collect();
    assert_eq!(
        numbers, expected,
        "each number once, from 2, skipping the chosen one"
    );
}

#[tokio::test]
async fn tags_filter_and_count_public_items_and_follow_every_change() {
    let app = TestApp::spawn_with(use_redis).await;
    let user = app.new_user().await;
    let a = posted(
        &app,
        &user,
        json!({"title": "A item", "content": BODY, "tags": ["rust", "web"]}),
    )
    .await;
    let b = posted(
        &app,
        &user,
        json!({"title": "B item", "content": BODY, "tags": ["rust"]}),
    )
    .await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    assert_eq!(public_ids(&app, "?tag=rust").await, [b, a]);
    assert_eq!(public_ids(&app, "?tag=Rust&tag=web").await, [a]);
    assert_eq!(public_ids(&app, "?tag=go").await, Vec::<i64>::new());
    assert_eq!(public_ids(&app, "?tag=!!").await, Vec::<i64>::new());
    let tags: Value = app.get_json("/api/v1/tags").await;
    assert_eq!(
        tags,
        json!([{"tag": "rust", "count": 2}, {"tag": "web", "count": 1}])
    );
    let again = app.get("/api/v1/tags").await;
    assert_eq!(
        again.headers()["cache-control"],
        "public, max-age=0, must-revalidate"
    );
    patched(&app, &user, b, json!({"tags": ["web", "go"]})).await;
    assert_eq!(public_ids(&app, "?tag=rust").await, [a]);
    assert_eq!(public_ids(&app, "?tag=web").await, [b, a]);
    let tags: Value = app.get_json("/api/v1/tags").await;
    assert_eq!(
        tags,
        json!([{"tag": "web", "count": 2}, {"tag": "go", "count": 1}, {"tag": "rust", "count": 1}])
    );
    let problem = problem(
        app.get(&format!(
            "/api/v1/content?{}",
            (0..11)
                .map(|n| format!("tag=t{n}"))
                .collect::<Vec<_>>()
                .join("&")
        ))
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "tag");
}

/// Every sort walks its keyset pages without a gap or a repeat.
#[tokio::test]
async fn every_sort_pages_through_all_items_in_its_order() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let mut created = Vec::new();
    for n in 0..5 {
        created.push(
            posted(
                &app,
                &user,
                json!({"title": format!("Item {n}"), "content": BODY}),
            )
            .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Changed in another order than created: 3, then 1.
    patched(&app, &user, created[3], json!({"title": "Item 3 changed"})).await;
    patched(&app, &user, created[1], json!({"title": "Item 1 changed"})).await;
    let newest: Vec<i64> = created.iter().rev().copied().collect();
    let updated = vec![created[1], created[3], created[4], created[2], created[0]];
    for (sort, expected) in [
        ("newest", newest),
        ("oldest", created.clone()),
        ("updated", updated),
    ] {
        let mut seen = Vec::new();
        let mut path = format!("/api/v1/content?limit=2&sort={sort}");
        loop {
            let response = app.get(&path).await;
            assert_eq!(response.status(), 200);
            let next = response
                .headers()
                .get("link")
                .map(|link| link.to_str().unwrap().to_owned());
            seen.extend(ids(&response.json().await.unwrap()));
            let Some(link) = next else { break };
            assert!(
                link.contains(&format!("sort={sort}")) || sort == "newest",
                "{link}"
            );
            path = link[1..link.find('>').unwrap()].to_owned();
        }
        assert_eq!(seen, expected, "{sort}");
    }
    let problem = problem(app.get("/api/v1/content?sort=random").await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "sort");
}

#[tokio::test]
async fn revisions_keep_each_replaced_state_and_a_restore_is_a_new_version() {
    let app = TestApp::spawn_with(|settings| settings.revisions_kept = 3).await;
    let owner = app.new_user().await;
    let stranger = app.new_user().await;
    let item = posted(
        &app,
        &owner,
        json!({"title": "Version one", "content": BODY, "tags": ["a"]}),
    )
    .await;
    let id = item["id"].as_i64().unwrap();
    for n in 2..=5 {
        let changed = patched(&app, &owner, id, json!({"title": format!("Version {n}")})).await;
        assert_eq!(changed["version"], n);
    }
    // Nothing changed: no new version.
    let same = patched(&app, &owner, id, json!({"title": "Version 5"})).await;
    assert_eq!(same["version"], 5);
    let path = format!("/api/v1/content/{id}/revisions");
    let page = app.get_as(&format!("{path}?limit=2"), &owner.token).await;
    assert_eq!(page.status(), 200);
    let link = page.headers()["link"].to_str().unwrap().to_owned();
    let first: Value = page.json().await.unwrap();
    let versions = |page: &Value| -> Vec<i64> {
        page.as_array()
            .unwrap()
            .iter()
            .map(|r| r["version"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(versions(&first), [4, 3], "newest first, pruned to 3");
    assert_eq!(first[0]["title"], "Version 4");
    assert_eq!(first[0]["changed_by"], owner.id);
    let rest: Value = app
        .get_as(&link[1..link.find('>').unwrap()], &owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions(&rest), [2]);
    let one: Value = app
        .get_as(&format!("{path}/3"), &owner.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["title"], "Version 3");
    assert_eq!(one["tags"], json!(["a"]));
    assert_eq!(
        app.get_as(&format!("{path}/1"), &owner.token)
            .await
            .status(),
        404
    );
    assert_eq!(app.get_as(&path, &stranger.token).await.status(), 403);
    assert_eq!(app.get(&path).await.status(), 401);

    let restored = app
        .request_as(Method::POST, &format!("{path}/3/restore"), &owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(restored.status(), 200);
    let restored: Value = restored.json().await.unwrap();
    assert_eq!(restored["version"], 6);
    assert_eq!(restored["title"], "Version 3");
    let fetched: Value = app.get_json(&format!("/api/v1/content/{id}")).await;
    assert_eq!(fetched["title"], "Version 3");
    let latest: Value = app.get_as(&path, &owner.token).await.json().await.unwrap();
    assert_eq!(versions(&latest), [5, 4, 3]);
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_of_two_racing_writers_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let item = posted(&app, &user, json!({"title": "Contested", "content": BODY})).await;
    let id = item["id"].as_i64().unwrap();
    let path = format!("/api/v1/content/{id}");
    let tag = etag(&app.get(&path).await);
    let write = |title: String, tag: String| {
        app.request_as(Method::PATCH, &path, &user.token)
            .header("If-Match", tag)
            .json(&json!({ "title": title }))
            .send()
    };
    for round in 0..5 {
        let tag = etag(&app.get(&path).await);
        let (a, b) = tokio::join!(
            write(format!("Writer A {round}"), tag.clone()),
            write(format!("Writer B {round}"), tag)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
        let loser = if a.status() == 412 { a } else { b };
        let problem = problem(loser, 412).await;
        assert_eq!(
            problem["detail"],
            format!("Content with id {id} has changed")
        );
    }
    let stale = write("Too late".into(), tag).await.unwrap();
    assert_eq!(stale.status(), 412);
    let current = app.get(&path).await;
    let tag = etag(&current);
    let fresh = write("In time".into(), tag.clone()).await.unwrap();
    assert_eq!(fresh.status(), 200);
    let new_tag = etag(&fresh);
    assert_ne!(new_tag, tag);
    assert_eq!(etag(&app.get(&path).await), new_tag);
    let star = write("Any version".into(), "*".into()).await.unwrap();
    assert_eq!(star.status(), 200);
    let deleted = app
        .request_as(Method::DELETE, &path, &user.token)
        .header("If-Match", new_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 412);
}

#[tokio::test]
async fn with_require_if_match_a_write_without_one_is_428() {
    let app = TestApp::spawn_with(|settings| settings.require_if_match = true).await;
    let user = app.new_user().await;
    let item = posted(&app, &user, json!({"title": "Guarded", "content": BODY})).await;
    let id = item["id"].as_i64().unwrap();
    let problem = problem(patch(&app, &user, id, json!({"title": "Blind"})).await, 428).await;
    assert_eq!(problem["status"], 428);
    let tag = etag(&app.get(&format!("/api/v1/content/{id}")).await);
    let response = app
        .request_as(Method::PATCH, &format!("/api/v1/content/{id}"), &user.token)
        .header("If-Match", tag)
        .json(&json!({"title": "Seen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn patch_user(
    app: &TestApp,
    user: &TestUser,
    body: Value,
    if_match: Option<&str>,
) -> Response {
    let mut request = app.request_as(
        Method::PATCH,
        &format!("/api/v1/users/{}", user.id),
        &user.token,
    );
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    request.json(&body).send().await.unwrap()
}

#[tokio::test]
async fn an_account_tag_goes_to_self_and_admins_and_of_two_racing_profile_edits_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let stranger = app.new_user().await;
    let admin = app.new_admin().await;
    let path = format!("/api/v1/users/{}", user.id);
    let own = app.get_as(&path, &user.token).await;
    let tag = etag(&own);
    assert!(tag.starts_with('"'), "a strong tag: {tag}");
    assert_eq!(etag(&app.get_as(&path, &admin.token).await), tag);
    assert!(app.get(&path).await.headers().get("etag").is_none());
    assert!(app
        .get_as(&path, &stranger.token)
        .await
        .headers()
        .get("etag")
        .is_none());

    // The tag names the account's fields: a new item of theirs keeps it.
    posted(&app, &user, json!({"title": "Unrelated", "content": BODY})).await;
    assert_eq!(etag(&app.get_as(&path, &user.token).await), tag);

    for round in 0..5 {
        let tag = etag(&app.get_as(&path, &user.token).await);
        let (a, b) = tokio::join!(
            patch_user(
                &app,
                &user,
                json!({"name": format!("Writer A {round}")}),
                Some(&tag)
            ),
            patch_user(
                &app,
                &user,
                json!({"name": format!("Writer B {round}")}),
                Some(&tag)
            )
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
        let (winner, loser) = if a.status() == 412 { (b, a) } else { (a, b) };
        let winner: Value = winner.json().await.unwrap();
        let problem = problem(loser, 412).await;
        assert_eq!(
            problem["detail"],
            format!("User with id {} has changed", user.id)
        );
        let stored: Value = app.get_as(&path, &user.token).await.json().await.unwrap();
        assert_eq!(stored["name"], winner["name"], "the loser changed nothing");
    }

    let stale = patch_user(&app, &user, json!({"name": "Too late"}), Some(&tag)).await;
    assert_eq!(stale.status(), 412);
    let current = etag(&app.get_as(&path, &user.token).await);
    let fresh = patch_user(&app, &user, json!({"name": "Fresh"}), Some(&current)).await;
    assert_eq!(fresh.status(), 200);
    let new_tag = etag(&fresh);
    assert_ne!(new_tag, current);
    assert_eq!(etag(&app.get_as(&path, &user.token).await), new_tag);
    let by_admin = app
        .request_as(Method::PUT, &path, &admin.token)
        .header("If-Match", current)
        .json(&json!({"name": "Admin edit"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_admin.status(), 412, "PUT compares the tag too");
    let star = patch_user(&app, &user, json!({"name": "Any version"}), Some("*")).await;
    assert_eq!(star.status(), 200);
    let weak = patch_user(
        &app,
        &user,
        json!({"name": "Weak"}),
        Some(&format!("W/{}", etag(&star))),
    )
    .await;
    assert_eq!(weak.status(), 412, "a weak tag never matches");
}

#[tokio::test]
async fn with_require_if_match_a_profile_edit_without_one_is_428() {
    let app = TestApp::spawn_with(|settings| settings.require_if_match = true).await;
    let user = app.new_user().await;
    let blind = patch_user(&app, &user, json!({"name": "Blind"}), None).await;
    let problem = problem(blind, 428).await;
    assert_eq!(problem["status"], 428);
    let path = format!("/api/v1/users/{}", user.id);
    let tag = etag(&app.get_as(&path, &user.token).await);
    let seen = patch_user(&app, &user, json!({"name": "Seen"}), Some(&tag)).await;
    assert_eq!(seen.status(), 200);
    let stored: Value = app.get_as(&path, &user.token).await.json().await.unwrap();
    assert_eq!(stored["name"], "Seen");
}

#[tokio::test]
async fn a_machine_token_sees_its_owners_draft_only_with_content_read() {
    let app = TestApp::spawn().await;
    let owner = app.new_user().await;
    let draft = posted(
        &app,
        &owner,
        json!({"title": "Unseen", "content": BODY, "status": "draft"}),
    )
    .await;
    let path = format!("/api/v1/content/{}", draft["id"]);
    let token = |scopes: Value| {
        let request = app
            .request_as(Method::POST, "/api/v1/tokens", &owner.token)
            .json(&json!({"name": "script", "scopes": scopes}))
            .send();
        async move {
            let body: Value = request.await.unwrap().json().await.unwrap();
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let write_only = token(json!(["content:write"])).await;
    let reader = token(json!(["content:read"])).await;
    let hidden = app.get_as(&path, &write_only).await;
    assert_eq!(
        problem(hidden, 404).await["detail"],
        format!("Content with id {} not found", draft["id"])
    );
    let seen = app.get_as(&path, &reader).await;
    assert_eq!(seen.status(), 200);
    assert_eq!(seen.headers()["cache-control"], "private, no-store");
}
