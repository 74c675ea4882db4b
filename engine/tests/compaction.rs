//! Compaction behaviour seen through the public API: the compaction filter,
//! write stalls, level shape, space reclamation by tombstones, idle
//! compaction, and the statistics that expose them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

use cairn_engine::{CompactionFilter, Db, FilterDecision, IterOptions, MemFs, Options};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn opts(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 32 << 10,
        target_file_size_bytes: 32 << 10,
        max_bytes_for_level_base: 128 << 10,
        block_cache_bytes: 1 << 20,
        // The shapes these tests assert must not change behind their backs
        // in a slow moment; idle compaction's own tests turn it on.
        idle_compaction_ms: 0,
        ..Options::default()
    }
}

/// Removes values starting with "expired:" (as a TTL filter would).
struct ExpireFilter {
    calls: AtomicUsize,
}

impl CompactionFilter for ExpireFilter {
    fn filter(&self, _level: usize, _key: &[u8], value: &[u8]) -> FilterDecision {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if value.starts_with(b"expired:") {
            FilterDecision::Remove
        } else {
            FilterDecision::Keep
        }
    }
}

#[test]
fn compaction_filter_removes_values_but_not_from_live_snapshots() {
    // The filter hook drops what it rejects, never what a snapshot still reads.
    let fs = MemFs::new();
    let filter = Arc::new(ExpireFilter {
        calls: AtomicUsize::new(0),
    });
    let db = Db::open(
        "/db",
        Options {
            compaction_filter: Some(filter.clone()),
            // Everything stays in the memtable until the snapshot is taken.
            write_buffer_bytes: 4 << 20,
            ..opts(&fs)
        },
    )
    .unwrap();
    for i in 0..2000u32 {
        let v = if i % 2 == 0 {
            format!("expired:{i}")
        } else {
            format!("live:{i}")
        };
        db.put(format!("k{i:05}"), v).unwrap();
    }
    let snap = db.snapshot();
    db.compact_range(None, None).unwrap();
    assert!(
        filter.calls.load(Ordering::Relaxed) == 0,
        "filter ran on values a snapshot protects"
    );
    assert_eq!(
        db.get_at("k00000", &snap).unwrap(),
        Some(b"expired:0".to_vec())
    );
    drop(snap);
    db.compact_range(None, None).unwrap();
    assert!(filter.calls.load(Ordering::Relaxed) > 0);
    for i in 0..2000u32 {
        let got = db.get(format!("k{i:05}")).unwrap();
        if i % 2 == 0 {
            assert_eq!(got, None, "k{i:05} survived its filter");
        } else {
            assert_eq!(got, Some(format!("live:{i}").into_bytes()));
        }
    }
    assert_eq!(db.iter(IterOptions::new()).count(), 1000);
}

#[test]
fn overwrites_and_tombstones_are_dropped_at_the_bottom() {
    // After a full compaction with no snapshots, only the newest live versions remain.
    let fs = MemFs::new();
    let db = Db::open("/db", opts(&fs)).unwrap();
    for round in 0..5u32 {
        for i in 0..1000u32 {
            db.put(format!("k{i:04}"), format!("round{round}-{i:0>50}"))
                .unwrap();
        }
    }
    for i in 0..500u32 {
        db.delete(format!("k{i:04}")).unwrap();
    }
    db.compact_range(None, None).unwrap();
    let stats = db.stats();
    let live_entries_bytes: u64 = 500 * (5 + 8 + 60);
    assert!(
        stats.table_bytes() < live_entries_bytes * 2,
        "tables hold {} bytes for ~{live_entries_bytes} bytes of live data: {stats:?}",
        stats.table_bytes()
    );
    assert_eq!(db.get("k0499").unwrap(), None);
    assert_eq!(db.get("k0500").unwrap().unwrap()[..7], *b"round4-");
}

#[test]
fn levels_grow_downward_and_stats_expose_write_amplification() {
    // A sustained load builds L1+ and the counters let write amplification be read off.
    let fs = MemFs::new();
    let db = Db::open("/db", opts(&fs)).unwrap();
    for i in 0..20_000u32 {
        let k = (i.wrapping_mul(2_654_435_761)) % 20_000;
        db.put(format!("key{k:06}"), [b'v'; 100]).unwrap();
    }
    db.wait_for_background().unwrap();
    let s = db.stats();
    assert!(s.flushes > 0 && s.compactions > 0, "{s:?}");
    assert!(s.levels[0].files < 4 + 1, "L0 not compacted: {s:?}");
    assert!(s.levels.iter().skip(1).any(|l| l.files > 0), "{s:?}");
    assert!(s.user_bytes_written >= 20_000 * 100);
    assert!(s.wal_bytes_written >= s.user_bytes_written);
    let wa = s.write_amplification();
    assert!(wa > 1.0 && wa < 50.0, "write amplification {wa}");
}

#[test]
fn writes_stall_instead_of_growing_l0_without_bound() {
    // With compaction unable to keep up, L0 stays bounded by the stop trigger.
    let fs = MemFs::new();
    let o = Options {
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 3,
        l0_stop_trigger: 4,
        background_threads: 1,
        max_memtables: 2,
        write_buffer_bytes: 8 << 10,
        ..opts(&fs)
    };
    let db = Db::open("/db", o).unwrap();
    let mut max_l0 = 0;
    for i in 0..30_000u32 {
        db.put(format!("key{:06}", (i * 7919) % 30_000), [b'x'; 64])
            .unwrap();
        if i % 500 == 0 {
            max_l0 = max_l0.max(db.stats().levels[0].files);
        }
    }
    let s = db.stats();
    // The stop trigger prevents memtable switches; the one immutable memtable
    // already queued may still be flushed, so L0 is bounded by stop + 1.
    assert!(max_l0 <= 4 + 1, "L0 reached {max_l0} tables");
    assert!(
        s.slowdown_count + s.stall_count > 0,
        "no write was ever delayed: {s:?}"
    );
}

#[test]
fn db_handle_is_send_sync_and_cheap_to_clone() {
    // Clones share one engine and can move across threads.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Db>();
    let db = Db::open("/db", opts(&MemFs::new())).unwrap();
    let clone = db.clone();
    std::thread::spawn(move || clone.put("from", "thread").unwrap())
        .join()
        .unwrap();
    assert_eq!(db.get("from").unwrap(), Some(b"thread".to_vec()));
}

#[test]
fn second_open_of_same_directory_is_refused() {
    // The directory lock keeps two engines from writing one database.
    let fs = MemFs::new();
    let _db = Db::open("/db", opts(&fs)).unwrap();
    let err = Db::open("/db", opts(&fs)).unwrap_err();
    assert!(matches!(err, cairn_engine::Error::Locked { .. }), "{err}");
}

#[test]
fn a_full_compaction_writes_its_data_about_once() {
    // compact_range pushes everything to the last level. It used to rewrite
    // a level of several tables at every level on the way down (a table
    // moved without rewriting only when it was alone), then rewrite the
    // last level once more. Now tables with nothing below them move, and
    // the tables this compaction wrote are not rewritten at the bottom.
    // L1 never fills, so before compact_range the data sits in L0 and in
    // L1's tables, whatever the timing of the background work.
    let fs = MemFs::new();
    let o = Options {
        max_bytes_for_level_base: 1 << 30,
        ..opts(&fs)
    };
    let db = Db::open("/db", o).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..3u32 {
        for i in 0..3000u32 {
            // Incompressible values, so table bytes are the data's bytes.
            let value: Vec<u8> = (0..100)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            db.put(format!("k{:05}", (i * 7919 + round) % 3000), value)
                .unwrap();
        }
    }
    // Flushed and settled first: compact_range's own flush would otherwise
    // make the L0 table that can start an automatic compaction in front of
    // it, whose writes this test would count.
    db.flush().unwrap();
    db.wait_for_background().unwrap();
    let before = db.stats();
    db.compact_range(None, None).unwrap();
    let after = db.stats();
    let last = after.levels.len() - 1;
    assert!(after.levels[last].files > 1, "{after:?}");
    assert!(
        after.levels[..last].iter().all(|l| l.files == 0),
        "{after:?}"
    );
    let written = after.compaction_bytes_written - before.compaction_bytes_written;
    let input = before.table_bytes();
    assert!(before.levels[1].files > 1, "{before:?}");
    assert!(
        written <= input + input / 10,
        "compact_range wrote {written} bytes for {input} bytes of tables: {after:?}"
    );
    assert_eq!(db.iter(IterOptions::new()).count(), 3000);
}

#[test]
fn a_split_manual_compaction_keeps_what_every_reader_sees() {
    // compact_range splits each merge into up to `max_subcompactions` key
    // ranges, merged by as many threads. The pieces must together write exactly what one merge would:
    // every live key once, every version a snapshot still reads, nothing a
    // tombstone hides, and tables that do not overlap (the version refuses
    // overlapping tables, so an overlap fails compact_range itself).
    let fs = MemFs::new();
    let o = Options {
        max_subcompactions: 3,
        max_bytes_for_level_base: 1 << 30,
        ..opts(&fs)
    };
    let db = Db::open("/db", o.clone()).unwrap();
    for i in 0..4000u32 {
        db.put(format!("k{:05}", i * 7919 % 4000), format!("old{i:0>90}"))
            .unwrap();
    }
    let snapshot = db.snapshot();
    for i in 0..4000u32 {
        let k = format!("k{:05}", i * 7919 % 4000);
        if i % 5 == 0 {
            db.delete(&k).unwrap();
        } else if i % 3 == 0 {
            db.put(&k, format!("new{i:0>90}")).unwrap();
        }
    }
    db.delete_range("k01000", "k01500").unwrap();
    let scan = |db: &Db| -> Vec<(Vec<u8>, Vec<u8>)> {
        db.iter(IterOptions::new()).map(Result::unwrap).collect()
    };
    let latest = scan(&db);
    let at_snapshot: Vec<_> = db
        .iter_at(IterOptions::new(), &snapshot)
        .map(Result::unwrap)
        .collect();
    assert_eq!(at_snapshot.len(), 4000);
    db.compact_range(None, None).unwrap();
    let s = db.stats();
    assert!(s.subcompactions >= 2, "the merges did not split: {s:?}");
    assert_eq!(scan(&db), latest);
    let after: Vec<_> = db
        .iter_at(IterOptions::new(), &snapshot)
        .map(Result::unwrap)
        .collect();
    assert_eq!(after, at_snapshot);
    drop(snapshot);
    db.close().unwrap();
    // The one edit that installed the pieces' tables replays as it applied.
    let db = Db::open("/db", o).unwrap();
    assert_eq!(scan(&db), latest);
}

#[test]
fn range_deleted_space_comes_back_and_the_tombstone_is_collected() {
    // Data already at the bottom is reclaimed by compact_range, and the range
    // tombstone leaves the version once nothing older remains under it.
    let fs = MemFs::new();
    let db = Db::open("/db", opts(&fs)).unwrap();
    for i in 0..5000u32 {
        db.put(format!("k{i:05}"), [b'z'; 100]).unwrap();
    }
    db.compact_range(None, None).unwrap();
    let before = db.stats().table_bytes();
    db.delete_range("k00000", "k04000").unwrap();
    assert_eq!(db.stats().range_tombstones, 1);
    db.compact_range(None, None).unwrap();
    let s = db.stats();
    assert!(
        s.table_bytes() * 3 < before,
        "{} bytes left of {before} after deleting 80%",
        s.table_bytes()
    );
    assert_eq!(s.range_tombstones, 0, "tombstone not collected: {s:?}");
    assert_eq!(db.get("k03999").unwrap(), None);
    assert_eq!(db.get("k04000").unwrap(), Some(vec![b'z'; 100]));
    assert_eq!(db.iter(IterOptions::new()).count(), 1000);
}

#[test]
fn close_releases_the_directory_while_a_snapshot_lives() {
    // A closed instance keeps serving its snapshot, and the directory can be
    // opened again at once.
    let fs = MemFs::new();
    let db = Db::open("/db", opts(&fs)).unwrap();
    db.put("k", "old").unwrap();
    let snap = db.snapshot();
    db.close().unwrap();
    assert!(db.put("k", "refused").is_err());
    let again = Db::open("/db", opts(&fs)).unwrap();
    again.put("k", "new").unwrap();
    assert_eq!(db.get_at("k", &snap).unwrap(), Some(b"old".to_vec()));
    assert_eq!(again.get("k").unwrap(), Some(b"new".to_vec()));
}

/// Puts 5000 keys and compacts them all into the last level.
fn bottom_level_db(fs: &MemFs) -> Db {
    let db = Db::open("/db", opts(fs)).unwrap();
    for i in 0..5000u32 {
        db.put(format!("k{i:05}"), [b'z'; 100]).unwrap();
    }
    db.compact_range(None, None).unwrap();
    db
}

#[test]
fn range_deleted_bottom_data_is_reclaimed_without_manual_compaction() {
    // Automatic compaction rewrites last-level tables a range tombstone
    // hides, so the space and the tombstone go away on their own.
    let fs = MemFs::new();
    let db = bottom_level_db(&fs);
    let before = db.stats().table_bytes();
    db.delete_range("k00000", "k04000").unwrap();
    db.flush().unwrap();
    db.wait_for_background().unwrap();
    let s = db.stats();
    assert!(
        s.table_bytes() * 3 < before,
        "{} of {before} bytes left: {s:?}",
        s.table_bytes()
    );
    assert_eq!(s.range_tombstones, 0, "tombstone not collected: {s:?}");
    assert_eq!(db.iter(IterOptions::new()).count(), 1000);
}

#[test]
fn tombstone_compaction_waits_for_snapshots_and_never_loops() {
    // While a snapshot older than the tombstone lives, the covered data stays
    // (the snapshot reads it) and background work still settles; once the
    // snapshot is gone the space comes back.
    let fs = MemFs::new();
    let db = bottom_level_db(&fs);
    let before = db.stats().table_bytes();
    let snap = db.snapshot();
    db.delete_range("k00000", "k04000").unwrap();
    db.flush().unwrap();
    db.wait_for_background().unwrap();
    let held = db.stats();
    assert!(
        held.table_bytes() * 2 > before,
        "data a snapshot reads was dropped: {held:?}"
    );
    assert_eq!(db.get_at("k00001", &snap).unwrap(), Some(vec![b'z'; 100]));
    assert_eq!(db.get("k00001").unwrap(), None);
    drop(snap);
    db.wait_for_background().unwrap();
    let s = db.stats();
    assert!(
        s.table_bytes() * 3 < before,
        "{} of {before} bytes left: {s:?}",
        s.table_bytes()
    );
    assert_eq!(s.range_tombstones, 0, "{s:?}");
    assert!(
        s.compactions < held.compactions + 20,
        "compaction looped: {s:?}"
    );
}

/// A compaction filter that holds every compaction until it is opened.
struct Gate {
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl CompactionFilter for Gate {
    fn filter(&self, _level: usize, _key: &[u8], _value: &[u8]) -> FilterDecision {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        FilterDecision::Keep
    }
}

#[test]
fn write_may_stall_reports_a_crowded_l0_until_compaction_drains_it() {
    // The hint async callers use to decide whether a write may block: off
    // while L0 is under the slowdown trigger, on while compaction is held
    // back with L0 at the trigger, off again once it has run.
    let fs = MemFs::new();
    let gate = Arc::new(Gate {
        open: std::sync::Mutex::new(false),
        cv: std::sync::Condvar::new(),
    });
    let o = Options {
        l0_compaction_trigger: 3,
        l0_slowdown_trigger: 3,
        l0_stop_trigger: 8,
        compaction_filter: Some(gate.clone()),
        ..opts(&fs)
    };
    let db = Db::open("/db", o).unwrap();
    for round in 0..3u32 {
        assert!(!db.write_may_stall(), "round {round}");
        for i in 0..50u32 {
            db.put(format!("key{i:03}"), format!("v{round}")).unwrap();
        }
        db.flush().unwrap();
    }
    assert_eq!(db.stats().levels[0].files, 3);
    assert!(db.write_may_stall(), "L0 at the slowdown trigger");

    *gate.open.lock().unwrap() = true;
    gate.cv.notify_all();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.write_may_stall() {
        assert!(std::time::Instant::now() < deadline, "{:?}", db.stats());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(db.stats().levels[0].files < 3);
    assert_eq!(db.get("key007").unwrap(), Some(b"v2".to_vec()));
}

/// Options for idle compaction's tests: it starts 50 ms into a pause, and
/// L0 is never compacted for its size, so only idle compaction empties it.
fn idle_opts(fs: &MemFs) -> Options {
    Options {
        idle_compaction_ms: 50,
        l0_compaction_trigger: 100,
        l0_slowdown_trigger: 200,
        l0_stop_trigger: 300,
        ..opts(fs)
    }
}

/// Polls `done` on the stats for up to 20 s.
fn wait_for(db: &Db, what: &str, done: impl Fn(&cairn_engine::Stats) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = db.stats();
        if done(&s) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {s:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn idle_compaction_folds_the_memtable_and_l0_into_l1_once_writes_pause() {
    let fs = MemFs::new();
    let db = Db::open("/db", idle_opts(&fs)).unwrap();
    let empty_memtable = db.stats().memtable_bytes;
    // Three overlapping L0 tables, a snapshot between them, and newer
    // values still in the memtable.
    let mut snap = None;
    for round in 0..3u32 {
        for i in 0..200u32 {
            db.put(format!("key{i:04}"), format!("v{round}-{i}"))
                .unwrap();
        }
        db.flush().unwrap();
        if round == 1 {
            snap = Some(db.snapshot());
        }
    }
    let snap = snap.unwrap();
    for i in 0..100u32 {
        db.put(format!("key{i:04}"), format!("v3-{i}")).unwrap();
    }
    db.delete("key0150").unwrap();

    wait_for(&db, "memtable and L0 folded into L1", |s| {
        s.levels[0].files == 0 && s.memtable_bytes == empty_memtable && s.levels[1].files > 0
    });
    let folded = db.stats();
    assert!(folded.idle_compactions >= 1, "{folded:?}");
    assert_eq!(folded.immutable_memtables, 0);

    for i in 0..200u32 {
        let key = format!("key{i:04}");
        let latest = match i {
            0..100 => Some(format!("v3-{i}")),
            150 => None,
            _ => Some(format!("v2-{i}")),
        };
        assert_eq!(
            db.get(&key).unwrap(),
            latest.map(String::into_bytes),
            "{key}"
        );
        let at_snapshot = format!("v1-{i}").into_bytes();
        assert_eq!(db.get_at(&key, &snap).unwrap(), Some(at_snapshot), "{key}");
    }

    // Once per pause: with no new writes, nothing more is rewritten.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let later = db.stats();
    assert_eq!(
        (later.flushes, later.compactions, later.idle_compactions),
        (folded.flushes, folded.compactions, folded.idle_compactions),
        "{later:?}"
    );
    drop(snap);
    db.close().unwrap();

    let db = Db::open("/db", idle_opts(&fs)).unwrap();
    assert_eq!(db.get("key0007").unwrap(), Some(b"v3-7".to_vec()));
    assert_eq!(db.get("key0150").unwrap(), None);
}

#[test]
fn idle_compaction_leaves_a_large_database_alone_after_a_few_writes() {
    // The rewrite would be far more than twice the bytes written since the
    // last idle compaction (none, in this process), so it waits for more.
    let fs = MemFs::new();
    let db = Db::open(
        "/db",
        Options {
            idle_compaction_ms: 0,
            ..idle_opts(&fs)
        },
    )
    .unwrap();
    for round in 0..3u32 {
        for i in 0..300u32 {
            db.put(format!("key{i:04}"), format!("value-{round}-{i:032}"))
                .unwrap();
        }
        db.flush().unwrap();
    }
    let l0 = db.stats().levels[0].files;
    assert!(l0 >= 3, "{:?}", db.stats());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(db.stats().levels[0].files, l0, "idle compaction is off");
    db.close().unwrap();

    let db = Db::open("/db", idle_opts(&fs)).unwrap();
    db.put("key0001", "new").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let s = db.stats();
    assert_eq!((s.levels[0].files, s.idle_compactions), (l0, 0), "{s:?}");

    // Enough new writes pay for it.
    for i in 0..300u32 {
        db.put(format!("key{i:04}"), format!("value-3-{i:032}"))
            .unwrap();
    }
    db.flush().unwrap();
    wait_for(&db, "L0 folded into L1", |s| s.levels[0].files == 0);
    assert_eq!(
        db.get("key0001").unwrap(),
        Some(format!("value-3-{:032}", 1).into_bytes())
    );
}

#[test]
fn l0_tables_that_share_no_key_move_down_without_a_rewrite() {
    // A sequential load flushes L0 tables with disjoint key ranges; its L0
    // compaction moves them all into L1, where one shared key makes it a
    // merge.
    for (shared_key, moved) in [(false, true), (true, false)] {
        let fs = MemFs::new();
        let db = Db::open(
            "/db",
            Options {
                l0_compaction_trigger: 3,
                ..opts(&fs)
            },
        )
        .unwrap();
        for table in 0..3u32 {
            for i in 0..100u32 {
                db.put(format!("key{:05}", table * 100 + i), "v").unwrap();
            }
            if shared_key && table == 2 {
                db.put("key00000", "again").unwrap();
            }
            db.flush().unwrap();
        }
        db.wait_for_background().unwrap();
        let s = db.stats();
        assert_eq!(s.levels[0].files, 0, "{s:?}");
        assert_eq!(s.levels[1].files == 3, moved, "{s:?}");
        assert_eq!(s.trivial_moves == 1, moved, "{s:?}");
        assert_eq!(s.compaction_bytes_written == 0, moved, "{s:?}");
        let first = if shared_key { "again" } else { "v" };
        assert_eq!(db.get("key00000").unwrap(), Some(first.as_bytes().to_vec()));
        assert_eq!(db.get("key00299").unwrap(), Some(b"v".to_vec()));
        let keys = db.iter(IterOptions::new()).count();
        assert_eq!(keys, 300);
    }
}
