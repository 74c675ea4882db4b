//! The in-memory index of one group: its metadata and, for every live
//! entry, its log id, where its record is, and (while the entry is queued
//! or in the active segment) the entry itself.
//!
//! Invariant: `slots` holds the group's entries `purged + 1 ..= last`
//! without a hole, `slots[i]` has index `front + i`. Every change here is
//! made under the store lock together with queueing the record that makes
//! it durable, so the queue order is the order of changes.

use super::record::{self, GroupMeta};
use super::{Effect, LogStoreError, Op, entries_op, slot_bytes};
use crate::types::{Entry, GroupId, LogId};
use std::collections::VecDeque;

/// Where an entry's record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    /// Queued, not written yet: waits for the record with this sequence.
    Pending(u64),
    /// Written in `segment`, the record starting at `offset`.
    Written { segment: u64, offset: u64 },
}

#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) log_id: LogId,
    pub(crate) loc: Loc,
    /// Encoded size, for read limits.
    pub(crate) bytes: u32,
    /// The entry, while it is queued or in the active segment.
    pub(crate) entry: Option<Entry>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GroupState {
    pub(crate) meta: GroupMeta,
    pub(crate) slots: VecDeque<Slot>,
}

impl GroupState {
    /// Position of `index` in `slots`, if the entry is present.
    pub(crate) fn position(&self, index: u64) -> Option<usize> {
        let front = self.slots.front()?.log_id.index;
        let pos = usize::try_from(index.checked_sub(front)?).ok()?;
        (pos < self.slots.len()).then_some(pos)
    }

    /// The log id of `index`: an entry's, or the purged id.
    fn log_id_at(&self, index: u64) -> Option<LogId> {
        if let Some(pos) = self.position(index) {
            return self.slots.get(pos).map(|s| s.log_id);
        }
        self.meta.purged.filter(|p| p.index == index)
    }

    /// Drops entries with index >= `since`; returns the new last log id.
    fn cut_from(&mut self, since: u64) -> Option<LogId> {
        while self.slots.back().is_some_and(|s| s.log_id.index >= since) {
            self.slots.pop_back();
        }
        self.meta.last = self.slots.back().map(|s| s.log_id).or(self.meta.purged);
        self.meta.last
    }

    /// Appends `entries` (REQUIRES: `encoded[i]` encodes `entries[i]`).
    /// Returns the records to queue and how many sequence numbers, from
    /// `seq`, they used.
    ///
    /// An append that overlaps the log replaces the overlapped suffix (a
    /// TRUNCATE record is queued first). An append that leaves a gap is
    /// refused when the group was purged; otherwise the old entries are
    /// dropped and the log restarts at the new index (openraft never does
    /// this, but its storage test suite does).
    pub(crate) fn append(
        &mut self,
        group: GroupId,
        entries: Vec<Entry>,
        encoded: Vec<Vec<u8>>,
        record_bytes_target: usize,
        seq: u64,
    ) -> Result<(Vec<Op>, u64), LogStoreError> {
        let invalid = |reason: String| LogStoreError::InvalidArgument { group, reason };
        let (mut entries, mut encoded) = (entries, encoded);
        // Entries at or below the purged id are committed and applied, so
        // the log already agrees with them (Raft's log matching): they are
        // dropped. openraft's test suite appends such entries after its
        // start-up purge.
        if let Some(purged) = self.meta.purged {
            let stale = entries
                .iter()
                .take_while(|e| e.log_id.index <= purged.index)
                .count();
            entries.drain(..stale);
            encoded.drain(..stale.min(encoded.len()));
        }
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            // Nothing to write; the caller's callback still waits for every
            // earlier record to be synced.
            return Ok((vec![barrier_op(group)], 0));
        };
        for (i, entry) in entries.iter().enumerate() {
            if entry.log_id.index != first + i as u64 {
                return Err(invalid(format!(
                    "appended entries are not consecutive: {} at position {i} after {first}",
                    entry.log_id
                )));
            }
        }
        let mut ops = Vec::new();
        let next = self.meta.last.map(|l| l.index + 1);
        match next {
            Some(next) if first < next => {
                let last_after = self.log_id_at(first - 1);
                self.cut_from(first);
                ops.push(truncate_op(group, first, last_after));
            }
            Some(next) if first > next => {
                if let Some(purged) = self.meta.purged {
                    return Err(invalid(format!(
                        "append at {first} leaves a hole after {}, purged up to {purged}",
                        next - 1
                    )));
                }
                tracing::warn!(
                    group,
                    first,
                    next,
                    "append leaves a hole; the group's log restarts at the appended index"
                );
                self.slots.clear();
                self.meta.last = None;
                ops.push(truncate_op(group, 0, None));
            }
            _ => {}
        }
        let mut used = 0u64;
        let mut chunk_first = first;
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        let mut chunk_bytes = 0usize;
        let total = entries.len();
        for (i, (entry, bytes)) in entries.into_iter().zip(encoded).enumerate() {
            let record_seq = seq + used;
            chunk_bytes += bytes.len() + 4;
            self.slots.push_back(Slot {
                log_id: entry.log_id,
                loc: Loc::Pending(record_seq),
                bytes: slot_bytes(&bytes),
                entry: Some(entry),
            });
            chunk.push(bytes);
            if chunk_bytes >= record_bytes_target || i + 1 == total {
                let last = self.slots.back().map(|s| s.log_id);
                if let Some(last) = last {
                    ops.push(entries_op(group, record_seq, chunk_first, last, &chunk));
                    self.meta.last = Some(last);
                }
                used += 1;
                chunk.clear();
                chunk_bytes = 0;
                chunk_first = first + i as u64 + 1;
            }
        }
        Ok((ops, used))
    }

    /// Drops entries with index >= `since` (openraft's truncate).
    pub(crate) fn truncate(&mut self, group: GroupId, since: u64) -> Result<Op, LogStoreError> {
        if let Some(purged) = self.meta.purged
            && since <= purged.index
        {
            return Err(LogStoreError::InvalidArgument {
                group,
                reason: format!("truncate at {since} reaches into entries purged up to {purged}"),
            });
        }
        let last_after = self.cut_from(since);
        Ok(truncate_op(group, since, last_after))
    }

    /// Drops entries with index <= `upto.index` (openraft's purge). A purge
    /// at or below the current one changes nothing and writes nothing.
    pub(crate) fn purge(&mut self, group: GroupId, upto: LogId) -> Option<Op> {
        if self.meta.purged.is_some_and(|p| p.index >= upto.index) {
            return None;
        }
        while self
            .slots
            .front()
            .is_some_and(|s| s.log_id.index <= upto.index)
        {
            self.slots.pop_front();
        }
        self.meta.purged = Some(upto);
        if self.meta.last.is_none_or(|l| l.index <= upto.index) {
            self.meta.last = Some(upto);
        }
        Some(Op {
            group,
            payload: record::purge_record(group, &upto),
            effect: Effect::Purge(upto),
            permits: 0,
            done: None,
        })
    }
}

/// A record with no bytes: the writer writes nothing for it but completes
/// its callback after the batch's fsync, so completion order is kept.
fn barrier_op(group: GroupId) -> Op {
    Op {
        group,
        payload: Vec::new(),
        effect: Effect::Barrier,
        permits: 0,
        done: None,
    }
}

fn truncate_op(group: GroupId, since: u64, last_after: Option<LogId>) -> Op {
    Op {
        group,
        payload: record::truncate_record(group, since, last_after.as_ref()),
        effect: Effect::Truncate { since, last_after },
        permits: 0,
        done: None,
    }
}
