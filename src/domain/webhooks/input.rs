//! Webhook request bodies: `{url, events, secret?, active?}` on create,
//! any of them on a change.

use serde_json::{Map, Value};
use url::Url;

use super::signature::{self, KEY_BYTES, SECRET_PREFIX};
use crate::domain::rules::URL_MAX_CHARS;
use crate::domain::validation::{Fields, Rule};
use crate::domain::AppError;
use crate::outbound;

/// Every event a webhook can subscribe to (contract §15).
pub const EVENTS: [&str; 7] = [
    "content.created",
    "content.updated",
    "content.published",
    "content.unpublished",
    "content.deleted",
    "user.created",
    "user.deleted",
];

pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    /// `None`: generate one.
    pub secret: Option<String>,
    pub active: bool,
}

#[derive(Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    pub active: Option<bool>,
}

pub fn parse_new(body: Map<String, Value>, allow_private: bool) -> Result<NewWebhook, AppError> {
    let mut fields = Fields::new(body);
    let url = fields.required("url", |raw| parse_url(raw, allow_private));
    let events = fields.required_list("events", parse_event);
    let events = events.and_then(|events| non_empty(&mut fields, events));
    let secret = fields.optional("secret", parse_secret);
    fields.refuse_null("active");
    let active = fields.optional_bool("active");
    fields.finish()?;
    Ok(NewWebhook {
        url: url.expect("checked by finish"),
        events: events.expect("checked by finish"),
        secret,
        active: active.unwrap_or(true),
    })
}

pub fn parse_patch(
    body: Map<String, Value>,
    allow_private: bool,
) -> Result<WebhookPatch, AppError> {
    let mut fields = Fields::new(body);
    let url = fields.optional("url", |raw| parse_url(raw, allow_private));
    fields.refuse_null("events");
    let events = fields.optional_list("events", parse_event);
    let events = events.and_then(|events| non_empty(&mut fields, events));
    let secret = fields.optional("secret", parse_secret);
    fields.refuse_null("active");
    let active = fields.optional_bool("active");
    fields.finish()?;
    Ok(WebhookPatch {
        url,
        events,
        secret,
        active,
    })
}

/// The events in the order of `EVENTS`, each once; at least one.
fn non_empty(fields: &mut Fields, events: Vec<String>) -> Option<Vec<String>> {
    let kept: Vec<String> = EVENTS
        .iter()
        .filter(|known| events.iter().any(|event| event == *known))
        .map(|known| known.to_string())
        .collect();
    if kept.is_empty() {
        fields.reject("events", Rule::new("length", "name at least one event"));
        return None;
    }
    Some(kept)
}

fn parse_event(raw: String) -> Result<String, Rule> {
    if EVENTS.contains(&raw.as_str()) {
        Ok(raw)
    } else {
        Err(Rule::new(
            "event",
            format!("every event must be one of {}", EVENTS.join(", ")),
        ))
    }
}

fn parse_url(raw: String, allow_private: bool) -> Result<String, Rule> {
    let invalid = || {
        Rule::new(
            "url",
            format!(
                "value must be an absolute http(s) URL with a host, without user info or spaces, \
                 of at most {URL_MAX_CHARS} characters"
            ),
        )
    };
    if raw.chars().count() > URL_MAX_CHARS || raw.chars().any(|c| c.is_whitespace()) {
        return Err(invalid());
    }
    let url = Url::parse(&raw).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid());
    }
    if !allow_private {
        if let Some(why) = outbound::forbidden_host(&url) {
            return Err(Rule::new(
                "private_address",
                format!("{why}: private, loopback and link-local targets are refused"),
            ));
        }
    }
    Ok(raw)
}

fn parse_secret(raw: String) -> Result<String, Rule> {
    signature::key_of(&raw).map(|_| raw).ok_or_else(|| {
        Rule::new(
            "secret",
            format!(
                "value must be `{SECRET_PREFIX}` followed by the base64 of {} to {} bytes",
                KEY_BYTES.start(),
                KEY_BYTES.end()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_new_webhook_needs_a_url_and_known_events() {
        let hook = parse_new(
            object(json!({"url": "https://hooks.example.com/in", "events": ["user.created", "content.created", "user.created"]})),
            false,
        )
        .unwrap();
        assert_eq!(hook.events, ["content.created", "user.created"]);
        assert!(hook.active);
        assert_eq!(hook.secret, None);
        for bad in [
            json!({"url": "https://hooks.example.com", "events": []}),
            json!({"url": "https://hooks.example.com", "events": ["content.exploded"]}),
            json!({"url": "ftp://hooks.example.com", "events": ["user.created"]}),
            json!({"url": "https://user:pw@hooks.example.com", "events": ["user.created"]}),
            json!({"url": "https://hooks.example.com/a b", "events": ["user.created"]}),
            json!({"url": "http://127.0.0.1:9000/", "events": ["user.created"]}),
            json!({"url": "http://169.254.169.254/latest", "events": ["user.created"]}),
            json!({"url": "http://localhost/", "events": ["user.created"]}),
            json!({"url": "https://hooks.example.com", "events": ["user.created"], "secret": "short"}),
            json!({"url": "https://hooks.example.com", "events": ["user.created"], "active": "yes"}),
            json!({"url": "https://hooks.example.com", "events": ["user.created"], "active": null}),
            json!({"url": "https://hooks.example.com", "events": null}),
        ] {
            assert!(parse_new(object(bad.clone()), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_targets_are_accepted_when_allowed() {
        let hook = parse_new(
            object(json!({"url": "http://127.0.0.1:9000/", "events": ["user.created"]})),
            true,
        )
        .unwrap();
        assert_eq!(hook.url, "http://127.0.0.1:9000/");
    }

    #[test]
    fn a_patch_may_name_any_field() {
        let patch = parse_patch(object(json!({"active": false})), false).unwrap();
        assert_eq!(patch.active, Some(false));
        assert!(patch.url.is_none() && patch.events.is_none() && patch.secret.is_none());
        assert!(parse_patch(object(json!({"events": []})), false).is_err());
        for null in ["url", "events", "secret", "active"] {
            let body = object(json!({ null: Value::Null }));
            assert!(parse_patch(body, false).is_err(), "{null}: null");
        }
    }
}
