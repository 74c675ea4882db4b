//! Opening a database: lock the directory, rebuild the version from the
//! manifest, replay the WALs the manifest does not cover into L0 tables,
//! start a fresh WAL and manifest, and remove files nothing references.
//!
//! Crash argument: everything recovery writes (tables from replayed WALs,
//! the new WAL, the new manifest) is synced and named durably before
//! `CURRENT` points at the new manifest; the replayed WALs are deleted only
//! after that. A crash at any point leaves either the old state (replayed
//! again next time, producing the same result) or the new one.

use super::stats::Counters;
use super::table_cache::{Reclaimer, TableCache};
use super::write::WriteQueue;
use super::{DbInner, SuperVersion, WalState, build_l0_table};
use crate::batch::{BatchOps, check_sequence_order};
use crate::error::{Error, Result};
use crate::fs::{FileSystem, join};
use crate::log::replay;
use crate::memtable::MemTable;
use crate::options::Options;
use crate::table::BlockCache;
use crate::version::FileReclaimer;
use crate::version::edit::{MAX_LEVELS, VersionEdit};
use crate::version::set::{
    CURRENT, FileKind, LOCK, MAX_FILE_NUMBER, VersionSet, parse_file_name, wal_name,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};

/// What `open` found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// True when the directory held no database and one was created.
    pub created: bool,
    /// WAL files replayed, and the records in them.
    pub wal_files: Vec<PathBuf>,
    pub wal_records: u64,
    /// Torn tails cut: (file, offset, bytes). Writes there were never
    /// acknowledged as synced.
    pub torn_tails: Vec<(PathBuf, u64, u64)>,
    /// Salvage mode only: damaged regions skipped (file, offset, bytes, why).
    pub salvaged: Vec<(PathBuf, u64, u64, String)>,
    /// Version edits replayed from the manifest.
    pub manifest_edits: u64,
    /// A torn tail cut from the manifest (an edit that never committed).
    pub manifest_torn_tail: Option<(u64, u64)>,
    /// Files removed because nothing referenced them.
    pub orphans_removed: Vec<String>,
}

fn validate(opts: &Options) -> Result<()> {
    let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
    if opts.num_levels < 2 || opts.num_levels > MAX_LEVELS {
        return bad("num_levels must be between 2 and 16");
    }
    if opts.write_buffer_bytes < 4096 {
        return bad("write_buffer_bytes must be at least 4096");
    }
    if opts.block_size_bytes == 0 || opts.block_restart_interval == 0 {
        return bad("block_size_bytes and block_restart_interval must be positive");
    }
    if opts.l0_compaction_trigger == 0
        || opts.l0_slowdown_trigger < opts.l0_compaction_trigger
        || opts.l0_stop_trigger < opts.l0_slowdown_trigger
    {
        return bad("need 0 < l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger");
    }
    if opts.level_size_ratio < 2
        || opts.max_bytes_for_level_base == 0
        || opts.target_file_size_bytes == 0
    {
        return bad("level_size_ratio must be >= 2 and level sizes positive");
    }
    Ok(())
}

/// Replays WAL records into memtables, flushing each full one to an L0
/// table; returns the new tables and tombstones as one edit.
struct Replayer<'a> {
    fs: &'a Arc<dyn FileSystem>,
    dir: &'a Path,
    opts: &'a Options,
    versions: &'a mut VersionSet,
    mem: Arc<MemTable>,
    edit: VersionEdit,
    max_seq: u64,
    /// One past the last sequence number replayed so far.
    replayed_end: u64,
}

impl Replayer<'_> {
    fn record(&mut self, path: &Path, offset: u64, payload: &[u8]) -> Result<()> {
        let ops = BatchOps::new(payload).map_err(|e| Error::corruption(path, offset, e))?;
        let base = ops.base_seq;
        check_sequence_order(self.replayed_end, base)
            .map_err(|e| Error::corruption(path, offset, e))?;
        self.replayed_end = base + ops.entries();
        let mut seq = base;
        for op in ops {
            let op = op.map_err(|e| Error::corruption(path, offset, e))?;
            self.mem.add(seq, op.kind, op.key, op.value);
            seq += 1;
        }
        self.max_seq = self.max_seq.max(seq.saturating_sub(1));
        if self.mem.approximate_bytes() >= self.opts.write_buffer_bytes {
            self.flush_mem()?;
        }
        Ok(())
    }

    fn flush_mem(&mut self) -> Result<()> {
        if self.mem.is_empty() {
            return Ok(());
        }
        let number = self.versions.new_file_number();
        if let Some(f) = build_l0_table(self.fs, self.dir, self.opts, &self.mem, number)? {
            self.edit.new_files.push(f);
        }
        self.edit
            .range_tombstones
            .extend(self.mem.range_tombstones());
        self.mem = Arc::new(MemTable::with_budget(0, self.opts.write_buffer_bytes));
        Ok(())
    }
}

pub(super) fn open(dir: &Path, opts: Options) -> Result<DbInner> {
    validate(&opts)?;
    let fs = opts.fs.clone();
    if !opts.create_if_missing && !fs.exists(&join(dir, CURRENT)) {
        return Err(Error::InvalidArgument(format!(
            "no database in {}",
            dir.display()
        )));
    }
    fs.create_dir_all(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let lock_path = join(dir, LOCK);
    let dir_lock = fs.lock(&lock_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            path: lock_path.clone(),
        },
        _ => Error::io("lock", &lock_path, e),
    })?;

    let blocks = Arc::new(BlockCache::new(opts.block_cache_bytes, usize::MAX));
    let tables = Arc::new(TableCache::new(
        fs.clone(),
        dir.to_path_buf(),
        opts.max_open_files,
        opts.table_cache_bytes,
        blocks,
    ));
    let reclaimer = Arc::new(Reclaimer {
        fs: fs.clone(),
        dir: dir.to_path_buf(),
        tables: tables.clone(),
    });
    let as_dyn: Arc<dyn FileReclaimer> = reclaimer.clone();
    let weak: Weak<dyn FileReclaimer> = Arc::downgrade(&as_dyn);

    let mut report = RecoveryReport::default();
    let mut versions = if fs.exists(&join(dir, CURRENT)) {
        if opts.error_if_exists {
            return Err(Error::InvalidArgument(format!(
                "database already exists in {}",
                dir.display()
            )));
        }
        let (set, m) = VersionSet::recover(
            dir,
            fs.clone(),
            opts.num_levels,
            opts.max_manifest_bytes,
            Some(weak),
        )?;
        report.manifest_torn_tail = m.torn_tail;
        report.manifest_edits = m.edits;
        set
    } else {
        refuse_files_without_current(&fs, dir)?;
        if !opts.create_if_missing {
            return Err(Error::InvalidArgument(format!(
                "no database in {}",
                dir.display()
            )));
        }
        report.created = true;
        VersionSet::new_empty(
            dir,
            fs.clone(),
            opts.num_levels,
            opts.max_manifest_bytes,
            Some(weak),
        )
    };

    let names = fs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut wals: Vec<u64> = names
        .iter()
        .filter_map(|n| match parse_file_name(n) {
            Some(FileKind::Wal(w)) if w >= versions.log_number() => Some(w),
            _ => None,
        })
        .collect();
    wals.sort_unstable();
    // File numbers handed out before a crash but never recorded in the
    // manifest (a WAL, an unfinished table) must not be handed out again.
    let max_in_dir = names
        .iter()
        .filter_map(|n| match parse_file_name(n) {
            Some(FileKind::Wal(x) | FileKind::Table(x) | FileKind::Manifest(x)) => Some(x),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    if max_in_dir > MAX_FILE_NUMBER {
        return Err(Error::corruption(
            dir,
            0,
            format!("a file numbered {max_in_dir} is past the largest file number"),
        ));
    }
    versions.reserve_file_numbers_through(max_in_dir);

    let max_seq = versions.last_sequence();
    let mut replayer = Replayer {
        fs: &fs,
        dir,
        opts: &opts,
        versions: &mut versions,
        mem: Arc::new(MemTable::with_budget(0, opts.write_buffer_bytes)),
        edit: VersionEdit::default(),
        max_seq,
        replayed_end: 0,
    };
    for number in &wals {
        let path = join(dir, &wal_name(*number));
        let data = fs
            .read_all(&path)
            .map_err(|e| Error::io("read", &path, e))?;
        let r = replay(&data, &path, opts.wal_recovery, |offset, payload| {
            replayer.record(&path, offset, payload)
        })?;
        report.wal_records += r.records;
        if let Some((offset, bytes)) = r.torn_tail {
            report.torn_tails.push((path.clone(), offset, bytes));
        }
        for (offset, bytes, why) in r.skipped {
            report.salvaged.push((path.clone(), offset, bytes, why));
        }
        report.wal_files.push(path);
    }
    replayer.flush_mem()?;
    let max_seq = replayer.max_seq;
    let mut edit = replayer.edit;

    let wal_number = versions.new_file_number();
    let wal_path = join(dir, &wal_name(wal_number));
    let wal_file = fs
        .create(&wal_path)
        .map_err(|e| Error::io("create", &wal_path, e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    edit.log_number = Some(wal_number);
    edit.last_sequence = Some(max_seq);
    let version = versions.log_and_apply(edit)?;

    report.orphans_removed = remove_orphans(&fs, dir, &versions, wal_number)?;

    let mem = Arc::new(MemTable::with_budget(wal_number, opts.write_buffer_bytes));
    let queue = WriteQueue::new(max_seq);
    Ok(DbInner {
        dir: dir.to_path_buf(),
        fs,
        dir_lock: Mutex::new(Some(dir_lock)),
        sv: RwLock::new(Arc::new(SuperVersion {
            mem,
            imms: Vec::new(),
            version,
        })),
        versions: Mutex::new(versions),
        queue: Mutex::new(queue),
        stall_cv: Condvar::new(),
        wal: Mutex::new(Some(WalState {
            writer: super::new_wal_writer(wal_file, &opts, &wal_path)?,
            path: wal_path,
        })),
        visible_seq: AtomicU64::new(max_seq),
        snapshots: Mutex::new(BTreeMap::new()),
        bg: Mutex::new(Default::default()),
        retired: Mutex::new(Vec::new()),
        bg_cv: Condvar::new(),
        bg_done_cv: Condvar::new(),
        poisoned: AtomicBool::new(false),
        poison: Mutex::new(None),
        closed: AtomicBool::new(false),
        tables,
        _reclaimer: reclaimer,
        counters: Counters::default(),
        recovery: report,
        opts,
    })
}

/// Fails when `CURRENT` is missing but a manifest or a table is present.
/// Creating an empty database there would treat every table as an orphan
/// and delete it. No crash leaves such a directory: a new database's
/// manifest name becomes durable in the same directory fsync as `CURRENT`,
/// and it has no tables before that. A WAL without `CURRENT` is expected
/// (a crash during the first open) and is replayed as usual.
fn refuse_files_without_current(fs: &Arc<dyn FileSystem>, dir: &Path) -> Result<()> {
    let names = fs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    let found = names.iter().find(|n| {
        matches!(
            parse_file_name(n),
            Some(FileKind::Manifest(_) | FileKind::Table(_))
        )
    });
    match found {
        Some(name) => Err(Error::corruption(
            join(dir, CURRENT),
            0,
            format!(
                "CURRENT is missing but {name} is present; refusing to create an \
                 empty database over existing files (restore CURRENT to name the manifest)"
            ),
        )),
        None => Ok(()),
    }
}

/// Removes WALs older than the live one, tables not in the version, other
/// manifests and temporary files. Runs only after the new manifest is durable.
fn remove_orphans(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    versions: &VersionSet,
    wal_number: u64,
) -> Result<Vec<String>> {
    let live: HashSet<u64> = versions
        .current()
        .all_files()
        .map(|(_, f)| f.number)
        .collect();
    let mut removed = Vec::new();
    for name in fs.list(dir).map_err(|e| Error::io("list", dir, e))? {
        let orphan = match parse_file_name(&name) {
            Some(FileKind::Wal(n)) => n < wal_number,
            Some(FileKind::Table(n)) => !live.contains(&n),
            Some(FileKind::Manifest(n)) => n != versions.manifest_number(),
            Some(FileKind::Temp) => true,
            Some(FileKind::Current | FileKind::Lock) | None => false,
        };
        if orphan {
            let path = join(dir, &name);
            fs.remove(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
            removed.push(name);
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(removed)
}
