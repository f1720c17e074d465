//! Per-client-IP rate limits on signup/login and on writes, as
//! extractors so they run before the body is read and fail as `AppError`.
//!
//! Built on `governor` (GCRA, no background task) rather than
//! actix-governor, whose GPL-3.0 licence does not suit this service.

use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::net::IpAddr;
use std::num::NonZeroU32;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Settings;
use crate::domain::AppError;

/// Past this many tracked clients, forget those whose window has passed.
const TRACKED_CLIENTS_BEFORE_CLEANUP: usize = 10_000;

pub struct RateLimits {
    auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    writes: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpAddr>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl RateLimits {
    pub fn new(settings: &Settings) -> Self {
        Self {
            auth: limiter(settings.rate_limit_auth_per_minute),
            writes: limiter(settings.rate_limit_writes_per_minute),
            trusted_proxies: settings.trusted_proxies.clone(),
        }
    }

    /// The peer address, unless it is a trusted proxy: then the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy (entries
    /// further left are the client's own claims and could be forged).
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|entry| entry.trim().parse().ok())
            .collect();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|ip| !self.trusted_proxies.contains(ip))
                .unwrap_or(peer),
        )
    }

    fn check(
        &self,
        limiter: Option<&DefaultKeyedRateLimiter<IpAddr>>,
        req: &HttpRequest,
    ) -> Result<(), AppError> {
        let (Some(limiter), Some(ip)) = (limiter, self.client_ip(req)) else {
            return Ok(());
        };
        if limiter.len() > TRACKED_CLIENTS_BEFORE_CLEANUP {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::RateLimited {
                retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }
}

/// Which budget a request counts against.
pub trait Budget {
    fn limiter(limits: &RateLimits) -> Option<&DefaultKeyedRateLimiter<IpAddr>>;
}

/// Signup and login.
pub struct Auth;

/// Content and user writes.
pub struct Writes;

impl Budget for Auth {
    fn limiter(limits: &RateLimits) -> Option<&DefaultKeyedRateLimiter<IpAddr>> {
        limits.auth.as_ref()
    }
}

impl Budget for Writes {
    fn limiter(limits: &RateLimits) -> Option<&DefaultKeyedRateLimiter<IpAddr>> {
        limits.writes.as_ref()
    }
}

/// An extractor that counts the request against budget `B`.
pub struct RateLimited<B>(PhantomData<B>);

pub type AuthRateLimit = RateLimited<Auth>;
pub type WriteRateLimit = RateLimited<Writes>;

impl<B: Budget> FromRequest for RateLimited<B> {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let limits = req
            .app_data::<web::Data<RateLimits>>()
            .expect("RateLimits is registered by the app builder");
        ready(
            limits
                .check(B::limiter(limits), req)
                .map(|()| RateLimited(PhantomData)),
        )
    }
}
