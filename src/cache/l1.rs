//! The in-process cache (L1): item and listing bodies in moka, bounded by
//! bytes, served only while this instance's lease holds (see
//! `coherence.rs`).
//!
//! Fills race invalidations without locks: a fill is stamped with the
//! generation read *before* its source (Redis or PostgreSQL) was read; an
//! invalidation takes a new generation and marks what it covers (the item's
//! shard, every listing, or everything) with it. An entry is served only if
//! its stamp is at least the marks that cover it, so a fill that read old
//! data before an invalidation can be inserted but never served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;
use moka::Expiry;

use super::body::Representation;
use super::CachedPage;

/// Keys are ids and canonical queries of existing entries: no flooding to
/// fear, and xxh3 is a third of SipHash's cost on the hot path.
type Hasher = xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Item invalidations mark one of this many shards: a write to item 7
/// refuses in-flight fills of 1/1024 of the other items, not all of them.
const ITEM_SHARDS: usize = 1024;
/// Per-entry bookkeeping, counted in the byte bound.
const ENTRY_OVERHEAD: usize = 96;

/// Proof that a fill read its source after every invalidation up to
/// `generation`; `None` when L1 was not serving (no fill then).
#[derive(Debug, Clone, Copy)]
pub struct Stamp(u64);

impl Stamp {
    pub fn generation(self) -> u64 {
        self.0
    }
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    stamp: u64,
    ttl: Duration,
    expires_at: Instant,
}

/// Slots of each worker thread's front table of items.
const FRONT_SLOTS: usize = 1024;
/// Bytes one worker's front may hold, at most (and at most 1/64 of L1).
const FRONT_BYTES: usize = 1 << 20;

/// A worker thread's direct-mapped copies of items it served from moka:
/// the same bytes (shared, not copied), checked exactly like moka's entries
/// (stamp against marks, expiry), without moka's per-read bookkeeping
/// (a read-log channel and periodic housekeeping, 4 % of a hit's CPU). Its
/// bytes are reserved out of the items' share of `L1_CACHE_BYTES`.
struct Front {
    owner: u64,
    slots: Vec<Option<(i64, Entry<Representation>)>>,
    bytes: usize,
}

impl Front {
    fn slot(id: i64) -> usize {
        id.rem_euclid(FRONT_SLOTS as i64) as usize
    }
}

thread_local! {
    static FRONT: std::cell::RefCell<Front> = const {
        std::cell::RefCell::new(Front { owner: u64::MAX, slots: Vec::new(), bytes: 0 })
    };
}

struct TimeToLive;

impl<K, V> Expiry<K, Entry<V>> for TimeToLive {
    fn expire_after_create(&self, _: &K, entry: &Entry<V>, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &K,
        entry: &Entry<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// The time until which this instance may serve from L1, on its monotonic
/// clock. Zero: not serving.
pub struct Lease {
    origin: Instant,
    valid_until_ns: AtomicU64,
}

impl Lease {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            valid_until_ns: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    pub fn holds(&self) -> bool {
        self.holds_at(Instant::now())
    }

    /// `at` must be now, read by the caller: a time read earlier could be
    /// from before a pause (SIGSTOP) and let an expired lease serve.
    fn holds_at(&self, at: Instant) -> bool {
        self.nanos(at) < self.valid_until_ns.load(Ordering::Acquire)
    }

    /// Serve until `until` (a renewal's send time plus the lease, less the
    /// margin).
    pub fn hold_until(&self, until: Instant) {
        self.valid_until_ns
            .store(self.nanos(until), Ordering::Release);
    }

    pub fn stop(&self) {
        self.valid_until_ns.store(0, Ordering::Release);
    }

    /// How long it still holds.
    pub fn remaining(&self) -> Duration {
        let until = self.valid_until_ns.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.nanos(Instant::now())))
    }
}

pub struct Local {
    /// Tells instances apart in the per-thread fronts (tests run several in
    /// one process).
    id: u64,
    front_bytes: usize,
    items: Moka<i64, Entry<Representation>, Hasher>,
    listings: Moka<String, Entry<CachedPage>, Hasher>,
    generation: AtomicU64,
    item_marks: Box<[AtomicU64]>,
    listings_mark: AtomicU64,
    cleared_mark: AtomicU64,
    pub lease: Lease,
}

/// Entries and bytes held, for the admin view.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

impl Local {
    /// Items and listings share `max_bytes`, split evenly; the items' half
    /// includes the fronts of `threads` workers.
    pub fn new(max_bytes: u64, threads: usize) -> Arc<Self> {
        let half = (max_bytes / 2).max(1);
        let front_bytes = FRONT_BYTES.min((max_bytes / 64) as usize);
        let fronts = (front_bytes * threads) as u64;
        let items = Moka::builder()
            .max_capacity(half.saturating_sub(fronts).max(1))
            .weigher(|_: &i64, entry: &Entry<Representation>| {
                weight(entry.value.bytes.len() + ENTRY_OVERHEAD)
            })
            .expire_after(TimeToLive)
            .build_with_hasher(Hasher::default());
        let listings = Moka::builder()
            .max_capacity(half)
            .weigher(|key: &String, entry: &Entry<CachedPage>| {
                let cursor = entry.value.next_cursor.as_deref().map_or(0, str::len);
                weight(key.len() + cursor + entry.value.body.weight() + ENTRY_OVERHEAD)
            })
            .expire_after(TimeToLive)
            .build_with_hasher(Hasher::default());
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            front_bytes,
            items,
            listings,
            generation: AtomicU64::new(1),
            item_marks: (0..ITEM_SHARDS).map(|_| AtomicU64::new(0)).collect(),
            listings_mark: AtomicU64::new(0),
            cleared_mark: AtomicU64::new(0),
            lease: Lease::new(),
        })
    }

    fn item_mark(&self, id: i64) -> &AtomicU64 {
        &self.item_marks[id.rem_euclid(ITEM_SHARDS as i64) as usize]
    }

    /// Taken before reading the source of a fill; `None` while not serving.
    pub fn stamp(&self) -> Option<Stamp> {
        self.lease
            .holds()
            .then(|| Stamp(self.generation.load(Ordering::SeqCst)))
    }

    fn current(&self, stamp: u64, mark: &AtomicU64) -> bool {
        stamp >= mark.load(Ordering::SeqCst) && stamp >= self.cleared_mark.load(Ordering::SeqCst)
    }

    pub fn item(&self, id: i64) -> Option<Representation> {
        let now = Instant::now();
        if !self.lease.holds_at(now) {
            return None;
        }
        let servable = |entry: &Entry<Representation>| {
            entry.expires_at > now && self.current(entry.stamp, self.item_mark(id))
        };
        FRONT.with(|front| {
            let mut front = front.borrow_mut();
            if front.owner != self.id {
                *front = Front {
                    owner: self.id,
                    slots: vec![None; FRONT_SLOTS],
                    bytes: 0,
                };
            }
            let slot = Front::slot(id);
            if let Some((held, entry)) = &front.slots[slot] {
                if *held == id && servable(entry) {
                    return Some(entry.value.clone());
                }
            }
            let entry = self.items.get(&id).filter(servable)?;
            let size = entry.value.bytes.len();
            let replaced = front.slots[slot]
                .as_ref()
                .map_or(0, |(_, old)| old.value.bytes.len());
            if front.bytes - replaced + size <= self.front_bytes {
                front.bytes = front.bytes - replaced + size;
                let value = entry.value.clone();
                front.slots[slot] = Some((id, entry));
                return Some(value);
            }
            Some(entry.value)
        })
    }

    pub fn listing(&self, key: &str) -> Option<CachedPage> {
        let now = Instant::now();
        if !self.lease.holds_at(now) {
            return None;
        }
        let entry = self.listings.get(key)?;
        (entry.expires_at > now && self.current(entry.stamp, &self.listings_mark))
            .then_some(entry.value)
    }

    pub fn fill_item(&self, stamp: Stamp, id: i64, value: Representation, ttl: Duration) {
        if self.current(stamp.0, self.item_mark(id)) && !ttl.is_zero() {
            self.items.insert(
                id,
                Entry {
                    value,
                    stamp: stamp.0,
                    ttl,
                    expires_at: Instant::now() + ttl,
                },
            );
        }
    }

    pub fn fill_listing(&self, stamp: Stamp, key: &str, value: CachedPage, ttl: Duration) {
        if self.current(stamp.0, &self.listings_mark) && !ttl.is_zero() {
            self.listings.insert(
                key.to_owned(),
                Entry {
                    value,
                    stamp: stamp.0,
                    ttl,
                    expires_at: Instant::now() + ttl,
                },
            );
        }
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Every listing and the given items. Returns once no reader can be
    /// served them, nor any fill that read its source before this call.
    pub fn invalidate(&self, item_ids: &[i64]) {
        let generation = self.next_generation();
        for id in item_ids {
            self.item_mark(*id).fetch_max(generation, Ordering::SeqCst);
            self.items.invalidate(id);
        }
        self.listings_mark.fetch_max(generation, Ordering::SeqCst);
        self.listings.invalidate_all();
    }

    /// Everything, including fills in flight.
    pub fn clear(&self) {
        let generation = self.next_generation();
        self.cleared_mark.fetch_max(generation, Ordering::SeqCst);
        self.items.invalidate_all();
        self.listings.invalidate_all();
    }

    pub fn usage(&self) -> (Usage, Usage) {
        self.items.run_pending_tasks();
        self.listings.run_pending_tasks();
        let usage = |entries, bytes| Usage { entries, bytes };
        (
            usage(self.items.entry_count(), self.items.weighted_size()),
            usage(self.listings.entry_count(), self.listings.weighted_size()),
        )
    }
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::web::Bytes;

    fn serving() -> Arc<Local> {
        let local = Local::new(1 << 20, 2);
        local
            .lease
            .hold_until(Instant::now() + Duration::from_secs(60));
        local
    }

    fn rep(text: &'static str) -> Representation {
        Representation::new(Bytes::from_static(text.as_bytes()))
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn nothing_is_served_or_filled_without_the_lease() {
        let local = serving();
        let stamp = local.stamp().unwrap();
        local.fill_item(stamp, 1, rep("one"), TTL);
        assert!(local.item(1).is_some());
        local.lease.stop();
        assert!(local.item(1).is_none());
        assert!(local.stamp().is_none());
    }

    #[test]
    fn a_fill_that_read_before_an_invalidation_is_never_served() {
        let local = serving();
        let before = local.stamp().unwrap();
        local.invalidate(&[7]);
        local.fill_item(before, 7, rep("old"), TTL);
        assert!(local.item(7).is_none());
        // Inserted before the invalidation's marks were read: still refused.
        local.items.insert(
            7,
            Entry {
                value: rep("old"),
                stamp: before.0,
                ttl: TTL,
                expires_at: Instant::now() + TTL,
            },
        );
        assert!(local.item(7).is_none());
        let after = local.stamp().unwrap();
        local.fill_item(after, 7, rep("new"), TTL);
        assert_eq!(local.item(7).unwrap().bytes, "new");
    }

    #[test]
    fn an_item_write_leaves_other_shards_fillable_and_every_listing_goes() {
        let local = serving();
        let before = local.stamp().unwrap();
        let page = CachedPage {
            body: Arc::new(super::super::body::ListingBody::from_json(
                Bytes::from_static(b"[]"),
            )),
            next_cursor: None,
        };
        local.fill_listing(before, "all", page.clone(), TTL);
        assert!(local.listing("all").is_some());
        local.invalidate(&[7]);
        assert!(local.listing("all").is_none());
        local.fill_item(before, 8, rep("eight"), TTL);
        assert!(local.item(8).is_some(), "item 8 was not invalidated");
        local.fill_listing(before, "all", page, TTL);
        assert!(local.listing("all").is_none(), "read before the write");
        local.clear();
        assert!(local.item(8).is_none());
    }

    #[test]
    fn a_worker_front_is_checked_like_moka_and_never_shared_between_instances() {
        let (one, two) = (serving(), serving());
        one.fill_item(one.stamp().unwrap(), 5, rep("one's"), TTL);
        assert_eq!(one.item(5).unwrap().bytes, "one's", "copied into the front");
        assert!(two.item(5).is_none(), "another instance on this thread");
        assert_eq!(one.item(5).unwrap().bytes, "one's", "from the front again");
        one.invalidate(&[5]);
        assert!(one.item(5).is_none(), "the front's copy is stale too");
        one.fill_item(
            one.stamp().unwrap(),
            5,
            rep("newer"),
            Duration::from_millis(1),
        );
        assert_eq!(one.item(5).unwrap().bytes, "newer");
        std::thread::sleep(Duration::from_millis(2));
        assert!(one.item(5).is_none(), "expired, front included");
    }

    #[test]
    fn the_lease_runs_on_the_monotonic_clock() {
        let lease = Lease::new();
        assert!(!lease.holds());
        lease.hold_until(Instant::now() + Duration::from_millis(200));
        assert!(lease.holds());
        assert!(lease.remaining() <= Duration::from_millis(200));
        lease.hold_until(Instant::now());
        assert!(!lease.holds());
    }
}
