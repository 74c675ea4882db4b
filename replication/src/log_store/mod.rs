//! The shared Raft log store: one append-only, segmented log per node that
//! every Raft group on the node writes to (TiKV's raft-engine design).
//!
//! Data path (`docs/replication.md`, "Log store", has the full argument):
//!
//! 1. A group's `append` (tokio thread) encodes its entries, puts them in
//!    the group's in-memory index (so they are readable at once, as openraft
//!    requires), and queues the records for the node's one writer thread.
//!    The queue is bounded in bytes; a full queue makes `append` wait.
//! 2. The writer thread (`writer`) drains everything queued by all groups,
//!    writes it to the active segment, fsyncs once, and only then signals
//!    each `LogFlushed` callback and each waiting `save_vote`.
//! 3. Segments rotate at `segment_bytes_max`; every segment starts with a
//!    checkpoint of every group's vote, committed, purged and last log id,
//!    so a segment no group needs an entry from can be deleted.
//! 4. `open` (`recovery`) replays the segments and rebuilds every group's
//!    index; a torn tail of the last segment is cut, other damage fails.
//!
//! Files: `dir/NNNNNNNNNNNNNNNNNNNN.rlog` (a 20-digit segment number, the
//! engine's record-log framing inside, records in `record`) and `dir/LOCK`.

mod error;
mod index;
mod raft;
mod reader;
mod record;
mod recovery;
mod writer;

pub use error::LogStoreError;
pub use reader::GroupLogReader;

use crate::types::{Entry, GroupId, LogId, TypeConfig, Vote};
use cairn_engine::{DirLock, FileSystem, RandomAccessFile};
use index::GroupState;
use openraft::storage::LogFlushed;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::{Semaphore, oneshot};

/// Suffix of a segment file.
const SEGMENT_SUFFIX: &str = ".rlog";
/// Suffix of a segment being rewritten at recovery (removed at open).
const TEMP_SUFFIX: &str = ".rlog.tmp";
/// The lock file that keeps two stores off one directory.
const LOCK_NAME: &str = "LOCK";

/// Tuning of the log store. Defaults are sized for a node with a few
/// hundred groups: 32 MiB segments, a 64 MiB write queue.
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// A segment is sealed and a new one started once a record would take
    /// it past this size. Cached entries are bounded by it: entries of the
    /// active segment stay in memory, older ones are read from the file.
    pub segment_bytes_max: u64,
    /// Bytes of records queued for the writer thread; `append` and the
    /// other writes wait (asynchronously) while the queue is full.
    pub queue_bytes_max: usize,
    /// An append is cut into records of about this many bytes.
    pub record_bytes_target: usize,
    /// Largest encoded entry accepted; bounds every read of a record.
    pub entry_bytes_max: usize,
    /// `limited_get_log_entries` stops once it has this many bytes of
    /// entries (it always returns at least one entry).
    pub read_bytes_max: usize,
    /// Open handles on sealed segments kept for reads.
    pub open_segments_max: usize,
    /// Records nobody waits for (committed ids) are written without an
    /// fsync and synced by the next fsync, or after the writer has been
    /// idle this long. Bounds how stale a committed id found after a power
    /// loss can be. Default 20 ms.
    pub lazy_sync_ms: u64,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            segment_bytes_max: 32 << 20,
            queue_bytes_max: 64 << 20,
            record_bytes_target: 1 << 20,
            entry_bytes_max: 64 << 20,
            read_bytes_max: 4 << 20,
            open_segments_max: 16,
            lazy_sync_ms: 20,
        }
    }
}

impl LogStoreOptions {
    fn validate(&self) -> Result<(), LogStoreError> {
        let bad = |reason: &str| LogStoreError::InvalidArgument {
            group: 0,
            reason: format!("log store options: {reason}"),
        };
        if self.segment_bytes_max == 0 || self.queue_bytes_max == 0 {
            return Err(bad("segment_bytes_max and queue_bytes_max must be > 0"));
        }
        if self.record_bytes_target == 0 || self.entry_bytes_max == 0 {
            return Err(bad("record_bytes_target and entry_bytes_max must be > 0"));
        }
        if self.read_bytes_max == 0 || self.open_segments_max == 0 {
            return Err(bad("read_bytes_max and open_segments_max must be > 0"));
        }
        if self.entry_bytes_max > u32::MAX as usize - 1024 {
            return Err(bad("entry_bytes_max must fit a u32 length"));
        }
        Ok(())
    }

    /// Upper bound of one record's payload: records are cut once they reach
    /// `record_bytes_target`, so the last entry may overshoot by itself.
    fn record_bytes_bound(&self) -> usize {
        self.record_bytes_target
            .saturating_add(self.entry_bytes_max)
            .saturating_add(1024)
    }
}

/// What the store has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogStoreStats {
    /// Segment files on disk (the active one included).
    pub segments: u64,
    /// Bytes in those files.
    pub segment_bytes: u64,
    /// Segments deleted because no group needed them.
    pub segments_deleted: u64,
    /// `append` calls.
    pub appends: u64,
    /// Entries written by the writer thread.
    pub entries_written: u64,
    /// Records written (entries, votes, truncates, checkpoints ...).
    pub records_written: u64,
    /// fsyncs of segment files (batches, seals, new segments).
    pub fsyncs: u64,
    /// `entries_written / fsyncs`: above 1 when group commit shares fsyncs.
    pub entries_per_fsync: f64,
}

#[derive(Default)]
struct Counters {
    segments: AtomicU64,
    segment_bytes: AtomicU64,
    segments_deleted: AtomicU64,
    appends: AtomicU64,
    entries_written: AtomicU64,
    records_written: AtomicU64,
    fsyncs: AtomicU64,
}

/// What a queued record does, for the writer's view of the disk.
#[derive(Debug, Clone)]
enum Effect {
    /// Entries `first ..= last.index`; the index slots wait on `seq`.
    Entries {
        seq: u64,
        first: u64,
        last: LogId,
    },
    Vote(Vote),
    Committed(Option<LogId>),
    Truncate {
        since: u64,
        last_after: Option<LogId>,
    },
    Purge(LogId),
    RemoveGroup,
    /// Nothing is written; only the callback waits for the fsync.
    Barrier,
}

/// Who waits for a record to be durable.
enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Notify(oneshot::Sender<Result<(), LogStoreError>>),
}

impl Done {
    fn complete(self, result: Result<(), LogStoreError>) {
        match self {
            Done::Flushed(callback) => {
                callback.log_io_completed(result.map_err(|e| io::Error::other(e.to_string())));
            }
            Done::Notify(tx) => {
                // The waiter may have given up (its future dropped); nothing
                // to tell then.
                let _ = tx.send(result);
            }
        }
    }
}

/// One record queued for the writer.
struct Op {
    group: GroupId,
    payload: Vec<u8>,
    effect: Effect,
    /// Queue permits to give back once written.
    permits: u32,
    done: Option<Done>,
}

/// Everything the tokio side and the writer share under one lock: the
/// groups' in-memory index, the queue, and the failure flag. One lock keeps
/// "update the index, then queue the record" atomic, so the queue order is
/// the index order.
struct State {
    groups: HashMap<GroupId, GroupState>,
    queue: VecDeque<Op>,
    /// Identifies the records an append's slots wait for.
    next_seq: u64,
    /// Set by the first failed write or fsync; sticky.
    failed: Option<Arc<LogStoreError>>,
    closed: bool,
}

struct Shared {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    options: LogStoreOptions,
    state: Mutex<State>,
    /// Wakes the writer when the queue gets work or the store closes.
    wake: Condvar,
    /// Bytes of queue space; closed when the store fails or closes.
    permits: Semaphore,
    /// Open handles on sealed segments, most recently used last.
    handles: Mutex<Vec<(u64, Arc<dyn RandomAccessFile>)>>,
    counters: Counters,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves the index as it was between two
    // complete updates (each update is done before the guard drops), so a
    // poisoned mutex is recovered rather than propagated.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

/// The segment number of a file name, if it is a segment's.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl State {
    fn check_open(&self) -> Result<(), LogStoreError> {
        if let Some(cause) = &self.failed {
            return Err(LogStoreError::Poisoned {
                cause: Arc::clone(cause),
            });
        }
        if self.closed {
            return Err(LogStoreError::Closed);
        }
        Ok(())
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        segment_path(&self.dir, id)
    }

    /// Waits for `bytes` of queue space (capped at the whole queue, so one
    /// huge append still fits). Returns the permits taken.
    async fn reserve(&self, bytes: usize) -> Result<u32, LogStoreError> {
        let wanted = bytes.clamp(1, self.options.queue_bytes_max);
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        match self.permits.acquire_many(wanted).await {
            Ok(permit) => {
                permit.forget();
                Ok(wanted)
            }
            Err(_) => Err(self
                .state()
                .check_open()
                .err()
                .unwrap_or(LogStoreError::Closed)),
        }
    }

    fn release(&self, permits: u32) {
        if permits > 0 {
            self.permits.add_permits(permits as usize);
        }
    }

    /// Runs `f` under the lock to update the index and produce records,
    /// then queues them in that order. The permits ride on the last record.
    fn submit(
        &self,
        permits: u32,
        f: impl FnOnce(&mut State) -> Result<Vec<Op>, LogStoreError>,
    ) -> Result<(), LogStoreError> {
        let mut state = self.state();
        let ops = state.check_open().and_then(|()| f(&mut state));
        match ops {
            Ok(mut ops) if !ops.is_empty() => {
                if let Some(last) = ops.last_mut() {
                    last.permits = permits;
                }
                state.queue.extend(ops);
                drop(state);
                self.wake.notify_one();
                Ok(())
            }
            Ok(_) => {
                drop(state);
                self.release(permits);
                Ok(())
            }
            Err(err) => {
                drop(state);
                self.release(permits);
                Err(err)
            }
        }
    }

    /// Makes the store refuse all further work (sticky).
    fn poison(&self, err: LogStoreError) -> Arc<LogStoreError> {
        let cause = {
            let mut state = self.state();
            Arc::clone(state.failed.get_or_insert_with(|| Arc::new(err)))
        };
        tracing::error!("raft log store poisoned: {cause}");
        self.permits.close();
        self.wake.notify_all();
        cause
    }

    /// A handle on sealed segment `id`, from the cache or freshly opened.
    fn segment_handle(&self, id: u64) -> Result<Arc<dyn RandomAccessFile>, LogStoreError> {
        {
            let mut handles = lock(&self.handles);
            if let Some(pos) = handles.iter().position(|(seg, _)| *seg == id) {
                let entry = handles.remove(pos);
                let file = Arc::clone(&entry.1);
                handles.push(entry);
                return Ok(file);
            }
        }
        let path = self.segment_path(id);
        let file = self
            .fs
            .open_random(&path)
            .map_err(|e| LogStoreError::io("open", &path, e))?;
        let mut handles = lock(&self.handles);
        if handles.len() >= self.options.open_segments_max {
            handles.remove(0);
        }
        handles.push((id, Arc::clone(&file)));
        Ok(file)
    }

    fn forget_handle(&self, id: u64) {
        lock(&self.handles).retain(|(seg, _)| *seg != id);
    }
}

/// The node's Raft log: one per node, shared by every group on it.
/// Dropping the last reference (or [`SharedLog::close`]) stops the writer
/// thread after it has written everything queued and sealed the segment.
pub struct SharedLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dir_lock: Mutex<Option<Box<dyn DirLock>>>,
}

impl fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLog")
            .field("dir", &self.shared.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SharedLog {
    /// Opens (or creates) the log in `dir`, replays it and starts the
    /// writer thread. Fails, naming the file and offset, on damage that is
    /// not a torn tail of the last segment, and on a group whose entries
    /// have a hole.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: LogStoreOptions,
    ) -> Result<Arc<SharedLog>, LogStoreError> {
        options.validate()?;
        fs.create_dir_all(dir)
            .map_err(|e| LogStoreError::io("create_dir", dir, e))?;
        let lock_path = dir.join(LOCK_NAME);
        let dir_lock = fs.lock(&lock_path).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                LogStoreError::Locked {
                    path: lock_path.clone(),
                }
            } else {
                LogStoreError::io("lock", &lock_path, e)
            }
        })?;
        let recovered = recovery::recover(fs.as_ref(), dir)?;
        let permits = Semaphore::new(options.queue_bytes_max);
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(State {
                groups: recovered.groups,
                queue: VecDeque::new(),
                next_seq: 1,
                failed: None,
                closed: false,
            }),
            wake: Condvar::new(),
            permits,
            handles: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let writer =
            writer::Writer::start(Arc::clone(&shared), recovered.model, recovered.segments)?;
        let handle = std::thread::Builder::new()
            .name("raft-log-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|e| LogStoreError::io("spawn writer thread", dir, e))?;
        Ok(Arc::new(SharedLog {
            shared,
            writer: Mutex::new(Some(handle)),
            dir_lock: Mutex::new(Some(dir_lock)),
        }))
    }

    /// The log of `group` (created on its first write).
    pub fn group(self: &Arc<Self>, group: GroupId) -> GroupLog {
        GroupLog {
            log: Arc::clone(self),
            group,
        }
    }

    /// Durably forgets `group`: its vote, entries and state are gone and its
    /// entries no longer keep segments alive. Returns once that is synced.
    pub async fn remove_group(&self, group: GroupId) -> Result<(), LogStoreError> {
        let payload = record::remove_group_record(group);
        let permits = self.shared.reserve(payload.len()).await?;
        let (tx, rx) = oneshot::channel();
        self.shared.submit(permits, |state| {
            state.groups.remove(&group);
            Ok(vec![Op {
                group,
                payload,
                effect: Effect::RemoveGroup,
                permits: 0,
                done: Some(Done::Notify(tx)),
            }])
        })?;
        rx.await.unwrap_or(Err(LogStoreError::Closed))
    }

    /// The groups that have state in the log, in ascending order.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut groups: Vec<GroupId> = self.shared.state().groups.keys().copied().collect();
        groups.sort_unstable();
        groups
    }

    /// Counters and sizes.
    pub fn stats(&self) -> LogStoreStats {
        let c = &self.shared.counters;
        let entries_written = c.entries_written.load(Ordering::Relaxed);
        let fsyncs = c.fsyncs.load(Ordering::Relaxed);
        LogStoreStats {
            segments: c.segments.load(Ordering::Relaxed),
            segment_bytes: c.segment_bytes.load(Ordering::Relaxed),
            segments_deleted: c.segments_deleted.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            entries_written,
            records_written: c.records_written.load(Ordering::Relaxed),
            fsyncs,
            entries_per_fsync: if fsyncs == 0 {
                0.0
            } else {
                entries_written as f64 / fsyncs as f64
            },
        }
    }

    /// Stops the writer thread once it has written everything queued, seals
    /// the active segment and releases the directory lock. Later operations
    /// fail with [`LogStoreError::Closed`]. Idempotent; blocks while the
    /// writer finishes its last batch.
    pub fn close(&self) {
        {
            let mut state = self.shared.state();
            state.closed = true;
        }
        self.shared.permits.close();
        self.shared.wake.notify_all();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("raft log writer thread panicked");
        }
        lock(&self.shared.handles).clear();
        lock(&self.dir_lock).take();
    }
}

impl Drop for SharedLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// One group's view of the shared log; implements openraft's
/// `RaftLogStorage`. Cheap to clone. Writes of one group must come from one
/// caller at a time (openraft's `RaftCore` guarantees it); writes of
/// different groups run concurrently and share fsyncs.
#[derive(Clone)]
pub struct GroupLog {
    log: Arc<SharedLog>,
    group: GroupId,
}

impl fmt::Debug for GroupLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupLog")
            .field("group", &self.group)
            .finish()
    }
}

impl GroupLog {
    /// The group this log belongs to.
    pub fn group_id(&self) -> GroupId {
        self.group
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.log.shared
    }

    /// A reader of this group's entries.
    pub fn reader(&self) -> GroupLogReader {
        GroupLogReader::new(Arc::clone(&self.log), self.group)
    }

    fn meta<T>(&self, f: impl FnOnce(Option<&GroupState>) -> T) -> Result<T, LogStoreError> {
        let state = self.shared().state();
        state.check_open()?;
        Ok(f(state.groups.get(&self.group)))
    }

    /// `(last purged, last)` log ids.
    fn log_state(&self) -> Result<(Option<LogId>, Option<LogId>), LogStoreError> {
        self.meta(|g| g.map_or((None, None), |g| (g.meta.purged, g.meta.last)))
    }

    fn vote(&self) -> Result<Option<Vote>, LogStoreError> {
        self.meta(|g| g.and_then(|g| g.meta.vote))
    }

    fn committed(&self) -> Result<Option<LogId>, LogStoreError> {
        self.meta(|g| g.and_then(|g| g.meta.committed))
    }

    /// Queues one metadata record and waits until it is synced.
    async fn write_synced(
        &self,
        payload: Vec<u8>,
        effect: Effect,
        update: impl FnOnce(&mut GroupState),
    ) -> Result<(), LogStoreError> {
        let permits = self.shared().reserve(payload.len()).await?;
        let (tx, rx) = oneshot::channel();
        let group = self.group;
        self.shared().submit(permits, |state| {
            update(state.groups.entry(group).or_default());
            Ok(vec![Op {
                group,
                payload,
                effect,
                permits: 0,
                done: Some(Done::Notify(tx)),
            }])
        })?;
        rx.await.unwrap_or(Err(LogStoreError::Closed))
    }

    async fn save_vote_inner(&self, vote: &Vote) -> Result<(), LogStoreError> {
        let vote = *vote;
        let payload = record::vote_record(self.group, &vote);
        self.write_synced(payload, Effect::Vote(vote), |g| g.meta.vote = Some(vote))
            .await
    }

    /// Queues the committed log id without waiting for its fsync: it
    /// becomes durable with the next batch. openraft calls this on its core
    /// task each time the commit index moves, so waiting here would put an
    /// fsync on every commit's critical path; losing the latest committed id
    /// at a crash is safe (openraft then re-applies from the state machine's
    /// applied id up to the older committed id, and learns the rest from the
    /// leader).
    async fn save_committed_inner(&self, committed: Option<LogId>) -> Result<(), LogStoreError> {
        let payload = record::committed_record(self.group, committed.as_ref());
        let permits = self.shared().reserve(payload.len()).await?;
        let group = self.group;
        self.shared().submit(permits, |state| {
            state.groups.entry(group).or_default().meta.committed = committed;
            Ok(vec![Op {
                group,
                payload,
                effect: Effect::Committed(committed),
                permits: 0,
                done: None,
            }])
        })
    }

    /// Makes `entries` readable at once and queues them; `done` is told
    /// once they are synced (or the store failed).
    async fn append_inner(&self, entries: Vec<Entry>, done: Done) -> Result<(), LogStoreError> {
        let group = self.group;
        let options = &self.shared().options;
        let mut encoded = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes = record::encode_entry(entry)
                .map_err(|reason| LogStoreError::InvalidArgument { group, reason })?;
            if bytes.len() > options.entry_bytes_max {
                return Err(LogStoreError::InvalidArgument {
                    group,
                    reason: format!(
                        "entry {} is {} bytes encoded, more than entry_bytes_max {}",
                        entry.log_id,
                        bytes.len(),
                        options.entry_bytes_max
                    ),
                });
            }
            encoded.push(bytes);
        }
        self.shared()
            .counters
            .appends
            .fetch_add(1, Ordering::Relaxed);
        let bytes: usize = encoded.iter().map(|e| e.len() + 4).sum();
        let permits = self.shared().reserve(bytes).await?;
        let target = options.record_bytes_target;
        let mut done = Some(done);
        let result = self.shared().submit(permits, |state| {
            let seq_start = state.next_seq;
            let g = state.groups.entry(group).or_default();
            let (mut ops, used) = g.append(group, entries, encoded, target, seq_start)?;
            state.next_seq += used;
            if let Some(last) = ops.last_mut() {
                last.done = done.take();
            }
            Ok(ops)
        });
        if let Err(err) = &result
            && let Some(done) = done.take()
        {
            done.complete(Err(err.clone()));
        }
        result
    }

    async fn truncate_inner(&self, log_id: LogId) -> Result<(), LogStoreError> {
        let group = self.group;
        let permits = self.shared().reserve(64).await?;
        self.shared().submit(permits, |state| {
            let g = state.groups.entry(group).or_default();
            Ok(vec![g.truncate(group, log_id.index)?])
        })
    }

    async fn purge_inner(&self, log_id: LogId) -> Result<(), LogStoreError> {
        let group = self.group;
        let permits = self.shared().reserve(64).await?;
        self.shared().submit(permits, |state| {
            let g = state.groups.entry(group).or_default();
            Ok(g.purge(group, log_id).into_iter().collect())
        })
    }
}

/// Bytes an entry's slot accounts for in reads.
fn slot_bytes(encoded: &[u8]) -> u32 {
    u32::try_from(encoded.len()).unwrap_or(u32::MAX)
}

/// Used by `index` to build the records of an append.
fn entries_op(group: GroupId, seq: u64, first: u64, last: LogId, encoded: &[Vec<u8>]) -> Op {
    Op {
        group,
        payload: record::entries_record(group, first, encoded),
        effect: Effect::Entries { seq, first, last },
        permits: 0,
        done: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_twenty_digits_and_parse_back() {
        // Names sort in segment order and nothing else parses as a segment.
        assert_eq!(segment_name(7), "00000000000000000007.rlog");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "7.rlog",
            "0000000000000000000a.rlog",
            "00000000000000000007.rlog.tmp",
            "LOCK",
            "+0000000000000000007.rlog",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
