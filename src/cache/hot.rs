//! Which items are read most, so that an emptied cache can be warmed with
//! them. Cheap on the hottest path: each worker thread draws from a
//! thread-local generator and hands about one read in `SAMPLE_EVERY` to a
//! shared table, kept in two half-hour windows (the last hour, roughly).
//! Random, not every n-th read: a client cycling through n items would
//! otherwise be sampled on the same few. Nothing is written anywhere but
//! memory.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One read in this many (per thread) is counted.
const SAMPLE_EVERY: u32 = 16;
/// A window's length: the counts cover the last one or two.
const WINDOW: Duration = Duration::from_secs(30 * 60);
/// Items counted per window at most (new ones are ignored once full).
const MAX_TRACKED: usize = 50_000;

struct Windows {
    current: HashMap<i64, u32>,
    previous: HashMap<i64, u32>,
    started: Instant,
}

pub struct HotItems {
    windows: Mutex<Windows>,
}

impl HotItems {
    pub fn new() -> Self {
        Self {
            windows: Mutex::new(Windows {
                current: HashMap::new(),
                previous: HashMap::new(),
                started: Instant::now(),
            }),
        }
    }

    /// A read of item `id`.
    pub fn record(&self, id: i64) {
        thread_local! {
            static DRAWS: Cell<u32> = const { Cell::new(0x9E37_79B9) };
        }
        // xorshift32: a few instructions, never zero from a non-zero seed.
        let sampled = DRAWS.with(|draws| {
            let mut x = draws.get();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            draws.set(x);
            x % SAMPLE_EVERY == 0
        });
        if !sampled {
            return;
        }
        let mut windows = self.windows.lock().expect("hot items lock");
        if windows.started.elapsed() >= WINDOW {
            windows.previous = std::mem::take(&mut windows.current);
            windows.started = Instant::now();
        }
        let full = windows.current.len() >= MAX_TRACKED;
        match windows.current.get_mut(&id) {
            Some(count) => *count += 1,
            None if !full => {
                windows.current.insert(id, 1);
            }
            None => {}
        }
    }

    /// The `n` items read most over both windows, most read first.
    pub fn hottest(&self, n: usize) -> Vec<i64> {
        let windows = self.windows.lock().expect("hot items lock");
        let mut counts = windows.previous.clone();
        for (id, count) in &windows.current {
            *counts.entry(*id).or_default() += count;
        }
        drop(windows);
        let mut ranked: Vec<(i64, u32)> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.into_iter().take(n).map(|(id, _)| id).collect()
    }
}

impl Default for HotItems {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_read_items_come_first() {
        let hot = HotItems::new();
        for (id, reads) in [(1, 16 * 5), (2, 16 * 50), (3, 16 * 20)] {
            for _ in 0..reads {
                hot.record(id);
            }
        }
        assert_eq!(hot.hottest(2), [2, 3]);
        assert_eq!(hot.hottest(10), [2, 3, 1]);
    }
}
