//! The `content-api` binary itself: subcommands, settings from the
//! environment, startup migrations and JSON logs carrying request ids.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{free_port, OwnRedis, TestDatabase, TEST_JWT_SECRET};

/// The binary with a clean environment (no `.env`: it runs in a temporary
/// directory) and only the given variables.
pub(crate) fn content_api(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_content-api"));
    command
        .args(args)
        .env_clear()
        .current_dir(std::env::temp_dir())
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub(crate) fn base_vars(database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("JWT_SECRET", TEST_JWT_SECRET.to_owned()),
        ("REDIS_URL", String::new()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
        ("WORKERS", "1".to_owned()),
        ("RATE_LIMIT_AUTH_PER_MINUTE", "0".to_owned()),
        ("RATE_LIMIT_WRITES_PER_MINUTE", "0".to_owned()),
    ]
}

fn run(args: &[&str], vars: &[(&str, String)]) -> Output {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    content_api(args, &vars).output().unwrap()
}

fn count(url: &str, table: &str) -> i64 {
    use diesel::prelude::*;
    let mut conn = PgConnection::establish(url).unwrap();
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM {table})"
    )))
    .get_result(&mut conn)
    .unwrap()
}

#[test]
fn an_invalid_setting_stops_startup_naming_the_variable() {
    let database = TestDatabase::named_fresh();
    for (var, value) in [
        ("PORT", "eighty"),
        ("LOG_FORMAT", "xml"),
        ("PHONE_REGIONS", "NG,XX"),
    ] {
        let mut vars = base_vars(&database.url);
        vars.push((var, value.to_owned()));
        let output = run(&["serve"], &vars);
        assert_eq!(output.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
    let output = run(&["serve"], &[("DATABASE_URL", database.url.clone())]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("JWT_SECRET"));
    assert!(!database.exists(), "nothing was started");
}

#[test]
fn migrate_creates_the_database_and_seed_is_idempotent() {
    let database = TestDatabase::named_fresh();
    assert!(!database.exists());
    let output = run(&["migrate"], &base_vars(&database.url));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(database.exists());
    assert_eq!(count(&database.url, "users"), 0);

    for _ in 0..2 {
        let output = run(&["seed"], &base_vars(&database.url));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(count(&database.url, "users"), 3);
        assert_eq!(count(&database.url, "contents"), 4);
    }
    let admins = count(&database.url, "users WHERE role = 'admin'");
    assert_eq!(admins, 1);
}

#[test]
fn every_command_fails_fast_and_says_so_while_postgres_is_unreachable() {
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/content_api_nowhere",
        free_port()
    );
    for command in ["migrate", "seed", "serve"] {
        let started = Instant::now();
        let output = run(&[command], &base_vars(&url));
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{command} took {:?}",
            started.elapsed()
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("{command} failed: connecting to")),
            "{command}: {stderr}"
        );
    }
}

/// `content-api serve` as a child process on a free port.
pub(crate) struct ServerProcess {
    pub(crate) port: u16,
    child: std::process::Child,
}

impl ServerProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) async fn start(vars: Vec<(&'static str, String)>) -> ServerProcess {
        let port = free_port();
        let mut vars = vars;
        vars.push(("PORT", port.to_string()));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut child = content_api(&["serve"], &vars).spawn().unwrap();
        // Bounded wait for the listener (startup may create and migrate the database).
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            assert!(child.try_wait().unwrap().is_none(), "the server exited");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServerProcess { port, child }
    }

    pub(crate) async fn get(&self, path: &str, request_id: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap()
    }

    fn terminate(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM; returns the JSON log lines after checking a clean exit.
    pub(crate) fn stop(self) -> Vec<Value> {
        self.terminate();
        self.wait_for_exit()
    }

    fn wait_for_exit(mut self) -> Vec<Value> {
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "SIGTERM is a clean shutdown: {exit:?}");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect()
    }
}

#[tokio::test]
async fn serve_migrates_at_startup_and_logs_json_lines_with_the_request_id() {
    let database = TestDatabase::named_fresh();
    let mut vars = base_vars(&database.url);
    vars.push(("RUN_MIGRATIONS", "true".to_owned()));
    let server = ServerProcess::start(vars).await;
    assert!(database.exists(), "startup created the database");
    assert_eq!(count(&database.url, "users"), 0, "and migrated it");

    assert_eq!(
        server
            .get("/api/v1/users/424242", "trace-me-123")
            .await
            .status(),
        404
    );
    let lines = server.stop();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|line| line.to_string().contains("trace-me-123"))
        .collect();
    assert!(!of_request.is_empty(), "the request was logged");
    for line in &of_request {
        assert_eq!(line["span"]["request_id"], "trace-me-123", "{line}");
    }
    assert!(of_request
        .iter()
        .any(|line| line["message"] == "request finished" && line["status"] == 404));
}

fn count_messages(lines: &[Value], message: &str) -> usize {
    lines
        .iter()
        .filter(|line| line["message"] == message)
        .count()
}

/// Waits up to 5 s for `/health/ready` to report the cache as `want`.
async fn await_cache(server: &ServerProcess, want: &str, failure: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready: Value = server
            .get("/health/ready", "probe")
            .await
            .json()
            .await
            .unwrap();
        if ready["cache"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_redis_transition_is_logged_once_not_per_request() {
    let port = free_port();
    let mut redis = OwnRedis::start_on(port).await;
    let database = TestDatabase::cloned().await;
    let mut vars = base_vars(&database.url);
    vars.retain(|(name, _)| *name != "REDIS_URL");
    vars.push(("REDIS_URL", redis.url()));
    vars.push(("RUN_MIGRATIONS", "false".to_owned()));
    let server = ServerProcess::start(vars).await;

    assert_eq!(server.get("/api/v1/content", "warm").await.status(), 200);
    redis.stop();
    // Noticed without a request touching Redis (L1 serves the listing).
    await_cache(&server, "degraded", "the outage went unnoticed for 5 s").await;
    for n in 0..20 {
        assert_eq!(
            server
                .get("/api/v1/content", &format!("down-{n}"))
                .await
                .status(),
            200
        );
    }
    let _back = OwnRedis::start_on(port).await;
    await_cache(&server, "ok", "Redis not picked up again within 5 s").await;
    for n in 0..5 {
        assert_eq!(
            server
                .get("/api/v1/content", &format!("up-{n}"))
                .await
                .status(),
            200
        );
    }

    let lines = server.stop();
    assert_eq!(count_messages(&lines, "redis connected"), 1);
    assert_eq!(
        count_messages(
            &lines,
            "redis unavailable: circuit opened, serving from PostgreSQL"
        ),
        1
    );
    assert_eq!(
        count_messages(&lines, "redis reachable again: circuit closed"),
        1
    );
}

#[tokio::test]
async fn a_request_in_flight_when_sigterm_arrives_completes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let database = TestDatabase::cloned().await;
    let server = ServerProcess::start(base_vars(&database.url)).await;
    let signup = crate::helpers::signup_body();
    let created = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/signup", server.port))
        .json(&signup)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // A login whose body is still arriving when the signal comes.
    let body =
        serde_json::json!({"email": signup["email"], "password": signup["password"]}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    // Give the server time to take the request in before the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.terminate();

    // New connections are refused (bounded wait for the signal to land)
    // while the old request is still open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", server.port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("access_token"));

    let lines = server.wait_for_exit();
    assert_eq!(
        count_messages(&lines, "shut down"),
        1,
        "the pool was closed after the last request"
    );
}

/// What one writer saw while the server stopped.
#[derive(Default)]
struct WriterLog {
    /// Answered 201.
    created: Vec<i64>,
    /// Closed before any answer: a connection the kernel had queued when the
    /// listener closed, or one actix had not started on (it drops those).
    not_taken_in: usize,
    /// Anything else: another status, or an answer cut off.
    broken: Vec<String>,
}

/// Creates items until the server refuses connections.
async fn create_until_refused(
    port: u16,
    token: String,
    acknowledged: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> WriterLog {
    // A connection per request, so that a refused connect ends the load.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut log = WriterLog::default();
    for n in 0..20_000 {
        let sent = client
            .post(format!("http://127.0.0.1:{port}/api/v1/post-content"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"title": format!("Under load {n}"), "content": "Written while stopping."}))
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 201 => match response.json::<Value>().await {
                Ok(created) => {
                    log.created.push(created["id"].as_i64().unwrap());
                    acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(err) => log.broken.push(format!("a 201 cut off: {err}")),
            },
            Ok(response) => log.broken.push(format!("answered {}", response.status())),
            Err(err) if err.is_connect() => break,
            Err(err) if err.is_request() => log.not_taken_in += 1,
            Err(err) => log.broken.push(format!("{err:?}")),
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_write_load_loses_no_acknowledged_write() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let database = TestDatabase::cloned().await;
    let mut vars = base_vars(&database.url);
    // Request logs would fill the unread stdout pipe under load.
    vars.retain(|(name, _)| *name != "RUST_LOG");
    vars.push(("RUST_LOG", "warn".to_owned()));
    vars.push(("WORKERS", "2".to_owned()));
    let server = ServerProcess::start(vars.clone()).await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let signup = crate::helpers::signup_body();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .post(format!("{base}/api/v1/signup"))
            .json(&signup)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let login: Value = client
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"email": signup["email"], "password": signup["password"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(create_until_refused(
                server.port,
                token.clone(),
                acknowledged.clone(),
            ))
        })
        .collect();
    // Bounded wait for the load to be under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "the writers did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.terminate();
    let mut ids = Vec::new();
    let mut not_taken_in = 0;
    for writer in writers {
        let mut log = writer.await.unwrap();
        assert!(log.broken.is_empty(), "{:?}", log.broken);
        ids.append(&mut log.created);
        not_taken_in += log.not_taken_in;
    }
    assert!(ids.len() >= 200 && ids.len() == acknowledged.load(Ordering::Relaxed));
    server.wait_for_exit();
    eprintln!(
        "{} creates answered 201, {not_taken_in} connections closed unanswered",
        ids.len()
    );

    let restarted = ServerProcess::start(vars).await;
    for id in &ids {
        let response = restarted
            .get(&format!("/api/v1/content/{id}"), "after-restart")
            .await;
        assert_eq!(
            response.status(),
            200,
            "item {id} was answered 201 before the stop"
        );
    }
    // Nothing else was written: no connection closed unanswered had been
    // taken in, so no write happened without its answer.
    assert_eq!(count(&database.url, "contents") as usize, ids.len());
    restarted.stop();
}
