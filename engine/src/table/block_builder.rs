//! Builds one block (data or index): prefix-compressed entries with restart
//! points. Layout (do not change: on disk; `docs/format.md`, "Tables"):
//!
//! ```text
//! block   = entry* | restart u32 LE * num_restarts | num_restarts u32 LE
//! entry   = shared varint32 | non_shared varint32 | value_len varint32
//!           | key_delta (non_shared bytes) | value (value_len bytes)
//! ```
//!
//! `shared` is the length of the prefix the key shares with the previous
//! key in the block; `key_delta` is the rest. Every `restart_interval`-th
//! entry (starting with the first) is a restart point: it stores its key
//! whole (`shared` = 0) and its offset is listed in the restart array, so a
//! reader can binary-search restart keys and decode from there. A block
//! always has at least one restart (offset 0, even when empty).

use crate::util::coding::{put_fixed32, put_varint32};

/// The largest block the builder produces: restart offsets are u32, and the
/// table builder caps each key and value well below this.
pub(crate) const MAX_BLOCK_BYTES: usize = u32::MAX as usize;

pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    /// Entries since the last restart point.
    counter: usize,
    num_entries: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// `restart_interval` below 1 is treated as 1.
    pub(crate) fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            restart_interval: restart_interval.max(1),
            counter: 0,
            num_entries: 0,
            last_key: Vec::new(),
        }
    }

    /// Appends an entry. REQUIRES: `key` sorts after the previous key (the
    /// table builder checks it), the key and value lengths fit in u32 and
    /// the block stays below `MAX_BLOCK_BYTES` (the table builder caps them).
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(self.buf.len() + key.len() + value.len() + 15 < MAX_BLOCK_BYTES);
        let shared = if self.counter < self.restart_interval {
            common_prefix(&self.last_key, key)
        } else {
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
            0
        };
        let delta = key.get(shared..).unwrap_or(&[]);
        put_varint32(&mut self.buf, shared as u32);
        put_varint32(&mut self.buf, delta.len() as u32);
        put_varint32(&mut self.buf, value.len() as u32);
        self.buf.extend_from_slice(delta);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(delta);
        self.counter += 1;
        self.num_entries += 1;
    }

    /// The size of the block if finished now.
    pub(crate) fn size_estimate(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.num_entries == 0
    }

    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the restart array and returns the finished block, leaving the
    /// builder empty for the next block.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for &r in &self.restarts {
            put_fixed32(&mut out, r);
        }
        put_fixed32(&mut out, self.restarts.len() as u32);
        self.restarts.clear();
        self.restarts.push(0);
        self.counter = 0;
        self.num_entries = 0;
        self.last_key.clear();
        out
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
