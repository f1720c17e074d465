//! Delivering: claiming due deliveries and recording what each attempt
//! gave. Both run many times a second under load, so each is one prepared
//! statement (a query fragment of its own: Diesel never keeps a
//! `sql_query` prepared, and parsing and planning the claim cost about
//! 0.3 ms of PostgreSQL each time) that also commits without waiting for
//! its WAL to reach the disk.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Double, Int4, Json, Nullable, Text, Timestamptz, Untyped};

use super::super::schema::{webhook_deliveries, webhooks};
use super::super::DbError;
use super::{fail_pending, DELIVERED, FAILED, PENDING};

/// Joined into a writing statement so that its transaction commits without
/// waiting for the flush: a claim or an outcome lost in a crash only makes
/// an attempt happen again, which at-least-once delivery allows, and
/// waiting made every recorded attempt cost what a create's commit costs.
/// `set_config(…, true)` holds for the statement's own (implicit)
/// transaction, unlike `SET LOCAL`, which needs an explicit one.
const WITHOUT_WAITING_FOR_THE_FLUSH: &str =
    "(SELECT set_config('synchronous_commit', 'off', true)) AS without_waiting_for_the_flush";

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
    Ok(ClaimDue {
        limit,
        per_webhook,
        in_flight,
        lease_seconds,
    }
    .load(conn)?)
}

/// Attempts under way on this instance: webhook ids and their counts.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    pub webhooks: Vec<i64>,
    pub counts: Vec<i64>,
}

/// The statement of `claim`. Rows are taken by primary key from id
/// arrays (`= ANY (ARRAY(…))`), not joined: without statistics (a young
/// table, or autovacuum off) the planner chose a hash join over a scan of
/// every delivery, once per claim. For the same reason the re-check of a
/// candidate (made again on the newest version of a row another instance
/// changed meanwhile) reads `status || ''`, which no partial index on
/// `status = 'pending'` can serve: offered one, the generic plan walked
/// every due delivery's bitmap instead of probing the few ids.
struct ClaimDue<'a> {
    limit: i64,
    per_webhook: i64,
    in_flight: &'a InFlight,
    lease_seconds: f64,
}

impl QueryId for ClaimDue<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for ClaimDue<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for ClaimDue<'_> {}

impl QueryFragment<Pg> for ClaimDue<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH flying AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.in_flight.webhooks)?;
        out.push_sql("::int8[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.in_flight.counts)?;
        out.push_sql(
            "::int8[]) AS f (webhook_id, count) \
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
                     LIMIT greatest(",
        );
        out.push_bind_param::<BigInt, _>(&self.per_webhook)?;
        out.push_sql(
            " - coalesce(f.count, 0), 0) \
                 ) due \
                 WHERE w.active \
             ), taken AS ( \
                 SELECT d.id FROM webhook_deliveries d \
                 WHERE d.id = ANY (ARRAY(SELECT id FROM candidates)) \
                   AND d.status || '' = 'pending' AND d.next_attempt_at <= now() \
                   AND (d.leased_until IS NULL OR d.leased_until <= now()) \
                 ORDER BY d.next_attempt_at, d.id LIMIT ",
        );
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(
            " FOR UPDATE OF d SKIP LOCKED \
             ) \
             UPDATE webhook_deliveries d \
             SET attempts = d.attempts + 1, leased_until = now() + make_interval(secs => ",
        );
        out.push_bind_param::<Double, _>(&self.lease_seconds)?;
        out.push_sql(&format!(
            ") FROM webhooks w, {WITHOUT_WAITING_FOR_THE_FLUSH} \
             WHERE d.id = ANY (ARRAY(SELECT id FROM taken)) AND w.id = d.webhook_id \
             RETURNING d.id, d.webhook_id, d.attempts, d.created_at, w.url, w.secret, \
                       d.event_id, d.event, d.occurred_at, d.data"
        ));
        Ok(())
    }
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
    let (gone, mut settled): (Vec<&Attempt>, Vec<&Attempt>) = attempts
        .iter()
        .partition(|attempt| attempt.outcome == Outcome::Gone);
    settled.sort_unstable_by_key(|attempt| attempt.delivery_id);
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
    let outcomes = RecordOutcomes {
        ids,
        numbers,
        statuses,
        codes,
        errors,
        retries,
    };
    if gone.is_empty() {
        if !outcomes.ids.is_empty() {
            outcomes.execute(conn)?;
        }
        return Ok(());
    }
    conn.transaction(|conn| {
        if !outcomes.ids.is_empty() {
            outcomes.execute(conn)?;
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

/// The statement of `record_all` for deliveries and misses: one row per
/// attempt, matched on the attempt's number (an outcome that comes after
/// its lease ran out and another instance claimed it is dropped). The
/// attempts come in id order, so that the rows are locked in that order as
/// the join walks them, like `fail_pending` locks its rows (a batch in the
/// order attempts ended deadlocked with a webhook's deletion under load).
struct RecordOutcomes<'a> {
    ids: Vec<i64>,
    numbers: Vec<i32>,
    statuses: Vec<&'static str>,
    codes: Vec<Option<i32>>,
    errors: Vec<Option<&'a str>>,
    retries: Vec<Option<DateTime<Utc>>>,
}

impl QueryId for RecordOutcomes<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl RunQueryDsl<PgConnection> for RecordOutcomes<'_> {}

impl QueryFragment<Pg> for RecordOutcomes<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "UPDATE webhook_deliveries d \
             SET status = o.status, last_status_code = o.code, last_error = o.error, \
                 next_attempt_at = o.retry_at, leased_until = NULL, \
                 delivered_at = CASE WHEN o.status = 'delivered' THEN now() END \
             FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.ids)?;
        out.push_sql("::int8[], ");
        out.push_bind_param::<Array<Int4>, _>(&self.numbers)?;
        out.push_sql("::int4[], ");
        out.push_bind_param::<Array<Text>, _>(&self.statuses)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Int4>>, _>(&self.codes)?;
        out.push_sql("::int4[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.errors)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.retries)?;
        out.push_sql(&format!(
            "::timestamptz[]) AS o (id, number, status, code, error, retry_at), \
             {WITHOUT_WAITING_FOR_THE_FLUSH} \
             WHERE d.id = o.id AND d.attempts = o.number AND d.status = 'pending'"
        ));
        Ok(())
    }
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

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// When the oldest delivery still pending was queued (`None`: none is).
/// One queued for a webhook deleted meanwhile waits for nobody, and is not
/// read: each webhook's pending deliveries are walked in its own range of
/// `webhook_deliveries_due_idx` (a settled delivery has no next attempt,
/// so it is outside the range too). The aggregate in the lateral keeps the
/// planner from one bitmap scan of every webhook's pending rows.
pub fn oldest_pending(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>, DbError> {
    let oldest: Oldest = diesel::sql_query(
        "SELECT min(p.at) AS at FROM webhooks w CROSS JOIN LATERAL ( \
             SELECT min(d.created_at) AS at FROM webhook_deliveries d \
             WHERE d.webhook_id = w.id AND d.next_attempt_at IS NOT NULL \
               AND d.status = 'pending') p",
    )
    .get_result(conn)?;
    Ok(oldest.at)
}

/// Deletes deliveries settled before `before` and those of deleted
/// webhooks, in one pass over rows no one holds: a row being claimed or
/// recorded waits for the next prune, so pruning never waits on, nor
/// deadlocks with, the delivery loop. Answers how many it deleted.
pub fn prune(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "DELETE FROM webhook_deliveries WHERE id IN ( \
             SELECT d.id FROM webhook_deliveries d \
             WHERE (d.status <> 'pending' AND d.created_at < $1) \
                OR NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id) \
             FOR UPDATE OF d SKIP LOCKED)",
    )
    .bind::<Timestamptz, _>(before)
    .execute(conn)?)
}

/// Fails the deliveries queued before `queued_before` and still pending,
/// appending `why` to their last error: those a resting breaker kept
/// waiting past their day of retries. Rows held by a claim or an outcome
/// are left for the next pass. Answers how many it failed.
pub fn expire(
    conn: &mut PgConnection,
    queued_before: DateTime<Utc>,
    why: &str,
) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "UPDATE webhook_deliveries \
         SET status = 'failed', next_attempt_at = NULL, leased_until = NULL, \
             last_error = coalesce(last_error || ' (' || $2 || ')', 'not attempted: ' || $2) \
         WHERE id = ANY (ARRAY( \
             SELECT id FROM webhook_deliveries \
             WHERE status = 'pending' AND created_at < $1 \
               AND (leased_until IS NULL OR leased_until <= now()) \
             ORDER BY id FOR UPDATE SKIP LOCKED))",
    )
    .bind::<Timestamptz, _>(queued_before)
    .bind::<Text, _>(why)
    .execute(conn)?)
}
