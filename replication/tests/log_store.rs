//! Behaviour of the shared Raft log store: recovery, rotation and
//! deletion, group commit, durability of callbacks under crashes, and
//! poisoning after I/O errors. Crashes and faults come from `MemFs`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use cairn_engine::{
    CrashMode, DirLock, FaultOp, FileSystem, MemFs, RandomAccessFile, WritableFile,
};
use cairn_replication::{
    Entry, GroupLog, LogId, LogStoreError, LogStoreOptions, Request, RequestBatch, SharedLog, Vote,
};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};
use proptest::prelude::*;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const DIR: &str = "/raft";

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// An entry whose payload names its group, term and index.
fn entry(group: u64, term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(RequestBatch {
            requests: vec![Request {
                client_id: group,
                serial: index,
                command: format!("g{group} t{term} i{index}").into_bytes(),
            }],
        }),
    }
}

fn entries(group: u64, term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|i| entry(group, term, i)).collect()
}

fn open(fs: &MemFs, options: LogStoreOptions) -> Result<Arc<SharedLog>, LogStoreError> {
    SharedLog::open(Arc::new(fs.clone()), dir(), options)
}

fn small_segments() -> LogStoreOptions {
    LogStoreOptions {
        segment_bytes_max: 1024,
        ..LogStoreOptions::default()
    }
}

async fn all_entries(log: &mut GroupLog) -> Vec<Entry> {
    log.try_get_log_entries(0..).await.unwrap()
}

fn segment_files(fs: &MemFs) -> Vec<PathBuf> {
    let mut names: Vec<String> = fs
        .list(dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".rlog"))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir().join(n)).collect()
}

/// Simulated power loss: the file system keeps what was synced, then the
/// store (whose handles are now dead) is dropped.
fn power_loss(fs: &MemFs, log: Arc<SharedLog>, mode: CrashMode, seed: u64) {
    fs.crash(mode, seed);
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_restores_entries_vote_committed_and_purged_of_every_group() {
    // Everything acknowledged for several groups is back after a clean close and reopen.
    let fs = MemFs::new();
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    for group in 1..=4u64 {
        let mut g = log.group(group);
        g.blocking_append(entries(group, 1, 0..=9)).await.unwrap();
        g.save_vote(&Vote::new(group, 1)).await.unwrap();
        g.save_committed(Some(log_id(1, 5 + group))).await.unwrap();
        g.purge(log_id(1, group)).await.unwrap();
    }
    log.close();
    drop(log);
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    assert_eq!(log.groups(), vec![1, 2, 3, 4]);
    for group in 1..=4u64 {
        let mut g = log.group(group);
        assert_eq!(g.read_vote().await.unwrap(), Some(Vote::new(group, 1)));
        assert_eq!(
            g.read_committed().await.unwrap(),
            Some(log_id(1, 5 + group))
        );
        let state = g.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, group)));
        assert_eq!(state.last_log_id, Some(log_id(1, 9)));
        assert_eq!(all_entries(&mut g).await, entries(group, 1, group + 1..=9));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cuts_a_torn_tail_and_the_cut_is_durable() {
    // Junk after the last record of the last segment is cut; the entries before it survive twice.
    let fs = MemFs::new();
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    let mut g = log.group(1);
    g.blocking_append(entries(1, 1, 1..=5)).await.unwrap();
    drop(g);
    drop(log);
    let last = segment_files(&fs).pop().unwrap();
    let mut bytes = fs.file_bytes(&last).unwrap();
    let valid = bytes.len();
    bytes.extend_from_slice(&[0x5a; 23]);
    fs.write_file_bytes(&last, bytes);
    for _ in 0..2 {
        let log = open(&fs, LogStoreOptions::default()).unwrap();
        assert_eq!(fs.file_bytes(&last).unwrap().len(), valid);
        assert_eq!(all_entries(&mut log.group(1)).await, entries(1, 1, 1..=5));
        fs.crash(CrashMode::DropUnsynced, 1);
        drop(log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_proven_synced_in_the_last_segment_fails_open_naming_the_file() {
    // A flipped byte before later synced records is corruption, not a torn tail: open fails.
    let fs = MemFs::new();
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    let mut g = log.group(1);
    for i in 1..=6 {
        g.blocking_append(entries(1, 1, i..=i)).await.unwrap();
    }
    drop(g);
    power_loss(&fs, log, CrashMode::DropUnsynced, 0);
    let last = segment_files(&fs).pop().unwrap();
    // The first record is the checkpoint; the second the first entries record.
    assert!(fs.corrupt_byte(&last, 60, 0x10));
    match open(&fs, LogStoreOptions::default()) {
        Err(LogStoreError::Corrupt { path, .. }) => assert_eq!(path, last),
        other => panic!("expected corruption in {}, got {other:?}", last.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_damage_in_a_sealed_segment_fails_open() {
    // Even the last bytes of a sealed (non-last) segment are never treated as a torn tail.
    let fs = MemFs::new();
    let log = open(&fs, small_segments()).unwrap();
    let mut g = log.group(1);
    for i in 1..=60 {
        g.blocking_append(entries(1, 1, i..=i)).await.unwrap();
    }
    drop(g);
    drop(log);
    let files = segment_files(&fs);
    assert!(files.len() >= 3, "{files:?}");
    let sealed = &files[0];
    let len = fs.file_bytes(sealed).unwrap().len() as u64;
    for offset in [40, len - 3] {
        let fs = fs.clone();
        let before = fs.file_bytes(sealed).unwrap();
        assert!(fs.corrupt_byte(sealed, offset, 0x01));
        match open(&fs, small_segments()) {
            Err(err @ LogStoreError::Corrupt { .. }) => {
                assert!(
                    err.to_string().contains(&sealed.display().to_string()),
                    "{err}"
                );
            }
            other => panic!("expected corruption at {offset}, got {other:?}"),
        }
        fs.write_file_bytes(sealed, before);
    }
    let log = open(&fs, small_segments()).unwrap();
    assert_eq!(all_entries(&mut log.group(1)).await, entries(1, 1, 1..=60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_then_append_replaces_the_suffix_durably() {
    // A conflicting suffix is replaced in memory at once and after reopen.
    let fs = MemFs::new();
    let log = open(&fs, small_segments()).unwrap();
    let mut g = log.group(3);
    g.blocking_append(entries(3, 1, 1..=40)).await.unwrap();
    g.truncate(log_id(1, 21)).await.unwrap();
    assert_eq!(
        g.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 20))
    );
    g.blocking_append(entries(3, 2, 21..=25)).await.unwrap();
    // An overlapping append truncates implicitly.
    g.blocking_append(entries(3, 3, 24..=30)).await.unwrap();
    let mut expected = entries(3, 1, 1..=20);
    expected.extend(entries(3, 2, 21..=23));
    expected.extend(entries(3, 3, 24..=30));
    assert_eq!(all_entries(&mut g).await, expected);
    drop(g);
    power_loss(&fs, log, CrashMode::DropUnsynced, 0);
    let log = open(&fs, small_segments()).unwrap();
    let mut g = log.group(3);
    assert_eq!(all_entries(&mut g).await, expected);
    assert_eq!(
        g.get_log_state().await.unwrap().last_log_id,
        Some(log_id(3, 30))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_across_segments_deletes_them_but_checkpoints_keep_vote_and_committed() {
    // Old segments go once purged; vote and committed, written only in them, survive via checkpoints.
    let fs = MemFs::new();
    let log = open(&fs, small_segments()).unwrap();
    let mut a = log.group(1);
    let mut b = log.group(2);
    a.save_vote(&Vote::new_committed(4, 1)).await.unwrap();
    a.save_committed(Some(log_id(1, 3))).await.unwrap();
    b.save_vote(&Vote::new(2, 2)).await.unwrap();
    for i in 1..=80 {
        a.blocking_append(entries(1, 1, i..=i)).await.unwrap();
        b.blocking_append(entries(2, 1, i..=i)).await.unwrap();
    }
    let first_segment = segment_files(&fs)[0].clone();
    let before = segment_files(&fs).len();
    assert!(before >= 4, "{before}");
    a.purge(log_id(1, 70)).await.unwrap();
    b.purge(log_id(1, 70)).await.unwrap();
    // Purge is not synced by itself: the next synced write makes it durable.
    a.blocking_append(entries(1, 1, 81..=81)).await.unwrap();
    let after = segment_files(&fs);
    assert!(after.len() < before, "{before} -> {after:?}");
    assert!(!after.contains(&first_segment));
    assert!(log.stats().segments_deleted > 0);
    assert_eq!(log.stats().segments, after.len() as u64);
    // Entries still needed are read back from sealed segments.
    assert_eq!(all_entries(&mut a).await, entries(1, 1, 71..=81));
    drop((a, b));
    power_loss(&fs, log, CrashMode::DropUnsynced, 0);
    let log = open(&fs, small_segments()).unwrap();
    let (mut a, mut b) = (log.group(1), log.group(2));
    assert_eq!(
        a.read_vote().await.unwrap(),
        Some(Vote::new_committed(4, 1))
    );
    assert_eq!(a.read_committed().await.unwrap(), Some(log_id(1, 3)));
    assert_eq!(b.read_vote().await.unwrap(), Some(Vote::new(2, 2)));
    assert_eq!(all_entries(&mut a).await, entries(1, 1, 71..=81));
    assert_eq!(all_entries(&mut b).await, entries(2, 1, 71..=80));
    assert_eq!(
        b.get_log_state().await.unwrap().last_purged_log_id,
        Some(log_id(1, 70))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_group_is_forgotten_and_frees_its_segments() {
    // remove_group drops every trace of a group, durably, and its entries stop pinning segments.
    let fs = MemFs::new();
    let log = open(&fs, small_segments()).unwrap();
    let mut a = log.group(1);
    a.save_vote(&Vote::new(1, 1)).await.unwrap();
    for i in 1..=60 {
        a.blocking_append(entries(1, 1, i..=i)).await.unwrap();
    }
    let before = segment_files(&fs).len();
    log.remove_group(1).await.unwrap();
    assert_eq!(log.groups(), Vec::<u64>::new());
    assert!(segment_files(&fs).len() < before);
    drop(a);
    power_loss(&fs, log, CrashMode::DropUnsynced, 0);
    let log = open(&fs, small_segments()).unwrap();
    assert_eq!(log.groups(), Vec::<u64>::new());
    let mut a = log.group(1);
    assert_eq!(a.read_vote().await.unwrap(), None);
    assert!(all_entries(&mut a).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_groups_share_fsyncs() {
    // Many groups appending at once are written in shared batches: more than one entry per fsync.
    let fs = MemFs::new();
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    let mut tasks = Vec::new();
    for group in 1..=32u64 {
        let mut g = log.group(group);
        tasks.push(tokio::spawn(async move {
            for i in 1..=30 {
                g.blocking_append(entries(group, 1, i..=i)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.entries_written, 32 * 30);
    assert!(stats.entries_per_fsync > 1.5, "{stats:?}");
    for group in [1, 17, 32] {
        assert_eq!(
            all_entries(&mut log.group(group)).await,
            entries(group, 1, 1..=30)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_id_is_written_without_an_fsync_and_synced_by_the_next() {
    // save_committed alone costs no fsync (nobody waits for it); the next
    // acknowledged append's fsync makes it durable along with the entries.
    let fs = MemFs::new();
    let never_idle = LogStoreOptions {
        lazy_sync_ms: 3_600_000,
        ..LogStoreOptions::default()
    };
    let log = open(&fs, never_idle).unwrap();
    let mut g = log.group(1);
    g.blocking_append(entries(1, 1, 1..=3)).await.unwrap();
    let before = log.stats();
    g.save_committed(Some(log_id(1, 2))).await.unwrap();
    while log.stats().records_written == before.records_written {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(log.stats().fsyncs, before.fsyncs, "{:?}", log.stats());

    g.blocking_append(entries(1, 1, 4..=4)).await.unwrap();
    assert_eq!(log.stats().fsyncs, before.fsyncs + 1);
    fs.crash(CrashMode::DropUnsynced, 0);
    drop((g, log));
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    let mut g = log.group(1);
    assert_eq!(g.read_committed().await.unwrap(), Some(log_id(1, 2)));
    assert_eq!(all_entries(&mut g).await, entries(1, 1, 1..=4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsynced_committed_id_is_synced_once_the_writer_idles() {
    // With nothing else coming, the writer fsyncs a lone committed id by
    // itself (after lazy_sync_ms), so it survives a power loss.
    let fs = MemFs::new();
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    let mut g = log.group(1);
    g.blocking_append(entries(1, 1, 1..=3)).await.unwrap();
    let before = log.stats();
    g.save_committed(Some(log_id(1, 3))).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.stats().fsyncs == before.fsyncs {
        assert!(std::time::Instant::now() < deadline, "never synced");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    fs.crash(CrashMode::DropUnsynced, 0);
    drop((g, log));
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    assert_eq!(
        log.group(1).read_committed().await.unwrap(),
        Some(log_id(1, 3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_reads_cap_bytes_but_return_at_least_one_entry() {
    // limited_get_log_entries stops at read_bytes_max, from memory and from sealed segments alike.
    let fs = MemFs::new();
    let options = LogStoreOptions {
        read_bytes_max: 300,
        segment_bytes_max: 8192,
        ..LogStoreOptions::default()
    };
    let log = open(&fs, options.clone()).unwrap();
    let mut g = log.group(1);
    g.blocking_append(entries(1, 1, 1..=100)).await.unwrap();
    let mut reader = g.get_log_reader().await;
    let got = reader.limited_get_log_entries(1, 101).await.unwrap();
    assert!(!got.is_empty() && got.len() < 100, "{}", got.len());
    assert_eq!(got, entries(1, 1, 1..=got.len() as u64));
    drop((g, reader));
    drop(log);
    let log = open(
        &fs,
        LogStoreOptions {
            read_bytes_max: 1,
            ..options
        },
    )
    .unwrap();
    let mut reader = log.group(1).get_log_reader().await;
    assert_eq!(
        reader.limited_get_log_entries(5, 101).await.unwrap(),
        entries(1, 1, 5..=5)
    );
    assert_eq!(
        reader.try_get_log_entries(90..).await.unwrap(),
        entries(1, 1, 90..=100)
    );
}

/// A file system whose fsyncs wait while a gate is closed: lets a test
/// catch the store between "append returned" and "fsync done".
#[derive(Clone)]
struct GatedFs {
    inner: MemFs,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl GatedFs {
    fn set_open(&self, open: bool) {
        *self.gate.0.lock().unwrap() = open;
        self.gate.1.notify_all();
    }
}

struct GatedFile {
    inner: Box<dyn WritableFile>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl WritableFile for GatedFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.append(data)
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut open = self.gate.0.lock().unwrap();
        while !*open {
            open = self.gate.1.wait(open).unwrap();
        }
        drop(open);
        self.inner.sync()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl FileSystem for GatedFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(GatedFile {
            inner: self.inner.create(path)?,
            gate: Arc::clone(&self.gate),
        }))
    }
    fn open_random(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.inner.open_random(path)
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        self.inner.lock(path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_fires_only_after_the_fsync() {
    // Readable-but-unacknowledged entries may die in a crash; acknowledged ones never do.
    let mem = MemFs::new();
    let fs = GatedFs {
        inner: mem.clone(),
        gate: Arc::new((Mutex::new(true), Condvar::new())),
    };
    let log = SharedLog::open(Arc::new(fs.clone()), dir(), LogStoreOptions::default()).unwrap();
    let mut g = log.group(1);
    g.blocking_append(entries(1, 1, 1..=3)).await.unwrap();

    fs.set_open(false);
    let mut pending = g.clone();
    let task = tokio::spawn(async move { pending.blocking_append(entries(1, 1, 4..=5)).await });
    // append has returned once the entries are readable.
    let mut reader = g.get_log_reader().await;
    while reader.try_get_log_entries(5..6).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let acknowledged_early = task.is_finished();

    mem.crash(CrashMode::DropUnsynced, 0);
    // Open the gate before asserting: a failing test must not leave the
    // writer thread (joined on drop) waiting forever.
    fs.set_open(true);
    assert!(!acknowledged_early, "callback fired before the fsync");
    assert!(
        task.await.unwrap().is_err(),
        "the fsync after the crash must fail"
    );
    drop((g, reader));
    drop(log);

    let log = open(&mem, LogStoreOptions::default()).unwrap();
    assert_eq!(all_entries(&mut log.group(1)).await, entries(1, 1, 1..=3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fsync_poisons_the_store_for_good() {
    // After one failed fsync every write and read fails, even once the disk works again.
    let fs = MemFs::new();
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    let mut g = log.group(1);
    g.blocking_append(entries(1, 1, 1..=2)).await.unwrap();
    fs.inject_fault(FaultOp::Sync, None, 0, 1);
    assert!(g.blocking_append(entries(1, 1, 3..=3)).await.is_err());
    let syncs = fs.op_count(FaultOp::Sync);
    let err = g.save_vote(&Vote::new(9, 1)).await.unwrap_err();
    assert!(err.to_string().contains("refuses work"), "{err}");
    assert!(g.blocking_append(entries(1, 1, 4..=4)).await.is_err());
    assert!(g.try_get_log_entries(0..).await.is_err());
    assert!(log.remove_group(1).await.unwrap_err().is_poisoned());
    assert_eq!(
        fs.op_count(FaultOp::Sync),
        syncs,
        "a failed fsync is never retried"
    );
    drop(g);
    power_loss(&fs, log, CrashMode::DropUnsynced, 0);
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    let mut g = log.group(1);
    let got = all_entries(&mut g).await;
    assert!(
        got == entries(1, 1, 1..=2) || got == entries(1, 1, 1..=3),
        "{got:?}"
    );
    assert_eq!(g.read_vote().await.unwrap(), None);
}

/// What a workload saw acknowledged, per group.
#[derive(Default, Clone)]
struct Acked {
    last_index: u64,
    vote: Option<Vote>,
}

/// Appends, votes, truncates and purges on three groups with small
/// segments; stops at the first error. Returns what was acknowledged.
async fn workload(log: &Arc<SharedLog>) -> Vec<Acked> {
    let mut acked = vec![Acked::default(); 3];
    for round in 1..=12u64 {
        for (i, state) in acked.iter_mut().enumerate() {
            let group = i as u64 + 1;
            let mut g = log.group(group);
            let first = state.last_index + 1;
            let count = 1 + (round + group) % 3;
            let new = entries(group, 1, first..=first + count - 1);
            if g.blocking_append(new).await.is_err() {
                return acked;
            }
            state.last_index = first + count - 1;
            if round % 4 == group % 4 {
                let vote = Vote::new(round, group);
                if g.save_vote(&vote).await.is_err() {
                    return acked;
                }
                state.vote = Some(vote);
            }
            if round % 5 == 0 && g.purge(log_id(1, state.last_index - 2)).await.is_err() {
                return acked;
            }
        }
    }
    acked
}

/// After recovery: every acknowledged entry and vote is there, and the
/// log is a prefix of what was appended.
async fn check_recovered(log: &Arc<SharedLog>, acked: &[Acked], context: &str) {
    for (i, state) in acked.iter().enumerate() {
        let group = i as u64 + 1;
        let mut g = log.group(group);
        let vote = g.read_vote().await.unwrap();
        assert!(
            vote >= state.vote,
            "{context}: group {group} vote {vote:?} < {:?}",
            state.vote
        );
        let got = all_entries(&mut g).await;
        let log_state = g.get_log_state().await.unwrap();
        let purged = log_state.last_purged_log_id.map_or(0, |p| p.index);
        let last = log_state.last_log_id.map_or(0, |l| l.index);
        assert!(
            last >= state.last_index,
            "{context}: group {group} lost entries: {last} < {}",
            state.last_index
        );
        let first = got.first().map_or(purged + 1, |e| e.log_id.index);
        assert!(
            first == purged + 1 || (purged == 0 && first == 1),
            "{context}: group {group} starts at {first}"
        );
        assert_eq!(
            got,
            entries(group, 1, first..=last),
            "{context}: group {group}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_fsync_keeps_everything_acknowledged() {
    // Fail the k-th file or directory fsync (the store poisons), lose power, reopen: acknowledged state is intact.
    let clean = MemFs::new();
    let log = open(&clean, small_segments()).unwrap();
    workload(&log).await;
    drop(log);
    let syncs = clean.op_count(FaultOp::Sync);
    let dir_syncs = clean.op_count(FaultOp::SyncDir);
    assert!(syncs > 20 && dir_syncs > 3, "{syncs} {dir_syncs}");
    let modes = [
        CrashMode::DropUnsynced,
        CrashMode::KeepRandomPrefix,
        CrashMode::TornPages { page_bytes: 512 },
    ];
    let points = (0..syncs)
        .map(|k| (FaultOp::Sync, k))
        .chain((0..dir_syncs).map(|k| (FaultOp::SyncDir, k)));
    for (op, k) in points {
        let fs = MemFs::new();
        fs.inject_fault(op, None, k, 1);
        let context = format!("{op:?} {k}");
        let (acked, log) = match open(&fs, small_segments()) {
            Ok(log) => (workload(&log).await, Some(log)),
            Err(_) => (vec![Acked::default(); 3], None),
        };
        fs.crash(modes[k as usize % modes.len()], k);
        drop(log);
        fs.clear_faults();
        let log = open(&fs, small_segments()).unwrap_or_else(|e| panic!("{context}: {e}"));
        check_recovered(&log, &acked, &context).await;
        // Recovery itself leaves a log that reopens after another crash.
        fs.crash(CrashMode::DropUnsynced, k);
        drop(log);
        let log = open(&fs, small_segments()).unwrap_or_else(|e| panic!("{context}, again: {e}"));
        check_recovered(&log, &acked, &context).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_directory_is_refused() {
    // The directory lock keeps two writers off one log.
    let fs = MemFs::new();
    let log = open(&fs, LogStoreOptions::default()).unwrap();
    assert!(matches!(
        open(&fs, LogStoreOptions::default()),
        Err(LogStoreError::Locked { .. })
    ));
    log.close();
    let closed = log.group(1).save_vote(&Vote::new(1, 1)).await.unwrap_err();
    assert!(closed.to_string().contains("closed"), "{closed}");
    drop(log);
    open(&fs, LogStoreOptions::default()).unwrap();
}

/// A valid little log to mutate: two groups, several segments.
fn valid_log_files() -> Vec<(PathBuf, Vec<u8>)> {
    let fs = MemFs::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = open(
            &fs,
            LogStoreOptions {
                segment_bytes_max: 2048,
                ..LogStoreOptions::default()
            },
        )
        .unwrap();
        for i in 1..=20 {
            for group in 1..=2 {
                log.group(group)
                    .blocking_append(entries(group, 1, i..=i))
                    .await
                    .unwrap();
            }
        }
        log.group(1).save_vote(&Vote::new(3, 1)).await.unwrap();
    });
    segment_files(&fs)
        .into_iter()
        .map(|p| {
            let bytes = fs.file_bytes(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hostile_segment_bytes_never_panic(
        garbage in proptest::collection::vec(any::<u8>(), 0..5000),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        // Random files and damaged real logs open to a store or an error, never a panic.
        let fs = MemFs::new();
        fs.write_file_bytes(&dir().join("00000000000000000001.rlog"), garbage);
        let _ = open(&fs, LogStoreOptions::default());

        let fs = MemFs::new();
        let mut files = valid_log_files();
        for (file, at, mask) in flips {
            let n = files.len();
            let (_, bytes) = &mut files[file.index(n)];
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        let n = files.len();
        let (_, last) = &mut files[n - 1];
        let keep = cut.index(last.len() + 1);
        last.truncate(keep);
        for (path, bytes) in files {
            fs.write_file_bytes(&path, bytes);
        }
        if let Ok(log) = open(&fs, LogStoreOptions::default()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                for group in 1..=2 {
                    // Reads either fail cleanly or return entries that were written.
                    if let Ok(got) = log.group(group).try_get_log_entries(0..).await {
                        for e in got {
                            prop_assert_eq!(&e, &entry(group, 1, e.log_id.index));
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_after_the_records_are_reserved_space_in_any_segment() {
    // Segments are reserved ahead with zeros and trimmed at seal; a crash
    // before the trim leaves zeros after the seal marker, and a crash of the
    // active segment leaves them after its last record. Neither is damage.
    let fs = MemFs::new();
    let log = open(&fs, small_segments()).unwrap();
    let mut g = log.group(1);
    for i in 1..=40 {
        g.blocking_append(entries(1, 1, i..=i)).await.unwrap();
    }
    drop(g);
    drop(log);
    let segments = segment_files(&fs);
    assert!(segments.len() >= 3, "{segments:?}");
    for path in [&segments[0], &segments[segments.len() - 1]] {
        let mut bytes = fs.file_bytes(path).unwrap();
        bytes.resize(bytes.len() + 64 * 1024, 0);
        fs.write_file_bytes(path, bytes);
    }
    let log = open(&fs, small_segments()).unwrap();
    assert_eq!(all_entries(&mut log.group(1)).await, entries(1, 1, 1..=40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_segment_is_reserved_on_disk_up_to_the_rotation_size() {
    // On the real file system the active segment's size is the rotation
    // size from the start (sparse), so a group-commit fsync writes only
    // data; a clean close trims it to its records.
    let tmp = tempfile::tempdir().unwrap();
    let options = LogStoreOptions {
        segment_bytes_max: 4 << 20,
        ..LogStoreOptions::default()
    };
    let fs: Arc<dyn FileSystem> = Arc::new(cairn_engine::StdFs::default());
    let sizes = || -> Vec<u64> {
        let mut sizes: Vec<u64> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rlog"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect();
        sizes.sort();
        sizes
    };
    let log = SharedLog::open(fs.clone(), tmp.path(), options.clone()).unwrap();
    log.group(1)
        .blocking_append(entries(1, 1, 1..=10))
        .await
        .unwrap();
    assert_eq!(sizes(), vec![4 << 20]);
    log.close();
    drop(log);
    assert!(sizes().iter().all(|&s| s < 64 << 10), "{:?}", sizes());
    let log = SharedLog::open(fs, tmp.path(), options).unwrap();
    assert_eq!(all_entries(&mut log.group(1)).await, entries(1, 1, 1..=10));
}
