//! The audit log and per-email login throttling.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

async fn audit_page(app: &TestApp, token: &str, query: &str) -> (Vec<Value>, Option<String>) {
    let response = app
        .get_as(&format!("/api/v1/admin/audit{query}"), token)
        .await;
    assert_eq!(response.status(), 200);
    let next = response
        .headers()
        .get("link")
        .map(|link| link.to_str().unwrap().to_owned());
    (response.json().await.unwrap(), next)
}

#[tokio::test]
async fn security_events_are_audited_newest_first_without_secrets() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    assert_eq!(
        app.login(&user.email, "a wrong password").await.status(),
        401
    );
    let response = app
        .request_as(Method::POST, "/api/v1/logout", &user.token)
        .header("x-request-id", "logout-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let token: Value = app
        .request_as(Method::POST, "/api/v1/tokens", &admin.token)
        .json(&json!({"name": "ci", "scopes": ["content:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let (events, _) = audit_page(&app, &admin.token, "?limit=100").await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "token.created",
            "logout",
            "login.failed",
            "login.succeeded", // the user's
            "login.succeeded", // the admin's second login (after promotion)
            "login.succeeded", // the admin's first
        ]
    );
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "newest first");
    let logout = &events[1];
    assert_eq!(logout["actor_user_id"], user.id);
    assert_eq!(logout["target_user_id"], user.id);
    assert_eq!(logout["request_id"], "logout-req-1");
    assert_eq!(logout["ip"], "127.0.0.1");
    let failed = &events[2];
    assert_eq!(failed["actor_user_id"], Value::Null);
    assert_eq!(failed["target_user_id"], user.id);
    let mut keys: Vec<_> = logout.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "action",
            "actor_user_id",
            "at",
            "id",
            "ip",
            "request_id",
            "target_user_id"
        ]
    );
    let everything =
        app.sql_text("(SELECT string_agg(row_to_json(a)::text, '') FROM audit_events a)");
    for secret in [
        user.password.as_str(),
        "a wrong password",
        user.token.as_str(),
        user.refresh_token.as_str(),
        token["token"].as_str().unwrap(),
    ] {
        assert!(!everything.contains(secret));
    }
    problem(app.get_as("/api/v1/admin/audit", &user.token).await, 401).await;
    let other = app.new_user().await;
    problem(app.get_as("/api/v1/admin/audit", &other.token).await, 403).await;
    problem(app.get("/api/v1/admin/audit").await, 401).await;
}

#[tokio::test]
async fn the_audit_log_is_keyset_paginated() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    for _ in 0..4 {
        app.new_session(&admin).await;
    }
    let (first, next) = audit_page(&app, &admin.token, "?limit=4").await;
    assert_eq!(first.len(), 4);
    let next = next.expect("a next page");
    let path = next
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let (second, last) = audit_page(
        &app,
        &admin.token,
        path.trim_start_matches("/api/v1/admin/audit"),
    )
    .await;
    assert_eq!(second.len(), 2, "six logins in all");
    assert!(last.is_none());
    assert!(first.last().unwrap()["id"].as_i64() > second[0]["id"].as_i64());
    for bad in ["?limit=0", "?limit=101", "?cursor=abc"] {
        problem(
            app.get_as(&format!("/api/v1/admin/audit{bad}"), &admin.token)
                .await,
            422,
        )
        .await;
    }
}

#[tokio::test]
async fn ten_failed_logins_lock_the_address_from_any_client() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let bystander = app.new_user().await;
    for _ in 0..10 {
        assert_eq!(
            app.login(&user.email, "not the password").await.status(),
            401
        );
    }
    // Even the right password, from any client, in any letter case.
    let locked = app.login(&user.email.to_uppercase(), &user.password).await;
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((890..=900).contains(&retry_after), "{retry_after}");
    problem(locked, 429).await;
    let forwarded = app
        .request(Method::POST, "/api/v1/login")
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": user.email, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 429);
    assert_eq!(
        app.login(&bystander.email, &bystander.password)
            .await
            .status(),
        200
    );
    // Once the failures are older than the window, the address opens.
    app.sql("UPDATE login_failures SET at = at - interval '16 minutes'");
    assert_eq!(app.login(&user.email, &user.password).await.status(), 200);
    assert_eq!(
        app.sql_text("(SELECT count(*)::text FROM login_failures)"),
        "0",
        "a successful login clears the count"
    );
}

#[tokio::test]
async fn failures_older_than_the_lock_window_are_pruned_for_every_address() {
    let app = TestApp::spawn().await;
    app.sql(
        "INSERT INTO login_failures (email_hash, at) VALUES \
         (sha256('old@example.com'), now() - interval '31 minutes'), \
         (sha256('recent@example.com'), now() - interval '1 minute')",
    );
    assert_eq!(
        app.login("someone-else@example.com", "wrong password")
            .await
            .status(),
        401
    );
    let left = app.sql_text(
        "(SELECT string_agg(encode(email_hash, 'hex'), ',' ORDER BY at) FROM login_failures)",
    );
    let recent = app.sql_text("(SELECT encode(sha256('recent@example.com'), 'hex'))");
    let mine = app.sql_text("(SELECT encode(sha256('someone-else@example.com'), 'hex'))");
    assert_eq!(left, format!("{recent},{mine}"));
}
