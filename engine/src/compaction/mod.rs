//! Leveled compaction: which tables to merge next (`pick`), and the merge
//! itself (`job`).
//!
//! Scores: L0 scores `files / l0_compaction_trigger`; level L >= 1 scores
//! `bytes / (max_bytes_for_level_base * ratio^(L-1))`. The highest score of
//! at least 1 is compacted into the next level. An L0 compaction takes every
//! L0 table (they overlap, and taking all of them keeps "a newer version is
//! always above an older one" true); a deeper level takes one table, chosen
//! round-robin after the level's compaction pointer, plus everything it
//! overlaps in the next level. Tables already being compacted are skipped,
//! so several compactions can run at once on disjoint tables.

pub(crate) mod job;

use crate::options::Options;
use crate::version::{FileMeta, Version};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

/// A chosen set of input tables.
#[derive(Debug, Clone)]
pub(crate) struct Compaction {
    pub level: usize,
    /// `level + 1`, or `level` itself when the last level is rewritten in
    /// place (a manual compaction's final step).
    output_level: usize,
    /// Tables from `level`.
    pub inputs: Vec<Arc<FileMeta>>,
    /// Overlapping tables from the output level (none when it is `level`).
    pub next_inputs: Vec<Arc<FileMeta>>,
    /// The version the inputs were chosen from.
    pub version: Arc<Version>,
}

impl Compaction {
    pub(crate) fn output_level(&self) -> usize {
        self.output_level
    }

    pub(crate) fn all_inputs(&self) -> impl Iterator<Item = &Arc<FileMeta>> {
        self.inputs.iter().chain(self.next_inputs.iter())
    }

    pub(crate) fn input_bytes(&self) -> u64 {
        self.all_inputs().map(|f| f.size).sum()
    }

    /// Nothing below to merge with: move the tables without rewriting them.
    /// Below L0 any number of tables (they do not overlap one another; a
    /// manual compaction takes every table of a level in its range, and
    /// rewrote them all at every level on their way down); from L0, all of
    /// it, when no two of its tables share a user key (a sequential load
    /// flushes tables like that).
    pub(crate) fn is_trivial_move(&self) -> bool {
        self.output_level > self.level
            && self.next_inputs.is_empty()
            && !self.inputs.is_empty()
            && (self.level > 0
                || (self.inputs.len() == self.version.files(0).len() && disjoint(&self.inputs)))
    }

    /// Largest internal key among the inputs of `level` (the next
    /// round-robin starting point).
    pub(crate) fn largest_input_key(&self) -> Vec<u8> {
        self.inputs
            .iter()
            .map(|f| &f.largest)
            .max_by(|a, b| crate::key::compare_internal(a, b))
            .cloned()
            .unwrap_or_default()
    }

    fn new(version: &Arc<Version>, level: usize, inputs: Vec<Arc<FileMeta>>) -> Compaction {
        let lo = inputs
            .iter()
            .map(|f| f.smallest_user_key())
            .min()
            .map(<[u8]>::to_vec);
        let hi = inputs
            .iter()
            .map(|f| f.largest_user_key())
            .max()
            .map(<[u8]>::to_vec);
        let next_inputs = version.overlapping(level + 1, lo.as_deref(), hi.as_deref());
        Compaction {
            level,
            output_level: level + 1,
            inputs,
            next_inputs,
            version: version.clone(),
        }
    }
}

/// True when no two of `files` hold the same user key.
fn disjoint(files: &[Arc<FileMeta>]) -> bool {
    let mut sorted: Vec<&Arc<FileMeta>> = files.iter().collect();
    sorted.sort_by(|a, b| a.smallest_user_key().cmp(b.smallest_user_key()));
    sorted
        .windows(2)
        .all(|w| matches!(w, [a, b] if a.largest_user_key() < b.smallest_user_key()))
}

/// Target bytes of `level` (>= 1).
pub(crate) fn max_bytes_for_level(opts: &Options, level: usize) -> u64 {
    let mut bytes = opts.max_bytes_for_level_base;
    for _ in 1..level {
        bytes = bytes.saturating_mul(opts.level_size_ratio);
    }
    bytes
}

/// Compaction scores, highest first: `(score, level)` for levels that may
/// be compacted into a next level.
pub(crate) fn scores(version: &Version, opts: &Options) -> Vec<(f64, usize)> {
    let last = version.num_levels().saturating_sub(1);
    let mut out: Vec<(f64, usize)> = (0..last)
        .map(|level| {
            let score = if level == 0 {
                version.files(0).len() as f64 / opts.l0_compaction_trigger.max(1) as f64
            } else {
                version.level_bytes(level) as f64 / max_bytes_for_level(opts, level) as f64
            };
            (score, level)
        })
        .collect();
    out.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal));
    out
}

/// The most urgent compaction whose tables are all free: a level over its
/// size first; otherwise a table holding data that a range tombstone hides.
pub(crate) fn pick(
    version: &Arc<Version>,
    opts: &Options,
    busy: &HashSet<u64>,
    oldest_snapshot: Option<u64>,
    pointer: impl Fn(usize) -> Vec<u8>,
) -> Option<Compaction> {
    pick_by_size(version, opts, busy, pointer)
        .or_else(|| pick_by_tombstone(version, busy, oldest_snapshot))
}

/// A table below L0 that still holds versions a range tombstone hides,
/// compacted into the next level (or rewritten in place at the last), so
/// the space comes back and the tombstone can be collected without a
/// manual compaction. Only tombstones every snapshot sees qualify: those
/// are applied in full, so the rewrite settles the table for good (its
/// `range_del_seq` then covers the tombstone) and is never picked again.
fn pick_by_tombstone(
    version: &Arc<Version>,
    busy: &HashSet<u64>,
    oldest_snapshot: Option<u64>,
) -> Option<Compaction> {
    let last = version.num_levels().checked_sub(1)?;
    let settled = |seq: u64| oldest_snapshot.is_none_or(|s| seq <= s);
    for level in 1..=last {
        for f in version.files(level) {
            let hides = version
                .range_tombstones
                .iter()
                .any(|t| settled(t.seq) && f.may_hide_under(t));
            if !hides || busy.contains(&f.number) {
                continue;
            }
            let c = if level == last {
                Compaction {
                    level,
                    output_level: level,
                    inputs: vec![f.clone()],
                    next_inputs: Vec::new(),
                    version: version.clone(),
                }
            } else {
                Compaction::new(version, level, vec![f.clone()])
            };
            if c.all_inputs().all(|f| !busy.contains(&f.number)) {
                return Some(c);
            }
        }
    }
    None
}

fn pick_by_size(
    version: &Arc<Version>,
    opts: &Options,
    busy: &HashSet<u64>,
    pointer: impl Fn(usize) -> Vec<u8>,
) -> Option<Compaction> {
    let is_free = |files: &[Arc<FileMeta>]| files.iter().all(|f| !busy.contains(&f.number));
    for (score, level) in scores(version, opts) {
        if score < 1.0 {
            break;
        }
        let candidates: Vec<Vec<Arc<FileMeta>>> = if level == 0 {
            vec![version.files(0).to_vec()]
        } else {
            round_robin(version.files(level), &pointer(level))
                .into_iter()
                .map(|f| vec![f])
                .collect()
        };
        for inputs in candidates {
            if inputs.is_empty() || !is_free(&inputs) {
                continue;
            }
            let c = Compaction::new(version, level, inputs);
            if is_free(&c.next_inputs) {
                return Some(c);
            }
        }
    }
    None
}

/// The tables of a level in round-robin order: those after `pointer` first.
fn round_robin(files: &[Arc<FileMeta>], pointer: &[u8]) -> Vec<Arc<FileMeta>> {
    let start = if pointer.is_empty() {
        0
    } else {
        files.partition_point(|f| {
            crate::key::compare_internal(&f.largest, pointer) != Ordering::Greater
        })
    };
    files
        .iter()
        .skip(start)
        .chain(files.iter().take(start))
        .cloned()
        .collect()
}

/// A manual rewrite, in place, of last-level tables overlapping `[lo, hi]`:
/// the only way data already at the bottom meets the compaction filter, a
/// range tombstone or its own obsolete tombstones again.
///
/// Tables numbered `written_from` or above are left alone: the same manual
/// compaction wrote them, with nothing below their key range (a table
/// that overlapped anything deeper would have been merged on its way
/// down, not moved), so they already had every drop a rewrite would make,
/// and rewriting them cost a second full pass (RocksDB's
/// `kForceOptimized` skips them too). Each call returns the first run of
/// consecutive older tables, so that outputs, cut by size, stay inside the
/// run's span and cannot overlap a table left alone; the caller repeats
/// until `None` (each rewrite turns older tables into newer ones).
pub(crate) fn bottommost_for_range(
    version: &Arc<Version>,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    written_from: u64,
) -> Option<Compaction> {
    let level = version.num_levels().checked_sub(1)?;
    let inputs: Vec<Arc<FileMeta>> = version
        .overlapping(level, lo, hi)
        .into_iter()
        .skip_while(|f| f.number >= written_from)
        .take_while(|f| f.number < written_from)
        .collect();
    (!inputs.is_empty()).then(|| Compaction {
        level,
        output_level: level,
        inputs,
        next_inputs: Vec::new(),
        version: version.clone(),
    })
}

/// A manual compaction of `level`'s tables overlapping `[lo, hi]` into the
/// next level, or `None` when there are none.
pub(crate) fn for_range(
    version: &Arc<Version>,
    level: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
) -> Option<Compaction> {
    let inputs = if level == 0 {
        // All of L0 if any of it overlaps: see the module comment.
        let any = !version.overlapping(0, lo, hi).is_empty();
        if any {
            version.files(0).to_vec()
        } else {
            Vec::new()
        }
    } else {
        version.overlapping(level, lo, hi)
    };
    (!inputs.is_empty()).then(|| Compaction::new(version, level, inputs))
}
