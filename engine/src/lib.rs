//! Cairn's storage engine: a log-structured merge tree with a checksummed
//! WAL, a concurrent skiplist memtable, lz4-compressed SSTables, a manifest
//! of version edits and leveled compaction. See `docs/engine.md` for the
//! architecture and invariants and `docs/format.md` for every byte on disk.
//!
//! The tree follows the data path: `batch` and `log` (the WAL) on the way
//! in, `memtable`, `table` on the way down, `version` for the set of live
//! files, `compaction` in the background, `iter` and `db` for reads. Only
//! what this file re-exports is public.
//!
//! ```
//! use cairn_engine::{Db, IterOptions, MemFs, Options, WriteBatch, WriteOptions};
//! use std::sync::Arc;
//!
//! # fn main() -> cairn_engine::Result<()> {
//! // `Options::default()` uses the real file system; tests use `MemFs`.
//! let db = Db::open("/db", Options { fs: Arc::new(MemFs::new()), ..Options::default() })?;
//! db.put("apple", "red")?;
//! let mut batch = WriteBatch::new();
//! batch.put("banana", "yellow");
//! batch.delete("apple");
//! db.write(batch, WriteOptions { sync: true, ..WriteOptions::default() })?;
//! let snapshot = db.snapshot();
//! db.delete_range("a", "c")?;
//! assert_eq!(db.get("banana")?, None);
//! assert_eq!(db.get_at("banana", &snapshot)?, Some(b"yellow".to_vec()));
//! let keys: Vec<Vec<u8>> = db
//!     .iter_at(IterOptions::prefix(b"b"), &snapshot)
//!     .map(|kv| kv.map(|(k, _)| k))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(keys, vec![b"banana".to_vec()]);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod batch;
#[cfg(feature = "bench-internals")]
pub mod bench_internals;
mod compaction;
mod db;
mod error;
mod fs;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod iter;
mod key;
mod log;
mod memtable;
mod options;
mod range_del;
mod table;
mod util;
mod version;

/// The checksummed record log (the WAL's framing) for other crates that
/// keep their own logs: the Raft log store writes its segments with it.
/// Layout and recovery rules: `docs/format.md`, "Record log".
pub mod record_log {
    pub use crate::log::{LogWriter, ReplayReport, read_record_at, replay};
}

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
