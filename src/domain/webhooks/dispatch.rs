//! Webhook delivery: every instance runs this loop. It claims due
//! deliveries (`FOR UPDATE SKIP LOCKED`, each claim leasing the attempt for
//! `LEASE`), sends each on a task of its own, and records what the receiver
//! answered:
//!
//! * 2xx: `delivered`.
//! * `410 Gone`: the webhook is switched off, its pending deliveries fail.
//! * anything else, no answer within 10 s, or a refused address: tried
//!   again after 5 s (`WEBHOOK_RETRY_BASE_MS`), doubling each time with
//!   ±20 % jitter, at most an hour apart, until a day after the event was
//!   queued; then `failed`.
//!
//! An instance that dies mid-attempt leaves the delivery leased: any
//! instance tries it again once the lease ends (at least once, with the
//! same `Webhook-Id`). A slow or dead receiver holds only its own
//! webhook's slots (`PER_WEBHOOK`), never a request or another webhook,
//! and once it missed several attempts in a row its webhook's breaker
//! (`breaker`) keeps its deliveries waiting but for a probe now and then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

use super::breaker::Breakers;
use super::signature;
use super::views::event_data_in_api_format;
use crate::db::{self, webhooks::Claimed, webhooks::Outcome};
use crate::domain::AppContext;
use crate::outbound::TIMEOUT;

/// The longest a due delivery waits to be noticed.
const POLL: Duration = Duration::from_millis(250);
/// After a failed claim (PostgreSQL unreachable): try again after this.
const RETRY_CLAIM: Duration = Duration::from_secs(1);
/// An attempt's lease: past the receiver's timeout, so that a live sender
/// always records its attempt before another instance may take it over.
const LEASE: Duration = Duration::from_secs(TIMEOUT.as_secs() + 5);
/// Attempts in flight on one instance, and of them for one webhook.
const IN_FLIGHT: usize = 128;
const PER_WEBHOOK: usize = 32;
const LONGEST_GAP: Duration = Duration::from_secs(3600);
const RETRY_FOR: chrono::Duration = chrono::Duration::hours(24);
/// Settled deliveries are kept this long.
const KEEP_SETTLED: chrono::Duration = chrono::Duration::days(30);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often `webhook_outbox_lag_seconds` is read from PostgreSQL (the
/// loop itself turns as often as attempts end): the reading looks at every
/// pending delivery of every webhook, which under a backlog cost a few
/// percent of a create when it was read twice a second. A reading that
/// took longer spaces the next by `LAG_SPACING` times as long (a dead
/// receiver's backlog of 266 000 deliveries took 0.23 s to read): at most
/// 2 % of one core whatever the backlog.
const LAG_EVERY: Duration = Duration::from_secs(2);
const LAG_SPACING: u32 = 50;

/// Attempts in flight on this instance, by webhook.
type InFlight = Arc<Mutex<HashMap<i64, usize>>>;

/// Outcomes recorded together, at most this many per transaction.
const RECORD_BATCH: usize = 256;

pub async fn run(ctx: actix_web::web::Data<AppContext>) {
    let in_flight: InFlight = Arc::default();
    let finished = Arc::new(tokio::sync::Notify::new());
    let (attempted, outcomes) = mpsc::unbounded_channel();
    let _recorder = AbortOnDrop(tokio::spawn(record_outcomes(ctx.clone(), outcomes)));
    let mut pruned_at = tokio::time::Instant::now();
    let mut report_at = pruned_at;
    loop {
        let (flying, free) = {
            let in_flight = in_flight.lock().expect("in-flight lock");
            let taken = ctx
                .webhooks
                .breakers
                .lock()
                .expect("breakers lock")
                .slots_taken(&in_flight, PER_WEBHOOK, tokio::time::Instant::now());
            let flying = db::webhooks::InFlight {
                webhooks: taken.keys().copied().collect(),
                counts: taken.values().map(|count| *count as i64).collect(),
            };
            (flying, IN_FLIGHT.saturating_sub(in_flight.values().sum()))
        };
        let mut pause = POLL;
        if free > 0 {
            let claimed = db::interact(&ctx.pool, move |conn| {
                db::webhooks::claim(
                    conn,
                    free as i64,
                    PER_WEBHOOK as i64,
                    &flying,
                    LEASE.as_secs_f64(),
                )
            })
            .await;
            match claimed {
                Ok(claimed) => {
                    if claimed.len() == free {
                        pause = Duration::ZERO;
                    }
                    for delivery in claimed {
                        *in_flight
                            .lock()
                            .expect("in-flight lock")
                            .entry(delivery.webhook_id)
                            .or_default() += 1;
                        let slot = Slot {
                            webhook_id: delivery.webhook_id,
                            in_flight: in_flight.clone(),
                            finished: finished.clone(),
                        };
                        tokio::spawn(attempt(ctx.clone(), delivery, slot, attempted.clone()));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "claiming webhook deliveries failed");
                    pause = RETRY_CLAIM;
                }
            }
        }
        if tokio::time::Instant::now() >= report_at {
            let started = tokio::time::Instant::now();
            report_lag(&ctx).await;
            report_at = started + LAG_EVERY.max(started.elapsed() * LAG_SPACING);
        }
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = tokio::time::Instant::now();
            ctx.webhooks
                .breakers
                .lock()
                .expect("breakers lock")
                .forget_quiet(pruned_at);
            prune_and_expire(&ctx).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.webhook_due.notified() => {}
            _ = finished.notified() => {}
        }
    }
}

/// Deletes what is settled and old, and fails what waited a day untried
/// (a resting breaker's deliveries are attempted only when it probes).
async fn prune_and_expire(ctx: &AppContext) {
    let now = Utc::now();
    let (before, queued_before) = (now - KEEP_SETTLED, now - RETRY_FOR);
    if let Err(err) = db::interact(&ctx.pool, move |conn| {
        db::webhooks::prune(conn, before)?;
        db::webhooks::expire(conn, queued_before, EXPIRED)
    })
    .await
    {
        tracing::warn!(error = %err, "pruning webhook deliveries failed");
    }
}

/// Appended to a delivery's error when its retries end.
const EXPIRED: &str = "retries ended a day after the event";

/// The recorder ends with the loop that feeds it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An attempt made, holding its slot until its outcome is recorded: the
/// next delivery of its subject is claimed only after that.
struct Attempted {
    attempt: db::webhooks::Attempt,
    _slot: Slot,
}

/// Records outcomes as they come, all those waiting in one transaction.
async fn record_outcomes(
    ctx: actix_web::web::Data<AppContext>,
    mut outcomes: mpsc::UnboundedReceiver<Attempted>,
) {
    while let Some(first) = outcomes.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match outcomes.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let attempts: Vec<db::webhooks::Attempt> =
            batch.iter().map(|done| done.attempt.clone()).collect();
        if let Err(err) = db::interact(&ctx.pool, move |conn| {
            db::webhooks::record_all(conn, &attempts)
        })
        .await
        {
            // Their leases run out and the attempts are made again.
            tracing::warn!(error = %err, attempts = batch.len(), "recording webhook attempts failed");
        }
    }
}

async fn report_lag(ctx: &AppContext) {
    if let Ok(oldest) = db::interact(&ctx.pool, db::webhooks::oldest_pending).await {
        let lag = oldest.map_or(0.0, |at| {
            (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        ctx.metrics.webhook_lag(lag);
    }
}

/// A place among the attempts in flight, given back when dropped.
struct Slot {
    webhook_id: i64,
    in_flight: InFlight,
    finished: Arc<tokio::sync::Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        if let Some(count) = in_flight.get_mut(&self.webhook_id) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.webhook_id);
            }
        }
        // The next delivery of the same subject may be due now.
        self.finished.notify_one();
    }
}

/// The body of every attempt of an event.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    event: &'a str,
    occurred_at: String,
    data: &'a serde_json::Value,
}

async fn attempt(
    ctx: actix_web::web::Data<AppContext>,
    mut delivery: Claimed,
    slot: Slot,
    recorder: mpsc::UnboundedSender<Attempted>,
) {
    event_data_in_api_format(&mut delivery.data);
    let body = serde_json::to_vec(&Envelope {
        id: &delivery.event_id,
        event: &delivery.event,
        occurred_at: delivery
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        data: &delivery.data,
    })
    .expect("an event serialises");
    let answer = match signature::key_of(&delivery.secret) {
        Some(key) => {
            let timestamp = Utc::now().timestamp();
            let headers = [
                ("webhook-id", delivery.event_id.clone()),
                ("webhook-timestamp", timestamp.to_string()),
                (
                    "webhook-signature",
                    signature::sign(&key, &delivery.event_id, timestamp, &body),
                ),
            ];
            ctx.webhooks
                .sender
                .post(&delivery.url, &headers, body)
                .await
        }
        None => Err("the webhook's secret is not a valid signing secret".to_owned()),
    };
    let outcome = outcome_of(
        answer,
        delivery.attempts,
        delivery.created_at,
        ctx.webhooks.retry_base,
    );
    note_in_breaker(
        &ctx.webhooks.breakers,
        delivery.webhook_id,
        &outcome,
        ctx.webhooks.retry_base,
    );
    ctx.metrics.webhook_attempt(match &outcome {
        Outcome::Delivered { .. } => "delivered",
        Outcome::Gone => "gone",
        Outcome::Missed {
            retry_at: Some(_), ..
        } => "retry",
        Outcome::Missed { retry_at: None, .. } => "failed",
    });
    let attempt = db::webhooks::Attempt {
        webhook_id: delivery.webhook_id,
        delivery_id: delivery.id,
        number: delivery.attempts,
        outcome,
    };
    // Closed only when the loop is gone, and the lease covers that.
    let _ = recorder.send(Attempted {
        attempt,
        _slot: slot,
    });
}

fn note_in_breaker(breakers: &Mutex<Breakers>, webhook_id: i64, outcome: &Outcome, base: Duration) {
    let mut breakers = breakers.lock().expect("breakers lock");
    match outcome {
        Outcome::Delivered { .. } | Outcome::Gone => breakers.close(webhook_id),
        Outcome::Missed { error, .. } => {
            if let Some(rest) = breakers.missed(webhook_id, base, tokio::time::Instant::now()) {
                tracing::warn!(
                    webhook_id,
                    last_error = %error,
                    rest_ms = rest.as_millis() as u64,
                    "a webhook's receiver keeps failing: its deliveries wait for a probe"
                );
            }
        }
    }
}

fn outcome_of(
    answer: crate::outbound::Answer,
    attempts: i32,
    queued_at: DateTime<Utc>,
    retry_base: Duration,
) -> Outcome {
    let (status_code, error) = match answer {
        Ok(status) if (200..300).contains(&status) => {
            return Outcome::Delivered {
                status_code: i32::from(status),
            }
        }
        Ok(410) => return Outcome::Gone,
        Ok(status) if (300..400).contains(&status) => (
            Some(i32::from(status)),
            format!("the receiver answered {status}: redirects are not followed"),
        ),
        Ok(status) => (
            Some(i32::from(status)),
            format!("the receiver answered {status}"),
        ),
        Err(error) => (None, error),
    };
    let retry_at = Utc::now()
        + chrono::Duration::from_std(retry_delay(attempts, retry_base, OsRng.next_u32()))
            .unwrap_or(chrono::Duration::MAX);
    if retry_at > queued_at + RETRY_FOR {
        return Outcome::Missed {
            status_code,
            error: format!("{error} ({EXPIRED})"),
            retry_at: None,
        };
    }
    Outcome::Missed {
        status_code,
        error,
        retry_at: Some(retry_at),
    }
}

/// The wait after attempt number `attempts` failed: the base, doubled for
/// each earlier attempt, at most an hour, then ±20 % (`random` spread
/// evenly over that range).
fn retry_delay(attempts: i32, base: Duration, random: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let gap = base.saturating_mul(1 << doublings).min(LONGEST_GAP);
    let factor = 0.8 + 0.4 * (f64::from(random) / f64::from(u32::MAX));
    gap.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_base_with_jitter_up_to_an_hour() {
        let base = Duration::from_secs(5);
        let middle = u32::MAX / 2;
        let around = |attempts, random| retry_delay(attempts, base, random).as_secs_f64();
        assert!((around(1, middle) - 5.0).abs() < 0.01);
        assert!((around(2, middle) - 10.0).abs() < 0.01);
        assert!((around(3, middle) - 20.0).abs() < 0.01);
        assert!((around(20, middle) - 3600.0).abs() < 1.0);
        assert!((around(1, 0) - 4.0).abs() < 0.01);
        assert!((around(1, u32::MAX) - 6.0).abs() < 0.01);
        assert!(LEASE > TIMEOUT);
    }

    #[test]
    fn answers_decide_the_outcome() {
        let base = Duration::from_secs(5);
        let now = Utc::now();
        assert_eq!(
            outcome_of(Ok(204), 1, now, base),
            Outcome::Delivered { status_code: 204 }
        );
        assert_eq!(outcome_of(Ok(410), 1, now, base), Outcome::Gone);
        let Outcome::Missed {
            status_code,
            retry_at: Some(retry_at),
            ..
        } = outcome_of(Ok(500), 1, now, base)
        else {
            panic!("a 500 is retried");
        };
        assert_eq!(status_code, Some(500));
        assert!(retry_at > now + chrono::Duration::seconds(3));
        let Outcome::Missed {
            error, retry_at, ..
        } = outcome_of(Ok(302), 1, now, base)
        else {
            panic!("a redirect is a miss");
        };
        assert!(error.contains("redirects are not followed") && retry_at.is_some());
        assert!(matches!(
            outcome_of(
                Err("refused".into()),
                9,
                now - chrono::Duration::hours(24),
                base
            ),
            Outcome::Missed { retry_at: None, .. }
        ));
    }
}
