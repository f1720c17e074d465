//! Webhooks (contract §15): the admin API, every event kind signed and
//! delivered with the owner's view, nothing for a change that did not
//! happen, retries, `410 Gone`, redelivery, a crash mid-delivery, slow and
//! dead receivers, and targets refused for server-side request forgery.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    free_port, invalid_fields, problem, signup_body, TestApp, TestDatabase, TestUser,
};
use crate::webhook_receiver::{Receiver, Reply};

const ALL_EVENTS: [&str; 7] = [
    "content.created",
    "content.updated",
    "content.published",
    "content.unpublished",
    "content.deleted",
    "user.created",
    "user.deleted",
];

async fn spawn() -> TestApp {
    TestApp::spawn_with(|settings| settings.webhook_allow_private = true).await
}

/// Creates a webhook as `admin`; returns its id and secret.
async fn subscribe(app: &TestApp, admin: &TestUser, url: &str, events: &[&str]) -> (i64, String) {
    let response = app
        .request_as(Method::POST, "/api/v1/admin/webhooks", &admin.token)
        .json(&json!({"url": url, "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (
        created["id"].as_i64().unwrap(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(app: &TestApp, admin: &TestUser, webhook: i64) -> Vec<Value> {
    let response = app
        .get_as(
            &format!("/api/v1/admin/webhooks/{webhook}/deliveries?limit=100"),
            &admin.token,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits until every delivery of `webhook` has left `pending`.
async fn settled(app: &TestApp, admin: &TestUser, webhook: i64, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let all = deliveries(app, admin, webhook).await;
        if all.iter().all(|delivery| delivery["status"] != "pending") {
            return all;
        }
        assert!(Instant::now() < deadline, "still pending: {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the newest delivery of `webhook` meets `ready`; returns it.
async fn newest_delivery_when(
    app: &TestApp,
    admin: &TestUser,
    webhook: i64,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = deliveries(app, admin, webhook).await;
        if all.first().is_some_and(&ready) {
            return all[0].clone();
        }
        assert!(Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn patch_content(app: &TestApp, user: &TestUser, id: i64, body: Value) -> Value {
    let response = app
        .request_as(Method::PATCH, &format!("/api/v1/content/{id}"), &user.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn only_admins_manage_webhooks_and_the_secret_is_shown_once() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let body = json!({"url": "https://hooks.example.com/in", "events": ["content.created"]});
    let response = app.post_json("/api/v1/admin/webhooks", &body).await;
    problem(response, 401).await;
    let response = app
        .request_as(Method::POST, "/api/v1/admin/webhooks", &user.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(response, 403).await;
    problem(app.get_as("/api/v1/admin/webhooks", &user.token).await, 403).await;

    let response = app
        .request_as(Method::POST, "/api/v1/admin/webhooks", &admin.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/admin/webhooks/{}", created["id"])
    );
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 44,
        "{secret}"
    );
    assert_eq!(created["active"], true);
    assert_eq!(created["events"], json!(["content.created"]));

    let read: Value = app
        .get_as(&location, &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(read.get("secret").is_none(), "{read}");
    assert_eq!(read["url"], "https://hooks.example.com/in");
    let listed: Vec<Value> = app
        .get_as("/api/v1/admin/webhooks", &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("secret").is_none());

    let given = format!("whsec_{}", base64_of(&[7u8; 24]));
    let response = app
        .request_as(Method::PATCH, &location, &admin.token)
        .json(&json!({"events": ["user.deleted", "content.deleted"], "active": false, "secret": given}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(
        changed["events"],
        json!(["content.deleted", "user.deleted"])
    );
    assert_eq!(changed["active"], false);
    assert!(changed.get("secret").is_none());

    let response = app
        .request_as(Method::PATCH, &location, &admin.token)
        .json(&json!({"events": [], "secret": "whsec_short", "url": "gopher://x"}))
        .send()
        .await
        .unwrap();
    let refused = problem(response, 422).await;
    assert_eq!(invalid_fields(&refused), ["url", "events", "secret"]);
    // A field that is not nullable may be left out, not sent as null.
    let response = app
        .request_as(Method::PATCH, &location, &admin.token)
        .json(&json!({"events": null, "active": null}))
        .send()
        .await
        .unwrap();
    let refused = problem(response, 422).await;
    assert_eq!(invalid_fields(&refused), ["events", "active"]);

    assert_eq!(
        app.send_as(Method::DELETE, &location, &admin.token)
            .await
            .status(),
        204
    );
    problem(app.get_as(&location, &admin.token).await, 404).await;
    problem(
        app.get_as(&format!("{location}/deliveries"), &admin.token)
            .await,
        404,
    )
    .await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn owner_view(app: &TestApp, owner: &TestUser, id: i64) -> Value {
    app.get_as(&format!("/api/v1/content/{id}"), &owner.token)
        .await
        .json()
        .await
        .unwrap()
}

/// The subject of a delivered body: `content:7`, `user:3`.
fn subject_of(body: &Value) -> String {
    let kind = body["event"].as_str().unwrap().split('.').next().unwrap();
    format!("{kind}:{}", body["data"]["id"])
}

#[tokio::test]
async fn every_event_is_delivered_signed_with_the_owner_view_in_commit_order() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let receiver = Receiver::start(Reply::Status(204)).await;
    let (webhook, secret) = subscribe(&app, &admin, &receiver.url, &ALL_EVENTS).await;

    let author = app.new_user().await;
    let id = app.post_item(&author, "Webhook news").await;
    let mut item_events = vec![("content.created", owner_view(&app, &author, id).await)];
    for (change, event) in [
        (json!({"title": "Webhook news, revised"}), "content.updated"),
        (json!({"status": "draft"}), "content.unpublished"),
        (json!({"status": "published"}), "content.published"),
        (json!({"status": "draft"}), "content.unpublished"),
    ] {
        patch_content(&app, &author, id, change).await;
        item_events.push((event, owner_view(&app, &author, id).await));
    }
    let due = (chrono::Utc::now() + chrono::Duration::milliseconds(800)).to_rfc3339();
    patch_content(
        &app,
        &author,
        id,
        json!({"status": "scheduled", "publish_at": due}),
    )
    .await;
    item_events.push(("content.updated", owner_view(&app, &author, id).await));
    let deadline = Instant::now() + Duration::from_secs(10);
    let published = loop {
        let view = owner_view(&app, &author, id).await;
        if view["status"] == "published" {
            break view;
        }
        assert!(Instant::now() < deadline, "the scheduler published it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    item_events.push(("content.published", published));
    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/content/{id}"),
            &author.token,
        )
        .await;
    assert_eq!(response.status(), 204);
    item_events.push(("content.deleted", json!({"id": id})));

    let signup = app.signup(&signup_body()).await;
    assert_eq!(signup.status(), 201);
    let newcomer: Value = signup.json().await.unwrap();
    let leaving = app.new_user().await;
    let kept = app.post_item(&leaving, "Goes with its author").await;
    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/users/{}", leaving.id),
            &leaving.token,
        )
        .await;
    assert_eq!(response.status(), 204);

    // The author's signup, the item's 8, the newcomer's 1, the leaving
    // user's 2 and their item's 2.
    let received = receiver.wait_for(14, Duration::from_secs(10)).await;
    let mut by_subject: HashMap<String, Vec<Value>> = HashMap::new();
    for request in &received {
        let body = request.json();
        assert!(request.signed_with(&secret), "{body}");
        assert_eq!(request.id(), body["id"].as_str().unwrap());
        assert!(request.id().starts_with("evt_"));
        assert_eq!(request.headers["content-type"], "application/json");
        let sent_at: i64 = request.headers["webhook-timestamp"].parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 30);
        let text = String::from_utf8(request.body.clone()).unwrap();
        assert!(
            !text.contains("@example.com") && !text.contains("+234") && !text.contains("whsec_"),
            "{text}"
        );
        by_subject.entry(subject_of(&body)).or_default().push(body);
    }
    let sent: Vec<(&str, &Value)> = by_subject[&format!("content:{id}")]
        .iter()
        .map(|body| (body["event"].as_str().unwrap(), &body["data"]))
        .collect();
    let expected: Vec<(&str, &Value)> = item_events.iter().map(|(e, data)| (*e, data)).collect();
    assert_eq!(
        sent, expected,
        "the item's events in commit order, as its owner saw it"
    );
    assert_eq!(
        by_subject[&format!("user:{}", newcomer["id"])][0]["data"],
        json!({"id": newcomer["id"], "name": newcomer["name"], "country": newcomer["country"],
               "state": newcomer["state"], "created_at": newcomer["created_at"]})
    );
    assert_eq!(
        by_subject[&format!("user:{}", newcomer["id"])][0]["event"],
        "user.created"
    );
    let events_of = |subject: String| -> Vec<String> {
        by_subject[&subject]
            .iter()
            .map(|body| body["event"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        events_of(format!("user:{}", leaving.id)),
        ["user.created", "user.deleted"]
    );
    assert_eq!(
        events_of(format!("content:{kept}")),
        ["content.created", "content.deleted"]
    );
    assert_eq!(
        by_subject[&format!("content:{kept}")][1]["data"],
        json!({"id": kept})
    );
    let recorded = app.sql_text(&format!(
        "(SELECT string_agg(d.event, ',' ORDER BY d.id) FROM webhook_deliveries d \
         WHERE d.subject IN ('content:{kept}', 'user:{}'))",
        leaving.id
    ));
    assert_eq!(
        recorded, "user.created,content.created,content.deleted,user.deleted",
        "an account's items are deleted before it"
    );
    let all = settled(&app, &admin, webhook, Duration::from_secs(5)).await;
    assert_eq!(all.len(), 14);
    assert!(all.iter().all(|delivery| delivery["status"] == "delivered"
        && delivery["attempts"] == 1
        && delivery["last_status_code"] == 204
        && delivery["last_error"].is_null()
        && !delivery["delivered_at"].is_null()));
    assert!(
        app.metric("webhook_deliveries_total{result=\"delivered\"}")
            .await
            >= 14.0
    );
}

#[tokio::test]
async fn the_event_triggers_run_only_while_an_active_webhook_exists() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let receiver = Receiver::start(Reply::Status(200)).await;
    let triggers = || {
        app.sql_text(
            "(SELECT string_agg(tgenabled::TEXT, '' ORDER BY tgname) FROM pg_trigger \
              WHERE tgname IN ('contents_webhook_events', 'users_webhook_events'))",
        )
    };
    assert_eq!(triggers(), "DD", "no webhook: no trigger runs");
    let author = app.new_user().await;
    app.post_item(&author, "Before any webhook").await;
    let (first, _) = subscribe(&app, &admin, &receiver.url, &["content.created"]).await;
    let (second, _) = subscribe(&app, &admin, &receiver.url, &["user.created"]).await;
    assert_eq!(triggers(), "OO");
    let switch = |id: i64, active: bool| {
        app.request_as(
            Method::PATCH,
            &format!("/api/v1/admin/webhooks/{id}"),
            &admin.token,
        )
        .json(&json!({ "active": active }))
        .send()
    };
    assert_eq!(switch(first, false).await.unwrap().status(), 200);
    assert_eq!(triggers(), "OO", "another webhook is still active");
    assert_eq!(switch(second, false).await.unwrap().status(), 200);
    assert_eq!(triggers(), "DD");
    assert_eq!(switch(first, true).await.unwrap().status(), 200);
    assert_eq!(triggers(), "OO");
    app.post_item(&author, "After the webhook").await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        app.sql_text("(SELECT count(*)::TEXT FROM webhook_deliveries)"),
        "1",
        "only the change made while a webhook was on"
    );
    for id in [first, second] {
        let response = app
            .request_as(
                Method::DELETE,
                &format!("/api/v1/admin/webhooks/{id}"),
                &admin.token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    assert_eq!(triggers(), "DD");
    app.sql(&format!(
        "INSERT INTO webhooks (url, events, secret) \
         VALUES ('{}', '{{content.created}}', 'whsec_{}')",
        receiver.url,
        "A".repeat(44)
    ));
    assert_eq!(
        triggers(),
        "OO",
        "a webhook added with plain SQL counts too"
    );
}

#[tokio::test]
async fn a_webhook_is_sent_only_what_it_subscribed_to_after_it_was_created() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let author = app.new_user().await;
    let before = app.post_item(&author, "Before the webhook").await;
    let receiver = Receiver::start(Reply::Status(200)).await;
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &["content.deleted"]).await;
    let after = app.post_item(&author, "After the webhook").await;
    for id in [before, after] {
        let response = app
            .send_as(
                Method::DELETE,
                &format!("/api/v1/content/{id}"),
                &author.token,
            )
            .await;
        assert_eq!(response.status(), 204);
    }
    let received = receiver.wait_for(2, Duration::from_secs(5)).await;
    let deleted: HashSet<i64> = received
        .iter()
        .map(|request| {
            let body = request.json();
            assert_eq!(body["event"], "content.deleted");
            body["data"]["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(deleted, HashSet::from([before, after]));
    assert_eq!(
        deliveries(&app, &admin, webhook).await.len(),
        2,
        "no content.created"
    );
}

#[tokio::test]
async fn nothing_is_sent_for_a_change_that_did_not_happen() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let receiver = Receiver::start(Reply::Status(200)).await;
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &ALL_EVENTS).await;
    let author = app.new_user().await;
    let item = app
        .create_content(&author, "Taken slug", "A body long enough.")
        .await;
    let id = item["id"].as_i64().unwrap();
    receiver.wait_for(2, Duration::from_secs(5)).await;

    let invalid = app
        .request_as(Method::POST, "/api/v1/post-content", &author.token)
        .json(&json!({"title": "x", "content": "short"}))
        .send()
        .await
        .unwrap();
    problem(invalid, 422).await;
    let stale = app
        .request_as(
            Method::PATCH,
            &format!("/api/v1/content/{id}"),
            &author.token,
        )
        .header("If-Match", "\"stale\"")
        .json(&json!({"title": "Never written"}))
        .send()
        .await
        .unwrap();
    problem(stale, 412).await;
    let taken = app
        .request_as(Method::POST, "/api/v1/post-content", &author.token)
        .json(&json!({"title": "Another", "content": "A body long enough.", "slug": item["slug"]}))
        .send()
        .await
        .unwrap();
    problem(taken, 409).await;
    let duplicate = app
        .signup(&json!({"name": "Twin", "email": author.email, "phone_number": "+2348031234567",
                        "country": "Nigeria", "state": "Lagos", "password": "correct horse battery"}))
        .await;
    problem(duplicate, 400).await;
    // A write that does happen afterwards is the next thing sent.
    patch_content(&app, &author, id, json!({"title": "Written"})).await;
    let received = receiver.wait_for(3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let events: Vec<String> = receiver
        .received()
        .iter()
        .map(|request| request.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(received[2].json()["data"]["title"], "Written");
    assert_eq!(deliveries(&app, &admin, webhook).await.len(), 3);
}

#[tokio::test]
async fn failures_are_retried_with_growing_gaps_and_the_same_id() {
    let app = TestApp::spawn_with(|settings| {
        settings.webhook_allow_private = true;
        settings.webhook_retry_base = Duration::from_millis(1000);
    })
    .await;
    let admin = app.new_admin().await;
    let receiver = Receiver::start(Reply::Status(200)).await;
    receiver.script([Reply::Status(500), Reply::Status(503)]);
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &["content.created"]).await;
    let author = app.new_user().await;
    app.post_item(&author, "Retried").await;

    let first = receiver.wait_for(1, Duration::from_secs(5)).await;
    let pending = deliveries(&app, &admin, webhook).await;
    assert_eq!(pending[0]["status"], "pending");
    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(first[0].id(), received[2].id());
    assert!(received
        .iter()
        .all(|request| request.id() == received[0].id()));
    let (gap1, gap2) = (
        received[1].at - received[0].at,
        received[2].at - received[1].at,
    );
    assert!(gap1 >= Duration::from_millis(750), "{gap1:?}");
    assert!(gap2 > gap1, "{gap1:?} then {gap2:?}");
    let done = settled(&app, &admin, webhook, Duration::from_secs(5)).await;
    assert_eq!(done[0]["status"], "delivered");
    assert_eq!(done[0]["attempts"], 3);
    assert_eq!(done[0]["last_status_code"], 200);
    assert!(
        app.metric("webhook_deliveries_total{result=\"retry\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_failing_attempt_shows_its_error_and_next_attempt() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let closed = format!("http://127.0.0.1:{}/nobody", free_port());
    let (webhook, _) = subscribe(&app, &admin, &closed, &["content.created"]).await;
    let author = app.new_user().await;
    app.post_item(&author, "To a closed port").await;
    let delivery = newest_delivery_when(&app, &admin, webhook, |delivery| {
        delivery["attempts"] == 1 && !delivery["last_error"].is_null()
    })
    .await;
    assert_eq!(delivery["status"], "pending");
    assert!(delivery["last_status_code"].is_null());
    let error = delivery["last_error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("refused") || error.contains("connect"),
        "{error}"
    );
    let next: chrono::DateTime<chrono::Utc> = delivery["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wait = next - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::seconds(2) && wait <= chrono::Duration::seconds(6),
        "{wait}"
    );
    assert!(app.metric("webhook_outbox_lag_seconds").await >= 0.0);
}

#[tokio::test]
async fn a_410_switches_the_webhook_off_until_it_is_switched_on_again() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let receiver = Receiver::start(Reply::Status(200)).await;
    receiver.script([Reply::Status(410)]);
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &["content.created"]).await;
    let author = app.new_user().await;
    app.post_item(&author, "Gone one").await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    let all = settled(&app, &admin, webhook, Duration::from_secs(5)).await;
    assert_eq!(all[0]["status"], "failed");
    assert_eq!(all[0]["last_status_code"], 410);
    let hook: Value = app
        .get_as(&format!("/api/v1/admin/webhooks/{webhook}"), &admin.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hook["active"], false);

    app.post_item(&author, "While off").await;
    let response = app
        .request_as(
            Method::POST,
            &format!(
                "/api/v1/admin/webhooks/{webhook}/deliveries/{}/redeliver",
                all[0]["id"]
            ),
            &admin.token,
        )
        .send()
        .await
        .unwrap();
    problem(response, 409).await;
    let response = app
        .request_as(
            Method::PATCH,
            &format!("/api/v1/admin/webhooks/{webhook}"),
            &admin.token,
        )
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.post_item(&author, "On again").await;
    let received = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(received[1].json()["data"]["title"], "On again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "nothing of the time it was off"
    );
    assert_eq!(deliveries(&app, &admin, webhook).await.len(), 2);
}

#[tokio::test]
async fn a_redelivery_sends_the_same_event_again() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let receiver = Receiver::start(Reply::Status(200)).await;
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &["content.created"]).await;
    let author = app.new_user().await;
    app.post_item(&author, "Twice").await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    let first = settled(&app, &admin, webhook, Duration::from_secs(5)).await;
    let path = format!(
        "/api/v1/admin/webhooks/{webhook}/deliveries/{}/redeliver",
        first[0]["id"]
    );
    let response = app.send_as(Method::POST, &path, &admin.token).await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["event_id"], first[0]["event_id"]);
    assert_ne!(queued["id"], first[0]["id"]);
    let received = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(received[0].id(), received[1].id());
    assert_eq!(received[0].body, received[1].body);
    let page = |query: String| {
        let (app, token) = (&app, admin.token.clone());
        async move {
            app.get_as(
                &format!("/api/v1/admin/webhooks/{webhook}/deliveries{query}"),
                &token,
            )
            .await
        }
    };
    let response = page("?limit=1".into()).await;
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    let newest: Vec<Value> = response.json().await.unwrap();
    assert_eq!(newest[0]["id"], queued["id"]);
    let next = link
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .unwrap()
        .0
        .trim_start_matches(&format!("/api/v1/admin/webhooks/{webhook}/deliveries"))
        .to_owned();
    let older: Vec<Value> = page(next).await.json().await.unwrap();
    assert_eq!(older[0]["id"], first[0]["id"]);
    let missing = format!("/api/v1/admin/webhooks/{webhook}/deliveries/999999/redeliver");
    problem(app.send_as(Method::POST, &missing, &admin.token).await, 404).await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let elsewhere = Receiver::start(Reply::Status(200)).await;
    let receiver = Receiver::start(Reply::Redirect(elsewhere.url.clone())).await;
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &["content.created"]).await;
    let author = app.new_user().await;
    app.post_item(&author, "Redirected").await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    let delivery = newest_delivery_when(&app, &admin, webhook, |delivery| {
        delivery["last_status_code"] == 302
    })
    .await;
    assert!(delivery["last_error"]
        .as_str()
        .unwrap()
        .contains("redirects are not followed"));
    assert!(elsewhere.received().is_empty());
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://localhost:8080/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/",
        "http://192.168.1.1/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
    ] {
        let response = app
            .request_as(Method::POST, "/api/v1/admin/webhooks", &admin.token)
            .json(&json!({"url": url, "events": ["content.created"]}))
            .send()
            .await
            .unwrap();
        let refused = problem(response, 422).await;
        assert_eq!(refused["errors"][0]["code"], "private_address", "{url}");
    }
    // A name is checked when it is resolved, at each attempt: this
    // machine's own name resolves to an internal address on most hosts.
    let host = String::from_utf8(
        std::process::Command::new("hostname")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let internal = tokio::net::lookup_host((host.as_str(), 80))
        .await
        .map(|mut addresses| {
            addresses.any(|address| {
                let ip = address.ip();
                ip.is_loopback()
                    || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_private() || v4.is_link_local())
            })
        })
        .unwrap_or(false);
    if !internal || host.contains("localhost") {
        return;
    }
    let receiver = Receiver::start(Reply::Status(200)).await;
    let port = receiver.url.rsplit_once(':').unwrap().1;
    let url = format!("http://{host}:{port}");
    let (webhook, _) = subscribe(&app, &admin, &url, &["content.created"]).await;
    let author = app.new_user().await;
    app.post_item(&author, "Never leaves").await;
    let delivery = newest_delivery_when(&app, &admin, webhook, |delivery| {
        !delivery["last_error"].is_null()
    })
    .await;
    let error = delivery["last_error"].as_str().unwrap();
    assert!(error.contains("refused"), "{error}");
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn slow_and_dead_receivers_slow_neither_requests_nor_other_webhooks() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let slow = Receiver::start(Reply::Hang).await;
    let good = Receiver::start(Reply::Status(200)).await;
    let dead = format!("http://127.0.0.1:{}/", free_port());
    subscribe(&app, &admin, &slow.url, &["content.created"]).await;
    subscribe(&app, &admin, &dead, &["content.created"]).await;
    let (healthy, _) = subscribe(&app, &admin, &good.url, &["content.created"]).await;
    let author = app.new_user().await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for n in 0..40 {
        let sent = Instant::now();
        app.post_item(&author, &format!("Item {n}")).await;
        slowest = slowest.max(sent.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(1000),
        "a create took {slowest:?}"
    );
    good.wait_for(40, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(8));
    slow.wait_for(32, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        slow.received().len(),
        32,
        "a hanging receiver holds its own share of attempts only"
    );
    let all = settled(&app, &admin, healthy, Duration::from_secs(5)).await;
    assert_eq!(all.len(), 40);
}

#[tokio::test]
async fn a_webhook_with_a_backlog_does_not_hold_back_another() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let slow = Receiver::start(Reply::Hang).await;
    let good = Receiver::start(Reply::Status(200)).await;
    let (backlogged, _) = subscribe(&app, &admin, &slow.url, &["content.created"]).await;
    // A thousand of its deliveries due since a minute ago (ahead of any new
    // one in due order), each of its own subject, while its receiver holds
    // every slot it has.
    app.sql(&format!(
        "INSERT INTO webhook_deliveries \
             (webhook_id, event_id, event, occurred_at, data, subject, next_attempt_at) \
         SELECT {backlogged}, 'evt_backlog' || n, 'content.created', now(), '{{}}', \
                'content:backlog' || n, now() - interval '1 minute' \
         FROM generate_series(1, 1000) AS n"
    ));
    slow.wait_for(32, Duration::from_secs(5)).await;
    subscribe(&app, &admin, &good.url, &["content.created"]).await;
    let author = app.new_user().await;
    let started = Instant::now();
    app.post_item(&author, "Behind a backlog").await;
    good.wait_for(1, Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the other webhook's event waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        slow.received().len(),
        32,
        "the backlogged webhook holds its own share of attempts only"
    );
}

#[tokio::test]
async fn events_pending_when_an_instance_is_killed_are_delivered_by_another() {
    let database = TestDatabase::cloned().await;
    let receiver = Receiver::start(Reply::Hang).await;
    let port = free_port();
    let mut vars = crate::binary::base_vars(&database.url);
    vars.extend([
        ("PORT", port.to_string()),
        ("WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("RUN_MIGRATIONS", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = crate::binary::content_api(&["serve"], &vars)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .map_or(true, |response| response.status() != 200)
    {
        assert!(Instant::now() < deadline, "the first instance started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let account = signup_body();
    let signed_up: Value = client
        .post(format!("{base}/api/v1/signup"))
        .json(&account)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut conn = {
        use diesel::Connection;
        diesel::PgConnection::establish(&database.url).unwrap()
    };
    {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!(
            "UPDATE users SET role = 'admin' WHERE id = {}",
            signed_up["id"]
        ))
        .execute(&mut conn)
        .unwrap();
    }
    let login: Value = client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"email": account["email"], "password": account["password"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let created = client
        .post(format!("{base}/api/v1/admin/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": receiver.url, "events": ["content.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let secret = created.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 0..40 {
        let response = client
            .post(format!("{base}/api/v1/post-content"))
            .bearer_auth(&token)
            .json(&json!({"title": format!("Pending {n}"), "content": "A body long enough."}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    // 32 attempts hang in flight (one webhook's share); eight wait.
    receiver.wait_for(32, Duration::from_secs(10)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = Instant::now();

    receiver.answer_by_default(Reply::Status(200));
    let mut settings = crate::helpers::base_settings(database.url.clone());
    settings.webhook_allow_private = true;
    let second = TestApp::start(settings, Some(database)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let delivered: HashSet<String> = receiver
            .received()
            .iter()
            .filter(|request| request.replied == Some(200))
            .map(|request| request.id().to_owned())
            .collect();
        if delivered.len() == 40 {
            break delivered;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 40 events delivered after the kill",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(killed_at.elapsed() < Duration::from_secs(30));
    let all_ids: HashSet<String> = receiver
        .received()
        .iter()
        .map(|request| request.id().to_owned())
        .collect();
    assert_eq!(
        all_ids, delivered,
        "the same ids: the hung attempts were made again"
    );
    assert!(receiver
        .received()
        .iter()
        .all(|request| request.signed_with(&secret)));
    drop(second);
}

#[tokio::test]
async fn two_live_instances_deliver_each_event_once_in_commit_order() {
    let first = spawn().await;
    let second = TestApp::start(first.settings.clone(), None).await;
    let admin = first.new_admin().await;
    let receiver = Receiver::start(Reply::Status(200)).await;
    subscribe(
        &first,
        &admin,
        &receiver.url,
        &["content.created", "content.updated"],
    )
    .await;
    let author = first.new_user().await;
    let mut items = Vec::new();
    for n in 0..4 {
        items.push(first.post_item(&author, &format!("Shared {n}")).await);
    }
    // Each item changed eight times, on one instance and then the other,
    // while both claim: 4 creates and 32 updates.
    for round in 0..8 {
        for (k, id) in items.iter().enumerate() {
            let app = if (round + k) % 2 == 0 {
                &first
            } else {
                &second
            };
            patch_content(
                app,
                &author,
                *id,
                json!({"title": format!("Shared {k} v{round}")}),
            )
            .await;
        }
    }
    let events = items.len() * 9;
    receiver.wait_for(events, Duration::from_secs(10)).await;
    // Late duplicates would come within a claim or two.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let received = receiver.received();
    let ids: HashSet<&str> = received.iter().map(|event| event.id()).collect();
    assert_eq!(ids.len(), events, "every event once");
    assert_eq!(
        received.len(),
        events,
        "no event twice while both instances live"
    );
    for id in &items {
        let versions: Vec<i64> = received
            .iter()
            .map(|event| event.json())
            .filter(|event| event["data"]["id"] == *id)
            .map(|event| event["data"]["version"].as_i64().unwrap())
            .collect();
        assert_eq!(
            versions,
            (1..=9).collect::<Vec<i64>>(),
            "item {id} in commit order"
        );
    }
}

#[tokio::test]
async fn a_webhook_is_deleted_while_its_deliveries_are_attempted() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    // A live receiver: a failing one would rest after a few misses.
    let receiver = Receiver::start(Reply::Status(200)).await;
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &["content.created"]).await;
    queue_due(&app, webhook, 2000, "0 seconds");
    let attempted = || {
        app.sql_text(&format!(
            "(SELECT coalesce(sum(attempts), 0)::TEXT FROM webhook_deliveries \
              WHERE webhook_id = {webhook})"
        ))
        .parse::<i64>()
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while attempted() < 200 {
        assert!(
            Instant::now() < deadline,
            "the deliveries are being attempted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Outcomes are being recorded in batches while the webhook goes.
    let started = Instant::now();
    let response = app
        .request_as(
            Method::DELETE,
            &format!("/api/v1/admin/webhooks/{webhook}"),
            &admin.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Attempts under way end; none starts afterwards.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = attempted();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        attempted(),
        settled,
        "a deleted webhook's deliveries are not claimed"
    );
}

/// Queues `count` due deliveries of distinct subjects for `webhook`.
fn queue_due(app: &TestApp, webhook: i64, count: usize, queued_ago: &str) {
    app.sql(&format!(
        "INSERT INTO webhook_deliveries \
             (webhook_id, event_id, event, occurred_at, data, subject, next_attempt_at, created_at) \
         SELECT {webhook}, 'evt_due' || n, 'content.created', now(), '{{}}', \
                'content:due' || n, now(), now() - interval '{queued_ago}' \
         FROM generate_series(1, {count}) AS n"
    ));
}

#[tokio::test]
async fn a_failing_receiver_is_left_alone_but_for_probes_until_it_answers() {
    let app = TestApp::spawn_with(|settings| {
        settings.webhook_allow_private = true;
        settings.webhook_retry_base = Duration::from_millis(300);
    })
    .await;
    let admin = app.new_admin().await;
    let receiver = Receiver::start(Reply::Status(503)).await;
    let (webhook, _) = subscribe(&app, &admin, &receiver.url, &["content.created"]).await;
    queue_due(&app, webhook, 200, "0 seconds");
    receiver.wait_for(32, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Without the breaker: every one of the 200 at once, each again 0.3 s,
    // 0.6 s and 1.2 s later. With it: 32 misses in a row (and what was in
    // flight when the 32nd came), then a probe after each rest (0.3 s,
    // 0.6 s, …).
    let while_failing = receiver.received().len();
    assert!(
        (32..=70).contains(&while_failing),
        "{while_failing} attempts to a failing receiver in 1.5 s"
    );
    let untried = app.sql_text(&format!(
        "(SELECT count(*)::TEXT FROM webhook_deliveries \
          WHERE webhook_id = {webhook} AND attempts = 0 AND status = 'pending')"
    ));
    assert!(
        untried.parse::<usize>().unwrap() >= 130,
        "{untried} untried"
    );

    receiver.answer_by_default(Reply::Status(200));
    let started = Instant::now();
    // All 200 (the listing shows at most 100 of them).
    let by_status = format!(
        "(SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM \
           (SELECT status, count(*) AS n FROM webhook_deliveries \
             WHERE webhook_id = {webhook} GROUP BY status) AS counts)"
    );
    while app.sql_text(&by_status) != "delivered 200" {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{}",
            app.sql_text(&by_status)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next probe comes after at most the rest under way (2.4 s, or
    // 4.8 s if a slow machine made the switch miss the probe before).
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let delivered: HashSet<String> = receiver
        .received()
        .iter()
        .filter(|request| request.replied == Some(200))
        .map(|request| request.id().to_owned())
        .collect();
    assert_eq!(delivered.len(), 200);
}

#[tokio::test]
async fn deliveries_pending_a_day_after_their_event_fail() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let (webhook, _) = subscribe(&app, &admin, &dead, &["content.created"]).await;
    app.sql(&format!(
        "UPDATE webhooks SET active = false WHERE id = {webhook}"
    ));
    queue_due(&app, webhook, 3, "25 hours");
    app.sql(&format!(
        "UPDATE webhook_deliveries SET last_error = 'refused', attempts = 9 \
         WHERE webhook_id = {webhook} AND subject = 'content:due1'"
    ));
    queue_due(&app, webhook, 1, "23 hours");
    use diesel::Connection;
    let mut conn = diesel::PgConnection::establish(&app.settings.database_url).unwrap();
    let expired = content_api::db::webhooks::expire(
        &mut conn,
        chrono::Utc::now() - chrono::Duration::hours(24),
        "retries ended a day after the event",
    )
    .unwrap();
    assert_eq!(expired, 3);
    let all = deliveries(&app, &admin, webhook).await;
    let by_status = |status: &str| all.iter().filter(|d| d["status"] == status).count();
    assert_eq!(
        (by_status("failed"), by_status("pending")),
        (3, 1),
        "{all:#?}"
    );
    let errors: HashSet<&str> = all
        .iter()
        .filter(|d| d["status"] == "failed")
        .map(|d| d["last_error"].as_str().unwrap())
        .collect();
    assert!(
        errors.contains("refused (retries ended a day after the event)"),
        "{errors:?}"
    );
    assert!(
        errors.contains("not attempted: retries ended a day after the event"),
        "{errors:?}"
    );
    assert!(all
        .iter()
        .filter(|d| d["status"] == "failed")
        .all(|d| d["next_attempt_at"].is_null()));
}

#[tokio::test]
async fn a_webhook_changed_by_an_admin_is_tried_again_at_once() {
    let app = spawn().await;
    let admin = app.new_admin().await;
    let failing = Receiver::start(Reply::Status(503)).await;
    let (webhook, _) = subscribe(&app, &admin, &failing.url, &["content.created"]).await;
    queue_due(&app, webhook, 100, "0 seconds");
    failing.wait_for(32, Duration::from_secs(5)).await;
    // Resting now for 5 s (the retry base); the misses are due again then.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fixed = Receiver::start(Reply::Status(200)).await;
    let response = app
        .request_as(
            Method::PATCH,
            &format!("/api/v1/admin/webhooks/{webhook}"),
            &admin.token,
        )
        .json(&json!({"url": fixed.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let untried = 100 - failing.received().len();
    fixed.wait_for(untried, Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
