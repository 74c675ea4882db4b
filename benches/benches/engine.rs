//! Criterion benches of the engine's hot paths: memtable insert, block
//! encode/decode, bloom probe, point get in the memtable / L0 / last
//! level, iterator step, WAL append, group commit with N writers.
//!
//! `cargo bench -p cairn-benches --bench engine` (add `-- NAME` to pick).
//! Sizes are small (100k keys) so the whole suite runs in a couple of
//! minutes on two cores; the runner (`cairn-bench`) does the large runs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench target")]

use cairn_benches::key_of;
use cairn_engine::bench_internals::{BenchBlock, BenchBloom, BenchMemTable, encode_block};
use cairn_engine::record_log::LogWriter;
use cairn_engine::{Db, FileSystem, IterOptions, Options, StdFs};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const KEYS: u64 = 100_000;
const VALUE: [u8; 100] = [b'v'; 100];

/// A cheap stream of random key numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (((z ^ (z >> 31)) as u128 * n as u128) >> 64) as u64
    }
}

fn memtable(c: &mut Criterion) {
    let mut g = c.benchmark_group("memtable");
    g.throughput(Throughput::Elements(1));
    // A fresh memtable per sample, so its size (and cache misses) stay
    // comparable between samples.
    g.bench_function("insert_random", |b| {
        b.iter_custom(|iters| {
            let mem = BenchMemTable::default();
            let mut rng = Rng(7);
            let start = Instant::now();
            for seq in 1..=iters {
                mem.put(seq, &key_of(rng.below(u64::MAX >> 8)), &VALUE);
            }
            start.elapsed()
        });
    });
    let mem = BenchMemTable::default();
    for i in 0..KEYS {
        mem.put(i + 1, &key_of(i), &VALUE);
    }
    let mut rng = Rng(9);
    g.bench_function("get_100k", |b| {
        b.iter(|| black_box(mem.get(&key_of(rng.below(KEYS)), u64::MAX >> 8)));
    });
    g.finish();
}

/// `Options::block_restart_interval`'s default.
const RESTART_INTERVAL: usize = 4;

fn block(c: &mut Criterion) {
    // About one 4 KiB block of 16-byte keys and 100-byte values, with the
    // engine's default restart interval.
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..32)
        .map(|i| (key_of(i * 7).to_vec(), VALUE.to_vec()))
        .collect();
    let encoded = encode_block(&entries, RESTART_INTERVAL);
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(encode_block(&entries, RESTART_INTERVAL)))
    });
    g.bench_function("decode_and_scan", |b| {
        b.iter(|| {
            BenchBlock::decode(black_box(encoded.clone()))
                .unwrap()
                .scan()
        });
    });
    let block = BenchBlock::decode(encoded.clone()).unwrap();
    let mut rng = Rng(3);
    g.throughput(Throughput::Elements(1));
    g.bench_function("seek", |b| {
        b.iter(|| black_box(block.seek(&key_of(rng.below(32) * 7))));
    });
    g.finish();
}

fn bloom(c: &mut Criterion) {
    let keys: Vec<[u8; 16]> = (0..KEYS).map(key_of).collect();
    let filter = BenchBloom::build(keys.iter().map(|k| &k[..]), 10);
    let mut g = c.benchmark_group("bloom");
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(5);
    g.bench_function("probe_present", |b| {
        b.iter(|| black_box(filter.may_contain(&key_of(rng.below(KEYS)))));
    });
    g.bench_function("probe_absent", |b| {
        b.iter(|| black_box(filter.may_contain(&key_of(KEYS + rng.below(KEYS)))));
    });
    g.finish();
}

fn fill(dir: &Path, keys: u64) -> Db {
    let db = Db::open(dir, Options::default()).unwrap();
    for i in 0..keys {
        db.put(key_of(i), VALUE).unwrap();
    }
    db
}

/// As `fill`, in a shuffled order (`i * 7919 mod keys`, a permutation
/// when `keys` is 100k), so that skiplist neighbours lie far apart in memory,
/// as they do after random writes.
fn fill_shuffled(dir: &Path, keys: u64) -> Db {
    let db = Db::open(dir, Options::default()).unwrap();
    for i in 0..keys {
        db.put(key_of(i * 7919 % keys), VALUE).unwrap();
    }
    db
}

fn point_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    for depth in ["memtable", "l0", "last_level"] {
        let dir = tempfile::tempdir_in(".").unwrap();
        let db = fill(dir.path(), KEYS);
        match depth {
            "l0" => db.flush().unwrap(),
            "last_level" => db.compact_range(None, None).unwrap(),
            _ => {}
        }
        let mut rng = Rng(11);
        g.bench_function(depth, |b| {
            b.iter(|| black_box(db.get(key_of(rng.below(KEYS))).unwrap()));
        });
        db.close().unwrap();
    }
    g.finish();
}

fn iterator(c: &mut Criterion) {
    let mut g = c.benchmark_group("iterator");
    g.throughput(Throughput::Elements(1));
    // The last level alone (every table compacted into one sorted run), and
    // the memtable alone: a scan or seek over recent writes walks the
    // skiplist, whose costs differ from a table's.
    for depth in ["last_level", "memtable"] {
        let dir = tempfile::tempdir_in(".").unwrap();
        let db = if depth == "last_level" {
            let db = fill(dir.path(), KEYS);
            db.compact_range(None, None).unwrap();
            db
        } else {
            fill_shuffled(dir.path(), KEYS)
        };
        let suffix = if depth == "memtable" { "_memtable" } else { "" };
        iterate(&mut g, &db, suffix);
        db.close().unwrap();
    }
    g.finish();
}

fn iterate(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    db: &Db,
    suffix: &str,
) {
    g.bench_function(format!("step{suffix}"), |b| {
        b.iter_custom(|iters| {
            let mut left = iters;
            let start = Instant::now();
            while left > 0 {
                let n = left.min(KEYS);
                for kv in db.iter(IterOptions::new()).take(n as usize) {
                    black_box(kv.unwrap());
                }
                left -= n;
            }
            start.elapsed()
        });
    });
    let mut rng = Rng(13);
    g.bench_function(format!("seek_and_next_10{suffix}"), |b| {
        b.iter(|| {
            let mut it = db.iter(IterOptions::new());
            it.seek(&key_of(rng.below(KEYS)));
            black_box(it.take(10).count())
        });
    });
}

fn wal(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let fs = StdFs::default();
    let mut g = c.benchmark_group("wal");
    // A write group of one 16 + 100 byte put: one record, handed to the OS.
    let record = [7u8; 130];
    g.throughput(Throughput::Bytes(record.len() as u64));
    g.bench_function("append_and_flush_130b", |b| {
        let mut log = LogWriter::new(fs.create(&dir.path().join("wal")).unwrap());
        b.iter(|| {
            log.add_record(&record).unwrap();
            log.flush().unwrap();
        });
    });
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_commit");
    g.throughput(Throughput::Elements(1));
    for writers in [1u64, 4, 16] {
        let dir = tempfile::tempdir_in(".").unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        g.bench_with_input(BenchmarkId::new("writers", writers), &writers, |b, &w| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(w);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..w {
                        let db = &db;
                        s.spawn(move || {
                            let mut rng = Rng(t);
                            for _ in 0..per {
                                db.put(key_of(rng.below(KEYS)), VALUE).unwrap();
                            }
                        });
                    }
                });
                start.elapsed()
            });
        });
        db.close().unwrap();
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = memtable, block, bloom, point_get, iterator, wal, group_commit
}
criterion_main!(benches);
