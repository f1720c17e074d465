//! Webhooks (contract §15): the admin API here; events are recorded by a
//! trigger in the transaction of their change (`db::webhooks`), and every
//! instance delivers them (`dispatch`).

pub(crate) mod breaker;
pub mod dispatch;
pub mod input;
pub mod signature;
pub mod views;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value};

use super::auth::Principal;
use super::pagination::{self, BeforeQuery};
use super::users::Page;
use super::{AppContext, AppError};
use crate::db::{self, webhooks::NewWebhookRow, webhooks::WebhookChanges};
use crate::outbound::Sender;
use breaker::Breakers;
use input::{NewWebhook, WebhookPatch};
use views::{CreatedWebhook, Webhook, WebhookDelivery};

/// What deliveries need, built once at startup.
pub struct WebhookSettings {
    pub sender: Sender,
    /// The first retry's delay, doubled for each next one
    /// (`WEBHOOK_RETRY_BASE_MS`, default 5 s).
    pub retry_base: Duration,
    /// This instance's breakers: the delivery loop's, closed here too when
    /// an admin changes a webhook.
    pub(crate) breakers: Mutex<Breakers>,
}

pub fn admin_only(caller: Principal) -> Result<(), AppError> {
    caller.require_session()?;
    if caller.is_admin() {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only admins may manage webhooks".into(),
        ))
    }
}

fn not_found(id: i64) -> AppError {
    AppError::NotFound(format!("Webhook with id {id} not found"))
}

pub fn parse_new(ctx: &AppContext, body: Map<String, Value>) -> Result<NewWebhook, AppError> {
    input::parse_new(body, ctx.webhooks.sender.allows_private())
}

pub fn parse_patch(ctx: &AppContext, body: Map<String, Value>) -> Result<WebhookPatch, AppError> {
    input::parse_patch(body, ctx.webhooks.sender.allows_private())
}

pub async fn create(
    ctx: &AppContext,
    caller: Principal,
    input: NewWebhook,
) -> Result<CreatedWebhook, AppError> {
    admin_only(caller)?;
    let row = NewWebhookRow {
        url: input.url,
        events: input.events,
        secret: input.secret.unwrap_or_else(signature::generate_secret),
        active: input.active,
    };
    let created = db::interact(&ctx.pool, move |conn| db::webhooks::insert(conn, &row)).await?;
    let secret = created.secret.clone();
    Ok(CreatedWebhook {
        webhook: created.into(),
        secret,
    })
}

pub async fn list(ctx: &AppContext, caller: Principal) -> Result<Vec<Webhook>, AppError> {
    admin_only(caller)?;
    let rows = db::interact(&ctx.pool, db::webhooks::all).await?;
    Ok(rows.into_iter().map(Webhook::from).collect())
}

pub async fn get(ctx: &AppContext, caller: Principal, id: i64) -> Result<Webhook, AppError> {
    admin_only(caller)?;
    db::interact(&ctx.pool, move |conn| db::webhooks::find(conn, id))
        .await?
        .map(Webhook::from)
        .ok_or_else(|| not_found(id))
}

pub async fn update(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    patch: WebhookPatch,
) -> Result<Webhook, AppError> {
    admin_only(caller)?;
    let changes = WebhookChanges {
        url: patch.url,
        events: patch.events,
        secret: patch.secret,
        active: patch.active,
    };
    let updated = db::interact(&ctx.pool, move |conn| {
        use diesel::Connection;
        if changes.is_empty() {
            return db::webhooks::find(conn, id);
        }
        conn.transaction(|conn| db::webhooks::update(conn, id, &changes))
    })
    .await?;
    let updated = updated.map(Webhook::from).ok_or_else(|| not_found(id))?;
    // Changed (a new URL, say): its deliveries are tried again at once
    // here, not after the rest its breaker took; other instances' breakers
    // rest at most 15 s.
    close_breaker(ctx, id);
    Ok(updated)
}

/// This instance's delivery loop tries the webhook's due deliveries now.
fn close_breaker(ctx: &AppContext, webhook_id: i64) {
    ctx.webhooks
        .breakers
        .lock()
        .expect("breakers lock")
        .close(webhook_id);
    ctx.webhook_due.notify_one();
}

pub async fn delete(ctx: &AppContext, caller: Principal, id: i64) -> Result<(), AppError> {
    admin_only(caller)?;
    if db::interact(&ctx.pool, move |conn| db::webhooks::delete(conn, id)).await? {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

/// A webhook's deliveries, newest first.
pub async fn deliveries(
    ctx: &AppContext,
    caller: Principal,
    webhook_id: i64,
    query: BeforeQuery,
) -> Result<Page<WebhookDelivery>, AppError> {
    admin_only(caller)?;
    let BeforeQuery { before, limit } = query;
    let rows = db::interact(&ctx.pool, move |conn| {
        if db::webhooks::find(conn, webhook_id)?.is_none() {
            return Ok(None);
        }
        db::webhooks::deliveries_before(conn, webhook_id, before, limit + 1).map(Some)
    })
    .await?
    .ok_or_else(|| not_found(webhook_id))?;
    Ok(Page::of(
        rows,
        limit,
        |last| pagination::encode_id_cursor(last.id),
        WebhookDelivery::from,
    ))
}

/// Sends a delivery's event again, as a new delivery with the same event
/// id. The webhook must be active (an inactive one is sent nothing).
pub async fn redeliver(
    ctx: &AppContext,
    caller: Principal,
    webhook_id: i64,
    delivery_id: i64,
) -> Result<WebhookDelivery, AppError> {
    admin_only(caller)?;
    let queued = db::interact(&ctx.pool, move |conn| {
        let Some(webhook) = db::webhooks::find(conn, webhook_id)? else {
            return Ok(Err(not_found(webhook_id)));
        };
        if !webhook.active {
            return Ok(Err(AppError::Conflict(format!(
                "Webhook with id {webhook_id} is not active"
            ))));
        }
        Ok(
            db::webhooks::redeliver(conn, webhook_id, delivery_id)?.ok_or_else(|| {
                AppError::NotFound(format!(
                    "Delivery with id {delivery_id} of webhook {webhook_id} not found"
                ))
            }),
        )
    })
    .await??;
    // Asked for by hand: sent now, not after a rest its breaker took.
    close_breaker(ctx, webhook_id);
    Ok(queued.into())
}
