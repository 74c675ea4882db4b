//! Memory and space bounds: the engine's own accounting stays within the
//! configured budget, the process does not grow with the data written, and
//! deleted data's table space comes back after compaction.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]
use cairn_engine::{Db, MemFs, Options, ReadMode, StdFs};
use std::sync::{Arc, Mutex, MutexGuard};

/// The tests in this file run one at a time: the RSS test measures the
/// whole process, so another test allocating meanwhile would skew it.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The budget the brief's load runs under: 3 x 256 KiB memtables, 1 MiB of
/// blocks, 512 KiB of indexes and filters.
fn budget_opts(fs: Arc<dyn cairn_engine::FileSystem>) -> Options {
    Options {
        fs,
        write_buffer_bytes: 256 << 10,
        max_memtables: 3,
        block_cache_bytes: 1 << 20,
        table_cache_bytes: 512 << 10,
        target_file_size_bytes: 256 << 10,
        max_bytes_for_level_base: 1 << 20,
        ..Options::default()
    }
}

/// splitmix64: random keys that are the same every run.
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

const KEY_SPACE: u64 = 1 << 20;

fn key(i: u64) -> String {
    format!("key-{i:010}")
}

/// 100 pseudo-random bytes per key: lz4 cannot shrink them, so table
/// bytes track the data.
fn value(i: u64) -> Vec<u8> {
    let mut rng = Rng(i);
    (0..100).map(|_| rng.below(256) as u8).collect()
}

/// Random puts of 100-byte values, with a random get after every few, so
/// memtables fill and switch and the block cache fills and evicts. Calls
/// `sample` every `sample_every` puts.
fn random_load(db: &Db, puts: u64, seed: u64, sample_every: u64, mut sample: impl FnMut(u64)) {
    let mut rng = Rng(seed);
    for n in 1..=puts {
        let i = rng.below(KEY_SPACE);
        db.put(key(i), value(i)).unwrap();
        if n % 4 == 0 {
            let j = rng.below(KEY_SPACE);
            if let Some(v) = db.get(key(j)).unwrap() {
                assert_eq!(v, value(j), "{}", key(j));
            }
        }
        if n % sample_every == 0 {
            sample(n);
        }
    }
}

#[test]
fn engine_memory_stays_within_budget_under_random_writes() {
    // memory_bytes() (memtables + block cache + indexes and filters) never
    // exceeds memory_budget_bytes() while a random write and read load runs.
    let _serial = serial();
    let opts = budget_opts(Arc::new(MemFs::new()));
    let budget = opts.memory_budget_bytes() as u64;
    let db = Db::open("/db", opts).unwrap();
    let mut peak = cairn_engine::Stats::default();
    random_load(&db, 250_000, 1, 500, |n| {
        let s = db.stats();
        assert!(
            s.memory_bytes() <= budget,
            "after {n} puts: {} bytes held, budget {budget}: {s:?}",
            s.memory_bytes()
        );
        peak.memtable_bytes = peak.memtable_bytes.max(s.memtable_bytes);
        peak.block_cache_bytes = peak.block_cache_bytes.max(s.block_cache_bytes);
        peak.table_cache_bytes = peak.table_cache_bytes.max(s.table_cache_bytes);
    });
    // The check means something only if each part was really under pressure.
    assert!(peak.memtable_bytes > 256 << 10, "{peak:?}");
    assert!(peak.block_cache_bytes > 512 << 10, "{peak:?}");
    assert!(peak.table_cache_bytes > 0, "{peak:?}");
    assert!(db.stats().levels.iter().skip(1).any(|l| l.files > 0));
}

/// Anonymous resident memory of this process, from /proc/self/status.
/// Anonymous only: a real file system's page cache and mappings are not
/// the engine's heap.
fn rss_anon_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

#[test]
fn process_memory_does_not_grow_with_data_written() {
    // After warm-up, anonymous RSS stays flat while five times more data is
    // written: nothing (memtables, blocks, tables, versions) leaks per write.
    let Some(_) = rss_anon_bytes() else {
        eprintln!("no RssAnon in /proc/self/status: skipping the RSS check");
        return;
    };
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // pread, not mmap: blocks then go through the block cache (heap) rather
    // than being decoded from a mapping.
    let opts = budget_opts(Arc::new(StdFs::new(ReadMode::Pread)));
    let db = Db::open(dir.path(), opts).unwrap();
    let mut warm = 0;
    let mut peak = 0;
    random_load(&db, 300_000, 2, 10_000, |n| {
        let rss = rss_anon_bytes().unwrap();
        if n == 50_000 {
            warm = rss;
        }
        peak = peak.max(rss);
    });
    db.wait_for_background().unwrap();
    let end = rss_anon_bytes().unwrap();
    // The budget is ~2.3 MiB; allocator slack and thread stacks get the
    // rest of a generous margin. Writing 250k more puts (~30 MiB of keys
    // and values) must not show up here.
    let margin = 16 << 20;
    assert!(
        end <= warm + margin,
        "RssAnon grew from {warm} after warm-up to {end} (peak {peak})"
    );
}

/// Writes `n` keys and compacts them into tables; returns their bytes.
fn fill_and_compact(db: &Db, n: u64) -> u64 {
    for i in 0..n {
        db.put(key(i), value(i)).unwrap();
    }
    db.compact_range(None, None).unwrap();
    let bytes = db.stats().table_bytes();
    assert!(bytes > n * 50, "{n} keys should take table space: {bytes}");
    bytes
}

fn small_opts(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 64 << 10,
        target_file_size_bytes: 64 << 10,
        max_bytes_for_level_base: 256 << 10,
        ..Options::default()
    }
}

#[test]
fn deleted_keys_space_comes_back_after_compaction() {
    // Point deletes of every key, compacted, leave (almost) no table bytes:
    // neither the values nor the tombstones are kept once nothing needs them.
    let _serial = serial();
    let db = Db::open("/db", small_opts(&MemFs::new())).unwrap();
    let before = fill_and_compact(&db, 20_000);
    for i in 0..20_000 {
        db.delete(key(i)).unwrap();
    }
    db.compact_range(None, None).unwrap();
    let s = db.stats();
    assert!(
        s.table_bytes() < before / 100,
        "{} of {before} table bytes left: {s:?}",
        s.table_bytes()
    );
}

#[test]
fn range_deleted_keys_space_comes_back_after_compaction() {
    // One range delete over every key, compacted, leaves (almost) no table
    // bytes, and the tombstone itself goes once nothing older is left under it.
    let _serial = serial();
    let db = Db::open("/db", small_opts(&MemFs::new())).unwrap();
    let before = fill_and_compact(&db, 20_000);
    db.delete_range(key(0), key(20_000)).unwrap();
    db.compact_range(None, None).unwrap();
    let s = db.stats();
    assert!(
        s.table_bytes() < before / 100,
        "{} of {before} table bytes left: {s:?}",
        s.table_bytes()
    );
    assert_eq!(s.range_tombstones, 0, "{s:?}");
}
