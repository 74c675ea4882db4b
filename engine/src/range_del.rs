//! Range tombstones and the fragmented view reads use.
//!
//! A range delete `[start, end)` at sequence `seq` hides every version of
//! every key in the range with a smaller sequence number. Range tombstones
//! live in the memtable until flush and then in the version (recorded in the
//! manifest), not in tables: they are expected to be few (Raft snapshot
//! installs, dropping a slot range) and a single in-memory list keeps reads
//! and compaction simple. A tombstone leaves the version once no table that
//! overlaps its range holds anything older than it (see
//! `Version::collectable_tombstones`), which compaction brings about by
//! dropping the entries it covers.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeTombstone {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub seq: u64,
}

impl RangeTombstone {
    pub(crate) fn covers(&self, user_key: &[u8]) -> bool {
        self.start.as_slice() <= user_key && user_key < self.end.as_slice()
    }
}

/// Tombstones cut into disjoint fragments `[bounds[i], bounds[i+1])`, each
/// with the sorted sequence numbers of the tombstones covering it.
#[derive(Debug, Default, Clone)]
pub(crate) struct FragmentedTombstones {
    bounds: Vec<Vec<u8>>,
    /// `seqs[i]` covers `[bounds[i], bounds[i+1])`; ascending.
    seqs: Vec<Vec<u64>>,
}

impl FragmentedTombstones {
    /// Fragments the tombstones a reader at `read_seq` sees.
    pub(crate) fn new<'a>(
        tombstones: impl IntoIterator<Item = &'a RangeTombstone>,
        read_seq: u64,
    ) -> Self {
        let visible: Vec<&RangeTombstone> = tombstones
            .into_iter()
            .filter(|t| t.seq <= read_seq && t.start < t.end)
            .collect();
        if visible.is_empty() {
            return FragmentedTombstones::default();
        }
        let mut points: Vec<&[u8]> = visible
            .iter()
            .flat_map(|t| [t.start.as_slice(), t.end.as_slice()])
            .collect();
        points.sort_unstable();
        points.dedup();
        // Sweep: tombstones enter at their start and leave at their end.
        let mut starts: BTreeMap<&[u8], Vec<u64>> = BTreeMap::new();
        let mut ends: BTreeMap<&[u8], Vec<u64>> = BTreeMap::new();
        for t in &visible {
            starts.entry(t.start.as_slice()).or_default().push(t.seq);
            ends.entry(t.end.as_slice()).or_default().push(t.seq);
        }
        let mut active: BTreeMap<u64, usize> = BTreeMap::new();
        let mut bounds = Vec::with_capacity(points.len());
        let mut seqs = Vec::with_capacity(points.len());
        for p in points {
            for s in ends.get(p).into_iter().flatten() {
                if let Some(c) = active.get_mut(s) {
                    *c -= 1;
                    if *c == 0 {
                        active.remove(s);
                    }
                }
            }
            for s in starts.get(p).into_iter().flatten() {
                *active.entry(*s).or_insert(0) += 1;
            }
            bounds.push(p.to_vec());
            seqs.push(active.keys().copied().collect());
        }
        FragmentedTombstones { bounds, seqs }
    }

    fn fragment(&self, user_key: &[u8]) -> Option<&[u64]> {
        // The last bound <= user_key starts the fragment holding it.
        let idx = self.bounds.partition_point(|b| b.as_slice() <= user_key);
        let i = idx.checked_sub(1)?;
        self.seqs.get(i).map(Vec::as_slice)
    }

    /// True when no tombstone covers anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.seqs.iter().all(Vec::is_empty)
    }

    /// Largest sequence number `<= read_seq` of a tombstone covering
    /// `user_key`, or 0: what a reader at `read_seq` must compare against.
    pub(crate) fn max_seq_at(&self, user_key: &[u8], read_seq: u64) -> u64 {
        let Some(seqs) = self.fragment(user_key) else {
            return 0;
        };
        let i = seqs.partition_point(|&s| s <= read_seq);
        i.checked_sub(1)
            .and_then(|i| seqs.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// True when some tombstone covering `user_key` has a sequence number in
    /// `(lo, hi]`: a version at `lo` is hidden by it for every reader that
    /// sees anything up to `hi`.
    pub(crate) fn covers_between(&self, user_key: &[u8], lo: u64, hi: u64) -> bool {
        let Some(seqs) = self.fragment(user_key) else {
            return false;
        };
        let i = seqs.partition_point(|&s| s <= lo);
        seqs.get(i).is_some_and(|&s| s <= hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start: &str, end: &str, seq: u64) -> RangeTombstone {
        RangeTombstone {
            start: start.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
            seq,
        }
    }

    #[test]
    fn overlapping_tombstones_fragment_to_max_seq() {
        // The covering sequence number at each key is the max of all covering tombstones.
        let ts = [t("b", "f", 5), t("d", "h", 9), t("x", "y", 3)];
        let f = FragmentedTombstones::new(&ts, u64::MAX);
        assert_eq!(f.max_seq_at(b"a", u64::MAX), 0);
        assert_eq!(f.max_seq_at(b"b", u64::MAX), 5);
        assert_eq!(f.max_seq_at(b"d", u64::MAX), 9);
        assert_eq!(f.max_seq_at(b"f", u64::MAX), 9);
        assert_eq!(f.max_seq_at(b"h", u64::MAX), 0);
        assert_eq!(f.max_seq_at(b"x", u64::MAX), 3);
        assert_eq!(f.max_seq_at(b"y", u64::MAX), 0);
    }

    #[test]
    fn tombstones_above_read_seq_are_invisible() {
        // A snapshot does not see range deletes written after it.
        let ts = [t("a", "z", 10)];
        assert_eq!(
            FragmentedTombstones::new(&ts, 9).max_seq_at(b"m", u64::MAX),
            0
        );
        assert_eq!(
            FragmentedTombstones::new(&ts, 10).max_seq_at(b"m", u64::MAX),
            10
        );
    }

    #[test]
    fn covers_between_finds_tombstone_in_window() {
        // Compaction's question: is there a covering tombstone in (lo, hi]?
        let ts = [t("a", "m", 4), t("c", "e", 20)];
        let f = FragmentedTombstones::new(&ts, u64::MAX);
        assert!(f.covers_between(b"d", 3, 10));
        assert!(!f.covers_between(b"d", 4, 10));
        assert!(f.covers_between(b"d", 4, 20));
        assert!(!f.covers_between(b"z", 0, u64::MAX));
    }

    #[test]
    fn max_seq_at_ignores_tombstones_newer_than_reader() {
        // A fragment built once for all readers answers per read sequence.
        let ts = [t("a", "m", 4), t("c", "e", 20)];
        let f = FragmentedTombstones::new(&ts, u64::MAX);
        assert_eq!(f.max_seq_at(b"d", 19), 4);
        assert_eq!(f.max_seq_at(b"d", 20), 20);
        assert_eq!(f.max_seq_at(b"d", 3), 0);
    }

    #[test]
    fn empty_and_inverted_ranges_cover_nothing() {
        // start >= end is a no-op tombstone.
        let ts = [t("m", "m", 5), t("q", "b", 6)];
        let f = FragmentedTombstones::new(&ts, u64::MAX);
        assert!(f.bounds.is_empty());
        assert_eq!(f.max_seq_at(b"m", u64::MAX), 0);
    }
}
