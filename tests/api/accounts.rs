//! Accounts: password change and reset (mail read back from an SMTP
//! listener the test starts), account deletion, roles.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    invalid_fields, problem, reset_token_in, signup_body, use_redis, MailCatcher, TestApp, TestUser,
};

async fn change_password(
    app: &TestApp,
    user: &TestUser,
    current: &str,
    new: &str,
) -> reqwest::Response {
    app.request_as(
        Method::POST,
        &format!("/api/v1/users/{}/password", user.id),
        &user.token,
    )
    .json(&json!({"current_password": current, "new_password": new}))
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_password_change_ends_every_other_session() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let other = app.new_session(&user).await;

    let wrong = problem(
        change_password(&app, &user, "not my password", "a new password 1").await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&wrong), ["current_password"]);
    let short = problem(
        change_password(&app, &user, &user.password, "short").await,
        422,
    )
    .await;
    assert_eq!(invalid_fields(&short), ["new_password"]);
    assert_eq!(
        app.session_status(&other.token).await,
        200,
        "nothing changed yet"
    );

    let response = change_password(&app, &user, &user.password, "a new password 1").await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.session_status(&user.token).await,
        200,
        "this session stays"
    );
    assert_eq!(app.session_status(&other.token).await, 401);
    assert_eq!(app.login(&user.email, &user.password).await.status(), 401);
    assert_eq!(
        app.login(&user.email, "a new password 1").await.status(),
        200
    );

    // Only for oneself, even as an admin.
    let admin = app.new_admin().await;
    let response = app
        .request_as(
            Method::POST,
            &format!("/api/v1/users/{}/password", user.id),
            &admin.token,
        )
        .json(&json!({"current_password": "x", "new_password": "another password"}))
        .send()
        .await
        .unwrap();
    problem(response, 403).await;
}

#[tokio::test]
async fn password_reset_without_smtp_is_503() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json("/api/v1/password-reset", &json!({"email": "a@example.com"}))
        .await;
    let unavailable = problem(response, 503).await;
    assert_eq!(unavailable["detail"], "Password reset is not configured");
}

#[tokio::test]
async fn a_mailed_reset_token_sets_the_password_once_and_ends_every_session() {
    let mail = MailCatcher::start().await;
    let url = mail.url();
    let app = TestApp::spawn_with(|settings| settings.smtp_url = Some(url)).await;
    let user = app.new_user().await;
    let other = app.new_session(&user).await;

    let known = app
        .post_json(
            "/api/v1/password-reset",
            &json!({"email": user.email.to_uppercase()}),
        )
        .await;
    assert_eq!(known.status(), 202);
    let known: Value = known.json().await.unwrap();
    let message = mail.message(1).await;
    assert!(
        message.contains(&format!("To: {}", user.email)),
        "{message}"
    );
    let token = reset_token_in(&message);
    assert!(!app
        .sql_text(
            "(SELECT coalesce(string_agg(encode(token_hash, 'hex'), ''), '') FROM password_resets)"
        )
        .contains(&token));

    // An unknown address: the same answer, and no mail.
    let unknown = app
        .post_json(
            "/api/v1/password-reset",
            &json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(unknown.status(), 202);
    assert_eq!(unknown.json::<Value>().await.unwrap(), known);

    let app = &app;
    let confirm = |token: String, password: &'static str| {
        let body = json!({"token": token, "new_password": password});
        async move { app.post_json("/api/v1/password-reset/confirm", &body).await }
    };
    let short = problem(confirm(token.clone(), "short").await, 422).await;
    assert_eq!(invalid_fields(&short), ["new_password"]);
    let wrong = problem(confirm("x".repeat(43), "a reset password").await, 400).await;
    assert_eq!(wrong["detail"], "Reset token is invalid or expired");

    assert_eq!(
        confirm(token.clone(), "a reset password").await.status(),
        204
    );
    for ended in [&user, &other] {
        assert_eq!(app.session_status(&ended.token).await, 401);
    }
    assert_eq!(
        app.login(&user.email, "a reset password").await.status(),
        200
    );
    let reused = problem(confirm(token, "yet another password").await, 400).await;
    assert_eq!(reused["detail"], "Reset token is invalid or expired");
    assert_eq!(
        app.login(&user.email, "a reset password").await.status(),
        200
    );
    // Nobody else received mail: one message in all.
    assert_eq!(mail.count(), 1);
}

#[tokio::test]
async fn reset_tokens_expire_and_mails_per_account_are_limited() {
    let mail = MailCatcher::start().await;
    let url = mail.url();
    let app = TestApp::spawn_with(|settings| settings.smtp_url = Some(url)).await;
    let user = app.new_user().await;
    let body = json!({"email": user.email});
    let request = || app.post_json("/api/v1/password-reset", &body);

    assert_eq!(request().await.status(), 202);
    let token = reset_token_in(&mail.message(1).await);
    app.sql("UPDATE password_resets SET expires_at = now() - interval '1 second'");
    let expired = app
        .post_json(
            "/api/v1/password-reset/confirm",
            &json!({"token": token, "new_password": "a reset password"}),
        )
        .await;
    problem(expired, 400).await;

    assert_eq!(request().await.status(), 202);
    assert_eq!(request().await.status(), 202);
    mail.message(3).await;
    // A fourth within 15 minutes answers the same but sends nothing.
    assert_eq!(request().await.status(), 202);
    let open = app.sql_text(
        "(SELECT count(*)::text FROM password_resets WHERE used_at IS NULL AND expires_at > now())",
    );
    assert_eq!(open, "2");
    assert_eq!(mail.count(), 3);
}

#[tokio::test]
async fn deleting_an_account_removes_everything_of_it_and_frees_its_email_and_phone() {
    let app = TestApp::spawn_with(use_redis).await;
    let body = signup_body();
    let user = app.new_user_from(&body).await;
    let other_session = app.new_session(&user).await;
    let item = app.post_item(&user, "Soon gone").await;
    // Cached in both families before the deletion.
    assert_eq!(
        app.get(&format!("/api/v1/content/{item}")).await.status(),
        200
    );
    let listing: Vec<Value> = app.get_json("/api/v1/content").await;
    assert_eq!(listing.len(), 1);
    let machine = app
        .request_as(Method::POST, "/api/v1/tokens", &user.token)
        .json(&json!({"name": "ci", "scopes": ["content:write"]}))
        .send()
        .await
        .unwrap();
    let machine: Value = machine.json().await.unwrap();

    let stranger = app.new_user().await;
    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/users/{}", user.id),
            &stranger.token,
        )
        .await;
    problem(response, 403).await;

    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/users/{}", user.id),
            &user.token,
        )
        .await;
    assert_eq!(response.status(), 204);
    problem(app.get(&format!("/api/v1/content/{item}")).await, 404).await;
    let listing: Vec<Value> = app.get_json("/api/v1/content").await;
    assert!(listing.is_empty(), "{listing:?}");
    problem(app.get(&format!("/api/v1/users/{}", user.id)).await, 404).await;
    for token in [
        &user.token,
        &other_session.token,
        machine["token"].as_str().unwrap(),
    ] {
        assert_eq!(app.session_status(token).await, 401);
    }
    for table in ["sessions", "api_tokens", "contents", "password_resets"] {
        let left = app.sql_text(&format!(
            "(SELECT count(*)::text FROM {table} WHERE user_id = {})",
            user.id
        ));
        assert_eq!(left, "0", "{table}");
    }
    let deleted = app.sql_text(&format!(
        "(SELECT count(*)::text FROM audit_events WHERE action = 'user.deleted' AND target_user_id = {})",
        user.id
    ));
    assert_eq!(deleted, "1");
    // The same email and phone sign up again.
    assert_eq!(app.signup(&body).await.status(), 201);
}

#[tokio::test]
async fn an_admin_deletes_others_but_the_last_admin_stays() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let response = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/users/{}", user.id),
            &admin.token,
        )
        .await;
    assert_eq!(response.status(), 204);
    let again = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/users/{}", user.id),
            &admin.token,
        )
        .await;
    problem(again, 404).await;
    let last = app
        .send_as(
            Method::DELETE,
            &format!("/api/v1/users/{}", admin.id),
            &admin.token,
        )
        .await;
    let conflict = problem(last, 409).await;
    assert_eq!(conflict["detail"], "The last admin cannot be deleted");
    assert_eq!(app.session_status(&admin.token).await, 200);
}

async fn set_role(app: &TestApp, caller: &TestUser, id: i64, role: Value) -> reqwest::Response {
    app.request_as(
        Method::PUT,
        &format!("/api/v1/users/{id}/role"),
        &caller.token,
    )
    .json(&json!({ "role": role }))
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_role_change_ends_the_users_sessions_and_their_next_login_has_it() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;

    problem(set_role(&app, &user, user.id, json!("admin")).await, 403).await;
    let invalid = problem(set_role(&app, &admin, user.id, json!("owner")).await, 422).await;
    assert_eq!(invalid_fields(&invalid), ["role"]);
    problem(set_role(&app, &admin, i64::MAX, json!("admin")).await, 404).await;

    let promoted = set_role(&app, &admin, user.id, json!("admin")).await;
    assert_eq!(promoted.status(), 200);
    let promoted: Value = promoted.json().await.unwrap();
    assert_eq!(promoted["role"], "admin");
    assert_eq!(promoted["email"], user.email);
    assert_eq!(app.session_status(&user.token).await, 401, "ended at once");
    let again = app.new_session(&user).await;
    assert_eq!(
        app.get_as("/api/v1/admin/cache", &again.token)
            .await
            .status(),
        200
    );

    // Demoted: the admin endpoint refuses the very next request.
    let demoted = set_role(&app, &admin, user.id, json!("user")).await;
    assert_eq!(demoted.status(), 200);
    let fresh = app.new_session(&user).await;
    problem(app.get_as("/api/v1/admin/cache", &fresh.token).await, 403).await;

    // Setting the role a user has changes nothing and ends nothing.
    assert_eq!(
        set_role(&app, &admin, user.id, json!("user"))
            .await
            .status(),
        200
    );
    assert_eq!(app.session_status(&fresh.token).await, 200);
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_even_by_two_admins_racing() {
    let app = TestApp::spawn().await;
    let one = app.new_admin().await;
    let conflict = problem(set_role(&app, &one, one.id, json!("user")).await, 409).await;
    assert_eq!(conflict["detail"], "The last admin cannot be demoted");

    let two = app.new_admin().await;
    let (first, second) = tokio::join!(
        set_role(&app, &one, two.id, json!("user")),
        set_role(&app, &two, one.id, json!("user"))
    );
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort();
    // Either one demotes the other (whose own request then fails: 401 as
    // its session ended, or 403/409), never both.
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert_ne!(statuses[1], 200, "{statuses:?}");
    assert_eq!(
        app.sql_text("(SELECT count(*)::text FROM users WHERE role = 'admin')"),
        "1"
    );
}
