//! Webhooks and their deliveries. A delivery row, carrying its event, is
//! written for each subscribed webhook by the `record_webhook_event` trigger
//! in the transaction of the change (migrations `2026-12-07-000001_webhooks`
//! to `2026-12-09-000001_lean_webhook_event_trigger`). This module manages
//! the webhooks and lists their deliveries; `delivery` claims due
//! deliveries and records what each attempt gave.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};

use super::schema::{webhook_deliveries, webhooks};
use super::DbError;

mod delivery;
pub use delivery::{
    claim, expire, oldest_pending, prune, record_all, Attempt, Claimed, InFlight, Outcome,
};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhooks, check_for_backend(diesel::pg::Pg))]
pub struct WebhookRow {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = webhooks)]
pub struct NewWebhookRow {
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub active: bool,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = webhooks)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    pub active: Option<bool>,
}

impl WebhookChanges {
    pub fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.events.is_none()
            && self.secret.is_none()
            && self.active.is_none()
    }
}

/// A delivery as the admin API shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub event: String,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `now()` where a column is nullable.
fn now_or_null() -> diesel::expression::SqlLiteral<Nullable<Timestamptz>> {
    diesel::dsl::sql("now()")
}

pub fn insert(conn: &mut PgConnection, row: &NewWebhookRow) -> Result<WebhookRow, DbError> {
    Ok(diesel::insert_into(webhooks::table)
        .values(row)
        .returning(WebhookRow::as_returning())
        .get_result(conn)?)
}

/// Every webhook, newest first.
pub fn all(conn: &mut PgConnection) -> Result<Vec<WebhookRow>, DbError> {
    Ok(webhooks::table
        .select(WebhookRow::as_select())
        .order(webhooks::id.desc())
        .load(conn)?)
}

pub fn find(conn: &mut PgConnection, id: i64) -> Result<Option<WebhookRow>, DbError> {
    Ok(webhooks::table
        .find(id)
        .select(WebhookRow::as_select())
        .first(conn)
        .optional()?)
}

/// Applies `changes`; a webhook switched off fails its pending deliveries
/// (it is sent nothing while off, and is sent only new events once on).
/// Call inside a transaction.
pub fn update(
    conn: &mut PgConnection,
    id: i64,
    changes: &WebhookChanges,
) -> Result<Option<WebhookRow>, DbError> {
    let updated = diesel::update(webhooks::table.find(id))
        .set((changes, webhooks::updated_at.eq(diesel::dsl::now)))
        .returning(WebhookRow::as_returning())
        .get_result(conn)
        .optional()?;
    if changes.active == Some(false) && updated.is_some() {
        fail_pending(conn, id, "the webhook was deactivated")?;
    }
    Ok(updated)
}

/// Deletes the webhook. Its deliveries are never claimed again (a claim
/// takes active webhooks' only) and go with the next `prune`: deleting
/// them here made the request as long as the webhook's history, and,
/// locking them in table order while outcomes were being recorded in id
/// order, deadlocked under load.
pub fn delete(conn: &mut PgConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(webhooks::table.find(id)).execute(conn)? > 0)
}

/// One keyset page of a webhook's deliveries, newest first.
pub fn deliveries_before(
    conn: &mut PgConnection,
    webhook_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .select(DeliveryRow::as_select())
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before_id) = before_id {
        query = query.filter(webhook_deliveries::id.lt(before_id));
    }
    Ok(query.load(conn)?)
}

/// Queues the event of a webhook's delivery once more, as a new delivery
/// of the same event (same `Webhook-Id`), due now. `None`: no such
/// delivery of this webhook.
pub fn redeliver(
    conn: &mut PgConnection,
    webhook_id: i64,
    delivery_id: i64,
) -> Result<Option<DeliveryRow>, DbError> {
    Ok(diesel::insert_into(webhook_deliveries::table)
        .values(
            webhook_deliveries::table
                .filter(webhook_deliveries::id.eq(delivery_id))
                .filter(webhook_deliveries::webhook_id.eq(webhook_id))
                .select((
                    webhook_deliveries::webhook_id,
                    webhook_deliveries::event_id,
                    webhook_deliveries::event,
                    webhook_deliveries::occurred_at,
                    webhook_deliveries::data,
                    webhook_deliveries::subject,
                    now_or_null(),
                )),
        )
        .into_columns((
            webhook_deliveries::webhook_id,
            webhook_deliveries::event_id,
            webhook_deliveries::event,
            webhook_deliveries::occurred_at,
            webhook_deliveries::data,
            webhook_deliveries::subject,
            webhook_deliveries::next_attempt_at,
        ))
        .returning(DeliveryRow::as_returning())
        .get_result(conn)
        .optional()?)
}

/// Every pending delivery of the webhook fails, with `why` as its error.
/// The rows are locked in id order first, as recorded outcomes lock theirs
/// (`delivery::record_all`): two writers of several deliveries never wait
/// on each other in a circle.
pub(super) fn fail_pending(
    conn: &mut PgConnection,
    webhook_id: i64,
    why: &str,
) -> Result<(), DbError> {
    diesel::sql_query(
        "UPDATE webhook_deliveries \
         SET status = 'failed', last_error = $2, next_attempt_at = NULL \
         WHERE id = ANY (ARRAY(SELECT id FROM webhook_deliveries \
                               WHERE webhook_id = $1 AND status = 'pending' \
                               ORDER BY id FOR UPDATE)) \
           AND status = 'pending'",
    )
    .bind::<BigInt, _>(webhook_id)
    .bind::<Text, _>(why)
    .execute(conn)?;
    Ok(())
}
