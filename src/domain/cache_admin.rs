//! Cache administration: what each layer holds, and a flush of every
//! layer of every live instance. Admins only.

use super::auth::Principal;
use super::views::{CacheOverview, L1Layer, LayerCounts, LayerUsage, LiveInstance, RedisLayer};
use super::{AppContext, AppError};
use crate::cache::Usage;

fn admin(caller: Principal) -> Result<(), AppError> {
    caller.require_session()?;
    if caller.is_admin() {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only an admin may manage the cache".into(),
        ))
    }
}

fn usage(usage: Usage) -> LayerUsage {
    LayerUsage {
        entries: usage.entries,
        bytes: usage.bytes,
    }
}

fn counts(ctx: &AppContext, layer: &str) -> LayerCounts {
    let counts = ctx.metrics.layer_counts(layer);
    LayerCounts {
        hits: counts.hits,
        misses: counts.misses,
        errors: counts.errors,
    }
}

pub async fn overview(ctx: &AppContext, caller: Principal) -> Result<CacheOverview, AppError> {
    admin(caller)?;
    let cache = &ctx.cache;
    let l1 = cache.l1_state_details().map(|state| L1Layer {
        instance: state.instance,
        serving: state.serving,
        lease_remaining_ms: state.lease_remaining.as_millis() as u64,
        items: usage(state.items),
        listings: usage(state.listings),
        counts: counts(ctx, "l1"),
    });
    let state = cache.health().name();
    let redis = RedisLayer {
        state,
        usage: cache.redis_usage().await.map(usage),
        counts: counts(ctx, "redis"),
    };
    let live_instances = cache
        .live_instances()
        .await
        .into_iter()
        .map(|(instance, lease_expires_at_ms)| LiveInstance {
            instance,
            lease_expires_at_ms,
        })
        .collect();
    Ok(CacheOverview {
        l1,
        redis,
        live_instances,
    })
}

/// Returns once Redis holds none of the service's keys and every live
/// instance has emptied its L1; 503 if Redis could not be flushed.
pub async fn flush(ctx: &AppContext, caller: Principal) -> Result<(), AppError> {
    admin(caller)?;
    ctx.cache.flush().await.map_err(|err| {
        tracing::warn!(error = %err, "cache flush failed");
        AppError::CacheUnavailable
    })
}
