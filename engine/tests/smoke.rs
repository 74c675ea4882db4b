//! Basic end-to-end behaviour of the public API on the real and in-memory
//! file systems.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]
use cairn_engine::{Db, IterOptions, MemFs, Options, WriteBatch, WriteOptions};
use std::sync::Arc;

fn small_opts(fs: MemFs) -> Options {
    Options {
        fs: Arc::new(fs),
        write_buffer_bytes: 64 << 10,
        target_file_size_bytes: 64 << 10,
        max_bytes_for_level_base: 256 << 10,
        block_cache_bytes: 1 << 20,
        ..Options::default()
    }
}

#[test]
fn put_get_delete_survive_flush_compaction_and_reopen() {
    // The basic contract across every layer: memtable, L0, deeper levels, WAL replay.
    let fs = MemFs::new();
    let db = Db::open("/db", small_opts(fs.clone())).unwrap();
    for i in 0..5000u32 {
        db.put(format!("key{i:05}"), format!("value{i}")).unwrap();
    }
    for i in (0..5000u32).step_by(3) {
        db.delete(format!("key{i:05}")).unwrap();
    }
    db.delete_range("key01000", "key02000").unwrap();
    db.flush().unwrap();
    db.compact_range(None, None).unwrap();
    for i in 5000..5100u32 {
        db.put(format!("key{i:05}"), format!("value{i}")).unwrap();
    }
    let check = |db: &Db| {
        for i in 0..5100u32 {
            let want = if i % 3 == 0 && i < 5000 || (1000..2000).contains(&i) {
                None
            } else {
                Some(format!("value{i}").into_bytes())
            };
            assert_eq!(db.get(format!("key{i:05}")).unwrap(), want, "key{i:05}");
        }
        let n = db.iter(IterOptions::new()).count();
        let expected = (0..5100u32)
            .filter(|i| !(i % 3 == 0 && *i < 5000 || (1000..2000).contains(i)))
            .count();
        assert_eq!(n, expected);
        let rev: Vec<_> = db
            .iter(IterOptions::new().reversed())
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(rev.len(), expected);
        assert!(rev.windows(2).all(|w| w[0] > w[1]));
    };
    check(&db);
    db.close().unwrap();
    drop(db);
    let db = Db::open("/db", small_opts(fs)).unwrap();
    check(&db);
    let stats = db.stats();
    assert!(
        stats.levels.iter().skip(1).any(|l| l.files > 0),
        "{stats:?}"
    );
}

#[test]
fn snapshot_reads_ignore_later_writes() {
    // A snapshot is a fixed view: later puts, deletes and compactions do not change it.
    let db = Db::open("/db", small_opts(MemFs::new())).unwrap();
    db.put("a", "1").unwrap();
    let snap = db.snapshot();
    db.put("a", "2").unwrap();
    db.delete("a").unwrap();
    db.compact_range(None, None).unwrap();
    assert_eq!(db.get_at("a", &snap).unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get("a").unwrap(), None);
    let mut b = WriteBatch::new();
    b.put("x", "y");
    db.write(
        b,
        WriteOptions {
            sync: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(db.iter_at(IterOptions::new(), &snap).count(), 1);
}

#[test]
fn real_file_system_roundtrip() {
    // StdFs with mmap reads: the default configuration users get.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.put("hello", "world").unwrap();
    db.flush().unwrap();
    assert_eq!(db.get("hello").unwrap(), Some(b"world".to_vec()));
    drop(db);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("hello").unwrap(), Some(b"world".to_vec()));
}

/// Sizes (apparent, allocated) of the `.log` files in `dir`.
fn wal_sizes(dir: &std::path::Path) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut sizes: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (m.len(), m.blocks() * 512)
        })
        .collect();
    sizes.sort();
    sizes
}

#[test]
fn the_wal_is_reserved_ahead_on_disk_and_trimmed_when_sealed() {
    // A new WAL is extended (sparsely) to about a memtable's size, so an
    // fsync inside it need not record a new file size; only the window the
    // appends are mapped through gets blocks ahead of them (1 MiB); sealing
    // at close cuts it back, and the reserved zeros are never reported as
    // damage.
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options {
        write_buffer_bytes: 8 << 20,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts()).unwrap();
    for i in 0..100u32 {
        db.put(format!("key{i:03}"), [b'v'; 100]).unwrap();
    }
    let sizes = wal_sizes(dir.path());
    assert_eq!(sizes.len(), 1, "{sizes:?}");
    let (apparent, allocated) = sizes[0];
    assert_eq!(apparent, (8 << 20) + (1 << 20), "reserved size");
    assert!(allocated <= 1 << 20, "reserved sparsely: {sizes:?}");
    db.close().unwrap();
    drop(db);
    let sizes = wal_sizes(dir.path());
    assert!(sizes.iter().all(|&(len, _)| len < 64 << 10), "{sizes:?}");

    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(db.recovery_report().torn_tails.is_empty());
    assert_eq!(db.get("key042").unwrap(), Some(vec![b'v'; 100]));
}
