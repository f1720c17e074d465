//! Users: who sees email and phone, embedded contents, keyset pages,
//! and updates (self or admin, same rules and duplicates as signup).

use std::collections::HashSet;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{
    invalid_fields, problem, signup_body, sorted, sorted_keys, TestApp, TestUser, CONTENT_KEYS,
};

const PUBLIC_KEYS: [&str; 6] = ["id", "name", "country", "state", "created_at", "contents"];
const PRIVATE_KEYS: [&str; 9] = [
    "id",
    "name",
    "email",
    "phone_number",
    "country",
    "state",
    "role",
    "created_at",
    "contents",
];

fn assert_public(user: &Value) {
    assert_eq!(
        sorted_keys(user),
        sorted(&PUBLIC_KEYS),
        "public view: {user}"
    );
}

fn assert_private(user: &Value) {
    assert_eq!(
        sorted_keys(user),
        sorted(&PRIVATE_KEYS),
        "private view: {user}"
    );
}

/// Inserts `count` items for `user_id`, the i-th created `i` minutes after
/// a fixed instant (so item `count - 1` is the newest). Returns their ids,
/// oldest first.
fn insert_contents(app: &TestApp, user_id: i64, count: usize, label: &str) -> Vec<i64> {
    (0..count)
        .map(|i| {
            app.sql(&format!(
                "INSERT INTO contents (title, content, user_id, created_at) VALUES \
                 ('{label} title {i}', '{label} body number {i}', {user_id}, \
                  TIMESTAMPTZ '2026-01-01 00:00:00+00' + interval '{i} minutes')"
            ));
            app.sql_text(&format!(
                "(SELECT id::text FROM contents WHERE title = '{label} title {i}' AND user_id = {user_id})"
            ))
            .parse()
            .unwrap()
        })
        .collect()
}

async fn json_ok(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn get_user(app: &TestApp, id: i64, token: Option<&str>) -> Value {
    let path = format!("/api/v1/users/{id}");
    let response = match token {
        Some(token) => app.get_as(&path, token).await,
        None => app.get(&path).await,
    };
    json_ok(response).await
}

fn entry(list: &Value, id: i64) -> &Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|user| user["id"] == id)
        .unwrap_or_else(|| panic!("user {id} listed"))
}

// ---- views -----------------------------------------------------------------

#[tokio::test]
async fn strangers_see_the_public_view_of_a_user() {
    let app = TestApp::spawn().await;
    let owner = app.new_user().await;
    let stranger = app.new_user().await;

    let anonymous = get_user(&app, owner.id, None).await;
    assert_public(&anonymous);
    assert_eq!(anonymous["id"], owner.id);
    assert_eq!(anonymous["name"], "Chloé Adé");
    assert_eq!(anonymous["country"], "Nigeria");
    assert_eq!(anonymous["state"], "Lagos");
    assert_eq!(anonymous["contents"], json!([]));

    let as_stranger = get_user(&app, owner.id, Some(&stranger.token)).await;
    assert_public(&as_stranger);
    assert_eq!(as_stranger, anonymous);
    let text = as_stranger.to_string();
    assert!(!text.contains(&owner.email), "{text}");
}

#[tokio::test]
async fn the_user_and_admins_see_the_private_view() {
    let app = TestApp::spawn().await;
    let body = signup_body();
    let created: Value = app.signup(&body).await.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();
    let login: Value = app
        .login(
            body["email"].as_str().unwrap(),
            body["password"].as_str().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let admin = app.new_admin().await;

    for viewer in [token, admin.token.as_str()] {
        let user = get_user(&app, id, Some(viewer)).await;
        assert_private(&user);
        assert_eq!(user["email"], body["email"]);
        assert_eq!(user["phone_number"], body["phone_number"]);
        assert_eq!(user["created_at"], created["created_at"]);
    }
}

#[tokio::test]
async fn the_list_shows_private_fields_only_for_self_or_to_an_admin() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    let other = app.new_user().await;
    let admin = app.new_admin().await;

    let anonymous = json_ok(app.get("/api/v1/users").await).await;
    assert_eq!(anonymous.as_array().unwrap().len(), 3);
    for user in anonymous.as_array().unwrap() {
        assert_public(user);
    }

    let as_me = json_ok(app.get_as("/api/v1/users", &me.token).await).await;
    assert_private(entry(&as_me, me.id));
    assert_eq!(entry(&as_me, me.id)["email"], me.email.as_str());
    assert_public(entry(&as_me, other.id));
    assert_public(entry(&as_me, admin.id));

    let as_admin = json_ok(app.get_as("/api/v1/users", &admin.token).await).await;
    for user in [&me, &other, &admin] {
        let listed = entry(&as_admin, user.id);
        assert_private(listed);
        assert_eq!(listed["email"], user.email.as_str());
    }
}

#[tokio::test]
async fn an_unknown_user_is_a_404_with_the_old_message() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let unknown = user.id + 1000;
    let body = problem(app.get(&format!("/api/v1/users/{unknown}")).await, 404).await;
    assert_eq!(body["detail"], format!("User with id {unknown} not found"));
    let body = problem(
        app.get_as(&format!("/api/v1/users/{unknown}"), &user.token)
            .await,
        404,
    )
    .await;
    assert_eq!(body["detail"], format!("User with id {unknown} not found"));
}

// ---- embedded contents -----------------------------------------------------

#[tokio::test]
async fn contents_are_the_newest_twenty_newest_first() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let ids = insert_contents(&app, user.id, 25, "mine");

    let got = get_user(&app, user.id, None).await;
    let contents = got["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 20, "default contents_limit");
    let got_ids: Vec<i64> = contents.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = ids.iter().rev().take(20).copied().collect();
    assert_eq!(got_ids, expected, "newest first");
    let created: Vec<&str> = contents
        .iter()
        .map(|c| c["created_at"].as_str().unwrap())
        .collect();
    assert_eq!(created[0], "2026-01-01T00:24:00.000000Z");
    assert!(created.windows(2).all(|w| w[0] > w[1]), "{created:?}");

    for item in contents {
        assert_eq!(sorted_keys(item), sorted(&CONTENT_KEYS), "{item}");
        assert_eq!(item["user_id"], user.id);
        assert_eq!(item["image"], Value::Null);
    }
    assert_eq!(contents[0]["title"], "mine title 24");
    assert_eq!(contents[0]["content"], "mine body number 24");
}

#[tokio::test]
async fn contents_limit_bounds_the_embedded_items() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let ids = insert_contents(&app, user.id, 25, "limit");
    let path = format!("/api/v1/users/{}", user.id);

    let three = json_ok(app.get(&format!("{path}?contents_limit=3")).await).await;
    let got: Vec<i64> = three["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[24], ids[23], ids[22]]);

    let none = json_ok(app.get(&format!("{path}?contents_limit=0")).await).await;
    assert_eq!(none["contents"], json!([]));

    let all = json_ok(app.get(&format!("{path}?contents_limit=100")).await).await;
    assert_eq!(all["contents"].as_array().unwrap().len(), 25);

    for bad in ["101", "-1", "abc", ""] {
        let body = problem(app.get(&format!("{path}?contents_limit={bad}")).await, 422).await;
        assert_eq!(invalid_fields(&body), ["contents_limit"], "{bad:?}");
    }
    let body = problem(app.get("/api/v1/users?contents_limit=101").await, 422).await;
    assert_eq!(invalid_fields(&body), ["contents_limit"]);
}

#[tokio::test]
async fn each_listed_user_carries_their_own_contents() {
    let app = TestApp::spawn().await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let alice_items = insert_contents(&app, alice.id, 2, "alice");
    let bob_items = insert_contents(&app, bob.id, 3, "bob");

    let list = json_ok(app.get("/api/v1/users?limit=2").await).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    for (user, items, label) in [(&alice, &alice_items, "alice"), (&bob, &bob_items, "bob")] {
        let contents = entry(&list, user.id)["contents"]
            .as_array()
            .unwrap()
            .clone();
        let ids: Vec<i64> = contents.iter().map(|c| c["id"].as_i64().unwrap()).collect();
        let expected: Vec<i64> = items.iter().rev().copied().collect();
        assert_eq!(ids, expected, "{label}");
        for item in &contents {
            assert_eq!(item["user_id"], user.id);
            assert!(item["title"].as_str().unwrap().starts_with(label));
        }
    }

    // contents_limit applies per user.
    let list = json_ok(app.get("/api/v1/users?contents_limit=1").await).await;
    assert_eq!(entry(&list, alice.id)["contents"][0]["id"], alice_items[1]);
    assert_eq!(entry(&list, bob.id)["contents"][0]["id"], bob_items[2]);
    assert_eq!(
        entry(&list, bob.id)["contents"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn concurrent_reads_sharing_statements_each_get_their_own_answer() {
    let app = TestApp::spawn().await;
    let users = [
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
    ];
    let items = [
        insert_contents(&app, users[0].id, 5, "first"),
        insert_contents(&app, users[1].id, 3, "second"),
        Vec::new(),
    ];
    let unknown = users[2].id + 1000;
    // Reads of several users at once (duplicates, limits and views mixed),
    // more than the lanes: most share a statement with others.
    let reads: Vec<(usize, i64, bool)> = (0..60)
        .map(|n| (n % 4, (n % 6) as i64, n % 5 == 0))
        .collect();
    let responses = futures_util::future::join_all(reads.iter().map(|&(who, limit, own)| {
        let id = users.get(who).map_or(unknown, |user| user.id);
        let path = format!("/api/v1/users/{id}?contents_limit={limit}");
        let token = users
            .get(who)
            .filter(|_| own)
            .map(|user| user.token.clone());
        let app = &app;
        async move {
            match token {
                Some(token) => app.get_as(&path, &token).await,
                None => app.get(&path).await,
            }
        }
    }))
    .await;
    for ((who, limit, own), response) in reads.into_iter().zip(responses) {
        let Some(user) = users.get(who) else {
            problem(response, 404).await;
            continue;
        };
        let body = json_ok(response).await;
        assert_eq!(body["id"], user.id);
        if own {
            assert_private(&body);
        } else {
            assert_public(&body);
        }
        let got: Vec<i64> = body["contents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        let expected: Vec<i64> = items[who]
            .iter()
            .rev()
            .take(limit as usize)
            .copied()
            .collect();
        assert_eq!(got, expected, "user {who}, contents_limit={limit}");
    }
}

// ---- pagination ------------------------------------------------------------

/// The target of `Link: <…>; rel="next"`, as a path on this server.
fn next_link(response: &Response, address: &str) -> Option<String> {
    let value = response.headers().get("link")?.to_str().unwrap().to_owned();
    let (target, rel) = value.split_once(">;").expect("`<…>; rel=…`");
    assert_eq!(rel.trim(), "rel=\"next\"", "{value}");
    let target = target.strip_prefix('<').expect("starts with <");
    Some(target.strip_prefix(address).unwrap_or(target).to_owned())
}

#[tokio::test]
async fn following_next_links_visits_every_user_once_in_id_order() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.new_user().await.id);
    }

    let mut seen: Vec<i64> = Vec::new();
    let mut page_sizes = Vec::new();
    let mut next = Some("/api/v1/users?limit=2".to_owned());
    while let Some(path) = next {
        assert!(page_sizes.len() < 10, "pagination does not end");
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        next = next_link(&response, &app.address);
        let page: Value = response.json().await.unwrap();
        let ids: Vec<i64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_i64().unwrap())
            .collect();
        page_sizes.push(ids.len());
        seen.extend(ids);
    }
    assert_eq!(page_sizes, [2, 2, 1]);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "strictly ascending: {seen:?}"
    );
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 5);
    created.sort();
    assert_eq!(seen, created);
}

#[tokio::test]
async fn a_page_that_holds_the_rest_has_no_next_link() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.new_user().await;
    }
    let response = app.get("/api/v1/users?limit=3").await;
    assert!(response.headers().get("link").is_none());
    assert_eq!(json_ok(response).await.as_array().unwrap().len(), 3);

    let response = app.get("/api/v1/users?limit=2").await;
    assert!(next_link(&response, &app.address).is_some());
}

#[tokio::test]
async fn invalid_limits_and_cursors_are_422() {
    let app = TestApp::spawn().await;
    app.new_user().await;
    for bad in ["0", "101", "abc", "-1"] {
        let body = problem(app.get(&format!("/api/v1/users?limit={bad}")).await, 422).await;
        assert_eq!(invalid_fields(&body), ["limit"], "{bad}");
    }
    let body = problem(app.get("/api/v1/users?cursor=garbage!").await, 422).await;
    assert_eq!(invalid_fields(&body), ["cursor"]);
    let body = problem(app.get("/api/v1/users?limit=0&cursor=garbage!").await, 422).await;
    assert_eq!(invalid_fields(&body), ["limit", "cursor"], "both at once");
    // The bounds themselves are fine.
    assert_eq!(app.get("/api/v1/users?limit=1").await.status(), 200);
    assert_eq!(app.get("/api/v1/users?limit=100").await.status(), 200);
}

// ---- updates ---------------------------------------------------------------

async fn update(
    app: &TestApp,
    method: Method,
    id: i64,
    token: Option<&str>,
    body: &Value,
) -> Response {
    let mut request = app
        .request(method, &format!("/api/v1/users/{id}"))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn private_view(app: &TestApp, user: &TestUser) -> Value {
    let mut view = get_user(app, user.id, Some(&user.token)).await;
    view.as_object_mut().unwrap().remove("contents");
    view
}

#[tokio::test]
async fn a_user_renames_themself_with_patch_or_put() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let before = private_view(&app, &user).await;

    for (method, name) in [(Method::PATCH, "Ọlá Bankole"), (Method::PUT, "Jörg Müller")] {
        let response = update(
            &app,
            method.clone(),
            user.id,
            Some(&user.token),
            &json!({"name": format!("  {name} ")}),
        )
        .await;
        let updated = json_ok(response).await;
        assert_eq!(
            sorted_keys(&updated),
            sorted(&[
                "id",
                "name",
                "email",
                "phone_number",
                "country",
                "state",
                "role",
                "created_at"
            ]),
            "{method}: the private User view"
        );
        assert_eq!(updated["name"], name, "{method}: trimmed");
        let mut expected = before.clone();
        expected["name"] = json!(name);
        assert_eq!(updated, expected, "{method}: nothing else changed");
        // Reads see it.
        let read = get_user(&app, user.id, None).await;
        assert_eq!(read["name"], name);
        let list = json_ok(app.get("/api/v1/users").await).await;
        assert_eq!(entry(&list, user.id)["name"], name);
    }
}

#[tokio::test]
async fn another_user_may_not_update_but_an_admin_may() {
    let app = TestApp::spawn().await;
    let victim = app.new_user().await;
    let other = app.new_user().await;
    let admin = app.new_admin().await;

    for method in [Method::PATCH, Method::PUT] {
        let response = update(
            &app,
            method,
            victim.id,
            Some(&other.token),
            &json!({"name": "Mallory"}),
        )
        .await;
        problem(response, 403).await;
    }
    assert_eq!(get_user(&app, victim.id, None).await["name"], "Chloé Adé");

    for (method, state) in [(Method::PATCH, "Kaduna"), (Method::PUT, "Borno")] {
        let response = update(
            &app,
            method,
            victim.id,
            Some(&admin.token),
            &json!({"state": state}),
        )
        .await;
        let updated = json_ok(response).await;
        assert_eq!(updated["id"], victim.id);
        assert_eq!(updated["state"], state);
        assert_eq!(updated["email"], victim.email.as_str(), "the private view");
    }
    assert_eq!(get_user(&app, victim.id, None).await["state"], "Borno");
}

#[tokio::test]
async fn updating_an_unknown_user_is_404_for_admins_and_403_for_others() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let admin = app.new_admin().await;
    let unknown = admin.id + 1000;

    let response = update(
        &app,
        Method::PATCH,
        unknown,
        Some(&admin.token),
        &json!({"name": "Ghost"}),
    )
    .await;
    let body = problem(response, 404).await;
    assert_eq!(body["detail"], format!("User with id {unknown} not found"));
    // Also with nothing to change.
    let response = update(&app, Method::PUT, unknown, Some(&admin.token), &json!({})).await;
    let body = problem(response, 404).await;
    assert_eq!(body["detail"], format!("User with id {unknown} not found"));

    let response = update(
        &app,
        Method::PATCH,
        unknown,
        Some(&user.token),
        &json!({"name": "Ghost"}),
    )
    .await;
    problem(response, 403).await;
}

#[tokio::test]
async fn updating_without_a_token_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for method in [Method::PATCH, Method::PUT] {
        let response = update(&app, method, user.id, None, &json!({"name": "Nobody"})).await;
        let body = problem(response, 401).await;
        assert_eq!(body["detail"], "Not authenticated");
    }
    assert_eq!(get_user(&app, user.id, None).await["name"], "Chloé Adé");
}

#[tokio::test]
async fn taking_another_users_email_in_other_case_is_a_400() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    let other = app.new_user().await;
    for method in [Method::PATCH, Method::PUT] {
        let response = update(
            &app,
            method,
            me.id,
            Some(&me.token),
            &json!({"email": other.email.to_uppercase()}),
        )
        .await;
        let body = problem(response, 400).await;
        assert_eq!(body["detail"], "Email already registered");
    }
    assert_eq!(private_view(&app, &me).await["email"], me.email.as_str());
}

#[tokio::test]
async fn taking_another_users_phone_in_national_format_is_a_400() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    let other = app.new_user().await;
    let other_phone = private_view(&app, &other).await["phone_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let national = other_phone.replace("+234", "0");
    let response = update(
        &app,
        Method::PATCH,
        me.id,
        Some(&me.token),
        &json!({"phone_number": national}),
    )
    .await;
    let body = problem(response, 400).await;
    assert_eq!(body["detail"], "Phone number already registered");
    assert_ne!(
        private_view(&app, &me).await["phone_number"],
        other_phone.as_str()
    );
}

#[tokio::test]
async fn resubmitting_ones_own_phone_or_email_in_another_form_is_fine() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    let before = private_view(&app, &me).await;
    let phone = before["phone_number"].as_str().unwrap().to_owned();
    let national = phone.replace("+234", "0");
    assert!(national.starts_with("0803"), "{national}");

    let response = update(
        &app,
        Method::PATCH,
        me.id,
        Some(&me.token),
        &json!({"phone_number": national}),
    )
    .await;
    let updated = json_ok(response).await;
    assert_eq!(
        updated["phone_number"],
        phone.as_str(),
        "stored in E.164 again"
    );

    let shouted = me.email.to_uppercase();
    let response = update(
        &app,
        Method::PUT,
        me.id,
        Some(&me.token),
        &json!({"email": shouted}),
    )
    .await;
    let updated = json_ok(response).await;
    let email = updated["email"].as_str().unwrap();
    assert_eq!(email.to_lowercase(), me.email.to_lowercase());
    assert!(
        email.ends_with("@example.com"),
        "domain lower-cased: {email}"
    );

    // Still logs in, with either spelling.
    assert_eq!(app.login(&me.email, &me.password).await.status(), 200);
}

#[tokio::test]
async fn every_invalid_field_of_an_update_is_reported() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    let before = private_view(&app, &me).await;
    for method in [Method::PATCH, Method::PUT] {
        let response = update(
            &app,
            method,
            me.id,
            Some(&me.token),
            &json!({"name": "123", "email": "x", "phone_number": "1"}),
        )
        .await;
        let body = problem(response, 422).await;
        assert_eq!(invalid_fields(&body), ["name", "email", "phone_number"]);
        assert_eq!(body["detail"], "3 fields are invalid");
    }
    let body = problem(
        update(
            &app,
            Method::PATCH,
            me.id,
            Some(&me.token),
            &json!({"country": "X", "state": 7}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&body), ["country", "state"]);
    assert_eq!(private_view(&app, &me).await, before, "nothing was changed");
}

#[tokio::test]
async fn null_is_not_a_name() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    for method in [Method::PATCH, Method::PUT] {
        let response = update(&app, method, me.id, Some(&me.token), &json!({"name": null})).await;
        let body = problem(response, 422).await;
        assert_eq!(invalid_fields(&body), ["name"]);
    }
    assert_eq!(get_user(&app, me.id, None).await["name"], "Chloé Adé");
}

#[tokio::test]
async fn an_empty_update_changes_nothing() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    let before = private_view(&app, &me).await;
    for method in [Method::PATCH, Method::PUT] {
        let response = update(&app, method, me.id, Some(&me.token), &json!({})).await;
        let updated = json_ok(response).await;
        assert_eq!(updated, before);
    }
    assert_eq!(private_view(&app, &me).await, before);
}

#[tokio::test]
async fn malformed_json_in_an_update_is_a_400() {
    let app = TestApp::spawn().await;
    let me = app.new_user().await;
    for body in ["{\"name\": ", "[1]"] {
        let response = app
            .request(Method::PATCH, &format!("/api/v1/users/{}", me.id))
            .bearer_auth(&me.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, 400).await;
    }
}
