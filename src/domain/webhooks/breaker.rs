//! A circuit breaker per webhook, on each instance: a receiver that missed
//! `TRIP_AFTER` attempts in a row (any delivery of its webhook) is left
//! alone for a rest, then sent one attempt (a probe); another miss doubles
//! the rest (from the retry base up to `LONGEST_REST`), an answer in 2xx
//! closes the breaker. While it rests, that webhook's due deliveries stay
//! `pending` and unclaimed, keeping their order and their day of retries.
//!
//! Without it every new event to a dead receiver cost an attempt at once
//! — a claim, a refused connection, a recorded outcome, about a quarter of
//! a create's work — and its retries as much again: a dead receiver slowed
//! every request on a saturated machine. A single delivery's own schedule
//! (5 s, 10 s, …) is never delayed by its breaker: a rest after the k-th
//! trip is at most the base · 2^(k−1), and the k-th trip comes after at
//! least `TRIP_AFTER` misses.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Misses in a row that trip a webhook's breaker: a full round of its
/// slots (`dispatch::PER_WEBHOOK`), so that a burst of events to a failing
/// receiver is each attempted once before the breaker holds any back.
pub const TRIP_AFTER: u32 = 32;
/// The longest rest: a receiver back on its feet is probed within 15 s, and
/// a delivery whose instance died mid-attempt is tried again within 30 s
/// (its 15 s lease, then at most this) as §15 promises.
const LONGEST_REST: Duration = Duration::from_secs(15);
/// A breaker with no miss for this long (its webhook deleted, or quiet) is
/// forgotten; a later miss starts it again from the first rest.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
pub struct Breakers {
    by_webhook: HashMap<i64, Breaker>,
}

#[derive(Debug)]
struct Breaker {
    misses: u32,
    /// Set once tripped: no attempt starts before it, one (the probe) after.
    resting_until: Option<Instant>,
    next_rest: Duration,
    last_miss: Instant,
}

impl Breakers {
    /// Attempts the claim must count as taking a slot of each webhook:
    /// those in flight, or every slot (`per_webhook`) of a webhook whose
    /// breaker rests or whose probe is under way; a tripped webhook at the
    /// end of its rest has one slot left, its probe.
    pub fn slots_taken(
        &self,
        in_flight: &HashMap<i64, usize>,
        per_webhook: usize,
        now: Instant,
    ) -> HashMap<i64, usize> {
        let mut taken = in_flight.clone();
        for (&webhook_id, breaker) in &self.by_webhook {
            let Some(until) = breaker.resting_until else {
                continue;
            };
            let flying = in_flight.get(&webhook_id).copied().unwrap_or(0);
            let free = if now >= until && flying == 0 { 1 } else { 0 };
            taken.insert(webhook_id, per_webhook.saturating_sub(free));
        }
        taken
    }

    /// The receiver answered 2xx (or `410 Gone`, which switches it off),
    /// or an admin changed the webhook.
    pub fn close(&mut self, webhook_id: i64) {
        self.by_webhook.remove(&webhook_id);
    }

    /// An attempt missed; `first_rest` is the first retry's delay. Answers
    /// the rest when this miss tripped the breaker.
    pub fn missed(
        &mut self,
        webhook_id: i64,
        first_rest: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let breaker = self.by_webhook.entry(webhook_id).or_insert(Breaker {
            misses: 0,
            resting_until: None,
            next_rest: first_rest.min(LONGEST_REST),
            last_miss: now,
        });
        breaker.misses = breaker.misses.saturating_add(1);
        breaker.last_miss = now;
        let resting = breaker.resting_until.is_some_and(|until| now < until);
        if breaker.misses < TRIP_AFTER || resting {
            return None;
        }
        let rest = breaker.next_rest;
        breaker.resting_until = Some(now + rest);
        breaker.next_rest = rest.saturating_mul(2).min(LONGEST_REST);
        Some(rest)
    }

    pub fn forget_quiet(&mut self, now: Instant) {
        self.by_webhook
            .retain(|_, breaker| now.duration_since(breaker.last_miss) < FORGET_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(5);
    const PER_WEBHOOK: usize = 32;

    fn taken(breakers: &Breakers, in_flight: &[(i64, usize)], now: Instant) -> HashMap<i64, usize> {
        breakers.slots_taken(&in_flight.iter().copied().collect(), PER_WEBHOOK, now)
    }

    #[test]
    fn misses_in_a_row_trip_the_breaker_and_a_probe_follows_the_rest() {
        let mut breakers = Breakers::default();
        let start = Instant::now();
        for _ in 1..TRIP_AFTER {
            assert_eq!(breakers.missed(7, BASE, start), None);
        }
        assert!(taken(&breakers, &[], start).is_empty(), "not tripped yet");
        assert_eq!(breakers.missed(7, BASE, start), Some(BASE));
        assert_eq!(taken(&breakers, &[], start)[&7], PER_WEBHOOK, "resting");
        assert_eq!(
            breakers.missed(7, BASE, start + BASE / 2),
            None,
            "a late miss of an attempt made before the trip does not extend the rest"
        );
        let after = start + BASE;
        assert_eq!(
            taken(&breakers, &[], after)[&7],
            PER_WEBHOOK - 1,
            "one probe"
        );
        assert_eq!(
            taken(&breakers, &[(7, 1)], after)[&7],
            PER_WEBHOOK,
            "only one probe at a time"
        );
        assert_eq!(breakers.missed(7, BASE, after), Some(2 * BASE));
        assert_eq!(taken(&breakers, &[], after + BASE)[&7], PER_WEBHOOK);
        breakers.close(7);
        assert!(taken(&breakers, &[(7, 3)], after)[&7] == 3, "closed again");
    }

    #[test]
    fn rests_double_up_to_15_s_and_other_webhooks_are_untouched() {
        let mut breakers = Breakers::default();
        let mut now = Instant::now();
        for _ in 1..TRIP_AFTER {
            breakers.missed(1, BASE, now);
        }
        let mut rests = Vec::new();
        for _ in 0..6 {
            let rest = breakers
                .missed(1, BASE, now)
                .expect("trips after each rest");
            rests.push(rest.as_secs());
            now += rest;
        }
        assert_eq!(rests, [5, 10, 15, 15, 15, 15]);
        assert_eq!(taken(&breakers, &[(2, 4)], now)[&2], 4);
        breakers.forget_quiet(now + FORGET_AFTER);
        assert!(taken(&breakers, &[], now + FORGET_AFTER).is_empty());
    }

    #[test]
    fn an_answer_between_misses_starts_the_count_again() {
        let mut breakers = Breakers::default();
        let now = Instant::now();
        for _ in 1..TRIP_AFTER {
            breakers.missed(3, BASE, now);
        }
        breakers.close(3);
        for _ in 1..TRIP_AFTER {
            assert_eq!(breakers.missed(3, BASE, now), None);
        }
        assert_eq!(breakers.missed(3, BASE, now), Some(BASE));
    }
}
