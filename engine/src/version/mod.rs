//! The set of live tables: `Version` (an immutable snapshot of which tables
//! are in which level, plus the persisted range tombstones), `VersionEdit`
//! (a change, as logged in the manifest) and `VersionSet` (the manifest
//! writer that turns edits into new versions).
//!
//! Invariants of a version (checked by `VersionBuilder::build`):
//! - L0 tables may overlap; they are ordered newest first.
//! - In L1 and below, tables are ordered by key and do not overlap by user
//!   key (compaction only cuts between user keys).
//! - For one user key, a version in a higher level (or a newer L0 table) is
//!   newer than every version below it.
//!
//! A table file is deleted only when it is no longer in the current version
//! *and* no reader holds a version that names it: each `FileMeta` is shared
//! by `Arc`, and the one dropped last, once marked obsolete, reclaims the file.

pub(crate) mod edit;
pub(crate) mod set;

use crate::key;
use crate::range_del::{FragmentedTombstones, RangeTombstone};
use edit::{NewFile, VersionEdit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// Deletes a table file once nothing references it.
pub(crate) trait FileReclaimer: Send + Sync {
    fn reclaim(&self, number: u64);
}

/// One live table.
pub(crate) struct FileMeta {
    pub number: u64,
    pub size: u64,
    /// Smallest and largest internal keys in the table.
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub smallest_seq: u64,
    pub largest_seq: u64,
    pub num_entries: u64,
    pub num_deletions: u64,
    /// Range tombstones up to this sequence are applied to the entries.
    pub range_del_seq: u64,
    obsolete: AtomicBool,
    reclaimer: Option<Weak<dyn FileReclaimer>>,
}

impl std::fmt::Debug for FileMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMeta")
            .field("number", &self.number)
            .field("size", &self.size)
            .field("smallest_seq", &self.smallest_seq)
            .field("largest_seq", &self.largest_seq)
            .finish()
    }
}

impl FileMeta {
    pub(crate) fn from_new_file(
        f: &NewFile,
        reclaimer: Option<Weak<dyn FileReclaimer>>,
    ) -> FileMeta {
        FileMeta {
            number: f.number,
            size: f.size,
            smallest: f.smallest.clone(),
            largest: f.largest.clone(),
            smallest_seq: f.smallest_seq,
            largest_seq: f.largest_seq,
            num_entries: f.num_entries,
            num_deletions: f.num_deletions,
            range_del_seq: f.range_del_seq,
            obsolete: AtomicBool::new(false),
            reclaimer,
        }
    }

    pub(crate) fn to_new_file(&self, level: usize) -> NewFile {
        NewFile {
            level,
            number: self.number,
            size: self.size,
            smallest: self.smallest.clone(),
            largest: self.largest.clone(),
            smallest_seq: self.smallest_seq,
            largest_seq: self.largest_seq,
            num_entries: self.num_entries,
            num_deletions: self.num_deletions,
            range_del_seq: self.range_del_seq,
        }
    }

    pub(crate) fn smallest_user_key(&self) -> &[u8] {
        key::user_key(&self.smallest)
    }

    pub(crate) fn largest_user_key(&self) -> &[u8] {
        key::user_key(&self.largest)
    }

    /// True when the table's user-key range intersects `[lo, hi]`
    /// (`None` = unbounded on that side).
    pub(crate) fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        let below = hi.is_some_and(|hi| self.smallest_user_key() > hi);
        let above = lo.is_some_and(|lo| self.largest_user_key() < lo);
        !below && !above
    }

    pub(crate) fn contains_user_key(&self, user_key: &[u8]) -> bool {
        self.smallest_user_key() <= user_key && user_key <= self.largest_user_key()
    }

    /// True when this table may still hold versions that `t` hides: it
    /// overlaps the range, holds something older than `t`, and no compaction
    /// has applied `t` to it yet.
    pub(crate) fn may_hide_under(&self, t: &RangeTombstone) -> bool {
        let overlaps = self.smallest_user_key() < t.end.as_slice()
            && t.start.as_slice() <= self.largest_user_key();
        overlaps && self.smallest_seq < t.seq && self.range_del_seq < t.seq
    }

    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for FileMeta {
    fn drop(&mut self) {
        if !self.obsolete.load(Ordering::Acquire) {
            return;
        }
        if let Some(r) = self.reclaimer.as_ref().and_then(Weak::upgrade) {
            r.reclaim(self.number);
        }
    }
}

/// An immutable view of the live tables and range tombstones.
#[derive(Debug, Default)]
pub(crate) struct Version {
    pub levels: Vec<Vec<Arc<FileMeta>>>,
    /// Range tombstones flushed from memtables, ascending by sequence.
    pub range_tombstones: Vec<RangeTombstone>,
    /// The same tombstones fragmented once, for reads at any sequence.
    pub fragments: Arc<FragmentedTombstones>,
}

impl Version {
    pub(crate) fn num_levels(&self) -> usize {
        self.levels.len()
    }

    pub(crate) fn files(&self, level: usize) -> &[Arc<FileMeta>] {
        self.levels.get(level).map(Vec::as_slice).unwrap_or(&[])
    }

    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.files(level).iter().map(|f| f.size).sum()
    }

    pub(crate) fn all_files(&self) -> impl Iterator<Item = (usize, &Arc<FileMeta>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(level, files)| files.iter().map(move |f| (level, f)))
    }

    /// The tables of `level` whose user-key range intersects `[lo, hi]`.
    pub(crate) fn overlapping(
        &self,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Vec<Arc<FileMeta>> {
        self.files(level)
            .iter()
            .filter(|f| f.overlaps(lo, hi))
            .cloned()
            .collect()
    }

    /// The tables that may hold `user_key`, in the order a point lookup must
    /// search them (newest first): every matching L0 table, then at most one
    /// table per deeper level.
    pub(crate) fn tables_for_key(&self, user_key: &[u8]) -> Vec<Arc<FileMeta>> {
        let mut out: Vec<Arc<FileMeta>> = self
            .files(0)
            .iter()
            .filter(|f| f.contains_user_key(user_key))
            .cloned()
            .collect();
        for files in self.levels.iter().skip(1) {
            let i = files.partition_point(|f| f.largest_user_key() < user_key);
            if let Some(f) = files.get(i).filter(|f| f.smallest_user_key() <= user_key) {
                out.push(f.clone());
            }
        }
        out
    }

    /// Sequence numbers of range tombstones that no longer hide anything:
    /// every table overlapping the range is newer than the tombstone or has
    /// already had it applied.
    /// (Memtables only hold newer writes than any flushed tombstone.)
    pub(crate) fn collectable_tombstones(&self) -> Vec<u64> {
        self.range_tombstones
            .iter()
            .filter(|t| !self.all_files().any(|(_, f)| f.may_hide_under(t)))
            .map(|t| t.seq)
            .collect()
    }
}

/// Accumulates edits on top of a base version.
pub(crate) struct VersionBuilder {
    levels: Vec<BTreeMap<u64, Arc<FileMeta>>>,
    tombstones: BTreeMap<u64, RangeTombstone>,
    reclaimer: Option<Weak<dyn FileReclaimer>>,
    /// Tables the applied edits removed (and did not re-add).
    removed: BTreeMap<u64, Arc<FileMeta>>,
}

impl VersionBuilder {
    pub(crate) fn new(
        base: &Version,
        num_levels: usize,
        reclaimer: Option<Weak<dyn FileReclaimer>>,
    ) -> Self {
        let mut levels = vec![BTreeMap::new(); num_levels];
        for (level, f) in base.all_files() {
            if let Some(l) = levels.get_mut(level) {
                l.insert(f.number, f.clone());
            }
        }
        let tombstones = base
            .range_tombstones
            .iter()
            .map(|t| (t.seq, t.clone()))
            .collect();
        VersionBuilder {
            levels,
            tombstones,
            reclaimer,
            removed: BTreeMap::new(),
        }
    }

    /// Applies one edit; an edit that names a missing file or level is an
    /// error (corruption when replaying the manifest, a bug otherwise).
    pub(crate) fn apply(&mut self, edit: &VersionEdit) -> Result<(), String> {
        let moved = &mut self.removed;
        for (level, number) in &edit.deleted_files {
            let files = self
                .levels
                .get_mut(*level)
                .ok_or_else(|| format!("level {level} out of range"))?;
            let f = files
                .remove(number)
                .ok_or_else(|| format!("deleted table {number} is not in level {level}"))?;
            moved.insert(*number, f);
        }
        for nf in &edit.new_files {
            let files = self
                .levels
                .get_mut(nf.level)
                .ok_or_else(|| format!("level {} out of range", nf.level))?;
            // A table moved between levels keeps its FileMeta (and its file).
            let meta = moved
                .remove(&nf.number)
                .unwrap_or_else(|| Arc::new(FileMeta::from_new_file(nf, self.reclaimer.clone())));
            if files.insert(nf.number, meta).is_some() {
                return Err(format!(
                    "table {} added twice to level {}",
                    nf.number, nf.level
                ));
            }
        }
        for t in &edit.range_tombstones {
            self.tombstones.insert(t.seq, t.clone());
        }
        for seq in &edit.dropped_tombstones {
            self.tombstones.remove(seq);
        }
        Ok(())
    }

    /// The new version, and the tables it no longer names. The caller marks
    /// those obsolete only once the edit is durable in the manifest: a table
    /// the on-disk manifest still names must never be deleted.
    pub(crate) fn build(self) -> Result<(Version, Vec<Arc<FileMeta>>), String> {
        let mut levels = Vec::with_capacity(self.levels.len());
        for (level, files) in self.levels.into_iter().enumerate() {
            let mut files: Vec<Arc<FileMeta>> = files.into_values().collect();
            if level == 0 {
                files.sort_by(|a, b| {
                    b.largest_seq
                        .cmp(&a.largest_seq)
                        .then(b.number.cmp(&a.number))
                });
            } else {
                files.sort_by(|a, b| key::compare_internal(&a.smallest, &b.smallest));
                for pair in files.windows(2) {
                    if let [a, b] = pair
                        && a.largest_user_key() >= b.smallest_user_key()
                    {
                        return Err(format!(
                            "tables {} and {} overlap in level {level}",
                            a.number, b.number
                        ));
                    }
                }
            }
            levels.push(files);
        }
        let range_tombstones: Vec<RangeTombstone> = self.tombstones.into_values().collect();
        let version = Version {
            levels,
            fragments: Arc::new(FragmentedTombstones::new(&range_tombstones, u64::MAX)),
            range_tombstones,
        };
        Ok((version, self.removed.into_values().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, make_internal_key};

    fn nf(level: usize, number: u64, lo: &str, hi: &str, seqs: (u64, u64)) -> NewFile {
        NewFile {
            level,
            number,
            size: 100,
            smallest: make_internal_key(lo.as_bytes(), seqs.1, ValueKind::Value),
            largest: make_internal_key(hi.as_bytes(), seqs.0, ValueKind::Value),
            smallest_seq: seqs.0,
            largest_seq: seqs.1,
            num_entries: 1,
            num_deletions: 0,
            range_del_seq: 0,
        }
    }

    fn build(edits: &[VersionEdit]) -> Result<Version, String> {
        let mut b = VersionBuilder::new(&Version::default(), 4, None);
        for e in edits {
            b.apply(e)?;
        }
        b.build().map(|(v, _)| v)
    }

    #[test]
    fn lookup_order_is_newest_l0_first_then_one_table_per_level() {
        // Point lookups search tables from newest to oldest.
        let e = VersionEdit {
            new_files: vec![
                nf(0, 5, "a", "z", (10, 20)),
                nf(0, 6, "a", "z", (21, 30)),
                nf(1, 3, "a", "f", (1, 5)),
                nf(1, 4, "g", "m", (1, 5)),
            ],
            ..Default::default()
        };
        let v = build(&[e]).unwrap();
        let order: Vec<u64> = v.tables_for_key(b"h").iter().map(|f| f.number).collect();
        assert_eq!(order, vec![6, 5, 4]);
    }

    #[test]
    fn overlapping_tables_below_l0_are_rejected() {
        // The level invariant is checked whenever a version is built.
        let e = VersionEdit {
            new_files: vec![nf(1, 3, "a", "f", (1, 5)), nf(1, 4, "f", "m", (1, 5))],
            ..Default::default()
        };
        assert!(build(&[e]).is_err());
    }

    #[test]
    fn deleting_a_missing_table_is_an_error() {
        // A manifest naming a table it never added is corrupt.
        let e = VersionEdit {
            deleted_files: vec![(1, 99)],
            ..Default::default()
        };
        assert!(build(&[e]).is_err());
    }

    #[test]
    fn tombstone_is_collectable_only_when_no_older_data_overlaps() {
        // A range tombstone stays while any overlapping table holds older versions.
        let add = VersionEdit {
            new_files: vec![nf(1, 3, "a", "f", (1, 5))],
            range_tombstones: vec![RangeTombstone {
                start: b"b".to_vec(),
                end: b"d".to_vec(),
                seq: 9,
            }],
            ..Default::default()
        };
        let v = build(std::slice::from_ref(&add)).unwrap();
        assert!(v.collectable_tombstones().is_empty());
        let replace = VersionEdit {
            deleted_files: vec![(1, 3)],
            new_files: vec![nf(2, 7, "a", "f", (10, 12))],
            ..Default::default()
        };
        let v = build(&[add, replace]).unwrap();
        assert_eq!(v.collectable_tombstones(), vec![9]);
    }
}
