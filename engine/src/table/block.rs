//! A decoded block (data or index) and a cursor over it. The byte layout is
//! in `block_builder.rs` and `docs/format.md`.
//!
//! Everything from disk is distrusted: [`Block::new`] validates the restart
//! array, and the cursor bounds-checks every entry as it decodes it. A bad
//! block yields a [`BlockError`] (offset within the block and a reason),
//! which the table reader turns into a corruption error naming the file;
//! it never panics and never yields bytes from outside an entry.
//!
//! Forward steps decode one entry at a time. Backward steps decode the
//! current restart interval into a small buffer once and walk it, so
//! reverse iteration costs about the same as forward and never decodes
//! more than one interval ahead of the cursor.

use crate::key::{self, compare_internal};
use crate::util::coding::{Decoder, decode_fixed32};
use std::cmp::Ordering;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// Bad bytes inside a block: where (offset within the decoded block) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockError {
    pub offset: usize,
    pub reason: &'static str,
}

fn bad<T>(offset: usize, reason: &'static str) -> Result<T, BlockError> {
    Err(BlockError { offset, reason })
}

/// A block's bytes with its validated restart array. Immutable; shared by
/// the block cache and every iterator positioned in it through `Arc`.
#[derive(Debug)]
pub(crate) struct Block {
    data: Vec<u8>,
    restarts: Vec<u32>,
    /// Offset where entries end and the restart array begins.
    entries_end: usize,
    /// Index blocks and cached data blocks want fences (`with_fences`):
    /// the most bytes they can hold, charged before they exist; 0 for none.
    fence_bytes_max: usize,
    /// The fences, built at the block's first seek, not when it is read: a
    /// scan loads every block into the cache and seeks in none of them, and
    /// building fences for each had cost 5% of a first full scan.
    fences: OnceLock<Option<Fences>>,
}

/// The restart keys of a block, each cut to 8 bytes, so that a seek
/// binary-searches a dense array of integers instead of decoding a key at
/// every probe (two cache misses each: the restart offset, then the key).
/// A table's index has a restart per data block, tens of thousands in a
/// 64 MiB table: profiles of `seekrandom` put that search at about a fifth
/// of a seek (`docs/benchmarks.md`).
///
/// `prefix` is the part every restart key's user key starts with (numeric
/// or namespaced keys share a long one); a key's fence is the 8 bytes of
/// its user key after `prefix`, big-endian, zero-padded. A smaller fence
/// means a smaller user key, hence a smaller internal key, so only the
/// restarts whose fence equals the target's need their keys compared.
#[derive(Debug)]
struct Fences {
    prefix: Vec<u8>,
    keys: Vec<u64>,
    /// Every `SAMPLE`-th fence: a seek searches these first (a few KiB,
    /// which stay in the CPU cache), then one group of `keys` (two cache
    /// lines), where a binary search over all of `keys` missed the cache at
    /// each of its last probes.
    sample: Vec<u64>,
}

/// Fences per group of `Fences::sample`.
const SAMPLE: usize = 16;

/// The 8 bytes after the shared prefix, big-endian, zero-padded.
fn fence(rest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = rest.len().min(8);
    if let (Some(dst), Some(src)) = (bytes.get_mut(..n), rest.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_be_bytes(bytes)
}

/// How many of `keys` (sorted, none below `t`) equal `t`. Galloping: runs
/// are short (most fences are distinct), so the answer is found in the
/// cache line `keys` starts in; a binary search over the whole rest would
/// cost a cache miss per probe all over again, and profiles had it at half
/// of the fence search.
fn run_of(keys: &[u64], t: u64) -> usize {
    let mut end = 1;
    while keys.get(end - 1).is_some_and(|&k| k == t) {
        end *= 2;
    }
    // keys[..end / 2] equal t, and the run ends before `end`.
    let from = end / 2;
    let window = keys.get(from..end.min(keys.len())).unwrap_or(&[]);
    from + window.partition_point(|&k| k == t)
}

impl Fences {
    /// Fences for `block`'s restart keys, or None when a restart key does
    /// not decode or the keys are out of order: such a block is searched
    /// key by key, exactly as without fences, and reports its damage there.
    fn build(block: &Block) -> Option<Fences> {
        let n = block.restarts.len();
        if block.is_empty() {
            return None;
        }
        let first = key::user_key(block.restart_key(0).ok()?);
        let last = key::user_key(block.restart_key(n - 1).ok()?);
        let shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let prefix = first.get(..shared)?.to_vec();
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            let rest = key::user_key(block.restart_key(i).ok()?).strip_prefix(prefix.as_slice())?;
            let f = fence(rest);
            if keys.last().is_some_and(|&prev| prev > f) {
                return None;
            }
            keys.push(f);
        }
        let sample = keys.iter().step_by(SAMPLE).copied().collect();
        Some(Fences {
            prefix,
            keys,
            sample,
        })
    }

    /// The restarts whose keys may compare either way with `target`: those
    /// before the range are certainly smaller, those after it larger.
    fn candidates(&self, target: &[u8]) -> Range<usize> {
        let user = key::user_key(target);
        match user.strip_prefix(self.prefix.as_slice()) {
            Some(rest) => {
                let t = fence(rest);
                let lo = self.lower_bound(t);
                lo..lo + run_of(self.keys.get(lo..).unwrap_or(&[]), t)
            }
            // Not starting with the prefix, the target's user key is
            // smaller or larger than every key that does.
            None if user < self.prefix.as_slice() => 0..0,
            None => self.keys.len()..self.keys.len(),
        }
    }

    /// The first fence >= `t`, or `keys.len()`.
    fn lower_bound(&self, t: u64) -> usize {
        // Group g starts at keys[g * SAMPLE] == sample[g]. The first sampled
        // fence >= t is group `g`'s, so the answer lies after the start of
        // group g - 1 and at or before the start of group g.
        let g = self.sample.partition_point(|&k| k < t);
        let Some(prev) = g.checked_sub(1) else {
            return 0;
        };
        let from = prev * SAMPLE + 1;
        let to = (g * SAMPLE).min(self.keys.len());
        let group = self.keys.get(from..to).unwrap_or(&[]);
        from + group.partition_point(|&k| k < t)
    }

    /// Bytes the fences hold (the block's charge estimates this up front).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.prefix.capacity() + 8 * (self.keys.capacity() + self.sample.capacity())
    }
}

/// Where one entry's parts lie in the block.
struct Entry {
    shared: usize,
    key_delta: Range<usize>,
    value: Range<usize>,
}

impl Block {
    /// Parses and validates the restart array: at least one restart, the
    /// first at 0, strictly increasing, all inside the entry area (a block
    /// with no entries has exactly the restart 0).
    pub(crate) fn new(data: Vec<u8>) -> Result<Block, BlockError> {
        let Some(count_at) = data.len().checked_sub(4) else {
            return bad(0, "block shorter than its restart count");
        };
        let num = data.get(count_at..).and_then(decode_fixed32).unwrap_or(0) as usize;
        if num == 0 {
            return bad(count_at, "block has no restart points");
        }
        let Some(entries_end) = num.checked_mul(4).and_then(|a| count_at.checked_sub(a)) else {
            return bad(count_at, "restart array larger than the block");
        };
        let mut d = Decoder::new(data.get(entries_end..count_at).unwrap_or(&[]));
        let mut restarts = Vec::with_capacity(num);
        while let Some(r) = d.fixed32() {
            let ok = match restarts.last() {
                None => r == 0,
                Some(&prev) => r > prev,
            };
            let inside = (r as usize) < entries_end || (entries_end == 0 && num == 1);
            if !ok || !inside {
                return bad(
                    entries_end + 4 * restarts.len(),
                    "restart offset out of order or out of range",
                );
            }
            restarts.push(r);
        }
        Ok(Block {
            data,
            restarts,
            entries_end,
            fence_bytes_max: 0,
            fences: OnceLock::new(),
        })
    }

    /// [`Block::new`], plus fences over the restart keys for faster seeks
    /// (built at the first seek): for blocks searched often and kept long,
    /// a table's index and the data blocks the block cache holds.
    pub(crate) fn with_fences(data: Vec<u8>) -> Result<Block, BlockError> {
        let mut block = Block::new(data)?;
        // 8 bytes a restart, an eighth more for the sample, and the shared
        // prefix, which is part of the first restart's user key.
        let n = block.restarts.len();
        let prefix_max = block.restart_key(0).map_or(0, |k| key::user_key(k).len());
        block.fence_bytes_max = 8 * (n + n.div_ceil(SAMPLE)) + prefix_max;
        Ok(block)
    }

    /// The fences, built on first use; None for a block without them (or
    /// whose restart keys did not allow them).
    fn fences(&self) -> Option<&Fences> {
        if self.fence_bytes_max == 0 {
            return None;
        }
        self.fences.get_or_init(|| Fences::build(self)).as_ref()
    }

    /// Bytes this block holds in memory (its charge in the block cache).
    /// Fences count at their most before they are built, so the charge
    /// never changes while the cache holds the block.
    pub(crate) fn charge(&self) -> usize {
        self.data.capacity()
            + 4 * self.restarts.capacity()
            + self.fence_bytes_max
            + std::mem::size_of::<Block>()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries_end == 0
    }

    fn restart(&self, i: usize) -> usize {
        self.restarts
            .get(i)
            .map_or(self.entries_end, |&r| r as usize)
    }

    /// End of restart interval `i`: the next restart or the entry area's end.
    fn interval_end(&self, i: usize) -> usize {
        self.restart(i + 1)
    }

    fn decode_entry(&self, offset: usize) -> Result<Entry, BlockError> {
        let mut d = Decoder::new(self.data.get(offset..self.entries_end).unwrap_or(&[]));
        let (Some(shared), Some(non_shared), Some(value_len)) =
            (d.varint32(), d.varint32(), d.varint32())
        else {
            return bad(offset, "truncated entry header");
        };
        let key_start = offset + d.position();
        let value_start = key_start.checked_add(non_shared as usize);
        let end = value_start.and_then(|v| v.checked_add(value_len as usize));
        match (value_start, end) {
            (Some(value_start), Some(end)) if end <= self.entries_end => Ok(Entry {
                shared: shared as usize,
                key_delta: key_start..value_start,
                value: value_start..end,
            }),
            _ => bad(offset, "entry overruns the block"),
        }
    }

    fn slice(&self, r: Range<usize>) -> &[u8] {
        // Ranges come from `decode_entry`, which bounds them by the block.
        self.data.get(r).unwrap_or(&[])
    }

    /// The whole key stored at restart point `i` (it shares no prefix).
    fn restart_key(&self, i: usize) -> Result<&[u8], BlockError> {
        let offset = self.restart(i);
        let e = self.decode_entry(offset)?;
        if e.shared != 0 {
            return bad(offset, "restart entry shares a prefix");
        }
        Ok(self.slice(e.key_delta))
    }
}

/// One decoded entry of the reverse buffer.
struct Buffered {
    key: Range<usize>,
    value: Range<usize>,
    offset: usize,
}

/// A cursor over one block's entries, movable both ways (the table iterator
/// moves its index cursor backwards after a forward seek). Keys compare with
/// `compare_internal`.
pub(crate) struct BlockIter {
    block: Arc<Block>,
    valid: bool,
    key: Vec<u8>,
    value: Range<usize>,
    /// Offset of the current entry and of the one after it.
    offset: usize,
    next_offset: usize,
    /// The restart interval holding the current entry.
    restart: usize,
    /// Entries of restart interval `buf_restart`, for backward steps.
    buf: Vec<Buffered>,
    buf_keys: Vec<u8>,
    buf_restart: Option<usize>,
    buf_pos: usize,
    err: Option<BlockError>,
}

impl BlockIter {
    pub(crate) fn new(block: Arc<Block>) -> Self {
        BlockIter {
            block,
            valid: false,
            key: Vec::new(),
            value: 0..0,
            offset: 0,
            next_offset: 0,
            restart: 0,
            buf: Vec::new(),
            buf_keys: Vec::new(),
            buf_restart: None,
            buf_pos: 0,
            err: None,
        }
    }

    pub(crate) fn valid(&self) -> bool {
        self.valid
    }

    /// The current key; empty when not valid.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current value; empty when not valid.
    pub(crate) fn value(&self) -> &[u8] {
        self.block.slice(self.value.clone())
    }

    /// The first bad bytes met; once set, the cursor stays invalid.
    pub(crate) fn error(&self) -> Option<BlockError> {
        self.err
    }

    fn fail(&mut self, e: BlockError) {
        self.valid = false;
        self.err.get_or_insert(e);
    }

    pub(crate) fn seek_to_first(&mut self) {
        self.seek_to_restart(0);
    }

    pub(crate) fn seek_to_last(&mut self) {
        if self.err.is_some() || self.block.is_empty() {
            self.valid = false;
            return;
        }
        let last = self.block.restarts.len() - 1;
        if let Err(e) = self.load_interval(last) {
            return self.fail(e);
        }
        self.set_from_buf(self.buf.len().saturating_sub(1));
    }

    /// Positions at the first entry with key >= `target`.
    pub(crate) fn seek_ge(&mut self, target: &[u8]) {
        if self.err.is_some() || self.block.is_empty() {
            self.valid = false;
            return;
        }
        // The last restart whose key is < target: the answer is at or after it.
        let found = self.search_restarts(target, |k| compare_internal(k, target) == Ordering::Less);
        match found {
            Err(e) => self.fail(e),
            Ok(i) => {
                self.seek_to_restart(i.unwrap_or(0));
                while self.valid && compare_internal(&self.key, target) == Ordering::Less {
                    self.next();
                }
            }
        }
    }

    /// Positions at the last entry with key <= `target`.
    pub(crate) fn seek_le(&mut self, target: &[u8]) {
        if self.err.is_some() || self.block.is_empty() {
            self.valid = false;
            return;
        }
        // The last restart whose key is <= target: the answer is in its interval.
        let at_most = |k: &[u8]| compare_internal(k, target) != Ordering::Greater;
        let i = match self.search_restarts(target, at_most) {
            Err(e) => return self.fail(e),
            Ok(None) => {
                self.valid = false;
                return;
            }
            Ok(Some(i)) => i,
        };
        if let Err(e) = self.load_interval(i) {
            return self.fail(e);
        }
        let buf_keys = &self.buf_keys;
        let pos = self.buf.iter().rposition(|b| {
            let k = buf_keys.get(b.key.clone()).unwrap_or(&[]);
            compare_internal(k, target) != Ordering::Greater
        });
        self.set_from_buf(pos.unwrap_or(0));
    }

    /// The last restart index whose key satisfies `pred`, or None if it
    /// holds for none. `pred` compares a key with `target` and holds for
    /// the smaller keys (or the smaller and equal ones), so for a prefix of
    /// the restarts; fences narrow the keys it must be asked about.
    fn search_restarts(
        &self,
        target: &[u8],
        pred: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<usize>, BlockError> {
        let Range { start, end } = match self.block.fences() {
            Some(f) => f.candidates(target),
            None => 0..self.block.restarts.len(),
        };
        // The first restart in start..end for which `pred` fails.
        let (mut lo, mut hi) = (start, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.block.restart_key(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.checked_sub(1))
    }

    fn seek_to_restart(&mut self, i: usize) {
        if self.err.is_some() || self.block.is_empty() {
            self.valid = false;
            return;
        }
        self.restart = i;
        self.key.clear();
        self.decode_at(self.block.restart(i));
    }

    /// Moves to the next entry (forward).
    pub(crate) fn next(&mut self) {
        if self.valid {
            self.decode_at(self.next_offset);
        }
    }

    /// Decodes the entry at `offset`, whose predecessor's key is in `self.key`
    /// (empty at a restart), tracking which restart interval it is in.
    fn decode_at(&mut self, offset: usize) {
        if offset >= self.block.entries_end {
            self.valid = false;
            return;
        }
        let next_restart = self.block.restart(self.restart + 1);
        if offset == next_restart {
            self.restart += 1;
        } else if offset > next_restart {
            return self.fail(BlockError {
                offset,
                reason: "entry straddles a restart point",
            });
        }
        let at_restart = offset == self.block.restart(self.restart);
        let e = match self.block.decode_entry(offset) {
            Ok(e) => e,
            Err(e) => return self.fail(e),
        };
        if (at_restart && e.shared != 0) || e.shared > self.key.len() {
            return self.fail(BlockError {
                offset,
                reason: "shared key prefix longer than the previous key",
            });
        }
        // The same rule `load_interval` applies: an entry ending past the
        // next restart means that restart points into this entry's bytes,
        // and a seek starting there would decode a value as an entry.
        if e.value.end > self.block.interval_end(self.restart) {
            return self.fail(BlockError {
                offset,
                reason: "entry straddles a restart point",
            });
        }
        self.key.truncate(e.shared);
        self.key.extend_from_slice(self.block.slice(e.key_delta));
        self.offset = offset;
        self.next_offset = e.value.end;
        self.value = e.value;
        self.valid = true;
    }

    /// Moves to the previous entry (backward).
    pub(crate) fn prev(&mut self) {
        if !self.valid {
            return;
        }
        let buffered = self.buf_restart == Some(self.restart)
            && self.buf.get(self.buf_pos).map(|b| b.offset) == Some(self.offset);
        if !buffered {
            if let Err(e) = self.load_interval(self.restart) {
                return self.fail(e);
            }
            match self.buf.iter().position(|b| b.offset == self.offset) {
                Some(pos) => self.buf_pos = pos,
                None => {
                    let offset = self.offset;
                    return self.fail(BlockError {
                        offset,
                        reason: "entry not found in its restart interval",
                    });
                }
            }
        }
        if self.buf_pos > 0 {
            self.set_from_buf(self.buf_pos - 1);
        } else if self.restart == 0 {
            self.valid = false;
        } else {
            if let Err(e) = self.load_interval(self.restart - 1) {
                return self.fail(e);
            }
            self.set_from_buf(self.buf.len().saturating_sub(1));
        }
    }

    /// Decodes every entry of restart interval `i` into the buffer.
    fn load_interval(&mut self, i: usize) -> Result<(), BlockError> {
        self.buf.clear();
        self.buf_keys.clear();
        self.buf_restart = None;
        let end = self.block.interval_end(i);
        let mut offset = self.block.restart(i);
        let mut prev_key = 0..0;
        while offset < end {
            let e = self.block.decode_entry(offset)?;
            if e.value.end > end {
                return bad(offset, "entry straddles a restart point");
            }
            let first = self.buf.is_empty();
            if (first && e.shared != 0) || e.shared > prev_key.len() {
                return bad(offset, "shared key prefix longer than the previous key");
            }
            let start = self.buf_keys.len();
            self.buf_keys
                .extend_from_within(prev_key.start..prev_key.start + e.shared);
            self.buf_keys
                .extend_from_slice(self.block.slice(e.key_delta));
            prev_key = start..self.buf_keys.len();
            self.buf.push(Buffered {
                key: prev_key.clone(),
                value: e.value.clone(),
                offset,
            });
            offset = e.value.end;
        }
        self.buf_restart = Some(i);
        Ok(())
    }

    fn set_from_buf(&mut self, pos: usize) {
        let (Some(i), Some(b)) = (self.buf_restart, self.buf.get(pos)) else {
            self.valid = false;
            return;
        };
        self.key.clear();
        self.key
            .extend_from_slice(self.buf_keys.get(b.key.clone()).unwrap_or(&[]));
        self.value = b.value.clone();
        self.offset = b.offset;
        self.next_offset = b.value.end;
        self.restart = i;
        self.buf_pos = pos;
        self.valid = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, make_internal_key};
    use crate::table::block_builder::BlockBuilder;

    /// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn random_entries(rng: &mut Rng, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
            .map(|i| {
                let user = format!("key{:06}", rng.next() % 5000).into_bytes();
                let k = make_internal_key(&user, rng.next() % 100, ValueKind::Value);
                (k, format!("v{i}").into_bytes())
            })
            .collect();
        v.sort_by(|a, b| compare_internal(&a.0, &b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v
    }

    fn build(entries: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Arc<Block> {
        let mut b = BlockBuilder::new(interval);
        for (k, v) in entries {
            b.add(k, v);
        }
        Arc::new(Block::new(b.finish()).unwrap())
    }

    fn collect_forward(it: &mut BlockIter) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while it.valid() {
            out.push((it.key().to_vec(), it.value().to_vec()));
            it.next();
        }
        out
    }

    #[test]
    fn block_roundtrips_with_prefix_compression_and_restarts() {
        // Every entry comes back in order both ways; shared prefixes shrink
        // the block; one restart per `interval` entries.
        let entries = random_entries(&mut Rng(7), 500);
        let block = build(&entries, 16);
        assert_eq!(block.restarts.len(), entries.len().div_ceil(16));
        let raw: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(block.entries_end < raw, "{} !< {raw}", block.entries_end);
        let mut it = BlockIter::new(Arc::clone(&block));
        it.seek_to_first();
        assert_eq!(collect_forward(&mut it), entries);
        it.seek_to_last();
        let mut back = Vec::new();
        while it.valid() {
            back.push((it.key().to_vec(), it.value().to_vec()));
            it.prev();
        }
        back.reverse();
        assert_eq!(back, entries);
        assert_eq!(it.error(), None);
    }

    #[test]
    fn empty_block_roundtrips_and_is_never_valid() {
        // A block with no entries (an empty table's index) decodes and iterates as empty.
        let block = build(&[], 16);
        assert!(block.is_empty());
        let mut it = BlockIter::new(block);
        it.seek_to_first();
        assert!(!it.valid());
        it.seek_to_last();
        assert!(!it.valid());
        it.seek_ge(b"anything");
        assert!(!it.valid());
        assert_eq!(it.error(), None);
    }

    #[test]
    fn block_seek_matches_sorted_vec_both_directions() {
        // seek_ge = first >= target, seek_le = last <= target, and stepping
        // from there in either direction matches a sorted Vec.
        let mut rng = Rng(42);
        for interval in [1, 2, 16] {
            let entries = random_entries(&mut rng, 300);
            let block = build(&entries, interval);
            let mut it = BlockIter::new(block);
            for _ in 0..300 {
                let user = format!("key{:06}", rng.next() % 5100);
                let target = make_internal_key(user.as_bytes(), rng.next() % 100, ValueKind::Value);
                let ge = entries
                    .partition_point(|(k, _)| compare_internal(k, &target) == Ordering::Less);
                it.seek_ge(&target);
                assert_eq!(it.valid(), ge < entries.len());
                if it.valid() {
                    assert_eq!(it.key(), &entries[ge].0[..]);
                    it.prev();
                    assert_eq!(it.valid(), ge > 0);
                    if ge > 0 {
                        assert_eq!(it.key(), &entries[ge - 1].0[..]);
                        assert_eq!(it.value(), &entries[ge - 1].1[..]);
                    }
                }
                let le = entries
                    .partition_point(|(k, _)| compare_internal(k, &target) != Ordering::Greater);
                it.seek_le(&target);
                assert_eq!(it.valid(), le > 0);
                if le > 0 {
                    assert_eq!(it.key(), &entries[le - 1].0[..]);
                    it.next();
                    assert_eq!(it.valid(), le < entries.len());
                    if le < entries.len() {
                        assert_eq!(it.key(), &entries[le].0[..]);
                    }
                }
            }
            assert_eq!(it.error(), None);
        }
    }

    /// User keys around every edge of a fence: a long shared prefix, keys
    /// shorter than prefix + 8 bytes, keys one is a prefix of, keys equal
    /// in their 8 fence bytes and different after, bytes 0x00 and 0xff.
    fn fence_edge_keys() -> Vec<Vec<u8>> {
        let mut users: Vec<Vec<u8>> = Vec::new();
        for tail in [
            &b""[..],
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgh1",
            b"abcdefgh2",
            b"abcdefghij",
            b"abcdefgi",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            users.push([&b"tenant/0042/"[..], tail].concat());
        }
        users
    }

    #[test]
    fn fenced_seeks_match_a_sorted_vec() {
        // An index block (restart interval 1) with fences answers seek_ge
        // and seek_le as the key-by-key search does, for targets inside the
        // shared prefix, before it, after it, shorter than it, and between
        // versions of one user key.
        let users = fence_edge_keys();
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (i, u) in users.iter().enumerate() {
            for seq in [9, 5, 1] {
                entries.push((make_internal_key(u, seq, ValueKind::Value), vec![i as u8]));
            }
        }
        entries.sort_by(|a, b| compare_internal(&a.0, &b.0));
        let mut b = BlockBuilder::new(1);
        for (k, v) in &entries {
            b.add(k, v);
        }
        let block = Arc::new(Block::with_fences(b.finish()).unwrap());
        let fences = block.fences().expect("sorted restart keys get fences");
        assert_eq!(fences.prefix, b"tenant/0042/");
        assert_eq!(fences.keys.len(), entries.len());

        let mut targets: Vec<Vec<u8>> = Vec::new();
        for u in users.iter().chain(
            [
                b"tenant/0042".to_vec(),
                b"tenant/0041/zzz".to_vec(),
                b"tenant/0043/".to_vec(),
                b"tenant/0042/abcdefgh0".to_vec(),
                b"tenant/0042/abcdefgh3".to_vec(),
                b"".to_vec(),
                vec![0xff; 20],
            ]
            .iter(),
        ) {
            for seq in [10, 9, 7, 5, 1, 0] {
                targets.push(make_internal_key(u, seq, ValueKind::Value));
            }
        }
        let mut it = BlockIter::new(Arc::clone(&block));
        for target in &targets {
            let ge =
                entries.partition_point(|(k, _)| compare_internal(k, target) == Ordering::Less);
            it.seek_ge(target);
            assert_eq!(it.valid(), ge < entries.len(), "seek_ge {target:?}");
            if let Some((k, _)) = entries.get(ge) {
                assert_eq!(it.key(), &k[..], "seek_ge {target:?}");
            }
            let le =
                entries.partition_point(|(k, _)| compare_internal(k, target) != Ordering::Greater);
            it.seek_le(target);
            assert_eq!(it.valid(), le > 0, "seek_le {target:?}");
            if le > 0 {
                assert_eq!(it.key(), &entries[le - 1].0[..], "seek_le {target:?}");
            }
        }
        assert_eq!(it.error(), None);
    }

    #[test]
    fn sampled_lower_bound_matches_a_full_binary_search() {
        // Group edges, duplicates across them, every length up to a few
        // groups, targets below, between, on and above the fences.
        let mut rng = Rng(11);
        for n in 0..(5 * SAMPLE) {
            let mut keys: Vec<u64> = (0..n).map(|_| rng.next() % 40).collect();
            keys.sort_unstable();
            let sample = keys.iter().step_by(SAMPLE).copied().collect();
            let f = Fences {
                prefix: Vec::new(),
                keys,
                sample,
            };
            for t in 0..42 {
                let want = f.keys.partition_point(|&k| k < t);
                assert_eq!(f.lower_bound(t), want, "n {n}, t {t}");
            }
        }
    }

    #[test]
    fn run_of_counts_equal_fences_at_the_front() {
        // Every run length from 0 to past a power of two, with and without
        // larger fences after it.
        for len in 0..40 {
            for tail in [0, 1, 7] {
                let keys: Vec<u64> = std::iter::repeat_n(5, len)
                    .chain(std::iter::repeat_n(9, tail))
                    .collect();
                assert_eq!(run_of(&keys, 5), len, "run {len}, tail {tail}");
            }
        }
    }

    #[test]
    fn a_block_is_charged_for_its_fences_before_they_are_built() {
        // Fences are built at the first seek, after the cache has charged
        // the block: the charge counts them up front, does not change, and
        // covers what they hold.
        let users = fence_edge_keys();
        let mut b = BlockBuilder::new(1);
        for u in &users {
            b.add(&make_internal_key(u, 1, ValueKind::Value), b"v");
        }
        let block = Arc::new(Block::with_fences(b.finish()).unwrap());
        let plain = Block::new(block.data.clone()).unwrap();
        let before = block.charge();
        let mut it = BlockIter::new(Arc::clone(&block));
        it.seek_ge(&make_internal_key(&users[3], 1, ValueKind::Value));
        assert!(it.valid());
        let fences = block.fences().expect("sorted restart keys get fences");
        assert_eq!(block.charge(), before);
        assert!(before >= plain.charge() + fences.bytes(), "{before}");
    }

    #[test]
    fn out_of_order_restart_keys_get_no_fences() {
        // Fences assume sorted keys; a block whose restart keys are out of
        // order (only damage makes one) is searched key by key instead.
        let mut b = BlockBuilder::new(1);
        for u in [&b"b"[..], b"a", b"c"] {
            b.add(&make_internal_key(u, 1, ValueKind::Value), b"v");
        }
        let block = Block::with_fences(b.finish()).unwrap();
        assert!(block.fences().is_none());
        let mut b = BlockBuilder::new(1);
        for u in [&b"a"[..], b"b", b"c"] {
            b.add(&make_internal_key(u, 1, ValueKind::Value), b"v");
        }
        assert!(Block::with_fences(b.finish()).unwrap().fences().is_some());
    }

    #[test]
    fn forward_iteration_rejects_an_entry_straddling_a_restart() {
        // Found by fuzzing (block): the last entry ran over two restart
        // points; forward iteration accepted it while reverse iteration and
        // seeks decoded from inside its value. Both directions now fail.
        let mut data = vec![0, 1, 6, b'a', b'x', b'x', b'x', b'x', b'x', b'x'];
        for r in [0u32, 5, 2] {
            data.extend_from_slice(&r.to_le_bytes());
        }
        let block = Arc::new(Block::new(data).unwrap());
        let mut it = BlockIter::new(Arc::clone(&block));
        it.seek_to_first();
        assert!(!it.valid());
        assert_eq!(
            it.error().map(|e| e.reason),
            Some("entry straddles a restart point")
        );
        let mut it = BlockIter::new(block);
        it.seek_to_last();
        assert!(!it.valid() && it.error().is_some());
    }

    #[test]
    fn damaged_blocks_give_errors_never_panics() {
        // Every single-byte change and every truncation of a block either
        // decodes or reports a BlockError; none panics or loops.
        let entries = random_entries(&mut Rng(3), 40);
        let mut b = BlockBuilder::new(4);
        for (k, v) in &entries {
            b.add(k, v);
        }
        let good = b.finish();
        let probe = make_internal_key(b"key002500", 50, ValueKind::Value);
        let exercise = |data: Vec<u8>| {
            let Ok(block) = Block::new(data) else { return };
            let mut it = BlockIter::new(Arc::new(block));
            it.seek_to_first();
            for _ in 0..200 {
                it.next();
            }
            it.seek_to_last();
            for _ in 0..200 {
                it.prev();
            }
            it.seek_ge(&probe);
            it.prev();
            it.seek_le(&probe);
            it.next();
        };
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut d = good.clone();
                d[i] ^= x;
                exercise(d);
            }
            exercise(good[..i].to_vec());
        }
        assert!(Block::new(vec![0, 0, 0, 0]).is_err());
        assert!(Block::new(vec![0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
