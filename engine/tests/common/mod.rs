//! Shared by the crash, fault, corruption and kill tests: a seeded
//! workload generator, a `BTreeMap` model of the database, and the prefix
//! check every crash test ends with.
//!
//! The workload writes a value at most once (each value names the write
//! that made it), so "a value that was never written" is detectable, and
//! the recovered state can be matched against the model after each prefix
//! of the writes.

#![allow(
    dead_code,
    reason = "each test crate uses a different subset of these helpers"
)]

use cairn_engine::{Db, FaultOp, FileSystem, IterOptions, MemFs, WriteBatch, WriteOptions};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// SplitMix64: small, seedable, good enough to drive a workload.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// One call to `Db::write`: a batch of ops and whether it asked for sync.
#[derive(Debug, Clone)]
pub struct Write {
    pub id: u64,
    pub ops: Vec<Op>,
    pub sync: bool,
}

impl Write {
    pub fn batch(&self) -> WriteBatch {
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

    pub fn options(&self) -> WriteOptions {
        WriteOptions {
            sync: self.sync,
            ..WriteOptions::default()
        }
    }

    pub fn apply(&self, db: &Db) -> cairn_engine::Result<()> {
        db.write(self.batch(), self.options())
    }

    /// Applies the write to `model`; returns the keys whose state may have changed.
    pub fn apply_to(&self, model: &mut Model) -> Vec<Vec<u8>> {
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
                Op::DeleteRange(a, z) => {
                    if a < z {
                        let doomed: Vec<Vec<u8>> = model
                            .range(a.clone()..z.clone())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            model.remove(&k);
                            touched.push(k);
                        }
                    }
                }
            }
        }
        touched
    }

    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().filter_map(|op| match op {
            Op::Put(_, v) => Some(v.as_slice()),
            _ => None,
        })
    }
}

pub fn key(prefix: &str, i: u64) -> Vec<u8> {
    format!("{prefix}{i:05}").into_bytes()
}

/// A value unique to write `id`, op `j`, of 40 to 200 bytes.
fn value(rng: &mut Rng, id: u64, j: usize) -> Vec<u8> {
    let mut v = format!("v{id:08}.{j}-").into_bytes();
    let len = rng.range(40, 200) as usize;
    while v.len() < len {
        v.push(b'a' + (rng.below(26) as u8));
    }
    v
}

/// Shape of the generated workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Keys are `prefix` followed by a number below `keys`.
    pub prefix: &'static str,
    pub keys: u64,
    /// Percentage of writes that ask for sync.
    pub sync_percent: u64,
    /// Whether batches may carry range deletes.
    pub range_deletes: bool,
}

impl Workload {
    pub const fn new(prefix: &'static str) -> Self {
        Workload {
            prefix,
            keys: 300,
            sync_percent: 10,
            range_deletes: true,
        }
    }

    /// Write `id`: mostly single puts, some deletes, some batches.
    pub fn generate(&self, rng: &mut Rng, id: u64) -> Write {
        let mut ops = Vec::new();
        let n = if rng.percent(15) { rng.range(2, 9) } else { 1 };
        for j in 0..n as usize {
            let k = key(self.prefix, rng.below(self.keys));
            let roll = rng.below(100);
            if roll < 75 {
                ops.push(Op::Put(k, value(rng, id, j)));
            } else if roll < 97 || !self.range_deletes {
                ops.push(Op::Delete(k));
            } else {
                let start = rng.below(self.keys);
                let end = start + rng.range(1, 8);
                ops.push(Op::DeleteRange(
                    key(self.prefix, start),
                    key(self.prefix, end),
                ));
            }
        }
        Write {
            id,
            ops,
            sync: rng.percent(self.sync_percent),
        }
    }
}

/// Reads the whole database by iteration and checks that a point lookup
/// of every key in `probe` agrees with it.
pub fn dump(db: &Db, probe: impl IntoIterator<Item = Vec<u8>>) -> cairn_engine::Result<Model> {
    let mut model = Model::new();
    for item in db.iter(IterOptions::new()) {
        let (k, v) = item?;
        if let Some((last, _)) = model.last_key_value() {
            assert!(*last < k, "iteration out of order: {last:?} then {k:?}");
        }
        model.insert(k, v);
    }
    for k in probe
        .into_iter()
        .chain(model.keys().cloned().collect::<Vec<_>>())
    {
        let got = db.get(&k)?;
        assert_eq!(
            got.as_ref(),
            model.get(&k),
            "get({}) disagrees with iteration",
            show(&k)
        );
    }
    Ok(model)
}

pub fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 24 {
        format!("{}..", &s[..24])
    } else {
        s.into_owned()
    }
}

/// The crash invariants. `base` is the state before `writes` (all
/// attempted, in order; only the last may be unacknowledged);
/// `min_prefix` is how many of them must survive (up to and including the
/// last acknowledged sync write). Returns the longest prefix whose model
/// equals `recovered`, or explains why none does.
pub fn check_prefix(
    base: &Model,
    writes: &[Write],
    recovered: &Model,
    min_prefix: usize,
) -> Result<usize, String> {
    let written: HashSet<&[u8]> = base
        .values()
        .map(Vec::as_slice)
        .chain(writes.iter().flat_map(Write::values))
        .collect();
    for (k, v) in recovered {
        if !written.contains(v.as_slice()) {
            return Err(format!(
                "key {} holds a value that was never written: {}",
                show(k),
                show(v)
            ));
        }
    }
    let mut model = base.clone();
    let mut differ: BTreeSet<Vec<u8>> = model
        .keys()
        .chain(recovered.keys())
        .filter(|k| model.get(*k) != recovered.get(*k))
        .cloned()
        .collect();
    let mut best = (differ.is_empty() && min_prefix == 0).then_some(0);
    let mut at_min = None;
    for (i, w) in writes.iter().enumerate() {
        for k in w.apply_to(&mut model) {
            if model.get(&k) == recovered.get(&k) {
                differ.remove(&k);
            } else {
                differ.insert(k);
            }
        }
        if i + 1 == min_prefix.max(1) {
            at_min = Some(differ.clone());
        }
        if differ.is_empty() && i + 1 >= min_prefix {
            best = Some(i + 1);
        }
    }
    best.ok_or_else(|| {
        let diff = at_min.unwrap_or(differ);
        let shown: Vec<String> = diff
            .iter()
            .take(5)
            .map(|k| {
                format!(
                    "{}: recovered {:?}",
                    show(k),
                    recovered.get(k).map(|v| show(v))
                )
            })
            .collect();
        format!(
            "recovered state is no prefix of {} writes with at least {min_prefix} \
             (acknowledged through the last sync); {} keys differ after {min_prefix}, e.g. {shown:?}",
            writes.len(),
            diff.len()
        )
    })
}

/// Every write operation the engine can make on a `MemFs`.
pub const MUTATING_OPS: [FaultOp; 6] = [
    FaultOp::Create,
    FaultOp::Append,
    FaultOp::Sync,
    FaultOp::Rename,
    FaultOp::Remove,
    FaultOp::SyncDir,
];

/// Makes every later mutating operation fail: from here on nothing reaches
/// the disk, which is what a power cut does. Used before `MemFs::crash` so
/// the threads of the abandoned `Db` cannot write into the post-crash
/// file system (a real crash stops them).
pub fn freeze(fs: &MemFs) {
    for op in MUTATING_OPS {
        fs.inject_fault(op, None, 0, u64::MAX);
    }
}

/// Every file in `dir` with its current bytes: a disk image taken as if
/// every write so far had reached the disk.
pub fn image(fs: &MemFs, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = fs.list(dir).unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter(|n| n != "LOCK")
        .filter_map(|n| fs.file_bytes(&dir.join(&n)).map(|b| (n, b)))
        .collect()
}

/// A fresh file system holding `image` in `dir`, all of it durable.
pub fn restore(image: &[(String, Vec<u8>)], dir: &Path) -> MemFs {
    let fs = MemFs::new();
    for (name, bytes) in image {
        fs.write_file_bytes(&dir.join(name), bytes.clone());
    }
    fs
}

/// Names in `dir` ending with `suffix` (or starting with it, for `MANIFEST-`).
pub fn files_like(fs: &MemFs, dir: &Path, pattern: &str) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(pattern) || n.starts_with(pattern))
        .collect();
    names.sort();
    names
}
