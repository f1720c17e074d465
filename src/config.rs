//! Settings, read once from the environment (and `.env` when present).
//!
//! Every variable has a working local default except where a wrong default
//! would be dangerous; an invalid value stops startup with a message naming
//! the variable.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use phonenumber::country;

#[derive(Debug, thiserror::Error)]
#[error("invalid value for {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    /// The cache coherence channel's session (`DATABASE_LISTEN_URL`, default
    /// `DATABASE_URL`): a listening session cannot go through a
    /// transaction-mode pooler.
    pub database_listen_url: String,
    /// Streaming replicas for reads (`DATABASE_REPLICA_URLS`, comma-separated).
    pub database_replica_urls: Vec<String>,
    /// A replica further behind than this is skipped (`REPLICA_MAX_LAG_MS`).
    pub replica_max_lag: Duration,
    /// Most-read items loaded after a start or a flush (`WARM_ITEMS`).
    pub warm_items: usize,
    pub redis_url: Option<String>,
    /// `redis_url` is a comma-separated list of a Redis Cluster's seed nodes.
    pub redis_cluster: bool,
    pub host: String,
    pub port: u16,
    /// Actix worker threads; 0 means one per core.
    pub workers: usize,
    /// Argon2 threads; 0 means one per core but one (at least one).
    pub password_hashing_threads: usize,
    pub cache_ttl_seconds: u64,
    /// Bound of the in-process cache (L1) in bytes; 0 turns it off.
    pub l1_cache_bytes: u64,
    pub cache_key_prefix: String,
    /// A Redis call slower than this counts as a failure (default 50 ms).
    pub redis_timeout: Duration,
    /// `Cache-Control` of cached reads.
    pub cache_control: String,
    pub jwt_secret: String,
    pub jwt_ttl_seconds: u64,
    pub phone_regions: Vec<country::Id>,
    pub default_phone_region: country::Id,
    pub db_pool_size: usize,
    pub db_pool_wait_timeout: Duration,
    pub db_connect_timeout: Duration,
    pub run_migrations: bool,
    pub log_format: LogFormat,
    /// Per client IP and minute on signup and login; 0 disables.
    pub rate_limit_auth_per_minute: u32,
    /// Per client IP and minute on content and user writes; 0 disables.
    pub rate_limit_writes_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` is believed when finding the client IP.
    pub trusted_proxies: Vec<IpAddr>,
    /// Origins allowed to call the API from a browser; empty = none.
    pub cors_allowed_origins: Vec<String>,
    /// How long SIGTERM/SIGINT waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Lifetime of a refresh token (and so of an unused session).
    pub refresh_ttl_seconds: u64,
    pub password_reset_ttl_seconds: u64,
    /// `smtp://[user:password@]host[:port]`; without it password reset is off.
    pub smtp_url: Option<String>,
    /// The sender of password-reset mail.
    pub mail_from: String,
    /// Revisions kept per item, newest first.
    pub revisions_kept: u64,
    /// Content and user writes without `If-Match` are refused (428).
    pub require_if_match: bool,
    /// Webhook targets may be private, loopback or link-local addresses
    /// (`WEBHOOK_ALLOW_PRIVATE`).
    pub webhook_allow_private: bool,
    /// The first webhook retry's delay, doubled for each next one
    /// (`WEBHOOK_RETRY_BASE_MS`).
    pub webhook_retry_base: Duration,
}

impl Settings {
    /// Reads `.env` (if present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal in production; a malformed one is not.
        if let Err(err) = dotenvy::dotenv() {
            if !err.not_found() {
                return Err(ConfigError {
                    var: ".env",
                    reason: err.to_string(),
                });
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds settings from any key lookup, so tests can pass a map.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let database_url = get("DATABASE_URL").ok_or(ConfigError {
            var: "DATABASE_URL",
            reason: "must be set, e.g. postgres://postgres@127.0.0.1:5432/content_api".into(),
        })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError {
                var: "DATABASE_URL",
                reason: "must start with postgres:// or postgresql://".into(),
            });
        }
        let database_listen_url =
            get("DATABASE_LISTEN_URL").unwrap_or_else(|| database_url.clone());
        if !(database_listen_url.starts_with("postgres://")
            || database_listen_url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                var: "DATABASE_LISTEN_URL",
                reason: "must start with postgres:// or postgresql://".into(),
            });
        }
        let database_replica_urls: Vec<String> = get("DATABASE_REPLICA_URLS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(url) = database_replica_urls
            .iter()
            .find(|url| !(url.starts_with("postgres://") || url.starts_with("postgresql://")))
        {
            return Err(ConfigError {
                var: "DATABASE_REPLICA_URLS",
                reason: format!(
                    "each URL must start with postgres:// or postgresql://, got {url:?}"
                ),
            });
        }
        let replica_max_lag =
            Duration::from_millis(at_least_one(&get, "REPLICA_MAX_LAG_MS", 1000)?);
        let redis_url = get("REDIS_URL");
        let redis_cluster = parse_bool(&get, "REDIS_CLUSTER", false)?;
        if let Some(urls) = &redis_url {
            let mut nodes = urls.split(',').map(str::trim);
            let valid = |url: &str| url.starts_with("redis://") || url.starts_with("rediss://");
            if !nodes.all(valid) {
                return Err(ConfigError {
                    var: "REDIS_URL",
                    reason:
                        "must start with redis:// or rediss:// (each seed node, with REDIS_CLUSTER)"
                            .into(),
                });
            }
            if !redis_cluster && urls.contains(',') {
                return Err(ConfigError {
                    var: "REDIS_URL",
                    reason: "lists several nodes: set REDIS_CLUSTER=true for a Redis Cluster"
                        .into(),
                });
            }
        }

        let jwt_secret = get("JWT_SECRET").ok_or(ConfigError {
            var: "JWT_SECRET",
            reason: "must be set (at least 32 characters)".into(),
        })?;
        if jwt_secret.len() < 32 {
            return Err(ConfigError {
                var: "JWT_SECRET",
                reason: "must be at least 32 characters".into(),
            });
        }

        let phone_regions: Vec<country::Id> = get("PHONE_REGIONS")
            .unwrap_or_else(|| "NG".into())
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|code| parse_region("PHONE_REGIONS", code))
            .collect::<Result<_, _>>()?;
        if phone_regions.is_empty() {
            return Err(ConfigError {
                var: "PHONE_REGIONS",
                reason: "must list at least one ISO 3166 region code".into(),
            });
        }
        let default_phone_region = parse_region(
            "DEFAULT_PHONE_REGION",
            get("DEFAULT_PHONE_REGION")
                .as_deref()
                .unwrap_or("NG")
                .trim(),
        )?;

        let log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError {
                    var: "LOG_FORMAT",
                    reason: format!("expected json or pretty, got {other:?}"),
                })
            }
        };

        let db_pool_size = parse_or(&get, "DB_POOL_SIZE", 16usize)?;
        if db_pool_size == 0 {
            return Err(ConfigError {
                var: "DB_POOL_SIZE",
                reason: "must be at least 1".into(),
            });
        }
        let jwt_ttl_seconds = parse_or(&get, "JWT_TTL_SECONDS", 3600u64)?;
        if jwt_ttl_seconds == 0 {
            return Err(ConfigError {
                var: "JWT_TTL_SECONDS",
                reason: "must be at least 1".into(),
            });
        }
        let refresh_ttl_seconds = at_least_one(&get, "REFRESH_TTL_SECONDS", 2_592_000)?;
        let password_reset_ttl_seconds = at_least_one(&get, "PASSWORD_RESET_TTL_SECONDS", 1800)?;
        let smtp_url = get("SMTP_URL");
        let mail_from =
            get("MAIL_FROM").unwrap_or_else(|| "Content API <no-reply@localhost>".into());
        if let Some(url) = &smtp_url {
            crate::mail::Mailer::new(url, &mail_from).map_err(|err| ConfigError {
                var: "SMTP_URL",
                reason: format!("{err:#} (or MAIL_FROM is not a mailbox: {mail_from:?})"),
            })?;
        }
        let cache_ttl_seconds = parse_or(&get, "CACHE_TTL_SECONDS", 600u64)?;
        let l1_cache_bytes = parse_or(&get, "L1_CACHE_BYTES", 64u64 << 20)?;
        if cache_ttl_seconds == 0 {
            return Err(ConfigError {
                var: "CACHE_TTL_SECONDS",
                reason: "must be at least 1".into(),
            });
        }

        let redis_timeout = Duration::from_millis(parse_or(&get, "REDIS_TIMEOUT_MS", 50u64)?);
        if redis_timeout.is_zero() {
            return Err(ConfigError {
                var: "REDIS_TIMEOUT_MS",
                reason: "must be at least 1".into(),
            });
        }
        let cache_control =
            get("CACHE_CONTROL").unwrap_or_else(|| "public, max-age=0, must-revalidate".into());
        if !cache_control
            .chars()
            .all(|c| c == ' ' || c.is_ascii_graphic())
        {
            return Err(ConfigError {
                var: "CACHE_CONTROL",
                reason: "must be printable ASCII (a header value)".into(),
            });
        }

        let trusted_proxies = list(&get, "TRUSTED_PROXIES")
            .into_iter()
            .map(|ip| {
                ip.parse::<IpAddr>().map_err(|_| ConfigError {
                    var: "TRUSTED_PROXIES",
                    reason: format!("{ip:?} is not an IP address"),
                })
            })
            .collect::<Result<_, _>>()?;
        let cors_allowed_origins = list(&get, "CORS_ALLOWED_ORIGINS")
            .into_iter()
            .map(|origin| {
                let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/');
                if valid {
                    Ok(origin)
                } else {
                    Err(ConfigError {
                        var: "CORS_ALLOWED_ORIGINS",
                        reason: format!("{origin:?} is not an origin like https://app.example.com"),
                    })
                }
            })
            .collect::<Result<_, _>>()?;

        Ok(Self {
            database_url,
            database_listen_url,
            database_replica_urls,
            replica_max_lag,
            warm_items: parse_or(&get, "WARM_ITEMS", 200usize)?,
            redis_url,
            redis_cluster,
            host: get("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: parse_or(&get, "PORT", 8080u16)?,
            workers: parse_or(&get, "WORKERS", 0usize)?,
            password_hashing_threads: parse_or(&get, "PASSWORD_HASHING_THREADS", 0usize)?,
            cache_ttl_seconds,
            l1_cache_bytes,
            cache_key_prefix: lookup("CACHE_KEY_PREFIX").unwrap_or_default(),
            redis_timeout,
            cache_control,
            jwt_secret,
            jwt_ttl_seconds,
            phone_regions,
            default_phone_region,
            db_pool_size,
            db_pool_wait_timeout: Duration::from_millis(parse_or(
                &get,
                "DB_POOL_WAIT_TIMEOUT_MS",
                1000u64,
            )?),
            db_connect_timeout: Duration::from_millis(parse_or(
                &get,
                "DB_CONNECT_TIMEOUT_MS",
                1000u64,
            )?),
            run_migrations: parse_bool(&get, "RUN_MIGRATIONS", true)?,
            log_format,
            rate_limit_auth_per_minute: parse_or(&get, "RATE_LIMIT_AUTH_PER_MINUTE", 20u32)?,
            rate_limit_writes_per_minute: parse_or(&get, "RATE_LIMIT_WRITES_PER_MINUTE", 120u32)?,
            trusted_proxies,
            cors_allowed_origins,
            shutdown_timeout: Duration::from_secs(parse_or(
                &get,
                "SHUTDOWN_TIMEOUT_SECONDS",
                30u64,
            )?),
            refresh_ttl_seconds,
            password_reset_ttl_seconds,
            smtp_url,
            mail_from,
            revisions_kept: at_least_one(&get, "REVISIONS_KEPT", 50)?,
            require_if_match: parse_bool(&get, "REQUIRE_IF_MATCH", false)?,
            webhook_allow_private: parse_bool(&get, "WEBHOOK_ALLOW_PRIVATE", false)?,
            webhook_retry_base: Duration::from_millis(at_least_one(
                &get,
                "WEBHOOK_RETRY_BASE_MS",
                5000,
            )?),
        })
    }
}

fn at_least_one(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    let value = parse_or(get, var, default)?;
    if value == 0 {
        return Err(ConfigError {
            var,
            reason: "must be at least 1".into(),
        });
    }
    Ok(value)
}

fn parse_or<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(var) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|err: T::Err| ConfigError {
            var,
            reason: format!("{raw:?}: {err}"),
        }),
    }
}

/// A comma-separated list; blanks are skipped.
fn list(get: &impl Fn(&str) -> Option<String>, var: &str) -> Vec<String> {
    get(var)
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(ConfigError {
            var,
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

fn parse_region(var: &'static str, code: &str) -> Result<country::Id, ConfigError> {
    country::Id::from_str(&code.to_ascii_uppercase()).map_err(|_| ConfigError {
        var,
        reason: format!("{code:?} is not an ISO 3166 region code"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut map: HashMap<String, String> = HashMap::from([
            (
                "DATABASE_URL".into(),
                "postgres://postgres@127.0.0.1/x".into(),
            ),
            (
                "JWT_SECRET".into(),
                "0123456789abcdef0123456789abcdef".into(),
            ),
        ]);
        for (k, v) in pairs {
            map.insert((*k).into(), (*v).into());
        }
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_contracts() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.cache_ttl_seconds, 600);
        assert_eq!(s.l1_cache_bytes, 67_108_864);
        assert_eq!(s.jwt_ttl_seconds, 3600);
        assert_eq!(s.phone_regions, vec![country::Id::NG]);
        assert_eq!(s.default_phone_region, country::Id::NG);
        assert_eq!(s.cache_key_prefix, "");
        assert!(s.redis_url.is_none());
        assert_eq!(s.database_listen_url, s.database_url);
        assert_eq!(s.redis_timeout, Duration::from_millis(50));
        assert_eq!(s.cache_control, "public, max-age=0, must-revalidate");
        assert_eq!(s.rate_limit_auth_per_minute, 20);
        assert_eq!(s.rate_limit_writes_per_minute, 120);
        assert!(s.trusted_proxies.is_empty());
        assert!(s.cors_allowed_origins.is_empty());
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.password_hashing_threads, 0);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("PHONE_REGIONS", "NG,XX"),
            ("DEFAULT_PHONE_REGION", "ZZ"),
            ("LOG_FORMAT", "xml"),
            ("RUN_MIGRATIONS", "maybe"),
            ("DB_POOL_SIZE", "0"),
            ("PASSWORD_HASHING_THREADS", "some"),
            ("JWT_SECRET", "short"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_LISTEN_URL", "pgbouncer"),
            ("REDIS_URL", "http://x"),
            ("REDIS_URL", "redis://a:1,redis://b:1"),
            ("REDIS_CLUSTER", "sometimes"),
            ("CACHE_TTL_SECONDS", "-1"),
            ("REDIS_TIMEOUT_MS", "fast"),
            ("REDIS_TIMEOUT_MS", "0"),
            ("RATE_LIMIT_AUTH_PER_MINUTE", "-1"),
            ("TRUSTED_PROXIES", "10.0.0.1,proxy"),
            ("CORS_ALLOWED_ORIGINS", "app.example.com"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "soon"),
            ("CACHE_CONTROL", "max-age=5\n"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn a_cluster_is_a_list_of_seed_nodes() {
        let s = settings(&[
            ("REDIS_CLUSTER", "true"),
            ("REDIS_URL", "redis://10.0.0.1:7000, redis://10.0.0.2:7000"),
        ])
        .unwrap();
        assert!(s.redis_cluster);
        let err = settings(&[
            ("REDIS_CLUSTER", "true"),
            ("REDIS_URL", "redis://a:1,http://b:1"),
        ]);
        assert_eq!(err.unwrap_err().var, "REDIS_URL");
        assert!(!settings(&[]).unwrap().redis_cluster);
    }

    #[test]
    fn regions_are_parsed_case_insensitively() {
        let s = settings(&[("PHONE_REGIONS", "ng, gb"), ("DEFAULT_PHONE_REGION", "gb")]).unwrap();
        assert_eq!(s.phone_regions, vec![country::Id::NG, country::Id::GB]);
        assert_eq!(s.default_phone_region, country::Id::GB);
    }
}
