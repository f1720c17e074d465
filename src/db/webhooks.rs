//! Webhooks and their deliveries. A delivery row, carrying its event, is
//! written for each subscribed webhook by the `record_webhook_event` trigger
//! in the transaction of the change (migrations `2026-12-07-000001_webhooks`,
//! `2026-12-08-000001_webhook_events_on_deliveries`); this module manages the
//! webhooks, claims due deliveries and records what each attempt gave.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Int4, Json, Nullable, Text, Timestamptz};

use super::schema::{webhook_deliveries, webhooks};
use super::DbError;

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

/// Deletes the webhook and its deliveries.
pub fn delete(conn: &mut PgConnection, id: i64) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id)))
            .execute(conn)?;
        Ok(diesel::delete(webhooks::table.find(id)).execute(conn)? > 0)
    })
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

/// A delivery taken for one attempt, with what sending it needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub webhook_id: i64,
    /// Including this one.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    /// When the event was queued for this webhook: retries stop a day later.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
    #[diesel(sql_type = Text)]
    pub event_id: String,
    #[diesel(sql_type = Text)]
    pub event: String,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Json)]
    pub data: serde_json::Value,
}

/// Claims up to `limit` due deliveries of active webhooks, never more than
/// `per_webhook` in flight for one (`in_flight`: this instance's attempts
/// under way, as webhook ids and counts), never one with an earlier pending
/// delivery of the same subject to the same webhook (asked per candidate,
/// as the first pending one of its subject: one index probe each, whatever
/// the planner's statistics say of the table). A claim counts the
/// attempt and leases the delivery for `lease_seconds`: if this instance
/// dies mid-attempt, any instance retries it then. Rows another instance is
/// claiming are skipped.
pub fn claim(
    conn: &mut PgConnection,
    limit: i64,
    per_webhook: i64,
    in_flight: &InFlight,
    lease_seconds: f64,
) -> Result<Vec<Claimed>, DbError> {
    conn.transaction(|conn| {
        without_waiting_for_the_flush(conn)?;
        claim_due(conn, limit, per_webhook, in_flight, lease_seconds)
    })
}

/// Attempts under way on this instance: webhook ids and their counts.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    pub webhooks: Vec<i64>,
    pub counts: Vec<i64>,
}

/// The sender's own writes (claims, outcomes) do not wait for their WAL to
/// reach the disk: one lost in a crash only makes an attempt happen again,
/// which at-least-once delivery allows; waiting for the flush made every
/// recorded attempt cost what a create's commit costs.
fn without_waiting_for_the_flush(conn: &mut PgConnection) -> Result<(), DbError> {
    diesel::sql_query("SET LOCAL synchronous_commit = off").execute(conn)?;
    Ok(())
}

fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    per_webhook: i64,
    in_flight: &InFlight,
    lease_seconds: f64,
) -> Result<Vec<Claimed>, DbError> {
    Ok(diesel::sql_query(
        "WITH flying AS ( \
             SELECT * FROM unnest($3::int8[], $5::int8[]) AS f (webhook_id, count) \
         ), candidates AS ( \
             SELECT due.id FROM webhooks w \
             LEFT JOIN flying f ON f.webhook_id = w.id \
             CROSS JOIN LATERAL ( \
                 SELECT d.id FROM webhook_deliveries d \
                 WHERE d.webhook_id = w.id AND d.status = 'pending' \
                   AND d.next_attempt_at <= now() \
                   AND (d.leased_until IS NULL OR d.leased_until <= now()) \
                   AND d.id = (SELECT e.id FROM webhook_deliveries e \
                               WHERE e.webhook_id = d.webhook_id AND e.subject = d.subject \
                                 AND e.status = 'pending' ORDER BY e.id LIMIT 1) \
                 ORDER BY d.next_attempt_at, d.id \
                 LIMIT greatest($2 - coalesce(f.count, 0), 0) \
             ) due \
             WHERE w.active \
         ), taken AS ( \
             SELECT d.id FROM webhook_deliveries d JOIN candidates c ON c.id = d.id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= now() \
               AND (d.leased_until IS NULL OR d.leased_until <= now()) \
             ORDER BY d.next_attempt_at, d.id LIMIT $1 \
             FOR UPDATE OF d SKIP LOCKED \
         ) \
         UPDATE webhook_deliveries d \
         SET attempts = d.attempts + 1, leased_until = now() + make_interval(secs => $4) \
         FROM taken, webhooks w \
         WHERE d.id = taken.id AND w.id = d.webhook_id \
         RETURNING d.id, d.webhook_id, d.attempts, d.created_at, w.url, w.secret, \
                   d.event_id, d.event, d.occurred_at, d.data",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(per_webhook)
    .bind::<Array<BigInt>, _>(&in_flight.webhooks)
    .bind::<Double, _>(lease_seconds)
    .bind::<Array<BigInt>, _>(&in_flight.counts)
    .load(conn)?)
}

/// What one attempt gave, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status_code: i32,
    },
    /// Not delivered; tried again at `retry_at`, or never (`None`: failed).
    Missed {
        status_code: Option<i32>,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
    /// `410 Gone`: the webhook is switched off and its pending deliveries fail.
    Gone,
}

/// One attempt's outcome, to be recorded.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub webhook_id: i64,
    pub delivery_id: i64,
    /// Its number: the delivery's `attempts` when it was claimed.
    pub number: i32,
    pub outcome: Outcome,
}

/// Records the outcomes of several attempts in one transaction: deliveries
/// and misses in one statement, each `410 Gone` on its own.
pub fn record_all(conn: &mut PgConnection, attempts: &[Attempt]) -> Result<(), DbError> {
    let (gone, settled): (Vec<&Attempt>, Vec<&Attempt>) = attempts
        .iter()
        .partition(|attempt| attempt.outcome == Outcome::Gone);
    let mut ids = Vec::with_capacity(settled.len());
    let mut numbers = Vec::with_capacity(settled.len());
    let mut statuses = Vec::with_capacity(settled.len());
    let mut codes = Vec::with_capacity(settled.len());
    let mut errors = Vec::with_capacity(settled.len());
    let mut retries = Vec::with_capacity(settled.len());
    for attempt in &settled {
        ids.push(attempt.delivery_id);
        numbers.push(attempt.number);
        match &attempt.outcome {
            Outcome::Delivered { status_code } => {
                statuses.push(DELIVERED);
                codes.push(Some(*status_code));
                errors.push(None);
                retries.push(None);
            }
            Outcome::Missed {
                status_code,
                error,
                retry_at,
            } => {
                statuses.push(if retry_at.is_some() { PENDING } else { FAILED });
                codes.push(*status_code);
                errors.push(Some(error.as_str()));
                retries.push(*retry_at);
            }
            Outcome::Gone => unreachable!("partitioned out"),
        }
    }
    conn.transaction(|conn| {
        without_waiting_for_the_flush(conn)?;
        if !ids.is_empty() {
            diesel::sql_query(
                "UPDATE webhook_deliveries d \
                 SET status = o.status, last_status_code = o.code, last_error = o.error, \
                     next_attempt_at = o.retry_at, leased_until = NULL, \
                     delivered_at = CASE WHEN o.status = 'delivered' THEN now() END \
                 FROM unnest($1::int8[], $2::int4[], $3::text[], $4::int4[], $5::text[], \
                             $6::timestamptz[]) AS o (id, number, status, code, error, retry_at) \
                 WHERE d.id = o.id AND d.attempts = o.number AND d.status = 'pending'",
            )
            .bind::<Array<BigInt>, _>(&ids)
            .bind::<Array<Int4>, _>(&numbers)
            .bind::<Array<Text>, _>(&statuses)
            .bind::<Array<Nullable<Int4>>, _>(&codes)
            .bind::<Array<Nullable<Text>>, _>(&errors)
            .bind::<Array<Nullable<Timestamptz>>, _>(&retries)
            .execute(conn)?;
        }
        for attempt in gone {
            switch_off_for_gone(
                conn,
                attempt.webhook_id,
                attempt.delivery_id,
                attempt.number,
            )?;
        }
        Ok(())
    })
}

/// The receiver answered `410 Gone` to attempt `number`: the webhook is
/// switched off and its pending deliveries fail.
fn switch_off_for_gone(
    conn: &mut PgConnection,
    webhook_id: i64,
    delivery_id: i64,
    number: i32,
) -> Result<(), DbError> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq(delivery_id))
            .filter(webhook_deliveries::attempts.eq(number))
            .filter(webhook_deliveries::status.eq(PENDING)),
    )
    .set(webhook_deliveries::last_status_code.eq(Some(410)))
    .execute(conn)?;
    diesel::update(webhooks::table.find(webhook_id))
        .set((
            webhooks::active.eq(false),
            webhooks::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    fail_pending(
        conn,
        webhook_id,
        "the receiver answered 410 Gone: the webhook was deactivated",
    )
}

fn fail_pending(conn: &mut PgConnection, webhook_id: i64, why: &str) -> Result<(), DbError> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::webhook_id.eq(webhook_id))
            .filter(webhook_deliveries::status.eq(PENDING)),
    )
    .set((
        webhook_deliveries::status.eq(FAILED),
        webhook_deliveries::last_error.eq(Some(why)),
        webhook_deliveries::next_attempt_at.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// When the oldest delivery still pending was queued (`None`: none is).
/// One queued for a webhook deleted meanwhile waits for nobody.
pub fn oldest_pending(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>, DbError> {
    let oldest: Oldest = diesel::sql_query(
        "SELECT min(d.created_at) AS at FROM webhook_deliveries d \
         JOIN webhooks w ON w.id = d.webhook_id WHERE d.status = 'pending'",
    )
    .get_result(conn)?;
    Ok(oldest.at)
}

/// Deletes deliveries settled before `before` and those of deleted
/// webhooks.
pub fn prune(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<usize, DbError> {
    let deliveries = diesel::delete(
        webhook_deliveries::table
            .filter(webhook_deliveries::status.ne(PENDING))
            .filter(webhook_deliveries::created_at.lt(before)),
    )
    .execute(conn)?;
    // Queued by a change that committed while its webhook was deleted.
    diesel::sql_query(
        "DELETE FROM webhook_deliveries d \
         WHERE NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id)",
    )
    .execute(conn)?;
    Ok(deliveries)
}
