//! Merges several sorted sources into one sorted stream.
//!
//! Children are given newest source first (memtable, immutable memtables,
//! L0 newest to oldest, then levels). The merge picks the smallest key
//! (largest in reverse) by a linear scan: with the handful of children an
//! LSM read has (one per memtable, L0 table and level), a scan beats a heap
//! and is obviously correct (a binary heap measured no faster with the
//! two to five children of the benchmarks, and slower with two). Equal
//! internal keys cannot occur (sequence numbers are unique); if they did,
//! the earlier (newer) child would win.
//!
//! A child that stops being valid drops out; if it stopped on an error
//! (`InternalIterator::status`), the merge stops too, so no source is
//! silently skipped.

use super::{Direction, InternalIterator};
use crate::error::Result;
use crate::key::compare_internal;
use std::cmp::Ordering;

pub(crate) struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    dir: Direction,
    current: Option<usize>,
    /// A child stopped on an error: the merge is invalid from then on.
    failed: bool,
}

impl MergingIterator {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>, dir: Direction) -> Self {
        MergingIterator {
            children,
            dir,
            current: None,
            failed: false,
        }
    }

    fn find_current(&mut self) {
        let want = match self.dir {
            Direction::Forward => Ordering::Less,
            Direction::Reverse => Ordering::Greater,
        };
        let mut best: Option<usize> = None;
        for (i, child) in self.children.iter().enumerate() {
            if !child.valid() {
                // Errors are sticky and rare: checked only for children
                // out of entries, not on every `valid()` of the merge.
                self.failed |= child.status().is_err();
                continue;
            }
            best = match best.and_then(|b| self.children.get(b)) {
                Some(b) if compare_internal(child.key(), b.key()) != want => best,
                _ => Some(i),
            };
        }
        self.current = best;
    }

    fn current_child(&self) -> Option<&dyn InternalIterator> {
        self.current
            .and_then(|i| self.children.get(i))
            .map(|c| c.as_ref())
    }
}

impl InternalIterator for MergingIterator {
    fn seek_to_first(&mut self) {
        for c in &mut self.children {
            c.seek_to_first();
        }
        self.find_current();
    }

    fn seek(&mut self, target: &[u8]) {
        for c in &mut self.children {
            c.seek(target);
        }
        self.find_current();
    }

    fn next(&mut self) {
        if let Some(c) = self.current.and_then(|i| self.children.get_mut(i)) {
            c.next();
        }
        self.find_current();
    }

    fn valid(&self) -> bool {
        self.current.is_some() && !self.failed
    }

    fn key(&self) -> &[u8] {
        self.current_child().map(|c| c.key()).unwrap_or(&[])
    }

    fn value(&self) -> &[u8] {
        self.current_child().map(|c| c.value()).unwrap_or(&[])
    }

    fn status(&self) -> Result<()> {
        self.children.iter().try_for_each(|c| c.status())
    }
}

/// An iterator over a `Vec` of entries, for tests of everything built on
/// `InternalIterator`.
#[cfg(test)]
pub(crate) struct VecIterator {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    dir: Direction,
    pos: Option<usize>,
}

#[cfg(test)]
impl VecIterator {
    pub(crate) fn new(mut entries: Vec<(Vec<u8>, Vec<u8>)>, dir: Direction) -> Self {
        entries.sort_by(|a, b| compare_internal(&a.0, &b.0));
        VecIterator {
            entries,
            dir,
            pos: None,
        }
    }
}

#[cfg(test)]
impl InternalIterator for VecIterator {
    fn seek_to_first(&mut self) {
        self.pos = match self.dir {
            Direction::Forward => (!self.entries.is_empty()).then_some(0),
            Direction::Reverse => self.entries.len().checked_sub(1),
        };
    }
    fn seek(&mut self, target: &[u8]) {
        let ge = self
            .entries
            .partition_point(|e| compare_internal(&e.0, target) == Ordering::Less);
        let gt = self
            .entries
            .partition_point(|e| compare_internal(&e.0, target) != Ordering::Greater);
        self.pos = match self.dir {
            Direction::Forward => (ge < self.entries.len()).then_some(ge),
            Direction::Reverse => gt.checked_sub(1),
        };
    }
    fn next(&mut self) {
        self.pos = match (self.dir, self.pos) {
            (Direction::Forward, Some(p)) => (p + 1 < self.entries.len()).then_some(p + 1),
            (Direction::Reverse, Some(p)) => p.checked_sub(1),
            (_, None) => None,
        };
    }
    fn valid(&self) -> bool {
        self.pos.is_some()
    }
    fn key(&self) -> &[u8] {
        self.pos
            .and_then(|p| self.entries.get(p))
            .map(|e| &e.0[..])
            .unwrap_or(&[])
    }
    fn value(&self) -> &[u8] {
        self.pos
            .and_then(|p| self.entries.get(p))
            .map(|e| &e.1[..])
            .unwrap_or(&[])
    }
    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, make_internal_key, user_key};

    fn src(keys: &[(&str, u64)], dir: Direction) -> Box<dyn InternalIterator> {
        let entries = keys
            .iter()
            .map(|(k, s)| {
                (
                    make_internal_key(k.as_bytes(), *s, ValueKind::Value),
                    s.to_string().into_bytes(),
                )
            })
            .collect();
        Box::new(VecIterator::new(entries, dir))
    }

    fn drain(it: &mut MergingIterator) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while it.valid() {
            let p = crate::key::parse_internal_key(it.key()).unwrap();
            out.push((
                String::from_utf8(user_key(it.key()).to_vec()).unwrap(),
                p.seq,
            ));
            it.next();
        }
        out
    }

    #[test]
    fn merge_interleaves_sources_in_internal_key_order() {
        // Forward merge yields user keys ascending, newer versions first.
        let mut m = MergingIterator::new(
            vec![
                src(&[("b", 9), ("d", 8)], Direction::Forward),
                src(&[("a", 1), ("b", 2), ("e", 3)], Direction::Forward),
            ],
            Direction::Forward,
        );
        m.seek_to_first();
        let got = drain(&mut m);
        let want = [("a", 1), ("b", 9), ("b", 2), ("d", 8), ("e", 3)];
        assert_eq!(
            got,
            want.iter()
                .map(|(k, s)| (k.to_string(), *s))
                .collect::<Vec<_>>()
        );
    }

    /// Entries `(internal key, value)` from a seeded stream: user keys
    /// `k000`..`k049` (so sources share keys), unique sequence numbers.
    fn random_sources(seed: u64, sources: usize) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut x = seed | 1;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut seq = 0;
        (0..sources)
            .map(|_| {
                (0..rand(40))
                    .map(|_| {
                        seq += 1;
                        let k = format!("k{:03}", rand(50));
                        let ikey = make_internal_key(k.as_bytes(), seq, ValueKind::Value);
                        (ikey, seq.to_string().into_bytes())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn merge_of_many_sources_matches_one_sorted_list() {
        // Whatever the number of sources (none, empty ones, up to nine),
        // a walk from the start and from any seek target yields exactly the
        // sorted union, in both directions.
        for seed in 1..200u64 {
            let sources = random_sources(seed, (seed % 10) as usize);
            let mut all: Vec<_> = sources.iter().flatten().cloned().collect();
            all.sort_by(|a, b| compare_internal(&a.0, &b.0));
            for dir in [Direction::Forward, Direction::Reverse] {
                let children = sources
                    .iter()
                    .map(|s| {
                        Box::new(VecIterator::new(s.clone(), dir)) as Box<dyn InternalIterator>
                    })
                    .collect();
                let mut m = MergingIterator::new(children, dir);
                let mut want = all.clone();
                if dir == Direction::Reverse {
                    want.reverse();
                }
                m.seek_to_first();
                let mut got = Vec::new();
                while m.valid() {
                    got.push((m.key().to_vec(), m.value().to_vec()));
                    m.next();
                }
                assert_eq!(got, want, "seed {seed} {dir:?}");
                for t in 0..52u32 {
                    let target = crate::key::lookup_key(format!("k{t:03}").as_bytes(), 60);
                    m.seek(&target);
                    let first = want.iter().find(|(k, _)| match dir {
                        Direction::Forward => compare_internal(k, &target) != Ordering::Less,
                        Direction::Reverse => compare_internal(k, &target) != Ordering::Greater,
                    });
                    let got = m.valid().then(|| m.key().to_vec());
                    assert_eq!(
                        got,
                        first.map(|(k, _)| k.clone()),
                        "seed {seed} {dir:?} seek {t}"
                    );
                }
            }
        }
    }

    /// Yields its entries, then fails instead of ending.
    struct FailingIterator {
        inner: VecIterator,
        failed: bool,
    }

    impl InternalIterator for FailingIterator {
        fn seek_to_first(&mut self) {
            self.inner.seek_to_first();
        }
        fn seek(&mut self, target: &[u8]) {
            self.inner.seek(target);
        }
        fn next(&mut self) {
            self.inner.next();
            self.failed |= !self.inner.valid();
        }
        fn valid(&self) -> bool {
            !self.failed && self.inner.valid()
        }
        fn key(&self) -> &[u8] {
            self.inner.key()
        }
        fn value(&self) -> &[u8] {
            self.inner.value()
        }
        fn status(&self) -> Result<()> {
            if self.failed {
                Err(crate::error::Error::corruption("<test>", 0, "injected"))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_child_that_fails_stops_the_merge() {
        // A child that stops on an error must not just drop out of the
        // merge (its remaining keys would silently vanish): the merge turns
        // invalid with the error, though other children have more.
        let failing = FailingIterator {
            inner: VecIterator::new(
                vec![(make_internal_key(b"b", 5, ValueKind::Value), b"5".to_vec())],
                Direction::Forward,
            ),
            failed: false,
        };
        let mut m = MergingIterator::new(
            vec![
                src(&[("a", 1), ("c", 2), ("d", 3)], Direction::Forward),
                Box::new(failing),
            ],
            Direction::Forward,
        );
        m.seek_to_first();
        assert_eq!(drain(&mut m), [("a".to_string(), 1), ("b".to_string(), 5)]);
        assert!(!m.valid());
        assert!(m.status().is_err());
    }

    #[test]
    fn reverse_merge_is_exact_reverse_of_forward() {
        // The reverse merge visits the same entries in the opposite order.
        let a = [("b", 9), ("d", 8)];
        let b = [("a", 1), ("b", 2), ("e", 3)];
        let mut f = MergingIterator::new(
            vec![src(&a, Direction::Forward), src(&b, Direction::Forward)],
            Direction::Forward,
        );
        let mut r = MergingIterator::new(
            vec![src(&a, Direction::Reverse), src(&b, Direction::Reverse)],
            Direction::Reverse,
        );
        f.seek_to_first();
        r.seek_to_first();
        let mut fwd = drain(&mut f);
        fwd.reverse();
        assert_eq!(fwd, drain(&mut r));
    }
}
