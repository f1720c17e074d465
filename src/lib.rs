//! Content API: `http` → `domain` → `db`. This file builds the server from
//! `Settings`, so `main.rs` and the integration tests run the same app.

pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod telemetry;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use std::time::Duration;

use cache::{Cache, CacheSettings};
use config::Settings;
use domain::{AppContext, Hooks};

/// How long startup waits for a reachable Redis before serving without it.
const REDIS_STARTUP_WAIT: Duration = Duration::from_secs(1);

/// Migrates (when `RUN_MIGRATIONS`), then builds the pool, the cache and
/// the use cases' context: everything but the HTTP server.
pub async fn prepare(settings: &Settings, hooks: Hooks) -> anyhow::Result<AppContext> {
    if settings.run_migrations {
        let url = settings.database_url.clone();
        tokio::task::spawn_blocking(move || {
            db::ensure_database(&url)?;
            db::run_migrations(&url)
        })
        .await??;
    }
    let pool = db::build_pool(settings)?;
    let cache = Cache::new(CacheSettings {
        redis_url: settings.redis_url.as_deref(),
        key_prefix: &settings.cache_key_prefix,
        ttl_seconds: settings.cache_ttl_seconds,
        timeout: settings.redis_timeout,
    })?;
    cache.connect(REDIS_STARTUP_WAIT).await;
    AppContext::new(settings, pool, cache, hooks).await
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Prepares the context and binds the listener; `PORT=0` picks a free
    /// port (tests).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_hooks(settings, Hooks::default()).await
    }

    /// `build`, with test seams installed.
    pub async fn build_with_hooks(settings: Settings, hooks: Hooks) -> anyhow::Result<Self> {
        let context = web::Data::new(prepare(&settings, hooks).await?);

        let read_policy = web::Data::new(http::contents::ReadCachePolicy {
            cache_control: actix_web::http::header::HeaderValue::from_str(&settings.cache_control)
                .context("CACHE_CONTROL")?,
        });
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(context.clone())
                .app_data(read_policy.clone())
                .app_data(web::PayloadConfig::new(http::extract::MAX_BODY_BYTES))
                .configure(http::routes)
                .wrap(ErrorHandlers::new().default_handler(http::problem::problem_for_other_errors))
                .wrap(from_fn(http::request_id::request_id))
        })
        .listen(listener)?;
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        tracing::info!(port, "listening");
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
