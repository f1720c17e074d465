//! What the webhook admin API answers. The secret is shown once, when the
//! webhook is created.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::webhooks::{DeliveryRow, WebhookRow};
use crate::domain::views::{optional_timestamp, timestamp};

#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    /// The events it is sent.
    pub events: Vec<String>,
    /// Off: it is sent nothing (a `410 Gone` answer turns it off).
    pub active: bool,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookRow> for Webhook {
    fn from(row: WebhookRow) -> Self {
        Self {
            id: row.id,
            url: row.url,
            events: row.events,
            active: row.active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A new webhook, with its signing secret: shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` + base64 of the HMAC-SHA256 key (Standard Webhooks).
    pub secret: String,
}

/// How delivering one event to one webhook is going.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    /// The event's id: the `Webhook-Id` header and the body's `id`, the same
    /// on every attempt and redelivery.
    pub event_id: String,
    /// `content.created`, `content.updated`, `content.published`,
    /// `content.unpublished`, `content.deleted`, `user.created` or
    /// `user.deleted`.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// The receiver's status of the last attempt; `null` without an answer.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed; `null` once delivered.
    pub last_error: Option<String>,
    /// When it is next tried (pending only).
    #[serde(serialize_with = "optional_timestamp")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "optional_timestamp")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(row: DeliveryRow) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            event: row.event,
            status: row.status,
            attempts: row.attempts,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
        }
    }
}

/// The timestamps of an event's data, as the API writes them (UTC, six
/// fractional digits). PostgreSQL records them in its own JSON form (ISO
/// 8601 with the session's offset, trailing zero digits dropped): formatting
/// them there cost every change a webhook takes, and a change waits for it.
pub fn event_data_in_api_format(data: &mut serde_json::Value) {
    const STAMPED: [&str; 4] = ["created_at", "updated_at", "publish_at", "published_at"];
    let Some(fields) = data.as_object_mut() else {
        return;
    };
    for name in STAMPED {
        if let Some(value) = fields.get_mut(name) {
            in_api_format(value);
        }
    }
    if let Some(author) = fields.get_mut("user").and_then(|user| user.as_object_mut()) {
        if let Some(value) = author.get_mut("created_at") {
            in_api_format(value);
        }
    }
}

/// A string that is not a timestamp (or already in the API's form, as
/// events recorded before this was moved here are) is left as it is.
fn in_api_format(value: &mut serde_json::Value) {
    let Some(at) = value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
    else {
        return;
    };
    *value = serde_json::Value::String(
        at.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Micros, true),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::event_data_in_api_format;

    #[test]
    fn event_timestamps_are_written_in_utc_with_six_digits_whatever_postgresql_wrote() {
        let mut data = json!({
            "id": 7,
            "title": "2026-12-06T10:00:00+00:00",
            "created_at": "2026-12-06T10:00:00.5+00:00",
            "updated_at": "2026-12-06T11:30:00.123456+01:30",
            "publish_at": null,
            "published_at": "2026-12-06T10:00:00.123456Z",
            "user": {"id": 3, "created_at": "2026-12-01T00:00:00-05:00"},
        });
        event_data_in_api_format(&mut data);
        assert_eq!(
            data,
            json!({
                "id": 7,
                "title": "2026-12-06T10:00:00+00:00",
                "created_at": "2026-12-06T10:00:00.500000Z",
                "updated_at": "2026-12-06T10:00:00.123456Z",
                "publish_at": null,
                "published_at": "2026-12-06T10:00:00.123456Z",
                "user": {"id": 3, "created_at": "2026-12-01T05:00:00.000000Z"},
            })
        );
    }

    #[test]
    fn data_that_is_not_an_object_is_left_alone() {
        let mut data = json!(["2026-12-06T10:00:00+00:00"]);
        event_data_in_api_format(&mut data);
        assert_eq!(data, json!(["2026-12-06T10:00:00+00:00"]));
    }
}
