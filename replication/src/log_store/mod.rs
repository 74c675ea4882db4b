//! TEMPORARY in-memory stand-in (not committed) until the real store lands.
use crate::types::{Entry, GroupId, LogId, NodeId, TypeConfig, Vote};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageError};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct GroupState {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

#[derive(Default)]
pub struct SharedLog {
    groups: Mutex<HashMap<GroupId, Arc<Mutex<GroupState>>>>,
}

impl SharedLog {
    pub fn new_mem() -> Arc<SharedLog> {
        Arc::new(SharedLog::default())
    }
    pub fn group(self: &Arc<Self>, group: GroupId) -> GroupLog {
        let state = self
            .groups
            .lock()
            .unwrap()
            .entry(group)
            .or_default()
            .clone();
        GroupLog { state }
    }
    pub fn remove_group(&self, group: GroupId) -> Result<(), String> {
        self.groups.lock().unwrap().remove(&group);
        Ok(())
    }
}

#[derive(Clone)]
pub struct GroupLog {
    state: Arc<Mutex<GroupState>>,
}

impl RaftLogReader<TypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for GroupLog {
    type LogReader = GroupLog;
    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let s = self.state.lock().unwrap();
        let last = s
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(s.purged);
        Ok(LogState {
            last_purged_log_id: s.purged,
            last_log_id: last,
        })
    }
    async fn get_log_reader(&mut self) -> GroupLog {
        self.clone()
    }
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        self.state.lock().unwrap().vote = Some(*vote);
        Ok(())
    }
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        Ok(self.state.lock().unwrap().vote)
    }
    async fn save_committed(&mut self, c: Option<LogId>) -> Result<(), StorageError<NodeId>> {
        self.state.lock().unwrap().committed = c;
        Ok(())
    }
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(self.state.lock().unwrap().committed)
    }
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        {
            let mut s = self.state.lock().unwrap();
            for e in entries {
                s.entries.insert(e.log_id.index, e);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.state.lock().unwrap().entries.split_off(&log_id.index);
        Ok(())
    }
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let mut s = self.state.lock().unwrap();
        let keep = s.entries.split_off(&(log_id.index + 1));
        s.entries = keep;
        s.purged = Some(log_id);
        Ok(())
    }
}
