//! `Db`: the engine's public handle. Open and recovery, reads, snapshots,
//! flush and compaction scheduling live here; the write path (group
//! commit) is in `write`.
//!
//! Lock order (never taken the other way): write queue -> versions -> super
//! version; write queue -> background state; background state -> versions.
//! No lock is held across a table build or a compaction merge.

mod recovery;
pub(crate) mod stats;
pub(crate) mod table_cache;
mod write;

use crate::batch::WriteBatch;
use crate::compaction::{self, Compaction, job};
use crate::error::{Error, Result};
use crate::fs::{DirLock, FileSystem, join};
use crate::iter::db_iter::{DbIterator, IterOptions};
use crate::iter::level::LevelIterator;
use crate::iter::merge::MergingIterator;
use crate::iter::{Direction, InternalIterator};
use crate::key::{self, ValueKind};
use crate::log::LogWriter;
use crate::memtable::{MemLookup, MemTable, MemTableIterator};
use crate::options::{Options, WriteOptions};
use crate::range_del::FragmentedTombstones;
use crate::version::Version;
use crate::version::edit::{NewFile, VersionEdit};
use crate::version::set::{VersionSet, table_name};
use stats::{Counters, LevelStats, Stats};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use table_cache::{Reclaimer, TableCache};
use write::WriteQueue;

pub use recovery::RecoveryReport;

/// Starts the log of a new WAL file, reserving about a memtable's worth of
/// space ahead (the WAL of a full memtable holds about its budget, often
/// less: the budget also counts per-entry overhead). A WAL that outgrows
/// the reservation simply extends the file.
fn new_wal_writer(
    file: Box<dyn crate::fs::WritableFile>,
    opts: &Options,
    path: &Path,
) -> Result<LogWriter> {
    let reserve = opts.write_buffer_bytes as u64 + opts.write_buffer_bytes as u64 / 8;
    let mut writer = LogWriter::new(file);
    writer
        .preallocate(reserve)
        .map_err(|e| Error::io("preallocate", path, e))?;
    Ok(writer)
}

/// Locks a std mutex, recovering the guard if a panicking thread poisoned
/// it: every structure behind these mutexes stays consistent between
/// statements, and engine failures are tracked by the engine's own poison.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What readers need, swapped atomically as a whole: the active memtable,
/// the immutable ones (newest first) and the version of live tables.
pub(crate) struct SuperVersion {
    pub mem: Arc<MemTable>,
    pub imms: Vec<Arc<MemTable>>,
    pub version: Arc<Version>,
}

/// The WAL being appended to.
pub(crate) struct WalState {
    pub writer: LogWriter,
    pub path: PathBuf,
}

#[derive(Default)]
struct BgState {
    shutdown: bool,
    flush_running: bool,
    compactions_running: usize,
    /// Manual compactions in progress: automatic picking waits.
    manual: usize,
    /// Tables that a running compaction reads.
    busy: HashSet<u64>,
    idle: IdleWatch,
}

/// What idle compaction (`DbInner::idle_job`) knows of the writes.
#[derive(Default)]
struct IdleWatch {
    /// `user_bytes_written` when the background last looked, and since
    /// when it has stayed there.
    seen: u64,
    since: Option<Instant>,
    /// `user_bytes_written` when the last idle compaction began (or the
    /// last pause found nothing to fold).
    done_at: u64,
}

/// An idle compaction may rewrite at most this many bytes per byte
/// written since the previous one: it adds at most this much to write
/// amplification.
const IDLE_REWRITE_PER_BYTE_WRITTEN: u64 = 2;

pub(crate) struct DbInner {
    opts: Options,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    /// The directory lock; released by `close`, so the database can be
    /// reopened while snapshots or iterators of this instance still live
    /// (they keep reading their files; this instance writes nothing more).
    dir_lock: Mutex<Option<Box<dyn DirLock>>>,
    versions: Mutex<VersionSet>,
    sv: RwLock<Arc<SuperVersion>>,
    queue: Mutex<WriteQueue>,
    /// Signalled (with `queue`) when a flush or compaction makes room.
    stall_cv: Condvar,
    wal: Mutex<Option<WalState>>,
    /// The last sequence number whose write is fully in the memtable.
    visible_seq: AtomicU64,
    snapshots: Mutex<BTreeMap<u64, usize>>,
    bg: Mutex<BgState>,
    /// Flushed memtables, kept until no reader holds them any more and then
    /// dropped by a background thread (`reap_retired`): freeing a memtable
    /// frees each of its entries, about 100 ms for a full 64 MiB one, which
    /// would otherwise land on whichever reader let go of it last (a `get`
    /// or an iterator that had pinned the super version).
    retired: Mutex<Vec<Arc<MemTable>>>,
    /// Wakes background threads.
    bg_cv: Condvar,
    /// Signalled (with `bg`) when a background job finishes.
    bg_done_cv: Condvar,
    poisoned: AtomicBool,
    poison: Mutex<Option<Arc<Error>>>,
    closed: AtomicBool,
    tables: Arc<TableCache>,
    _reclaimer: Arc<Reclaimer>,
    counters: Counters,
    recovery: RecoveryReport,
}

/// A consistent read view: reads at this snapshot see exactly the writes
/// acknowledged before it was taken. Releasing it (drop) lets compaction
/// discard the old versions it kept alive.
pub struct Snapshot {
    seq: u64,
    inner: Arc<DbInner>,
}

impl Snapshot {
    /// The sequence number the snapshot reads at.
    pub fn sequence(&self) -> u64 {
        self.seq
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.seq).finish()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut snaps = lock(&self.inner.snapshots);
        if let Some(n) = snaps.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                snaps.remove(&self.seq);
            }
        }
    }
}

/// Stops background threads when the last `Db` handle goes away.
struct Handle {
    inner: Arc<DbInner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.inner.shutdown(&self.threads);
    }
}

/// A database. Cheap to clone; all clones share one engine. `Send + Sync`.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (or creates) the database in `dir`, recovering from the WAL.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let inner = Arc::new(recovery::open(dir.as_ref(), opts)?);
        let threads = (0..inner.opts.background_threads.max(1))
            .map(|i| {
                let worker = inner.clone();
                std::thread::Builder::new()
                    .name(format!("cairn-bg-{i}"))
                    .spawn(move || worker.background_loop())
                    .map_err(|e| Error::io("spawn thread", &inner.dir, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let handle = Arc::new(Handle {
            inner: inner.clone(),
            threads: Mutex::new(threads),
        });
        inner.wake_background();
        Ok(Db { inner, handle })
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        // Kind byte, two varint lengths (at most 10 bytes each), the bytes.
        let mut b = WriteBatch::with_capacity(21 + key.len() + value.len());
        b.put(key, value);
        self.write(b, WriteOptions::default())
    }

    /// Deletes `key`.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b, WriteOptions::default())
    }

    /// Deletes every key in `[start, end)`.
    pub fn delete_range(&self, start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete_range(start, end);
        self.write(b, WriteOptions::default())
    }

    /// Applies `batch` atomically. With `sync`, returns only once the WAL is
    /// fsynced; with `disable_wal`, the batch is lost at a crash unless a
    /// flush completed after it.
    pub fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()> {
        self.inner.write(batch, opts)
    }

    /// True when a write issued now could be delayed or stalled: L0 is at
    /// its slowdown trigger, or the memtable is full and a switch would have
    /// to wait for a flush. A hint (writes by others may change it at once)
    /// for callers that must not block for long, such as an async task
    /// choosing between writing in place and moving to a blocking thread.
    pub fn write_may_stall(&self) -> bool {
        self.inner.write_may_stall()
    }

    /// The current value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let (sv, seq) = self.inner.latest_view();
        self.inner.get_in(&sv, key.as_ref(), seq)
    }

    /// The value of `key` as of `snapshot`.
    pub fn get_at(&self, key: impl AsRef<[u8]>, snapshot: &Snapshot) -> Result<Option<Vec<u8>>> {
        let sv = self.inner.super_version();
        self.inner.get_in(&sv, key.as_ref(), snapshot.seq)
    }

    /// Takes a snapshot of the current state.
    pub fn snapshot(&self) -> Snapshot {
        let mut snaps = lock(&self.inner.snapshots);
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        *snaps.entry(seq).or_insert(0) += 1;
        Snapshot {
            seq,
            inner: self.inner.clone(),
        }
    }

    /// Iterates the current state.
    pub fn iter(&self, opts: IterOptions) -> DbIterator {
        let (sv, seq) = self.inner.latest_view();
        self.inner.iter_at(sv, opts, seq)
    }

    /// Iterates the state as of `snapshot`.
    pub fn iter_at(&self, opts: IterOptions, snapshot: &Snapshot) -> DbIterator {
        let sv = self.inner.super_version();
        self.inner.iter_at(sv, opts, snapshot.seq)
    }

    /// Writes the memtable (if not empty) to a table and waits until every
    /// memtable is flushed.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Flushes, then compacts every table overlapping `[start, end]`
    /// (`None` = unbounded) down to the last level, dropping what no snapshot
    /// needs. Deleted data's space comes back here.
    pub fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()> {
        self.inner.flush()?;
        self.inner.compact_range(start, end)
    }

    /// Counters, sizes and levels.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// What recovery found when this database was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// The options the database runs with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Stops background work and seals the WAL. Further writes fail with
    /// `Error::Closed`. Dropping the last handle does the same.
    pub fn close(&self) -> Result<()> {
        self.inner.shutdown(&self.handle.threads)
    }

    /// Waits until no flush or compaction is pending or running (tests and
    /// benchmarks use it to measure a settled tree).
    pub fn wait_for_background(&self) -> Result<()> {
        self.inner.wait_idle()
    }
}

impl DbInner {
    fn super_version(&self) -> Arc<SuperVersion> {
        self.sv.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current super version and the sequence number to read it at,
    /// taken together under the super-version lock, as LevelDB takes its
    /// version and last sequence under one mutex. A read that is not at a
    /// snapshot is protected by nothing else: compaction drops a version
    /// once a newer one exists and no *snapshot* lies between them. Loading
    /// the sequence first and the super version later let a flush and a
    /// compaction slip in between and drop the very version the read needed
    /// (a key overwritten meanwhile read as missing). With no install
    /// possible while the read lock is held, every table and memtable in the
    /// view holds only versions published before the load, and every version
    /// at or below the loaded sequence is in the view or shadowed there by a
    /// newer one that is also at or below it.
    fn latest_view(&self) -> (Arc<SuperVersion>, u64) {
        let g = self.sv.read().unwrap_or_else(|e| e.into_inner());
        let seq = self.visible_seq.load(Ordering::Acquire);
        (g.clone(), seq)
    }

    /// Replaces the super version under its write lock.
    fn install(&self, f: impl FnOnce(&SuperVersion) -> SuperVersion) {
        let old = {
            let mut g = self.sv.write().unwrap_or_else(|e| e.into_inner());
            let next = f(&g);
            std::mem::replace(&mut *g, Arc::new(next))
        };
        // Dropped after the lock: when this was the last reference to a
        // flushed memtable, freeing its entries (one by one, a million of
        // them at 64 MiB) took readers and writers waiting on `sv` with it.
        drop(old);
    }

    /// Records the first fatal error; every later write returns it.
    pub(crate) fn poison(&self, e: Error) -> Error {
        if let Error::Poisoned { .. } = e {
            return e;
        }
        let mut p = lock(&self.poison);
        let cause = p.get_or_insert_with(|| Arc::new(e)).clone();
        self.poisoned.store(true, Ordering::Release);
        drop(p);
        self.bg_done_cv.notify_all();
        self.stall_cv.notify_all();
        Error::Poisoned { cause }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.check_not_poisoned()
    }

    fn check_not_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire)
            && let Some(cause) = lock(&self.poison).clone()
        {
            return Err(Error::Poisoned { cause });
        }
        Ok(())
    }

    fn get_in(&self, sv: &SuperVersion, user_key: &[u8], read_seq: u64) -> Result<Option<Vec<u8>>> {
        let mut tomb = sv.version.fragments.max_seq_at(user_key, read_seq);
        for m in std::iter::once(&sv.mem).chain(sv.imms.iter()) {
            tomb = tomb.max(m.max_covering_tombstone(user_key, read_seq));
        }
        let visible = |seq: u64, value: Option<Vec<u8>>| if seq < tomb { None } else { value };
        for m in std::iter::once(&sv.mem).chain(sv.imms.iter()) {
            match m.get(user_key, read_seq) {
                Some(MemLookup::Value(seq, v)) => return Ok(visible(seq, Some(v))),
                Some(MemLookup::Deleted(_)) => return Ok(None),
                None => {}
            }
        }
        let lookup = key::lookup_key(user_key, read_seq);
        for f in sv.version.tables_for_key(user_key) {
            if f.smallest_seq > read_seq {
                continue;
            }
            let table = self.tables.get(&f)?;
            if let Some((ikey, value)) = table.get(&lookup)? {
                let p = key::parse_internal_key(&ikey).ok_or_else(|| {
                    Error::corruption(
                        join(&self.dir, &table_name(f.number)),
                        0,
                        "malformed internal key",
                    )
                })?;
                return Ok(match p.kind {
                    ValueKind::Value => visible(p.seq, Some(value)),
                    ValueKind::Delete | ValueKind::RangeDelete => None,
                });
            }
        }
        Ok(None)
    }

    fn iter_at(
        self: &Arc<Self>,
        sv: Arc<SuperVersion>,
        opts: IterOptions,
        read_seq: u64,
    ) -> DbIterator {
        let dir = if opts.reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        };
        let fill_cache = !opts.skip_cache;
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        let mut mem_tombstones = Vec::new();
        // An empty memtable (read_seq was taken first, so it holds nothing
        // this iterator may see) would only be one more child to merge.
        for m in std::iter::once(&sv.mem).chain(sv.imms.iter()) {
            if m.holds_nothing() {
                continue;
            }
            children.push(Box::new(MemTableIterator::new(m.clone(), dir)));
            mem_tombstones.extend(m.range_tombstones());
        }
        for f in sv.version.files(0) {
            match self.tables.get(f) {
                Ok(t) => children.push(Box::new(t.iter(dir, fill_cache))),
                Err(e) => children.push(Box::new(ErrorIterator(e))),
            }
        }
        for level in 1..sv.version.num_levels() {
            let files = sv.version.files(level).to_vec();
            if !files.is_empty() {
                children.push(Box::new(LevelIterator::new(
                    files,
                    self.tables.clone(),
                    dir,
                    fill_cache,
                )));
            }
        }
        // Only lists that hold something: a scan asks every list about
        // every entry, and an empty one still cost a search each (1.5% of
        // a full scan).
        let tombstones: Vec<_> = [
            sv.version.fragments.clone(),
            Arc::new(FragmentedTombstones::new(&mem_tombstones, read_seq)),
        ]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
        let pins: Vec<Box<dyn std::any::Any + Send + Sync>> = vec![Box::new(sv.clone())];
        // One source (one level, nothing in memory, as after an idle
        // compaction) needs no merge.
        let source: Box<dyn InternalIterator> = if children.len() == 1
            && let Some(only) = children.pop()
        {
            only
        } else {
            Box::new(MergingIterator::new(children, dir))
        };
        DbIterator::new(source, read_seq, tombstones, opts, pins)
    }

    fn stats(&self) -> Stats {
        let sv = self.super_version();
        let mut s = Stats {
            levels: sv
                .version
                .levels
                .iter()
                .map(|files| LevelStats {
                    files: files.len(),
                    bytes: files.iter().map(|f| f.size).sum(),
                })
                .collect(),
            memtable_bytes: std::iter::once(&sv.mem)
                .chain(sv.imms.iter())
                .map(|m| m.memory_bytes() as u64)
                .sum(),
            immutable_memtables: sv.imms.len(),
            block_cache_bytes: self.tables.block_cache_bytes() as u64,
            table_cache_bytes: self.tables.memory_bytes() as u64,
            open_tables: self.tables.open_tables(),
            snapshots: lock(&self.snapshots).values().sum(),
            range_tombstones: sv.version.range_tombstones.len()
                + std::iter::once(&sv.mem)
                    .chain(sv.imms.iter())
                    .map(|m| m.range_tombstones().len())
                    .sum::<usize>(),
            last_sequence: self.visible_seq.load(Ordering::Acquire),
            ..Stats::default()
        };
        self.counters.fill(&mut s);
        s
    }

    // ---- background work -------------------------------------------------

    fn wake_background(&self) {
        let _bg = lock(&self.bg);
        self.bg_cv.notify_all();
    }

    fn background_loop(self: Arc<Self>) {
        loop {
            self.reap_retired();
            let job = {
                let mut bg = lock(&self.bg);
                loop {
                    if bg.shutdown {
                        return;
                    }
                    if let Some(job) = self.next_job(&mut bg) {
                        break job;
                    }
                    bg = self
                        .bg_cv
                        .wait_timeout(bg, self.background_poll())
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    drop(bg);
                    self.reap_retired();
                    bg = lock(&self.bg);
                }
            };
            let result = match &job {
                Job::Flush => self.flush_oldest(),
                Job::Compact(c, pieces) => self.run_compaction(c, *pieces),
                Job::Switch => self.idle_switch(),
            };
            if let Err(e) = result {
                self.poison(e);
            }
            {
                let mut bg = lock(&self.bg);
                match &job {
                    Job::Flush => bg.flush_running = false,
                    Job::Switch => {}
                    Job::Compact(c, _) => {
                        bg.compactions_running -= 1;
                        for f in c.all_inputs() {
                            bg.busy.remove(&f.number);
                        }
                    }
                }
                self.bg_cv.notify_all();
                self.bg_done_cv.notify_all();
            }
            let _q = lock(&self.queue);
            self.stall_cv.notify_all();
        }
    }

    /// Drops the retired memtables nobody else holds, outside the lock. A
    /// retired memtable is in no super version, so a count of one (this
    /// list's) cannot grow again.
    fn reap_retired(&self) {
        let free: Vec<Arc<MemTable>> = {
            let mut retired = lock(&self.retired);
            let (free, keep) = std::mem::take(&mut *retired)
                .into_iter()
                .partition(|m| Arc::strong_count(m) == 1);
            *retired = keep;
            free
        };
        drop(free);
    }

    /// Chooses work: flushes first (they unblock writers), then compactions,
    /// then, once writes pause, idle compaction.
    fn next_job(&self, bg: &mut BgState) -> Option<Job> {
        if self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        if !bg.flush_running && !self.super_version().imms.is_empty() {
            bg.flush_running = true;
            return Some(Job::Flush);
        }
        if bg.manual > 0 {
            return None;
        }
        let picked = {
            let vs = lock(&self.versions);
            let version = vs.current();
            let oldest = lock(&self.snapshots).keys().next().copied();
            compaction::pick(&version, &self.opts, &bg.busy, oldest, |level| {
                vs.compact_pointer(level).to_vec()
            })
        };
        match picked {
            // One thread each: the other background threads may be running
            // compactions of their own.
            Some(c) => Some(Self::start_compaction(bg, c, 1)),
            None => self.idle_job(bg),
        }
    }

    fn start_compaction(bg: &mut BgState, c: Compaction, pieces: usize) -> Job {
        for f in c.all_inputs() {
            bg.busy.insert(f.number);
        }
        bg.compactions_running += 1;
        Job::Compact(Box::new(c), pieces)
    }

    /// How long a background thread sleeps when there is nothing to do: a
    /// pause in the writes is noticed within an eighth of
    /// `idle_compaction_ms`.
    fn background_poll(&self) -> Duration {
        let idle = self.opts.idle_compaction_ms;
        let ms = if idle == 0 {
            500
        } else {
            (idle / 8).clamp(10, 500)
        };
        Duration::from_millis(ms)
    }

    /// Idle compaction. Once no write has come for `idle_compaction_ms`
    /// and nothing else runs: first the memtable is switched (`Job::Switch`;
    /// the usual flush follows), then every L0 table is merged with the L1
    /// tables it overlaps, split like a manual compaction, since the other
    /// background threads have nothing to do. Reads then find the newest
    /// data in a table with a bloom filter and fences, not in a skiplist,
    /// and consult one table per level. Skipped, until more is written,
    /// while the bytes to rewrite (memtable, L0 and L1, an upper bound)
    /// are over `IDLE_REWRITE_PER_BYTE_WRITTEN` times those written since
    /// the last idle compaction, so a pause after a few writes to a large
    /// database rewrites nothing.
    fn idle_job(&self, bg: &mut BgState) -> Option<Job> {
        let after = Duration::from_millis(self.opts.idle_compaction_ms);
        if after.is_zero() || self.opts.num_levels < 2 {
            return None;
        }
        let written = self.counters.user_bytes_written.load(Ordering::Relaxed);
        let now = Instant::now();
        let idle = &mut bg.idle;
        let since = match idle.since {
            Some(t) if idle.seen == written => t,
            _ => {
                idle.seen = written;
                idle.since = Some(now);
                return None;
            }
        };
        if written == idle.done_at
            || now.duration_since(since) < after
            || bg.flush_running
            || bg.compactions_running > 0
        {
            return None;
        }
        let sv = self.super_version();
        if !sv.imms.is_empty() {
            return None;
        }
        let mem = if sv.mem.is_empty() {
            0
        } else {
            sv.mem.approximate_bytes() as u64
        };
        let l0 = sv.version.files(0);
        if mem == 0 && l0.is_empty() {
            idle.done_at = written;
            return None;
        }
        let rewrite = mem + l0.iter().map(|f| f.size).sum::<u64>() + sv.version.level_bytes(1);
        let budget = written
            .saturating_sub(idle.done_at)
            .saturating_mul(IDLE_REWRITE_PER_BYTE_WRITTEN);
        if rewrite > budget {
            return None;
        }
        if mem > 0 {
            return Some(Job::Switch);
        }
        let c = compaction::for_range(&sv.version, 0, None, None)?;
        if c.all_inputs().any(|f| bg.busy.contains(&f.number)) {
            return None;
        }
        idle.done_at = written;
        Counters::add(&self.counters.idle_compactions, 1);
        let pieces = self
            .opts
            .max_subcompactions
            .clamp(1, job::SUBCOMPACTIONS_MAX);
        Some(Self::start_compaction(bg, c, pieces))
    }

    /// Idle compaction's memtable switch, in write-queue order. A close
    /// that began meanwhile is not a failure.
    fn idle_switch(&self) -> Result<()> {
        match self.enqueue_switch() {
            Err(Error::Closed) => Ok(()),
            r => r,
        }
    }

    /// Writes the oldest immutable memtable to an L0 table.
    fn flush_oldest(&self) -> Result<()> {
        let sv = self.super_version();
        let Some(imm) = sv.imms.last().cloned() else {
            return Ok(());
        };
        // Once this memtable is in a table, the oldest WAL still needed is
        // the next newer memtable's.
        let next_log = match sv.imms.len().checked_sub(2).and_then(|i| sv.imms.get(i)) {
            Some(m) => m.wal_number(),
            None => sv.mem.wal_number(),
        };
        let number = lock(&self.versions).new_file_number();
        let file = build_l0_table(&self.fs, &self.dir, &self.opts, &imm, number)?;
        let bytes = file.as_ref().map_or(0, |f| f.size);
        let edit = VersionEdit {
            log_number: Some(next_log),
            last_sequence: Some(imm.largest_seq()),
            new_files: file.into_iter().collect(),
            range_tombstones: imm.range_tombstones(),
            ..VersionEdit::default()
        };
        {
            let mut vs = lock(&self.versions);
            // A poisoned engine commits nothing more, not even work that
            // was already running when the failure happened.
            self.check_not_poisoned()?;
            let version = vs.log_and_apply(edit)?;
            self.install(|cur| SuperVersion {
                mem: cur.mem.clone(),
                imms: cur
                    .imms
                    .iter()
                    .filter(|m| !Arc::ptr_eq(m, &imm))
                    .cloned()
                    .collect(),
                version,
            });
        }
        Counters::add(&self.counters.flushes, 1);
        Counters::add(&self.counters.flush_bytes_written, bytes);
        // The flushed memtable's WAL is no longer needed.
        let wal = join(&self.dir, &crate::version::set::wal_name(imm.wal_number()));
        let _ = self.fs.remove(&wal);
        // Freed in the background once no reader holds it (`retired`).
        drop(sv);
        lock(&self.retired).push(imm);
        Ok(())
    }

    fn job_env<'a>(&'a self, next_number: &'a (dyn Fn() -> u64 + Sync)) -> job::JobEnv<'a> {
        job::JobEnv {
            fs: &self.fs,
            dir: &self.dir,
            tables: &self.tables,
            table_opts: self.opts.table_options(),
            target_file_size_bytes: self.opts.target_file_size_bytes,
            snapshots: lock(&self.snapshots).keys().copied().collect(),
            filter: self.opts.compaction_filter.clone(),
            new_file_number: next_number,
        }
    }

    /// Runs `c`, split into up to `pieces` subcompactions (`job::run`).
    fn run_compaction(&self, c: &Compaction, pieces: usize) -> Result<()> {
        let result = if c.is_trivial_move() {
            Counters::add(&self.counters.trivial_moves, 1);
            job::trivial_move(c)
        } else {
            let next_number = || lock(&self.versions).new_file_number();
            let env = self.job_env(&next_number);
            let cuts = job::split_points(c, &env, pieces)?;
            Counters::add(&self.counters.subcompactions, cuts.len() as u64);
            let r = job::run(c, &env, &cuts)?;
            Counters::add(&self.counters.compaction_bytes_read, c.input_bytes());
            r
        };
        Counters::add(&self.counters.compactions, 1);
        Counters::add(
            &self.counters.compaction_bytes_written,
            result.bytes_written,
        );
        let mut vs = lock(&self.versions);
        self.check_not_poisoned()?;
        let version = vs.log_and_apply(result.edit)?;
        self.install(|cur| SuperVersion {
            mem: cur.mem.clone(),
            imms: cur.imms.clone(),
            version,
        });
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.check_writable()?;
        self.enqueue_switch()?;
        let mut bg = lock(&self.bg);
        self.bg_cv.notify_all();
        loop {
            self.check_writable()?;
            if self.super_version().imms.is_empty() {
                return Ok(());
            }
            bg = self
                .bg_done_cv
                .wait_timeout(bg, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn compact_range(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Result<()> {
        {
            let mut bg = lock(&self.bg);
            bg.manual += 1;
            while bg.compactions_running > 0 {
                bg = self
                    .bg_done_cv
                    .wait_timeout(bg, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let result = self.compact_levels(lo, hi);
        {
            let mut bg = lock(&self.bg);
            bg.manual -= 1;
            self.bg_cv.notify_all();
        }
        result
    }

    /// Pushes everything overlapping the range to the last level, then
    /// rewrites the last level's overlapping tables in place, except those
    /// this call wrote (`compaction::bottommost_for_range`). Automatic
    /// compactions wait while this runs (`BgState::manual`), and each step
    /// splits into up to `max_subcompactions` subcompactions.
    fn compact_levels(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Result<()> {
        let pieces = self
            .opts
            .max_subcompactions
            .clamp(1, job::SUBCOMPACTIONS_MAX);
        let levels = self.opts.num_levels;
        let written_from = lock(&self.versions).peek_file_number();
        for level in 0..levels.saturating_sub(1) {
            self.check_writable()?;
            let version = lock(&self.versions).current();
            if let Some(c) = compaction::for_range(&version, level, lo, hi) {
                self.run_compaction(&c, pieces)
                    .map_err(|e| self.poison(e))?;
            }
        }
        loop {
            self.check_writable()?;
            let version = lock(&self.versions).current();
            let Some(c) = compaction::bottommost_for_range(&version, lo, hi, written_from) else {
                return Ok(());
            };
            self.run_compaction(&c, pieces)
                .map_err(|e| self.poison(e))?;
        }
    }

    fn wait_idle(&self) -> Result<()> {
        let mut bg = lock(&self.bg);
        loop {
            if self.poisoned.load(Ordering::Acquire) {
                return self.check_writable();
            }
            let idle = !bg.flush_running
                && bg.compactions_running == 0
                && self.super_version().imms.is_empty()
                && self.no_compaction_due(&bg);
            if idle {
                return Ok(());
            }
            self.bg_cv.notify_all();
            bg = self
                .bg_done_cv
                .wait_timeout(bg, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// True when no compaction is due.
    fn no_compaction_due(&self, bg: &BgState) -> bool {
        let vs = lock(&self.versions);
        let version = vs.current();
        let oldest = lock(&self.snapshots).keys().next().copied();
        compaction::pick(&version, &self.opts, &bg.busy, oldest, |l| {
            vs.compact_pointer(l).to_vec()
        })
        .is_none()
    }

    fn shutdown(&self, threads: &Mutex<Vec<JoinHandle<()>>>) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // Writes that skipped the WAL exist only in memtables: flush them,
        // or a clean close would lose them.
        let sv = self.super_version();
        let unlogged = std::iter::once(&sv.mem)
            .chain(sv.imms.iter())
            .any(|m| m.has_unlogged());
        let flushed = if unlogged && !self.poisoned.load(Ordering::Acquire) {
            self.flush()
        } else {
            Ok(())
        };
        if self.closed.swap(true, Ordering::AcqRel) {
            return flushed;
        }
        {
            let mut bg = lock(&self.bg);
            bg.shutdown = true;
            self.bg_cv.notify_all();
        }
        for t in lock(threads).drain(..) {
            let _ = t.join();
        }
        // Wait for an in-flight group-commit leader, then seal the WAL so
        // recovery treats all of it as synced.
        let _q = lock(&self.queue);
        let mut sealed = Ok(());
        if let Some(mut w) = lock(&self.wal).take()
            && !self.poisoned.load(Ordering::Acquire)
        {
            sealed = w.writer.seal().map_err(|e| Error::io("fsync", &w.path, e));
        }
        lock(&self.dir_lock).take();
        flushed.and(sealed)
    }
}

enum Job {
    Flush,
    /// A compaction and the subcompactions it may split into.
    Compact(Box<Compaction>, usize),
    /// Idle compaction's memtable switch (`DbInner::idle_job`).
    Switch,
}

/// An iterator that is only an error (a table that failed to open).
struct ErrorIterator(Error);

impl InternalIterator for ErrorIterator {
    fn seek_to_first(&mut self) {}
    fn seek(&mut self, _: &[u8]) {}
    fn next(&mut self) {}
    fn valid(&self) -> bool {
        false
    }
    fn key(&self) -> &[u8] {
        &[]
    }
    fn value(&self) -> &[u8] {
        &[]
    }
    fn status(&self) -> Result<()> {
        Err(self.0.clone())
    }
}

/// Writes a memtable's point entries to L0 table `number`, synced and with
/// its name made durable; `None` when it holds only range tombstones.
pub(crate) fn build_l0_table(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    opts: &Options,
    mem: &Arc<MemTable>,
    number: u64,
) -> Result<Option<NewFile>> {
    let mut it = MemTableIterator::new(mem.clone(), Direction::Forward);
    it.seek_to_first();
    if !it.valid() {
        return Ok(None);
    }
    let path = join(dir, &table_name(number));
    let file = fs
        .create(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    let mut builder = crate::table::TableBuilder::new(file, path, opts.table_options());
    while it.valid() {
        builder.add(it.key(), it.value())?;
        it.next();
    }
    let s = builder.finish()?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(Some(NewFile::from_summary(0, number, s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IterOptions;
    use crate::fs::MemFs;
    use std::time::Instant;

    #[test]
    fn a_flushed_memtable_is_freed_in_the_background_once_readers_let_go() {
        // An iterator pins the memtable across its flush; the memtable waits
        // in `retired` while pinned and is freed soon after it is released.
        let opts = Options {
            fs: Arc::new(MemFs::new()),
            ..Options::default()
        };
        let db = Db::open("/db", opts).unwrap();
        for i in 0..100u32 {
            db.put(format!("k{i}"), "v").unwrap();
        }
        let mut it = db.iter(IterOptions::new());
        assert!(it.advance().unwrap());
        db.flush().unwrap();
        let retired = || lock(&db.inner.retired).len();
        let deadline = Instant::now() + Duration::from_secs(5);
        while retired() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(retired(), 1, "the flushed memtable waits while pinned");
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(retired(), 1, "still pinned by the iterator");
        assert_eq!(it.by_ref().count(), 99, "and still readable");
        drop(it);
        let deadline = Instant::now() + Duration::from_secs(5);
        while retired() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(retired(), 0, "freed once released");
        db.close().unwrap();
    }
}
