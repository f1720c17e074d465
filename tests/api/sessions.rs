//! Sessions: refresh with rotation and reuse detection, logout (one or
//! all), the session list, and revocation seen by every instance.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{invalid_fields, problem, TestApp, TestUser};

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/token/refresh",
        &json!({ "refresh_token": refresh_token }),
    )
    .await
}

async fn refreshed(app: &TestApp, user: &TestUser) -> TestUser {
    let response = refresh(app, &user.refresh_token).await;
    assert_eq!(response.status(), 200);
    let pair: Value = response.json().await.unwrap();
    TestUser {
        token: pair["access_token"].as_str().unwrap().to_owned(),
        refresh_token: pair["refresh_token"].as_str().unwrap().to_owned(),
        ..user.clone()
    }
}

async fn logout(app: &TestApp, token: &str, body: Option<Value>) -> u16 {
    let request = app.request_as(Method::POST, "/api/v1/logout", token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn login_starts_a_session_with_a_refresh_token_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let login: Value = app
        .login(&user.email, &user.password)
        .await
        .json()
        .await
        .unwrap();
    let refresh_token = login["refresh_token"].as_str().unwrap();
    assert!(refresh_token.len() >= 43, "at least 256 bits");
    assert_eq!(login["refresh_expires_in"], 2_592_000);
    assert_eq!(login["token_type"], "Bearer");
    let stored = app.sql_text(
        "(SELECT string_agg(encode(token_hash, 'hex') || encode(token_hash, 'escape'), '') FROM refresh_tokens)",
    );
    assert!(!stored.contains(refresh_token));
    assert_eq!(
        app.sql_text("(SELECT count(*)::text FROM refresh_tokens)"),
        "2",
        "one per login"
    );
}

#[tokio::test]
async fn a_refresh_rotates_the_pair_and_a_reused_token_ends_the_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other_session = app.new_session(&user).await;

    let second = refreshed(&app, &user).await;
    assert_ne!(second.refresh_token, user.refresh_token);
    assert_eq!(app.session_status(&second.token).await, 200);
    let third = refreshed(&app, &second).await;
    assert_eq!(app.session_status(&third.token).await, 200);

    // The first refresh token, presented again: the whole session ends.
    let reused = problem(refresh(&app, &user.refresh_token).await, 401).await;
    assert_eq!(reused["detail"], "Invalid or expired refresh token");
    assert_eq!(app.session_status(&third.token).await, 401);
    assert_eq!(app.session_status(&user.token).await, 401);
    problem(refresh(&app, &third.refresh_token).await, 401).await;
    // Only that session.
    assert_eq!(app.session_status(&other_session.token).await, 200);
}

#[tokio::test]
async fn two_concurrent_refreshes_with_one_token_are_a_reuse() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let (one, two) = tokio::join!(
        refresh(&app, &user.refresh_token),
        refresh(&app, &user.refresh_token)
    );
    let mut statuses = [one.status().as_u16(), two.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401]);
    let winner: Value = if one.status() == 200 { one } else { two }
        .json()
        .await
        .unwrap();
    let token = winner["access_token"].as_str().unwrap();
    assert_eq!(
        app.session_status(token).await,
        401,
        "the session was ended by the second presentation"
    );
}

#[tokio::test]
async fn bad_refresh_requests_are_rejected() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    problem(refresh(&app, "not-a-token").await, 401).await;
    let missing = problem(
        app.post_json("/api/v1/token/refresh", &json!({})).await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&missing), ["refresh_token"]);
    let wrong_type = problem(
        app.post_json("/api/v1/token/refresh", &json!({"refresh_token": 7}))
            .await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&wrong_type), ["refresh_token"]);
    // An expired one.
    app.sql("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'");
    problem(refresh(&app, &user.refresh_token).await, 401).await;
    // An access token is not a refresh token.
    problem(refresh(&app, &user.token).await, 401).await;
}

#[tokio::test]
async fn an_expired_session_ends_its_access_tokens() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    assert_eq!(app.session_status(&user.token).await, 200);
    app.sql("UPDATE sessions SET expires_at = now() - interval '1 second'");
    assert_eq!(app.session_status(&user.token).await, 401);
}

#[tokio::test]
async fn concurrent_bearer_checks_sharing_statements_judge_each_token_alone() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let (logged_out, expired) = (app.new_session(&alice).await, app.new_session(&bob).await);
    assert_eq!(logout(&app, &logged_out.token, None).await, 204);
    app.sql(&format!(
        "UPDATE sessions SET expires_at = now() - interval '1 second' \
         WHERE id = (SELECT max(id) FROM sessions WHERE user_id = {})",
        bob.id
    ));
    // Alice's session was last used long ago: the checks mark it used.
    app.sql(&format!(
        "UPDATE sessions SET last_used_at = now() - interval '1 hour' \
         WHERE id = (SELECT min(id) FROM sessions WHERE user_id = {})",
        alice.id
    ));

    let tokens = [
        (&alice.token, 200),
        (&bob.token, 200),
        (&logged_out.token, 401),
        (&expired.token, 401),
    ];
    let statuses = futures_util::future::join_all(
        (0..48).map(|n| app.session_status(tokens[n % tokens.len()].0)),
    )
    .await;
    for (n, status) in statuses.into_iter().enumerate() {
        assert_eq!(
            status,
            tokens[n % tokens.len()].1,
            "token {}",
            n % tokens.len()
        );
    }
    assert_eq!(
        app.sql_text(&format!(
            "(SELECT (last_used_at > now() - interval '1 minute')::text FROM sessions \
             WHERE id = (SELECT min(id) FROM sessions WHERE user_id = {}))",
            alice.id
        )),
        "true"
    );
}

#[tokio::test]
async fn logout_ends_this_session_and_logout_all_ends_every_one() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let second = app.new_session(&user).await;
    let third = app.new_session(&user).await;

    assert_eq!(logout(&app, &user.token, None).await, 204);
    assert_eq!(app.session_status(&user.token).await, 401);
    problem(refresh(&app, &user.refresh_token).await, 401).await;
    assert_eq!(app.session_status(&second.token).await, 200);

    assert_eq!(
        logout(&app, &second.token, Some(json!({"all": false}))).await,
        204
    );
    assert_eq!(app.session_status(&second.token).await, 401);
    assert_eq!(app.session_status(&third.token).await, 200);

    let fourth = app.new_session(&user).await;
    assert_eq!(
        logout(&app, &third.token, Some(json!({"all": true}))).await,
        204
    );
    for ended in [&third, &fourth] {
        assert_eq!(app.session_status(&ended.token).await, 401);
    }
    // An ended session cannot log out again; a bad body changes nothing.
    assert_eq!(logout(&app, &third.token, None).await, 401);
    let fifth = app.new_session(&user).await;
    assert_eq!(
        logout(&app, &fifth.token, Some(json!({"all": "yes"}))).await,
        422
    );
    assert_eq!(app.session_status(&fifth.token).await, 200);
    assert_eq!(
        app.request(Method::POST, "/api/v1/logout")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn the_session_list_shows_live_sessions_and_ends_one() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let phone = app.new_session(&user).await;
    let stranger = app.new_user().await;

    let sessions: Vec<Value> = app
        .get_as("/api/v1/sessions", &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    for session in &sessions {
        let mut keys: Vec<_> = session.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "created_at",
                "current",
                "id",
                "ip",
                "last_used_at",
                "user_agent"
            ]
        );
        assert_eq!(session["ip"], "127.0.0.1");
    }
    let phone_id = app.current_session_id(&phone).await;
    assert_ne!(current[0]["id"], phone_id);

    // Another user's session is as absent as one that never existed.
    let strangers = app.current_session_id(&stranger).await;
    for id in [strangers, i64::MAX] {
        let response = app
            .send_as(
                Method::DELETE,
                &format!("/api/v1/sessions/{id}"),
                &user.token,
            )
            .await;
        let missing = problem(response, 404).await;
        assert_eq!(missing["detail"], format!("Session with id {id} not found"));
    }
    assert_eq!(app.session_status(&stranger.token).await, 200);

    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/sessions/{phone_id}"),
            &user.token,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.session_status(&phone.token).await, 401);
    problem(refresh(&app, &phone.refresh_token).await, 401).await;
    assert_eq!(app.session_status(&user.token).await, 200);
    let response = app
        .send_as(Method::DELETE, "/api/v1/sessions/abc", &user.token)
        .await;
    problem(response, 404).await;
}

#[tokio::test]
async fn an_ended_session_is_refused_by_every_instance() {
    let first = TestApp::spawn().await;
    let second = TestApp::start(first.settings.clone(), None).await;
    let user = first.new_user().await;
    let other = first.new_session(&user).await;
    assert_eq!(second.session_status(&user.token).await, 200);
    assert_eq!(logout(&first, &user.token, None).await, 204);
    assert_eq!(second.session_status(&user.token).await, 401);
    assert_eq!(second.session_status(&other.token).await, 200);
    // A write is refused too, not only a read.
    let response = second
        .request_as(Method::POST, "/api/v1/post-content", &user.token)
        .json(&json!({"title": "After logout", "content": "Must not be stored at all."}))
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
    assert_eq!(first.sql_text("(SELECT count(*)::text FROM contents)"), "0");
}
