//! openraft's storage traits over [`GroupLog`] and [`GroupLogReader`].
//! Errors keep their full text and are filed under the subject openraft
//! expects (vote, logs, store).

use super::{Done, GroupLog, GroupLogReader, LogStoreError};
use crate::types::{Entry, LogId, NodeId, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, StorageError};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

fn logs(verb: ErrorVerb) -> impl FnOnce(LogStoreError) -> StorageError<NodeId> {
    move |err| err.into_storage(ErrorSubject::Logs, verb)
}

fn vote(verb: ErrorVerb) -> impl FnOnce(LogStoreError) -> StorageError<NodeId> {
    move |err| err.into_storage(ErrorSubject::Vote, verb)
}

/// `range` as `start..end`.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for GroupLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let (start, end) = bounds(&range);
        self.entries(start, end, None)
            .await
            .map_err(logs(ErrorVerb::Read))
    }

    /// At most `read_bytes_max` bytes of entries, at least one entry.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let max = self.read_bytes_max();
        self.entries(start, end, Some(max))
            .await
            .map_err(logs(ErrorVerb::Read))
    }
}

impl RaftLogReader<TypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.reader().try_get_log_entries(range).await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.reader().limited_get_log_entries(start, end).await
    }
}

impl RaftLogStorage<TypeConfig> for GroupLog {
    type LogReader = GroupLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let (last_purged_log_id, last_log_id) = self.log_state().map_err(logs(ErrorVerb::Read))?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    /// Returns once the vote is synced.
    async fn save_vote(&mut self, v: &Vote) -> Result<(), StorageError<NodeId>> {
        self.save_vote_inner(v)
            .await
            .map_err(vote(ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.vote().map_err(vote(ErrorVerb::Read))
    }

    /// Returns once the committed id is synced.
    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        self.save_committed_inner(committed)
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        self.committed()
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    /// Returns once the entries are readable and queued; `callback` is
    /// called after the fsync that makes them durable (or with the error).
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.append_inner(entries, Done::Flushed(callback))
            .await
            .map_err(logs(ErrorVerb::Write))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.truncate_inner(log_id)
            .await
            .map_err(logs(ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.purge_inner(log_id)
            .await
            .map_err(logs(ErrorVerb::Delete))
    }
}
