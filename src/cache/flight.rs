//! Single-flight: concurrent misses of one key that carry the same guard
//! share one load. The guard (the item's lease, the listing version, or
//! without Redis the L1 generation) is what a reader saw at its miss, and a
//! write replaces it: a reader that comes after a write carries the new
//! guard and never joins a load that may have read the old data.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::l1::Stamp;

/// What a fill must carry to prove no invalidation happened since the
/// lookup that missed: the item's lease or the listing version in Redis
/// (`token`), or, when Redis was not read, the L1 generation; and the L1
/// stamp. Readers that carry the same token may share one load (the one
/// that started it fills L1 with its own, older, stamp).
#[derive(Debug, Clone)]
pub struct Guard {
    pub(super) token: String,
    pub(super) stamp: Option<Stamp>,
    /// The token is Redis': the fill goes to Redis, and to L1 only if Redis
    /// took it.
    pub(super) in_redis: bool,
}

impl Guard {
    #[cfg(test)]
    pub(crate) fn for_test(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            stamp: None,
            in_redis: true,
        }
    }

    /// A miss Redis could not guard: only L1 is filled, and the load is
    /// shared only by readers that missed under the same L1 generation (a
    /// write in between starts another). `None` without a serving L1.
    pub(super) fn l1_only(stamp: Option<Stamp>) -> Option<Self> {
        stamp.map(|stamp| Self {
            token: format!("l1:{}", stamp.generation()),
            stamp: Some(stamp),
            in_redis: false,
        })
    }
}

impl PartialEq for Guard {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
    }
}

impl Eq for Guard {}

impl std::hash::Hash for Guard {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.token.hash(state);
    }
}

type FlightKey = (String, Guard);

pub struct Flights<T> {
    inflight: Mutex<HashMap<FlightKey, watch::Receiver<Option<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the load of `key` under `guard` in flight, or starts `load`
    /// as that flight. The load runs in a task of its own, so a caller that
    /// goes away (its client disconnected) cancels it for nobody.
    pub fn join_or_start(
        self: &Arc<Self>,
        key: String,
        guard: Guard,
        load: impl Future<Output = T> + Send + 'static,
    ) -> Flight<T> {
        let flight = (key, guard);
        let mut inflight = self.inflight.lock().expect("flights lock");
        if let Some(outcome) = inflight.get(&flight) {
            return Flight {
                outcome: outcome.clone(),
                joined: true,
            };
        }
        let (done, outcome) = watch::channel(None);
        inflight.insert(flight.clone(), outcome.clone());
        let landing = Landing {
            flights: self.clone(),
            flight,
        };
        tokio::spawn(async move {
            let value = load.await;
            drop(landing);
            let _ = done.send(Some(value));
        });
        Flight {
            outcome,
            joined: false,
        }
    }
}

/// Takes a flight off the map when its load ends, also by a panic (which
/// drops the sender: its waiters then get `None`, later callers a new load).
struct Landing<T: Clone + Send + Sync + 'static> {
    flights: Arc<Flights<T>>,
    flight: FlightKey,
}

impl<T: Clone + Send + Sync + 'static> Drop for Landing<T> {
    fn drop(&mut self) {
        if let Ok(mut inflight) = self.flights.inflight.lock() {
            inflight.remove(&self.flight);
        }
    }
}

/// One caller's share of a load.
pub struct Flight<T> {
    outcome: watch::Receiver<Option<T>>,
    /// Another caller started the load.
    pub joined: bool,
}

impl<T: Clone> Flight<T> {
    /// The load's outcome; `None` if it panicked.
    pub async fn outcome(mut self) -> Option<T> {
        self.outcome
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|value| value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_load_per_key_and_guard() {
        let flights = Flights::<u32>::new();
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let call = |key: &str, guard: &str| {
            let (flights, loads, mut released) = (flights.clone(), loads.clone(), released.clone());
            let (key, guard) = (key.to_owned(), Guard::for_test(guard));
            tokio::spawn(async move {
                let flight = flights.join_or_start(key, guard, async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    let _ = released.wait_for(|go| *go).await;
                    7
                });
                let joined = flight.joined;
                (flight.outcome().await, joined)
            })
        };
        let shared: Vec<_> = (0..10).map(|_| call("item", "lease-1")).collect();
        let after_a_write = call("item", "lease-2");
        let other_key = call("other", "lease-1");
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        let mut joined = 0;
        for task in shared {
            let (value, did_join) = task.await.unwrap();
            assert_eq!(value, Some(7));
            joined += usize::from(did_join);
        }
        assert_eq!(joined, 9);
        assert_eq!(after_a_write.await.unwrap(), (Some(7), false));
        assert_eq!(other_key.await.unwrap(), (Some(7), false));
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_load_that_panics_fails_its_waiters_and_no_later_caller() {
        let flights = Flights::<u32>::new();
        let failed = flights.join_or_start("k".into(), Guard::for_test("g"), async {
            panic!("the load broke")
        });
        assert_eq!(failed.outcome().await, None);
        let retried = flights.join_or_start("k".into(), Guard::for_test("g"), async { 3 });
        assert!(!retried.joined);
        assert_eq!(retried.outcome().await, Some(3));
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_cancels_nothing() {
        let flights = Flights::<u32>::new();
        let (release, released) = watch::channel(false);
        let mut first_released = released.clone();
        let first = tokio::spawn({
            let flights = flights.clone();
            async move {
                let flight = flights.join_or_start("k".into(), Guard::for_test("g"), async move {
                    let _ = first_released.wait_for(|go| *go).await;
                    1
                });
                flight.outcome().await
            }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let flights = flights.clone();
            async move {
                let flight = flights.join_or_start("k".into(), Guard::for_test("g"), async { 2 });
                let joined = flight.joined;
                (flight.outcome().await, joined)
            }
        });
        first.abort();
        release.send(true).unwrap();
        assert_eq!(second.await.unwrap(), (Some(1), true));
    }
}
