//! Model tests: random sequences of every public operation, with every read
//! compared against a `BTreeMap` (and snapshots against a copy of the map
//! taken when the snapshot was). Flushes, compactions and reopens change
//! where data lives but never what a read returns.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]
use cairn_engine::{Db, IterOptions, MemFs, Options, Snapshot, WriteBatch, WriteOptions};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::sync::Arc;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Snapshots kept alive at once; more are refused by the op, not the engine.
const MAX_LIVE_SNAPSHOTS: usize = 3;

/// A value described by its length and a seed, so proptest shrinks it cheaply.
#[derive(Debug, Clone)]
struct Value {
    len: usize,
    seed: u64,
}

impl Value {
    /// Pseudo-random bytes (splitmix64): incompressible enough that large
    /// values really cut blocks and files.
    fn bytes(&self) -> Vec<u8> {
        let mut x = self.seed;
        (0..self.len)
            .map(|_| {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Write {
    Put(Vec<u8>, Value),
    Delete(Vec<u8>),
    /// `[start, end)`; start may be >= end (an empty range).
    DeleteRange(Vec<u8>, Vec<u8>),
}

#[derive(Debug, Clone)]
enum Op {
    Write(Write),
    Batch(Vec<Write>),
    TakeSnapshot,
    ReleaseSnapshot(usize),
    Get(Vec<u8>),
    GetAt(usize, Vec<u8>),
    Iter(Bounds),
    /// Iterate at live snapshot `.0` (mod the number alive).
    IterAt(usize, Bounds),
    /// Consume `pre` items, then seek to `target` and read the rest.
    Seek {
        bounds: Bounds,
        pre: usize,
        target: Vec<u8>,
    },
    Flush,
    Compact(Option<Vec<u8>>, Option<Vec<u8>>),
    Reopen,
}

#[derive(Debug, Clone)]
struct Bounds {
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    reverse: bool,
}

impl Bounds {
    fn options(&self) -> IterOptions {
        IterOptions {
            lower_bound: self.lower.clone(),
            upper_bound: self.upper.clone(),
            reverse: self.reverse,
            skip_cache: false,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.lower.as_deref().is_none_or(|lo| key >= lo)
            && self.upper.as_deref().is_none_or(|hi| key < hi)
    }

    /// What the model says an iterator with these bounds yields, in order.
    fn expect(&self, model: &Model) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<_> = model
            .iter()
            .filter(|(k, _)| self.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if self.reverse {
            v.reverse();
        }
        v
    }
}

/// Keys of 1..=`max_len` letters from a 4-letter alphabet: few enough that
/// overwrites, deletes and range deletes keep hitting the same keys.
fn key(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"abcd".to_vec()), 1..=max_len)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        20 => (0..200usize, any::<u64>()).prop_map(|(len, seed)| Value { len, seed }),
        1 => (5000..5200usize, any::<u64>()).prop_map(|(len, seed)| Value { len, seed }),
    ]
}

/// Range deletes between two random keys (wide: they often wipe a third of
/// the key space), or from a key to an extension of it (narrow).
fn range(max_len: usize, narrow: bool) -> BoxedStrategy<Write> {
    if narrow {
        (key(max_len), key(2))
            .prop_map(|(s, tail)| {
                let e = [s.as_slice(), tail.as_slice()].concat();
                Write::DeleteRange(s, e)
            })
            .boxed()
    } else {
        (key(max_len), key(max_len))
            .prop_map(|(s, e)| Write::DeleteRange(s, e))
            .boxed()
    }
}

fn write(max_len: usize, narrow: bool) -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => (key(max_len), value()).prop_map(|(k, v)| Write::Put(k, v)),
        2 => key(max_len).prop_map(Write::Delete),
        1 => range(max_len, narrow),
    ]
}

fn bounds(max_len: usize) -> impl Strategy<Value = Bounds> {
    (
        prop::option::of(key(max_len)),
        prop::option::of(key(max_len)),
        any::<bool>(),
    )
        .prop_map(|(lower, upper, reverse)| Bounds {
            lower,
            upper,
            reverse,
        })
}

fn op(max_len: usize, narrow: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => write(max_len, narrow).prop_map(Op::Write),
        4 => prop::collection::vec(write(max_len, narrow), 1..8).prop_map(Op::Batch),
        2 => Just(Op::TakeSnapshot),
        1 => any::<usize>().prop_map(Op::ReleaseSnapshot),
        6 => key(max_len).prop_map(Op::Get),
        3 => (any::<usize>(), key(max_len)).prop_map(|(i, k)| Op::GetAt(i, k)),
        3 => bounds(max_len).prop_map(Op::Iter),
        2 => (any::<usize>(), bounds(max_len)).prop_map(|(i, b)| Op::IterAt(i, b)),
        2 => (bounds(max_len), 0..4usize, key(max_len))
            .prop_map(|(bounds, pre, target)| Op::Seek { bounds, pre, target }),
        2 => Just(Op::Flush),
        1 => prop::option::of(key(max_len))
            .prop_flat_map(move |lo| (Just(lo), prop::option::of(key(max_len))))
            .prop_map(|(lo, hi)| Op::Compact(lo, hi)),
        1 => Just(Op::Reopen),
    ]
}

/// Small sizes so a few hundred ops flush, cut blocks and files, and
/// compact into several levels.
fn small_opts(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        write_buffer_bytes: 16 << 10,
        target_file_size_bytes: 32 << 10,
        max_bytes_for_level_base: 128 << 10,
        block_size_bytes: 1 << 10,
        block_cache_bytes: 256 << 10,
        l0_compaction_trigger: 2,
        ..Options::default()
    }
}

fn apply_to_model(model: &mut Model, w: &Write) {
    match w {
        Write::Put(k, v) => {
            model.insert(k.clone(), v.bytes());
        }
        Write::Delete(k) => {
            model.remove(k);
        }
        Write::DeleteRange(s, e) => model.retain(|k, _| !(s <= k && k < e)),
    }
}

fn add_to_batch(b: &mut WriteBatch, w: &Write) {
    match w {
        Write::Put(k, v) => b.put(k, v.bytes()),
        Write::Delete(k) => b.delete(k),
        Write::DeleteRange(s, e) => b.delete_range(s, e),
    }
}

fn collect(
    it: impl Iterator<Item = cairn_engine::Result<(Vec<u8>, Vec<u8>)>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.collect::<cairn_engine::Result<Vec<_>>>().unwrap()
}

/// The database under test, the model, and live snapshots with the model
/// as it was when each was taken.
struct Harness {
    fs: MemFs,
    /// `None` only inside `reopen`.
    db: Option<Db>,
    model: Model,
    snapshots: Vec<(Snapshot, Model)>,
    /// Flushes and compactions of handles closed so far (counters are per open).
    flushes: u64,
    compactions: u64,
}

impl Harness {
    fn new() -> Self {
        let fs = MemFs::new();
        let db = Db::open("/db", small_opts(&fs)).unwrap();
        Harness {
            fs,
            db: Some(db),
            model: Model::new(),
            snapshots: Vec::new(),
            flushes: 0,
            compactions: 0,
        }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("open outside reopen")
    }

    fn snapshot(&self, i: usize) -> Option<&(Snapshot, Model)> {
        self.snapshots.get(i.checked_rem(self.snapshots.len())?)
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(w) => self.write(w),
            Op::Batch(ws) => {
                let mut b = WriteBatch::new();
                for w in ws {
                    add_to_batch(&mut b, w);
                    apply_to_model(&mut self.model, w);
                }
                self.db().write(b, WriteOptions::default()).unwrap();
            }
            Op::TakeSnapshot => {
                if self.snapshots.len() < MAX_LIVE_SNAPSHOTS {
                    self.snapshots
                        .push((self.db().snapshot(), self.model.clone()));
                }
            }
            Op::ReleaseSnapshot(i) => {
                if let Some(i) = i.checked_rem(self.snapshots.len()) {
                    self.snapshots.remove(i);
                }
            }
            Op::Get(k) => assert_eq!(
                self.db().get(k).unwrap(),
                self.model.get(k).cloned(),
                "get {k:?}"
            ),
            Op::GetAt(i, k) => {
                if let Some((snap, model)) = self.snapshot(*i) {
                    let got = self.db().get_at(k, snap).unwrap();
                    assert_eq!(got, model.get(k).cloned(), "get_at {k:?} at {snap:?}");
                }
            }
            Op::Iter(b) => {
                let got = collect(self.db().iter(b.options()));
                assert_eq!(got, b.expect(&self.model), "iter {b:?}");
            }
            Op::IterAt(i, b) => {
                if let Some((snap, model)) = self.snapshot(*i) {
                    let got = collect(self.db().iter_at(b.options(), snap));
                    assert_eq!(got, b.expect(model), "iter_at {b:?} at {snap:?}");
                }
            }
            Op::Seek {
                bounds,
                pre,
                target,
            } => self.check_seek(bounds, *pre, target),
            Op::Flush => self.db().flush().unwrap(),
            Op::Compact(lo, hi) => self
                .db()
                .compact_range(lo.as_deref(), hi.as_deref())
                .unwrap(),
            Op::Reopen => self.reopen(),
        }
    }

    fn write(&mut self, w: &Write) {
        match w {
            Write::Put(k, v) => self.db().put(k, v.bytes()).unwrap(),
            Write::Delete(k) => self.db().delete(k).unwrap(),
            Write::DeleteRange(s, e) => self.db().delete_range(s, e).unwrap(),
        }
        apply_to_model(&mut self.model, w);
    }

    fn check_seek(&self, bounds: &Bounds, pre: usize, target: &[u8]) {
        let mut it = self.db().iter(bounds.options());
        let head = collect(it.by_ref().take(pre));
        let all = bounds.expect(&self.model);
        assert_eq!(
            head,
            all.iter().take(pre).cloned().collect::<Vec<_>>(),
            "before seek {bounds:?}"
        );
        it.seek(target);
        let want: Vec<_> = all
            .into_iter()
            .filter(|(k, _)| {
                if bounds.reverse {
                    k.as_slice() <= target
                } else {
                    k.as_slice() >= target
                }
            })
            .collect();
        assert_eq!(
            collect(it),
            want,
            "seek {target:?} after {pre} in {bounds:?}"
        );
    }

    /// Clean close and reopen: every acknowledged write must come back.
    fn reopen(&mut self) {
        self.snapshots.clear();
        self.db().close().unwrap();
        let stats = self.db().stats();
        self.flushes += stats.flushes;
        self.compactions += stats.compactions;
        // The directory lock goes with the last handle, not with close().
        drop(self.db.take());
        self.db = Some(Db::open("/db", small_opts(&self.fs)).unwrap());
    }

    /// Every key of the model, and nothing else, in both directions.
    fn check_all(&self) {
        let fwd = Bounds {
            lower: None,
            upper: None,
            reverse: false,
        };
        assert_eq!(
            collect(self.db().iter(fwd.options())),
            fwd.expect(&self.model)
        );
        let rev = Bounds {
            reverse: true,
            ..fwd
        };
        assert_eq!(
            collect(self.db().iter(rev.options())),
            rev.expect(&self.model)
        );
        for (k, v) in &self.model {
            assert_eq!(self.db().get(k).unwrap().as_ref(), Some(v), "get {k:?}");
        }
    }
}

/// Cases per run: 256 keeps the file well under a minute on two cores;
/// `PROPTEST_CASES` overrides.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_read_matches_the_model(ops in prop::collection::vec(op(3, false), 50..300)) {
        // Gets, ranged and reverse scans, seeks and snapshot reads agree with a
        // BTreeMap through flushes, compactions and reopens.
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
        h.check_all();
        h.reopen();
        h.check_all();
    }
}

#[test]
fn long_random_history_ends_in_model_state_across_levels() {
    // Thousands of seeded ops over a wider key space: the final state matches
    // the model after a reopen, and the data really reached levels >= 1.
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let ops = prop::collection::vec(op(5, true), 10_000)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let mut h = Harness::new();
    for op in &ops {
        h.apply(op);
    }
    h.db().wait_for_background().unwrap();
    h.check_all();
    h.reopen();
    assert!(
        h.flushes >= 20 && h.compactions >= 10,
        "too little background work to mean anything: {} flushes, {} compactions",
        h.flushes,
        h.compactions
    );
    h.check_all();
    assert!(
        h.model.len() > 100,
        "the history should leave data: {}",
        h.model.len()
    );
    let stats = h.db().stats();
    assert!(
        stats.levels.iter().skip(1).any(|l| l.files > 0),
        "no tables below L0: {stats:?}"
    );
}
