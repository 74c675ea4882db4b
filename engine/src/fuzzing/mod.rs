//! Entry points for the fuzz targets in `fuzz/` and for the test that
//! replays their committed corpora (`engine/tests/fuzz_corpus.rs`).
//! Compiled only with the `fuzzing` feature; not part of the engine's API.
//!
//! Each `*_target` function takes the fuzzer's bytes as they are and must
//! never panic, hang or allocate more than a small multiple of its input,
//! whatever the bytes. A panic here is a bug: either in the engine (bad
//! bytes made it crash or answer wrongly) or in an invariant this module
//! checks (named in the panic message).
//!
//! Inputs whose bytes are a file (WAL, table, manifest) start with one flag
//! byte; bit 0 asks for the file's checksums to be recomputed before it is
//! read (`checksums.rs`), so mutations reach the decoders behind the
//! checksums instead of all dying at the first crc32. The targets:
//!
//! | target | input |
//! | --- | --- |
//! | [`wal_target`] | flags, WAL file bytes: replayed, batches decoded into a memtable, then opened as a database |
//! | [`sstable_target`] | flags, table file bytes: opened, every entry read both ways, point gets |
//! | [`block_target`] | a block's decoded contents: restart array, iteration both ways, seeks by keys and through fences |
//! | [`bloom_target`] | a filter block's contents, then user keys to probe |
//! | [`manifest_target`] | flags, manifest bytes: edits decoded, `VersionSet` recovered, rewritten, recovered again |
//! | [`ops_target`] | a program of engine operations, crashes and faults, checked against a model (`ops.rs`) |

#![doc(hidden)]

mod checksums;
mod ops;
mod seeds;

pub use checksums::{fix_record_log_checksums, fix_table_checksums};
pub use ops::ops_target;
pub use seeds::{Seed, seed_corpora};

use crate::batch::{BatchOps, check_sequence_order};
use crate::error::{Error, Result};
use crate::fs::{FileSystem, MemFs, RandomAccessFile};
use crate::iter::{Direction, InternalIterator};
use crate::key::{self, compare_internal};
use crate::log::replay;
use crate::memtable::MemTable;
use crate::options::{Options, WalRecovery};
use crate::table::block::{Block, BlockIter};
use crate::table::{BlockCache, Table, filter};
use crate::version::edit::VersionEdit;
use crate::version::set::VersionSet;
use crate::{Db, IterOptions};
use std::cmp::Ordering;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the file-based targets put their files in their `MemFs`.
const DIR: &str = "/db";
/// Flag bit: recompute the file's checksums before reading it.
const FIX_CHECKSUMS: u8 = 1;
/// Flag bit (sstable): read through `read_exact_at` instead of a slice.
const PREAD: u8 = 2;
/// Block cache of the table target: small, so eviction happens.
const BLOCK_CACHE_BYTES: usize = 16 << 10;
/// Inputs longer than this are cut: enough for every structure (a WAL
/// record spanning blocks, a table with many blocks) and it keeps one run
/// fast.
const MAX_INPUT_BYTES: usize = 256 << 10;

/// Splits off the flag byte and applies bit 0 with `fix`.
fn file_input(data: &[u8], fix: impl Fn(&mut Vec<u8>)) -> (u8, Vec<u8>) {
    let Some((&flags, rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut bytes = rest.get(..MAX_INPUT_BYTES).unwrap_or(rest).to_vec();
    if flags & FIX_CHECKSUMS != 0 {
        fix(&mut bytes);
    }
    (flags, bytes)
}

/// WAL: replay in both recovery modes, decode every batch into a memtable
/// as recovery does, then open a database whose only file is this WAL and
/// read everything back.
pub fn wal_target(data: &[u8]) {
    let (_, wal) = file_input(data, |b| fix_record_log_checksums(b));
    for mode in [WalRecovery::PointInTime, WalRecovery::Salvage] {
        let _ = replay_wal(&wal, mode);
    }
    let _ = open_wal(&wal);
}

/// Replays `wal` and applies each batch to a memtable, as `Db::open` does.
pub fn replay_wal(wal: &[u8], mode: WalRecovery) -> Result<u64> {
    let path = Path::new("/db/000001.log");
    let mem = MemTable::new(1);
    let mut entries = 0;
    let mut replayed_end = 0;
    replay(wal, path, mode, |offset, payload| {
        let ops = BatchOps::new(payload).map_err(|e| Error::corruption(path, offset, e))?;
        check_sequence_order(replayed_end, ops.base_seq)
            .map_err(|e| Error::corruption(path, offset, e))?;
        replayed_end = ops.base_seq + ops.entries();
        for (seq, op) in (ops.base_seq..).zip(ops) {
            let op = op.map_err(|e| Error::corruption(path, offset, e))?;
            mem.add(seq, op.kind, op.key, op.value);
            entries += 1;
        }
        Ok(())
    })?;
    Ok(entries)
}

/// Options for databases the targets open: small buffers, so a fuzz input
/// of a few KiB already flushes and compacts.
pub(crate) fn small_options(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 4096,
        block_size_bytes: 256,
        block_cache_bytes: 64 << 10,
        table_cache_bytes: 256 << 10,
        target_file_size_bytes: 8 << 10,
        max_bytes_for_level_base: 16 << 10,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 8,
        l0_stop_trigger: 12,
        slowdown_delay_ms: 0,
        background_threads: 1,
        // Manual compactions split in three, so the model checks the pieces.
        max_subcompactions: 3,
        // A timer would make runs unrepeatable; tests/compaction.rs covers it.
        idle_compaction_ms: 0,
        max_manifest_bytes: 2048,
        ..Options::default()
    }
}

/// Opens a database whose directory holds only `wal` and reads it whole,
/// both ways; iteration and point lookups must agree.
pub fn open_wal(wal: &[u8]) -> Result<()> {
    let fs = MemFs::new();
    fs.write_file_bytes(&Path::new(DIR).join("000001.log"), wal.to_vec());
    let db = Db::open(DIR, small_options(&fs))?;
    let forward: Vec<(Vec<u8>, Vec<u8>)> = db.iter(IterOptions::new()).collect::<Result<_>>()?;
    let mut reverse: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter(IterOptions::new().reversed())
        .collect::<Result<_>>()?;
    reverse.reverse();
    assert_eq!(forward, reverse, "reverse iteration disagrees with forward");
    for pair in forward.windows(2) {
        if let [(a, _), (b, _)] = pair {
            assert!(a < b, "iteration out of order");
        }
    }
    for (k, v) in &forward {
        assert_eq!(db.get(k)?.as_ref(), Some(v), "get disagrees with iteration");
    }
    db.close()
}

/// A file that offers no slice, so the table reader takes its
/// `read_exact_at` (pread) path.
struct NoSlice(Arc<dyn RandomAccessFile>);

impl RandomAccessFile for NoSlice {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(offset, buf)
    }
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
}

/// Table: open, read every entry forward and in reverse, look up each key
/// read and a few that are not there.
pub fn sstable_target(data: &[u8]) {
    let (flags, table) = file_input(data, |b| fix_table_checksums(b));
    let _ = read_table(&table, flags & PREAD != 0);
}

/// Opens `bytes` as table 1 and reads it whole. Checks what holds for any
/// table, however corrupt: reverse iteration is forward reversed, and a
/// point lookup returns only entries iteration also returns.
pub fn read_table(bytes: &[u8], pread: bool) -> Result<()> {
    let fs = MemFs::new();
    let path = PathBuf::from("/db/000001.sst");
    fs.write_file_bytes(&path, bytes.to_vec());
    let file = fs
        .open_random(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    let file: Arc<dyn RandomAccessFile> = if pread { Arc::new(NoSlice(file)) } else { file };
    let cache = Arc::new(BlockCache::new(BLOCK_CACHE_BYTES, usize::MAX));
    let table = Arc::new(Table::open(file, path, 1, cache)?);
    let forward = collect(&mut table.iter(Direction::Forward, true));
    let reverse = collect(&mut table.iter(Direction::Reverse, false));
    let (forward, reverse) = (forward?, reverse);
    if let Ok(mut reverse) = reverse {
        reverse.reverse();
        assert_eq!(
            forward, reverse,
            "reverse table iteration disagrees with forward"
        );
    }
    let mut probes: Vec<Vec<u8>> = forward.iter().map(|(k, _)| k.clone()).collect();
    probes.push(key::lookup_key(b"", key::MAX_SEQUENCE));
    probes.push(key::lookup_key(b"\xff\xff\xff", 0));
    for ikey in probes.iter().take(256) {
        let user_key = key::user_key(ikey);
        let lookup = key::lookup_key(user_key, key::MAX_SEQUENCE);
        if let Some(found) = table.get(&lookup)? {
            assert!(
                forward.contains(&found),
                "get returned an entry that iteration never did"
            );
        }
        let mut it = table.iter(Direction::Forward, true);
        it.seek(ikey);
        let mut it = table.iter(Direction::Reverse, true);
        it.seek(ikey);
    }
    Ok(())
}

fn collect(it: &mut dyn InternalIterator) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    it.seek_to_first();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// Block: validate, iterate both ways, seek to every key found and to a
/// few absent ones. Reverse iteration must be forward reversed, and a seek
/// must land on an entry iteration returns.
pub fn block_target(data: &[u8]) {
    let data = data.get(..MAX_INPUT_BYTES).unwrap_or(data);
    let Ok(block) = Block::new(data.to_vec()) else {
        return;
    };
    let block = Arc::new(block);
    // The same bytes as an index block, searched through fences.
    let Ok(fenced) = Block::with_fences(data.to_vec()) else {
        panic!("with_fences rejects a block that new accepts");
    };
    let fenced = Arc::new(fenced);
    let mut it = BlockIter::new(Arc::clone(&block));
    let mut forward = Vec::new();
    it.seek_to_first();
    while it.valid() {
        forward.push((it.key().to_vec(), it.value().to_vec()));
        it.next();
    }
    let forward_ok = it.error().is_none();
    let mut reverse = Vec::new();
    let mut it = BlockIter::new(Arc::clone(&block));
    it.seek_to_last();
    while it.valid() {
        reverse.push((it.key().to_vec(), it.value().to_vec()));
        it.prev();
    }
    if forward_ok {
        assert_eq!(
            it.error(),
            None,
            "reverse block iteration fails where forward did not"
        );
        reverse.reverse();
        assert_eq!(
            forward, reverse,
            "reverse block iteration disagrees with forward"
        );
    }
    let sorted = forward
        .windows(2)
        .all(|w| matches!(w, [(a, _), (b, _)] if compare_internal(a, b) == Ordering::Less));
    let mut targets: Vec<Vec<u8>> = forward.iter().map(|(k, _)| k.clone()).collect();
    targets.push(Vec::new());
    targets.push(vec![0xff; 9]);
    for target in targets.iter().take(256) {
        let mut ge = BlockIter::new(Arc::clone(&block));
        ge.seek_ge(target);
        let mut le = BlockIter::new(Arc::clone(&block));
        le.seek_le(target);
        let mut fenced_ge = BlockIter::new(Arc::clone(&fenced));
        fenced_ge.seek_ge(target);
        let mut fenced_le = BlockIter::new(Arc::clone(&fenced));
        fenced_le.seek_le(target);
        if !(forward_ok && sorted) {
            continue;
        }
        let first_ge = forward
            .iter()
            .find(|(k, _)| compare_internal(k, target) != Ordering::Less);
        let last_le = forward
            .iter()
            .rev()
            .find(|(k, _)| compare_internal(k, target) != Ordering::Greater);
        assert_eq!(
            current(&ge).as_ref(),
            first_ge,
            "seek_ge found the wrong entry"
        );
        assert_eq!(
            current(&le).as_ref(),
            last_le,
            "seek_le found the wrong entry"
        );
        assert_eq!(
            current(&fenced_ge).as_ref(),
            first_ge,
            "seek_ge through fences found the wrong entry"
        );
        assert_eq!(
            current(&fenced_le).as_ref(),
            last_le,
            "seek_le through fences found the wrong entry"
        );
    }
}

fn current(it: &BlockIter) -> Option<(Vec<u8>, Vec<u8>)> {
    it.valid().then(|| (it.key().to_vec(), it.value().to_vec()))
}

/// Bloom filter: input is `filter_len u16 LE | filter | keys`, keys
/// separated by 0 bytes. An invalid filter must answer "maybe" (never a
/// false negative); a valid one is probed with each key, and a filter
/// built from those keys must contain every one of them.
pub fn bloom_target(data: &[u8]) {
    let (len, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return,
    };
    let (filter_bytes, keys) = rest.split_at(len.min(rest.len()));
    let valid = filter::validate(filter_bytes).is_ok();
    let keys: Vec<&[u8]> = keys.split(|&b| b == 0).take(1024).collect();
    for k in &keys {
        let maybe = filter::may_contain(filter_bytes, k);
        assert!(valid || maybe, "an invalid filter ruled a key out");
    }
    let bits_per_key = filter_bytes
        .first()
        .map_or(10, |&b| usize::from(b % 32) + 1);
    let mut builder = filter::FilterBuilder::new(bits_per_key);
    for k in &keys {
        builder.add_key(k);
    }
    let built = builder.finish();
    assert_eq!(
        filter::validate(&built),
        Ok(()),
        "a built filter fails validation"
    );
    for k in &keys {
        assert!(
            filter::may_contain(&built, k),
            "bloom filter false negative"
        );
    }
}

/// Manifest: decode every edit (each must re-encode to itself), recover a
/// `VersionSet` from it, write the recovered state as a new manifest and
/// recover again: the second recovery must give the same state.
pub fn manifest_target(data: &[u8]) {
    let (flags, manifest) = file_input(data, |b| fix_record_log_checksums(b));
    let _ = replay(
        &manifest,
        Path::new("MANIFEST"),
        WalRecovery::Salvage,
        |_, payload| {
            if let Ok(edit) = VersionEdit::decode(payload) {
                assert_eq!(
                    VersionEdit::decode(&edit.encode()).as_ref(),
                    Ok(&edit),
                    "a version edit does not survive re-encoding"
                );
            }
            Ok(())
        },
    );
    let current: &[u8] = match (flags >> 1) & 3 {
        0 | 1 => b"MANIFEST-000005\n",
        2 => b"MANIFEST-000005",
        _ => b"MANIFEST-000009\n",
    };
    let _ = recover_manifest(&manifest, current);
    let _ = open_manifest(&manifest, current);
}

type TableEntry = (usize, u64, u64, Vec<u8>, Vec<u8>, u64, u64);

/// What a recovered `VersionSet` holds, for comparing two recoveries.
#[derive(Debug, PartialEq, Eq)]
struct Recovered {
    /// (level, number, size, smallest, largest, smallest_seq, largest_seq)
    files: Vec<TableEntry>,
    tombstones: Vec<(u64, Vec<u8>, Vec<u8>)>,
    log_number: u64,
    last_sequence: u64,
}

fn summarize(set: &VersionSet) -> Recovered {
    let v = set.current();
    Recovered {
        files: v
            .all_files()
            .map(|(level, f)| {
                (
                    level,
                    f.number,
                    f.size,
                    f.smallest.clone(),
                    f.largest.clone(),
                    f.smallest_seq,
                    f.largest_seq,
                )
            })
            .collect(),
        tombstones: v
            .range_tombstones
            .iter()
            .map(|t| (t.seq, t.start.clone(), t.end.clone()))
            .collect(),
        log_number: set.log_number(),
        last_sequence: set.last_sequence(),
    }
}

/// Opens a database whose directory holds only `manifest` and `CURRENT`
/// (its tables are missing: reads of them fail, cleanly), lets background
/// work (compaction picking over the manifest's table sizes and ranges)
/// run, and reads everything.
pub fn open_manifest(manifest: &[u8], current: &[u8]) -> Result<()> {
    let fs = MemFs::new();
    let dir = Path::new(DIR);
    fs.write_file_bytes(&dir.join("MANIFEST-000005"), manifest.to_vec());
    fs.write_file_bytes(&dir.join("CURRENT"), current.to_vec());
    let db = Db::open(DIR, small_options(&fs))?;
    let _ = db.wait_for_background();
    let _ = db.iter(IterOptions::new()).count();
    let _ = db.get(b"key");
    db.close()
}

/// Recovers from a directory holding `manifest` as `MANIFEST-000005` and
/// `current` as `CURRENT`; on success rewrites and recovers again.
pub fn recover_manifest(manifest: &[u8], current: &[u8]) -> Result<()> {
    let fs = MemFs::new();
    let dir = Path::new(DIR);
    fs.write_file_bytes(&dir.join("MANIFEST-000005"), manifest.to_vec());
    fs.write_file_bytes(&dir.join("CURRENT"), current.to_vec());
    let shared: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let num_levels = 7;
    let (mut set, _) = VersionSet::recover(dir, shared.clone(), num_levels, 1 << 20, None)?;
    set.log_and_apply(VersionEdit::default())?;
    let first = summarize(&set);
    let (again, _) = VersionSet::recover(dir, shared, num_levels, 1 << 20, None)?;
    assert_eq!(
        first,
        summarize(&again),
        "a rewritten manifest recovers differently"
    );
    Ok(())
}
