//! Every cache key name, in one place.
//!
//! Layout, under `CACHE_KEY_PREFIX` (`P`), by hash slot:
//!
//! | key | slot (hash tag) | holds |
//! |---|---|---|
//! | `P content:{42}` | `42` | item 42's response bytes |
//! | `P cache:lease:{42}` | `42` | the token of the one reader allowed to fill item 42 |
//! | `P content_with_user:{all}` | `all` | the default first page of `GET /content` |
//! | `P content_with_user:{all}:{query}` | `all` | any other page, by canonical query |
//! | `P content_tags:{all}` | `all` | `GET /tags` (tag counts), stored and invalidated like a listing |
//! | `P cache:next:content_with_user:{all}…` | `all` | that page's next cursor |
//! | `P cache:listing_keys:{all}` | `all` | tag set: every listing key and companion stored |
//! | `P cache:listing_version:{all}` | `all` | token replaced by every listing invalidation |
//! | `P all_contents` | its own | the old service's name; never written, deleted on writes |
//!
//! The L1s' coherence (members, leases, announcements) lives in PostgreSQL,
//! not here: Redis holds only cached values and their fill guards.
//!
//! An item and its lease share a slot, so a fill is one guarded script and
//! an invalidation one `UNLINK`, and a write to item 7 never touches item 9's
//! guard. Every listing shares the `{all}` slot with its version and tag set,
//! because every write invalidates every listing: one script, atomic, costing
//! the number of listing keys. Brace-less, the names are the documented
//! ones (`content:42`, `content_with_user:all`). A prefix holding braces moves
//! every key into the prefix's slot, which stays correct (one shard).

/// Builds the key names under `CACHE_KEY_PREFIX`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// The default first page of `GET /content`.
pub const DEFAULT_LISTING: &str = "all";

/// The hash tag every listing key carries.
const LISTINGS: &str = "{all}";

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `content:{id}`: one `ContentWithUser`.
    pub fn item(&self, id: i64) -> String {
        format!("{}content:{{{id}}}", self.prefix)
    }

    /// Held by the reader that may fill `item(id)`; deleted with the item.
    pub fn item_lease(&self, id: i64) -> String {
        format!("{}cache:lease:{{{id}}}", self.prefix)
    }

    /// `content_with_user:{all}` (the default first page) or
    /// `content_with_user:{all}:{canonical query}`.
    pub fn listing(&self, canonical_query: &str) -> String {
        if canonical_query == DEFAULT_LISTING {
            format!("{}content_with_user:{LISTINGS}", self.prefix)
        } else {
            format!(
                "{}content_with_user:{LISTINGS}:{canonical_query}",
                self.prefix
            )
        }
    }

    /// `GET /tags`: tag counts over public items, in the listings' slot and
    /// tag set, so every listing invalidation removes it too.
    pub fn tag_counts(&self) -> String {
        format!("{}content_tags:{LISTINGS}", self.prefix)
    }

    /// The old service's name; deleted on every content write.
    pub fn all_contents(&self) -> String {
        format!("{}all_contents", self.prefix)
    }

    /// The `Link: rel="next"` cursor of a cached listing page (the listing
    /// value itself stays the exact response body).
    pub fn listing_next(&self, listing_key: &str) -> String {
        let name = listing_key
            .strip_prefix(&self.prefix)
            .unwrap_or(listing_key);
        format!("{}cache:next:{name}", self.prefix)
    }

    /// Tag set: every listing key stored (and its `listing_next`), so the
    /// pattern delete of `content_with_user:*` never walks the keyspace.
    pub fn listing_tags(&self) -> String {
        format!("{}cache:listing_keys:{LISTINGS}", self.prefix)
    }

    /// Replaced by every listing invalidation; a listing store succeeds
    /// only if it is unchanged since the reader's lookup.
    pub fn listing_version(&self) -> String {
        format!("{}cache:listing_version:{LISTINGS}", self.prefix)
    }

    /// SCAN patterns of what the recovery flush deletes key by key, in
    /// this order: items and their leases, then next-page cursors before
    /// the pages they belong to, so a page stored while the walk runs never
    /// loses its cursor and keeps its page. The tag set is not among them:
    /// deleting it apart from its members would leave a page stored during
    /// the walk out of every later invalidation; the flush ends with the
    /// listing invalidation instead, which deletes both at once.
    pub fn flushed_families(&self) -> [String; 5] {
        [
            format!("{}content:*", self.prefix),
            format!("{}cache:lease:*", self.prefix),
            format!("{}cache:next:*", self.prefix),
            format!("{}content_with_user:*", self.prefix),
            format!("{}content_tags:*", self.prefix),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot-deciding part of a key (Redis Cluster's hash tag rule).
    fn hash_tag(key: &str) -> &str {
        match key.find('{') {
            Some(open) => match key[open + 1..].find('}') {
                Some(len) if len > 0 => &key[open + 1..open + 1 + len],
                _ => key,
            },
            None => key,
        }
    }

    #[test]
    fn names_are_the_contract_s_with_hash_tags() {
        let keys = Keys::new("");
        assert_eq!(keys.item(42), "content:{42}");
        assert_eq!(keys.listing(DEFAULT_LISTING), "content_with_user:{all}");
        assert_eq!(keys.all_contents(), "all_contents");
        let without_tags = |key: String| key.replace(['{', '}'], "");
        assert_eq!(without_tags(keys.item(42)), "content:42");
        assert_eq!(
            without_tags(keys.listing(DEFAULT_LISTING)),
            "content_with_user:all"
        );
        let prefixed = Keys::new("t1:");
        assert_eq!(prefixed.item(1), "t1:content:{1}");
        assert_eq!(
            prefixed.listing("limit=5"),
            "t1:content_with_user:{all}:limit=5"
        );
        assert_eq!(
            prefixed.listing_next(&prefixed.listing("limit=5")),
            "t1:cache:next:content_with_user:{all}:limit=5"
        );
        // Bookkeeping keys stay outside the documented `content*` families.
        for key in [
            prefixed.listing_tags(),
            prefixed.listing_version(),
            prefixed.item_lease(1),
        ] {
            assert!(!key.starts_with("t1:content"), "{key}");
        }
    }

    #[test]
    fn guards_share_the_slot_of_what_they_guard() {
        let keys = Keys::new("p:");
        assert_eq!(hash_tag(&keys.item(7)), hash_tag(&keys.item_lease(7)));
        assert_ne!(hash_tag(&keys.item(7)), hash_tag(&keys.item(9)));
        let listing = keys.listing("limit=5&q=x");
        for key in [
            keys.listing(DEFAULT_LISTING),
            keys.tag_counts(),
            keys.listing_next(&listing),
            keys.listing_tags(),
            keys.listing_version(),
        ] {
            assert_eq!(hash_tag(&key), hash_tag(&listing), "{key}");
        }
    }
}
