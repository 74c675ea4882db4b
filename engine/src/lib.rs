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

mod batch;
mod compaction;
mod db;
mod error;
mod fs;
mod iter;
mod key;
mod log;
mod memtable;
mod options;
mod range_del;
mod table;
mod util;
mod version;

pub use batch::WriteBatch;
pub use db::stats::{LevelStats, Stats};
pub use db::{Db, RecoveryReport, Snapshot};
pub use error::{Error, Result};
pub use fs::{
    CrashMode, DirLock, FaultOp, FileSystem, MemFs, RandomAccessFile, ReadMode, StdFs, WritableFile,
};
pub use iter::db_iter::{DbIterator, IterOptions};
pub use options::{
    CompactionFilter, Compression, FilterDecision, Options, WalRecovery, WriteOptions,
};
