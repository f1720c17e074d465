//! No lost invalidation: every write records what it invalidates in its own
//! transaction (`cache_outbox`, inserted by `db::outbox`). The writer
//! completes its record after the commit (Redis deletes, announcement,
//! acknowledgements) and then deletes it; every instance completes records
//! older than `DUE_AFTER` whose writer died or lost its connections, so a
//! write answered by nobody still reaches every cache within about two
//! seconds of its commit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::coherence::Coherence;
use super::Cache;

/// A record's age before any instance completes it.
pub const DUE_AFTER: Duration = Duration::from_millis(1000);
/// How often each instance looks for due records.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long a claimed record is left to its claimer before another instance
/// may complete it again.
const CLAIM_FOR: Duration = Duration::from_secs(5);

/// The outbox record of a committed write: what it invalidates.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: i64,
    pub items: Vec<i64>,
}

/// Claims due records (`FOR UPDATE SKIP LOCKED`: each goes to one instance
/// at a time), completes them as one invalidation and deletes them.
pub async fn sweep(cache: Cache) {
    const CLAIM: &str = "UPDATE cache_outbox \
         SET claimed_until = clock_timestamp() + $2::float8 * interval '1 millisecond' \
         WHERE id IN (SELECT id FROM cache_outbox \
             WHERE created_at < clock_timestamp() - $1::float8 * interval '1 millisecond' \
               AND claimed_until < clock_timestamp() \
             ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED) \
         RETURNING id, items";
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(client) = cache.coherence.client() else {
            continue;
        };
        let due_ms = DUE_AFTER.as_millis() as f64;
        let claim_ms = CLAIM_FOR.as_millis() as f64;
        let rows = match tokio::time::timeout(CLAIM_FOR, client.query(CLAIM, &[&due_ms, &claim_ms]))
            .await
        {
            Ok(Ok(rows)) => rows,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "looking for due invalidations failed");
                continue;
            }
            Err(_) => continue,
        };
        if rows.is_empty() {
            continue;
        }
        let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let mut items: Vec<i64> = rows
            .iter()
            .flat_map(|row| row.get::<_, Option<Vec<i64>>>(1).unwrap_or_default())
            .collect();
        items.sort_unstable();
        items.dedup();
        tracing::warn!(
            records = ids.len(),
            "completing invalidations whose writer did not"
        );
        cache.invalidate_everywhere(Some(&items), false).await;
        for id in ids {
            cache.forget(id);
        }
    }
}

/// Deletes completed records, batched: every id sent while one delete runs
/// goes into the next. On the listening session, whose commits do not wait
/// for the WAL flush (a record lost in a crash is completed again by the
/// sweep: harmless, an invalidation is idempotent).
pub async fn forget_completed(coherence: Arc<Coherence>, mut completed: UnboundedReceiver<i64>) {
    const FORGET: &str = "DELETE FROM cache_outbox WHERE id = ANY($1)";
    while let Some(first) = completed.recv().await {
        let mut ids = vec![first];
        while let Ok(id) = completed.try_recv() {
            ids.push(id);
        }
        let Some(client) = coherence.client() else {
            continue;
        };
        let forgotten = async {
            let statement = client.prepared(FORGET).await?;
            client.execute(&statement, &[&ids]).await
        };
        if let Err(err) = forgotten.await {
            tracing::debug!(error = %err, "deleting completed invalidations failed");
        }
    }
}
