//! `X-Request-Id` on every response and in every log line of the request,
//! the request's metrics, and the security headers on every response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use tracing::Instrument;

use super::extract::RequestId;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An incoming id is kept when it is a sane token (1–128 of `[A-Za-z0-9._-]`).
fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A fresh id: this process's random nonce and a counter (a random UUID
/// per request cost a `getrandom` system call each, 1 % of a cached read;
/// `format!` cost another 3 % of its instructions).
fn fresh_id() -> String {
    static PREFIX: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{}-", uuid::Uuid::new_v4().simple()));
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut digits = itoa::Buffer::new();
    let number = digits.format(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut id = String::with_capacity(PREFIX.len() + number.len());
    id.push_str(&PREFIX);
    id.push_str(number);
    id
}

/// Set on every response (no handler sets them, so they are inserted
/// without looking first).
const SECURITY_HEADERS: [(HeaderName, &str); 3] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// The request's id (kept or made), its span, its metrics, and on the
/// response the id, the security headers and problem+json for errors actix
/// made by itself (one middleware for all: each layer costs every request a
/// little).
pub async fn request_id<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane(value))
        .map_or_else(fresh_id, str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let method = req.method().clone();
    // Writes may be audited with their id; reads skip the allocation.
    if !matches!(method, Method::GET | Method::HEAD) {
        req.extensions_mut().insert(RequestId(id.clone()));
    }
    let res = next.call(req).instrument(span.clone()).await?;
    let mut res = super::problem::problem_for_other_errors(res);
    super::metrics::record(&res, &method, started);
    if tracing::enabled!(tracing::Level::INFO) {
        let status = res.status().as_u16();
        span.in_scope(|| {
            tracing::info!(
                status,
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "request finished"
            )
        });
    }
    let headers = res.headers_mut();
    headers.insert(
        REQUEST_ID,
        HeaderValue::from_maybe_shared(Bytes::from(id)).expect("the id is a sane header value"),
    );
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::is_sane;

    #[test]
    fn only_sane_tokens_are_echoed() {
        assert!(is_sane("abc-123_X.y"));
        assert!(is_sane(&"a".repeat(128)));
        for bad in ["", "a b", "a/b", "ü", &"a".repeat(129)] {
            assert!(!is_sane(bad), "{bad}");
        }
    }

    #[test]
    fn fresh_ids_are_sane_and_never_repeat() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| super::fresh_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_sane(id)));
    }
}
