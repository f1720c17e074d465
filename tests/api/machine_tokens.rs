//! Machine tokens: shown once, stored as hashes, limited to their
//! scopes, never for account, session or token management, revocable.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{invalid_fields, problem, TestApp, TestUser};

async fn create(app: &TestApp, user: &TestUser, body: Value) -> reqwest::Response {
    app.request_as(Method::POST, "/api/v1/tokens", &user.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn created(app: &TestApp, user: &TestUser, scopes: &[&str]) -> (i64, String) {
    let response = create(
        app,
        user,
        json!({"name": "deploy", "scopes": scopes, "expires_in_days": 30}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_i64().unwrap(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

async fn post_as(app: &TestApp, token: &str) -> reqwest::Response {
    app.request_as(Method::POST, "/api/v1/post-content", token)
        .json(&json!({"title": "By a script", "content": "Posted with a machine token."}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_is_shown_once_stored_as_a_hash_and_listed_without_it() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let response = create(
        &app,
        &user,
        json!({"name": " ci ", "scopes": ["content:read", "content:write"]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/tokens/{}", body["id"]));
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("cat_") && token.len() >= 47, "{token}");
    assert_eq!(body["name"], "ci");
    assert_eq!(body["scopes"], json!(["content:read", "content:write"]));
    assert_eq!(body["expires_at"], Value::Null);

    let listed: Vec<Value> = app
        .get_as("/api/v1/tokens", &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("token").is_none());
    assert_eq!(listed[0]["id"], body["id"]);
    let stored = app.sql_text(
        "(SELECT string_agg(encode(token_hash, 'hex') || encode(token_hash, 'escape') || name, '') FROM api_tokens)",
    );
    assert!(!stored.contains(token) && !stored.contains(&token[4..]));
    // Another user's list is their own.
    let other = app.new_user().await;
    let theirs: Vec<Value> = app
        .get_as("/api/v1/tokens", &other.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty());
}

#[tokio::test]
async fn a_token_acts_for_its_owner_within_its_scopes_only() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let (_, writer) = created(&app, &user, &["content:write"]).await;
    let (_, reader) = created(&app, &user, &["content:read"]).await;

    let posted = post_as(&app, &writer).await;
    assert_eq!(posted.status(), 201);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(posted["user_id"], user.id);
    let denied = problem(post_as(&app, &reader).await, 403).await;
    assert_eq!(denied["detail"], "This token lacks the content:write scope");
    let item = posted["id"].as_i64().unwrap();
    let response = app
        .request_as(Method::PATCH, &format!("/api/v1/content/{item}"), &reader)
        .json(&json!({"title": "Changed by a reader"}))
        .send()
        .await
        .unwrap();
    problem(response, 403).await;
    // Never for accounts, sessions, tokens or administration.
    let checks = [
        (Method::GET, "/api/v1/sessions".to_owned(), None),
        (Method::POST, "/api/v1/logout".to_owned(), None),
        (Method::GET, "/api/v1/tokens".to_owned(), None),
        (
            Method::POST,
            "/api/v1/tokens".to_owned(),
            Some(json!({"name": "x", "scopes": ["content:read"]})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", user.id),
            Some(json!({"state": "Enugu"})),
        ),
        (Method::DELETE, format!("/api/v1/users/{}", user.id), None),
        (
            Method::POST,
            format!("/api/v1/users/{}/password", user.id),
            Some(json!({"current_password": user.password, "new_password": "taken over!"})),
        ),
        (Method::GET, "/api/v1/admin/cache".to_owned(), None),
        (Method::GET, "/api/v1/admin/audit".to_owned(), None),
    ];
    for (method, path, body) in checks {
        let mut request = app.request_as(method.clone(), &path, &writer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        problem(request.send().await.unwrap(), 403).await;
    }
    assert_eq!(app.login(&user.email, &user.password).await.status(), 200);
    // A user read with a machine token shows the public view.
    let me: Value = app
        .get_as(&format!("/api/v1/users/{}", user.id), &writer)
        .await
        .json()
        .await
        .unwrap();
    assert!(me.get("email").is_none());
}

#[tokio::test]
async fn a_revoked_or_expired_token_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let (id, token) = created(&app, &user, &["content:write"]).await;
    let (other_id, other) = created(&app, &user, &["content:write"]).await;
    assert_eq!(post_as(&app, &token).await.status(), 201);

    let stranger = app.new_user().await;
    let foreign = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            &stranger.token,
        )
        .await;
    assert_eq!(
        problem(foreign, 404).await["detail"],
        format!("Token with id {id} not found")
    );

    let revoked = app
        .send_as(Method::DELETE, &format!("/api/v1/tokens/{id}"), &user.token)
        .await;
    assert_eq!(revoked.status(), 204);
    let refused = problem(post_as(&app, &token).await, 401).await;
    assert_eq!(refused["detail"], "Invalid or expired token");
    assert_eq!(post_as(&app, &other).await.status(), 201);

    app.sql(&format!(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = {other_id}"
    ));
    problem(post_as(&app, &other).await, 401).await;
    problem(post_as(&app, "cat_not-a-real-token").await, 401).await;
}

#[tokio::test]
async fn a_token_follows_its_owners_current_role() {
    let app = TestApp::spawn().await;
    let owner = app.new_admin().await;
    let someone = app.new_user().await;
    let (_, token) = created(&app, &owner, &["content:write"]).await;
    let as_someone = json!({"title": "On behalf", "content": "Admins may post for others.", "user_id": someone.id});
    let post = || async {
        app.request_as(Method::POST, "/api/v1/post-content", &token)
            .json(&as_someone)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(post().await.status(), 201);
    app.sql(&format!(
        "UPDATE users SET role = 'user' WHERE id = {}",
        owner.id
    ));
    problem(post().await, 403).await;
}

#[tokio::test]
async fn invalid_token_requests_are_422() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for (body, field) in [
        (json!({"scopes": ["content:read"]}), "name"),
        (json!({"name": "  ", "scopes": ["content:read"]}), "name"),
        (json!({"name": "x"}), "scopes"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["admin"]}), "scopes"),
        (json!({"name": "x", "scopes": [1]}), "scopes"),
        (
            json!({"name": "x", "scopes": ["content:read"], "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "x", "scopes": ["content:read"], "expires_in_days": 366}),
            "expires_in_days",
        ),
        (
            json!({"name": "x", "scopes": ["content:read"], "expires_in_days": 1.5}),
            "expires_in_days",
        ),
    ] {
        let invalid = problem(create(&app, &user, body.clone()).await, 422).await;
        assert_eq!(invalid_fields(&invalid), [field], "{body}");
    }
    let none: Vec<Value> = app
        .get_as("/api/v1/tokens", &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());
    let anonymous = app
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "x", "scopes": ["content:read"]}),
        )
        .await;
    problem(anonymous, 401).await;
}
