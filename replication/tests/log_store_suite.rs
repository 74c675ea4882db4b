//! openraft's storage test suite against the shared log store. The state
//! machine here is a minimal in-memory stand-in (the suite needs one); the
//! real state machine lives elsewhere and is tested on its own.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use cairn_engine::{FileSystem, MemFs, StdFs};
use cairn_replication::{
    BatchResponse, Entry, GroupLog, LogId, LogStoreOptions, NodeId, NodeInfo, SharedLog, TypeConfig,
};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use std::io::SeekFrom;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

type Membership = StoredMembership<NodeId, NodeInfo>;

#[derive(Default)]
struct Inner {
    applied: Option<LogId>,
    membership: Membership,
    snapshot: Option<(SnapshotMeta<NodeId, NodeInfo>, Vec<u8>)>,
    snapshots_built: u64,
}

/// Just enough of a state machine for the suite: applied id, membership and
/// a snapshot holding those two.
#[derive(Clone, Default)]
struct TestStateMachine {
    inner: Arc<Mutex<Inner>>,
}

fn io_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

async fn temp_file(bytes: &[u8]) -> Result<tokio::fs::File, StorageError<NodeId>> {
    let file = tempfile::tempfile().map_err(io_err)?;
    let mut file = tokio::fs::File::from_std(file);
    file.write_all(bytes).await.map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).await.map_err(io_err)?;
    Ok(file)
}

impl RaftSnapshotBuilder<TypeConfig> for TestStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, bytes) = {
            let mut inner = self.inner.lock().unwrap();
            inner.snapshots_built += 1;
            let bytes = postcard::to_allocvec(&(inner.applied, &inner.membership)).unwrap();
            let meta = SnapshotMeta {
                last_log_id: inner.applied,
                last_membership: inner.membership.clone(),
                snapshot_id: format!("snapshot-{}", inner.snapshots_built),
            };
            inner.snapshot = Some((meta.clone(), bytes.clone()));
            (meta, bytes)
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(temp_file(&bytes).await?),
        })
    }
}

impl RaftStateMachine<TypeConfig> for TestStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        let inner = self.inner.lock().unwrap();
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().unwrap();
        let mut responses = Vec::new();
        for entry in entries {
            inner.applied = Some(entry.log_id);
            if let EntryPayload::Membership(m) = entry.payload {
                inner.membership = StoredMembership::new(Some(entry.log_id), m);
            }
            responses.push(BatchResponse::default());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        Ok(Box::new(temp_file(&[]).await?))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut bytes = Vec::new();
        snapshot.seek(SeekFrom::Start(0)).await.map_err(io_err)?;
        snapshot.read_to_end(&mut bytes).await.map_err(io_err)?;
        let mut inner = self.inner.lock().unwrap();
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = self.inner.lock().unwrap().snapshot.clone();
        match current {
            None => Ok(None),
            Some((meta, bytes)) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(temp_file(&bytes).await?),
            })),
        }
    }
}

/// A fresh log store on the real file system for every test of the suite.
struct FreshStdFs;

impl StoreBuilder<TypeConfig, GroupLog, TestStateMachine, tempfile::TempDir> for FreshStdFs {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, GroupLog, TestStateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs::default());
        let log = SharedLog::open(fs, dir.path(), LogStoreOptions::default())?;
        Ok((dir, log.group(7), TestStateMachine::default()))
    }
}

/// One log store shared by every test of the suite, a new group each time:
/// groups must not see each other's entries, votes or purges.
struct SharedStore {
    log: Arc<SharedLog>,
    next_group: AtomicU64,
}

impl StoreBuilder<TypeConfig, GroupLog, TestStateMachine, ()> for SharedStore {
    async fn build(&self) -> Result<((), GroupLog, TestStateMachine), StorageError<NodeId>> {
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        Ok(((), self.log.group(group), TestStateMachine::default()))
    }
}

#[test]
fn openraft_suite_passes_with_a_fresh_store_per_test() {
    // The log store meets openraft's storage contract on the real file system.
    Suite::test_all(FreshStdFs).unwrap();
}

#[test]
fn openraft_suite_passes_with_many_groups_in_one_store() {
    // The contract holds per group when every test shares one store (small segments: rotation runs).
    let options = LogStoreOptions {
        segment_bytes_max: 2048,
        ..LogStoreOptions::default()
    };
    let log = SharedLog::open(Arc::new(MemFs::new()), Path::new("/raft"), options).unwrap();
    Suite::test_all(SharedStore {
        log: Arc::clone(&log),
        next_group: AtomicU64::new(1),
    })
    .unwrap();
    assert!(log.stats().segments_deleted > 0 || log.stats().segments > 1);
}
