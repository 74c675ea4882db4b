//! Opening the log: replay every segment in order and rebuild each group's
//! index, metadata, and the writer's model of the disk.
//!
//! Rules (`docs/replication.md`, "Recovery"):
//! - Segments are replayed in number order with the engine's point-in-time
//!   rule. Damage in any segment but the last fails open with the file and
//!   offset: those segments were sealed (or rewritten and synced) before a
//!   newer one was started. In the last segment, damage proven synced fails
//!   open; a torn tail is cut.
//! - Unless the last segment ends with a seal marker (clean close), its
//!   valid prefix is rewritten to a temporary file, synced and renamed over
//!   it: the cut is then durable, and records that were read back but maybe
//!   not synced (a process crash leaves them in the page cache) are synced
//!   before anyone acts on them. A last segment with no valid record is
//!   removed. The writer then starts a new segment after it.
//! - Every segment starts with a checkpoint that sets every group's
//!   metadata; groups it does not list are dropped, entries beyond a
//!   group's last id or up to its purged id are dropped. Entries lost with
//!   deleted segments are only allowed if a later purge covers them.
//! - Entries must be contiguous per group: a record that would leave a
//!   hole fails open; at the end each group must hold exactly the entries
//!   after its purged id up to its last id.

use super::index::{GroupState, Loc, Slot};
use super::record::{self, GroupMeta, Record};
use super::writer::{DiskGroup, Run};
use super::{LogStoreError, TEMP_SUFFIX, parse_segment_name, segment_path};
use crate::types::GroupId;
use cairn_engine::record_log::replay;
use cairn_engine::{FileSystem, WalRecovery};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What `open` hands to the store and the writer.
pub(crate) struct Recovered {
    pub(crate) groups: HashMap<GroupId, GroupState>,
    pub(crate) model: HashMap<GroupId, DiskGroup>,
    /// Segments left on disk and their sizes.
    pub(crate) segments: BTreeMap<u64, u64>,
}

/// A group while replaying.
#[derive(Default)]
struct Replaying {
    state: GroupState,
    /// Entries up to this index were lost with deleted segments, so a later
    /// purge must cover them.
    must_purge_upto: Option<u64>,
}

impl Replaying {
    fn note_missing_upto(&mut self, index: u64) {
        let purged = self.state.meta.purged.map(|p| p.index);
        if purged.is_none_or(|p| p < index) {
            self.must_purge_upto = Some(self.must_purge_upto.map_or(index, |m| m.max(index)));
        }
    }
}

pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path) -> Result<Recovered, LogStoreError> {
    let names = fs
        .list(dir)
        .map_err(|e| LogStoreError::io("list", dir, e))?;
    let mut ids = Vec::new();
    for name in names {
        if let Some(id) = parse_segment_name(&name) {
            ids.push(id);
        } else if name.ends_with(TEMP_SUFFIX) {
            // An interrupted rewrite; the original is intact.
            let path = dir.join(&name);
            fs.remove(&path)
                .map_err(|e| LogStoreError::io("remove", &path, e))?;
        }
    }
    ids.sort_unstable();
    let mut groups: HashMap<GroupId, Replaying> = HashMap::new();
    let mut segments = BTreeMap::new();
    for (i, &id) in ids.iter().enumerate() {
        let last = i + 1 == ids.len();
        let size = replay_segment(fs, dir, id, last, &mut groups)?;
        if let Some(size) = size {
            segments.insert(id, size);
        }
    }
    let mut states = HashMap::with_capacity(groups.len());
    let mut model = HashMap::with_capacity(groups.len());
    for (group, g) in groups {
        check_complete(group, &g)?;
        model.insert(group, disk_group(&g.state));
        states.insert(group, g.state);
    }
    Ok(Recovered {
        groups: states,
        model,
        segments,
    })
}

/// Replays segment `id`; returns its size if it stays on disk.
fn replay_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    last: bool,
    groups: &mut HashMap<GroupId, Replaying>,
) -> Result<Option<u64>, LogStoreError> {
    let path = segment_path(dir, id);
    let data = fs
        .read_all(&path)
        .map_err(|e| LogStoreError::io("read", &path, e))?;
    let mut failure: Option<LogStoreError> = None;
    let mut first = true;
    let result = replay(&data, &path, WalRecovery::PointInTime, |offset, payload| {
        let applied = record::decode(payload)
            .map_err(|reason| LogStoreError::corrupt(&path, offset, reason))
            .and_then(|record| {
                if first != matches!(record, Record::Checkpoint { .. }) {
                    let reason = if first {
                        "segment does not start with a checkpoint"
                    } else {
                        "checkpoint in the middle of a segment"
                    };
                    return Err(LogStoreError::corrupt(&path, offset, reason));
                }
                first = false;
                apply(groups, record, id, offset)
                    .map_err(|reason| LogStoreError::corrupt(&path, offset, reason))
            });
        applied.map_err(|err| {
            failure = Some(err);
            cairn_engine::Error::InvalidArgument("raft log record rejected".to_owned())
        })
    });
    let report = match (result, failure) {
        (_, Some(err)) => return Err(err),
        (Err(err), None) => return Err(LogStoreError::from_engine(err, &path)),
        (Ok(report), None) => report,
    };
    if !last {
        if let Some((offset, bytes)) = report.torn_tail {
            return Err(LogStoreError::corrupt(
                &path,
                offset,
                format!("{bytes} damaged bytes in a sealed segment (not the last one)"),
            ));
        }
        if report.records == 0 {
            return Err(LogStoreError::corrupt(
                &path,
                0,
                "sealed segment holds no checkpoint",
            ));
        }
        return Ok(Some(data.len() as u64));
    }
    if report.ends_with_seal {
        return Ok(Some(data.len() as u64));
    }
    if let Some((offset, bytes)) = report.torn_tail {
        tracing::warn!(
            path = %path.display(),
            offset,
            bytes,
            "cutting the torn tail of the raft log"
        );
    }
    if report.records == 0 {
        fs.remove(&path)
            .map_err(|e| LogStoreError::io("remove", &path, e))?;
        fs.sync_dir(dir)
            .map_err(|e| LogStoreError::io("sync_dir", dir, e))?;
        return Ok(None);
    }
    let valid = usize::try_from(report.valid_bytes).unwrap_or(data.len());
    let prefix = data.get(..valid).unwrap_or(&data);
    rewrite(fs, dir, &path, prefix)?;
    Ok(Some(prefix.len() as u64))
}

/// Replaces `path` by `bytes`, durably: temp file, fsync, rename, fsync dir.
fn rewrite(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), LogStoreError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = Path::new(&temp);
    let mut file = fs
        .create(temp)
        .map_err(|e| LogStoreError::io("create", temp, e))?;
    file.append(bytes)
        .map_err(|e| LogStoreError::io("append", temp, e))?;
    file.sync()
        .map_err(|e| LogStoreError::io("fsync", temp, e))?;
    drop(file);
    fs.rename(temp, path)
        .map_err(|e| LogStoreError::io("rename", temp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| LogStoreError::io("sync_dir", dir, e))
}

/// Applies one record; errors say what is inconsistent.
fn apply(
    groups: &mut HashMap<GroupId, Replaying>,
    record: Record,
    segment: u64,
    offset: u64,
) -> Result<(), String> {
    match record {
        Record::Checkpoint { groups: metas } => {
            let listed: HashMap<GroupId, GroupMeta> = metas.into_iter().collect();
            groups.retain(|group, _| listed.contains_key(group));
            for (group, meta) in listed {
                apply_checkpoint(group, groups.entry(group).or_default(), meta)?;
            }
        }
        Record::Entries {
            group,
            first_index,
            entries,
            sizes,
        } => {
            let g = groups.entry(group).or_default();
            let expected = match g.state.slots.back() {
                Some(back) => Some(back.log_id.index + 1),
                None => g.state.meta.last.map(|l| l.index + 1),
            };
            if expected.is_some_and(|e| e != first_index) {
                return Err(format!(
                    "group {group}: entries start at {first_index}, the log continues at {}",
                    expected.unwrap_or_default()
                ));
            }
            if g.state.slots.is_empty()
                && let Some(last) = g.state.meta.last
            {
                g.note_missing_upto(last.index);
            }
            for (entry, bytes) in entries.into_iter().zip(sizes) {
                g.state.meta.last = Some(entry.log_id);
                g.state.slots.push_back(Slot {
                    log_id: entry.log_id,
                    loc: Loc::Written { segment, offset },
                    bytes,
                    entry: None,
                });
            }
        }
        Record::Vote { group, vote } => {
            groups.entry(group).or_default().state.meta.vote = Some(vote)
        }
        Record::Committed { group, committed } => {
            groups.entry(group).or_default().state.meta.committed = committed;
        }
        Record::Truncate {
            group,
            since,
            last_after,
        } => {
            let g = groups.entry(group).or_default();
            while g
                .state
                .slots
                .back()
                .is_some_and(|s| s.log_id.index >= since)
            {
                g.state.slots.pop_back();
            }
            if let Some(back) = g.state.slots.back()
                && Some(back.log_id) != last_after
            {
                return Err(format!(
                    "group {group}: truncate at {since} says the log ends at {last_after:?}, entries end at {}",
                    back.log_id
                ));
            }
            g.state.meta.last = last_after;
        }
        Record::Purge { group, upto } => {
            let g = groups.entry(group).or_default();
            while g
                .state
                .slots
                .front()
                .is_some_and(|s| s.log_id.index <= upto.index)
            {
                g.state.slots.pop_front();
            }
            g.state.meta.purged = Some(upto);
            if g.state.meta.last.is_none_or(|l| l.index <= upto.index) {
                g.state.meta.last = Some(upto);
            }
        }
        Record::RemoveGroup { group } => {
            groups.remove(&group);
        }
    }
    Ok(())
}

/// A checkpoint is the truth about a group's metadata at that point.
fn apply_checkpoint(group: GroupId, g: &mut Replaying, meta: GroupMeta) -> Result<(), String> {
    let purged = meta.purged.map(|p| p.index);
    while g
        .state
        .slots
        .back()
        .is_some_and(|s| meta.last.is_none_or(|l| s.log_id.index > l.index))
    {
        g.state.slots.pop_back();
    }
    while g
        .state
        .slots
        .front()
        .is_some_and(|s| purged.is_some_and(|p| s.log_id.index <= p))
    {
        g.state.slots.pop_front();
    }
    if let Some(back) = g.state.slots.back()
        && Some(back.log_id) != meta.last
    {
        return Err(format!(
            "group {group}: checkpoint says the log ends at {:?}, entries end at {}",
            meta.last, back.log_id
        ));
    }
    g.state.meta = meta;
    match g.state.slots.front() {
        Some(front) if purged.is_some_and(|p| front.log_id.index > p + 1) => {
            g.note_missing_upto(front.log_id.index - 1);
        }
        None => {
            if let Some(last) = g.state.meta.last {
                g.note_missing_upto(last.index);
            }
        }
        _ => {}
    }
    Ok(())
}

/// At the end of replay: the group holds exactly its entries after
/// `purged` up to `last`.
fn check_complete(group: GroupId, g: &Replaying) -> Result<(), LogStoreError> {
    let meta = &g.state.meta;
    let hole = |reason: String| Err(LogStoreError::Hole { group, reason });
    let purged = meta.purged.map(|p| p.index);
    if let Some(must) = g.must_purge_upto
        && purged.is_none_or(|p| p < must)
    {
        return hole(format!(
            "entries up to {must} are missing (their segments are gone) but only {purged:?} is purged"
        ));
    }
    match (g.state.slots.front(), g.state.slots.back()) {
        (Some(front), Some(back)) => {
            if Some(back.log_id) != meta.last {
                return hole(format!(
                    "entries end at {}, the log at {:?}",
                    back.log_id, meta.last
                ));
            }
            if let Some(p) = purged
                && front.log_id.index != p + 1
            {
                return hole(format!(
                    "entries start at {}, purged up to {p}",
                    front.log_id.index
                ));
            }
        }
        _ => {
            if meta.last != meta.purged {
                return hole(format!(
                    "no entries, but the log ends at {:?} and is purged up to {:?}",
                    meta.last, meta.purged
                ));
            }
        }
    }
    Ok(())
}

/// The writer's model of a recovered group.
fn disk_group(state: &GroupState) -> DiskGroup {
    let mut runs: std::collections::VecDeque<Run> = std::collections::VecDeque::new();
    for slot in &state.slots {
        let Loc::Written { segment, .. } = slot.loc else {
            continue;
        };
        let index = slot.log_id.index;
        match runs.back_mut() {
            Some(run) if run.segment == segment => run.last = index,
            _ => runs.push_back(Run {
                segment,
                first: index,
                last: index,
            }),
        }
    }
    DiskGroup {
        meta: state.meta.clone(),
        runs,
    }
}
