//! Sorted string tables: immutable files of internal keys and values, in
//! `key::compare_internal` order. `docs/format.md` ("Tables") gives every
//! byte. The files follow the data path: `block_builder` and `block` (one
//! block), `filter` (bloom), `format` (framing, footer, properties),
//! `builder` (write a table) and `reader` (open, get, iterate).

#![cfg_attr(
    not(test),
    allow(
        dead_code,
        unused_imports,
        reason = "used by the memtable flush, version set and DB read path being wired in concurrently; remove once they call it"
    )
)]

pub(crate) mod block;
pub(crate) mod block_builder;
mod builder;
pub(crate) mod filter;
pub(crate) mod format;
mod reader;

use crate::util::cache::ClockCache;
use std::sync::Arc;

pub(crate) use block::Block;
pub(crate) use builder::{TableBuilder, TableSummary};
pub(crate) use format::TableProperties;
pub(crate) use reader::{Table, TableIterator};

/// Decompressed data blocks shared by all tables, keyed by (file number,
/// block offset); the charge is the block's bytes in memory. File numbers
/// are never reused, so a key never names two different blocks.
pub(crate) type BlockCache = ClockCache<(u64, u64), Arc<Block>>;
