//! A sharded CLOCK (second-chance) cache with a charge bound and an entry
//! bound. The block cache (decompressed table blocks) and the table cache
//! (open tables with their indexes and filters) are both one of these.
//!
//! Why CLOCK rather than LRU: a hit only sets a bit, no list splicing, so the
//! critical section of `get` is a hash lookup; eviction sweeps a hand over
//! the slots and gives every visited entry a second chance.
//!
//! Why sharded std mutexes: the critical sections are short and never block
//! on I/O, so a plain `Mutex` per shard (picked by key hash) keeps contention
//! low without an async lock or lock-free structure. A poisoned shard (a
//! panic while held, impossible outside bugs in `K: Hash/Eq`) is recovered:
//! every method leaves the shard consistent before it can panic.
//!
//! Bounds: each shard holds `capacity_charge / shards` charge and
//! `max_entries / shards` entries. An insert evicts unvisited entries until
//! its shard is within both bounds again, but never the entry it just
//! inserted: an entry larger than its shard's share stays until the next
//! insert into that shard evicts it.

#![cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "used by the memtable flush, version set and DB read path being wired in concurrently; remove once they call it"
    )
)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use super::hash::IntHashBuilder;
use std::sync::{Mutex, MutexGuard};

/// Upper bound on shards; more buys little on the machines we target.
const MAX_SHARDS: usize = 16;
/// Each shard gets at least this much charge, so a small cache is not split
/// into shards too small to hold a single block.
const MIN_SHARD_CHARGE: usize = 64 << 10;
/// Each shard gets at least this many entries, for the same reason.
const MIN_SHARD_ENTRIES: usize = 8;

/// What the index maps a key to. A hit reads and marks only this (one
/// bucket of the hash table), then the value: the entry used to sit in a
/// slot vector the bucket pointed into, one cache miss more per hit, which
/// profiles of random reads showed as a quarter of the block cache lookup.
struct Entry<V> {
    value: V,
    /// The entry's place on the clock.
    slot: usize,
    visited: bool,
}

/// A place on the clock: the key to find its entry by, and its charge.
struct Slot<K> {
    key: K,
    charge: usize,
}

struct Shard<K, V> {
    index: HashMap<K, Entry<V>, IntHashBuilder>,
    slots: Vec<Option<Slot<K>>>,
    free: Vec<usize>,
    hand: usize,
    charge: usize,
    capacity_charge: usize,
    max_entries: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Shard<K, V> {
    fn new(capacity_charge: usize, max_entries: usize) -> Self {
        Shard {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            charge: 0,
            capacity_charge,
            max_entries,
        }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        let entry = self.index.get_mut(key)?;
        entry.visited = true;
        Some(entry.value.clone())
    }

    fn insert(&mut self, key: K, value: V, charge: usize) {
        self.remove(&key);
        let placed = Slot {
            key: key.clone(),
            charge,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(placed);
                }
                slot
            }
            None => {
                self.slots.push(Some(placed));
                self.slots.len() - 1
            }
        };
        let entry = Entry {
            value,
            slot,
            visited: false,
        };
        self.index.insert(key, entry);
        self.charge += charge;
        self.evict(slot);
    }

    fn over_bounds(&self) -> bool {
        self.charge > self.capacity_charge || self.index.len() > self.max_entries
    }

    /// Sweeps the hand until within bounds, sparing `keep` (the entry just
    /// inserted). Terminates: each step clears a visited bit or evicts, and
    /// while another entry exists it is evicted within two sweeps.
    fn evict(&mut self, keep: usize) {
        while self.over_bounds() && self.index.len() > 1 {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = self.hand;
            self.hand += 1;
            if slot == keep {
                continue;
            }
            let Some(Some(placed)) = self.slots.get(slot) else {
                continue;
            };
            match self.index.get_mut(&placed.key) {
                Some(entry) if entry.visited => entry.visited = false,
                _ => {
                    let key = placed.key.clone();
                    self.remove(&key);
                }
            }
        }
    }

    fn remove(&mut self, key: &K) {
        let Some(entry) = self.index.remove(key) else {
            return;
        };
        if let Some(placed) = self.slots.get_mut(entry.slot).and_then(Option::take) {
            self.charge -= placed.charge;
            self.free.push(entry.slot);
        }
    }
}

/// A thread-safe, sharded CLOCK cache bounded by total charge and by number
/// of entries.
pub(crate) struct ClockCache<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    hasher: IntHashBuilder,
}

impl<K: Hash + Eq + Clone, V: Clone> ClockCache<K, V> {
    /// A cache holding at most about `capacity_charge` total charge and
    /// `max_entries` entries (`usize::MAX` for no entry bound).
    pub(crate) fn new(capacity_charge: usize, max_entries: usize) -> Self {
        let mut shards = MAX_SHARDS;
        while shards > 1
            && (capacity_charge / shards < MIN_SHARD_CHARGE
                || max_entries / shards < MIN_SHARD_ENTRIES)
        {
            shards /= 2;
        }
        let shard_charge = capacity_charge / shards;
        let shard_entries = max_entries / shards;
        ClockCache {
            shards: (0..shards)
                .map(|_| Mutex::new(Shard::new(shard_charge, shard_entries)))
                .collect(),
            hasher: IntHashBuilder::default(),
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K, V>> {
        // The shard count is a power of two; use bits 32.., which the shard's
        // own table (indexed by the low bits, tagged by the top 7) ignores.
        let h = self.hasher.hash_one(key);
        let i = (h >> 32) as usize & (self.shards.len() - 1);
        // `shards` is never empty and `i` is masked to its length.
        let shard = self.shards.get(i).or_else(|| self.shards.first());
        match shard {
            Some(m) => m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            None => unreachable_shard(),
        }
    }

    /// The cached value, marking it visited (it survives the next sweep).
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.shard(key).get(key)
    }

    /// Inserts or replaces `key`, then evicts unvisited entries of its shard
    /// until the shard is within both bounds (sparing the new entry).
    pub(crate) fn insert(&self, key: K, value: V, charge: usize) {
        self.shard(&key).insert(key, value, charge);
    }

    pub(crate) fn remove(&self, key: &K) {
        self.shard(key).remove(key);
    }

    /// Sum of the charges of all cached entries.
    pub(crate) fn total_charge(&self) -> usize {
        self.shards.iter().map(|s| lock(s).charge).sum()
    }

    /// Number of cached entries.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).index.len()).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cold]
fn unreachable_shard() -> ! {
    unreachable!("ClockCache always has at least one shard")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn cache_stays_within_charge_bound_and_keeps_hot_entries() {
        // Cold entries are evicted first; a visited entry survives a sweep;
        // total charge never exceeds the bound after an insert of normal size.
        let cache: ClockCache<u64, u64> = ClockCache::new(100, usize::MAX);
        for hot in 0..5 {
            cache.insert(hot, hot, 10);
        }
        for cold in 100..1_000u64 {
            for hot in 0..5 {
                assert_eq!(
                    cache.get(&hot),
                    Some(hot),
                    "hot entry {hot} evicted at {cold}"
                );
            }
            cache.insert(cold, cold, 10);
            assert!(
                cache.total_charge() <= 100,
                "charge {}",
                cache.total_charge()
            );
        }
        assert_eq!(cache.len(), 10);
    }

    #[test]
    fn cache_respects_entry_bound() {
        // max_entries bounds the count even when charge is far from full.
        let cache: ClockCache<u32, u32> = ClockCache::new(1 << 30, 8);
        for i in 0..100 {
            cache.insert(i, i, 1);
            assert!(cache.len() <= 8);
        }
        assert_eq!(cache.get(&99), Some(99));
    }

    #[test]
    fn oversized_entry_is_inserted_then_evicted_on_next_insert() {
        // An entry larger than the shard share does not wedge the cache.
        let cache: ClockCache<u32, u32> = ClockCache::new(100, usize::MAX);
        cache.insert(1, 1, 500);
        assert_eq!(cache.get(&1), Some(1));
        cache.insert(2, 2, 10);
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.total_charge(), 10);
    }

    #[test]
    fn replace_and_remove_keep_charge_exact() {
        // Re-inserting a key replaces its charge; remove releases it.
        let cache: ClockCache<&str, u32> = ClockCache::new(1000, usize::MAX);
        cache.insert("a", 1, 10);
        cache.insert("a", 2, 30);
        assert_eq!(
            (cache.get(&"a"), cache.total_charge(), cache.len()),
            (Some(2), 30, 1)
        );
        cache.remove(&"a");
        cache.remove(&"missing");
        assert_eq!(
            (cache.get(&"a"), cache.total_charge(), cache.len()),
            (None, 0, 0)
        );
    }

    #[test]
    fn sharded_cache_is_safe_under_concurrent_use() {
        // Many threads inserting and reading keep every shard within bounds.
        let cache: Arc<ClockCache<u64, u64>> = Arc::new(ClockCache::new(16 << 20, usize::MAX));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let k = t * 1_000_000 + i;
                        cache.insert(k, k, 4096);
                        assert!(cache.get(&k).is_none_or(|v| v == k));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(cache.total_charge() <= 16 << 20);
    }
}
