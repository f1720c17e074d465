//! Scheduled publishing: every instance runs this loop. It publishes
//! the items whose `publish_at` has come (rows claimed with `FOR UPDATE
//! SKIP LOCKED`, so each item is published by exactly one instance) and
//! invalidates the public reads they now belong to, acknowledged by every
//! instance's L1 like any write. Then it sleeps until the next item is due,
//! at most `POLL`: a schedule set on another instance is seen within it.
//! A schedule set on this one wakes it at once.

use std::time::Duration;

use chrono::Utc;

use super::AppContext;
use crate::cache::outbox::Recorded;
use crate::db;

/// The longest this instance goes without looking for due items.
pub const POLL: Duration = Duration::from_millis(200);

/// After a failed look (PostgreSQL unreachable): try again after this.
const RETRY: Duration = Duration::from_secs(1);

pub async fn run(ctx: actix_web::web::Data<AppContext>) {
    loop {
        let kept = ctx.editorial.revisions_kept;
        let pause = match db::interact(&ctx.pool, move |conn| db::contents::publish_due(conn, kept))
            .await
        {
            Ok((published, next_due)) => {
                if let Some(published) = published {
                    tracing::info!(items = ?published.items, "scheduled items published");
                    let recorded = Recorded {
                        id: published.record,
                        items: published.items,
                    };
                    super::invalidation::complete(&ctx, recorded).await;
                }
                next_due
                    .and_then(|due| (due - Utc::now()).to_std().ok())
                    .map_or(POLL, |until_due| until_due.min(POLL))
            }
            Err(err) => {
                tracing::warn!(error = %err, "looking for scheduled items failed");
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.schedule_changed.notified() => {}
        }
    }
}
