//! Crash consistency on `MemFs`: a seeded workload of puts, deletes and
//! batches (some synced) runs with flushes and compactions in the
//! background, the file system loses power at a chosen point, and the
//! reopened database must hold the state after some prefix of the
//! attempted writes that includes every write acknowledged up to the last
//! acknowledged sync, and no value that was never written.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

mod common;

use cairn_engine::{CrashMode, Db, FaultOp, MemFs, Options};
use common::{Model, Rng, Workload, Write, check_prefix, dump, freeze, key};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const DIR: &str = "/db";

const MODES: [CrashMode; 4] = [
    CrashMode::DropUnsynced,
    CrashMode::KeepRandomPrefix,
    CrashMode::TornPages { page_bytes: 512 },
    CrashMode::TornPages { page_bytes: 4096 },
];

/// Small enough that a few hundred writes switch memtables, flush, compact
/// into L1 and L2, and roll the manifest (switching `CURRENT`).
fn opts(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 16 << 10,
        target_file_size_bytes: 32 << 10,
        max_bytes_for_level_base: 128 << 10,
        l0_compaction_trigger: 2,
        block_cache_bytes: 256 << 10,
        max_manifest_bytes: 4 << 10,
        ..Options::default()
    }
}

/// When the power goes out.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// From the writer, before write number `n` of the session.
    BeforeWrite(usize),
    /// From a watcher thread, as soon as `op` has been attempted `n` times
    /// in total: lands inside a write, a flush, a compaction or a manifest
    /// switch, wherever the engine happens to be.
    OpCount(FaultOp, u64),
}

/// What a writer attempted in one session between open and crash.
struct Session {
    /// Attempted writes, in order; only the last may be unacknowledged.
    writes: Vec<Write>,
    /// Writes that must survive: through the last acknowledged sync write.
    must_survive: usize,
    /// Flushes and compactions the engine had finished when the power went out.
    background_jobs: u64,
}

/// Runs writes until the trigger fires (or `max_writes`), then freezes the
/// file system. A write may fail only once the file system is frozen.
fn run_session(
    db: &Db,
    fs: &MemFs,
    rng: &mut Rng,
    next_id: &mut u64,
    workload: Workload,
    trigger: Trigger,
    max_writes: usize,
) -> Session {
    let frozen = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = match trigger {
        Trigger::OpCount(op, n) => {
            let (fs, frozen, done) = (fs.clone(), frozen.clone(), done.clone());
            Some(std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    if fs.op_count(op) >= n {
                        // Flag first: a write failing after the freeze must see it.
                        frozen.store(true, Ordering::Release);
                        freeze(&fs);
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            }))
        }
        Trigger::BeforeWrite(_) => None,
    };
    let mut session = Session {
        writes: Vec::new(),
        must_survive: 0,
        background_jobs: 0,
    };
    for i in 0..max_writes {
        if matches!(trigger, Trigger::BeforeWrite(n) if n == i) {
            break;
        }
        let w = workload.generate(rng, *next_id);
        *next_id += 1;
        let result = w.apply(db);
        let sync = w.sync;
        session.writes.push(w);
        match result {
            Ok(()) if sync => session.must_survive = session.writes.len(),
            Ok(()) => {}
            Err(e) => {
                assert!(
                    frozen.load(Ordering::Acquire),
                    "write failed before the crash: {e}"
                );
                break;
            }
        }
    }
    done.store(true, Ordering::Release);
    if let Some(w) = watcher {
        w.join().unwrap();
    }
    freeze(fs);
    let stats = db.stats();
    session.background_jobs = stats.flushes + stats.compactions;
    session
}

/// Crashes, drops the dead handle, reopens and checks the invariants;
/// returns the reopened database and its state.
fn crash_and_check(
    db: Db,
    fs: &MemFs,
    (mode, seed): (CrashMode, u64),
    base: &Model,
    session: &Session,
    workload: Workload,
    context: &str,
) -> (Db, Model) {
    fs.crash(mode, seed);
    drop(db);
    fs.clear_faults();
    let db = Db::open(DIR, opts(fs))
        .unwrap_or_else(|e| panic!("{context}: open after crash ({mode:?}) failed: {e}"));
    let probe = (0..workload.keys + 8).map(|i| key(workload.prefix, i));
    let got = dump(&db, probe)
        .unwrap_or_else(|e| panic!("{context}: reading after crash ({mode:?}) failed: {e}"));
    if let Err(why) = check_prefix(base, &session.writes, &got, session.must_survive) {
        panic!(
            "{context}, {mode:?}: {why}; {} writes attempted, report {:?}",
            session.writes.len(),
            db.recovery_report()
        );
    }
    (db, got)
}

/// Opens a fresh database on `fs`.
fn fresh(fs: &MemFs) -> Db {
    Db::open(DIR, opts(fs)).unwrap()
}

/// Runs `rounds` of write, crash, reopen and check on one database.
/// Returns the flushes and compactions that ran before the crashes.
fn crash_rounds(
    seed: u64,
    mode: CrashMode,
    rounds: usize,
    trigger: impl Fn(&mut Rng) -> Trigger,
) -> u64 {
    let workload = Workload::new("k");
    let fs = MemFs::new();
    let mut db = fresh(&fs);
    let mut rng = Rng::new(seed);
    let mut next_id = 0;
    let mut base = Model::new();
    let mut jobs = 0;
    for round in 0..rounds {
        let t = trigger(&mut rng);
        let session = run_session(&db, &fs, &mut rng, &mut next_id, workload, t, 3000);
        jobs += session.background_jobs;
        let context = format!("seed {seed} round {round} trigger {t:?}");
        let (reopened, state) = crash_and_check(
            db,
            &fs,
            (mode, rng.next_u64()),
            &base,
            &session,
            workload,
            &context,
        );
        db = reopened;
        base = state;
    }
    jobs
}

#[test]
fn crash_at_random_write_keeps_synced_prefix_in_every_mode() {
    // Pins the crash contract for each CrashMode, with flushes and compactions running.
    for (m, mode) in MODES.into_iter().enumerate() {
        let mut jobs = 0;
        for seed in 0..6 {
            jobs += crash_rounds(seed * 10 + m as u64, mode, 2, |rng| {
                Trigger::BeforeWrite(rng.range(1, 1500) as usize)
            });
        }
        assert!(
            jobs > 50,
            "{mode:?}: only {jobs} flushes and compactions ran"
        );
        eprintln!("{mode:?}: {jobs} background jobs");
    }
}

#[test]
fn crash_right_after_nth_fsync_keeps_everything_synced_before_it() {
    // Pins that each fsync point (WAL, table, manifest, CURRENT.tmp) is a consistent cut.
    let workload = Workload::new("k");
    let fs = MemFs::new();
    let db = fresh(&fs);
    let mut rng = Rng::new(99);
    let mut next_id = 0;
    let before = fs.op_count(FaultOp::Sync);
    run_session(
        &db,
        &fs,
        &mut rng,
        &mut next_id,
        workload,
        Trigger::BeforeWrite(1200),
        1200,
    );
    let total_syncs = fs.op_count(FaultOp::Sync) - before;
    assert!(total_syncs > 50, "workload made only {total_syncs} fsyncs");
    drop(db);
    let points = 24;
    for p in 0..points {
        let nth = 1 + total_syncs * p / points;
        let mode = MODES[p as usize % MODES.len()];
        let fs = MemFs::new();
        let mut db = fresh(&fs);
        let mut rng = Rng::new(1000 + p);
        let mut next_id = 0;
        let mut base = Model::new();
        for round in 0..2 {
            let target = fs.op_count(FaultOp::Sync) + nth;
            let t = Trigger::OpCount(FaultOp::Sync, target);
            let session = run_session(&db, &fs, &mut rng, &mut next_id, workload, t, 2000);
            let context = format!("sync point {nth} of {total_syncs}, round {round}");
            (db, base) = crash_and_check(db, &fs, (mode, p), &base, &session, workload, &context);
        }
    }
}

#[test]
fn crash_during_flush_compaction_or_manifest_switch_recovers() {
    // Pins recovery when power fails mid-create, mid-rename of CURRENT, mid-remove or mid-dir-sync.
    let ops = [
        FaultOp::Create,
        FaultOp::Rename,
        FaultOp::Remove,
        FaultOp::SyncDir,
        FaultOp::Append,
    ];
    for (i, op) in ops.into_iter().enumerate() {
        for seed in 0..4u64 {
            let mode = MODES[(seed as usize + i) % MODES.len()];
            let fs = MemFs::new();
            let mut db = fresh(&fs);
            let mut rng = Rng::new(seed * 31 + i as u64);
            let mut next_id = 0;
            let mut base = Model::new();
            for round in 0..2 {
                // Far enough in that flushes and compactions have started.
                let ahead = match op {
                    FaultOp::Append => rng.range(200, 3000),
                    _ => rng.range(4, 40),
                };
                let t = Trigger::OpCount(op, fs.op_count(op) + ahead);
                let session = run_session(
                    &db,
                    &fs,
                    &mut rng,
                    &mut next_id,
                    Workload::new("k"),
                    t,
                    3000,
                );
                let context = format!("{op:?} seed {seed} round {round}");
                (db, base) = crash_and_check(
                    db,
                    &fs,
                    (mode, seed),
                    &base,
                    &session,
                    Workload::new("k"),
                    &context,
                );
            }
        }
    }
}

#[test]
fn recovery_is_idempotent_across_repeated_crashes() {
    // Pins that reopening, crashing again (during or right after recovery) and reopening changes nothing.
    for (m, mode) in MODES.into_iter().enumerate() {
        let workload = Workload::new("k");
        let fs = MemFs::new();
        let mut db = fresh(&fs);
        let mut rng = Rng::new(500 + m as u64);
        let mut next_id = 0;
        let mut base = Model::new();
        for round in 0..4 {
            let t = Trigger::BeforeWrite(rng.range(100, 800) as usize);
            let session = run_session(&db, &fs, &mut rng, &mut next_id, workload, t, 3000);
            let context = format!("{mode:?} round {round}");
            (db, base) =
                crash_and_check(db, &fs, (mode, round), &base, &session, workload, &context);
            // Crash again with no writes at all: the state must not move.
            let empty = Session {
                writes: Vec::new(),
                must_survive: 0,
                background_jobs: 0,
            };
            freeze(&fs);
            (db, base) = crash_and_check(
                db,
                &fs,
                (mode, round + 100),
                &base,
                &empty,
                workload,
                &format!("{context} (second crash)"),
            );
        }
        // Crash in the middle of recovery itself, at each of its fsyncs.
        drop(db);
        for nth in 0..6 {
            fs.inject_fault(FaultOp::Sync, None, nth, u64::MAX);
            let _ = Db::open(Path::new(DIR), opts(&fs));
            freeze(&fs);
            fs.crash(mode, nth);
            fs.clear_faults();
            let db = Db::open(DIR, opts(&fs)).unwrap();
            let got = dump(&db, std::iter::empty()).unwrap();
            assert_eq!(
                got, base,
                "{mode:?}: crash during recovery at fsync {nth} changed the state"
            );
        }
    }
}

#[test]
fn concurrent_writers_each_recover_a_prefix_with_their_synced_writes() {
    // Pins group commit under crashes: every writer's synced writes survive, each as a prefix.
    const WRITERS: usize = 3;
    let prefixes: [&'static str; WRITERS] = ["a", "b", "c"];
    for (s, mode) in MODES.into_iter().enumerate() {
        let fs = MemFs::new();
        let db = fresh(&fs);
        let frozen = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = prefixes
            .iter()
            .enumerate()
            .map(|(t, prefix)| {
                let (db, frozen) = (db.clone(), frozen.clone());
                let workload = Workload {
                    sync_percent: 30,
                    ..Workload::new(prefix)
                };
                std::thread::spawn(move || {
                    let mut rng = Rng::new((s * WRITERS + t) as u64);
                    let mut writes = Vec::new();
                    let mut must_survive = 0;
                    for id in 0..4000 {
                        let w = workload.generate(&mut rng, id);
                        let r = w.apply(&db);
                        let sync = w.sync;
                        writes.push(w);
                        match r {
                            Ok(()) if sync => must_survive = writes.len(),
                            Ok(()) => {}
                            Err(e) => {
                                assert!(frozen.load(Ordering::Acquire), "write failed: {e}");
                                break;
                            }
                        }
                    }
                    let session = Session {
                        writes,
                        must_survive,
                        background_jobs: 0,
                    };
                    (workload, session)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30 + 20 * s as u64));
        // The flag goes up first: a writer failing after the freeze must
        // already see it, or it reports the expected failure as a bug.
        frozen.store(true, Ordering::Release);
        freeze(&fs);
        let sessions: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        fs.crash(mode, s as u64);
        drop(db);
        fs.clear_faults();
        let db = Db::open(DIR, opts(&fs)).unwrap();
        let all = dump(&db, std::iter::empty()).unwrap();
        for (workload, session) in &sessions {
            let mine: Model = all
                .iter()
                .filter(|(k, _)| k.starts_with(workload.prefix.as_bytes()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Err(why) =
                check_prefix(&Model::new(), &session.writes, &mine, session.must_survive)
            {
                panic!("{mode:?}, writer {}: {why}", workload.prefix);
            }
        }
    }
}
