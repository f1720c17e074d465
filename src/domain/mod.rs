//! Rules and use cases. Knows PostgreSQL (through `db`) but not HTTP.

pub mod account_input;
pub mod accounts;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod cache_admin;
pub mod content_input;
pub mod contents;
pub mod editorial;
pub mod error;
pub mod health;
pub mod invalidation;
pub mod machine_tokens;
pub mod pagination;
pub mod precondition;
pub mod reads;
pub mod rules;
pub mod scheduler;
pub mod secrets;
pub mod seed;
pub mod sessions;
pub mod transaction;
pub mod user_input;
pub mod users;
pub mod validation;
pub mod views;
pub mod warming;
pub mod webhooks;

use std::sync::Arc;

use crate::cache::{Cache, CachedPage, Flights};
use crate::config::Settings;
use crate::db::replicas::Replicas;
use crate::db::DbPool;
use crate::metrics::Metrics;
use accounts::AccountSettings;
use auth::{Passwords, Tokens};
use contents::ItemRead;
use editorial::EditorialSettings;
use user_input::PhonePolicy;

pub use error::{AppError, FieldError};

/// Everything a use case needs, built once at startup and shared by all
/// workers.
pub struct AppContext {
    pub pool: DbPool,
    /// Streaming replicas for reads (`reads.rs` decides when one may serve).
    pub replicas: Option<Arc<Replicas>>,
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    pub hooks: Hooks,
    pub tokens: Tokens,
    pub passwords: Passwords,
    pub phones: PhonePolicy,
    pub accounts: AccountSettings,
    pub editorial: EditorialSettings,
    /// How many of the most-read items a warm-up loads (`WARM_ITEMS`).
    pub warm_items: usize,
    /// Told of every new or changed schedule, so this instance's scheduler
    /// looks again at once.
    pub schedule_changed: tokio::sync::Notify,
    pub webhooks: webhooks::WebhookSettings,
    /// Told of a delivery queued here by hand, so that it goes out at once.
    pub webhook_due: tokio::sync::Notify,
    /// Item and listing loads in flight, shared by concurrent misses.
    pub item_flights: Arc<Flights<Result<ItemRead, Arc<AppError>>>>,
    pub listing_flights: Arc<Flights<Result<CachedPage, Arc<AppError>>>>,
    /// `GET /users/{id}` reads in flight, sharing statements under load.
    pub user_reads: Arc<users::UserReads>,
    /// Bearer checks in flight, sharing statements under load.
    pub session_checks: Arc<sessions::SessionChecks>,
    /// Verified against when a login names no user, so that a wrong email
    /// costs the same time as a wrong password.
    dummy_password_hash: String,
}

impl AppContext {
    pub async fn new(
        settings: &Settings,
        pool: DbPool,
        replicas: Option<Arc<Replicas>>,
        cache: Cache,
        metrics: Arc<Metrics>,
        hooks: Hooks,
    ) -> anyhow::Result<Self> {
        let phones = PhonePolicy::new(
            settings.phone_regions.clone(),
            settings.default_phone_region,
        );
        phones.warm_up();
        let passwords = Passwords::new(hashing_threads(settings.password_hashing_threads));
        let user_reads =
            users::batched_reads(reads::Reader::new(&pool, &replicas, &cache, &metrics));
        let session_checks = sessions::batched_checks(pool.clone());
        let dummy_password_hash = passwords
            .hash(uuid::Uuid::new_v4().to_string())
            .await
            .map_err(|err| anyhow::anyhow!("preparing the login hash: {err}"))?;
        Ok(Self {
            pool,
            replicas,
            cache,
            metrics,
            hooks,
            tokens: Tokens::new(&settings.jwt_secret, settings.jwt_ttl_seconds),
            passwords,
            phones,
            accounts: AccountSettings {
                refresh_ttl_seconds: settings.refresh_ttl_seconds,
                password_reset_ttl_seconds: settings.password_reset_ttl_seconds,
                mailer: settings
                    .smtp_url
                    .as_deref()
                    .map(|url| crate::mail::Mailer::new(url, &settings.mail_from))
                    .transpose()?
                    .map(Arc::new),
            },
            editorial: EditorialSettings {
                revisions_kept: settings.revisions_kept.min(i64::MAX as u64) as i64,
                require_if_match: settings.require_if_match,
            },
            warm_items: settings.warm_items,
            schedule_changed: tokio::sync::Notify::new(),
            webhooks: webhooks::WebhookSettings {
                sender: crate::outbound::Sender::new(settings.webhook_allow_private)?,
                retry_base: settings.webhook_retry_base,
                breakers: Default::default(),
            },
            webhook_due: tokio::sync::Notify::new(),
            item_flights: Flights::new(),
            listing_flights: Flights::new(),
            user_reads,
            session_checks,
            dummy_password_hash,
        })
    }
}

/// One core is left free of hashing by default: with a hash running on every
/// core, cached-read p99 during a signup storm was 1.7–3.5 × idle in the
/// benchmark (seven of nine runs over 2 ×), against 1.2–2.5 × with one core
/// left free (four of twenty over 2 ×); signups/s on 2 cores: 110 → 65.
fn hashing_threads(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.saturating_sub(1).max(1)
}

pub use crate::cache::PauseHook;

/// Seams for tests that must order concurrent requests deterministically
/// (e.g. hold a reader between its database read and its cache store).
/// Production builds leave them empty; an empty hook costs one branch.
#[derive(Clone, Default)]
pub struct Hooks {
    pub before_cache_store: Option<PauseHook>,
    /// Between a Redis hit and its copy into L1.
    pub before_l1_fill: Option<PauseHook>,
    /// Between a write's commit and the completion of its invalidation
    /// (called with the outbox record's id): a writer that never comes back
    /// from it is one killed right after its commit.
    pub after_commit: Option<PauseHook>,
}

impl Hooks {
    pub async fn after_commit(&self, record: i64) {
        if let Some(hook) = &self.after_commit {
            hook(record.to_string()).await;
        }
    }

    pub async fn before_cache_store(&self, key: &str) {
        if let Some(hook) = &self.before_cache_store {
            hook(key.to_owned()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hashing_threads;

    #[test]
    fn hashing_leaves_a_core_unless_configured() {
        assert_eq!(hashing_threads(3), 3);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let by_default = hashing_threads(0);
        assert!(by_default >= 1);
        if cores > 1 {
            assert_eq!(
                by_default,
                cores - 1,
                "one core is left to the HTTP workers"
            );
        }
    }
}
