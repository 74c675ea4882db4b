//! The node's one writer thread: group commit across all groups.
//!
//! Each turn drains everything queued, writes the records in queue order to
//! the active segment (rotating when it is full), fsyncs once (unless
//! nobody waits for the turn's records and they free nothing: committed
//! ids alone), deletes the segments nobody needs any more, and only then
//! publishes the records' locations and completes their callbacks. Any I/O error poisons the store:
//! the failed fsync is not retried, every callback of the batch and every
//! later operation gets the error.
//!
//! The writer keeps its own model of what is on disk, in file order
//! ([`DiskGroup`]): each group's metadata (for checkpoints) and which
//! segments hold its live entries (for deletion). The in-memory index runs
//! ahead of it (it already holds queued changes), so the checkpoint must
//! come from this model, never from the index.

use super::index::Loc;
use super::record::{self, GroupMeta};
use super::{Done, Effect, LogStoreError, Op, Shared, lock};
use crate::types::GroupId;
use cairn_engine::record_log::LogWriter;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A run of a group's consecutive entries in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) segment: u64,
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// A group as the segments on disk describe it.
#[derive(Debug, Clone, Default)]
pub(crate) struct DiskGroup {
    pub(crate) meta: GroupMeta,
    /// The segments holding the group's live entries, in index order.
    pub(crate) runs: VecDeque<Run>,
}

impl DiskGroup {
    fn cut_from(&mut self, since: u64) {
        while let Some(run) = self.runs.back_mut() {
            if run.first >= since {
                self.runs.pop_back();
            } else {
                run.last = run.last.min(since.saturating_sub(1));
                break;
            }
        }
    }

    fn purge_upto(&mut self, index: u64) {
        while let Some(run) = self.runs.front_mut() {
            if run.last <= index {
                self.runs.pop_front();
            } else {
                run.first = run.first.max(index + 1);
                break;
            }
        }
    }

    /// Applies a record written to `segment`.
    fn apply(&mut self, effect: &Effect, segment: u64) {
        match effect {
            Effect::Entries { first, last, .. } => {
                self.cut_from(*first);
                match self.runs.back_mut() {
                    Some(run) if run.segment == segment && run.last + 1 == *first => {
                        run.last = last.index;
                    }
                    _ => self.runs.push_back(Run {
                        segment,
                        first: *first,
                        last: last.index,
                    }),
                }
                self.meta.last = Some(*last);
            }
            Effect::Vote(vote) => self.meta.vote = Some(*vote),
            Effect::Committed(committed) => self.meta.committed = *committed,
            Effect::Truncate { since, last_after } => {
                self.cut_from(*since);
                self.meta.last = *last_after;
            }
            Effect::Purge(upto) => {
                self.purge_upto(upto.index);
                self.meta.purged = Some(*upto);
                if self.meta.last.is_none_or(|l| l.index <= upto.index) {
                    self.meta.last = Some(*upto);
                }
            }
            Effect::RemoveGroup | Effect::Barrier => {}
        }
    }
}

struct Active {
    id: u64,
    path: PathBuf,
    log: LogWriter,
    /// Records after the checkpoint; a segment holding only its checkpoint
    /// is never rotated (a checkpoint larger than a segment cannot loop).
    records: u64,
}

/// What a batch did, published to the index after its fsync.
#[derive(Default)]
struct Outcome {
    /// (group, record sequence, segment, offset) of each entries record.
    located: Vec<(GroupId, u64, u64, u64)>,
    /// Segments sealed during the batch: their cached entries are dropped.
    sealed: Vec<u64>,
    entries: u64,
    records: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: Active,
    /// Every segment on disk and its size, the active one included.
    segments: BTreeMap<u64, u64>,
    model: HashMap<GroupId, DiskGroup>,
    /// When records were first written without an fsync (see
    /// `write_batch`); they are fsynced by the next batch, or once the
    /// writer has been idle for `lazy_sync_ms` since then.
    unsynced_since: Option<Instant>,
}

impl Writer {
    /// Starts a fresh segment (numbered after every existing one) with a
    /// checkpoint of `model`, and deletes the segments nobody needs.
    pub(crate) fn start(
        shared: Arc<Shared>,
        model: HashMap<GroupId, DiskGroup>,
        segments: BTreeMap<u64, u64>,
    ) -> Result<Writer, LogStoreError> {
        let id = segments.keys().next_back().map_or(1, |last| last + 1);
        let active = new_segment(&shared, id, &model)?;
        let mut writer = Writer {
            shared,
            active,
            segments,
            model,
            unsynced_since: None,
        };
        writer.segments.insert(id, writer.active.log.len());
        writer.delete_unneeded()?;
        writer.publish_sizes();
        Ok(writer)
    }

    /// The thread body: runs batches until the store closes.
    pub(crate) fn run(mut self) {
        loop {
            let (batch, closing) = self.next_batch();
            if !batch.is_empty() {
                self.commit(batch);
            } else if self.unsynced_since.is_some() {
                self.lazy_sync();
            }
            if closing {
                self.finish();
                return;
            }
        }
    }

    /// Waits for work; returns everything queued and whether the store is
    /// closing (then the queue is empty after this batch: `submit` refuses
    /// new records once `closed` is set). With unsynced records, waits at
    /// most until they are due for their fsync (then returns nothing).
    fn next_batch(&self) -> (Vec<Op>, bool) {
        let delay = Duration::from_millis(self.shared.options.lazy_sync_ms);
        let due = self.unsynced_since.map(|since| since + delay);
        let mut state = self.shared.state();
        while state.queue.is_empty() && !state.closed {
            let wake = &self.shared.wake;
            state = match due {
                None => wake.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(due) => {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    match wake.wait_timeout(state, due - now) {
                        Ok((state, _)) => state,
                        Err(e) => e.into_inner().0,
                    }
                }
            };
        }
        (state.queue.drain(..).collect(), state.closed)
    }

    /// fsyncs records written without one, nobody having come along to
    /// share an fsync with them. A failure poisons the store.
    fn lazy_sync(&mut self) {
        if self.shared.state().failed.is_some() {
            self.unsynced_since = None;
            return;
        }
        if let Err(err) = self.sync_active() {
            self.shared.poison(err);
        }
        self.publish_sizes();
    }

    fn commit(&mut self, mut batch: Vec<Op>) {
        let failed = self.shared.state().failed.clone();
        let result = match failed {
            Some(cause) => Err(LogStoreError::Poisoned { cause }),
            None => self.write_batch(&batch),
        };
        let permits: usize = batch.iter().map(|op| op.permits as usize).sum();
        let dones: Vec<Done> = batch.iter_mut().filter_map(|op| op.done.take()).collect();
        match result {
            Ok(outcome) => {
                self.publish(&outcome);
                let counters = &self.shared.counters;
                counters
                    .entries_written
                    .fetch_add(outcome.entries, Ordering::Relaxed);
                counters
                    .records_written
                    .fetch_add(outcome.records, Ordering::Relaxed);
                self.publish_sizes();
                self.shared.permits.add_permits(permits);
                for done in dones {
                    done.complete(Ok(()));
                }
            }
            Err(err) => {
                let err = match err {
                    LogStoreError::Poisoned { .. } => err,
                    other => LogStoreError::Poisoned {
                        cause: self.shared.poison(other),
                    },
                };
                for done in dones {
                    done.complete(Err(err.clone()));
                }
            }
        }
    }

    /// Writes the batch and fsyncs once. Deletion of unneeded segments
    /// comes after the fsync: the records that freed them must be durable
    /// first, or recovery would find their entries missing.
    ///
    /// A batch nobody waits for, that frees and seals nothing, is written
    /// but not fsynced: in practice a batch of COMMITTED records, which
    /// openraft writes at every commit and which need no durability of
    /// their own (`docs/replication.md`, "Group commit"). The next batch's
    /// fsync covers them, or `lazy_sync` once the writer has idled for
    /// `lazy_sync_ms`. Fsyncing them at once cost a second fsync per entry
    /// on every node.
    fn write_batch(&mut self, batch: &[Op]) -> Result<Outcome, LogStoreError> {
        let mut outcome = Outcome::default();
        let mut freed = false;
        for op in batch {
            if op.payload.is_empty() {
                continue;
            }
            let fits = self.active.log.len() + op.payload.len() as u64
                <= self.shared.options.segment_bytes_max;
            if !fits && self.active.records > 0 {
                self.rotate(&mut outcome)?;
            }
            let offset = self.active.log.next_record_offset();
            self.active
                .log
                .add_record(&op.payload)
                .map_err(|e| LogStoreError::io("append", &self.active.path, e))?;
            self.active.records += 1;
            outcome.records += 1;
            if let Effect::Entries { seq, first, last } = &op.effect {
                outcome
                    .located
                    .push((op.group, *seq, self.active.id, offset));
                outcome.entries += last.index + 1 - first;
            }
            freed |= matches!(
                op.effect,
                Effect::Truncate { .. } | Effect::Purge(_) | Effect::RemoveGroup
            );
            self.apply(op.group, &op.effect);
        }
        let waited_for = batch.iter().any(|op| op.done.is_some());
        if !waited_for && !freed && outcome.sealed.is_empty() {
            // Handed to the OS, so a process crash keeps them; a power
            // loss before the next fsync may not.
            self.active
                .log
                .flush()
                .map_err(|e| LogStoreError::io("write", &self.active.path, e))?;
            self.segments.insert(self.active.id, self.active.log.len());
            self.unsynced_since.get_or_insert_with(Instant::now);
            return Ok(outcome);
        }
        self.sync_active()?;
        if freed || !outcome.sealed.is_empty() {
            self.delete_unneeded()?;
        }
        Ok(outcome)
    }

    fn apply(&mut self, group: GroupId, effect: &Effect) {
        if matches!(effect, Effect::Barrier) {
            return;
        }
        if matches!(effect, Effect::RemoveGroup) {
            self.model.remove(&group);
        } else {
            self.model
                .entry(group)
                .or_default()
                .apply(effect, self.active.id);
        }
    }

    fn sync_active(&mut self) -> Result<(), LogStoreError> {
        self.unsynced_since = None;
        self.active
            .log
            .sync()
            .map_err(|e| LogStoreError::io("fsync", &self.active.path, e))?;
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.segments.insert(self.active.id, self.active.log.len());
        Ok(())
    }

    /// Seals the active segment and starts the next one with a checkpoint.
    fn rotate(&mut self, outcome: &mut Outcome) -> Result<(), LogStoreError> {
        self.active
            .log
            .seal()
            .map_err(|e| LogStoreError::io("seal", &self.active.path, e))?;
        self.shared.counters.fsyncs.fetch_add(2, Ordering::Relaxed);
        self.segments.insert(self.active.id, self.active.log.len());
        outcome.sealed.push(self.active.id);
        let next = new_segment(&self.shared, self.active.id + 1, &self.model)?;
        self.active = next;
        self.segments.insert(self.active.id, self.active.log.len());
        outcome.records += 1;
        Ok(())
    }

    /// Removes every segment that is not active and holds no live entry,
    /// then fsyncs the directory. Safe for any such segment, not just the
    /// oldest: every later segment starts with a checkpoint that carries
    /// the metadata its records set.
    fn delete_unneeded(&mut self) -> Result<(), LogStoreError> {
        let needed: HashSet<u64> = self
            .model
            .values()
            .flat_map(|g| g.runs.iter().map(|r| r.segment))
            .collect();
        let doomed: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|id| *id != self.active.id && !needed.contains(id))
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for id in doomed {
            let path = self.shared.segment_path(id);
            self.shared.forget_handle(id);
            self.shared
                .fs
                .remove(&path)
                .map_err(|e| LogStoreError::io("remove", &path, e))?;
            self.segments.remove(&id);
            self.shared
                .counters
                .segments_deleted
                .fetch_add(1, Ordering::Relaxed);
        }
        self.shared
            .fs
            .sync_dir(&self.shared.dir)
            .map_err(|e| LogStoreError::io("sync_dir", &self.shared.dir, e))
    }

    /// Tells the index where the batch's entries are, and drops the cached
    /// entries of sealed segments (synced by the seal: they can be read
    /// back from the file).
    fn publish(&self, outcome: &Outcome) {
        let mut state = self.shared.state();
        for &(group, seq, segment, offset) in &outcome.located {
            let Some(g) = state.groups.get_mut(&group) else {
                continue;
            };
            // The record's slots are a run near the back; newer appends may
            // have replaced them (then they wait on another sequence).
            for slot in g.slots.iter_mut().rev() {
                match slot.loc {
                    Loc::Pending(s) if s == seq => slot.loc = Loc::Written { segment, offset },
                    Loc::Pending(s) if s > seq => {}
                    _ => break,
                }
            }
        }
        let Some(oldest) = outcome.sealed.iter().min().copied() else {
            return;
        };
        for g in state.groups.values_mut() {
            // Cached entries are a suffix of the slots: stop at the first
            // entry in a segment older than every sealed one.
            for slot in g.slots.iter_mut().rev() {
                match slot.loc {
                    Loc::Written { segment, .. } if segment < oldest => break,
                    Loc::Written { segment, .. } if outcome.sealed.contains(&segment) => {
                        slot.entry = None;
                    }
                    _ => {}
                }
            }
        }
    }

    fn publish_sizes(&self) {
        let counters = &self.shared.counters;
        counters
            .segments
            .store(self.segments.len() as u64, Ordering::Relaxed);
        counters
            .segment_bytes
            .store(self.segments.values().sum(), Ordering::Relaxed);
    }

    /// At close: seal the active segment so the next open need not rewrite
    /// it. Skipped after a failure (the store is poisoned).
    fn finish(&mut self) {
        if self.shared.state().failed.is_some() {
            return;
        }
        match self.active.log.seal() {
            Ok(()) => {
                self.shared.counters.fsyncs.fetch_add(2, Ordering::Relaxed);
                self.segments.insert(self.active.id, self.active.log.len());
                self.publish_sizes();
            }
            Err(e) => {
                self.shared
                    .poison(LogStoreError::io("seal", &self.active.path, e));
            }
        }
        lock(&self.shared.handles).clear();
    }
}

/// Creates segment `id`, writes the checkpoint of `model`, fsyncs the file
/// and the directory: afterwards older segments may be deleted.
fn new_segment(
    shared: &Shared,
    id: u64,
    model: &HashMap<GroupId, DiskGroup>,
) -> Result<Active, LogStoreError> {
    let path = shared.segment_path(id);
    let file = shared
        .fs
        .create(&path)
        .map_err(|e| LogStoreError::io("create", &path, e))?;
    let mut log = LogWriter::new(file);
    // Reserved up to the rotation size: each group-commit fsync then has
    // only data to write, not a new file size (see the engine's WAL).
    log.preallocate(shared.options.segment_bytes_max)
        .map_err(|e| LogStoreError::io("preallocate", &path, e))?;
    let mut groups: Vec<(GroupId, &GroupMeta)> =
        model.iter().map(|(group, g)| (*group, &g.meta)).collect();
    groups.sort_unstable_by_key(|(group, _)| *group);
    let checkpoint = record::checkpoint_record(groups.into_iter());
    log.add_record(&checkpoint)
        .map_err(|e| LogStoreError::io("append", &path, e))?;
    log.sync()
        .map_err(|e| LogStoreError::io("fsync", &path, e))?;
    shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .records_written
        .fetch_add(1, Ordering::Relaxed);
    shared
        .fs
        .sync_dir(&shared.dir)
        .map_err(|e| LogStoreError::io("sync_dir", &shared.dir, e))?;
    Ok(Active {
        id,
        path,
        log,
        records: 0,
    })
}
