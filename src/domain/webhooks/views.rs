//! What the webhook admin API answers. The secret is shown once, when the
//! webhook is created.

use chrono::{DateTime, Utc};
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
