//! Read replicas (contract §14) against a real streaming replica: a private
//! primary (`initdb`) and its replica (`pg_basebackup -R`) on free ports,
//! never the shared server. Reads go to the replica when it has replayed
//! every answered write; with its replay paused, lagging or stopped, they
//! go to the primary: never a stale read, never a 5xx.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{base_settings, free_port, use_redis, TestApp, TestUser};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server of the test's own in a temporary folder, stopped
/// and removed when dropped.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

/// Runs a PostgreSQL binary as the `postgres` user when the tests run as
/// root (the server refuses to run as root).
fn pg(binary: &str, args: &[&str]) {
    let path = format!("{BIN}/{binary}");
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", &path]);
        command
    } else {
        Command::new(&path)
    };
    let output = command
        .args(args)
        .output()
        .expect("PostgreSQL 15's binaries");
    assert!(
        output.status.success(),
        "{binary} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn own_folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "content-api-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    if running_as_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

impl OwnPostgres {
    fn primary() -> Self {
        let dir = own_folder("primary");
        let data = dir.join("data");
        pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let server = Self {
            dir,
            port: free_port(),
        };
        server.start();
        server
    }

    fn replica_of(primary: &OwnPostgres) -> Self {
        let dir = own_folder("replica");
        let data = dir.join("data");
        pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        let server = Self {
            dir,
            port: free_port(),
        };
        server.start();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c hot_standby=on \
             -c wal_receiver_status_interval=1s",
            self.port,
            self.dir.display()
        );
        pg(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                self.dir.join("log").to_str().unwrap(),
                "-o",
                &options,
            ],
        );
    }

    fn stop(&self) {
        pg(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-m",
                "fast",
                "-D",
                self.data().to_str().unwrap(),
            ],
        );
    }

    /// The postmaster and every process it started.
    fn processes(&self) -> Vec<String> {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        pids
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn sql(&self, statement: &str) -> String {
        let output = Command::new("psql")
            .args(["-At", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", statement])
            .output()
            .unwrap();
        assert!(output.status.success(), "{statement}: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        if Path::new(&data.join("postmaster.pid")).exists() {
            let _ = Command::new(if running_as_root() { "runuser" } else { "true" })
                .args(["-u", "postgres", "--"])
                .arg(format!("{BIN}/pg_ctl"))
                .args(["stop", "-m", "immediate", "-D", data.to_str().unwrap()])
                .output();
            if !running_as_root() {
                let _ = Command::new(format!("{BIN}/pg_ctl"))
                    .args(["stop", "-m", "immediate", "-D", data.to_str().unwrap()])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, its replica, and two instances with L1 reading through it.
struct Replicated {
    // Dropped in this order: the instances before their servers.
    apps: Vec<TestApp>,
    replica: OwnPostgres,
    _primary: OwnPostgres,
}

async fn replicated(max_lag_ms: u64) -> Replicated {
    let (primary, replica) = tokio::task::spawn_blocking(|| {
        let primary = OwnPostgres::primary();
        let replica = OwnPostgres::replica_of(&primary);
        (primary, replica)
    })
    .await
    .unwrap();
    let database = "content_api_replicated";
    let mut settings = base_settings(primary.url(database));
    use_redis(&mut settings);
    settings.database_listen_url = settings.database_url.clone();
    settings.run_migrations = true;
    settings.database_replica_urls = vec![replica.url(database)];
    settings.replica_max_lag = Duration::from_millis(max_lag_ms);
    let first = TestApp::start(settings.clone(), None).await;
    let second = TestApp::start(settings, None).await;
    let apps = vec![first, second];
    for app in &apps {
        app.await_l1_serving().await;
        await_replica_usable(app, true).await;
    }
    Replicated {
        apps,
        replica,
        _primary: primary,
    }
}

fn signal(pids: &[String], which: &str) {
    let status = Command::new("kill").arg(which).args(pids).status().unwrap();
    assert!(status.success());
}

async fn replica_usable(app: &TestApp) -> bool {
    app.metric(r#"db_replica_usable{replica="0"}"#).await == 1.0
}

async fn await_replica_usable(app: &TestApp, want: bool) -> Duration {
    let started = Instant::now();
    while replica_usable(app).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica usable never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

async fn reads_on(apps: &[TestApp], target: &str) -> f64 {
    let mut sum = 0.0;
    for app in apps {
        sum += app
            .metric(&format!(r#"db_reads_total{{target="{target}"}}"#))
            .await;
    }
    sum
}

async fn rename(app: &TestApp, user: &TestUser, name: &str) {
    let response = app
        .request_as(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{}", user.id),
            &user.token,
        )
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Renames the user `rounds` times through both instances; after each
/// answer, both instances' reads of the user, of the public listing (a
/// cache fill) and of the tag counts must show it. Returns the stale reads.
async fn read_your_writes(
    apps: &[TestApp],
    user: &TestUser,
    item: i64,
    rounds: usize,
    from: usize,
) -> Vec<String> {
    let mut stale = Vec::new();
    for round in from..from + rounds {
        let name = format!("Reader Number {round}");
        rename(&apps[round % apps.len()], user, &name).await;
        for (n, app) in apps.iter().enumerate() {
            let read: Value = app.get_json(&format!("/api/v1/users/{}", user.id)).await;
            if read["name"] != name.as_str() {
                stale.push(format!(
                    "round {round}, instance {n}: user {}",
                    read["name"]
                ));
            }
            let listed: Value = app.get_json("/api/v1/content?limit=7").await;
            let author = listed
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["id"] == item)
                .map(|entry| entry["user"]["name"].clone());
            if author != Some(Value::from(name.as_str())) {
                stale.push(format!(
                    "round {round}, instance {n}: listed author {author:?}"
                ));
            }
        }
    }
    stale
}

#[tokio::test]
async fn reads_go_to_the_replica_and_none_is_stale_while_its_replay_is_paused() {
    let setup = replicated(1000).await;
    let apps = &setup.apps;
    let user = apps[0].new_user().await;
    let item = apps[0].post_item(&user, "Read through a replica").await;

    let stale = read_your_writes(apps, &user, item, 10, 0).await;
    assert!(stale.is_empty(), "stale reads: {stale:?}");
    // Once the replica has replayed the last write, it serves the reads.
    let before = reads_on(apps, "replica").await;
    let started = Instant::now();
    while reads_on(apps, "replica").await <= before {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no read went to the replica"
        );
        apps[0].get(&format!("/api/v1/users/{}", user.id)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    setup.replica.sql("SELECT pg_wal_replay_pause()");
    // The first write after the pause: a draft, in no cache. Its commit
    // position is announced all the same, so its owner's listing on the
    // other instance shows it (the replica, current until the pause, would
    // not).
    let draft = apps[0]
        .request_as(reqwest::Method::POST, "/api/v1/post-content", &user.token)
        .json(&json!({"title": "A draft read back", "content": "A body long enough.", "status": "draft"}))
        .send()
        .await
        .unwrap();
    assert_eq!(draft.status(), 201);
    let draft: Value = draft.json().await.unwrap();
    let drafts: Value = apps[1]
        .get_as("/api/v1/content?status=draft", &user.token)
        .await
        .json()
        .await
        .unwrap();
    let listed = drafts
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["id"] == draft["id"]);
    let stale = read_your_writes(apps, &user, item, 10, 10).await;
    setup.replica.sql("SELECT pg_wal_replay_resume()");
    assert!(
        listed,
        "the owner's new draft missing on the other instance: {drafts}"
    );
    assert!(
        stale.is_empty(),
        "stale reads while the replay was paused: {stale:?}"
    );
    println!(
        "reads by the replica {}, by the primary {}",
        reads_on(apps, "replica").await,
        reads_on(apps, "primary").await
    );
}

#[tokio::test]
async fn a_replica_lagging_past_the_bound_or_stopped_is_skipped_without_an_error() {
    let setup = replicated(200).await;
    let apps = &setup.apps;
    let user = apps[0].new_user().await;
    apps[0].post_item(&user, "Still served").await;

    // Lagging: the replay paused while the primary moves on.
    setup.replica.sql("SELECT pg_wal_replay_pause()");
    let lag_started = Instant::now();
    let mut round = 0;
    while replica_usable(&apps[1]).await {
        assert!(
            lag_started.elapsed() < Duration::from_secs(5),
            "a lagging replica stayed in use"
        );
        round += 1;
        rename(&apps[0], &user, &format!("Lagging Reader {round}")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "skipped {:?} after its replay paused",
        lag_started.elapsed()
    );
    for app in apps {
        let read: Value = app.get_json(&format!("/api/v1/users/{}", user.id)).await;
        assert_eq!(read["name"], format!("Lagging Reader {round}"));
    }
    setup.replica.sql("SELECT pg_wal_replay_resume()");
    for app in apps {
        await_replica_usable(app, true).await;
    }

    // Frozen (every process of it stopped): reads in flight on it and after
    // are answered by the primary within the replica read timeout.
    let frozen = setup.replica.processes();
    signal(&frozen, "-STOP");
    let started = Instant::now();
    let reads = async {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            for app in apps {
                statuses.push(
                    app.get(&format!("/api/v1/users/{}", user.id))
                        .await
                        .status(),
                );
            }
        }
        statuses
    };
    let answered = tokio::time::timeout(Duration::from_secs(5), reads).await;
    signal(&frozen, "-CONT");
    let statuses = answered.expect("reads hung on a frozen replica");
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    println!(
        "10 reads answered in {:?} with the replica frozen",
        started.elapsed()
    );
    for app in apps {
        await_replica_usable(app, true).await;
    }

    // Stopped: every read is answered (by the primary), then the replica is
    // used again once it is back.
    setup.replica.stop();
    for _ in 0..20 {
        for app in apps {
            assert_eq!(
                app.get(&format!("/api/v1/users/{}", user.id))
                    .await
                    .status(),
                200
            );
            assert_eq!(app.get("/api/v1/content?q=served").await.status(), 200);
        }
    }
    for app in apps {
        await_replica_usable(app, false).await;
    }
    tokio::task::spawn_blocking({
        let replica = OwnPostgres {
            dir: setup.replica.dir.clone(),
            port: setup.replica.port,
        };
        move || {
            replica.start();
            std::mem::forget(replica);
        }
    })
    .await
    .unwrap();
    for app in apps {
        let back = await_replica_usable(app, true).await;
        println!("usable again {back:?} after its restart");
    }
}
