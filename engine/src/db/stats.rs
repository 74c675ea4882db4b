//! Engine statistics: what was written where (so write amplification can be
//! read off), what is held in memory, and how often writes stalled.

use std::sync::atomic::{AtomicU64, Ordering};

/// Tables in one level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelStats {
    pub files: usize,
    pub bytes: u64,
}

/// A point-in-time copy of the engine's counters and sizes.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub levels: Vec<LevelStats>,
    /// Key and value bytes the user asked to write.
    pub user_bytes_written: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: u64,
    /// Write batches accepted, the groups group commit formed from them,
    /// and the WAL fsyncs those groups needed: `writes / write_groups` is
    /// the batching factor.
    pub writes: u64,
    pub write_groups: u64,
    pub wal_syncs: u64,
    /// Table bytes written by memtable flushes.
    pub flush_bytes_written: u64,
    /// Table bytes read and written by compactions.
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    pub flushes: u64,
    pub compactions: u64,
    /// Compactions that moved a table down a level without rewriting it.
    pub trivial_moves: u64,
    /// Extra threads' worth of compaction: a compaction split into `n`
    /// subcompactions adds `n - 1` (manual and idle compactions split;
    /// automatic ones run whole).
    pub subcompactions: u64,
    /// Idle compactions begun: L0 merged into L1 after writes paused
    /// (`Options::idle_compaction_ms`).
    pub idle_compactions: u64,
    /// Writes that waited for a flush or compaction, and for how long.
    pub stall_count: u64,
    pub stall_micros: u64,
    /// Writes delayed because L0 passed the slowdown trigger.
    pub slowdown_count: u64,
    /// Bytes in the active and immutable memtables.
    pub memtable_bytes: u64,
    pub immutable_memtables: usize,
    /// Bytes of decompressed blocks cached.
    pub block_cache_bytes: u64,
    /// Bytes of indexes and filters held by open tables, and their count.
    pub table_cache_bytes: u64,
    pub open_tables: usize,
    pub snapshots: usize,
    pub range_tombstones: usize,
    pub last_sequence: u64,
}

impl Stats {
    /// Bytes written to storage per byte the user wrote (WAL + flush +
    /// compaction over user bytes); 0 before any write.
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes_written == 0 {
            return 0.0;
        }
        let written =
            self.wal_bytes_written + self.flush_bytes_written + self.compaction_bytes_written;
        written as f64 / self.user_bytes_written as f64
    }

    /// Memory the budget counts: memtables, block cache, indexes and filters.
    pub fn memory_bytes(&self) -> u64 {
        self.memtable_bytes + self.block_cache_bytes + self.table_cache_bytes
    }

    /// Bytes of all live tables.
    pub fn table_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.bytes).sum()
    }
}

/// The live counters behind `Stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub user_bytes_written: AtomicU64,
    pub wal_bytes_written: AtomicU64,
    pub writes: AtomicU64,
    pub write_groups: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub flush_bytes_written: AtomicU64,
    pub compaction_bytes_read: AtomicU64,
    pub compaction_bytes_written: AtomicU64,
    pub flushes: AtomicU64,
    pub compactions: AtomicU64,
    pub trivial_moves: AtomicU64,
    pub subcompactions: AtomicU64,
    pub idle_compactions: AtomicU64,
    pub stall_count: AtomicU64,
    pub stall_micros: AtomicU64,
    pub slowdown_count: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn fill(&self, s: &mut Stats) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.user_bytes_written = get(&self.user_bytes_written);
        s.wal_bytes_written = get(&self.wal_bytes_written);
        s.writes = get(&self.writes);
        s.write_groups = get(&self.write_groups);
        s.wal_syncs = get(&self.wal_syncs);
        s.flush_bytes_written = get(&self.flush_bytes_written);
        s.compaction_bytes_read = get(&self.compaction_bytes_read);
        s.compaction_bytes_written = get(&self.compaction_bytes_written);
        s.flushes = get(&self.flushes);
        s.compactions = get(&self.compactions);
        s.trivial_moves = get(&self.trivial_moves);
        s.subcompactions = get(&self.subcompactions);
        s.idle_compactions = get(&self.idle_compactions);
        s.stall_count = get(&self.stall_count);
        s.stall_micros = get(&self.stall_micros);
        s.slowdown_count = get(&self.slowdown_count);
    }
}
