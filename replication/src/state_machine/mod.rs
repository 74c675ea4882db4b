//! A group's state machine: committed entries applied to the node's engine.
//!
//! Invariants (see `docs/replication.md`, "Apply, flush, purge"):
//! - Each `apply` call is one engine write batch with the WAL disabled: the
//!   data, the dedup records, and the group's applied state (last applied
//!   log id and membership) together. After a crash the engine holds a
//!   prefix of its batches (the last flush), so the applied state read back
//!   says exactly where to re-apply from.
//! - Building a snapshot takes an engine snapshot, then flushes: everything
//!   the snapshot holds is durable in the engine before openraft learns the
//!   snapshot's log id, and openraft purges the log only up to a snapshot's
//!   log id. So the log always holds every entry after the engine's durable
//!   applied id.
//! - Installing a snapshot first makes the received file the group's current
//!   snapshot and durably marks the install as started; the range is then
//!   replaced batch by batch and the mark cleared with the new applied state,
//!   then flushed. A crash in between redoes the install from the file at
//!   open, so a half-installed range is never taken for state.

mod snapshot;
#[cfg(test)]
mod suite;
#[cfg(test)]
mod tests;

use crate::app::{Application, ApplyContext};
use crate::keys::{self, KeyRange};
use crate::types::{
    BatchResponse, Entry, GroupId, LogId, NodeId, NodeInfo, Request, Response, TypeConfig,
};
use cairn_engine::{Db, IterOptions, Snapshot as EngineSnapshot, WriteBatch, WriteOptions};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use snapshot::{Meta, SnapshotReader, SnapshotWriter};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Name of a group's current snapshot inside its snapshot directory.
const CURRENT: &str = "current.snap";
/// Where a snapshot being received is written.
const RECEIVING: &str = "receiving.tmp";
/// Where a snapshot being built is written.
const BUILDING: &str = "building.tmp";
/// Engine writes during an install are cut at this many bytes.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// What the engine remembers of a group's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, NodeInfo>,
}

type SmResult<T> = Result<T, StorageError<NodeId>>;

fn sm_write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        ErrorVerb::Write,
        io::Error::other(e.to_string()),
    )
}

fn snapshot_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageError::from_io_error(
        ErrorSubject::Snapshot(None),
        verb,
        io::Error::other(e.to_string()),
    )
}

/// State shared by the state machine and its snapshot builders.
pub(crate) struct Shared {
    group: GroupId,
    range: KeyRange,
    db: Db,
    app: Arc<dyn Application>,
    dir: PathBuf,
    state: Mutex<AppliedState>,
    /// Serialises replacing `current.snap` (builder vs install).
    current_lock: Mutex<()>,
    snapshot_seq: AtomicU64,
}

/// A group's `RaftStateMachine`.
pub(crate) struct GroupStateMachine {
    shared: Arc<Shared>,
}

impl GroupStateMachine {
    /// Opens the state machine of `group`, finishing an interrupted snapshot
    /// install first. `dir` holds the group's snapshot files.
    pub(crate) fn open(
        group: GroupId,
        range: KeyRange,
        db: Db,
        app: Arc<dyn Application>,
        dir: PathBuf,
    ) -> io::Result<GroupStateMachine> {
        std::fs::create_dir_all(&dir)?;
        let shared = Arc::new(Shared {
            group,
            range,
            db,
            app,
            dir,
            state: Mutex::new(AppliedState::default()),
            current_lock: Mutex::new(()),
            snapshot_seq: AtomicU64::new(0),
        });
        if shared
            .db
            .get(keys::installing_key(group))
            .map_err(io::Error::other)?
            .is_some()
        {
            tracing::warn!(group, "finishing a snapshot install interrupted by a crash");
            let current = shared.dir.join(CURRENT);
            let meta = SnapshotReader::open(&current)?.meta().clone();
            shared.install_from(&current, &meta)?;
        }
        let state = read_applied(&shared.db, group, None)?;
        *lock(&shared.state) = state;
        Ok(GroupStateMachine { shared })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_applied(db: &Db, group: GroupId, at: Option<&EngineSnapshot>) -> io::Result<AppliedState> {
    let key = keys::applied_key(group);
    let bytes = match at {
        Some(snapshot) => db.get_at(&key, snapshot),
        None => db.get(&key),
    }
    .map_err(io::Error::other)?;
    match bytes {
        None => Ok(AppliedState::default()),
        Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("group {group}: applied state does not decode: {e}"),
            )
        }),
    }
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| io::Error::other(format!("encode: {e}")))
}

const NO_WAL: WriteOptions = WriteOptions {
    sync: false,
    disable_wal: true,
};

impl Shared {
    /// Applies `entries` as one engine batch; returns one response each
    /// (for a request batch, one per request, in order).
    fn apply_entries(&self, entries: Vec<Entry>) -> io::Result<Vec<BatchResponse>> {
        let mut batch = WriteBatch::new();
        let mut responses = Vec::with_capacity(entries.len());
        let mut state = lock(&self.state).clone();
        {
            let mut ctx = ApplyContext::new(self.group, &self.range, &self.db, &mut batch);
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => BatchResponse::default(),
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                        BatchResponse::default()
                    }
                    EntryPayload::Normal(batch) => {
                        // Each request is applied on its own, in order, with
                        // its own dedup check: a later request of the batch
                        // sees the writes and dedup records of earlier ones
                        // through `ctx`.
                        let mut responses = Vec::with_capacity(batch.requests.len());
                        for request in batch.requests {
                            responses.push(self.apply_request(&mut ctx, request)?);
                        }
                        BatchResponse { responses }
                    }
                };
                responses.push(response);
            }
            ctx.put_meta(&keys::applied_key(self.group), &encode(&state)?);
        }
        self.db.write(batch, NO_WAL).map_err(io::Error::other)?;
        *lock(&self.state) = state;
        Ok(responses)
    }

    fn apply_request(&self, ctx: &mut ApplyContext<'_>, request: Request) -> io::Result<Response> {
        let dedup_key =
            (request.client_id != 0).then(|| keys::dedup_key(self.group, request.client_id));
        if let Some(key) = &dedup_key
            && let Some(record) = ctx.get(key).map_err(io::Error::other)?
        {
            let (serial, cached) = decode_dedup(&record).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("group {}: malformed dedup record", self.group),
                )
            })?;
            if request.serial <= serial {
                // A retry of an applied request: answer as the first
                // application did (only the latest response is kept; an
                // older serial gets an empty duplicate reply).
                let payload = if request.serial == serial {
                    cached.to_vec()
                } else {
                    Vec::new()
                };
                return Ok(Response {
                    payload,
                    duplicate: true,
                });
            }
        }
        let payload = self
            .app
            .apply(ctx, &request.command)
            .map_err(io::Error::other)?;
        if let Some(key) = dedup_key {
            let mut record = Vec::with_capacity(8 + payload.len());
            record.extend_from_slice(&request.serial.to_le_bytes());
            record.extend_from_slice(&payload);
            ctx.put_meta(&key, &record);
        }
        Ok(Response {
            payload,
            duplicate: false,
        })
    }

    /// Writes a snapshot file of the group at an engine snapshot taken now,
    /// after making that state durable in the engine.
    fn build(&self) -> io::Result<(Meta, PathBuf)> {
        let engine_snapshot = self.db.snapshot();
        // Flush after the snapshot: its contents are then durable, so the
        // log may be purged up to its applied id (see the module comment).
        self.db.flush().map_err(io::Error::other)?;
        let state = read_applied(&self.db, self.group, Some(&engine_snapshot))?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match state.last_applied {
            Some(id) => format!(
                "{}-{}-{}-{seq}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => format!("0-0-0-{seq}"),
        };
        let meta = Meta {
            last_log_id: state.last_applied,
            last_membership: state.membership,
            snapshot_id,
        };
        let building = self.dir.join(BUILDING);
        let mut writer = SnapshotWriter::create(&building, &meta)?;
        for range in [self.range.clone(), keys::dedup_range(self.group)] {
            let opts = IterOptions {
                skip_cache: true,
                ..IterOptions::range(range.start, range.end)
            };
            for item in self.db.iter_at(opts, &engine_snapshot) {
                let (key, value) = item.map_err(io::Error::other)?;
                writer.add(&key, &value)?;
            }
        }
        let (pairs, bytes) = writer.finish()?;
        let current = self.dir.join(CURRENT);
        self.replace_current(&building, &current, &meta)?;
        tracing::info!(group = self.group, pairs, bytes, id = %meta.snapshot_id, "built snapshot");
        Ok((meta, current))
    }

    /// Renames `from` over the current snapshot unless the current one is
    /// newer (a slow build finishing after an install).
    fn replace_current(&self, from: &Path, current: &Path, meta: &Meta) -> io::Result<()> {
        let _guard = lock(&self.current_lock);
        if let Ok(reader) = SnapshotReader::open(current)
            && reader.meta().last_log_id > meta.last_log_id
        {
            std::fs::remove_file(from)?;
            return Ok(());
        }
        std::fs::rename(from, current)?;
        sync_dir(&self.dir)
    }

    /// Replaces the group's range with the snapshot at `path` (verified).
    fn install_from(&self, path: &Path, meta: &Meta) -> io::Result<()> {
        let group = self.group;
        let mut batch = WriteBatch::new();
        batch.put(keys::installing_key(group), meta.snapshot_id.as_bytes());
        self.db.write(batch, NO_WAL).map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;

        let mut batch = WriteBatch::new();
        batch.delete_range(&self.range.start, &self.range.end);
        let dedup = keys::dedup_range(group);
        batch.delete_range(&dedup.start, &dedup.end);
        let mut reader = SnapshotReader::open(path)?;
        while let Some(pairs) = reader.next_block()? {
            for (key, value) in pairs {
                if !self.range.contains(&key) && !dedup.contains(&key) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("snapshot {}: key outside group {group}", path.display()),
                    ));
                }
                batch.put(&key, &value);
            }
            if batch.size_bytes() >= INSTALL_BATCH_BYTES {
                let full = std::mem::take(&mut batch);
                self.db.write(full, NO_WAL).map_err(io::Error::other)?;
            }
        }
        let state = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        batch.put(keys::applied_key(group), encode(&state)?);
        batch.delete(keys::installing_key(group));
        self.db.write(batch, NO_WAL).map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        *lock(&self.state) = state;
        Ok(())
    }
}

fn decode_dedup(record: &[u8]) -> Option<(u64, &[u8])> {
    let serial: [u8; 8] = record.get(..8)?.try_into().ok()?;
    Some((u64::from_le_bytes(serial), record.get(8..)?))
}

/// Makes the received snapshot durable at `receiving`. openraft hands back
/// the file `begin_receiving_snapshot` opened there, filled by the chunks;
/// any other file (a caller may pass one) is copied in, in bounded memory.
fn adopt_received(mut file: std::fs::File, receiving: &Path) -> io::Result<()> {
    if !same_file(&file, receiving)? {
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0))?;
        let mut out = std::fs::File::create(receiving)?;
        io::copy(&mut file, &mut out)?;
        file = out;
    }
    file.sync_all()
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, _path: &Path) -> io::Result<bool> {
    Ok(false)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Entries up to this many bytes of commands may be applied on the state
/// machine's own task.
const APPLY_IN_PLACE_BYTES_MAX: usize = 256 << 10;

/// Whether `entries` may be applied on the calling async task rather than
/// on a blocking thread. Moving to a blocking thread and back costs two
/// thread hand-offs per apply, which with many groups of small entries was
/// the top item in the profile; an apply is one engine write with the WAL
/// off, plus reads for deduplication and the application (in memory, in
/// the block cache or on mapped pages). So a small apply runs in place
/// unless the engine may make the write wait for a flush or a compaction;
/// a large one, or one the engine may stall, moves to a blocking thread.
fn apply_in_place(entries: &[Entry], db: &Db) -> bool {
    let mut bytes = 0;
    for entry in entries {
        if let EntryPayload::Normal(batch) = &entry.payload {
            bytes += batch
                .requests
                .iter()
                .map(|r| r.command.len())
                .sum::<usize>();
        }
        if bytes > APPLY_IN_PLACE_BYTES_MAX {
            return false;
        }
    }
    !db.write_may_stall()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError<NodeId>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| sm_write_err(format!("state machine task failed: {e}")))
}

async fn open_snapshot_file(path: PathBuf) -> SmResult<Option<Snapshot<TypeConfig>>> {
    let opened = blocking(move || -> io::Result<Option<(Meta, std::fs::File)>> {
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = SnapshotReader::from_file(&path, file.try_clone()?)?
            .meta()
            .clone();
        Ok(Some((meta, file)))
    })
    .await?
    .map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
    Ok(opened.map(|(meta, file)| Snapshot {
        meta,
        snapshot: Box::new(tokio::fs::File::from_std(file)),
    }))
}

/// Builds snapshot files off the apply path.
pub(crate) struct GroupSnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder {
    async fn build_snapshot(&mut self) -> SmResult<Snapshot<TypeConfig>> {
        let shared = self.shared.clone();
        let (meta, path) = blocking(move || shared.build())
            .await?
            .map_err(|e| snapshot_err(ErrorVerb::Write, e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotBuilder = GroupSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> SmResult<(Option<LogId>, StoredMembership<NodeId, NodeInfo>)> {
        let state = lock(&self.shared.state).clone();
        Ok((state.last_applied, state.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> SmResult<Vec<BatchResponse>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if apply_in_place(&entries, &self.shared.db) {
            return self.shared.apply_entries(entries).map_err(sm_write_err);
        }
        let shared = self.shared.clone();
        blocking(move || shared.apply_entries(entries))
            .await?
            .map_err(sm_write_err)
    }

    async fn get_snapshot_builder(&mut self) -> GroupSnapshotBuilder {
        GroupSnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> SmResult<Box<tokio::fs::File>> {
        let path = self.shared.dir.join(RECEIVING);
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| snapshot_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> SmResult<()> {
        let file = snapshot.into_std().await;
        let shared = self.shared.clone();
        let meta = meta.clone();
        blocking(move || -> io::Result<()> {
            let receiving = shared.dir.join(RECEIVING);
            adopt_received(file, &receiving)?;
            let mut reader = SnapshotReader::open(&receiving)?;
            if reader.meta().last_log_id != meta.last_log_id
                || reader.meta().last_membership != meta.last_membership
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "received snapshot's header does not match the leader's metadata",
                ));
            }
            reader.verify_all()?;
            let current = shared.dir.join(CURRENT);
            shared.replace_current(&receiving, &current, &meta)?;
            shared.install_from(&current, &meta)
        })
        .await?
        .map_err(|e| snapshot_err(ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(&mut self) -> SmResult<Option<Snapshot<TypeConfig>>> {
        open_snapshot_file(self.shared.dir.join(CURRENT)).await
    }
}
