//! Extractors that turn a request into validated inputs or an `AppError`.

use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::Pin;

use futures_util::future::LocalBoxFuture;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::rate_limit::RateLimits;
use crate::domain::audit::Client;
use crate::domain::auth::Principal;
use crate::domain::precondition::Precondition;
use crate::domain::sessions;
use crate::domain::validation::digits;
use crate::domain::{AppContext, AppError};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A request body that is a JSON object. Field rules are checked by the
/// domain's parsers, which see every field at once.
pub struct JsonObject(pub Map<String, Value>);

fn is_json(req: &HttpRequest) -> bool {
    match req.mime_type() {
        Ok(Some(mime)) => {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        }
        _ => false,
    }
}

/// A JSON document read as an object whose keys are unique, or as any
/// other value. A repeated key is malformed JSON here: parsers disagree on
/// which copy wins (RFC 8259, section 4), so none is picked silently.
enum Body {
    Object(Map<String, Value>),
    Other,
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;

        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = Body;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Body, A::Error> {
                let mut object = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if object.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    let value = access.next_value::<Value>()?;
                    object.insert(key, value);
                }
                Ok(Body::Object(object))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut access: A) -> Result<Body, A::Error> {
                while access.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Body::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Body, E> {
                Ok(Body::Other)
            }
            fn visit_unit<E>(self) -> Result<Body, E> {
                Ok(Body::Other)
            }
        }

        deserializer.deserialize_any(BodyVisitor)
    }
}

impl FromRequest for JsonObject {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(ready(Err(AppError::UnsupportedMediaType(
                "Content-Type must be application/json".into(),
            ))));
        }
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = body.await.map_err(|err| {
                if err.as_response_error().status_code()
                    == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                {
                    AppError::PayloadTooLarge {
                        limit: MAX_BODY_BYTES,
                    }
                } else {
                    AppError::BadRequest("The request body could not be read".into())
                }
            })?;
            match serde_json::from_slice::<Body>(&bytes) {
                Ok(Body::Object(object)) => Ok(JsonObject(object)),
                Ok(Body::Other) => Err(AppError::BadRequest(
                    "The request body must be a JSON object".into(),
                )),
                Err(err) => Err(AppError::BadRequest(format!("Malformed JSON: {err}"))),
            }
        })
    }
}

/// The query string as a map of strings, for the domain's parsers.
pub struct QueryParams(pub Map<String, Value>);

impl FromRequest for QueryParams {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            web::Query::<Vec<(String, String)>>::from_query(req.query_string())
                .map(|query| QueryParams(collect_params(query.into_inner())))
                .map_err(|_| AppError::BadRequest("Malformed query string".into())),
        )
    }
}

/// Each parameter once as a string; a repeated one as the list of its
/// values (only a repeatable parameter reads a list; any other refuses it).
fn collect_params(pairs: Vec<(String, String)>) -> Map<String, Value> {
    let mut params = Map::new();
    for (key, value) in pairs {
        match params.get_mut(&key) {
            None => {
                params.insert(key, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => {
                let first = first.take();
                params.insert(key, Value::Array(vec![first, Value::String(value)]));
            }
        }
    }
    params
}

/// A positive integer `{id}` path segment; anything else is a route that
/// does not exist (404), never a 500.
pub struct PathId(pub i64);

impl FromRequest for PathId {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.match_info()
                .get("id")
                .and_then(digits)
                .filter(|id| *id > 0)
                .map(PathId)
                .ok_or_else(|| route_not_found(req)),
        )
    }
}

/// `If-Match` of a write: absent, `*`, or the tags it accepts (compared
/// strongly: a weak tag never matches).
pub struct IfMatch(pub Precondition);

impl FromRequest for IfMatch {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut values = req.headers().get_all(header::IF_MATCH).peekable();
        if values.peek().is_none() {
            return ready(Ok(IfMatch(Precondition::Absent)));
        }
        let tags: Vec<String> = values
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|tag| tag.trim().to_owned())
            .filter(|tag| !tag.is_empty())
            .collect();
        ready(Ok(IfMatch(if tags.iter().any(|tag| tag == "*") {
            Precondition::Exists
        } else {
            Precondition::OneOf(tags)
        })))
    }
}

pub fn route_not_found(req: &HttpRequest) -> AppError {
    AppError::NotFound(format!("No route for {} {}", req.method(), req.path()))
}

/// The bearer credential, if one is sent; a malformed header is a 401.
fn bearer(req: &HttpRequest) -> Result<Option<String>, AppError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AppError::invalid_token())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(AppError::invalid_token)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AppError::invalid_token());
    }
    Ok(Some(token.trim().to_owned()))
}

fn context_data(req: &HttpRequest) -> web::Data<AppContext> {
    req.app_data::<web::Data<AppContext>>()
        .expect("AppContext is registered by the app builder")
        .clone()
}

/// A valid bearer credential (a live session's access token, or a machine
/// token) is required. What it may do is decided by the use case.
pub struct Auth(pub Principal);

impl FromRequest for Auth {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        match bearer(req) {
            Ok(Some(token)) => {
                let ctx = context_data(req);
                Box::pin(async move { sessions::authenticate(&ctx, &token).await.map(Auth) })
            }
            Ok(None) => Box::pin(ready(Err(AppError::Unauthorized(
                "Not authenticated".into(),
            )))),
            Err(err) => Box::pin(ready(Err(err))),
        }
    }
}

/// The caller, for a read that turned out to need one: `None` without a
/// bearer credential, 401 for an invalid one.
pub async fn viewer(req: &HttpRequest) -> Result<Option<Principal>, AppError> {
    Ok(MaybeAuth::extract(req).await?.0)
}

/// A bearer credential is optional (it widens what the caller may see), but
/// one that is sent must be valid. Without one nothing is looked up.
pub struct MaybeAuth(pub Option<Principal>);

impl FromRequest for MaybeAuth {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        match bearer(req) {
            Ok(Some(token)) => {
                let ctx = context_data(req);
                Box::pin(async move {
                    let principal = sessions::authenticate(&ctx, &token).await?;
                    Ok(MaybeAuth(Some(principal)))
                })
            }
            Ok(None) => Box::pin(ready(Ok(MaybeAuth(None)))),
            Err(err) => Box::pin(ready(Err(err))),
        }
    }
}

/// The id this request is logged under, kept in the request's extensions
/// by the request-id middleware for writes (reads never record it).
#[derive(Clone)]
pub struct RequestId(pub String);

/// Longest user agent a session keeps.
const USER_AGENT_MAX_CHARS: usize = 512;

/// Where the request came from: for sessions and the audit log.
pub struct ClientInfo(pub Client);

impl FromRequest for ClientInfo {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = req
            .app_data::<web::Data<RateLimits>>()
            .and_then(|limits| limits.client_ip(req))
            .map(|ip| ip.to_string());
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(USER_AGENT_MAX_CHARS).collect());
        let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
        ready(Ok(ClientInfo(Client {
            ip,
            user_agent,
            request_id,
        })))
    }
}

/// A JSON object body, or no body at all (`Content-Length: 0` or none).
pub struct OptionalJsonObject(pub Option<Map<String, Value>>);

impl FromRequest for OptionalJsonObject {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length.as_bytes() == b"0")
            && req.headers().get(header::TRANSFER_ENCODING).is_none();
        if empty {
            return Box::pin(ready(Ok(OptionalJsonObject(None))));
        }
        let body = JsonObject::from_request(req, payload);
        Box::pin(async move { body.await.map(|body| OptionalJsonObject(Some(body.0))) })
    }
}
