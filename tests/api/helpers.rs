//! A real server on port 0 per test, each with its own PostgreSQL database
//! cloned from a migrated template (fast), dropped again at the end.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use content_api::config::Settings;
use content_api::db;
use content_api::domain::Hooks;
use content_api::Application;
use diesel::prelude::*;
use redis::AsyncCommands;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

/// The fields of every `Content` view.
pub const CONTENT_KEYS: [&str; 13] = [
    "id",
    "title",
    "image",
    "content",
    "user_id",
    "created_at",
    "updated_at",
    "status",
    "publish_at",
    "published_at",
    "slug",
    "tags",
    "version",
];

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
                // Warm-ups would fill caches behind the tests' backs (a
                // test that writes with SQL expects a cold cache); the
                // warming test turns them on.
                "WARM_ITEMS" => "0",
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

    /// A server with exactly these settings and test seams.
    pub async fn start_with_hooks(
        settings: Settings,
        database: Option<TestDatabase>,
        hooks: Hooks,
    ) -> TestApp {
        // `TEST_LOG=1`: the servers' logs (filtered by `RUST_LOG`) on stdout.
        if std::env::var_os("TEST_LOG").is_some() {
            content_api::telemetry::init(content_api::config::LogFormat::Pretty);
        }
        let app = Application::build_with_hooks(settings.clone(), hooks)
            .await
            .expect("the application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let app = TestApp {
            address,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _database: database,
            settings,
        };
        if app.settings.redis_cluster {
            // Startup waits 1 s for Redis; a cluster client on a loaded
            // machine can take longer to learn the slots, and the tests of a
            // cluster are about a cluster that serves.
            app.await_cache_ok().await;
        }
        app
    }

    /// One sample of `/metrics` (0 if the series is absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find(|line| line.starts_with(series))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    }

    /// L1 hits of a family (`item`, `listing`) on this instance.
    pub async fn l1_hits(&self, family: &str) -> f64 {
        self.metric(&format!(
            r#"cache_requests_total{{family="{family}",layer="l1",result="hit"}}"#
        ))
        .await
    }

    /// `/health/ready`'s `l1`: `serving`, `joining` or `off`.
    pub async fn l1_state(&self) -> String {
        let ready: Value = self.get("/health/ready").await.json().await.unwrap();
        ready["l1"].as_str().unwrap_or_default().to_owned()
    }

    /// Bounded wait until `/health/ready` reports L1 `serving`.
    pub async fn await_l1_serving(&self) {
        self.await_ready("l1", "serving").await;
    }

    /// Bounded wait until `/health/ready` reports the cache `ok`.
    pub async fn await_cache_ok(&self) {
        self.await_ready("cache", "ok").await;
    }

    /// Bounded wait until `/health/ready` reports the cache as `want`.
    pub async fn await_cache(&self, want: &str) {
        self.await_ready("cache", want).await;
    }

    async fn await_ready(&self, field: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready: Value = self.get("/health/ready").await.json().await.unwrap();
            if ready[field] == want {
                return;
            }
            assert!(Instant::now() < deadline, "{field} is not {want}: {ready}");
            tokio::time::sleep(Duration::from_millis(20)).await;
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
        self.new_user_from(&signup_body()).await
    }

    /// Signs up a user with this signup body and logs in.
    pub async fn new_user_from(&self, body: &Value) -> TestUser {
        let response = self.signup(body).await;
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
            refresh_token: login["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Logs the user in again: a second session of theirs.
    pub async fn new_session(&self, user: &TestUser) -> TestUser {
        let response = self.login(&user.email, &user.password).await;
        assert_eq!(response.status(), 200);
        let login: Value = response.json().await.unwrap();
        TestUser {
            token: login["access_token"].as_str().unwrap().to_owned(),
            refresh_token: login["refresh_token"].as_str().unwrap().to_owned(),
            ..user.clone()
        }
    }

    /// The id of the session `user.token` belongs to.
    pub async fn current_session_id(&self, user: &TestUser) -> i64 {
        let sessions: Value = self
            .get_as("/api/v1/sessions", &user.token)
            .await
            .json()
            .await
            .unwrap();
        sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|session| session["current"] == true)
            .expect("the token's session is live")["id"]
            .as_i64()
            .unwrap()
    }

    /// A request without a body, sent with the bearer credential `token`.
    pub async fn send_as(&self, method: Method, path: &str, token: &str) -> Response {
        self.request_as(method, path, token).send().await.unwrap()
    }

    /// A request with the bearer credential `token`.
    pub fn request_as(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(token)
    }

    /// The status `GET /api/v1/sessions` answers with this credential: 200
    /// while its session lives, 401 once it ended.
    pub async fn session_status(&self, token: &str) -> u16 {
        self.get_as("/api/v1/sessions", token)
            .await
            .status()
            .as_u16()
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
            refresh_token: login["refresh_token"].as_str().unwrap().to_owned(),
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
    /// A connection to the Redis (or the Redis Cluster) this app uses.
    pub async fn redis(&self) -> TestRedis {
        let url = self
            .settings
            .redis_url
            .as_deref()
            .expect("this app uses Redis");
        if self.settings.redis_cluster {
            let nodes: Vec<&str> = url.split(',').collect();
            TestRedis::Cluster(
                redis::cluster::ClusterClient::new(nodes)
                    .unwrap()
                    .get_async_connection()
                    .await
                    .unwrap(),
            )
        } else {
            TestRedis::Single(
                redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap(),
            )
        }
    }

    /// Every key matching `pattern`, from every node of a cluster.
    pub async fn scan(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for node in self.redis_nodes() {
            let mut conn = redis::Client::open(node)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let mut found: redis::AsyncIter<String> = conn.scan_match(pattern).await.unwrap();
            while let Some(key) = found.next_item().await {
                keys.push(key.unwrap());
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// The URL of each Redis node this app knows: a test cluster's seeds
    /// are all of its nodes.
    fn redis_nodes(&self) -> Vec<String> {
        let url = self.settings.redis_url.as_deref().unwrap_or_default();
        url.split(',').map(str::to_owned).collect()
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
        if self.settings.redis_url.is_none() || prefix.is_empty() {
            return;
        }
        // One node at a time and one key at a time: plain connections, so
        // that this works for a cluster too (a node owns what it reports).
        for node in self.redis_nodes() {
            let Ok(mut conn) = redis::Client::open(node).and_then(|c| c.get_connection()) else {
                continue;
            };
            let keys: Vec<String> = redis::Commands::scan_match(&mut conn, format!("{prefix}*"))
                .map(|keys| keys.filter_map(Result::ok).collect())
                .unwrap_or_default();
            for key in keys {
                let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(key).query(&mut conn);
            }
        }
    }
}

/// A connection to a test's Redis: one server or a cluster.
pub enum TestRedis {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for TestRedis {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            TestRedis::Single(conn) => conn.req_packed_command(cmd),
            TestRedis::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            TestRedis::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            TestRedis::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The shared Redis Cluster, under a key prefix unique to this test.
pub fn use_cluster(settings: &mut Settings) {
    settings.redis_url = Some(TestCluster::shared().url());
    settings.redis_cluster = true;
    settings.cache_key_prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
}

/// A Redis Cluster of the tests' own, from `redis-server` processes on free
/// ports (never the shared Redis on 6379).
pub struct TestCluster {
    ports: Vec<u16>,
    processes: std::sync::Mutex<Vec<(u16, Child)>>,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawns on a thread that lives as long as the process, with the child
/// set to die with it (`PR_SET_PDEATHSIG` fires when the spawning thread
/// ends): a cluster shared by a whole test binary is gone when it exits.
fn spawn_for_the_process(mut command: Command) -> Child {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::spawn(move || {
            for (mut command, reply) in incoming {
                let _ = reply.send(command.spawn());
            }
            // Keep this thread (the children's parent) alive for good.
            loop {
                std::thread::park();
            }
        });
        std::sync::Mutex::new(requests)
    });
    // SAFETY: prctl only changes a flag of the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner.lock().unwrap().send((command, reply)).unwrap();
    answer.recv().unwrap().expect("redis-server is installed")
}

impl TestCluster {
    /// Three primaries, started by the first test that asks, for the
    /// whole test binary.
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<TestCluster> = OnceLock::new();
        SHARED.get_or_init(|| TestCluster::start(3, 0))
    }

    /// `primaries` primaries with `replicas` replicas each.
    pub fn start(primaries: usize, replicas: usize) -> TestCluster {
        // Under target/: a shared cluster's node files outlive the binary.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("redis-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..primaries * (1 + replicas))
            .map(|_| free_port())
            .collect();
        let mut processes = Vec::new();
        for port in &ports {
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                // A replica may take over however long its primary was away.
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null());
            processes.push((*port, spawn_for_the_process(command)));
        }
        for port in &ports {
            wait_for_ping(*port);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let created = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = TestCluster {
            ports,
            processes: std::sync::Mutex::new(processes),
            _dir: TempDir(dir),
        };
        cluster.wait_until_ok(Duration::from_secs(20));
        cluster
    }

    /// The seed nodes, as `REDIS_URL` takes them with `REDIS_CLUSTER=true`.
    pub fn url(&self) -> String {
        self.node_urls().join(",")
    }

    pub fn node_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Ports of the nodes not killed.
    fn alive_ports(&self) -> Vec<u16> {
        let processes = self.processes.lock().unwrap();
        processes.iter().map(|(port, _)| *port).collect()
    }

    /// Bounded wait until every live node reports `cluster_state:ok`, knows
    /// every node, and each replica's link to its primary is up (a
    /// replica not yet attached could never take over).
    pub fn wait_until_ok(&self, limit: Duration) {
        self.wait_for(limit, "the cluster did not become ok", |port| {
            let info = node_query(port, &["CLUSTER", "INFO"])?;
            let replication = node_query(port, &["INFO", "replication"])?;
            let known = format!("cluster_known_nodes:{}", self.ports.len());
            Some(
                info.contains("cluster_state:ok")
                    && info.contains(&known)
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up")),
            )
        });
    }

    /// Bounded wait until every live node has marked `killed` as failed and
    /// serves every slot again (its replica took over).
    pub fn wait_for_failover(&self, killed: u16, limit: Duration) {
        let address = format!("127.0.0.1:{killed}@");
        self.wait_for(limit, "the cluster did not fail over", |port| {
            let info = node_query(port, &["CLUSTER", "INFO"])?;
            let nodes = node_query(port, &["CLUSTER", "NODES"])?;
            let line = nodes.lines().find(|line| line.contains(&address))?;
            let flags = line.split_whitespace().nth(2)?;
            let failed = flags.split(',').any(|flag| flag == "fail");
            let without_slots = line.split_whitespace().count() <= 8;
            Some(info.contains("cluster_state:ok") && failed && without_slots)
        });
    }

    /// Polls `ready` on every live node until all answer `Some(true)`;
    /// past `limit`, panics with `what` and each node's `CLUSTER NODES`.
    fn wait_for(&self, limit: Duration, what: &str, ready: impl Fn(u16) -> Option<bool>) {
        let deadline = Instant::now() + limit;
        let alive = self.alive_ports();
        while !alive.iter().all(|port| ready(*port) == Some(true)) {
            if Instant::now() >= deadline {
                let views: Vec<String> = alive
                    .iter()
                    .map(|port| {
                        let nodes = node_query(*port, &["CLUSTER", "NODES"]);
                        format!("{port}:\n{}", nodes.unwrap_or_default())
                    })
                    .collect();
                panic!("{what} in {limit:?}:\n{}", views.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the primary that serves `key`'s slot; returns its port.
    pub fn kill_primary_of(&self, key: &str) -> u16 {
        let port = self.primary_port_of(key);
        let mut processes = self.processes.lock().unwrap();
        let index = processes.iter().position(|(p, _)| *p == port).unwrap();
        let (_, mut child) = processes.remove(index);
        child.kill().unwrap();
        child.wait().unwrap();
        port
    }

    fn primary_port_of(&self, key: &str) -> u16 {
        let alive = self.alive_ports();
        for port in alive {
            let Ok(mut conn) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|client| client.get_connection())
            else {
                continue;
            };
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).unwrap();
            let primary =
                matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master");
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query(&mut conn)
                .unwrap();
            let owner: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
            let mine = owner.lines().find(|line| line.contains("myself")).unwrap();
            let serves = mine
                .split_whitespace()
                .skip(8)
                .any(|range| match range.split_once('-') {
                    Some((from, to)) => {
                        (from.parse::<i64>().unwrap()..=to.parse::<i64>().unwrap()).contains(&slot)
                    }
                    None => range.parse::<i64>().ok() == Some(slot),
                });
            if primary && serves {
                return port;
            }
        }
        panic!("no live primary serves {key}")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for (_, mut child) in self.processes.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One command's text reply from the node on `port`; `None` if it fails.
fn node_query(port: u16, words: &[&str]) -> Option<String> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection())
        .ok()?;
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    cmd.query::<String>(&mut conn).ok()
}

/// Bounded wait for a fresh `redis-server` to answer.
fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection())
        .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "redis-server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Clone)]
pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub password: String,
    pub token: String,
    pub refresh_token: String,
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

/// A port free now, for a process that binds it later. Taken from
/// 10 000–19 999, below the kernel's ephemeral range: a port from that
/// range (what `bind(0)` gave before) could be handed meanwhile to another
/// test's server on port 0 or to a client socket, and a child that then
/// failed to bind left its test talking to another test's server (a 403
/// in CI). A Redis Cluster node also binds the port + 10 000 (its bus),
/// which stays below the range too and apart from every port handed out.
/// Ports go in turn from a start that depends on the process id, each
/// checked free; a kernel whose range starts below 30 000 gets `bind(0)`.
pub fn free_port() -> u16 {
    const FIRST: u64 = 10_000;
    const SPAN: u64 = 10_000;
    static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
    if ephemeral_range().0 < 30_000 {
        let any = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        return any.local_addr().unwrap().port();
    }
    let _ = NEXT.compare_exchange(
        u64::MAX,
        u64::from(std::process::id()) * 7_919,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The kernel's range for ports it picks itself (Linux; the usual default
/// elsewhere).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u16>);
            Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
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

    /// SIGSTOP (`true`) or SIGCONT: a Redis that keeps its connections
    /// open and answers nothing, like one cut off by the network.
    pub fn freeze(&self, frozen: bool) {
        let process = self.process.as_ref().expect("running");
        let status = Command::new("kill")
            .args([
                if frozen { "-STOP" } else { "-CONT" },
                &process.id().to_string(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
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

/// Each scenario against the shared Redis and against a 3-primary cluster.
/// (`tests/queries.rs` shares this file and uses no scenario.)
#[allow(unused_macros)]
macro_rules! on_redis_and_cluster {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn on_redis() {
                super::$scenario(crate::helpers::use_redis).await;
            }

            #[tokio::test]
            async fn on_cluster() {
                super::$scenario(crate::helpers::use_cluster).await;
            }
        }
    )*};
}

/// A minimal SMTP server on a free port that keeps every message it is
/// given: the mail a test's service sends, read back by the test.
pub struct MailCatcher {
    port: u16,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    arrived: std::sync::Arc<tokio::sync::Notify>,
}

impl MailCatcher {
    pub async fn start() -> MailCatcher {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
        let (kept, notify) = (messages.clone(), arrived.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, kept.clone(), notify.clone()));
            }
        });
        MailCatcher {
            port,
            messages,
            arrived,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// The `n`-th message received (from 1), waiting up to 10 s for it.
    pub async fn message(&self, n: usize) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.arrived.notified();
            if let Some(message) = self.messages.lock().unwrap().get(n - 1) {
                return message.clone();
            }
            assert!(
                tokio::time::timeout_at(deadline, arrived).await.is_ok(),
                "message {n} did not arrive"
            );
        }
    }
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    arrived: std::sync::Arc<tokio::sync::Notify>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    if writer.write_all(b"220 catcher ESMTP\r\n").await.is_err() {
        return;
    }
    let mut data: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(body) = data.as_mut() {
            if line == "." {
                messages.lock().unwrap().push(std::mem::take(body));
                arrived.notify_waiters();
                data = None;
                let _ = writer.write_all(b"250 OK\r\n").await;
            } else {
                // Undo dot-stuffing (RFC 5321, section 4.5.2).
                body.push_str(line.strip_prefix('.').unwrap_or(&line));
                body.push('\n');
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-catcher\r\n250 8BITMIME\r\n",
            "HELO" => b"250 catcher\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
            "DATA" => {
                data = Some(String::new());
                b"354 end with a lone dot\r\n"
            }
            "QUIT" => {
                let _ = writer.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 not implemented\r\n",
        };
        if writer.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The reset token in a mail: the line that is one (43 base64url characters).
pub fn reset_token_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|line| {
            line.len() == 43
                && line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or_else(|| panic!("no token in the mail:\n{mail}"))
        .to_owned()
}

/// A TCP relay in front of PostgreSQL that a test can cut and restore: a
/// database outage (every relayed connection dropped, new ones closed at
/// once) and its end, without touching the shared server.
pub struct PgRelay {
    port: u16,
    open: tokio::sync::watch::Sender<bool>,
    /// Connections being relayed now.
    live: Arc<AtomicU64>,
}

/// Counts a relayed connection while it lives.
struct Relayed(Arc<AtomicU64>);

impl Relayed {
    fn new(live: &Arc<AtomicU64>) -> Relayed {
        live.fetch_add(1, Ordering::SeqCst);
        Relayed(live.clone())
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PgRelay {
    pub async fn start() -> PgRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = server_url()
            .rsplit_once('@')
            .map(|(_, address)| address.to_owned())
            .expect("TEST_POSTGRES_URL names user@host:port");
        let (open, state) = tokio::sync::watch::channel(true);
        let live = Arc::new(AtomicU64::new(0));
        let counted = live.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !*state.borrow() {
                    continue;
                }
                let mut cut = state.clone();
                let upstream = upstream.clone();
                let relayed = Relayed::new(&counted);
                tokio::spawn(async move {
                    let _relayed = relayed;
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        PgRelay { port, open, live }
    }

    /// `database`'s URL through this relay.
    pub fn url(&self, database: &TestDatabase) -> String {
        let server = server_url();
        let (user, _) = server.rsplit_once('@').unwrap();
        format!("{user}@127.0.0.1:{}/{}", self.port, database.name)
    }

    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// `cut`, returning once every relayed connection is closed: a request
    /// sent right after it cannot still reach PostgreSQL on one.
    pub async fn cut_and_wait(&self) {
        self.cut();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.live.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "relayed connections still open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// Makes every client of the Redis at `url` wait `ms` (`CLIENT PAUSE … ALL`).
pub async fn pause_clients(url: &str, ms: u64) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
}
