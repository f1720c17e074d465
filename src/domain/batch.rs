//! Reads of one kind that arrive together share a statement: while every
//! lane runs one, the requests that come wait and go out together in the
//! next. Nobody waits for company: a request that finds a lane free starts
//! a statement at once, so under light load each read has its own, and
//! under load one round trip, one hop to the blocking pool and one
//! execution in PostgreSQL serve many (eight user reads in one statement
//! cost PostgreSQL about a third of what eight statements do).
//!
//! A request only joins a statement that has not started yet, so the
//! statement's snapshot is taken after the request arrived: a read sent
//! after a write was answered still sees the write.
//!
//! Written here rather than taken from a crate: the loaders on crates.io
//! (`dataloader`) batch by yielding a fixed number of times before every
//! load, which delays a lone request and does not bound the statements in
//! flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::AppError;

/// Statements of one kind an instance runs at once: enough to keep
/// PostgreSQL's cores (or a replica and the primary) busy while answers are
/// decoded, few enough that the reads arriving under load wait to share
/// one (1, 2, 4, 8 and 16 measured alike on two cores).
pub const LANES: usize = 4;

/// Reads one statement answers at most: past that, the statement's own
/// time would hold up the reads that share it more than a round trip of
/// their own costs.
pub const MOST_PER_STATEMENT: usize = 64;

/// The distinct ids of `ids`, sorted: what a shared statement asks for.
pub fn distinct(ids: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

type Reply<V> = oneshot::Sender<Result<V, Arc<AppError>>>;

/// One statement for `keys`: an answer per key, in the keys' order.
type Run<K, V> = Box<
    dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Result<Vec<V>, AppError>> + Send>> + Send + Sync,
>;

pub struct Batcher<K, V> {
    lanes: usize,
    most_per_statement: usize,
    queue: Mutex<Queue<K, V>>,
    run: Run<K, V>,
}

struct Queue<K, V> {
    waiting: Vec<(K, Reply<V>)>,
    busy_lanes: usize,
}

impl<K: Send + 'static, V: Send + 'static> Batcher<K, V> {
    /// `run` answers the keys of one statement, an answer per key in their
    /// order; `LANES` statements at once, `MOST_PER_STATEMENT` reads each.
    pub fn shared<F, Answers>(run: F) -> Arc<Self>
    where
        F: Fn(Vec<K>) -> Answers + Send + Sync + 'static,
        Answers: Future<Output = Result<Vec<V>, AppError>> + Send + 'static,
    {
        Self::new(LANES, MOST_PER_STATEMENT, run)
    }

    /// At most `lanes` statements at once, each for at most
    /// `most_per_statement` reads (a bound on what one statement holds up).
    fn new<F, Answers>(lanes: usize, most_per_statement: usize, run: F) -> Arc<Self>
    where
        F: Fn(Vec<K>) -> Answers + Send + Sync + 'static,
        Answers: Future<Output = Result<Vec<V>, AppError>> + Send + 'static,
    {
        Arc::new(Self {
            lanes: lanes.max(1),
            most_per_statement: most_per_statement.max(1),
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                busy_lanes: 0,
            }),
            run: Box::new(move |keys| Box::pin(run(keys))),
        })
    }

    /// The answer for `key`, from the next statement to start.
    pub async fn load(self: &Arc<Self>, key: K) -> Result<V, AppError> {
        let (reply, answer) = oneshot::channel();
        let start_lane = {
            let mut queue = self.queue.lock().expect("batch queue lock");
            queue.waiting.push((key, reply));
            let free = queue.busy_lanes < self.lanes;
            if free {
                queue.busy_lanes += 1;
            }
            free
        };
        if start_lane {
            // Not on the request's task: a request dropped mid-way must not
            // strand the others of its statement.
            tokio::spawn(self.clone().drain());
        }
        match answer.await {
            Ok(answer) => answer.map_err(AppError::from),
            Err(_) => Err(AppError::Internal(anyhow::anyhow!(
                "a batched read was dropped before it answered"
            ))),
        }
    }

    /// Runs what waits, one statement at a time, until nothing does.
    async fn drain(self: Arc<Self>) {
        let mut lane = Lane {
            batcher: self.clone(),
            freed: false,
        };
        loop {
            let batch = {
                let mut queue = self.queue.lock().expect("batch queue lock");
                if queue.waiting.is_empty() {
                    queue.busy_lanes -= 1;
                    lane.freed = true;
                    return;
                }
                let taken = queue.waiting.len().min(self.most_per_statement);
                queue.waiting.drain(..taken).collect::<Vec<_>>()
            };
            let (keys, replies): (Vec<K>, Vec<Reply<V>>) = batch.into_iter().unzip();
            match (self.run)(keys).await {
                Ok(answers) => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(err) => {
                    let err = Arc::new(err);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn busy_lanes(&self) -> usize {
        self.queue.lock().expect("batch queue lock").busy_lanes
    }
}

/// A lane whose statement panicked (a bug): its requests are answered with
/// an error (their replies are dropped), the lane is freed, and whatever
/// waits behind it gets a lane of its own.
struct Lane<K: Send + 'static, V: Send + 'static> {
    batcher: Arc<Batcher<K, V>>,
    freed: bool,
}

impl<K: Send + 'static, V: Send + 'static> Drop for Lane<K, V> {
    fn drop(&mut self) {
        if self.freed {
            return;
        }
        let batcher = &self.batcher;
        let restart = {
            let mut queue = batcher
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            !queue.waiting.is_empty() || {
                queue.busy_lanes -= 1;
                false
            }
        };
        if restart {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(batcher.clone().drain());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    /// A batcher (at most three reads a statement) whose statements each
    /// wait for a permit of `gate` and record their keys in `seen`; key 13
    /// fails its statement.
    struct Gated {
        batcher: Arc<Batcher<u32, u32>>,
        gate: Arc<Semaphore>,
        seen: Arc<Mutex<Vec<Vec<u32>>>>,
    }

    impl Gated {
        fn new(lanes: usize) -> Self {
            let gate = Arc::new(Semaphore::new(0));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let batcher = Batcher::new(lanes, 3, {
                let (gate, seen) = (gate.clone(), seen.clone());
                move |keys: Vec<u32>| {
                    let (gate, seen) = (gate.clone(), seen.clone());
                    async move {
                        seen.lock().unwrap().push(keys.clone());
                        gate.acquire().await.unwrap().forget();
                        if keys.contains(&13) {
                            return Err(AppError::NotFound("unlucky".into()));
                        }
                        Ok(keys.iter().map(|key| key * 10).collect())
                    }
                }
            });
            Self {
                batcher,
                gate,
                seen,
            }
        }

        fn load(&self, key: u32) -> JoinHandle<Result<u32, AppError>> {
            let batcher = self.batcher.clone();
            tokio::spawn(async move { batcher.load(key).await })
        }

        async fn until_started(&self, statements: usize) {
            until(|| self.seen.lock().unwrap().len() == statements).await;
        }

        async fn until_waiting(&self, reads: usize) {
            until(|| self.batcher.queue.lock().unwrap().waiting.len() == reads).await;
        }

        fn statements(&self) -> Vec<Vec<u32>> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn until(what: impl Fn() -> bool) {
        while !what() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn reads_that_arrive_while_the_lanes_are_busy_share_the_next_statement() {
        let gated = Gated::new(1);
        let first = gated.load(1);
        gated.until_started(1).await;
        let rest: Vec<_> = (2..=4).map(|key| gated.load(key)).collect();
        gated.until_waiting(3).await;
        gated.gate.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), 10);
        for (key, read) in (2..=4).zip(rest) {
            assert_eq!(read.await.unwrap().unwrap(), key * 10);
        }
        assert_eq!(gated.statements(), vec![vec![1], vec![2, 3, 4]]);
        until(|| gated.batcher.busy_lanes() == 0).await;
    }

    #[tokio::test]
    async fn a_statement_takes_at_most_its_share_and_leaves_the_rest_for_the_next() {
        let gated = Gated::new(1);
        let first = gated.load(1);
        gated.until_started(1).await;
        let rest: Vec<_> = (2..=6).map(|key| gated.load(key)).collect();
        gated.until_waiting(5).await;
        gated.gate.add_permits(3);
        first.await.unwrap().unwrap();
        for read in rest {
            read.await.unwrap().unwrap();
        }
        assert_eq!(
            gated.statements(),
            vec![vec![1], vec![2, 3, 4], vec![5, 6]],
            "the oldest first"
        );
    }

    #[tokio::test]
    async fn a_free_lane_starts_a_statement_at_once() {
        let gated = Gated::new(2);
        let one = gated.load(1);
        gated.until_started(1).await;
        let two = gated.load(2);
        // The first statement still waits: the second read has its own.
        gated.until_started(2).await;
        assert_eq!(gated.statements(), vec![vec![1], vec![2]]);
        gated.gate.add_permits(2);
        assert_eq!(one.await.unwrap().unwrap(), 10);
        assert_eq!(two.await.unwrap().unwrap(), 20);
    }

    #[tokio::test]
    async fn a_failed_statement_fails_each_of_its_reads_and_no_other() {
        let gated = Gated::new(1);
        let first = gated.load(1);
        gated.until_started(1).await;
        let failing = [gated.load(13), gated.load(14)];
        gated.until_waiting(2).await;
        gated.gate.add_permits(3);
        assert_eq!(first.await.unwrap().unwrap(), 10);
        for read in failing {
            assert!(matches!(read.await.unwrap(), Err(AppError::NotFound(_))));
        }
        assert_eq!(
            gated.load(5).await.unwrap().unwrap(),
            50,
            "the lane serves on"
        );
    }

    #[tokio::test]
    async fn a_request_dropped_mid_way_strands_nobody() {
        let gated = Gated::new(1);
        let dropped = gated.load(1);
        gated.until_started(1).await;
        let kept = gated.load(2);
        gated.until_waiting(1).await;
        dropped.abort();
        gated.gate.add_permits(2);
        assert_eq!(kept.await.unwrap().unwrap(), 20);
    }

    #[tokio::test]
    async fn a_panicking_statement_frees_its_lane_for_those_behind_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let batcher: Arc<Batcher<u32, u32>> = Batcher::new(1, 8, {
            let calls = calls.clone();
            move |keys: Vec<u32>| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        tokio::task::yield_now().await;
                        panic!("a bug in the statement");
                    }
                    Ok(keys)
                }
            }
        });
        let broken = batcher.load(1).await;
        assert!(matches!(broken, Err(AppError::Internal(_))));
        assert_eq!(batcher.load(2).await.unwrap(), 2);
        until(|| batcher.busy_lanes() == 0).await;
    }
}
