//! The compaction merge: read the inputs as one sorted stream, drop what no
//! reader can see, write the rest as tables of about the target size.
//!
//! What is dropped (`snapshots` are the sequence numbers of live snapshots;
//! a snapshot at S sees versions with seq <= S):
//! - A version hidden by a newer version of the same key, when no snapshot
//!   lies in `[older.seq, newer.seq)` (no reader sees the older one).
//! - A version hidden by a range tombstone with seq in `(v.seq, S_next]`,
//!   where `S_next` is the first snapshot >= `v.seq` (or any, when none).
//! - A point tombstone, when no snapshot is older than it and no deeper
//!   level holds the key (nothing left for it to hide).
//! - The compaction filter may turn the newest version of a key, when no
//!   snapshot sees it, into a tombstone (then subject to the rule above).
//!
//! Outputs are cut only between user keys, so levels never overlap.

use super::Compaction;
use crate::db::table_cache::TableCache;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, join};
use crate::iter::level::LevelIterator;
use crate::iter::merge::MergingIterator;
use crate::iter::{Direction, InternalIterator};
use crate::key::{self, ValueKind};
use crate::options::{CompactionFilter, FilterDecision, TableOptions};
use crate::table::TableBuilder;
use crate::version::FileMeta;
use crate::version::edit::{NewFile, VersionEdit};
use crate::version::set::table_name;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a compaction needs from the engine.
pub(crate) struct JobEnv<'a> {
    pub fs: &'a Arc<dyn FileSystem>,
    pub dir: &'a PathBuf,
    pub tables: &'a Arc<TableCache>,
    pub table_opts: TableOptions,
    pub target_file_size_bytes: u64,
    /// Live snapshot sequence numbers, ascending.
    pub snapshots: Vec<u64>,
    pub filter: Option<Arc<dyn CompactionFilter>>,
    pub new_file_number: &'a (dyn Fn() -> u64 + Sync),
}

/// The edit a finished compaction applies, and what it wrote.
pub(crate) struct JobResult {
    pub edit: VersionEdit,
    pub bytes_written: u64,
}

/// Moves the single input table down a level without rewriting it.
pub(crate) fn trivial_move(c: &Compaction) -> JobResult {
    let mut edit = VersionEdit::default();
    for f in &c.inputs {
        edit.deleted_files.push((c.level, f.number));
        edit.new_files.push(f.to_new_file(c.output_level()));
    }
    edit.compact_pointers.push((c.level, c.largest_input_key()));
    JobResult {
        edit,
        bytes_written: 0,
    }
}

struct Output<'a> {
    env: &'a JobEnv<'a>,
    level: usize,
    /// Range tombstones up to this sequence are applied to every output.
    range_del_seq: u64,
    current: Option<(TableBuilder, u64)>,
    files: Vec<NewFile>,
}

impl Output<'_> {
    fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        if self.current.is_none() {
            let number = (self.env.new_file_number)();
            let path = join(self.env.dir, &table_name(number));
            let file = self
                .env
                .fs
                .create(&path)
                .map_err(|e| Error::io("create", &path, e))?;
            self.current = Some((TableBuilder::new(file, path, self.env.table_opts), number));
        }
        match &mut self.current {
            Some((b, _)) => b.add(ikey, value),
            None => Ok(()),
        }
    }

    fn should_cut(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|(b, _)| b.estimated_size() >= self.env.target_file_size_bytes)
    }

    fn finish_current(&mut self) -> Result<()> {
        let Some((builder, number)) = self.current.take() else {
            return Ok(());
        };
        let s = builder.finish()?;
        let mut nf = NewFile::from_summary(self.level, number, s);
        nf.range_del_seq = self.range_del_seq;
        self.files.push(nf);
        Ok(())
    }
}

/// Cuts compaction outputs so that no output table overlaps more than
/// `limit_bytes` of the level below the output level (the grandparents):
/// otherwise one output could make the next compaction into that level
/// rewrite a huge range. LevelDB's rule, with its limit of ten target files.
struct GrandparentCutter<'a> {
    grandparents: &'a [Arc<FileMeta>],
    index: usize,
    overlap_bytes: u64,
    limit_bytes: u64,
    seen_key: bool,
}

impl<'a> GrandparentCutter<'a> {
    fn new(grandparents: &'a [Arc<FileMeta>], limit_bytes: u64) -> Self {
        GrandparentCutter {
            grandparents,
            index: 0,
            overlap_bytes: 0,
            limit_bytes,
            seen_key: false,
        }
    }

    /// Called with each new user key, in ascending order: true when the
    /// current output should end before it.
    fn cut_before(&mut self, user_key: &[u8]) -> bool {
        while let Some(g) = self.grandparents.get(self.index)
            && user_key > g.largest_user_key()
        {
            if self.seen_key {
                self.overlap_bytes += g.size;
            }
            self.index += 1;
        }
        self.seen_key = true;
        if self.overlap_bytes > self.limit_bytes {
            self.overlap_bytes = 0;
            return true;
        }
        false
    }
}

/// Every range tombstone this compaction fully applies: those every live
/// snapshot sees (what they cover is dropped whatever its sequence), and
/// whatever the inputs had already applied.
fn applied_range_del_seq(c: &Compaction, snapshots: &[u64]) -> u64 {
    let oldest = snapshots.first().copied();
    let applied = c
        .version
        .range_tombstones
        .iter()
        .map(|t| t.seq)
        .filter(|&s| oldest.is_none_or(|o| s <= o))
        .max()
        .unwrap_or(0);
    let inherited = c.all_inputs().map(|f| f.range_del_seq).min().unwrap_or(0);
    applied.max(inherited)
}

/// The first snapshot at or above `seq`, or `u64::MAX` when none is.
fn next_snapshot(snapshots: &[u64], seq: u64) -> u64 {
    let i = snapshots.partition_point(|&s| s < seq);
    snapshots.get(i).copied().unwrap_or(u64::MAX)
}

/// True when no table below the output level may hold `user_key`.
fn is_base_level_for_key(c: &Compaction, user_key: &[u8]) -> bool {
    (c.output_level() + 1..c.version.num_levels()).all(|level| {
        let files = c.version.files(level);
        let i = files.partition_point(|f| f.largest_user_key() < user_key);
        files
            .get(i)
            .is_none_or(|f| f.smallest_user_key() > user_key)
    })
}

fn input_iterator(c: &Compaction, tables: &Arc<TableCache>) -> Result<MergingIterator> {
    let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
    if c.level == 0 {
        for f in &c.inputs {
            children.push(Box::new(tables.get(f)?.iter(Direction::Forward, false)));
        }
    } else {
        children.push(Box::new(LevelIterator::new(
            c.inputs.clone(),
            tables.clone(),
            Direction::Forward,
            false,
        )));
    }
    if !c.next_inputs.is_empty() {
        children.push(Box::new(LevelIterator::new(
            c.next_inputs.clone(),
            tables.clone(),
            Direction::Forward,
            false,
        )));
    }
    Ok(MergingIterator::new(children, Direction::Forward))
}

/// Most threads one compaction is split over, whatever
/// `Options::max_subcompactions` asks.
pub(crate) const SUBCOMPACTIONS_MAX: usize = 64;

/// Points each input table gives `split_points` (`Table::block_ends`):
/// with thousands of inputs, a few megabytes at most, and still a cut
/// within 1/128 of a table of where equal shares fall.
const SPLIT_POINTS_PER_TABLE_MAX: usize = 128;

/// Up to `pieces - 1` user keys that cut `c`'s key space into ranges of
/// about equal input bytes, ascending; each starts a range (the one before
/// it ends just below it). Empty when `c` is too small to split: every range
/// must bring at least an eighth of a target table's input, or it would cost
/// a thread and a small table for little work.
///
/// The cuts come from the inputs' index blocks (`Table::block_ends`): data
/// blocks' last user keys with the blocks' sizes. Sorted together, the
/// running sum of sizes up to a key is about the input bytes at or below it,
/// however the inputs overlap. A cut is that key plus a zero byte, the
/// smallest user key above it, so the ranges are disjoint and no user key's
/// versions straddle two of them.
pub(crate) fn split_points(
    c: &Compaction,
    env: &JobEnv<'_>,
    pieces: usize,
) -> Result<Vec<Vec<u8>>> {
    let min_bytes = (env.target_file_size_bytes / 8).max(1);
    let pieces = pieces.min(usize::try_from(c.input_bytes() / min_bytes).unwrap_or(usize::MAX));
    if pieces < 2 {
        return Ok(Vec::new());
    }
    let mut ends = Vec::new();
    for f in c.all_inputs() {
        ends.extend(env.tables.get(f)?.block_ends(SPLIT_POINTS_PER_TABLE_MAX));
    }
    ends.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let total: u64 = ends.iter().map(|(_, bytes)| bytes).sum();
    let largest = ends.last().map(|(k, _)| k.clone()).unwrap_or_default();
    let (mut cuts, mut below) = (Vec::new(), 0u64);
    for (user_key, bytes) in ends {
        below += bytes;
        let next = cuts.len() as u128 + 1;
        let due = u128::from(below) * pieces as u128 >= u128::from(total) * next;
        if due && next < pieces as u128 && user_key < largest {
            let mut cut = user_key;
            cut.push(0);
            if cuts.last().is_none_or(|last: &Vec<u8>| *last < cut) {
                cuts.push(cut);
            }
        }
    }
    Ok(cuts)
}

/// Merges the inputs into new tables at the output level. With `cuts`
/// (from `split_points`), each range between them is merged by its own
/// thread (a subcompaction), the first by the caller's; their outputs are
/// disjoint, so together they are one level's worth of tables, installed
/// by one edit. The first range to fail stops the others.
pub(crate) fn run(c: &Compaction, env: &JobEnv<'_>, cuts: &[Vec<u8>]) -> Result<JobResult> {
    let range_del_seq = applied_range_del_seq(c, &env.snapshots);
    let starts = std::iter::once(None).chain(cuts.iter().map(|k| Some(k.as_slice())));
    let ends = cuts
        .iter()
        .map(|k| Some(k.as_slice()))
        .chain(std::iter::once(None));
    let ranges: Vec<KeyRange<'_>> = starts.zip(ends).collect();
    let failed = AtomicBool::new(false);
    let merge = |range: KeyRange<'_>| {
        let r = merge_range(c, env, range_del_seq, range, &failed);
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        r
    };
    let results: Vec<Result<Vec<NewFile>>> = std::thread::scope(|s| {
        let (first, rest) = ranges
            .split_first()
            .map_or((None, &[][..]), |(f, r)| (Some(*f), r));
        let handles: Vec<_> = rest
            .iter()
            .map(|&range| s.spawn(move || merge(range)))
            .collect();
        let mut results: Vec<_> = first.map(&merge).into_iter().collect();
        // A panic is a bug, not an I/O outcome: it goes on up as it would
        // from an unsplit compaction.
        results.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
        );
        results
    });
    let mut files = Vec::new();
    for r in results {
        files.extend(r?);
    }
    if !files.is_empty() {
        env.fs
            .sync_dir(env.dir)
            .map_err(|e| Error::io("fsync directory", env.dir, e))?;
    }
    let bytes_written = files.iter().map(|f| f.size).sum();
    let mut edit = VersionEdit::default();
    for f in &c.inputs {
        edit.deleted_files.push((c.level, f.number));
    }
    for f in &c.next_inputs {
        edit.deleted_files.push((c.output_level(), f.number));
    }
    edit.new_files = files;
    // A rewrite of the last level in place takes nothing from `c.level`:
    // leave that level's round-robin pointer where it was.
    if !c.inputs.is_empty() {
        edit.compact_pointers.push((c.level, c.largest_input_key()));
    }
    Ok(JobResult {
        edit,
        bytes_written,
    })
}

/// User keys `[start, end)`; `None` is unbounded.
type KeyRange<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Merges the inputs' entries whose user keys lie in `range` into tables;
/// returns them (finished and synced). Stops early, with what it has, once
/// `failed` is set by another range.
fn merge_range(
    c: &Compaction,
    env: &JobEnv<'_>,
    range_del_seq: u64,
    (start, end): KeyRange<'_>,
    failed: &AtomicBool,
) -> Result<Vec<NewFile>> {
    let mut it = input_iterator(c, env.tables)?;
    match start {
        Some(k) => it.seek(&key::lookup_key(k, key::MAX_SEQUENCE)),
        None => it.seek_to_first(),
    }
    let mut out = Output {
        env,
        level: c.output_level(),
        range_del_seq,
        current: None,
        files: Vec::new(),
    };
    let tombstones = &c.version.fragments;
    let mut grandparents = GrandparentCutter::new(
        c.version.files(c.output_level() + 1),
        env.target_file_size_bytes.saturating_mul(10),
    );
    let newest_snapshot = env.snapshots.last().copied();
    let mut current_key: Option<Vec<u8>> = None;
    // Sequence number of the previous (newer) version of the current key.
    let mut newer_seq: Option<u64> = None;
    let mut ikey_buf = Vec::new();
    while it.valid() {
        let p = key::parse_internal_key(it.key())
            .ok_or_else(|| Error::corruption("<compaction input>", 0, "malformed internal key"))?;
        let first_of_key = current_key.as_deref() != Some(p.user_key);
        if first_of_key {
            if end.is_some_and(|end| p.user_key >= end) || failed.load(Ordering::Relaxed) {
                break;
            }
            // Both rules see every key (the cutter must advance).
            let gp_cut = grandparents.cut_before(p.user_key);
            if gp_cut || out.should_cut() {
                out.finish_current()?;
            }
            current_key = Some(p.user_key.to_vec());
            newer_seq = None;
        }
        let next_snap = next_snapshot(&env.snapshots, p.seq);
        let shadowed = newer_seq.is_some_and(|newer| next_snap >= newer);
        let range_deleted = tombstones.covers_between(p.user_key, p.seq, next_snap);
        let mut kind = p.kind;
        let mut value = it.value();
        if !shadowed && !range_deleted && kind == ValueKind::Value && first_of_key {
            let unseen = newest_snapshot.is_none_or(|s| s < p.seq);
            if unseen
                && let Some(f) = &env.filter
                && f.filter(c.output_level(), p.user_key, value) == FilterDecision::Remove
            {
                kind = ValueKind::Delete;
                value = &[];
            }
        }
        let obsolete_tombstone = kind == ValueKind::Delete
            && env.snapshots.first().is_none_or(|&s| s >= p.seq)
            && is_base_level_for_key(c, p.user_key);
        newer_seq = Some(p.seq);
        if !(shadowed || range_deleted || obsolete_tombstone) {
            ikey_buf.clear();
            key::append_internal_key(&mut ikey_buf, p.user_key, p.seq, kind);
            out.add(&ikey_buf, value)?;
        }
        it.next();
    }
    it.status()?;
    out.finish_current()?;
    Ok(out.files)
}

#[cfg(test)]
mod tests {
    use super::{GrandparentCutter, next_snapshot};
    use crate::key::{ValueKind, make_internal_key};
    use crate::version::FileMeta;
    use crate::version::edit::NewFile;
    use std::sync::Arc;

    fn table(lo: &str, hi: &str, size: u64) -> Arc<FileMeta> {
        let nf = NewFile {
            level: 2,
            number: 1,
            size,
            smallest: make_internal_key(lo.as_bytes(), 1, ValueKind::Value),
            largest: make_internal_key(hi.as_bytes(), 1, ValueKind::Value),
            smallest_seq: 1,
            largest_seq: 1,
            num_entries: 1,
            num_deletions: 0,
            range_del_seq: 0,
        };
        Arc::new(FileMeta::from_new_file(&nf, None))
    }

    #[test]
    fn output_is_cut_once_it_overlaps_too_much_of_the_grandparents() {
        // An output spanning more than the limit of the level below is cut
        // at the first key past the limit, and the count starts over.
        let gps = [
            table("a", "b", 40),
            table("c", "d", 40),
            table("e", "f", 40),
            table("g", "h", 40),
        ];
        let mut cut = GrandparentCutter::new(&gps, 60);
        assert!(!cut.cut_before(b"a"));
        assert!(!cut.cut_before(b"c"), "40 bytes passed, limit 60");
        assert!(cut.cut_before(b"e"), "80 bytes passed");
        assert!(!cut.cut_before(b"g"), "count restarted: 40 bytes");
        assert!(cut.cut_before(b"z"), "80 bytes again");
    }

    #[test]
    fn grandparents_before_the_first_key_do_not_count() {
        // Tables entirely below the compaction's first key are skipped free.
        let gps = [
            table("a", "b", 1000),
            table("c", "d", 1000),
            table("x", "y", 10),
        ];
        let mut cut = GrandparentCutter::new(&gps, 60);
        assert!(!cut.cut_before(b"w"));
        assert!(!cut.cut_before(b"x"));
    }

    #[test]
    fn next_snapshot_finds_first_at_or_above() {
        // The stripe boundary used by every drop rule.
        let s = [5, 10, 20];
        assert_eq!(next_snapshot(&s, 1), 5);
        assert_eq!(next_snapshot(&s, 5), 5);
        assert_eq!(next_snapshot(&s, 11), 20);
        assert_eq!(next_snapshot(&s, 21), u64::MAX);
        assert_eq!(next_snapshot(&[], 3), u64::MAX);
    }
}
