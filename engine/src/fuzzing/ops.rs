//! The operations target: a byte string read as a program of engine
//! operations (puts, deletes, range deletes, batches with and without
//! sync, flushes, compactions, snapshots, iterators, reopens, crashes in
//! every `CrashMode`, injected I/O faults and a full disk) run against a
//! `MemFs` and checked against a `BTreeMap` model.
//!
//! Invariants, checked after every reopen:
//! - every write acknowledged with sync (or followed by a successful flush)
//!   is present, and after a clean reopen every acknowledged write is;
//! - the state equals the model after some prefix of the attempted writes;
//! - no value that was never written appears (each value names its write);
//! - while the engine is healthy, reads (gets, iterators both ways,
//!   snapshots) equal the model;
//! - once an operation failed, or an injected fault is known to have fired,
//!   every later write is refused as poisoned (the failure is never
//!   forgotten or retried).
//!
//! Program encoding: one opcode byte per operation, followed by its
//! argument bytes; a program ends where the bytes do (at most
//! `MAX_OPERATIONS`). A missing argument byte reads as 0.

use crate::fs::{CrashMode, FaultOp, MemFs};
use crate::{Db, Error, IterOptions, Result, Snapshot, WriteBatch, WriteOptions};
use std::collections::{BTreeMap, BTreeSet, HashSet};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const DIR: &str = "/db";
/// Bounds the work of one input.
const MAX_OPERATIONS: usize = 96;
/// Distinct keys: few, so operations collide.
const KEYS: u8 = 32;
const MODES: [CrashMode; 4] = [
    CrashMode::DropUnsynced,
    CrashMode::KeepRandomPrefix,
    CrashMode::TornPages { page_bytes: 512 },
    CrashMode::TornPages { page_bytes: 4096 },
];
/// Every operation that writes to the file system; the ones faults target.
const MUTATING_OPS: [FaultOp; 6] = [
    FaultOp::Create,
    FaultOp::Append,
    FaultOp::Sync,
    FaultOp::Rename,
    FaultOp::Remove,
    FaultOp::SyncDir,
];
/// Faults the program may arm: every one of them must poison the engine
/// when it fires during a session (`Remove` is best effort and is not).
const FAULT_OPS: [FaultOp; 5] = [
    FaultOp::Create,
    FaultOp::Append,
    FaultOp::Sync,
    FaultOp::Rename,
    FaultOp::SyncDir,
];
const FAULT_PATHS: [Option<&str>; 6] = [
    None,
    None,
    Some(".log"),
    Some(".sst"),
    Some("MANIFEST"),
    Some("CURRENT"),
];

/// Runs the program in `data`; panics when an invariant breaks.
pub fn ops_target(data: &[u8]) {
    let mut h = Harness::new();
    let mut input = Input { data, pos: 0 };
    for _ in 0..MAX_OPERATIONS {
        let Some(opcode) = input.next() else {
            break;
        };
        h.step(opcode, &mut input);
    }
    h.reopen(false);
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// One call to `Db::write`.
#[derive(Debug, Clone)]
struct Write {
    ops: Vec<Op>,
}

impl Write {
    fn batch(&self) -> WriteBatch {
        let mut b = WriteBatch::new();
        for op in &self.ops {
            match op {
                Op::Put(k, v) => b.put(k, v),
                Op::Delete(k) => b.delete(k),
                Op::DeleteRange(a, z) => b.delete_range(a, z),
            }
        }
        b
    }

    /// Applies the write to `model`; returns the keys it may have changed.
    fn apply_to(&self, model: &mut Model) -> Vec<Vec<u8>> {
        let mut touched = Vec::new();
        for op in &self.ops {
            match op {
                Op::Put(k, v) => {
                    model.insert(k.clone(), v.clone());
                    touched.push(k.clone());
                }
                Op::Delete(k) => {
                    model.remove(k);
                    touched.push(k.clone());
                }
                Op::DeleteRange(a, z) if a < z => {
                    let doomed: Vec<Vec<u8>> = model
                        .range(a.clone()..z.clone())
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        model.remove(&k);
                        touched.push(k);
                    }
                }
                Op::DeleteRange(..) => {}
            }
        }
        touched
    }

    fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().filter_map(|op| match op {
            Op::Put(_, v) => Some(v.as_slice()),
            _ => None,
        })
    }
}

fn key(b: u8) -> Vec<u8> {
    let i = b % KEYS;
    let mut k = format!("k{i:02}").into_bytes();
    if i >= KEYS - 6 {
        // A few long keys, so blocks and index entries vary in shape.
        k.resize(80, b'-');
    }
    k
}

/// A value unique to write `id`, op `j`, of about `4 * len` bytes.
fn value(id: u64, j: usize, len: u8) -> Vec<u8> {
    let mut v = format!("v{id}.{j}:").into_bytes();
    let fill = b'a' + (id % 26) as u8;
    v.resize(v.len() + 4 * usize::from(len % 64), fill);
    v
}

/// An armed fault whose firing the harness can tell from the op count.
struct Armed {
    op: FaultOp,
    count_at_arm: u64,
    skip: u64,
}

struct Harness {
    fs: MemFs,
    db: Option<Db>,
    /// The state recovered at the last (re)open.
    base: Model,
    /// Writes attempted since then: every acknowledged one, then at most
    /// one that failed (it may or may not have reached the disk).
    writes: Vec<Write>,
    /// `writes[..acked]` were acknowledged.
    acked: usize,
    /// `writes[..durable]` must survive a crash (a sync write or a
    /// successful flush made them durable).
    durable: usize,
    /// `base` plus the acknowledged writes: what reads must return.
    live: Model,
    /// An operation failed: the engine must refuse writes from now on.
    failed: bool,
    /// An injected fault fired: same consequence.
    fault_fired: bool,
    armed: Vec<Armed>,
    snapshots: Vec<(Snapshot, Model)>,
    next_id: u64,
}

impl Harness {
    fn new() -> Harness {
        let fs = MemFs::new();
        let db = match Db::open(DIR, super::small_options(&fs)) {
            Ok(db) => db,
            Err(e) => panic!("opening a new database failed: {e}"),
        };
        Harness {
            fs,
            db: Some(db),
            base: Model::new(),
            writes: Vec::new(),
            acked: 0,
            durable: 0,
            live: Model::new(),
            failed: false,
            fault_fired: false,
            armed: Vec::new(),
            snapshots: Vec::new(),
            next_id: 0,
        }
    }

    fn db(&self) -> &Db {
        match &self.db {
            Some(db) => db,
            None => panic!("no database open"),
        }
    }

    fn must_refuse(&self) -> bool {
        self.failed || self.fault_fired
    }

    fn step(&mut self, opcode: u8, input: &mut Input<'_>) {
        match opcode % 32 {
            0..=11 => self.put(input, false),
            12 | 13 => self.put(input, true),
            14 | 15 => {
                let (k, sync) = (key(input.byte()), input.byte() & 1 == 1);
                self.write(vec![Op::Delete(k)], sync);
            }
            16 => {
                let (a, z, sync) = (key(input.byte()), key(input.byte()), input.byte() & 1 == 1);
                self.write(vec![Op::DeleteRange(a, z)], sync);
            }
            17 | 18 => self.batch(input),
            19 => self.flush(),
            20 => self.compact(input),
            21 => self.take_snapshot(),
            22 => self.check_snapshot(input),
            23 => self.check_iter(input),
            24 => self.check_get(input),
            25 => self.reopen(input.byte() & 1 == 1),
            26 | 27 => self.crash(input),
            28..=30 => self.arm_fault(input),
            _ => {
                let extra = u64::from(input.byte()) * 64;
                self.fs.set_space_limit(Some(self.fs.total_bytes() + extra));
            }
        }
    }

    fn put(&mut self, input: &mut Input<'_>, sync: bool) {
        let (k, len) = (key(input.byte()), input.byte());
        let v = value(self.next_id, 0, len);
        self.write(vec![Op::Put(k, v)], sync);
    }

    fn batch(&mut self, input: &mut Input<'_>) {
        let shape = input.byte();
        let n = usize::from(shape % 6) + 1;
        let mut ops = Vec::with_capacity(n);
        for j in 0..n {
            let (what, k) = (input.byte(), key(input.byte()));
            ops.push(match what % 8 {
                0 => Op::Delete(k),
                1 => Op::DeleteRange(k, key(input.byte())),
                _ => Op::Put(k, value(self.next_id, j, what >> 2)),
            });
        }
        self.write(ops, shape & 0x80 != 0);
    }

    fn write(&mut self, ops: Vec<Op>, sync: bool) {
        let w = Write { ops };
        self.next_id += 1;
        let refuse = self.must_refuse();
        let result = self.db().write(
            w.batch(),
            WriteOptions {
                sync,
                disable_wal: false,
            },
        );
        match result {
            Ok(()) => {
                assert!(
                    !refuse,
                    "a write was acknowledged after a failure or a fired fault"
                );
                w.apply_to(&mut self.live);
                self.writes.push(w);
                self.acked += 1;
                if sync {
                    self.durable = self.acked;
                }
            }
            Err(e) => {
                assert!(!refuse || e.is_poisoned(), "write after a failure: {e}");
                assert_io_failure(&e);
                if !refuse {
                    self.writes.push(w);
                }
                self.failed = true;
            }
        }
        self.settle();
    }

    fn flush(&mut self) {
        let refuse = self.must_refuse();
        match self.db().flush() {
            Ok(()) => {
                assert!(
                    !refuse,
                    "a flush succeeded after a failure or a fired fault"
                );
                self.durable = self.acked;
            }
            Err(e) => {
                assert_io_failure(&e);
                self.failed = true;
            }
        }
        self.settle();
    }

    fn compact(&mut self, input: &mut Input<'_>) {
        let b = input.byte();
        let start = (b & 1 == 1).then(|| key(input.byte()));
        let end = (b & 2 == 2).then(|| key(input.byte()));
        let refuse = self.must_refuse();
        match self.db().compact_range(start.as_deref(), end.as_deref()) {
            Ok(()) => {
                assert!(
                    !refuse,
                    "a compaction succeeded after a failure or a fired fault"
                );
                self.durable = self.acked;
            }
            Err(e) => {
                assert_io_failure(&e);
                self.failed = true;
            }
        }
        self.settle();
    }

    /// Waits for background work (so a program runs the same every time)
    /// and notes whether it failed and which armed faults fired.
    fn settle(&mut self) {
        if self.db().wait_for_background().is_err() {
            self.failed = true;
        }
        let fs = &self.fs;
        let before = self.armed.len();
        self.armed
            .retain(|a| fs.op_count(a.op) <= a.count_at_arm + a.skip);
        if self.armed.len() != before {
            self.fault_fired = true;
        }
    }

    fn take_snapshot(&mut self) {
        if self.must_refuse() || self.snapshots.len() >= 4 {
            return;
        }
        let snap = self.db().snapshot();
        self.snapshots.push((snap, self.live.clone()));
    }

    fn check_snapshot(&mut self, input: &mut Input<'_>) {
        let b = input.byte();
        let Some(i) = (!self.snapshots.is_empty()).then(|| usize::from(b) % self.snapshots.len())
        else {
            return;
        };
        let db = self.db();
        if let Some((snap, model)) = self.snapshots.get(i) {
            let k = key(input.byte());
            expect_read(db.get_at(&k, snap), model.get(&k), "get_at");
            let opts = iter_options(input);
            let got = db.iter_at(opts.clone(), snap).collect::<Result<Vec<_>>>();
            expect_iter(got, model, &opts, "iter_at");
        }
        if b & 0x80 != 0 {
            self.snapshots.swap_remove(i);
        }
    }

    fn check_iter(&mut self, input: &mut Input<'_>) {
        let opts = iter_options(input);
        let got = self.db().iter(opts.clone()).collect::<Result<Vec<_>>>();
        if !self.must_refuse() {
            expect_iter(got, &self.live, &opts, "iter");
        }
    }

    fn check_get(&mut self, input: &mut Input<'_>) {
        let k = key(input.byte());
        let got = self.db().get(&k);
        if !self.must_refuse() {
            expect_read(got, self.live.get(&k), "get");
        }
    }

    fn arm_fault(&mut self, input: &mut Input<'_>) {
        let (what, skip) = (input.byte(), u64::from(input.byte() % 16));
        let op = FAULT_OPS[usize::from(what) % FAULT_OPS.len()];
        let path = FAULT_PATHS[usize::from(what / 8) % FAULT_PATHS.len()];
        self.fs.inject_fault(op, path, skip, 1);
        if path.is_none() {
            self.armed.push(Armed {
                op,
                count_at_arm: self.fs.op_count(op),
                skip,
            });
        }
    }

    /// A power cut: freeze the disk, crash it, reopen, check.
    fn crash(&mut self, input: &mut Input<'_>) {
        let (m, seed) = (input.byte(), input.byte());
        let mode = MODES[usize::from(m) % MODES.len()];
        self.snapshots.clear();
        for op in MUTATING_OPS {
            self.fs.inject_fault(op, None, 0, u64::MAX);
        }
        self.fs.crash(mode, u64::from(seed) << 8 | u64::from(m));
        self.db = None;
        self.fs.clear_faults();
        self.fs.set_space_limit(None);
        self.open_and_check(self.durable, &format!("after a crash ({mode:?})"));
    }

    /// A clean close and reopen; `keep_faults` leaves armed faults (and a
    /// space limit) in place for the open, which may then fail once.
    fn reopen(&mut self, keep_faults: bool) {
        self.snapshots.clear();
        if let Some(db) = self.db.take() {
            let _ = db.close();
        }
        if !keep_faults {
            self.fs.clear_faults();
            self.fs.set_space_limit(None);
        }
        let first = Db::open(DIR, super::small_options(&self.fs));
        self.fs.clear_faults();
        self.fs.set_space_limit(None);
        if let Ok(db) = first {
            self.db = Some(db);
        }
        // Acknowledged writes were handed to the OS: a reopen keeps them
        // all, even when the engine was poisoned.
        self.open_and_check(self.acked, "after a reopen");
    }

    fn open_and_check(&mut self, must_survive: usize, context: &str) {
        if self.db.is_none() {
            match Db::open(DIR, super::small_options(&self.fs)) {
                Ok(db) => self.db = Some(db),
                Err(e) => panic!("open {context} failed: {e}"),
            }
        }
        let recovered = match dump(self.db()) {
            Ok(m) => m,
            Err(e) => panic!("reading {context} failed: {e}"),
        };
        if let Err(why) = check_prefix(&self.base, &self.writes, &recovered, must_survive) {
            panic!("{context}: {why}");
        }
        self.base = recovered.clone();
        self.live = recovered;
        self.writes.clear();
        self.acked = 0;
        self.durable = 0;
        self.failed = false;
        self.fault_fired = false;
        self.armed.clear();
    }
}

/// Only I/O failures (or the poison they leave) may fail a write here:
/// every key and value the harness writes is valid.
fn assert_io_failure(e: &Error) {
    assert!(
        matches!(e, Error::Io { .. } | Error::Poisoned { .. }),
        "an operation failed without an I/O error: {e}"
    );
}

fn iter_options(input: &mut Input<'_>) -> IterOptions {
    let b = input.byte();
    IterOptions {
        lower_bound: (b & 1 == 1).then(|| key(input.byte())),
        upper_bound: (b & 2 == 2).then(|| key(input.byte())),
        reverse: b & 4 == 4,
        skip_cache: b & 8 == 8,
    }
}

fn expect_read(got: Result<Option<Vec<u8>>>, want: Option<&Vec<u8>>, what: &str) {
    match got {
        Ok(v) => assert_eq!(v.as_ref(), want, "{what} disagrees with the model"),
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn expect_iter(
    got: Result<Vec<(Vec<u8>, Vec<u8>)>>,
    model: &Model,
    opts: &IterOptions,
    what: &str,
) {
    let got = match got {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    };
    let in_bounds = |k: &Vec<u8>| {
        opts.lower_bound.as_ref().is_none_or(|lo| k >= lo)
            && opts.upper_bound.as_ref().is_none_or(|hi| k < hi)
    };
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = model
        .iter()
        .filter(|(k, _)| in_bounds(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if opts.reverse {
        want.reverse();
    }
    assert_eq!(got, want, "{what} disagrees with the model ({opts:?})");
}

/// The whole database by forward iteration; reverse iteration and a point
/// lookup of every key (present or not) must agree with it.
fn dump(db: &Db) -> Result<Model> {
    let mut model = Model::new();
    for item in db.iter(IterOptions::new()) {
        let (k, v) = item?;
        if let Some((last, _)) = model.last_key_value() {
            assert!(*last < k, "iteration out of order");
        }
        model.insert(k, v);
    }
    let reverse: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter(IterOptions::new().reversed())
        .collect::<Result<_>>()?;
    assert!(
        reverse.iter().rev().eq(model
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
            .iter()),
        "reverse iteration disagrees with forward"
    );
    for b in 0..KEYS {
        let k = key(b);
        assert_eq!(
            db.get(&k)?.as_ref(),
            model.get(&k),
            "get disagrees with iteration"
        );
    }
    Ok(model)
}

/// The crash invariants: `recovered` holds only written values and equals
/// `base` after some prefix of `writes` at least `min_prefix` long.
fn check_prefix(
    base: &Model,
    writes: &[Write],
    recovered: &Model,
    min_prefix: usize,
) -> std::result::Result<usize, String> {
    let written: HashSet<&[u8]> = base
        .values()
        .map(Vec::as_slice)
        .chain(writes.iter().flat_map(Write::values))
        .collect();
    if let Some((k, _)) = recovered
        .iter()
        .find(|(_, v)| !written.contains(v.as_slice()))
    {
        return Err(format!(
            "key {} holds a value that was never written",
            String::from_utf8_lossy(k)
        ));
    }
    let mut model = base.clone();
    let mut differ: BTreeSet<Vec<u8>> = model
        .keys()
        .chain(recovered.keys())
        .filter(|k| model.get(*k) != recovered.get(*k))
        .cloned()
        .collect();
    let mut best = (differ.is_empty() && min_prefix == 0).then_some(0);
    for (i, w) in writes.iter().enumerate() {
        for k in w.apply_to(&mut model) {
            if model.get(&k) == recovered.get(&k) {
                differ.remove(&k);
            } else {
                differ.insert(k);
            }
        }
        if differ.is_empty() && i + 1 >= min_prefix {
            best = Some(i + 1);
        }
    }
    best.ok_or_else(|| {
        format!(
            "recovered state is no prefix of the {} attempted writes that keeps the first \
             {min_prefix}; keys differing after all of them: {:?}",
            writes.len(),
            differ
                .iter()
                .take(5)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_model_check_accepts_prefixes_and_rejects_gaps() {
        // Pins check_prefix itself: a lost synced write or a gap is caught.
        use super::*;
        let w = |k: &str, v: &str| Write {
            ops: vec![Op::Put(k.into(), v.into())],
        };
        let writes = vec![w("a", "1"), w("b", "2"), w("a", "3")];
        let state = |pairs: &[(&str, &str)]| -> Model {
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect()
        };
        let base = Model::new();
        assert_eq!(
            check_prefix(&base, &writes, &state(&[("a", "1")]), 0),
            Ok(1)
        );
        assert_eq!(
            check_prefix(&base, &writes, &state(&[("a", "3"), ("b", "2")]), 3),
            Ok(3)
        );
        assert!(check_prefix(&base, &writes, &state(&[("a", "1")]), 2).is_err());
        assert!(check_prefix(&base, &writes, &state(&[("a", "3")]), 0).is_err());
        assert!(check_prefix(&base, &writes, &state(&[("a", "9")]), 0).is_err());
    }
}
