//! Operations: root, health, OpenAPI and Swagger UI, metrics, rate
//! limits, security headers and CORS.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, signup_body, use_redis, TestApp};

#[tokio::test]
async fn root_answers_up_and_running() {
    let app = TestApp::spawn().await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"message": "Up and running"}));
}

#[tokio::test]
async fn liveness_answers_200() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn openapi_document_covers_every_endpoint() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(
        doc["info"].get("license").is_none(),
        "no license object without a license to name (openapi-generator refuses a nameless one)"
    );
    for (path, methods) in [
        ("/", &["get"][..]),
        ("/health/live", &["get"]),
        ("/health/ready", &["get"]),
        ("/api/v1/signup", &["post"]),
        ("/api/v1/login", &["post"]),
        ("/api/v1/users", &["get"]),
        ("/api/v1/users/{id}", &["get", "put", "patch"]),
        ("/api/v1/post-content", &["post"]),
        ("/api/v1/content", &["get", "post"]),
        ("/api/v1/content/{id}", &["get", "put", "patch", "delete"]),
    ] {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is documented"
            );
        }
    }
    for schema in [
        "User",
        "PublicUser",
        "UserWithContents",
        "Content",
        "ContentWithUser",
        "LoginResponse",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn swagger_ui_is_served_without_other_hosts() {
    let app = TestApp::spawn().await;
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/docs/");
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), 200, "{asset} is served locally");
        let text = response.text().await.unwrap();
        if asset.ends_with("initializer.js") {
            assert!(text.contains("/api/v1/openapi.json"));
        }
    }
    // Every script, stylesheet and font reference is relative (no other host).
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(attribute), "no external {attribute}");
    }
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_with_latency_histograms() {
    let app = TestApp::spawn().await;
    for id in [1, 2, 3] {
        app.get(&format!("/api/v1/users/{id}")).await;
    }
    app.get("/no/such/route").await;
    let text = metrics_text(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{method="GET",route="/api/v1/users/{id}",status="404"}"#
        ),
        3.0,
        "ids are folded into the template"
    );
    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        1.0
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/users/{id}",le="0.005"}"#));
    assert_eq!(sample(&text, r#"db_pool_connections{state="max"}"#), 8.0);
    assert_eq!(
        sample(&text, "cache_redis_circuit_open"),
        1.0,
        "no Redis configured"
    );
}

#[tokio::test]
async fn metrics_count_cache_hits_misses_and_invalidations_by_family() {
    let app = TestApp::spawn_with_redis().await;
    app.await_l1_serving().await;
    let user = app.new_user().await;
    let id = app.post_item(&user, "Counted item").await;
    for _ in 0..3 {
        app.get(&format!("/api/v1/content/{id}")).await;
        app.get("/api/v1/content").await;
    }
    let text = metrics_text(&app).await;
    for family in ["item", "listing"] {
        let series = |layer: &str, result: &str| {
            format!(
                r#"cache_requests_total{{family="{family}",layer="{layer}",result="{result}"}}"#
            )
        };
        // The first read misses both layers and fills both; the others
        // are L1 hits that never reach Redis.
        assert_eq!(sample(&text, &series("l1", "miss")), 1.0, "{family}");
        assert_eq!(sample(&text, &series("l1", "hit")), 2.0, "{family}");
        assert_eq!(sample(&text, &series("redis", "miss")), 1.0, "{family}");
        assert_eq!(sample(&text, &series("redis", "hit")), 0.0, "{family}");
    }
    assert_eq!(sample(&text, "cache_l1_lease_held"), 1.0);
    assert_eq!(
        sample(&text, r#"cache_invalidations_total{result="done"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, "cache_invalidation_duration_seconds_count"),
        1.0
    );
    assert_eq!(sample(&text, "cache_redis_circuit_open"), 0.0);
}

#[tokio::test]
async fn signup_and_login_share_a_per_client_limit_with_retry_after() {
    let app = TestApp::spawn_with(|s| s.rate_limit_auth_per_minute = 3).await;
    for _ in 0..2 {
        assert_eq!(app.signup(&signup_body()).await.status(), 201);
    }
    assert_eq!(
        app.login("nobody@example.com", "whatever1").await.status(),
        401
    );
    let limited = app.signup(&signup_body()).await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = problem(limited, 429).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .starts_with("Too many requests"));
    problem(app.login("nobody@example.com", "whatever1").await, 429).await;
    // Reads are not limited.
    assert_eq!(app.get("/api/v1/users").await.status(), 200);
}

#[tokio::test]
async fn writes_are_limited_per_client() {
    let app = TestApp::spawn_with(|s| s.rate_limit_writes_per_minute = 2).await;
    let user = app.new_user().await;
    for n in 0..2 {
        app.create_content(&user, &format!("Write {n}"), "A body long enough.")
            .await;
    }
    let response = app
        .request(Method::POST, "/api/v1/post-content")
        .bearer_auth(&user.token)
        .json(&json!({"title": "One too many", "content": "A body long enough."}))
        .send()
        .await
        .unwrap();
    problem(response, 429).await;
    let response = app
        .request(Method::DELETE, "/api/v1/content/1")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    problem(response, 429).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_auth_per_minute = 1;
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let signup_from = |client: &'static str| {
        app.request(Method::POST, "/api/v1/signup")
            .header("x-forwarded-for", client)
            .json(&signup_body())
            .send()
    };
    assert_eq!(signup_from("203.0.113.7").await.unwrap().status(), 201);
    assert_eq!(signup_from("203.0.113.7").await.unwrap().status(), 429);
    assert_eq!(signup_from("203.0.113.8").await.unwrap().status(), 201);
    // The right-most untrusted entry counts; what the client wrote before it does not.
    assert_eq!(
        signup_from("198.51.100.1, 203.0.113.7")
            .await
            .unwrap()
            .status(),
        429
    );
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let app = TestApp::spawn_with(|s| s.rate_limit_auth_per_minute = 1).await;
    assert_eq!(app.signup(&signup_body()).await.status(), 201);
    let spoofed = app
        .request(Method::POST, "/api/v1/signup")
        .header("x-forwarded-for", "203.0.113.99")
        .json(&signup_body())
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 429);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let responses = [
        app.get("/").await,
        app.get("/nope").await,
        app.get("/api/v1/users/abc").await,
        app.signup(&json!({})).await,
        app.request(Method::DELETE, "/").send().await.unwrap(),
        app.get("/docs/").await,
        app.get("/metrics").await,
    ];
    for response in responses {
        let headers = response.headers();
        assert_eq!(
            headers["x-content-type-options"],
            "nosniff",
            "{}",
            response.url()
        );
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.request(Method::OPTIONS, "/api/v1/content")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_configured_origins_no_cross_origin_access_is_granted() {
    let app = TestApp::spawn().await;
    let response = preflight(&app, "https://app.example.com").await;
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
    let response = app
        .request(Method::GET, "/api/v1/content")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn configured_origins_and_only_those_are_granted() {
    let app =
        TestApp::spawn_with(|s| s.cors_allowed_origins = vec!["https://app.example.com".into()])
            .await;
    let response = preflight(&app, "https://app.example.com").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = response.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );

    let response = app
        .request(Method::GET, "/api/v1/content")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("etag") && exposed.contains("x-request-id"),
        "{exposed}"
    );

    let response = preflight(&app, "https://evil.example.com").await;
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn readiness_is_503_while_postgres_is_unreachable() {
    let port = crate::helpers::free_port();
    let mut settings =
        crate::helpers::base_settings(format!("postgres://postgres@127.0.0.1:{port}/x"));
    use_redis(&mut settings);
    let app = TestApp::start(settings, None).await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.headers()["retry-after"], "2");
    problem(response, 503).await;
    assert_eq!(app.get("/health/live").await.status(), 200);
}

/// What `diesel migration redo` does, for every migration: each `down.sql`
/// undoes its `up.sql` so that the `up.sql` applies again, down to an empty
/// schema and back.
#[tokio::test]
async fn every_migration_reverts_and_applies_again() {
    use diesel::{Connection, PgConnection};
    use diesel_migrations::MigrationHarness;
    let database = crate::helpers::TestDatabase::cloned().await;
    let url = database.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        let applied = conn.applied_migrations().unwrap().len();
        assert!(applied >= 3, "{applied} migrations applied");
        conn.revert_last_migration(content_api::db::MIGRATIONS)
            .unwrap();
        conn.run_pending_migrations(content_api::db::MIGRATIONS)
            .unwrap();
        conn.revert_all_migrations(content_api::db::MIGRATIONS)
            .unwrap();
        assert!(conn.applied_migrations().unwrap().is_empty());
        conn.run_pending_migrations(content_api::db::MIGRATIONS)
            .unwrap();
        assert_eq!(conn.applied_migrations().unwrap().len(), applied);
    })
    .await
    .unwrap();
    let mut settings = crate::helpers::base_settings(database.url.clone());
    settings.run_migrations = false;
    let app = TestApp::start(settings, Some(database)).await;
    let user = app.new_user().await;
    assert_eq!(
        app.session_status(&user.token).await,
        200,
        "the schema works again"
    );
}
