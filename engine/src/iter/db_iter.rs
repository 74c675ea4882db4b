//! `DbIterator`: user keys and values at a sequence number, in key order
//! (or reverse), within optional bounds, with range tombstones applied.
//!
//! It pins what it reads (memtables and a version, hence the table files),
//! so flushes and compactions running meanwhile change nothing it returns:
//! an iterator is a consistent view as of its sequence number.

use super::{Direction, InternalIterator};
use crate::error::{Error, Result};
use crate::key::{self, MAX_SEQUENCE, ValueKind};
use crate::range_del::FragmentedTombstones;
use std::any::Any;
use std::sync::Arc;

/// Where an iterator starts and stops, and which way it goes.
#[derive(Debug, Clone, Default)]
pub struct IterOptions {
    /// Inclusive lower bound on user keys.
    pub lower_bound: Option<Vec<u8>>,
    /// Exclusive upper bound on user keys.
    pub upper_bound: Option<Vec<u8>>,
    /// Walk from the largest key down.
    pub reverse: bool,
    /// Do not keep the blocks this iterator reads in the block cache (a
    /// one-off full scan should not evict the hot set). Default false.
    pub skip_cache: bool,
}

impl IterOptions {
    /// Every key, ascending.
    pub fn new() -> Self {
        IterOptions::default()
    }

    /// Keys in `[lower, upper)`.
    pub fn range(lower: impl Into<Vec<u8>>, upper: impl Into<Vec<u8>>) -> Self {
        IterOptions {
            lower_bound: Some(lower.into()),
            upper_bound: Some(upper.into()),
            ..IterOptions::default()
        }
    }

    /// Keys starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        IterOptions {
            lower_bound: Some(prefix.to_vec()),
            upper_bound: prefix_successor(prefix),
            ..IterOptions::default()
        }
    }

    pub fn reversed(mut self) -> Self {
        self.reverse = true;
        self
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xff {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// A forward or reverse iterator over user keys at one sequence number.
/// Each item is `(key, value)`, or the error that stopped iteration (after
/// an error the iterator is done).
pub struct DbIterator {
    inner: Box<dyn InternalIterator>,
    read_seq: u64,
    tombstones: Vec<Arc<FragmentedTombstones>>,
    opts: IterOptions,
    done: bool,
    started: bool,
    /// The current entry's user key and value (see `advance`): buffers
    /// reused from entry to entry, so a walk allocates only while they grow.
    key: Vec<u8>,
    value: Vec<u8>,
    /// Whatever must outlive the iterator (memtables, version, snapshot).
    _pins: Vec<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for DbIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbIterator")
            .field("read_seq", &self.read_seq)
            .field("opts", &self.opts)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl DbIterator {
    pub(crate) fn new(
        inner: Box<dyn InternalIterator>,
        read_seq: u64,
        tombstones: Vec<Arc<FragmentedTombstones>>,
        opts: IterOptions,
        pins: Vec<Box<dyn Any + Send + Sync>>,
    ) -> Self {
        DbIterator {
            inner,
            read_seq,
            tombstones,
            opts,
            done: false,
            started: false,
            key: Vec::new(),
            value: Vec::new(),
            _pins: pins,
        }
    }

    fn direction(&self) -> Direction {
        if self.opts.reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        }
    }

    /// Repositions: forward, at the first key >= `key`; reverse, at the last
    /// key <= `key`. Bounds still apply.
    pub fn seek(&mut self, user_key: &[u8]) {
        self.done = false;
        self.started = true;
        match self.direction() {
            Direction::Forward => {
                let from = match &self.opts.lower_bound {
                    Some(lo) if lo.as_slice() > user_key => lo.clone(),
                    _ => user_key.to_vec(),
                };
                self.inner.seek(&key::lookup_key(&from, MAX_SEQUENCE));
            }
            Direction::Reverse => match &self.opts.upper_bound {
                Some(hi) if hi.as_slice() <= user_key => {
                    let hi = hi.clone();
                    self.inner.seek(&key::lookup_key(&hi, MAX_SEQUENCE));
                }
                // The largest internal key of `user_key`: every version of it is <= this.
                _ => self
                    .inner
                    .seek(&key::make_internal_key(user_key, 0, ValueKind::Delete)),
            },
        }
    }

    fn start(&mut self) {
        self.started = true;
        match (
            self.direction(),
            self.opts.lower_bound.clone(),
            self.opts.upper_bound.clone(),
        ) {
            (Direction::Forward, Some(lo), _) => {
                self.inner.seek(&key::lookup_key(&lo, MAX_SEQUENCE))
            }
            // Upper bound is exclusive: the smallest internal key of `hi` is past every key below it.
            (Direction::Reverse, _, Some(hi)) => {
                self.inner.seek(&key::lookup_key(&hi, MAX_SEQUENCE))
            }
            _ => self.inner.seek_to_first(),
        }
    }

    fn out_of_bounds(&self, user_key: &[u8]) -> bool {
        match self.direction() {
            Direction::Forward => self
                .opts
                .upper_bound
                .as_deref()
                .is_some_and(|hi| user_key >= hi),
            Direction::Reverse => self
                .opts
                .lower_bound
                .as_deref()
                .is_some_and(|lo| user_key < lo),
        }
    }

    fn covered(&self, user_key: &[u8], seq: u64) -> bool {
        self.tombstones
            .iter()
            .any(|t| t.max_seq_at(user_key, self.read_seq) > seq)
    }

    fn corrupt_key(&self) -> Error {
        Error::corruption(
            "<iterator>",
            0,
            "malformed internal key in a table or memtable",
        )
    }

    /// Forward: the first entry of a user key at or below `read_seq` is the
    /// visible version; the rest of that key's entries are skipped.
    fn next_forward(&mut self) -> Option<Result<()>> {
        loop {
            if !self.inner.valid() {
                return self.finish();
            }
            let Some(p) = key::parse_internal_key(self.inner.key()) else {
                return self.fail(self.corrupt_key());
            };
            if self.out_of_bounds(p.user_key) {
                return self.finish();
            }
            if p.seq > self.read_seq {
                self.inner.next();
                continue;
            }
            let (seq, kind) = (p.seq, p.kind);
            self.key.clear();
            self.key.extend_from_slice(p.user_key);
            let visible = kind == ValueKind::Value && !self.covered(&self.key, seq);
            if visible {
                self.value.clear();
                self.value.extend_from_slice(self.inner.value());
            }
            // Skip older versions of the same key.
            self.inner.next();
            while self.inner.valid() && key::user_key(self.inner.key()) == self.key.as_slice() {
                self.inner.next();
            }
            if visible {
                return Some(Ok(()));
            }
        }
    }

    /// Reverse: a user key's entries arrive oldest first; the last one at or
    /// below `read_seq` is the visible version.
    fn next_reverse(&mut self) -> Option<Result<()>> {
        loop {
            if !self.inner.valid() {
                return self.finish();
            }
            let Some(p) = key::parse_internal_key(self.inner.key()) else {
                return self.fail(self.corrupt_key());
            };
            if self.out_of_bounds(p.user_key) {
                return self.finish();
            }
            self.key.clear();
            self.key.extend_from_slice(p.user_key);
            // The newest visible version so far; its value is in `self.value`.
            let mut best: Option<(u64, ValueKind)> = None;
            while self.inner.valid() {
                let Some(p) = key::parse_internal_key(self.inner.key()) else {
                    return self.fail(self.corrupt_key());
                };
                if p.user_key != self.key.as_slice() {
                    break;
                }
                if p.seq <= self.read_seq {
                    best = Some((p.seq, p.kind));
                    if p.kind == ValueKind::Value {
                        self.value.clear();
                        self.value.extend_from_slice(self.inner.value());
                    }
                }
                self.inner.next();
            }
            if let Some((seq, ValueKind::Value)) = best
                && !self.covered(&self.key, seq)
            {
                return Some(Ok(()));
            }
        }
    }

    fn finish(&mut self) -> Option<Result<()>> {
        match self.inner.status() {
            Ok(()) => {
                self.done = true;
                None
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<()>> {
        self.done = true;
        Some(Err(e))
    }

    /// Moves to the next visible entry without allocating: `Ok(true)` when
    /// there is one, whose key and value `key()` and `value()` borrow until
    /// the next call; `Ok(false)` at the end; the error that stopped the
    /// walk otherwise (after which the iterator is done). The way to scan
    /// many entries; `Iterator::next` is this plus two copies.
    pub fn advance(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        if !self.started {
            self.start();
        }
        let step = match self.direction() {
            Direction::Forward => self.next_forward(),
            Direction::Reverse => self.next_reverse(),
        };
        match step {
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => Err(e),
            None => Ok(false),
        }
    }

    /// The user key of the entry `advance` moved to (empty before the
    /// first call).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The value of the entry `advance` moved to.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

impl Iterator for DbIterator {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(true) => Some(Ok((self.key.clone(), self.value.clone()))),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::merge::VecIterator;
    use crate::key::make_internal_key;
    use crate::range_del::RangeTombstone;

    fn entries() -> Vec<(Vec<u8>, Vec<u8>)> {
        let e = |k: &str, s: u64, kind: ValueKind, v: &str| {
            (
                make_internal_key(k.as_bytes(), s, kind),
                v.as_bytes().to_vec(),
            )
        };
        vec![
            e("a", 1, ValueKind::Value, "a1"),
            e("b", 2, ValueKind::Value, "b2"),
            e("b", 5, ValueKind::Delete, ""),
            e("c", 3, ValueKind::Value, "c3"),
            e("c", 7, ValueKind::Value, "c7"),
            e("d", 4, ValueKind::Value, "d4"),
        ]
    }

    /// An iterator over `entries()` at `read_seq` with `tombs`.
    fn iterator(read_seq: u64, opts: IterOptions, tombs: &[RangeTombstone]) -> DbIterator {
        let dir = if opts.reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        };
        let inner = Box::new(VecIterator::new(entries(), dir));
        let frags = vec![Arc::new(FragmentedTombstones::new(tombs, u64::MAX))];
        DbIterator::new(inner, read_seq, frags, opts, Vec::new())
    }

    fn run(read_seq: u64, opts: IterOptions, tombs: &[RangeTombstone]) -> Vec<(String, String)> {
        iterator(read_seq, opts, tombs)
            .map(|r| r.unwrap())
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    /// The same walk through `advance`, `key` and `value`.
    fn run_borrowing(
        read_seq: u64,
        opts: IterOptions,
        tombs: &[RangeTombstone],
    ) -> Vec<(String, String)> {
        let mut it = iterator(read_seq, opts, tombs);
        let mut out = Vec::new();
        while it.advance().unwrap() {
            out.push((
                String::from_utf8(it.key().to_vec()).unwrap(),
                String::from_utf8(it.value().to_vec()).unwrap(),
            ));
        }
        assert!(!it.advance().unwrap(), "stays at the end");
        out
    }

    #[test]
    fn borrowing_walk_matches_the_iterator() {
        // Every direction, snapshot and tombstone case yields the same
        // entries through the reused buffers as through owned items, so a
        // value of one entry never leaks into the next (a deleted newer
        // version over an older value, reverse, is the case to get wrong).
        let tomb = RangeTombstone {
            start: b"c".to_vec(),
            end: b"d".to_vec(),
            seq: 6,
        };
        for read_seq in [0, 1, 2, 4, 5, 6, 7, 100] {
            for reverse in [false, true] {
                for tombs in [vec![], vec![tomb.clone()]] {
                    let opts = IterOptions {
                        reverse,
                        ..IterOptions::default()
                    };
                    assert_eq!(
                        run_borrowing(read_seq, opts.clone(), &tombs),
                        run(read_seq, opts, &tombs),
                        "read_seq {read_seq} reverse {reverse} tombs {}",
                        tombs.len()
                    );
                }
            }
        }
        assert_eq!(
            run_borrowing(100, IterOptions::new().reversed(), &[]),
            pairs(&[("d", "d4"), ("c", "c7"), ("a", "a1")])
        );
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn iterator_shows_newest_visible_version_per_key() {
        // MVCC resolution at several read sequences, both directions.
        assert_eq!(
            run(10, IterOptions::new(), &[]),
            pairs(&[("a", "a1"), ("c", "c7"), ("d", "d4")])
        );
        assert_eq!(
            run(4, IterOptions::new(), &[]),
            pairs(&[("a", "a1"), ("b", "b2"), ("c", "c3"), ("d", "d4")])
        );
        assert_eq!(
            run(10, IterOptions::new().reversed(), &[]),
            pairs(&[("d", "d4"), ("c", "c7"), ("a", "a1")])
        );
        assert_eq!(
            run(4, IterOptions::new().reversed(), &[]),
            pairs(&[("d", "d4"), ("c", "c3"), ("b", "b2"), ("a", "a1")])
        );
    }

    #[test]
    fn bounds_are_inclusive_below_and_exclusive_above() {
        // [lower, upper) in both directions.
        let o = IterOptions::range(b"b".to_vec(), b"d".to_vec());
        assert_eq!(run(4, o.clone(), &[]), pairs(&[("b", "b2"), ("c", "c3")]));
        assert_eq!(
            run(4, o.reversed(), &[]),
            pairs(&[("c", "c3"), ("b", "b2")])
        );
    }

    #[test]
    fn range_tombstones_hide_only_older_versions() {
        // A tombstone at seq 6 over [a, d) hides c3 but not c7.
        let t = [RangeTombstone {
            start: b"a".to_vec(),
            end: b"d".to_vec(),
            seq: 6,
        }];
        assert_eq!(
            run(10, IterOptions::new(), &t),
            pairs(&[("c", "c7"), ("d", "d4")])
        );
        assert_eq!(
            run(10, IterOptions::new().reversed(), &t),
            pairs(&[("d", "d4"), ("c", "c7")])
        );
        assert_eq!(
            run(5, IterOptions::new(), &t),
            pairs(&[("a", "a1"), ("c", "c3"), ("d", "d4")])
        );
    }

    #[test]
    fn seek_repositions_within_bounds() {
        // seek lands on the first key >= target (forward) or last <= target (reverse).
        let mk = |reverse: bool| {
            let dir = if reverse {
                Direction::Reverse
            } else {
                Direction::Forward
            };
            let inner = Box::new(VecIterator::new(entries(), dir));
            let opts = IterOptions {
                reverse,
                ..IterOptions::new()
            };
            DbIterator::new(inner, 4, Vec::new(), opts, Vec::new())
        };
        let mut f = mk(false);
        f.seek(b"bb");
        assert_eq!(f.next().unwrap().unwrap().0, b"c".to_vec());
        let mut r = mk(true);
        r.seek(b"c");
        assert_eq!(r.next().unwrap().unwrap().0, b"c".to_vec());
        assert_eq!(r.next().unwrap().unwrap().0, b"b".to_vec());
    }

    #[test]
    fn prefix_successor_handles_ff_bytes() {
        // Prefix bounds for keys ending in 0xff roll over correctly.
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
    }
}
