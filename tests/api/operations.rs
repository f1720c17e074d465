use serde_json::Value;

use crate::helpers::TestApp;

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
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is documented");
        }
    }
    for schema in ["User", "PublicUser", "UserWithContents", "Content", "ContentWithUser", "LoginResponse"] {
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
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"] {
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
