//! Login: the token response, case-insensitive email, one 401 for
//! every wrong login (same message, about the same time).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    invalid_fields, problem, signup_body, sorted, sorted_keys, unique_email, TestApp,
};

const PRIVATE_KEYS: [&str; 8] = [
    "id",
    "name",
    "email",
    "phone_number",
    "country",
    "state",
    "role",
    "created_at",
];

#[tokio::test]
async fn login_answers_a_bearer_token_and_the_private_view() {
    let app = TestApp::spawn().await;
    let body = signup_body();
    let created: Value = app.signup(&body).await.json().await.unwrap();

    let response = app
        .login(
            body["email"].as_str().unwrap(),
            body["password"].as_str().unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let login: Value = response.json().await.unwrap();
    assert_eq!(
        sorted_keys(&login),
        sorted(&[
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
            "user"
        ])
    );
    let token = login["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["expires_in"], 3600, "the default JWT_TTL_SECONDS");

    let user = &login["user"];
    assert_eq!(
        sorted_keys(user),
        sorted(&PRIVATE_KEYS),
        "no password fields: {user}"
    );
    assert_eq!(user, &created, "the same private view as signup");
    assert_eq!(user["email"], body["email"]);
    assert_eq!(user["phone_number"], body["phone_number"]);
    let text = login.to_string();
    assert!(!text.contains("password"), "{text}");
    assert!(!text.contains("argon2"), "{text}");
}

#[tokio::test]
async fn expires_in_follows_the_configured_ttl() {
    let app = TestApp::spawn_with(|settings| settings.jwt_ttl_seconds = 120).await;
    let body = signup_body();
    assert_eq!(app.signup(&body).await.status(), 201);
    let login: Value = app
        .login(
            body["email"].as_str().unwrap(),
            body["password"].as_str().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login["expires_in"], 120);

    // The token's own `exp` says the same.
    let token = login["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 120, "{claims}");
}

#[tokio::test]
async fn the_email_is_matched_ignoring_case() {
    let app = TestApp::spawn().await;
    let mut body = signup_body();
    let local = uuid::Uuid::new_v4().simple().to_string();
    body["email"] = json!(format!("Mixed.{local}@Example.com"));
    let created: Value = app.signup(&body).await.json().await.unwrap();

    let response = app
        .login(
            &format!("MIXED.{}@example.COM", local.to_uppercase()),
            "correct horse battery",
        )
        .await;
    assert_eq!(response.status(), 200);
    let login: Value = response.json().await.unwrap();
    assert_eq!(login["user"]["id"], created["id"]);
    assert_eq!(login["user"]["email"], format!("Mixed.{local}@example.com"));
}

#[tokio::test]
async fn a_wrong_password_is_a_401_with_the_old_message() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for wrong in ["correct horse battery!", "Correct horse battery", ""] {
        let response = app.login(&user.email, wrong).await;
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body = problem(response, 401).await;
        assert_eq!(body["detail"], "Invalid email or password", "{wrong:?}");
        assert!(!body.to_string().contains("access_token"));
    }
}

#[tokio::test]
async fn an_unknown_email_is_the_same_401() {
    let app = TestApp::spawn().await;
    app.new_user().await;
    for email in [unique_email(), "not-an-email".to_owned()] {
        let response = app.login(&email, "correct horse battery").await;
        let body = problem(response, 401).await;
        assert_eq!(body["detail"], "Invalid email or password", "{email}");
    }
}

#[tokio::test]
async fn missing_fields_are_a_422_listing_both() {
    let app = TestApp::spawn().await;
    let body = problem(app.post_json("/api/v1/login", &json!({})).await, 422).await;
    assert_eq!(invalid_fields(&body), ["email", "password"]);
    assert!(body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["code"] == "required"));

    let body = problem(
        app.post_json("/api/v1/login", &json!({"email": "a@example.com"}))
            .await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&body), ["password"]);

    let body = problem(
        app.post_json(
            "/api/v1/login",
            &json!({"email": null, "password": 12345678}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&body), ["email", "password"]);
}

#[tokio::test]
async fn the_login_token_opens_a_protected_endpoint() {
    let app = TestApp::spawn().await;
    let body = signup_body();
    let created: Value = app.signup(&body).await.json().await.unwrap();
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
    let path = format!("/api/v1/users/{}", created["id"]);

    let response = app
        .request(Method::PATCH, &path)
        .bearer_auth(token)
        .json(&json!({"state": "Oyo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["state"], "Oyo");

    // Without it, the same request is refused.
    let response = app
        .request(Method::PATCH, &path)
        .json(&json!({"state": "Kano"}))
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
}

async fn timed_login(app: &TestApp, email: &str, password: &str) -> Duration {
    let started = Instant::now();
    let response = app.login(email, password).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 401);
    elapsed
}

#[tokio::test]
async fn an_unknown_email_costs_about_as_much_as_a_wrong_password() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    // Warm up both paths (connections, caches).
    timed_login(&app, &user.email, "wrong password 0").await;
    timed_login(&app, &unique_email(), "wrong password 0").await;

    let mut wrong_password = Duration::MAX;
    let mut unknown_email = Duration::MAX;
    for attempt in 0..3 {
        let password = format!("wrong password {attempt}");
        wrong_password = wrong_password.min(timed_login(&app, &user.email, &password).await);
        unknown_email = unknown_email.min(timed_login(&app, &unique_email(), &password).await);
    }
    assert!(
        unknown_email.as_secs_f64() >= 0.4 * wrong_password.as_secs_f64(),
        "an unknown email ({unknown_email:?}) must verify a dummy hash like a wrong password ({wrong_password:?})"
    );
}
