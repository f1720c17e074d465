//! Content API: `http` → `domain` → `db`. This file builds the server from
//! `Settings`, so `main.rs` and the integration tests run the same app.

pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod outbound;
pub mod telemetry;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use cache::{Cache, CacheSettings};
use config::Settings;
use domain::{AppContext, Hooks};
use metrics::Metrics;

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
    let metrics = Arc::new(Metrics::new());
    let cache = Cache::new(
        CacheSettings {
            redis_url: settings.redis_url.as_deref(),
            redis_cluster: settings.redis_cluster,
            key_prefix: &settings.cache_key_prefix,
            ttl_seconds: settings.cache_ttl_seconds,
            timeout: settings.redis_timeout,
            listen_url: &settings.database_listen_url,
            l1_bytes: settings.l1_cache_bytes,
            l1_threads: http_workers(settings.workers),
            before_l1_fill: hooks.before_l1_fill.clone(),
            tracks_positions: !settings.database_replica_urls.is_empty(),
        },
        metrics.clone(),
    )?;
    let replicas = db::replicas::Replicas::start(settings, metrics.clone())?;
    cache.connect(REDIS_STARTUP_WAIT).await;
    AppContext::new(settings, pool, replicas, cache, metrics, hooks).await
}

/// `WORKERS`, or actix's default: one per available core.
fn http_workers(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

pub struct Application {
    port: u16,
    server: Server,
    context: web::Data<AppContext>,
    scheduler: tokio::task::JoinHandle<()>,
    warmer: tokio::task::JoinHandle<()>,
    webhooks: tokio::task::JoinHandle<()>,
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
        let rate_limits = web::Data::new(http::rate_limit::RateLimits::new(&settings));
        let openapi = http::openapi::document(&context.phones);
        let cors_origins = settings.cors_allowed_origins.clone();
        let cors_enabled = !cors_origins.is_empty();
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let app_context = context.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(context.clone())
                .app_data(read_policy.clone())
                .app_data(rate_limits.clone())
                .app_data(web::PayloadConfig::new(http::extract::MAX_BODY_BYTES))
                .configure(http::routes(openapi.clone()))
                .wrap(Condition::new(cors_enabled, http::cors(&cors_origins)))
                .wrap(from_fn(http::request_id::request_id))
        })
        .listen(listener)?
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        tracing::info!(port, "listening");
        let scheduler = tokio::spawn(domain::scheduler::run(app_context.clone()));
        let warmer = tokio::spawn(domain::warming::run(app_context.clone()));
        let webhooks = tokio::spawn(domain::webhooks::dispatch::run(app_context.clone()));
        Ok(Self {
            port,
            server: server.run(),
            context: app_context,
            scheduler,
            warmer,
            webhooks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM; then stops accepting, lets in-flight
    /// requests finish (up to `SHUTDOWN_TIMEOUT_SECONDS`), stops the
    /// scheduler, the warmer and the webhook sender (an attempt cut short
    /// is made again once its lease ends), leaves the L1 members and closes the
    /// PostgreSQL pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.scheduler.abort();
        self.warmer.abort();
        self.webhooks.abort();
        self.context.cache.shut_down().await;
        self.context.pool.close();
        tracing::info!("shut down");
        served
    }
}
