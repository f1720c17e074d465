//! Bearer tokens: missing, malformed, expired, forged, wrong algorithm →
//! 401; a correct one (made here, by hand) → 200.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp, TestUser, TEST_JWT_SECRET};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(user_id: i64, session_id: i64, iat: i64, exp: i64) -> Value {
    json!({"sub": user_id.to_string(), "sid": session_id, "role": "user", "iat": iat, "exp": exp})
}

fn sign(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token valid for an hour, HS256, the server's secret, naming the
/// user's live session.
async fn valid_token(app: &TestApp, user: &TestUser) -> String {
    let session = app.current_session_id(user).await;
    sign(
        Algorithm::HS256,
        TEST_JWT_SECRET,
        &claims(user.id, session, now(), now() + 3600),
    )
}

async fn patch_with(app: &TestApp, user_id: i64, authorization: Option<&str>) -> Response {
    let mut request = app
        .request(Method::PATCH, &format!("/api/v1/users/{user_id}"))
        .json(&json!({"state": "Enugu"}));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

/// Asserts the 401 problem with the bearer challenge; returns its detail.
async fn unauthorized(response: Response) -> String {
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = problem(response, 401).await;
    body["detail"].as_str().unwrap().to_owned()
}

/// Nothing was changed by a refused request.
fn state_of(app: &TestApp, user_id: i64) -> String {
    app.sql_text(&format!("(SELECT state FROM users WHERE id = {user_id})"))
}

#[tokio::test]
async fn no_authorization_header_is_401_not_authenticated() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let detail = unauthorized(patch_with(&app, user.id, None).await).await;
    assert_eq!(detail, "Not authenticated");
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn another_scheme_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("a:b")
    );
    for value in [
        basic.as_str(),
        &format!("Token {}", user.token),
        &user.token,
    ] {
        unauthorized(patch_with(&app, user.id, Some(value)).await).await;
    }
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn a_garbage_bearer_token_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for value in ["Bearer garbage", "Bearer a.b.c", "Bearer ", "Bearer"] {
        unauthorized(patch_with(&app, user.id, Some(value)).await).await;
    }
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    // Expired a few seconds ago: no leeway is granted.
    let expired = sign(
        Algorithm::HS256,
        TEST_JWT_SECRET,
        &claims(
            user.id,
            app.current_session_id(&user).await,
            now() - 3600,
            now() - 5,
        ),
    );
    let detail =
        unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {expired}"))).await).await;
    assert_eq!(detail, "Invalid or expired token");
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let forged = sign(
        Algorithm::HS256,
        "not-the-server-secret-0123456789abcdef",
        &claims(
            user.id,
            app.current_session_id(&user).await,
            now(),
            now() + 3600,
        ),
    );
    unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {forged}"))).await).await;

    // A real token whose payload was swapped (admin role) keeps the old signature.
    let mut parts: Vec<String> = user.token.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["role"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = parts.join(".");
    unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {tampered}"))).await).await;
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn an_alg_none_token_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(
        claims(
            user.id,
            app.current_session_id(&user).await,
            now(),
            now() + 3600,
        )
        .to_string(),
    );
    let unsigned = format!("{header}.{payload}.");
    unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {unsigned}"))).await).await;
    // Without the trailing dot too.
    let unsigned = format!("{header}.{payload}");
    unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {unsigned}"))).await).await;
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn an_hs512_token_with_the_right_secret_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = sign(
        Algorithm::HS512,
        TEST_JWT_SECRET,
        &claims(
            user.id,
            app.current_session_id(&user).await,
            now(),
            now() + 3600,
        ),
    );
    unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {token}"))).await).await;
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn a_token_missing_a_required_claim_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    for claims in [
        json!({"sub": user.id.to_string(), "role": "user", "iat": now()}),
        json!({"role": "user", "iat": now(), "exp": now() + 3600}),
        json!({"sub": "not-a-number", "role": "user", "iat": now(), "exp": now() + 3600}),
    ] {
        let token = sign(Algorithm::HS256, TEST_JWT_SECRET, &claims);
        unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {token}"))).await).await;
    }
    assert_eq!(state_of(&app, user.id), "Lagos");
}

#[tokio::test]
async fn a_correct_hand_made_token_is_accepted() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let token = valid_token(&app, &user).await;
    let response = patch_with(&app, user.id, Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "Enugu");
    assert_eq!(state_of(&app, user.id), "Enugu");
    // The scheme is case-insensitive.
    let response = patch_with(&app, user.id, Some(&format!("bearer {token}"))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_optional_auth_endpoint_refuses_a_bad_token_but_not_its_absence() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let response = app.get("/api/v1/users").await;
    assert_eq!(response.status(), 200);

    let response = app.get_as("/api/v1/users", "garbage").await;
    unauthorized(response).await;

    let expired = sign(
        Algorithm::HS256,
        TEST_JWT_SECRET,
        &claims(
            user.id,
            app.current_session_id(&user).await,
            now() - 3600,
            now() - 5,
        ),
    );
    unauthorized(app.get_as("/api/v1/users", &expired).await).await;
    unauthorized(
        app.get_as(&format!("/api/v1/users/{}", user.id), "garbage")
            .await,
    )
    .await;

    let response = app
        .get_as("/api/v1/users", &valid_token(&app, &user).await)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_signed_token_without_a_live_session_of_its_user_is_401() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let others_session = app.current_session_id(&other).await;
    for claims in [
        // As tokens were before sessions existed.
        json!({"sub": user.id.to_string(), "role": "user", "iat": now(), "exp": now() + 3600}),
        // Another user's session.
        claims(user.id, others_session, now(), now() + 3600),
        // A session that never existed.
        claims(user.id, i64::MAX, now(), now() + 3600),
    ] {
        let token = sign(Algorithm::HS256, TEST_JWT_SECRET, &claims);
        let detail =
            unauthorized(patch_with(&app, user.id, Some(&format!("Bearer {token}"))).await).await;
        assert_eq!(detail, "Invalid or expired token", "{claims}");
    }
    assert_eq!(state_of(&app, user.id), "Lagos");
}
