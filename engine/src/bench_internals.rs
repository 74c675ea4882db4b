//! Hot-path entry points for the criterion benches in `benches/`
//! (`cairn-benches`), which cannot reach the engine's `pub(crate)`
//! internals. Compiled only with the `bench-internals` feature; not part
//! of the engine's API. Each wrapper is a thin call into the real code
//! path, so a bench measures what the engine runs.

#![doc(hidden)]

use crate::key::{self, ValueKind};
use crate::memtable::{MemLookup, MemTable};
use crate::table::block::{Block, BlockIter};
use crate::table::block_builder::BlockBuilder;
use crate::table::filter;
use std::sync::Arc;

/// A memtable (crossbeam skiplist of internal keys).
pub struct BenchMemTable(MemTable);

impl Default for BenchMemTable {
    fn default() -> Self {
        BenchMemTable(MemTable::new(0))
    }
}

impl BenchMemTable {
    /// Inserts a put of `user_key` at sequence `seq`, as a write group does.
    pub fn put(&self, seq: u64, user_key: &[u8], value: &[u8]) {
        self.0.add(seq, ValueKind::Value, user_key, value);
    }

    /// A point lookup at `seq`; true if a value was found.
    pub fn get(&self, user_key: &[u8], seq: u64) -> bool {
        matches!(self.0.get(user_key, seq), Some(MemLookup::Value(..)))
    }
}

/// Encodes sorted `(user_key, value)` pairs as one data block (internal
/// keys at sequence 1), prefix-compressed with a restart every
/// `restart_interval` entries. REQUIRES: keys sorted and distinct.
pub fn encode_block(entries: &[(Vec<u8>, Vec<u8>)], restart_interval: usize) -> Vec<u8> {
    let mut b = BlockBuilder::new(restart_interval);
    let mut ikey = Vec::new();
    for (k, v) in entries {
        ikey.clear();
        key::append_internal_key(&mut ikey, k, 1, ValueKind::Value);
        b.add(&ikey, v);
    }
    b.finish()
}

/// A decoded (validated) block.
pub struct BenchBlock(Arc<Block>);

impl BenchBlock {
    /// Decodes and validates a block's contents (restart array, bounds)
    /// and builds its fences, as a block entering the block cache does;
    /// `None` if they are invalid.
    pub fn decode(data: Vec<u8>) -> Option<BenchBlock> {
        Block::with_fences(data)
            .ok()
            .map(|b| BenchBlock(Arc::new(b)))
    }

    /// Steps through every entry; returns how many.
    pub fn scan(&self) -> usize {
        let mut it = BlockIter::new(Arc::clone(&self.0));
        it.seek_to_first();
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        n
    }

    /// Seeks to `user_key` (binary search over the fences, then a linear
    /// scan); true if it is there.
    pub fn seek(&self, user_key: &[u8]) -> bool {
        let mut it = BlockIter::new(Arc::clone(&self.0));
        it.seek_ge(&key::lookup_key(user_key, key::MAX_SEQUENCE));
        it.valid() && key::user_key(it.key()) == user_key
    }
}

/// A table's bloom filter block.
pub struct BenchBloom(Vec<u8>);

impl BenchBloom {
    /// Builds a filter over `keys` at `bits_per_key`.
    pub fn build<'a>(keys: impl IntoIterator<Item = &'a [u8]>, bits_per_key: usize) -> BenchBloom {
        let mut b = filter::FilterBuilder::new(bits_per_key);
        for k in keys {
            b.add_key(k);
        }
        BenchBloom(b.finish())
    }

    /// The probe a point lookup makes before touching a table's index.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        filter::may_contain(&self.0, user_key)
    }
}
