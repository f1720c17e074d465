//! A real server on port 0 per test, each with its own PostgreSQL database
//! cloned from a migrated template (fast), dropped again at the end.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use content_api::config::Settings;
use content_api::db;
use content_api::domain::Hooks;
use content_api::Application;
use diesel::prelude::*;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

pub const TEST_JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn database_url(name: &str) -> String {
    format!("{}/{name}", server_url())
}

fn maintenance_connection() -> PgConnection {
    PgConnection::establish(&database_url("postgres"))
        .expect("PostgreSQL answers on TEST_POSTGRES_URL")
}

/// The template is named after a hash of the migrations, so a changed
/// migration builds a new one; building is serialised across test
/// processes by an advisory lock, and published by an atomic rename.
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let mut files: Vec<_> = walk(std::path::Path::new("migrations"));
        files.sort();
        let mut hasher = DefaultHasher::new();
        for file in &files {
            file.hash(&mut hasher);
            std::fs::read(file).unwrap().hash(&mut hasher);
        }
        let name = format!("content_api_tpl_{:016x}", hasher.finish());
        let mut conn = maintenance_connection();
        diesel::sql_query("SELECT pg_advisory_lock(8675309)")
            .execute(&mut conn)
            .unwrap();
        let exists: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}')"
        )))
        .get_result(&mut conn)
        .unwrap();
        if !exists {
            let building = format!("{name}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .execute(&mut conn)
                .unwrap();
            db::create_database(&mut conn, &building, None).unwrap();
            db::run_migrations(&database_url(&building)).unwrap();
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
                .execute(&mut conn)
                .unwrap();
        }
        diesel::sql_query("SELECT pg_advisory_unlock(8675309)")
            .execute(&mut conn)
            .unwrap();
        name
    })
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A database of the test's own, dropped when the value is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A fresh clone of the migrated template.
    pub async fn cloned() -> TestDatabase {
        let database = Self::named_fresh();
        let name = database.name.clone();
        tokio::task::spawn_blocking(move || {
            let template = template();
            db::create_database(&mut maintenance_connection(), &name, Some(template))
        })
        .await
        .unwrap()
        .expect("cloning the template database");
        database
    }

    /// A name no database has yet (for tests of database creation).
    pub fn named_fresh() -> TestDatabase {
        let name = format!("content_api_test_{}", uuid::Uuid::new_v4().simple());
        TestDatabase {
            url: database_url(&name),
            name,
        }
    }

    pub fn exists(&self) -> bool {
        let mut conn = maintenance_connection();
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{}')",
            self.name
        )))
        .get_result(&mut conn)
        .unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Blocking on purpose, on a thread of its own (this may run inside
        // an async test): FORCE ends the pool's sessions.
        let _ = std::thread::spawn(move || {
            let mut conn = maintenance_connection();
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
        })
        .join();
    }
}

pub fn base_settings(database_url: String) -> Settings {
    Settings::from_lookup(|key| {
        Some(
            match key {
                "DATABASE_URL" => database_url.as_str(),
                "JWT_SECRET" => TEST_JWT_SECRET,
                "PORT" => "0",
                "WORKERS" => "1",
                "RUN_MIGRATIONS" => "false",
                "DB_POOL_SIZE" => "8",
                // Tests sign up many users from one address; the limits
                // have tests of their own.
                "RATE_LIMIT_AUTH_PER_MINUTE" | "RATE_LIMIT_WRITES_PER_MINUTE" => "0",
                _ => return None,
            }
            .to_owned(),
        )
    })
    .expect("test settings are valid")
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// Held for its `Drop`: the database goes when the app does.
    _database: Option<TestDatabase>,
    pub settings: Settings,
}

impl TestApp {
    /// A server on a fresh database with default test settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Like `spawn`, with settings changed before the server is built.
    pub async fn spawn_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_with_hooks(customize, Hooks::default()).await
    }

    /// A server on a fresh database using the shared Redis under a key
    /// prefix of its own.
    pub async fn spawn_with_redis() -> TestApp {
        Self::spawn_with(use_redis).await
    }

    /// Like `spawn_with`, with test seams installed.
    pub async fn spawn_with_hooks(customize: impl FnOnce(&mut Settings), hooks: Hooks) -> TestApp {
        let database = TestDatabase::cloned().await;
        let mut settings = base_settings(database.url.clone());
        customize(&mut settings);
        Self::start_with_hooks(settings, Some(database), hooks).await
    }

    /// A server with exactly these settings and no database of its own.
    pub async fn start(settings: Settings, database: Option<TestDatabase>) -> TestApp {
        Self::start_with_hooks(settings, database, Hooks::default()).await
    }

    async fn start_with_hooks(
        settings: Settings,
        database: Option<TestDatabase>,
        hooks: Hooks,
    ) -> TestApp {
        let app = Application::build_with_hooks(settings.clone(), hooks)
            .await
            .expect("the application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        TestApp {
            address,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _database: database,
            settings,
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    /// `GET` that must answer 200 with JSON; returns the body.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn get_as(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, body: &Value) -> Response {
        self.post_json("/api/v1/signup", body).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Signs up a fresh user and logs in.
    pub async fn new_user(&self) -> TestUser {
        let body = signup_body();
        let response = self.signup(&body).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let user: Value = response.json().await.unwrap();
        let email = body["email"].as_str().unwrap().to_owned();
        let password = body["password"].as_str().unwrap().to_owned();
        let login: Value = self.login(&email, &password).await.json().await.unwrap();
        TestUser {
            id: user["id"].as_i64().unwrap(),
            email,
            password,
            token: login["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A fresh user promoted to admin (there is no API for that, by design).
    pub async fn new_admin(&self) -> TestUser {
        let user = self.new_user().await;
        self.sql(&format!(
            "UPDATE users SET role = 'admin' WHERE id = {}",
            user.id
        ));
        let login: Value = self
            .login(&user.email, &user.password)
            .await
            .json()
            .await
            .unwrap();
        TestUser {
            token: login["access_token"].as_str().unwrap().to_owned(),
            ..user
        }
    }

    /// Runs SQL on this test's own database.
    pub fn sql(&self, statement: &str) -> usize {
        let mut conn = PgConnection::establish(&self.settings.database_url).unwrap();
        diesel::sql_query(statement).execute(&mut conn).unwrap()
    }

    /// A single text value from this test's own database.
    pub fn sql_text(&self, query: &str) -> String {
        let mut conn = PgConnection::establish(&self.settings.database_url).unwrap();
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(query))
            .get_result(&mut conn)
            .unwrap()
    }
}

/// The shared Redis, under a key prefix unique to this test.
pub fn use_redis(settings: &mut Settings) {
    settings.redis_url = Some(REDIS_URL.to_owned());
    settings.cache_key_prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
}

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

impl TestApp {
    /// A connection to the Redis this app uses.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let url = self
            .settings
            .redis_url
            .as_deref()
            .expect("this app uses Redis");
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// A key name (or SCAN pattern) under this app's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.settings.cache_key_prefix)
    }

    /// The service's own key names, under this app's prefix.
    pub fn keys(&self) -> content_api::cache::Keys {
        content_api::cache::Keys::new(self.settings.cache_key_prefix.as_str())
    }

    /// Posts an item with a valid body as `user`; returns its id.
    pub async fn post_item(&self, user: &TestUser, title: &str) -> i64 {
        self.create_content(user, title, "A body long enough.")
            .await["id"]
            .as_i64()
            .unwrap()
    }

    /// Posts an item as `user` and returns the created `Content`.
    pub async fn create_content(&self, user: &TestUser, title: &str, content: &str) -> Value {
        let response = self
            .request(Method::POST, "/api/v1/post-content")
            .bearer_auth(&user.token)
            .json(&json!({"title": title, "content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let prefix = &self.settings.cache_key_prefix;
        if let (Some(url), false) = (&self.settings.redis_url, prefix.is_empty()) {
            if let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
            {
                let keys: Vec<String> =
                    redis::Commands::scan_match(&mut conn, format!("{prefix}*"))
                        .map(|keys| keys.filter_map(Result::ok).collect())
                        .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(keys).query(&mut conn);
                }
            }
        }
    }
}

pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub password: String,
    pub token: String,
}

/// A distinct, valid Nigerian mobile number each call.
pub fn unique_phone() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = (uuid::Uuid::new_v4().as_u128() % 9_000_000) as u64;
    let n = (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000_000;
    format!("+234803{n:07}")
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// A valid signup body with a unique email and phone number.
pub fn signup_body() -> Value {
    json!({
        "name": "Chloé Adé",
        "email": unique_email(),
        "phone_number": unique_phone(),
        "country": "Nigeria",
        "state": "Lagos",
        "password": "correct horse battery",
    })
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are RFC 9457 problems"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().contains("/problems/"));
    assert!(body["title"].is_string());
    assert!(body["detail"].is_string());
    body
}

/// The `field` names of a 422 problem, in order.
pub fn invalid_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("a 422 lists its errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis of this test's own, so that stopping it harms nobody else.
pub struct OwnRedis {
    port: u16,
    process: Option<Child>,
}

impl OwnRedis {
    pub async fn start_on(port: u16) -> Self {
        let process = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = Self {
            port,
            process: Some(process),
        };
        // Bounded wait for the process to accept connections.
        let deadline = Instant::now() + Duration::from_secs(5);
        while redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An object's keys, sorted, to compare a response's shape.
pub fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

pub fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    keys.sort();
    keys
}
