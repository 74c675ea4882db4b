//! Injected I/O errors: a failed fsync, append, create, manifest sync,
//! `CURRENT` rename or a full disk is reported, poisons the engine for
//! good (never retried), leaves reads working, and loses no acknowledged
//! write: the reopened engine holds all of them and accepts writes again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

mod common;

use cairn_engine::{CrashMode, Db, Error, FaultOp, MemFs, Options, WriteOptions};
use common::{Model, Rng, Workload, Write, check_prefix, dump, freeze, key};
use std::sync::Arc;

const DIR: &str = "/db";
const WORKLOAD: Workload = Workload::new("k");

fn opts(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 16 << 10,
        target_file_size_bytes: 32 << 10,
        max_bytes_for_level_base: 128 << 10,
        block_cache_bytes: 256 << 10,
        // Faults must land on the operation each test aims at; the idle
        // compaction test turns it on.
        idle_compaction_ms: 0,
        ..Options::default()
    }
}

fn probe() -> impl Iterator<Item = Vec<u8>> {
    (0..WORKLOAD.keys).map(|i| key(WORKLOAD.prefix, i))
}

/// A database with `n` acknowledged writes (a few synced), and its model.
struct Loaded {
    fs: MemFs,
    db: Db,
    rng: Rng,
    next_id: u64,
    model: Model,
    /// Writes after `model` that were attempted but not acknowledged.
    unacked: Vec<Write>,
}

impl Loaded {
    fn new(seed: u64, n: u64) -> Self {
        let fs = MemFs::new();
        let db = Db::open(DIR, opts(&fs)).unwrap();
        let mut me = Loaded {
            fs,
            db,
            rng: Rng::new(seed),
            next_id: 0,
            model: Model::new(),
            unacked: Vec::new(),
        };
        for _ in 0..n {
            let w = me.next_write();
            w.apply(&me.db).unwrap();
            w.apply_to(&mut me.model);
        }
        me
    }

    fn next_write(&mut self) -> Write {
        let w = WORKLOAD.generate(&mut self.rng, self.next_id);
        self.next_id += 1;
        w
    }

    /// Writes until one fails; returns the error.
    fn write_until_error(&mut self, limit: usize) -> Error {
        for _ in 0..limit {
            let w = self.next_write();
            match w.apply(&self.db) {
                Ok(()) => {
                    w.apply_to(&mut self.model);
                }
                Err(e) => {
                    self.unacked.push(w);
                    return e;
                }
            }
        }
        panic!("{limit} writes succeeded; the injected fault never surfaced");
    }

    /// Mutating operations attempted so far, once background jobs that
    /// were already running when the engine was poisoned have finished
    /// (they may still commit: their own I/O did not fail).
    fn settled_op_counts(&self) -> Vec<u64> {
        let counts = || -> Vec<u64> {
            common::MUTATING_OPS
                .iter()
                .map(|op| self.fs.op_count(*op))
                .collect()
        };
        let mut last = counts();
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let now = counts();
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the poisoned engine never stopped doing I/O");
    }

    /// The engine refuses every kind of write with a poisoned error and
    /// touches the disk no more (the failed operation is never retried);
    /// reads still serve every acknowledged write.
    fn assert_poisoned_for_good(&mut self) {
        let before = self.settled_op_counts();
        let wals: Vec<_> = common::files_like(&self.fs, DIR.as_ref(), ".log")
            .into_iter()
            .map(|n| self.fs.file_bytes(&std::path::Path::new(DIR).join(n)))
            .collect();
        for i in 0..5 {
            let mut w = self.next_write();
            w.sync = i % 2 == 0;
            let e = w
                .apply(&self.db)
                .expect_err("write accepted after a fatal I/O error");
            assert!(e.is_poisoned(), "write after failure: {e}");
            self.unacked.push(w);
        }
        let e = self
            .db
            .flush()
            .expect_err("flush accepted after a fatal I/O error");
        assert!(e.is_poisoned(), "flush after failure: {e}");
        let after = self.settled_op_counts();
        assert_eq!(
            before,
            after,
            "the poisoned engine kept writing ({:?})",
            common::MUTATING_OPS
        );
        let wals_after: Vec<_> = common::files_like(&self.fs, DIR.as_ref(), ".log")
            .into_iter()
            .map(|n| self.fs.file_bytes(&std::path::Path::new(DIR).join(n)))
            .collect();
        assert_eq!(
            wals, wals_after,
            "a WAL changed after the engine was poisoned"
        );
        self.assert_reads_match_model_or_unacked();
    }

    /// Reads return the model, or the model plus some unacknowledged
    /// write (its outcome is unknown).
    fn assert_reads_match_model_or_unacked(&self) {
        let got = dump(&self.db, probe()).unwrap();
        check_prefix(&self.model, &self.unacked, &got, 0).unwrap();
    }

    /// Drops the engine, optionally crashes, clears faults, reopens and
    /// checks that every acknowledged write is there and that the engine
    /// takes new synced writes.
    fn reopen_and_check(mut self, crash: Option<CrashMode>) {
        if let Some(mode) = crash {
            freeze(&self.fs);
            self.fs.crash(mode, 7);
        }
        drop(self.db);
        self.fs.clear_faults();
        self.fs.set_space_limit(None);
        let db = Db::open(DIR, opts(&self.fs)).unwrap();
        // Every acknowledged write is there, even after a crash: the
        // scenarios that crash acknowledge only writes a WAL seal synced.
        let got = dump(&db, probe()).unwrap();
        check_prefix(&self.model, &self.unacked, &got, 0)
            .unwrap_or_else(|why| panic!("after reopen (crash {crash:?}): {why}"));
        let mut w = WORKLOAD.generate(&mut self.rng, self.next_id);
        w.sync = true;
        w.apply(&db).unwrap();
        let mut expect = got;
        w.apply_to(&mut expect);
        assert_eq!(dump(&db, probe()).unwrap(), expect);
        db.flush().unwrap();
    }
}

fn assert_io(e: &Error, what: &str) {
    let cause = match e {
        Error::Poisoned { cause } => cause.as_ref(),
        other => other,
    };
    assert!(
        matches!(cause, Error::Io { .. }) && cause.to_string().contains(what),
        "expected an I/O error mentioning {what:?}, got {e}"
    );
}

#[test]
fn fsync_failure_poisons_engine() {
    // Pins fsyncgate handling: a failed WAL fsync fails the write and every later one, never retried.
    let mut l = Loaded::new(1, 300);
    l.fs.inject_fault(FaultOp::Sync, Some(".log"), 0, 1);
    let mut w = l.next_write();
    w.sync = true;
    let e = w
        .apply(&l.db)
        .expect_err("a sync write survived a failed fsync");
    assert_io(&e, "injected fault: Sync");
    l.unacked.push(w);
    l.assert_poisoned_for_good();
    l.reopen_and_check(None);
}

#[test]
fn fsync_failure_then_crash_keeps_every_synced_write() {
    // Pins that after a failed fsync and a power cut, writes synced before it are still there.
    let mut l = Loaded::new(2, 0);
    let mut synced = Model::new();
    // Acknowledged after the last sync: may or may not survive the crash.
    let mut tail: Vec<Write> = Vec::new();
    for i in 0..405 {
        let mut w = l.next_write();
        w.sync = i % 10 == 9;
        w.apply(&l.db).unwrap();
        w.apply_to(&mut l.model);
        tail.push(w.clone());
        if w.sync {
            synced = l.model.clone();
            tail.clear();
        }
    }
    l.fs.inject_fault(FaultOp::Sync, Some(".log"), 0, 1);
    let mut w = l.next_write();
    w.sync = true;
    assert!(w.apply(&l.db).is_err());
    tail.push(w);
    let fs = l.fs.clone();
    freeze(&fs);
    fs.crash(CrashMode::DropUnsynced, 3);
    drop(l.db);
    fs.clear_faults();
    let db = Db::open(DIR, opts(&fs)).unwrap();
    let got = dump(&db, probe()).unwrap();
    // Everything up to the last acknowledged sync write; nothing after it was synced.
    check_prefix(&synced, &tail, &got, 0).unwrap_or_else(|why| panic!("{why}"));
}

#[test]
fn wal_append_failure_poisons_engine() {
    // Pins that a failed WAL append fails the write, poisons, and loses nothing acknowledged.
    let mut l = Loaded::new(3, 250);
    l.fs.inject_fault(FaultOp::Append, Some(".log"), 0, 1);
    let e = l.write_until_error(10);
    assert_io(&e, "injected fault: Append");
    l.assert_poisoned_for_good();
    l.reopen_and_check(None);
}

#[test]
fn table_create_failure_during_flush_poisons_engine() {
    // Pins that a background flush error poisons the engine and the data stays in the WAL.
    let mut l = Loaded::new(4, 50);
    l.fs.inject_fault(FaultOp::Create, Some(".sst"), 0, 1);
    let e =
        l.db.flush()
            .expect_err("flush succeeded though the table could not be created");
    assert!(e.is_poisoned(), "{e}");
    assert_io(&e, "injected fault: Create");
    l.assert_poisoned_for_good();
    l.reopen_and_check(Some(CrashMode::DropUnsynced));
}

#[test]
fn table_create_failure_under_load_poisons_engine() {
    // Pins that a flush failing in the background reaches the writers as a poisoned error.
    let mut l = Loaded::new(5, 10);
    l.fs.inject_fault(FaultOp::Create, Some(".sst"), 0, 1);
    let e = l.write_until_error(5000);
    assert!(e.is_poisoned(), "{e}");
    l.assert_poisoned_for_good();
    l.reopen_and_check(None);
}

#[test]
fn table_create_failure_in_one_subcompaction_fails_the_manual_compaction() {
    // Pins that a manual compaction split across threads fails as a whole
    // when one piece cannot create its table: the error reaches the caller,
    // the engine is poisoned, the other pieces' tables are never installed,
    // and every acknowledged write survives a reopen.
    let mut l = Loaded::new(11, 3000);
    l.db.flush().unwrap();
    l.db.wait_for_background().unwrap();
    // Nothing left to flush: every table created from here is a piece's.
    l.fs.inject_fault(FaultOp::Create, Some(".sst"), 1, 1);
    let e =
        l.db.compact_range(None, None)
            .expect_err("compaction succeeded though a table could not be created");
    assert!(e.is_poisoned(), "{e}");
    assert_io(&e, "injected fault: Create");
    assert!(l.db.stats().subcompactions >= 1, "{:?}", l.db.stats());
    l.assert_poisoned_for_good();
    l.reopen_and_check(None);
}

#[test]
fn wal_create_failure_at_memtable_switch_poisons_engine() {
    // Pins that failing to start a new WAL refuses the write that needed it.
    let mut l = Loaded::new(6, 50);
    l.fs.inject_fault(FaultOp::Create, Some(".log"), 0, 1);
    let e = l.write_until_error(5000);
    assert!(e.is_poisoned(), "{e}");
    assert_io(&e, "injected fault: Create");
    l.assert_poisoned_for_good();
    l.reopen_and_check(None);
}

#[test]
fn wal_create_failure_at_an_idle_memtable_switch_poisons_engine() {
    // Pins that idle compaction's memtable switch fails as a writer's
    // does: the engine is poisoned for good and the WAL keeps every write.
    let mut l = Loaded::new(12, 0);
    l.db.close().unwrap();
    l.db = Db::open(
        DIR,
        Options {
            idle_compaction_ms: 20,
            // No switch while writing: the first WAL created after the
            // open is the idle switch's.
            write_buffer_bytes: 4 << 20,
            ..opts(&l.fs)
        },
    )
    .unwrap();
    l.fs.inject_fault(FaultOp::Create, Some(".log"), 0, 1);
    let creates = l.fs.op_count(FaultOp::Create);
    for _ in 0..100 {
        let w = l.next_write();
        // A pause in a slow moment may already have switched.
        if w.apply(&l.db).is_err() {
            l.unacked.push(w);
            break;
        }
        w.apply_to(&mut l.model);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while l.fs.op_count(FaultOp::Create) == creates {
        assert!(std::time::Instant::now() < deadline, "{:?}", l.db.stats());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let e = l.write_until_error(1);
    assert!(e.is_poisoned(), "{e}");
    assert_io(&e, "injected fault: Create");
    assert_eq!(l.db.stats().idle_compactions, 0, "nothing was compacted");
    l.assert_poisoned_for_good();
    l.reopen_and_check(None);
}

#[test]
fn manifest_sync_failure_poisons_engine() {
    // Pins that a failed manifest fsync poisons and the WAL still holds the unflushed data.
    let mut l = Loaded::new(7, 80);
    l.fs.inject_fault(FaultOp::Sync, Some("MANIFEST"), 0, 1);
    let e =
        l.db.flush()
            .expect_err("flush succeeded though the manifest fsync failed");
    assert_io(&e, "injected fault: Sync");
    l.assert_poisoned_for_good();
    l.reopen_and_check(Some(CrashMode::DropUnsynced));
}

#[test]
fn current_rename_failure_poisons_engine() {
    // Pins that a manifest roll whose CURRENT rename fails poisons and the old manifest still opens.
    let fs = MemFs::new();
    let small_manifest = |fs: &MemFs| Options {
        max_manifest_bytes: 512,
        ..opts(fs)
    };
    let db = Db::open(DIR, small_manifest(&fs)).unwrap();
    let mut l = Loaded {
        fs: fs.clone(),
        db,
        rng: Rng::new(8),
        next_id: 0,
        model: Model::new(),
        unacked: Vec::new(),
    };
    for _ in 0..30 {
        let w = l.next_write();
        w.apply(&l.db).unwrap();
        w.apply_to(&mut l.model);
    }
    fs.inject_fault(FaultOp::Rename, Some("CURRENT"), 0, 1);
    let mut err = None;
    for _ in 0..20 {
        let w = l.next_write();
        w.apply(&l.db).unwrap();
        w.apply_to(&mut l.model);
        if let Err(e) = l.db.flush() {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("no manifest roll hit the rename fault");
    assert_io(&e, "injected fault: Rename");
    l.assert_poisoned_for_good();
    l.reopen_and_check(Some(CrashMode::DropUnsynced));
}

#[test]
fn full_disk_refuses_writes_and_reopens_when_space_returns() {
    // Pins ENOSPC handling: reported, sticky, nothing acknowledged lost, open fails cleanly while full.
    let mut l = Loaded::new(9, 200);
    let limit = l.fs.total_bytes() + (40 << 10);
    l.fs.set_space_limit(Some(limit));
    let e = l.write_until_error(20_000);
    let cause = match &e {
        Error::Poisoned { cause } => cause.as_ref(),
        other => other,
    };
    let Error::Io { source, .. } = cause else {
        panic!("expected an I/O error for a full disk, got {e}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{e}");
    l.assert_poisoned_for_good();
    // Still full: open must fail with an error, not panic, and must not eat data.
    let Loaded {
        fs,
        db,
        model,
        unacked,
        ..
    } = l;
    drop(db);
    fs.set_space_limit(Some(fs.total_bytes()));
    assert!(Db::open(DIR, opts(&fs)).is_err(), "opened on a full disk");
    fs.set_space_limit(None);
    let db = Db::open(DIR, opts(&fs)).unwrap();
    let got = dump(&db, probe()).unwrap();
    check_prefix(&model, &unacked, &got, 0).unwrap_or_else(|why| panic!("{why}"));
    let sync = WriteOptions {
        sync: true,
        ..WriteOptions::default()
    };
    let mut batch = cairn_engine::WriteBatch::new();
    batch.put("after", "space");
    db.write(batch, sync).unwrap();
    assert_eq!(db.get("after").unwrap(), Some(b"space".to_vec()));
}
