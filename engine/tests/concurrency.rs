//! Concurrent writers, readers, flushes and compactions: what a reader sees
//! is always a state the writers actually produced, in order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]
use cairn_engine::{CrashMode, Db, IterOptions, MemFs, Options, WriteBatch, WriteOptions};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Small sizes so flushes and compactions run while the threads do.
fn small_opts(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 32 << 10,
        target_file_size_bytes: 32 << 10,
        max_bytes_for_level_base: 128 << 10,
        block_size_bytes: 1 << 10,
        l0_compaction_trigger: 2,
        ..Options::default()
    }
}

/// A counter as a value: 8 bytes big-endian, padded so memtables fill.
fn encode(counter: u64) -> Vec<u8> {
    let mut v = counter.to_be_bytes().to_vec();
    v.resize(100, b'.');
    v
}

fn decode(value: &[u8]) -> u64 {
    u64::from_be_bytes(value[..8].try_into().unwrap())
}

/// splitmix64: a seeded generator so every thread's choices are reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// Flushes every few milliseconds until `done`, so reads cross memtable
/// switches, L0 tables and compactions.
fn flush_until(db: &Db, done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        db.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn reads_never_go_back_in_time() {
    // A reader that saw counter c for a key never later sees a smaller one (or
    // none), through gets and scans, while flushes and compactions run.
    const WRITERS: u64 = 3;
    const OWN_KEYS: u64 = 16;
    const SHARED_KEYS: u64 = 8;
    const WRITES: u64 = 3000;
    let db = Db::open("/db", small_opts(&MemFs::new())).unwrap();
    let shared = Mutex::new(0u64);
    let writers_left = AtomicU64::new(WRITERS);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let (db, shared, writers_left, done) = (&db, &shared, &writers_left, &done);
            s.spawn(move || {
                for c in 1..=WRITES {
                    db.put(format!("own-{t}-{:02}", c % OWN_KEYS), encode(c))
                        .unwrap();
                    if c % 4 == 0 {
                        // Counter and put under one lock: put order is counter order.
                        let mut n = shared.lock().unwrap();
                        *n += 1;
                        db.put(format!("shared-{:02}", *n % SHARED_KEYS), encode(*n))
                            .unwrap();
                    }
                }
                if writers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    done.store(true, Ordering::Release);
                }
            });
        }
        for r in 0..2u64 {
            let (db, done) = (&db, &done);
            s.spawn(move || check_monotonic_reads(db, done, r));
        }
        s.spawn(|| flush_until(&db, &done));
    });
}

fn check_monotonic_reads(db: &Db, done: &AtomicBool, seed: u64) {
    let mut rng = Rng(seed);
    let mut seen: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut observe = |key: Vec<u8>, value: Option<Vec<u8>>| {
        let last = seen.get(&key).copied();
        let Some(value) = value else {
            assert!(last.is_none(), "{key:?} vanished after {last:?}");
            return;
        };
        let c = decode(&value);
        assert!(
            last.is_none_or(|l| c >= l),
            "{key:?} went back from {last:?} to {c}"
        );
        seen.insert(key, c);
    };
    let mut rounds = 0u64;
    while !done.load(Ordering::Acquire) || rounds < 100 {
        rounds += 1;
        if rng.below(10) == 0 {
            let prefix = if rng.below(2) == 0 { "own-" } else { "shared-" };
            let mut opts = IterOptions::prefix(prefix.as_bytes());
            opts.reverse = rng.below(2) == 0;
            for item in db.iter(opts) {
                let (k, v) = item.unwrap();
                observe(k, Some(v));
            }
        } else {
            let key = if rng.below(3) == 0 {
                format!("shared-{:02}", rng.below(8))
            } else {
                format!("own-{}-{:02}", rng.below(3), rng.below(16))
            };
            let value = db.get(&key).unwrap();
            observe(key.into_bytes(), value);
        }
    }
}

#[test]
fn snapshot_never_sees_later_writes() {
    // A snapshot reads, for each writer's key, a counter between the last one
    // acknowledged before it and the one in flight, and keeps reading exactly
    // that however much is written, flushed and compacted afterwards.
    const WRITERS: usize = 2;
    let db = Db::open("/db", small_opts(&MemFs::new())).unwrap();
    let acked: Vec<AtomicU64> = (0..WRITERS).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let (db, acked, done) = (&db, &acked, &done);
            s.spawn(move || {
                let mut c = 0;
                while !done.load(Ordering::Acquire) {
                    c += 1;
                    db.put(format!("w{t}"), encode(c)).unwrap();
                    acked[t].store(c, Ordering::Release);
                    db.put(format!("fill-{t}-{}", c % 300), encode(c)).unwrap();
                }
            });
        }
        s.spawn(|| {
            for round in 0..40 {
                check_one_snapshot(&db, &acked, round % 5 == 0);
            }
            done.store(true, Ordering::Release);
        });
    });
}

fn check_one_snapshot(db: &Db, acked: &[AtomicU64], compact: bool) {
    let lo: Vec<u64> = acked.iter().map(|a| a.load(Ordering::Acquire)).collect();
    let snap = db.snapshot();
    // Writes started after this load cannot be in the snapshot; at most the
    // one in flight can.
    let hi: Vec<u64> = acked
        .iter()
        .map(|a| a.load(Ordering::Acquire) + 1)
        .collect();
    let read = |db: &Db| -> Vec<u64> {
        (0..acked.len())
            .map(|t| {
                db.get_at(format!("w{t}"), &snap)
                    .unwrap()
                    .map_or(0, |v| decode(&v))
            })
            .collect()
    };
    let first = read(db);
    for t in 0..acked.len() {
        assert!(
            (lo[t]..=hi[t]).contains(&first[t]),
            "writer {t}: snapshot read {} outside [{}, {}]",
            first[t],
            lo[t],
            hi[t]
        );
    }
    // Let the writers move well past the snapshot.
    while acked
        .iter()
        .zip(&hi)
        .any(|(a, h)| a.load(Ordering::Acquire) < h + 50)
    {
        std::thread::yield_now();
    }
    db.flush().unwrap();
    if compact {
        db.compact_range(None, None).unwrap();
    }
    assert_eq!(read(db), first, "point reads at the snapshot changed");
    let scanned: Vec<u64> = db
        .iter_at(IterOptions::prefix(b"w"), &snap)
        .map(|r| decode(&r.unwrap().1))
        .collect();
    let want: Vec<u64> = first.iter().copied().filter(|&c| c > 0).collect();
    assert_eq!(
        scanned, want,
        "a scan at the snapshot disagrees with its gets"
    );
}

/// The state the frozen-iterator test starts from: keys across the
/// memtable, L0 and deeper levels, with deletes and a range delete.
fn prefill(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for round in 0..3u64 {
        for i in 0..1500u64 {
            let key = format!("key-{i:05}").into_bytes();
            db.put(&key, encode(round * 10_000 + i)).unwrap();
            model.insert(key, encode(round * 10_000 + i));
        }
        if round == 0 {
            db.compact_range(None, None).unwrap();
        } else if round == 1 {
            db.flush().unwrap();
        }
    }
    for i in (0..1500u64).step_by(7) {
        let key = format!("key-{i:05}").into_bytes();
        db.delete(&key).unwrap();
        model.remove(&key);
    }
    db.delete_range("key-00300", "key-00400").unwrap();
    model.retain(|k, _| !(k.as_slice() >= b"key-00300" && k.as_slice() < b"key-00400"));
    model
}

/// Overwrites, deletes and range-deletes everything, then flushes and
/// compacts it all down: nothing of the old state is left in place.
fn churn(db: &Db, round: u64) {
    for i in 0..1500u64 {
        let key = format!("key-{i:05}");
        if i % 5 == round % 5 {
            db.delete(&key).unwrap();
        } else {
            db.put(&key, encode(1_000_000 + round)).unwrap();
        }
    }
    db.delete_range("key-01000", "key-01200").unwrap();
    db.flush().unwrap();
    db.compact_range(None, None).unwrap();
}

#[test]
fn iterator_keeps_its_view_across_flush_and_compaction() {
    // An iterator returns exactly the state at its creation even when every
    // key is rewritten and the tables it started on are compacted away.
    for reverse in [false, true] {
        let db = Db::open("/db", small_opts(&MemFs::new())).unwrap();
        let model = prefill(&db);
        let mut opts = IterOptions::new();
        opts.reverse = reverse;
        let mut it = db.iter(opts);
        let (go, go_rx) = mpsc::channel::<u64>();
        let (finished, finished_rx) = mpsc::channel::<()>();
        let got = std::thread::scope(|s| {
            let churner = &db;
            s.spawn(move || {
                for round in go_rx {
                    churn(churner, round);
                    finished.send(()).unwrap();
                }
            });
            let mut got = Vec::new();
            let mut round = 0;
            for item in it.by_ref() {
                got.push(item.unwrap());
                if got.len() % 300 == 0 {
                    round += 1;
                    go.send(round).unwrap();
                    finished_rx.recv().unwrap();
                }
            }
            drop(go);
            assert!(round >= 3, "the churn must run mid-iteration");
            got
        });
        let mut want: Vec<_> = model.into_iter().collect();
        if reverse {
            want.reverse();
        }
        assert_eq!(got.len(), want.len(), "reverse={reverse}");
        assert!(got == want, "reverse={reverse}: iterator saw later writes");
        assert!(db.stats().levels.iter().skip(1).any(|l| l.files > 0));
    }
}

const BATCH_KEYS: usize = 16;

/// One batch: the same counter to every key, sometimes after a range delete
/// of all of them (which the puts, being later in the batch, override).
fn counter_batch(c: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    if c.is_multiple_of(5) {
        b.delete_range("batch-", "batch.");
    }
    for k in 0..BATCH_KEYS {
        b.put(format!("batch-{k:02}"), encode(c));
    }
    b
}

#[test]
fn batch_is_all_or_nothing_to_every_reader() {
    // Readers at any snapshot, and any iterator, see every key of a batch
    // with the same counter: never part of one batch and part of another.
    let db = Db::open("/db", small_opts(&MemFs::new())).unwrap();
    db.write(counter_batch(0), WriteOptions::default()).unwrap();
    let counter = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let writers_left = AtomicU64::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (db, counter, done, writers_left) = (&db, &counter, &done, &writers_left);
            s.spawn(move || {
                for _ in 0..1500 {
                    let c = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    db.write(counter_batch(c), WriteOptions::default()).unwrap();
                }
                if writers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    done.store(true, Ordering::Release);
                }
            });
        }
        for r in 0..2 {
            let (db, done) = (&db, &done);
            s.spawn(move || check_batches_whole(db, done, r == 1));
        }
        s.spawn(|| flush_until(&db, &done));
    });
}

fn check_batches_whole(db: &Db, done: &AtomicBool, reverse: bool) {
    let mut rounds = 0;
    while !done.load(Ordering::Acquire) || rounds < 50 {
        rounds += 1;
        let snap = db.snapshot();
        let at_snap: Vec<Option<u64>> = (0..BATCH_KEYS)
            .map(|k| {
                db.get_at(format!("batch-{k:02}"), &snap)
                    .unwrap()
                    .map(|v| decode(&v))
            })
            .collect();
        assert!(
            at_snap.iter().all(|c| c.is_some() && *c == at_snap[0]),
            "a snapshot saw a torn batch: {at_snap:?}"
        );
        let mut opts = IterOptions::prefix(b"batch-");
        opts.reverse = reverse;
        let scanned: Vec<u64> = db.iter(opts).map(|r| decode(&r.unwrap().1)).collect();
        assert_eq!(
            scanned.len(),
            BATCH_KEYS,
            "a scan saw a torn batch: {scanned:?}"
        );
        assert!(
            scanned.iter().all(|c| *c == scanned[0]),
            "a scan saw a torn batch: {scanned:?}"
        );
    }
}

#[test]
fn every_acknowledged_sync_write_is_readable_and_survives_a_crash() {
    // Group commit under sync writes from many threads: every write returns,
    // every acknowledged one is readable, and it is still there after power loss.
    const THREADS: u64 = 12;
    const WRITES: u64 = 150;
    let fs = MemFs::new();
    let db = Db::open("/db", small_opts(&fs)).unwrap();
    let sync = WriteOptions {
        sync: true,
        ..WriteOptions::default()
    };
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let db = &db;
            s.spawn(move || {
                for i in 0..WRITES {
                    let mut b = WriteBatch::new();
                    b.put(format!("t{t:02}-{i:04}"), encode(t * WRITES + i));
                    db.write(b, sync).unwrap();
                }
            });
        }
    });
    let check = |db: &Db| {
        for t in 0..THREADS {
            for i in 0..WRITES {
                let v = db.get(format!("t{t:02}-{i:04}")).unwrap();
                assert_eq!(
                    v.map(|v| decode(&v)),
                    Some(t * WRITES + i),
                    "t{t:02}-{i:04}"
                );
            }
        }
        assert_eq!(db.iter(IterOptions::new()).count() as u64, THREADS * WRITES);
    };
    check(&db);
    db.wait_for_background().unwrap();
    fs.crash(CrashMode::DropUnsynced, 1);
    drop(db);
    let db = Db::open("/db", small_opts(&fs)).unwrap();
    check(&db);
}

#[test]
fn reads_without_snapshot_never_miss_a_live_key() {
    // A key that always exists is found by every get and scan, while it is
    // overwritten, flushed and compacted: a read's sequence number and the
    // tables it looks in must be taken in an order that keeps its version.
    let db = Db::open("/db", small_opts(&MemFs::new())).unwrap();
    db.put("k", encode(0)).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for c in 1..150_000 {
                db.put("k", encode(c)).unwrap();
            }
            done.store(true, Ordering::Release);
        });
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                db.compact_range(None, None).unwrap();
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                let mut misses = 0;
                let mut reads = 0;
                while !done.load(Ordering::Acquire) {
                    reads += 2;
                    if db.get("k").unwrap().is_none() {
                        misses += 1;
                    }
                    if db.iter(IterOptions::new()).next().is_none() {
                        misses += 1;
                    }
                }
                assert_eq!(
                    misses, 0,
                    "{misses} of {reads} reads missed a key that always exists"
                );
            });
        }
    });
}

#[test]
fn concurrent_memtable_inserts_keep_batches_whole_and_writes_visible() {
    // With every group split across its writers' threads for insertion, a
    // batch is still all-or-nothing to readers, and a write is visible to its
    // writer as soon as it returns.
    let fs = MemFs::new();
    let opts = Options {
        concurrent_insert_min_entries: 0,
        ..small_opts(&fs)
    };
    let db = Db::open("/db", opts).unwrap();
    db.write(counter_batch(0), WriteOptions::default()).unwrap();
    let counter = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let writers_left = AtomicU64::new(4);
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let (db, counter, done, writers_left) = (&db, &counter, &done, &writers_left);
            s.spawn(move || {
                for i in 0..800u64 {
                    let c = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    let mut b = counter_batch(c);
                    let own = format!("own-{w}");
                    b.put(&own, i.to_be_bytes());
                    db.write(b, WriteOptions::default()).unwrap();
                    let seen = db.get(&own).unwrap().unwrap();
                    assert_eq!(
                        seen,
                        i.to_be_bytes(),
                        "writer {w} did not read its own write"
                    );
                }
                if writers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    done.store(true, Ordering::Release);
                }
            });
        }
        for r in 0..2 {
            let (db, done) = (&db, &done);
            s.spawn(move || check_batches_whole(db, done, r == 1));
        }
    });
    let s = db.stats();
    assert_eq!(s.writes, 1 + 4 * 800, "{s:?}");
    // Some groups had several writers: the concurrent insert path ran.
    assert!(
        s.write_groups < s.writes,
        "no group ever had two writers: {s:?}"
    );
}
