//! The memtable: recent writes in a concurrent skiplist (crossbeam), keyed by
//! internal key, plus the range tombstones written since it was created.
//!
//! Inserts come from the group-commit leader; reads come from any thread
//! without locks (the skiplist is lock-free). Entries become visible to
//! readers only when the leader publishes their sequence number, so a reader
//! never sees a half-applied batch: it reads at a sequence number <= the
//! published one and skips newer entries.

use crate::error::Result;
use crate::iter::{Direction, InternalIterator};
use crate::key::{self, ValueKind};
use crate::range_del::RangeTombstone;
use crate::util::hash::hash64;
use crossbeam_skiplist::SkipMap;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

/// Rough per-entry cost of a skiplist node beyond key and value bytes
/// (tower pointers, refcount, allocation headers); counted in `approximate_bytes`.
const ENTRY_OVERHEAD_BYTES: usize = 80;

/// Owned key bytes (of long keys) in the skiplist.
type Bytes = Arc<[u8]>;

/// Internal keys up to this long (a user key of up to 24 bytes plus the
/// 8-byte sequence and kind) are stored inside the skiplist node.
const INLINE_KEY_BYTES: usize = 32;

/// An internal key ordered by `key::compare_internal`.
///
/// Short keys live inline, in the skiplist node itself: a search compares
/// the target with a key at every step, and a key behind a pointer costs a
/// second cache miss per step on top of the node's. Profiles of random
/// reads and inserts into a full memtable showed the skiplist search,
/// mostly those misses, as the largest cost (`docs/benchmarks.md`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum MemKey {
    /// `len` bytes of `bytes`. INVARIANT: `len <= INLINE_KEY_BYTES`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    /// Longer keys.
    Shared(Bytes),
}

impl MemKey {
    fn new(ikey: &[u8]) -> Self {
        match u8::try_from(ikey.len()) {
            Ok(len) if ikey.len() <= INLINE_KEY_BYTES => {
                let mut bytes = [0u8; INLINE_KEY_BYTES];
                if let Some(dst) = bytes.get_mut(..ikey.len()) {
                    dst.copy_from_slice(ikey);
                }
                MemKey::Inline { len, bytes }
            }
            _ => MemKey::Shared(ikey.into()),
        }
    }

    /// The internal key of `(user_key, seq, kind)`, built in place: the
    /// write path makes one per update, so a short key costs no allocation.
    fn from_parts(user_key: &[u8], seq: u64, kind: ValueKind) -> Self {
        Self::with_trailer(user_key, key::encode_trailer(seq, kind))
    }

    /// `key::lookup_key(user_key, seq)`, built in place (one per lookup).
    fn lookup(user_key: &[u8], seq: u64) -> Self {
        Self::with_trailer(user_key, key::lookup_trailer(seq))
    }

    fn with_trailer(user_key: &[u8], trailer: [u8; key::TRAILER_LEN]) -> Self {
        let len = user_key.len() + key::TRAILER_LEN;
        match u8::try_from(len) {
            Ok(short) if len <= INLINE_KEY_BYTES => {
                let mut bytes = [0u8; INLINE_KEY_BYTES];
                let (k, rest) = bytes.split_at_mut(user_key.len());
                k.copy_from_slice(user_key);
                if let Some(t) = rest.get_mut(..key::TRAILER_LEN) {
                    t.copy_from_slice(&trailer);
                }
                MemKey::Inline { len: short, bytes }
            }
            _ => {
                let mut k = Vec::with_capacity(len);
                k.extend_from_slice(user_key);
                k.extend_from_slice(&trailer);
                MemKey::Shared(k.into())
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            MemKey::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(bytes),
            MemKey::Shared(b) => b,
        }
    }
}

impl std::fmt::Debug for MemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MemKey").field(&self.as_bytes()).finish()
    }
}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        key::compare_internal(self.as_bytes(), other.as_bytes())
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What a point lookup found in a memtable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemLookup {
    Value(u64, Vec<u8>),
    Deleted(u64),
}

/// A bloom filter over a memtable's user keys. Once the data outgrows the
/// memtable, most point lookups are of keys it does not hold, and each paid
/// a full skiplist search, cache misses all the way down: perf put that
/// search at 40% of `readrandom` (`docs/benchmarks.md`). The filter answers
/// those with one cache line: it is blocked (a key's probes all fall in one
/// 64-byte block) and set with atomic `fetch_or` by concurrent inserters,
/// before the entry goes into the skiplist, so a reader that sees an entry's
/// sequence number published also sees its bits.
struct KeyFilter {
    blocks: Box<[FilterBlock]>,
}

#[repr(align(64))]
#[derive(Default)]
struct FilterBlock([AtomicU64; 8]);

/// Probes per key; with about 10 bits per key the false positive rate of a
/// blocked filter is about 1%.
const FILTER_PROBES: u32 = 6;

/// The filter is sized for `write_buffer_bytes / FILTER_BYTES_PER_KEY`
/// entries at 10 bits each: each entry is charged at least
/// `ENTRY_OVERHEAD_BYTES` plus its bytes, so a full memtable of small
/// entries has about this many, and larger entries get more bits each.
/// The filter's memory is about 1.6% of the memtable budget.
const FILTER_BYTES_PER_KEY: usize = 80;

impl KeyFilter {
    fn new(capacity_bytes: usize) -> Self {
        let bits = (capacity_bytes / FILTER_BYTES_PER_KEY).max(1) * 10;
        let blocks = bits.div_ceil(512).max(1);
        KeyFilter {
            blocks: (0..blocks).map(|_| FilterBlock::default()).collect(),
        }
    }

    /// The block of `h` and, for each probe, its word and bit mask.
    fn probes(&self, h: u64) -> (Option<&FilterBlock>, impl Iterator<Item = (usize, u64)>) {
        // Multiply-shift maps the high half of the hash onto the blocks.
        let n = self.blocks.len() as u64;
        let block = usize::try_from(((h >> 32) * n) >> 32).unwrap_or(0);
        let mut g = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let probes = (0..FILTER_PROBES).map(move |_| {
            let bit = (g & 511) as usize;
            g = g.rotate_right(9);
            (bit >> 6, 1u64 << (bit & 63))
        });
        (self.blocks.get(block), probes)
    }

    fn insert(&self, user_key: &[u8]) {
        let (block, probes) = self.probes(hash64(user_key));
        if let Some(block) = block {
            for (word, mask) in probes {
                if let Some(w) = block.0.get(word) {
                    w.fetch_or(mask, AtomicOrdering::Relaxed);
                }
            }
        }
    }

    /// False only if `user_key` was certainly never inserted.
    fn may_contain(&self, user_key: &[u8]) -> bool {
        let (block, mut probes) = self.probes(hash64(user_key));
        let Some(block) = block else { return true };
        probes.all(|(word, mask)| {
            block
                .0
                .get(word)
                .is_none_or(|w| w.load(AtomicOrdering::Relaxed) & mask != 0)
        })
    }

    fn memory_bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<FilterBlock>()
    }
}

pub(crate) struct MemTable {
    map: SkipMap<MemKey, Box<[u8]>>,
    filter: KeyFilter,
    range_dels: Mutex<Vec<RangeTombstone>>,
    /// Set by the first add, never cleared. Every read asks it (see
    /// `holds_nothing`); written once, its cache line stays shared, where
    /// `counters`' line moves to the writer at every add.
    written: AtomicBool,
    /// Set by the first range delete, before it is pushed: reads skip
    /// `range_dels`' lock (an atomic write of a line every reader shares)
    /// while it is unset, as it almost always is.
    has_range_dels: AtomicBool,
    counters: AddCounters,
    /// Number of the WAL file that holds this memtable's logged writes.
    wal_number: u64,
    /// Set when a write skipped the WAL: this memtable must be flushed
    /// before a clean close, or those writes would be lost.
    unlogged: AtomicBool,
}

/// What every add updates, on a cache line of its own: a reader that
/// touched any field sharing the line would miss on it after each add
/// (perf had the load of `approximate_bytes` by readers at 15% of
/// `get_in`'s own time while a writer ran).
#[repr(align(64))]
struct AddCounters {
    approximate_bytes: AtomicUsize,
    largest_seq: AtomicU64,
}

impl MemTable {
    /// A memtable with a key filter sized for a 4 MiB budget (tests, fuzz
    /// targets and benches; the database uses `with_budget`).
    #[cfg(any(test, feature = "fuzzing", feature = "bench-internals"))]
    pub(crate) fn new(wal_number: u64) -> Self {
        Self::with_budget(wal_number, 4 << 20)
    }

    /// A memtable expected to fill up to about `write_buffer_bytes` (its
    /// key filter is sized for that; more entries only raise its false
    /// positive rate).
    pub(crate) fn with_budget(wal_number: u64, write_buffer_bytes: usize) -> Self {
        MemTable {
            map: SkipMap::new(),
            filter: KeyFilter::new(write_buffer_bytes),
            range_dels: Mutex::new(Vec::new()),
            written: AtomicBool::new(false),
            has_range_dels: AtomicBool::new(false),
            counters: AddCounters {
                approximate_bytes: AtomicUsize::new(0),
                largest_seq: AtomicU64::new(0),
            },
            wal_number,
            unlogged: AtomicBool::new(false),
        }
    }

    pub(crate) fn wal_number(&self) -> u64 {
        self.wal_number
    }

    /// Adds one update. REQUIRES: `seq` not yet published to readers.
    pub(crate) fn add(&self, seq: u64, kind: ValueKind, user_key: &[u8], value: &[u8]) {
        let charge = user_key.len() + value.len() + ENTRY_OVERHEAD_BYTES;
        // Written once (see the fields): a read-only check on later adds.
        // Relaxed: a reader sees them through the sequence number's
        // publication, which follows this add.
        if !self.written.load(AtomicOrdering::Relaxed) {
            self.written.store(true, AtomicOrdering::Relaxed);
        }
        if kind == ValueKind::RangeDelete {
            if !self.has_range_dels.load(AtomicOrdering::Relaxed) {
                self.has_range_dels.store(true, AtomicOrdering::Relaxed);
            }
            let t = RangeTombstone {
                start: user_key.to_vec(),
                end: value.to_vec(),
                seq,
            };
            self.range_dels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t);
        } else {
            // Filter first: see `KeyFilter`.
            self.filter.insert(user_key);
            self.map
                .insert(MemKey::from_parts(user_key, seq, kind), value.into());
        }
        self.counters
            .approximate_bytes
            .fetch_add(charge, AtomicOrdering::Relaxed);
        self.counters
            .largest_seq
            .fetch_max(seq, AtomicOrdering::Relaxed);
    }

    /// The newest version of `user_key` with sequence number <= `seq`.
    pub(crate) fn get(&self, user_key: &[u8], seq: u64) -> Option<MemLookup> {
        if self.holds_nothing() || !self.filter.may_contain(user_key) {
            return None;
        }
        let lookup = MemKey::lookup(user_key, seq);
        let entry = self.map.lower_bound(Bound::Included(&lookup))?;
        let parsed = key::parse_internal_key(entry.key().as_bytes())?;
        if parsed.user_key != user_key {
            return None;
        }
        Some(match parsed.kind {
            ValueKind::Value => MemLookup::Value(parsed.seq, entry.value().to_vec()),
            ValueKind::Delete | ValueKind::RangeDelete => MemLookup::Deleted(parsed.seq),
        })
    }

    /// The range tombstones written to this memtable.
    pub(crate) fn range_tombstones(&self) -> Vec<RangeTombstone> {
        if !self.has_range_dels.load(AtomicOrdering::Relaxed) {
            return Vec::new();
        }
        self.range_dels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Largest sequence number covering `user_key` among this memtable's
    /// range tombstones that a reader at `read_seq` sees, or 0.
    pub(crate) fn max_covering_tombstone(&self, user_key: &[u8], read_seq: u64) -> u64 {
        if !self.has_range_dels.load(AtomicOrdering::Relaxed) {
            return 0;
        }
        let dels = self.range_dels.lock().unwrap_or_else(|e| e.into_inner());
        dels.iter()
            .filter(|t| t.seq <= read_seq && t.covers(user_key))
            .map(|t| t.seq)
            .max()
            .unwrap_or(0)
    }

    /// Bytes of entries held, including an estimate of skiplist overhead
    /// (what fills the memtable up to `write_buffer_bytes`).
    pub(crate) fn approximate_bytes(&self) -> usize {
        self.counters
            .approximate_bytes
            .load(AtomicOrdering::Relaxed)
    }

    /// `approximate_bytes` plus the key filter.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.approximate_bytes() + self.filter.memory_bytes()
    }

    /// True when nothing was ever added: a load of one flag, where a
    /// probe of the key filter (a megabyte of bits for a 64 MiB memtable)
    /// is a cache miss, which an empty memtable (after a flush or an idle
    /// compaction) would charge every read. A reader that took its
    /// sequence number before asking sees every add up to it: the writer
    /// sets the flag before publishing its sequence number.
    pub(crate) fn holds_nothing(&self) -> bool {
        !self.written.load(AtomicOrdering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
            && self
                .range_dels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    pub(crate) fn mark_unlogged(&self) {
        self.unlogged.store(true, AtomicOrdering::Relaxed);
    }

    pub(crate) fn has_unlogged(&self) -> bool {
        self.unlogged.load(AtomicOrdering::Relaxed)
    }

    pub(crate) fn largest_seq(&self) -> u64 {
        self.counters.largest_seq.load(AtomicOrdering::Relaxed)
    }
}

/// Entries taken out of the skiplist per refill. The crossbeam entry
/// borrows the map, so a self-contained iterator copies a window of
/// entries out and re-seeks after it. The window starts small after a seek
/// (a point seek reads a few entries) and doubles while a scan continues,
/// so a long scan pays one O(log n) seek per `WINDOW_MAX` entries.
const WINDOW_MIN: usize = 4;
const WINDOW_MAX: usize = 256;
/// A refill stops once the window's copied values pass this (it always
/// takes at least one entry), so large values never make a window large.
const WINDOW_BYTES_MAX: usize = 256 << 10;

/// An iterator over a memtable (held by `Arc`) in one direction.
pub(crate) struct MemTableIterator {
    mem: Arc<MemTable>,
    dir: Direction,
    /// Each window entry's key and where its value lies in `values`.
    window: Vec<(MemKey, std::ops::Range<usize>)>,
    /// The window's values, copied: a copy of a value the scan reads anyway
    /// cost less than sharing it (`Arc`), whose count lives on the value's
    /// own allocation and took two atomic updates per entry: readseq +19-45%,
    /// seekrandom +12-25% (`docs/benchmarks.md`).
    values: Vec<u8>,
    /// Entries the next refill takes.
    window_len: usize,
    pos: usize,
    exhausted: bool,
}

impl MemTableIterator {
    pub(crate) fn new(mem: Arc<MemTable>, dir: Direction) -> Self {
        MemTableIterator {
            mem,
            dir,
            window: Vec::new(),
            values: Vec::new(),
            window_len: WINDOW_MIN,
            pos: 0,
            exhausted: true,
        }
    }

    /// Refills the window starting at `from` (inclusive or exclusive).
    fn fill(&mut self, from: Bound<&MemKey>) {
        self.window.clear();
        self.values.clear();
        self.pos = 0;
        let n = self.window_len;
        let (window, values) = (&mut self.window, &mut self.values);
        // False once the window is full (by entries or by bytes).
        let mut take = |k: &MemKey, v: &[u8]| {
            let start = values.len();
            values.extend_from_slice(v);
            window.push((k.clone(), start..values.len()));
            window.len() < n && values.len() < WINDOW_BYTES_MAX
        };
        // `all` stops at the entry that fills the window: true means the map
        // ran out first.
        self.exhausted = match self.dir {
            Direction::Forward => self
                .mem
                .map
                .range((from, Bound::Unbounded))
                .all(|e| take(e.key(), e.value())),
            Direction::Reverse => self
                .mem
                .map
                .range((Bound::Unbounded, from))
                .rev()
                .all(|e| take(e.key(), e.value())),
        };
    }
}

impl InternalIterator for MemTableIterator {
    fn seek_to_first(&mut self) {
        self.window_len = WINDOW_MIN;
        self.fill(Bound::Unbounded);
    }

    fn seek(&mut self, target: &[u8]) {
        self.window_len = WINDOW_MIN;
        let t = MemKey::new(target);
        self.fill(Bound::Included(&t));
    }

    fn next(&mut self) {
        self.pos += 1;
        if self.pos < self.window.len() || self.exhausted {
            return;
        }
        if let Some((last, _)) = self.window.last() {
            let last = last.clone();
            self.window_len = (self.window_len * 2).min(WINDOW_MAX);
            self.fill(Bound::Excluded(&last));
        }
    }

    fn valid(&self) -> bool {
        self.pos < self.window.len()
    }

    fn key(&self) -> &[u8] {
        self.window
            .get(self.pos)
            .map(|(k, _)| k.as_bytes())
            .unwrap_or(&[])
    }

    fn value(&self) -> &[u8] {
        self.window
            .get(self.pos)
            .and_then(|(_, v)| self.values.get(v.clone()))
            .unwrap_or(&[])
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_filter_never_hides_an_inserted_key_and_rejects_most_others() {
        // No false negatives, whatever the fill; about 1% false positives
        // at the planned fill (10 bits per key).
        let f = KeyFilter::new(80 * 10_000);
        for i in 0..10_000u32 {
            f.insert(format!("key{i}").as_bytes());
        }
        for i in 0..10_000u32 {
            assert!(f.may_contain(format!("key{i}").as_bytes()), "key{i}");
        }
        let false_positives = (0..10_000u32)
            .filter(|i| f.may_contain(format!("other{i}").as_bytes()))
            .count();
        assert!(false_positives < 300, "{false_positives} of 10000");
        // Overfilled ten times: still no false negatives.
        for i in 10_000..100_000u32 {
            f.insert(format!("key{i}").as_bytes());
        }
        assert!((0..100_000u32).all(|i| f.may_contain(format!("key{i}").as_bytes())));
    }

    #[test]
    fn lookups_skip_the_skiplist_only_for_keys_never_added() {
        // The filter sits in front of `get`: a deleted key is still found
        // (as deleted), an absent one is not.
        let m = MemTable::with_budget(1, 4096);
        for i in 0..2_000u32 {
            m.add(
                u64::from(i) + 1,
                ValueKind::Value,
                format!("k{i}").as_bytes(),
                b"v",
            );
        }
        m.add(5_000, ValueKind::Delete, b"k7", b"");
        assert_eq!(m.get(b"k7", 5_000), Some(MemLookup::Deleted(5_000)));
        assert_eq!(
            m.get(b"k8", 5_000),
            Some(MemLookup::Value(9, b"v".to_vec()))
        );
        assert_eq!(m.get(b"absent", 5_000), None);
    }

    #[test]
    fn keys_built_in_place_equal_encoded_keys() {
        // The write path's in-place key is the same key as the encoded one,
        // on both sides of the inline limit.
        for len in [0, 1, 23, 24, 25, 100] {
            let user_key = vec![b'x'; len];
            for (seq, kind) in [(1, ValueKind::Value), (77, ValueKind::Delete)] {
                let encoded = key::make_internal_key(&user_key, seq, kind);
                let built = MemKey::from_parts(&user_key, seq, kind);
                assert_eq!(built.as_bytes(), encoded.as_slice(), "len {len}");
                assert_eq!(built, MemKey::new(&encoded));
                let lookup = key::lookup_key(&user_key, seq);
                assert_eq!(MemKey::lookup(&user_key, seq).as_bytes(), lookup.as_slice());
            }
        }
    }

    #[test]
    fn get_returns_newest_version_visible_at_seq() {
        // A lookup at a snapshot skips versions written after it.
        let m = MemTable::new(1);
        m.add(1, ValueKind::Value, b"k", b"v1");
        m.add(5, ValueKind::Value, b"k", b"v5");
        m.add(9, ValueKind::Delete, b"k", b"");
        assert_eq!(m.get(b"k", 4), Some(MemLookup::Value(1, b"v1".to_vec())));
        assert_eq!(m.get(b"k", 8), Some(MemLookup::Value(5, b"v5".to_vec())));
        assert_eq!(m.get(b"k", 9), Some(MemLookup::Deleted(9)));
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"j", 9), None);
    }

    #[test]
    fn large_values_keep_the_window_small_and_read_back_whole() {
        // The window copies values, so it is cut by bytes as well as by
        // entries: 64 KiB values give windows of a few entries, and every
        // value still reads back whole and in order, in both directions.
        let m = Arc::new(MemTable::new(1));
        let value = |i: u32| vec![(i % 251) as u8; 64 << 10];
        for i in 0..40u32 {
            m.add(
                u64::from(i) + 1,
                ValueKind::Value,
                format!("k{i:02}").as_bytes(),
                &value(i),
            );
        }
        for dir in [Direction::Forward, Direction::Reverse] {
            let mut it = MemTableIterator::new(m.clone(), dir);
            it.seek_to_first();
            let mut seen = Vec::new();
            while it.valid() {
                assert!(it.values.len() <= WINDOW_BYTES_MAX + (64 << 10));
                let i: u32 = std::str::from_utf8(&key::user_key(it.key())[1..])
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(it.value(), &value(i)[..]);
                seen.push(i);
                it.next();
            }
            let mut want: Vec<u32> = (0..40).collect();
            if dir == Direction::Reverse {
                want.reverse();
            }
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn iterator_walks_both_directions_across_windows() {
        // Window refills never skip or repeat entries, forward or reverse.
        let m = Arc::new(MemTable::new(1));
        for i in 0..500u32 {
            m.add(
                u64::from(i) + 1,
                ValueKind::Value,
                format!("k{i:04}").as_bytes(),
                b"v",
            );
        }
        let mut fwd = MemTableIterator::new(m.clone(), Direction::Forward);
        fwd.seek_to_first();
        let mut n = 0;
        let mut prev: Option<Vec<u8>> = None;
        while fwd.valid() {
            if let Some(p) = &prev {
                assert_eq!(key::compare_internal(p, fwd.key()), Ordering::Less);
            }
            prev = Some(fwd.key().to_vec());
            n += 1;
            fwd.next();
        }
        assert_eq!(n, 500);
        let mut rev = MemTableIterator::new(m, Direction::Reverse);
        rev.seek(&key::lookup_key(b"k0250", 0));
        assert_eq!(key::user_key(rev.key()), b"k0250");
        let mut count = 0;
        while rev.valid() {
            count += 1;
            rev.next();
        }
        assert_eq!(count, 251);
    }

    #[test]
    fn inline_and_shared_keys_order_and_read_alike() {
        // Keys on both sides of the inline limit (24-byte user keys inline,
        // 25 and more shared) sort by internal key and read back the same.
        let m = Arc::new(MemTable::new(1));
        let keys: Vec<Vec<u8>> = (20..30).map(|n| vec![b'k'; n]).collect();
        for (i, k) in keys.iter().enumerate().rev() {
            m.add(i as u64 + 1, ValueKind::Value, k, k);
        }
        for k in &keys {
            let found = m.get(k, 100);
            assert!(
                matches!(found, Some(MemLookup::Value(_, ref v)) if v == k),
                "{}",
                k.len()
            );
        }
        let mut it = MemTableIterator::new(m, Direction::Forward);
        it.seek_to_first();
        let mut seen = Vec::new();
        while it.valid() {
            seen.push(key::user_key(it.key()).to_vec());
            it.next();
        }
        assert_eq!(seen, keys);
    }

    #[test]
    fn range_tombstones_cover_only_visible_half_open_range() {
        // [start, end) coverage, filtered by the reader's sequence number.
        let m = MemTable::new(1);
        m.add(10, ValueKind::RangeDelete, b"b", b"d");
        assert_eq!(m.max_covering_tombstone(b"b", 10), 10);
        assert_eq!(m.max_covering_tombstone(b"c", 10), 10);
        assert_eq!(m.max_covering_tombstone(b"d", 10), 0);
        assert_eq!(m.max_covering_tombstone(b"c", 9), 0);
    }
}
