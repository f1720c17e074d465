//! Errors: problem+json for every failure, actix's own included; request ids;
//! PostgreSQL down → 503 fast.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{base_settings, problem, signup_body, PgRelay, TestApp, TestDatabase};

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/api/v1/signup")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let body = problem(response, 400).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .starts_with("Malformed JSON"));
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_a_400_problem() {
    let app = TestApp::spawn().await;
    for body in ["[1,2]", "\"text\"", "42", "null"] {
        let response = app
            .request(Method::POST, "/api/v1/signup")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, 400).await;
    }
}

#[tokio::test]
async fn a_wrong_content_type_is_a_415_problem() {
    let app = TestApp::spawn().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .request(Method::POST, "/api/v1/signup")
            .body(signup_body().to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        problem(request.send().await.unwrap(), 415).await;
    }
    // A JSON subtype with parameters is still JSON.
    let response = app
        .request(Method::POST, "/api/v1/signup")
        .header("content-type", "application/json; charset=utf-8")
        .body(signup_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_a_413_problem() {
    let app = TestApp::spawn().await;
    let mut body = signup_body();
    body["name"] = Value::String("x".repeat(1 << 20));
    problem(app.signup(&body).await, 413).await;
    // Just under the limit is read (and then judged on its fields).
    body["name"] = Value::String("x".repeat((1 << 20) - 300));
    problem(app.signup(&body).await, 422).await;
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = TestApp::spawn().await;
    for path in ["/nope", "/api/v1/nope", "/api/v2/users"] {
        problem(app.get(path).await, 404).await;
    }
}

#[tokio::test]
async fn bad_path_ids_are_404_never_500() {
    let app = TestApp::spawn().await;
    for id in ["abc", "0", "-1", "1.5", "99999999999999999999", "%20"] {
        let response = app.get(&format!("/api/v1/users/{id}")).await;
        problem(response, 404).await;
    }
}

#[tokio::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = TestApp::spawn().await;
    for (method, path, allow) in [
        (
            Method::POST,
            "/api/v1/users/1",
            "GET, HEAD, PUT, PATCH, DELETE",
        ),
        (Method::GET, "/api/v1/signup", "POST"),
        (Method::PUT, "/api/v1/login", "POST"),
        (Method::POST, "/api/v1/users", "GET, HEAD"),
        (Method::POST, "/", "GET, HEAD"),
    ] {
        let response = app.request(method, path).send().await.unwrap();
        assert_eq!(response.headers()["allow"], allow, "{path}");
        problem(response, 405).await;
    }
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_replaced_otherwise() {
    let app = TestApp::spawn().await;
    let sane = "abc-123_X.y";
    let response = app
        .request(Method::GET, "/")
        .header("x-request-id", sane)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], sane);

    for insane in ["has space", "semi;colon", &"a".repeat(129)] {
        let response = app
            .request(Method::GET, "/")
            .header("x-request-id", insane)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, insane);
        assert!(!id.is_empty());
    }

    let first = app.get("/").await.headers()["x-request-id"].clone();
    let second = app.get("/").await.headers()["x-request-id"].clone();
    assert_ne!(first, second, "fresh ids are unique");

    // Error responses carry it too (checked inside `problem`).
    problem(app.get("/nope").await, 404).await;
}

#[tokio::test]
async fn an_internal_error_reveals_nothing() {
    let app = TestApp::spawn().await;
    app.new_user().await;
    // Break the schema behind the service's back.
    app.sql("ALTER TABLE users RENAME COLUMN country TO country_gone");
    let body = problem(app.get("/api/v1/users").await, 500).await;
    let text = body.to_string();
    for leak in ["country", "column", "SELECT", "users", "diesel"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
}

/// A closed port: PostgreSQL is unreachable.
async fn app_without_database() -> TestApp {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = base_settings(format!("postgres://postgres@127.0.0.1:{port}/content_api"));
    TestApp::start(settings, None).await
}

#[tokio::test]
async fn postgres_unreachable_is_a_503_within_two_seconds() {
    let app = app_without_database().await;
    let requests = [
        (Method::GET, "/api/v1/users", None),
        (Method::GET, "/api/v1/users/1", None),
        (Method::GET, "/api/v1/content", None),
        (Method::GET, "/api/v1/content/1", None),
        (Method::POST, "/api/v1/signup", Some(signup_body())),
        (
            Method::POST,
            "/api/v1/login",
            Some(json!({"email": "a@example.com", "password": "whatever1"})),
        ),
    ];
    for (method, path, body) in requests {
        let started = Instant::now();
        let mut request = app.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} answered fast"
        );
        assert_eq!(response.headers()["retry-after"], "2");
        let body = problem(response, 503).await;
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no connection details"
        );
    }
    // A credential cannot be checked either: 503, never a 401 that would
    // log its holder out, nor a 500.
    let now = chrono::Utc::now().timestamp();
    let signed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "1", "sid": 1, "role": "user", "iat": now, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    for token in [signed.as_str(), "cat_any-machine-token"] {
        for (method, path) in [
            (Method::GET, "/api/v1/sessions"),
            (Method::GET, "/api/v1/users"),
        ] {
            let response = app.send_as(method, path, token).await;
            assert_eq!(response.headers()["retry-after"], "2", "{path}");
            problem(response, 503).await;
        }
    }
    let refresh = app
        .post_json("/api/v1/token/refresh", &json!({"refresh_token": "x"}))
        .await;
    problem(refresh, 503).await;
    // The process itself still serves.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Headed item").await;
    for path in [
        "/".to_owned(),
        "/api/v1/users".to_owned(),
        format!("/api/v1/content/{id}"),
    ] {
        let get = app.get(&path).await;
        let head = app.request(Method::HEAD, &path).send().await.unwrap();
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!(
            head.headers().get("etag"),
            get.headers().get("etag"),
            "{path}"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
}

#[tokio::test]
async fn after_a_postgres_outage_the_service_recovers_and_publishes_what_fell_due_meanwhile() {
    let relay = PgRelay::start().await;
    let database = TestDatabase::cloned().await;
    let app = TestApp::start(base_settings(relay.url(&database)), Some(database)).await;
    let user = app.new_user().await;
    let publish_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let created = app
        .request_as(Method::POST, "/api/v1/content", &user.token)
        .json(&json!({
            "title": "Due during an outage",
            "content": "Scheduled to appear while PostgreSQL is away.",
            "status": "scheduled",
            "publish_at": publish_at.to_rfc3339(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/content/{id}");

    relay.cut_and_wait().await;
    problem(app.get(&path).await, 503).await;
    // Its time passes while PostgreSQL is away.
    let past_due = (publish_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(past_due + Duration::from_millis(300)).await;
    problem(app.get(&path).await, 503).await;

    relay.restore();
    let restored = Instant::now();
    let item = loop {
        let response = app.get(&path).await;
        if response.status() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            restored.elapsed() < Duration::from_secs(5),
            "{} five seconds after PostgreSQL came back",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("public {:?} after PostgreSQL came back", restored.elapsed());
    assert_eq!(item["status"], "published");
    assert_eq!(item["version"], 2, "published once");
    // No connection the outage broke is handed out again: twice as many
    // concurrent requests as the pool holds, each a read and a write.
    let writes = (0..2 * app.settings.db_pool_size).map(|n| {
        app.request_as(Method::POST, "/api/v1/content", &user.token)
            .json(&json!({"title": format!("After the outage {n}"), "content": "Written once PostgreSQL is back."}))
            .send()
    });
    for response in futures_util::future::join_all(writes).await {
        assert_eq!(response.unwrap().status(), 201);
    }
}
