//! Warm caches (contract §14): after this instance joins (its start, or a
//! rejoin that cleared its L1), after a recovery flush of Redis and after
//! an admin flush (on any instance: every L1 is emptied), it loads what
//! readers ask first — the default listing's first page, the tag counts
//! and the `WARM_ITEMS` most-read items of about the last hour — through
//! the ordinary read path (so every fill keeps its guards), one at a time
//! with a pause between items: a warm-up uses one database connection at
//! most and never delays a request.

use std::time::{Duration, Instant};

use actix_web::web;
use serde_json::Map;

use super::contents::{self, ContentListQuery};
use super::AppContext;

/// Between two item loads: at most about 500 a second.
const PAUSE: Duration = Duration::from_millis(2);
/// A flush empties Redis and announces, and each may ask for a warm-up:
/// those of one moment are served by one warm-up (a later one finds the
/// items in L1 and skips them).
const SETTLE: Duration = Duration::from_millis(50);

/// `WARM_ITEMS=0` turns warm-ups off.
pub async fn run(ctx: web::Data<AppContext>) {
    if ctx.warm_items == 0 {
        return;
    }
    loop {
        ctx.cache.warming_wanted().await;
        tokio::time::sleep(SETTLE).await;
        warm(&ctx).await;
    }
}

async fn warm(ctx: &AppContext) {
    let started = Instant::now();
    if let Ok(default) = ContentListQuery::parse(Map::new()) {
        if let Err(err) = contents::list(ctx, &default, None).await {
            tracing::debug!(error = %err, "warming the default listing failed");
        }
    }
    if let Err(err) = contents::tags(ctx).await {
        tracing::debug!(error = %err, "warming the tag counts failed");
    }
    let hottest = ctx.cache.hottest(ctx.warm_items);
    let mut loaded = 0;
    for id in &hottest {
        match contents::warm_item(ctx, *id).await {
            Ok(()) => loaded += 1,
            Err(err) => tracing::debug!(id, error = %err, "warming an item failed"),
        }
        tokio::time::sleep(PAUSE).await;
    }
    ctx.metrics.warmed(loaded);
    tracing::info!(
        items = loaded,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "caches warmed"
    );
}
