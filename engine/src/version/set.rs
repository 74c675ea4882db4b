//! `VersionSet`: the current version and the manifest that makes it durable.
//!
//! The manifest is a record log of `VersionEdit`s. `CURRENT` names the live
//! manifest; it is switched atomically: write `CURRENT.tmp`, fsync it,
//! rename it over `CURRENT`, fsync the directory. Every open starts a fresh
//! manifest holding one snapshot edit, so replay is bounded by what one
//! session logged; a manifest grown past `max_manifest_bytes` is rolled the
//! same way.
//!
//! Commit path of `log_and_apply` (crash argument):
//! 1. The edit is appended to the manifest and the manifest is fsynced. A
//!    crash before the fsync returns may or may not keep the edit: either
//!    way recovery sees a consistent version (old or new), because the
//!    files the edit adds were synced before it, and files it removes are
//!    deleted only after step 2.
//! 2. The new version is installed and the tables it dropped are marked
//!    obsolete; they are deleted once no reader holds them.
//!
//! A failed write or fsync of the manifest is returned to the caller, which
//! poisons the engine: the manifest's durable state is then unknown, and
//! only a reopen (which replays it) can tell.

use super::edit::{MAX_LEVELS, VersionEdit};
use super::{FileMeta, FileReclaimer, Version, VersionBuilder};
use crate::error::{Error, Result};
use crate::fs::{FileSystem, join};
use crate::key::MAX_SEQUENCE;
use crate::log::{LogWriter, replay};
use crate::options::WalRecovery;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

pub(crate) const CURRENT: &str = "CURRENT";
const CURRENT_TMP: &str = "CURRENT.tmp";
pub(crate) const LOCK: &str = "LOCK";

/// File numbers stay below 2^56, like sequence numbers: far more than any
/// database hands out, and far from overflowing the counter. A manifest
/// recording a larger one is corrupt, and so is a directory holding an
/// engine file named with one (open refuses it rather than jump there).
pub(crate) const MAX_FILE_NUMBER: u64 = (1 << 56) - 1;

/// The kinds of file the engine keeps in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Wal(u64),
    Table(u64),
    Manifest(u64),
    Current,
    Lock,
    Temp,
}

pub(crate) fn wal_name(number: u64) -> String {
    format!("{number:06}.log")
}

pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

pub(crate) fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// Classifies a directory entry; `None` for names the engine did not make.
pub(crate) fn parse_file_name(name: &str) -> Option<FileKind> {
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match name {
        CURRENT => Some(FileKind::Current),
        LOCK => Some(FileKind::Lock),
        _ if name.ends_with(".tmp") => Some(FileKind::Temp),
        _ => {
            if let Some(n) = name.strip_prefix("MANIFEST-") {
                number(n).map(FileKind::Manifest)
            } else if let Some(n) = name.strip_suffix(".log") {
                number(n).map(FileKind::Wal)
            } else if let Some(n) = name.strip_suffix(".sst") {
                number(n).map(FileKind::Table)
            } else {
                None
            }
        }
    }
}

/// What manifest recovery found.
#[derive(Debug, Clone, Default)]
pub(crate) struct ManifestReport {
    pub edits: u64,
    pub torn_tail: Option<(u64, u64)>,
}

pub(crate) struct VersionSet {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    num_levels: usize,
    max_manifest_bytes: u64,
    reclaimer: Option<Weak<dyn FileReclaimer>>,
    current: Arc<Version>,
    next_file_number: u64,
    /// WALs numbered below this hold nothing that is not in tables.
    log_number: u64,
    /// The last sequence number made durable by a flush (tables).
    last_sequence: u64,
    compact_pointers: Vec<Vec<u8>>,
    manifest: Option<LogWriter>,
    manifest_number: u64,
}

impl VersionSet {
    /// A version set for a new, empty database. Nothing is written until the
    /// first `log_and_apply`, which creates the manifest and `CURRENT`.
    pub(crate) fn new_empty(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        num_levels: usize,
        max_manifest_bytes: u64,
        reclaimer: Option<Weak<dyn FileReclaimer>>,
    ) -> VersionSet {
        VersionSet {
            dir: dir.to_path_buf(),
            fs,
            num_levels,
            max_manifest_bytes,
            reclaimer,
            current: Arc::new(Version {
                levels: vec![Vec::new(); num_levels],
                ..Version::default()
            }),
            next_file_number: 1,
            log_number: 0,
            last_sequence: 0,
            compact_pointers: vec![Vec::new(); num_levels],
            manifest: None,
            manifest_number: 0,
        }
    }

    /// Rebuilds the version from the manifest `CURRENT` names.
    pub(crate) fn recover(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        num_levels: usize,
        max_manifest_bytes: u64,
        reclaimer: Option<Weak<dyn FileReclaimer>>,
    ) -> Result<(VersionSet, ManifestReport)> {
        let current_path = join(dir, CURRENT);
        let current = fs
            .read_all(&current_path)
            .map_err(|e| Error::io("read", &current_path, e))?;
        let name = std::str::from_utf8(&current)
            .ok()
            .and_then(|s| s.strip_suffix('\n'))
            .filter(|s| matches!(parse_file_name(s), Some(FileKind::Manifest(_))))
            .ok_or_else(|| {
                Error::corruption(&current_path, 0, "CURRENT does not name a manifest")
            })?;
        let manifest_path = join(dir, name);
        let data = fs
            .read_all(&manifest_path)
            .map_err(|e| Error::io("read", &manifest_path, e))?;

        let mut set = VersionSet::new_empty(
            dir,
            fs.clone(),
            num_levels,
            max_manifest_bytes,
            reclaimer.clone(),
        );
        let mut builder = VersionBuilder::new(&set.current, MAX_LEVELS, reclaimer);
        let (mut have_next, mut have_log, mut have_seq) = (false, false, false);
        let replayed = replay(
            &data,
            &manifest_path,
            WalRecovery::PointInTime,
            |offset, payload| {
                let edit = VersionEdit::decode(payload)
                    .map_err(|e| Error::corruption(&manifest_path, offset, e))?;
                builder
                    .apply(&edit)
                    .map_err(|e| Error::corruption(&manifest_path, offset, e))?;
                if let Some(n) = edit.next_file_number {
                    set.next_file_number = n;
                    have_next = true;
                }
                if let Some(n) = edit.log_number {
                    set.log_number = n;
                    have_log = true;
                }
                if let Some(n) = edit.last_sequence {
                    set.last_sequence = n;
                    have_seq = true;
                }
                for (level, key) in &edit.compact_pointers {
                    if let Some(p) = set.compact_pointers.get_mut(*level) {
                        *p = key.clone();
                    }
                }
                Ok(())
            },
        )?;
        if !(have_next && have_log && have_seq) {
            return Err(Error::corruption(
                &manifest_path,
                replayed.valid_bytes,
                "manifest lacks the file number, log number or sequence",
            ));
        }
        let numbers_in_range = set.next_file_number <= MAX_FILE_NUMBER
            && set.log_number <= MAX_FILE_NUMBER
            && set.last_sequence <= MAX_SEQUENCE;
        if !numbers_in_range {
            return Err(Error::corruption(
                &manifest_path,
                replayed.valid_bytes,
                "manifest file number, log number or sequence out of range",
            ));
        }
        let (version, _) = builder
            .build()
            .map_err(|e| Error::corruption(&manifest_path, replayed.valid_bytes, e))?;
        if let Some((_, f)) = version
            .all_files()
            .find(|(_, f)| f.number > MAX_FILE_NUMBER)
        {
            return Err(Error::corruption(
                &manifest_path,
                replayed.valid_bytes,
                format!("table number {} out of range", f.number),
            ));
        }
        if let Some((level, _)) = version.all_files().find(|(level, _)| *level >= num_levels) {
            return Err(Error::InvalidArgument(format!(
                "the database has tables in level {level} but num_levels is {num_levels}"
            )));
        }
        let max_number = version
            .all_files()
            .map(|(_, f)| f.number)
            .max()
            .unwrap_or(0);
        set.next_file_number = set
            .next_file_number
            .max(max_number + 1)
            .max(set.log_number + 1);
        let mut levels = version.levels;
        levels.truncate(num_levels);
        set.current = Arc::new(Version { levels, ..version });
        let report = ManifestReport {
            edits: replayed.records,
            torn_tail: replayed.torn_tail,
        };
        Ok((set, report))
    }

    pub(crate) fn current(&self) -> Arc<Version> {
        self.current.clone()
    }

    /// The number the next new file will get: every file numbered at or
    /// above it is created after this call.
    pub(crate) fn peek_file_number(&self) -> u64 {
        self.next_file_number
    }

    pub(crate) fn new_file_number(&mut self) -> u64 {
        let n = self.next_file_number;
        self.next_file_number += 1;
        n
    }

    /// Makes sure no number up to `n` is handed out again (files found in
    /// the directory that the manifest does not name). REQUIRES:
    /// `n <= MAX_FILE_NUMBER` (`parse_file_name` guarantees it).
    pub(crate) fn reserve_file_numbers_through(&mut self, n: u64) {
        self.next_file_number = self.next_file_number.max(n.saturating_add(1));
    }

    pub(crate) fn log_number(&self) -> u64 {
        self.log_number
    }

    pub(crate) fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    pub(crate) fn manifest_number(&self) -> u64 {
        self.manifest_number
    }

    pub(crate) fn compact_pointer(&self, level: usize) -> &[u8] {
        self.compact_pointers
            .get(level)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Makes `edit` durable in the manifest and installs the version it
    /// produces. Range tombstones that no longer hide anything are dropped in
    /// the same edit.
    pub(crate) fn log_and_apply(&mut self, mut edit: VersionEdit) -> Result<Arc<Version>> {
        if let Some(n) = edit.log_number {
            debug_assert!(n >= self.log_number);
        }
        let (version, removed) = self.build(&edit)?;
        let collectable = version.collectable_tombstones();
        let (version, removed) = if collectable.is_empty() {
            (version, removed)
        } else {
            edit.dropped_tombstones.extend(collectable);
            self.build(&edit)?
        };
        edit.next_file_number = Some(self.next_file_number);
        let last_sequence = edit
            .last_sequence
            .unwrap_or(self.last_sequence)
            .max(self.last_sequence);
        edit.last_sequence = Some(last_sequence);

        self.write_edit(&edit)?;

        if let Some(n) = edit.log_number {
            self.log_number = n;
        }
        self.last_sequence = last_sequence;
        for (level, key) in &edit.compact_pointers {
            if let Some(p) = self.compact_pointers.get_mut(*level) {
                *p = key.clone();
            }
        }
        for f in &removed {
            f.mark_obsolete();
        }
        self.current = Arc::new(version);
        Ok(self.current.clone())
    }

    fn build(&self, edit: &VersionEdit) -> Result<(Version, Vec<Arc<FileMeta>>)> {
        let mut builder =
            VersionBuilder::new(&self.current, self.num_levels, self.reclaimer.clone());
        builder
            .apply(edit)
            .and_then(|()| builder.build())
            .map_err(|e| Error::InvalidArgument(format!("version edit rejected (engine bug): {e}")))
    }

    /// Appends the edit to the manifest (starting a new one when there is
    /// none yet or it is too large) and fsyncs.
    fn write_edit(&mut self, edit: &VersionEdit) -> Result<()> {
        let roll = self
            .manifest
            .as_ref()
            .is_none_or(|m| m.len() >= self.max_manifest_bytes);
        if roll {
            self.start_manifest()?;
        }
        let path = join(&self.dir, &manifest_name(self.manifest_number));
        let manifest = self
            .manifest
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("no manifest open".to_string()))?;
        manifest
            .add_record(&edit.encode())
            .map_err(|e| Error::io("append", &path, e))?;
        manifest.sync().map_err(|e| Error::io("fsync", &path, e))
    }

    /// Writes a new manifest holding a snapshot of the current state, syncs
    /// it, and points `CURRENT` at it.
    fn start_manifest(&mut self) -> Result<()> {
        self.manifest = None;
        let number = self.new_file_number();
        let path = join(&self.dir, &manifest_name(number));
        let file = self
            .fs
            .create(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        let mut writer = LogWriter::new(file);
        let snapshot = self.snapshot_edit();
        writer
            .add_record(&snapshot.encode())
            .map_err(|e| Error::io("append", &path, e))?;
        writer.sync().map_err(|e| Error::io("fsync", &path, e))?;
        self.set_current(number)?;
        let old = self.manifest_number;
        self.manifest = Some(writer);
        self.manifest_number = number;
        if old != 0 {
            // Best effort: an old manifest left behind is removed at next open.
            let _ = self.fs.remove(&join(&self.dir, &manifest_name(old)));
        }
        Ok(())
    }

    fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            log_number: Some(self.log_number),
            next_file_number: Some(self.next_file_number),
            last_sequence: Some(self.last_sequence),
            new_files: self
                .current
                .all_files()
                .map(|(level, f)| f.to_new_file(level))
                .collect(),
            range_tombstones: self.current.range_tombstones.clone(),
            compact_pointers: self
                .compact_pointers
                .iter()
                .enumerate()
                .filter(|(_, k)| !k.is_empty())
                .map(|(level, k)| (level, k.clone()))
                .collect(),
            ..VersionEdit::default()
        }
    }

    fn set_current(&self, manifest_number: u64) -> Result<()> {
        let tmp = join(&self.dir, CURRENT_TMP);
        let current = join(&self.dir, CURRENT);
        let mut f = self
            .fs
            .create(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.append(format!("{}\n", manifest_name(manifest_number)).as_bytes())
            .map_err(|e| Error::io("append", &tmp, e))?;
        f.sync().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(f);
        self.fs
            .rename(&tmp, &current)
            .map_err(|e| Error::io("rename", &current, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("fsync directory", &self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recovers from a manifest holding `edit` alone.
    fn recover_edit(edit: &VersionEdit) -> Result<(VersionSet, ManifestReport)> {
        let fs = crate::fs::MemFs::new();
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let mut w = LogWriter::new(fs.create(&dir.join("MANIFEST-000002")).unwrap());
        w.add_record(&edit.encode()).unwrap();
        w.sync().unwrap();
        fs.write_file_bytes(&dir.join(CURRENT), b"MANIFEST-000002\n".to_vec());
        VersionSet::recover(dir, Arc::new(fs), 7, 1 << 20, None)
    }

    #[test]
    fn manifest_numbers_past_2_pow_56_are_corruption() {
        // Found by fuzzing (manifest, after the WAL's sequence finding): a
        // last_sequence past 2^56 made the first read fail the internal-key
        // assertion, and file numbers near 2^64 overflowed the counter.
        let base = VersionEdit {
            log_number: Some(3),
            next_file_number: Some(5),
            last_sequence: Some(9),
            ..VersionEdit::default()
        };
        assert!(recover_edit(&base).is_ok());
        let table = |number| crate::version::edit::NewFile {
            level: 1,
            number,
            size: 1,
            smallest: crate::key::make_internal_key(b"a", 1, crate::key::ValueKind::Value),
            largest: crate::key::make_internal_key(b"b", 1, crate::key::ValueKind::Value),
            smallest_seq: 1,
            largest_seq: 1,
            num_entries: 1,
            num_deletions: 0,
            range_del_seq: 0,
        };
        let hostile = [
            VersionEdit {
                last_sequence: Some(MAX_SEQUENCE + 1),
                ..base.clone()
            },
            VersionEdit {
                next_file_number: Some(u64::MAX),
                ..base.clone()
            },
            VersionEdit {
                log_number: Some(u64::MAX),
                ..base.clone()
            },
            VersionEdit {
                new_files: vec![table(u64::MAX)],
                ..base.clone()
            },
        ];
        for edit in hostile {
            match recover_edit(&edit) {
                Err(e) => assert!(e.is_corruption(), "{edit:?}: {e}"),
                Ok(_) => panic!("{edit:?} recovered"),
            }
        }
    }

    #[test]
    fn file_names_parse_back_to_their_kind() {
        // Orphan cleanup relies on recognising exactly the engine's own names.
        assert_eq!(parse_file_name(&wal_name(7)), Some(FileKind::Wal(7)));
        assert_eq!(parse_file_name(&table_name(12)), Some(FileKind::Table(12)));
        assert_eq!(
            parse_file_name(&manifest_name(3)),
            Some(FileKind::Manifest(3))
        );
        assert_eq!(parse_file_name("CURRENT"), Some(FileKind::Current));
        assert_eq!(parse_file_name("CURRENT.tmp"), Some(FileKind::Temp));
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name("x.log"), None);
        assert_eq!(parse_file_name(".sst"), None);
    }
}
