//! Merges several sorted sources into one sorted stream.
//!
//! Children are given newest source first (memtable, immutable memtables,
//! L0 newest to oldest, then levels). The merge picks the smallest key
//! (largest in reverse) by a linear scan: with the handful of children an
//! LSM read has (one per memtable, L0 table and level), a scan beats a heap
//! and is obviously correct. Equal internal keys cannot occur (sequence
//! numbers are unique); if they did, the earlier (newer) child would win.

use super::{Direction, InternalIterator};
use crate::error::Result;
use crate::key::compare_internal;
use std::cmp::Ordering;

pub(crate) struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    dir: Direction,
    current: Option<usize>,
}

impl MergingIterator {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>, dir: Direction) -> Self {
        MergingIterator {
            children,
            dir,
            current: None,
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
        self.current.is_some() && self.status().is_ok()
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
