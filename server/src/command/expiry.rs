//! Removing expired keys from disk.
//!
//! Reads already hide a key once `expire_at_ms <= now` (see `exec`); this
//! compaction filter gives the space back. It runs on each replica with its
//! own clock, so replicas drop an expired key at slightly different times:
//! harmless, because every read hides it from the same absolute time on.
//! The engine never shows the filter a version a live snapshot can read.

use super::value::StoredValue;
use cairn_engine::{CompactionFilter, FilterDecision};

/// A compaction filter that removes values whose expiry has passed.
///
/// The time a key is judged at comes from a function of the key, so the
/// server can give each key its Raft group's replicated clock (see
/// `crate::clock`) and skip keys that are not user data; `None` keeps the
/// key.
pub struct ExpiryFilter {
    now_ms: Box<KeyClock>,
}

/// The time to judge a key at, or `None` to keep it.
type KeyClock = dyn Fn(&[u8]) -> Option<u64> + Send + Sync;

impl ExpiryFilter {
    /// A filter judging every key at the time `now_ms` gives for it (Unix
    /// milliseconds), or keeping it when that is `None`.
    pub fn new(now_ms: impl Fn(&[u8]) -> Option<u64> + Send + Sync + 'static) -> Self {
        ExpiryFilter {
            now_ms: Box::new(now_ms),
        }
    }

    /// A filter judging every key on the system clock (a single engine with
    /// no replication).
    pub fn system_clock() -> Self {
        ExpiryFilter::new(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
    }
}

impl std::fmt::Debug for ExpiryFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiryFilter").finish_non_exhaustive()
    }
}

impl CompactionFilter for ExpiryFilter {
    fn filter(&self, _level: usize, key: &[u8], value: &[u8]) -> FilterDecision {
        // A value the filter cannot read is kept: reads report it as corrupt,
        // and compaction must never be the thing that silently drops data.
        match StoredValue::peek_expire_at(value) {
            Ok(Some(at)) if (self.now_ms)(key).is_some_and(|now| at.get() <= now) => {
                FilterDecision::Remove
            }
            _ => FilterDecision::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::value::Value;
    use cairn_engine::{Db, MemFs, Options};
    use std::num::NonZeroU64;
    use std::sync::Arc;

    fn stored(payload: &[u8], expire_at_ms: u64) -> Vec<u8> {
        StoredValue {
            value: Value::String(payload.to_vec()),
            expire_at_ms: NonZeroU64::new(expire_at_ms),
        }
        .encode()
    }

    #[test]
    fn filter_removes_only_values_whose_expiry_has_passed() {
        // Expired at or before now: removed; later, none, or unreadable: kept.
        let f = ExpiryFilter::new(|key| (key != b"other").then_some(2_000));
        assert_eq!(
            f.filter(1, b"k", &stored(b"v", 1_000)),
            FilterDecision::Remove
        );
        assert_eq!(
            f.filter(1, b"k", &stored(b"v", 2_000)),
            FilterDecision::Remove
        );
        assert_eq!(
            f.filter(1, b"k", &stored(b"v", 2_001)),
            FilterDecision::Keep
        );
        assert_eq!(f.filter(1, b"k", &stored(b"v", 0)), FilterDecision::Keep);
        assert_eq!(f.filter(1, b"k", b"\x09garbage"), FilterDecision::Keep);
        assert_eq!(f.filter(1, b"k", b""), FilterDecision::Keep);
        // A key the clock function does not judge is kept.
        assert_eq!(
            f.filter(1, b"other", &stored(b"v", 1_000)),
            FilterDecision::Keep
        );
    }

    #[test]
    fn compaction_gives_back_expired_keys_space_in_the_engine() {
        // With the filter installed, a full compaction physically removes
        // expired keys and keeps the rest.
        let db = Db::open(
            "/db",
            Options {
                fs: Arc::new(MemFs::new()),
                compaction_filter: Some(Arc::new(ExpiryFilter::new(|_| Some(10_000)))),
                ..Options::default()
            },
        )
        .unwrap();
        for i in 0..1000u32 {
            let expire = if i % 2 == 0 { 5_000 } else { 0 };
            db.put(format!("k{i:04}"), stored(&[b'x'; 100], expire))
                .unwrap();
        }
        db.put("later", stored(b"v", 20_000)).unwrap();
        db.compact_range(None, None).unwrap();
        assert_eq!(db.get("k0000").unwrap(), None);
        assert!(db.get("k0001").unwrap().is_some());
        assert!(db.get("later").unwrap().is_some());
        assert_eq!(db.iter(cairn_engine::IterOptions::new()).count(), 501);
    }
}
