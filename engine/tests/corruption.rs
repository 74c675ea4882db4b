//! Damaged bytes on disk: a flipped table byte is reported as corruption,
//! never served as data; a torn WAL tail is cut and reported; damage that a
//! later record proves was synced fails `open` with the file and offset
//! (and salvage mode gets past it); a damaged manifest or `CURRENT` fails
//! `open`; files nothing references are removed at open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

mod common;

use cairn_engine::{Db, Error, FileSystem, IterOptions, MemFs, Options, WalRecovery, WriteOptions};
use common::{Model, Rng, Workload, dump, files_like, image, restore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DIR: &str = "/db";

fn opts(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 1 << 20,
        block_size_bytes: 256,
        // No table is rewritten behind a test's back before it damages it.
        idle_compaction_ms: 0,
        ..Options::default()
    }
}

fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn kv(i: u32) -> (String, String) {
    (
        format!("key{i:04}"),
        format!("value-{i}-{}", "x".repeat(i as usize % 40)),
    )
}

#[test]
fn flipped_table_byte_is_reported_never_served() {
    // Pins that every byte of a table is checksummed: a flip gives a corruption error, never wrong data.
    let fs = MemFs::new();
    let db = Db::open(DIR, opts(&fs)).unwrap();
    let n = 60;
    for i in 0..n {
        let (k, v) = kv(i);
        db.put(k, v).unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
    drop(db);
    let tables = files_like(&fs, DIR.as_ref(), ".sst");
    assert_eq!(tables.len(), 1, "{tables:?}");
    let table = path(&tables[0]);
    let size = fs.file_bytes(&table).unwrap().len() as u64;
    assert!(
        size > 500,
        "table of {size} bytes is too small to be interesting"
    );
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(kv)
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect();
    let check_error = |e: &Error, what: &str, offset: u64| {
        assert!(
            e.is_corruption(),
            "byte {offset}: {what} gave a non-corruption error: {e}"
        );
        if let Error::Corruption { path, .. } = e {
            assert_eq!(path, &table, "byte {offset}: {what} blamed the wrong file");
        }
    };
    for offset in 0..size {
        let xor = [0x01, 0x80, 0xFF, 0x10][offset as usize % 4];
        assert!(fs.corrupt_byte(&table, offset, xor));
        // A fresh open, so no block is served from a cache filled before the flip.
        let db = Db::open(DIR, opts(&fs)).unwrap();
        let mut detected = false;
        for (k, v) in &expected {
            match db.get(k) {
                Ok(got) => assert_eq!(
                    got.as_ref(),
                    Some(v),
                    "byte {offset}: get returned wrong data"
                ),
                Err(e) => {
                    check_error(&e, "get", offset);
                    detected = true;
                }
            }
        }
        match db.get("key9999") {
            Ok(got) => assert_eq!(got, None, "byte {offset}: a missing key appeared"),
            Err(e) => check_error(&e, "get of a missing key", offset),
        }
        for reverse in [false, true] {
            let opts = if reverse {
                IterOptions::new().reversed()
            } else {
                IterOptions::new()
            };
            let mut want = expected.iter();
            let mut want_rev = expected.iter().rev();
            for item in db.iter(opts) {
                match item {
                    Ok(pair) => {
                        let next = if reverse {
                            want_rev.next()
                        } else {
                            want.next()
                        };
                        assert_eq!(
                            Some(&pair),
                            next,
                            "byte {offset}: iteration returned wrong data"
                        );
                    }
                    Err(e) => {
                        check_error(&e, "iteration", offset);
                        detected = true;
                        break;
                    }
                }
            }
        }
        assert!(
            detected,
            "byte {offset} of {size}: a flipped byte went unnoticed by a full read"
        );
        drop(db);
        assert!(fs.corrupt_byte(&table, offset, xor));
    }
}

/// A disk image, the WAL's record end offsets, its name, and the writes.
type LiveWal = (Vec<(String, Vec<u8>)>, Vec<u64>, String, Vec<common::Write>);

/// Runs `writes` unsynced puts on a live database (after one synced put)
/// and returns a disk image taken mid-run, with every WAL record's end
/// offset and the WAL's name.
fn live_wal_image(writes: u64) -> LiveWal {
    let fs = MemFs::new();
    let db = Db::open(DIR, opts(&fs)).unwrap();
    let wal = files_like(&fs, DIR.as_ref(), ".log").pop().unwrap();
    let workload = Workload {
        range_deletes: false,
        ..Workload::new("k")
    };
    let mut rng = Rng::new(11);
    let mut ends = Vec::new();
    let mut all = Vec::new();
    for id in 0..writes {
        let mut w = workload.generate(&mut rng, id);
        w.sync = id == 0;
        w.apply(&db).unwrap();
        ends.push(fs.file_bytes(&path(&wal)).unwrap().len() as u64);
        all.push(w);
    }
    let img = image(&fs, DIR.as_ref());
    drop(db);
    (img, ends, wal, all)
}

#[test]
fn recovery_cuts_torn_tail() {
    // Pins point-in-time recovery: a WAL cut anywhere recovers exactly the whole records before the cut.
    let (img, ends, wal, writes) = live_wal_image(120);
    let full = ends.last().copied().unwrap();
    let mut rng = Rng::new(5);
    let mut cuts: Vec<u64> = (0..40).map(|_| rng.below(full + 1)).collect();
    cuts.extend(ends.iter().step_by(17).copied());
    for cut in cuts {
        let mut damaged = img.clone();
        for (name, bytes) in &mut damaged {
            if *name == wal {
                bytes.truncate(cut as usize);
            }
        }
        let fs = restore(&damaged, DIR.as_ref());
        let db =
            Db::open(DIR, opts(&fs)).unwrap_or_else(|e| panic!("cut at {cut}: open failed: {e}"));
        let whole = ends.iter().take_while(|&&e| e <= cut).count();
        let got = dump(&db, std::iter::empty()).unwrap();
        let mut want = Model::new();
        for w in &writes[..whole] {
            w.apply_to(&mut want);
        }
        assert_eq!(got, want, "cut at {cut}: expected exactly {whole} writes");
        let report = db.recovery_report();
        let record_end = if whole == 0 { 0 } else { ends[whole - 1] };
        if cut == record_end {
            assert!(
                report.torn_tails.is_empty(),
                "cut at a record end: {report:?}"
            );
        } else {
            let [(p, offset, bytes)] = report.torn_tails.as_slice() else {
                panic!("cut at {cut} inside a record: expected one torn tail, {report:?}");
            };
            assert_eq!(p, &path(&wal), "torn tail names the wrong file");
            assert!(
                (record_end..record_end + 7).contains(offset),
                "cut at {cut}: torn tail at {offset}, last whole record ends at {record_end}"
            );
            assert_eq!(offset + bytes, cut, "torn tail bytes");
        }
    }
}

#[test]
fn mid_wal_corruption_fails_open_with_path_and_offset() {
    // Pins that damage before a record whose watermark proves it synced is corruption, not a torn tail.
    // Write 30 is synced, so records 31.. carry a watermark past every
    // earlier record. Records of ~2 KiB make the WAL span several 32 KiB
    // blocks: salvage resumes at the next block, so only damage with a
    // whole block after it shows up as salvaged rather than as a torn tail.
    let big = |i: u32| (kv(i).0, format!("{}{}", kv(i).1, "y".repeat(2000)));
    let fs = MemFs::new();
    let db = Db::open(DIR, opts(&fs)).unwrap();
    let wal_now = files_like(&fs, DIR.as_ref(), ".log").pop().unwrap();
    let mut starts = Vec::new();
    for i in 0..40u32 {
        starts.push(fs.file_bytes(&path(&wal_now)).unwrap().len() as u64);
        let (k, v) = big(i);
        let mut b = cairn_engine::WriteBatch::new();
        b.put(k, v);
        let sync = i == 30;
        db.write(
            b,
            WriteOptions {
                sync,
                ..WriteOptions::default()
            },
        )
        .unwrap();
    }
    let img = image(&fs, DIR.as_ref());
    drop(db);
    assert!(starts[32] > 2 * 32768, "WAL too short: {starts:?}");
    for victim in [3usize, 17] {
        let mut damaged = img.clone();
        for (name, bytes) in &mut damaged {
            if *name == wal_now {
                bytes[starts[victim] as usize + 12] ^= 0x40;
            }
        }
        let fs = restore(&damaged, DIR.as_ref());
        match Db::open(DIR, opts(&fs)) {
            Err(Error::Corruption {
                path: p,
                offset,
                reason,
            }) => {
                assert_eq!(p, path(&wal_now), "{reason}");
                assert_eq!(offset, starts[victim], "{reason}");
            }
            Err(e) => panic!("record {victim}: expected corruption, got {e}"),
            Ok(db) => panic!(
                "record {victim}: open succeeded over synced damage: {:?}",
                db.recovery_report()
            ),
        }
        let db = Db::open(
            DIR,
            Options {
                wal_recovery: WalRecovery::Salvage,
                ..opts(&fs)
            },
        )
        .unwrap();
        let report = db.recovery_report();
        assert!(
            report
                .salvaged
                .iter()
                .any(|(p, off, _, _)| *p == path(&wal_now) && *off == starts[victim]),
            "record {victim}: salvage did not report the damage: {report:?}"
        );
        let got = dump(&db, std::iter::empty()).unwrap();
        assert_eq!(got.get(kv(victim as u32).0.as_bytes()), None);
        for (k, v) in &got {
            let i: u32 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
            assert_eq!(
                big(i).1.as_bytes(),
                v.as_slice(),
                "salvage returned a value never written"
            );
        }
    }
}

#[test]
fn corrupt_manifest_record_fails_open_with_manifest_path() {
    // Pins that a damaged manifest edit followed by later synced edits fails open at that edit.
    let fs = MemFs::new();
    let db = Db::open(DIR, opts(&fs)).unwrap();
    let manifest = files_like(&fs, DIR.as_ref(), "MANIFEST-").pop().unwrap();
    let mut ends = vec![fs.file_bytes(&path(&manifest)).unwrap().len() as u64];
    for round in 0..4u32 {
        for i in 0..20 {
            let (k, v) = kv(round * 20 + i);
            db.put(k, v).unwrap();
        }
        db.flush().unwrap();
        ends.push(fs.file_bytes(&path(&manifest)).unwrap().len() as u64);
    }
    assert_eq!(
        files_like(&fs, DIR.as_ref(), "MANIFEST-"),
        vec![manifest.clone()],
        "the manifest rolled"
    );
    db.close().unwrap();
    drop(db);
    // Damage the second flush's edit; the two after it prove it was synced.
    let (start, end) = (ends[1], ends[2]);
    assert!(end - start > 20, "edit of {} bytes", end - start);
    assert!(fs.corrupt_byte(&path(&manifest), (start + end) / 2, 0x20));
    match Db::open(DIR, opts(&fs)) {
        Err(Error::Corruption {
            path: p,
            offset,
            reason,
        }) => {
            assert_eq!(p, path(&manifest), "{reason}");
            assert_eq!(offset, start, "{reason}");
        }
        Err(e) => panic!("expected manifest corruption, got {e}"),
        Ok(db) => panic!("opened over a damaged manifest: {:?}", db.recovery_report()),
    }
}

/// A database with flushed tables and a WAL, closed; its model.
fn closed_db_with_tables() -> (MemFs, Model) {
    let fs = MemFs::new();
    let db = Db::open(DIR, opts(&fs)).unwrap();
    let mut model = Model::new();
    for i in 0..50 {
        let (k, v) = kv(i);
        db.put(&k, &v).unwrap();
        model.insert(k.into_bytes(), v.into_bytes());
        if i == 30 {
            db.flush().unwrap();
        }
    }
    db.close().unwrap();
    (fs, model)
}

#[test]
fn missing_current_fails_open_instead_of_starting_empty() {
    // Pins that a lost CURRENT beside live tables is an error, not a new empty database that deletes them.
    let (fs, model) = closed_db_with_tables();
    fs.remove(&path("CURRENT")).unwrap();
    let err = match Db::open(DIR, opts(&fs)) {
        Err(e) => e,
        Ok(db) => panic!(
            "opened without CURRENT: {} keys of {}, report {:?}",
            dump(&db, std::iter::empty()).unwrap().len(),
            model.len(),
            db.recovery_report()
        ),
    };
    assert!(err.to_string().contains("CURRENT"), "unclear error: {err}");
    // Nothing was deleted: with CURRENT back, everything is there.
    let manifest = files_like(&fs, DIR.as_ref(), "MANIFEST-").pop().unwrap();
    fs.write_file_bytes(&path("CURRENT"), format!("{manifest}\n").into_bytes());
    let db = Db::open(DIR, opts(&fs)).unwrap();
    assert_eq!(dump(&db, std::iter::empty()).unwrap(), model);
}

#[test]
fn garbled_current_fails_open_with_clear_error() {
    // Pins that CURRENT naming no manifest, or a missing one, fails open and says so.
    let (fs, model) = closed_db_with_tables();
    let good = fs.file_bytes(&path("CURRENT")).unwrap();
    for bad in [
        &b"garbage\xff"[..],
        b"",
        b"MANIFEST-999999\n",
        b"MANIFEST-00000x\n",
    ] {
        fs.write_file_bytes(&path("CURRENT"), bad.to_vec());
        match Db::open(DIR, opts(&fs)) {
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("CURRENT") || text.contains("MANIFEST-999999"),
                    "{bad:?}: unclear error: {text}"
                );
            }
            Ok(_) => panic!("opened with CURRENT = {bad:?}"),
        }
    }
    fs.write_file_bytes(&path("CURRENT"), good);
    let db = Db::open(DIR, opts(&fs)).unwrap();
    assert_eq!(dump(&db, std::iter::empty()).unwrap(), model);
}

#[test]
fn orphan_files_are_removed_at_open() {
    // Pins that open deletes files nothing references and reports them.
    let (fs, model) = closed_db_with_tables();
    fs.write_file_bytes(&path("000099.sst"), b"stray table".to_vec());
    fs.write_file_bytes(&path("000098.log.tmp"), b"stray temp".to_vec());
    // Open itself rewrites CURRENT.tmp and renames it over CURRENT, so a
    // stray one is consumed rather than listed; it must not survive.
    fs.write_file_bytes(&path("CURRENT.tmp"), b"MANIFEST-000123\n".to_vec());
    fs.write_file_bytes(&path("notes.txt"), b"not ours".to_vec());
    let db = Db::open(DIR, opts(&fs)).unwrap();
    assert!(
        !fs.exists(&path("CURRENT.tmp")),
        "CURRENT.tmp survived open"
    );
    let removed = &db.recovery_report().orphans_removed;
    for name in ["000099.sst", "000098.log.tmp"] {
        assert!(
            removed.iter().any(|r| r == name),
            "{name} not removed: {removed:?}"
        );
        assert!(!fs.exists(&path(name)), "{name} still there");
    }
    assert!(
        fs.exists(&path("notes.txt")),
        "open removed a file the engine did not make"
    );
    assert_eq!(dump(&db, std::iter::empty()).unwrap(), model);
}

#[test]
fn open_with_a_wal_numbered_near_the_largest_file_number_is_quick() {
    // Open used to step the file counter one by one up to the largest
    // number in the directory: a stray WAL numbered near 2^56 hung it, and
    // one near 2^64 overflowed it. Now the counter jumps there directly, and
    // a number past 2^56 is refused as corruption.
    let (fs, model) = closed_db_with_tables();
    let stray = path(&format!("{}.log", (1u64 << 56) - 1000));
    fs.write_file_bytes(&stray, Vec::new());
    let db = Db::open(DIR, opts(&fs)).unwrap();
    assert_eq!(dump(&db, model.keys().cloned()).unwrap(), model);
    db.put("after", "stray").unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    drop(db);
    let db = Db::open(DIR, opts(&fs)).unwrap();
    assert_eq!(db.get("after").unwrap(), Some(b"stray".to_vec()));
    db.close().unwrap();
    drop(db);
    fs.write_file_bytes(&path("18446744073709551615.log"), Vec::new());
    let e = Db::open(DIR, opts(&fs)).unwrap_err();
    assert!(e.is_corruption(), "{e}");
}

#[test]
fn wal_with_sequence_numbers_going_backwards_fails_open() {
    // Found by fuzzing (wal_reader): a checksummed WAL whose batches reuse
    // earlier sequence numbers (and jump ahead in the middle) was replayed
    // into two L0 tables whose newest-first order was wrong for some keys,
    // so a point lookup found an older tombstone while iteration found the
    // newer value. Replay now refuses sequence numbers that go back.
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/wal_reader/sequence-goes-backwards"),
    )
    .unwrap();
    let mut wal = input[1..].to_vec();
    cairn_engine::fuzzing::fix_record_log_checksums(&mut wal);
    let e = cairn_engine::fuzzing::open_wal(&wal).unwrap_err();
    assert!(
        e.is_corruption() && e.to_string().contains("must increase"),
        "{e}"
    );
}
