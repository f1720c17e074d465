//! Every cache key name, in one place (§3 "Cache contract").

/// Builds the contract's key names under `CACHE_KEY_PREFIX`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// The default first page of `GET /content`.
pub const DEFAULT_LISTING: &str = "all";

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `content:{id}`: one `ContentWithUser`.
    pub fn item(&self, id: i64) -> String {
        format!("{}content:{id}", self.prefix)
    }

    /// `content_with_user:all` or `content_with_user:{canonical query}`.
    pub fn listing(&self, canonical_query: &str) -> String {
        format!("{}content_with_user:{canonical_query}", self.prefix)
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
        format!("{}cache:listing_keys", self.prefix)
    }

    /// Bumped by every invalidation; a store succeeds only if it is
    /// unchanged since the reader's lookup (the cache-aside race guard).
    pub fn generation(&self) -> String {
        format!("{}cache:generation", self.prefix)
    }

    /// SCAN patterns of every family, for the recovery flush.
    pub fn families(&self) -> [String; 3] {
        [
            format!("{}content:*", self.prefix),
            format!("{}content_with_user:*", self.prefix),
            format!("{}cache:next:*", self.prefix),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_contract() {
        let keys = Keys::new("");
        assert_eq!(keys.item(42), "content:42");
        assert_eq!(keys.listing(DEFAULT_LISTING), "content_with_user:all");
        assert_eq!(keys.all_contents(), "all_contents");
        let prefixed = Keys::new("t1:");
        assert_eq!(prefixed.item(1), "t1:content:1");
        assert_eq!(prefixed.listing("limit=5"), "t1:content_with_user:limit=5");
        assert_eq!(prefixed.generation(), "t1:cache:generation");
        assert_eq!(
            prefixed.listing_next(&prefixed.listing("limit=5")),
            "t1:cache:next:content_with_user:limit=5"
        );
        // Bookkeeping keys stay outside the contract's families.
        assert!(!prefixed.listing_tags().starts_with("t1:content"));
    }
}
