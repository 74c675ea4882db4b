//! Reading a group's entries: from the in-memory cache for entries queued
//! or in the active segment, from the sealed segment files otherwise.
//!
//! The index is consulted under the store lock and turned into a plan; the
//! file reads happen after the lock is released, on tokio's blocking pool
//! (a read must not stall the runtime's threads on disk I/O). Each record
//! is read once even when several entries come from it, and every entry
//! read back is checked against the log id the index expects.

use super::index::Loc;
use super::record;
use super::{LogStoreError, Shared, SharedLog};
use crate::types::{Entry, GroupId, LogId};
use cairn_engine::record_log::read_record_at;
use std::fmt;
use std::sync::Arc;

/// Reads one group's entries; what openraft's replication tasks use.
#[derive(Clone)]
pub struct GroupLogReader {
    log: Arc<SharedLog>,
    group: GroupId,
}

impl fmt::Debug for GroupLogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupLogReader")
            .field("group", &self.group)
            .finish()
    }
}

/// Where one entry of a read comes from.
enum Planned {
    Cached(Entry),
    File {
        segment: u64,
        offset: u64,
        log_id: LogId,
    },
}

impl GroupLogReader {
    pub(crate) fn new(log: Arc<SharedLog>, group: GroupId) -> Self {
        GroupLogReader { log, group }
    }

    pub(crate) fn read_bytes_max(&self) -> usize {
        self.log.shared.options.read_bytes_max
    }

    /// Entries with index in `start..end` that the log holds, in order.
    /// With `bytes_max`, stops before the entry that would pass it, but
    /// always returns at least one entry when there is one.
    pub(crate) async fn entries(
        &self,
        start: u64,
        end: u64,
        bytes_max: Option<usize>,
    ) -> Result<Vec<Entry>, LogStoreError> {
        let shared = &self.log.shared;
        let plan = plan(shared, self.group, start, end, bytes_max)?;
        if plan.iter().all(|p| matches!(p, Planned::Cached(_))) {
            return Ok(plan
                .into_iter()
                .filter_map(|p| match p {
                    Planned::Cached(entry) => Some(entry),
                    Planned::File { .. } => None,
                })
                .collect());
        }
        let shared = Arc::clone(shared);
        let group = self.group;
        tokio::task::spawn_blocking(move || fetch(&shared, group, plan))
            .await
            .map_err(|e| {
                let dir = &self.log.shared.dir;
                LogStoreError::io("read task", dir, std::io::Error::other(e.to_string()))
            })?
    }
}

fn plan(
    shared: &Shared,
    group: GroupId,
    start: u64,
    end: u64,
    bytes_max: Option<usize>,
) -> Result<Vec<Planned>, LogStoreError> {
    let state = shared.state();
    state.check_open()?;
    let Some(g) = state.groups.get(&group) else {
        return Ok(Vec::new());
    };
    let Some(front) = g.slots.front().map(|s| s.log_id.index) else {
        return Ok(Vec::new());
    };
    let from = usize::try_from(start.saturating_sub(front)).unwrap_or(usize::MAX);
    let to = usize::try_from(end.saturating_sub(front))
        .unwrap_or(usize::MAX)
        .min(g.slots.len());
    if from >= to {
        return Ok(Vec::new());
    }
    let mut plan = Vec::with_capacity(to - from);
    let mut bytes = 0usize;
    for slot in g.slots.range(from..to) {
        let size = slot.bytes as usize;
        if bytes_max.is_some_and(|max| !plan.is_empty() && bytes + size > max) {
            break;
        }
        bytes += size;
        plan.push(match (&slot.entry, slot.loc) {
            (Some(entry), _) => Planned::Cached(entry.clone()),
            (None, Loc::Written { segment, offset }) => Planned::File {
                segment,
                offset,
                log_id: slot.log_id,
            },
            (None, Loc::Pending(_)) => {
                // Queued entries are always cached; reaching here is a bug
                // in the index, reported rather than papered over.
                return Err(LogStoreError::InvalidArgument {
                    group,
                    reason: format!("entry {} is queued but not cached", slot.log_id),
                });
            }
        });
    }
    Ok(plan)
}

/// Runs the file part of a plan (blocking I/O).
fn fetch(shared: &Shared, group: GroupId, plan: Vec<Planned>) -> Result<Vec<Entry>, LogStoreError> {
    let bound = shared.options.record_bytes_bound();
    let mut out = Vec::with_capacity(plan.len());
    // The last record read: consecutive entries usually share one.
    let mut last: Option<(u64, u64, Vec<u8>)> = None;
    for item in plan {
        let (segment, offset, log_id) = match item {
            Planned::Cached(entry) => {
                out.push(entry);
                continue;
            }
            Planned::File {
                segment,
                offset,
                log_id,
            } => (segment, offset, log_id),
        };
        let path = shared.segment_path(segment);
        let payload = match last.take() {
            Some((s, o, payload)) if s == segment && o == offset => payload,
            _ => {
                let file = shared.segment_handle(segment)?;
                read_record_at(file.as_ref(), &path, offset, bound)
                    .map_err(|e| LogStoreError::from_engine(e, &path))?
            }
        };
        let entry = record::entry_from_record(&payload, group, log_id.index)
            .map_err(|reason| LogStoreError::corrupt(&path, offset, reason))?;
        if entry.log_id != log_id {
            return Err(LogStoreError::corrupt(
                &path,
                offset,
                format!(
                    "group {group}: entry read back is {}, the index says {log_id}",
                    entry.log_id
                ),
            ));
        }
        out.push(entry);
        last = Some((segment, offset, payload));
    }
    Ok(out)
}
