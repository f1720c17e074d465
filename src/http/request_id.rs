//! `X-Request-Id` on every response and in every log line of the request.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An incoming id is kept when it is a sane token (1–128 of `[A-Za-z0-9._-]`).
fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane(value))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    res.headers_mut().insert(
        REQUEST_ID,
        HeaderValue::from_str(&id).expect("the id is a sane header value"),
    );
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
}
