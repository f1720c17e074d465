//! Which item a slug belongs to, remembered in process. A claimed slug
//! belongs to one item forever (never given to another, and
//! `content_slugs` keeps it after the item is deleted), so an entry can
//! never be wrong and is never invalidated: an item deleted since is found
//! missing when it is read, and whether the slug is still the item's
//! current one (200) or an old one (301) is read from the item itself.

use moka::sync::Cache as Moka;

/// Slugs remembered per instance (a few MiB at most).
const CAPACITY: u64 = 50_000;

/// Clones share one store (moka's handle is shared).
#[derive(Clone)]
pub struct SlugOwners(Moka<Box<str>, i64>);

impl SlugOwners {
    pub fn new() -> Self {
        Self(Moka::new(CAPACITY))
    }

    pub fn get(&self, slug: &str) -> Option<i64> {
        self.0.get(slug)
    }

    /// Call only with an owner read from committed data.
    pub fn remember(&self, slug: &str, id: i64) {
        self.0.insert(slug.into(), id);
    }
}
