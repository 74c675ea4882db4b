//! The seed corpora, made from real engine output: a WAL, tables, a
//! manifest and blocks written by the engine itself, so every target
//! starts from well-formed files and mutates from there.
//! `engine/tests/fuzz_corpus.rs` writes them to `fuzz/corpus/` (an ignored
//! test, run by hand when a format changes).

use super::{DIR, FIX_CHECKSUMS, PREAD, small_options};
use crate::fs::{FileSystem, MemFs};
use crate::key::{ValueKind, make_internal_key};
use crate::options::Compression;
use crate::table::block_builder::BlockBuilder;
use crate::table::filter::FilterBuilder;
use crate::{Db, Options, Result, WriteBatch, WriteOptions};
use std::path::Path;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// Every seed of every target.
pub fn seed_corpora() -> Result<Vec<Seed>> {
    let mut seeds = Vec::new();
    files_seeds(&mut seeds, Compression::Lz4, 10, "lz4")?;
    files_seeds(&mut seeds, Compression::None, 0, "plain")?;
    block_seeds(&mut seeds);
    bloom_seeds(&mut seeds);
    ops_seeds(&mut seeds);
    Ok(seeds)
}

fn with_flags(flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(bytes);
    out
}

/// Writes a small database and takes its WAL, its first table and its
/// manifest as they are on disk.
fn files_seeds(
    seeds: &mut Vec<Seed>,
    compression: Compression,
    bloom: usize,
    tag: &str,
) -> Result<()> {
    let fs = MemFs::new();
    let opts = Options {
        compression,
        bloom_bits_per_key: bloom,
        write_buffer_bytes: 64 << 10,
        ..small_options(&fs)
    };
    let db = Db::open(DIR, opts)?;
    for i in 0..40u32 {
        let mut b = WriteBatch::new();
        b.put(
            format!("key{:03}", i % 29),
            format!("value-{i}-{}", "x".repeat((i % 7) as usize * 9)),
        );
        if i % 5 == 0 {
            b.delete(format!("key{:03}", i % 11));
        }
        if i % 13 == 0 {
            b.delete_range(format!("key{:03}", i % 17), format!("key{:03}", i % 17 + 3));
        }
        db.write(
            b,
            WriteOptions {
                sync: i % 4 == 0,
                disable_wal: false,
            },
        )?;
        if i == 19 {
            db.flush()?;
        }
    }
    let dir = Path::new(DIR);
    let names = fs.list(dir).map_err(|e| crate::Error::io("list", dir, e))?;
    let file = |suffix: &str| {
        names
            .iter()
            .filter(|n| n.ends_with(suffix) || n.starts_with(suffix))
            .filter_map(|n| fs.file_bytes(&dir.join(n)))
            .max_by_key(Vec::len)
            .unwrap_or_default()
    };
    let (wal, table, manifest) = (file(".log"), file(".sst"), file("MANIFEST-"));
    seeds.push((
        "wal_reader",
        format!("seed-{tag}-wal"),
        with_flags(FIX_CHECKSUMS, &wal),
    ));
    seeds.push((
        "wal_reader",
        format!("seed-{tag}-wal-raw"),
        with_flags(0, &wal),
    ));
    seeds.push((
        "sstable",
        format!("seed-{tag}-table"),
        with_flags(FIX_CHECKSUMS, &table),
    ));
    seeds.push((
        "sstable",
        format!("seed-{tag}-table-pread"),
        with_flags(FIX_CHECKSUMS | PREAD, &table),
    ));
    seeds.push((
        "manifest",
        format!("seed-{tag}-manifest"),
        with_flags(FIX_CHECKSUMS, &manifest),
    ));
    // A record that spans blocks (FIRST, MIDDLE, LAST fragments).
    if compression == Compression::Lz4 {
        db.put("big", vec![b'b'; 33_000])?;
        let wal = file(".log");
        seeds.push((
            "wal_reader",
            "seed-spanning-wal".into(),
            with_flags(FIX_CHECKSUMS, &wal),
        ));
    }
    db.close()
}

fn block_seeds(seeds: &mut Vec<Seed>) {
    for (name, interval, n) in [
        ("seed-data-block", 4, 24u64),
        ("seed-index-block", 1, 6),
        ("seed-empty-block", 16, 0),
    ] {
        let mut b = BlockBuilder::new(interval);
        for i in 0..n {
            let k = make_internal_key(
                format!("user{:02}", i / 2).as_bytes(),
                100 - i,
                ValueKind::Value,
            );
            b.add(&k, format!("v{i}").as_bytes());
        }
        seeds.push(("block", name.to_string(), b.finish()));
    }
}

fn bloom_seeds(seeds: &mut Vec<Seed>) {
    for (name, bits, n) in [("seed-bloom-10", 10, 40), ("seed-bloom-3", 3, 12)] {
        let mut f = FilterBuilder::new(bits);
        let keys: Vec<String> = (0..n).map(|i| format!("key{i:03}")).collect();
        for k in &keys {
            f.add_key(k.as_bytes());
        }
        let filter = f.finish();
        let mut input = (filter.len() as u16).to_le_bytes().to_vec();
        input.extend_from_slice(&filter);
        for k in keys.iter().take(8) {
            input.extend_from_slice(k.as_bytes());
            input.push(0);
        }
        input.extend_from_slice(b"absent");
        seeds.push(("bloom", name.to_string(), input));
    }
}

/// Hand-written programs (opcodes in `ops.rs`).
fn ops_seeds(seeds: &mut Vec<Seed>) {
    let puts: Vec<u8> = (0..40u8)
        .flat_map(|i| [i % 12, i, i.wrapping_mul(7)])
        .collect();
    let mut program = puts.clone();
    program.extend_from_slice(&[12, 3, 9, 19, 21, 23, 0, 26, 0, 1, 23, 4]);
    seeds.push(("ops", "seed-puts-flush-crash".into(), program));
    let mut program = puts.clone();
    program.extend_from_slice(&[28, 2, 0, 12, 5, 5, 0, 1, 1, 24, 5, 25, 0, 23, 0]);
    seeds.push(("ops", "seed-sync-fault".into(), program));
    let mut program = puts.clone();
    program.extend_from_slice(&[
        16, 2, 9, 1, 17, 0x85, 2, 3, 1, 4, 5, 6, 20, 3, 1, 20, 27, 2, 7, 22, 0, 0, 0,
    ]);
    program.extend_from_slice(&puts);
    program.extend_from_slice(&[31, 3, 0, 1, 2, 26, 3, 9]);
    seeds.push(("ops", "seed-range-batch-compact-full".into(), program));
}
