//! Cairn's storage engine: a log-structured merge tree with a checksummed
//! WAL, a concurrent skiplist memtable, lz4-compressed SSTables, a manifest
//! of version edits and leveled compaction. See `docs/engine.md` for the
//! architecture and invariants and `docs/format.md` for every byte on disk.
//!
//! The tree follows the data path: `batch` and `log` (the WAL) on the way
//! in, `memtable`, `table` on the way down, `version` for the set of live
//! files, `compaction` in the background, `iter` and `db` for reads. Only
//! what this file re-exports is public.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod fs;
mod iter;
mod key;
mod options;
mod table;
mod util;

pub use error::{Error, Result};
pub use fs::{DirLock, FileSystem, RandomAccessFile, ReadMode, StdFs, WritableFile};
pub use options::{
    CompactionFilter, Compression, FilterDecision, Options, WalRecovery, WriteOptions,
};
