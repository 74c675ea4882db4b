//! All engine configuration, in one place, with documented defaults. Units are
//! last in names (`_bytes`, `_ms`). `docs/engine.md` repeats the defaults.

use crate::fs::{FileSystem, StdFs};
use std::fmt;
use std::sync::Arc;

/// Compression applied to each table data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Blocks stored as built.
    None,
    /// lz4 (lz4_flex block format) per block; kept only when it saves at
    /// least 1/8 of the block.
    #[default]
    Lz4,
}

/// What `open` does with a WAL that is damaged before its tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalRecovery {
    /// Point in time: a torn tail (a record that was being written at the
    /// crash, never acknowledged as synced) is cut and reported; damage to
    /// bytes that were synced fails `open` with the file and offset.
    #[default]
    PointInTime,
    /// Salvage: skip damaged records, keep everything readable, report what
    /// was skipped. Acknowledged writes may be lost; use only by hand.
    Salvage,
}

/// What a compaction filter decides for one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDecision {
    Keep,
    /// Remove the value (it reads as deleted from then on).
    Remove,
}

/// A hook run on values during compaction (TTL expiry uses it). It sees only
/// the newest version of a key that no snapshot protects, so dropping it
/// never changes what a live snapshot reads.
pub trait CompactionFilter: Send + Sync {
    fn filter(&self, level: usize, user_key: &[u8], value: &[u8]) -> FilterDecision;
}

/// Options for opening a database.
#[derive(Clone)]
pub struct Options {
    /// Create the database if the directory holds none. Default true.
    pub create_if_missing: bool,
    /// Fail if a database already exists. Default false.
    pub error_if_exists: bool,
    /// The file system; tests pass a `MemFs`. Default: `StdFs` with mmap reads.
    pub fs: Arc<dyn FileSystem>,
    /// Bytes a memtable holds before it is switched and flushed. Default 64 MiB.
    pub write_buffer_bytes: usize,
    /// Memtables (active + immutable) before writes stall. Default 4.
    pub max_memtables: usize,
    /// Target uncompressed size of a table data block. Default 4 KiB.
    pub block_size_bytes: usize,
    /// Keys between restart points in a data block. Default 4: a seek
    /// binary-searches the restarts, then decodes at most this many
    /// entries, and 16 (LevelDB's) made that walk a large share of a point
    /// read; blocks are about 2% larger (`docs/benchmarks.md`).
    pub block_restart_interval: usize,
    /// Block compression. Default lz4.
    pub compression: Compression,
    /// Bloom filter bits per key (0 disables filters). Default 10 (~1% false positives).
    pub bloom_bits_per_key: usize,
    /// Byte bound of the decompressed-block cache. Default 256 MiB.
    pub block_cache_bytes: usize,
    /// Bound on open table files (and their indexes and filters). Default 1000.
    pub max_open_files: usize,
    /// Byte bound on the indexes and filters of open tables. Default 64 MiB.
    pub table_cache_bytes: usize,
    /// Target size of a table written by compaction. Default 64 MiB.
    pub target_file_size_bytes: u64,
    /// L0 files that trigger a compaction. Default 4.
    pub l0_compaction_trigger: usize,
    /// L0 files at which each write is delayed. Default 20.
    pub l0_slowdown_trigger: usize,
    /// L0 files at which writes stop until compaction catches up. Default 36.
    pub l0_stop_trigger: usize,
    /// Delay added to a write while L0 is over the slowdown trigger. Default 1 ms.
    pub slowdown_delay_ms: u64,
    /// Target size of L1; each deeper level is `level_size_ratio` times larger. Default 256 MiB.
    pub max_bytes_for_level_base: u64,
    /// Growth factor between levels. Default 10.
    pub level_size_ratio: u64,
    /// Number of levels. Default 7.
    pub num_levels: usize,
    /// Background threads for flushes and compactions. Default 2.
    pub background_threads: usize,
    /// Threads a manual compaction (`Db::compact_range`) splits each merge
    /// over, the caller's among them (RocksDB's `max_subcompactions`).
    /// Automatic compactions, which a manual one pauses, run whole, one per
    /// background thread. Default 2, the background threads' default; 1
    /// runs every merge whole; at most 64 are used.
    pub max_subcompactions: usize,
    /// Milliseconds without a write after which the background folds the
    /// write-optimised parts into the read-optimised ones: the memtable is
    /// flushed and L0 is merged into L1, so reads consult one sorted table
    /// per level instead of a skiplist and every overlapping L0 table.
    /// Once per pause, and only while the bytes it would rewrite stay
    /// within twice the bytes written since the last one (so it adds at
    /// most 2 to write amplification). Default 1000; 0 never.
    pub idle_compaction_ms: u64,
    /// Bound on the bytes of one group-commit batch. Default 1 MiB.
    pub max_write_group_bytes: usize,
    /// Entries in a group from which its writers insert into the memtable
    /// concurrently, each its own batch, instead of the leader inserting
    /// all. Default 64 (below it, waking the writers costs more than the
    /// inserts). 0 = always, `usize::MAX` = never.
    pub concurrent_insert_min_entries: usize,
    /// Largest key accepted, in bytes. Default 64 KiB.
    pub max_key_bytes: usize,
    /// Largest value accepted, in bytes. Default 512 MiB (Redis's string limit).
    pub max_value_bytes: usize,
    /// Manifest size that makes the next edit start a new manifest. Default 64 MiB.
    pub max_manifest_bytes: u64,
    /// WAL recovery mode. Default point in time.
    pub wal_recovery: WalRecovery,
    /// Optional compaction filter.
    pub compaction_filter: Option<Arc<dyn CompactionFilter>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            error_if_exists: false,
            fs: Arc::new(StdFs::default()),
            write_buffer_bytes: 64 << 20,
            max_memtables: 4,
            block_size_bytes: 4 << 10,
            block_restart_interval: 4,
            compression: Compression::Lz4,
            bloom_bits_per_key: 10,
            block_cache_bytes: 256 << 20,
            max_open_files: 1000,
            table_cache_bytes: 64 << 20,
            target_file_size_bytes: 64 << 20,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            slowdown_delay_ms: 1,
            max_bytes_for_level_base: 256 << 20,
            level_size_ratio: 10,
            num_levels: 7,
            background_threads: 2,
            max_subcompactions: 2,
            idle_compaction_ms: 1000,
            max_write_group_bytes: 1 << 20,
            concurrent_insert_min_entries: 64,
            max_key_bytes: 64 << 10,
            max_value_bytes: 512 << 20,
            max_manifest_bytes: 64 << 20,
            wal_recovery: WalRecovery::PointInTime,
            compaction_filter: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("max_memtables", &self.max_memtables)
            .field("block_size_bytes", &self.block_size_bytes)
            .field("compression", &self.compression)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("block_cache_bytes", &self.block_cache_bytes)
            .field("target_file_size_bytes", &self.target_file_size_bytes)
            .field("l0_compaction_trigger", &self.l0_compaction_trigger)
            .field("max_bytes_for_level_base", &self.max_bytes_for_level_base)
            .field("num_levels", &self.num_levels)
            .field("idle_compaction_ms", &self.idle_compaction_ms)
            .finish_non_exhaustive()
    }
}

/// Options for one write.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// fsync the WAL before acknowledging. Default false.
    pub sync: bool,
    /// Skip the WAL: the write is lost at a crash unless flushed first. The
    /// Raft state machine uses it because the Raft log holds the data.
    pub disable_wal: bool,
}

/// Table-building parameters derived from [`Options`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableOptions {
    pub block_size_bytes: usize,
    pub block_restart_interval: usize,
    pub compression: Compression,
    pub bloom_bits_per_key: usize,
}

impl Options {
    pub(crate) fn table_options(&self) -> TableOptions {
        TableOptions {
            block_size_bytes: self.block_size_bytes,
            block_restart_interval: self.block_restart_interval,
            compression: self.compression,
            bloom_bits_per_key: self.bloom_bits_per_key,
        }
    }

    /// The memory the engine may hold in memtables, caches, indexes and
    /// filters together: the budget checked by the memory test.
    pub fn memory_budget_bytes(&self) -> usize {
        self.write_buffer_bytes * self.max_memtables
            + self.block_cache_bytes
            + self.table_cache_bytes
    }
}
