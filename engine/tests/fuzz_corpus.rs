//! Replays every committed fuzz input through its target, so CI checks the
//! fuzz targets on the stable toolchain without cargo-fuzz: the seed
//! corpora (`fuzz/corpus/<target>/seed-*`) and the inputs that once found
//! a bug (`fuzz/regressions/<target>/`). A panic names the file.
//!
//! `regenerate_seed_corpora` (ignored) rewrites the seeds from real engine
//! output; run it by hand after a format change.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

use cairn_engine::fuzzing;
use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("wal_reader", fuzzing::wal_target),
    ("sstable", fuzzing::sstable_target),
    ("block", fuzzing::block_target),
    ("bloom", fuzzing::bloom_target),
    ("manifest", fuzzing::manifest_target),
    ("ops", fuzzing::ops_target),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir` whose names start with `prefix`, sorted; none if it
/// does not exist. (A local fuzzing run grows `corpus/` with files of its
/// own; only the committed seeds are replayed.)
fn inputs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.is_file()
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
    });
    files.sort();
    files
}

fn replay(kind: &str, target: &str, run: Target) -> usize {
    let prefix = if kind == "corpus" { "seed-" } else { "" };
    let files = inputs(&fuzz_dir().join(kind).join(target), prefix);
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
    }
    files.len()
}

#[test]
fn every_seed_corpus_input_runs_clean() {
    // Each target has committed seeds, and none of them panics.
    for (target, run) in TARGETS {
        let n = replay("corpus", target, run);
        assert!(n > 0, "no seed corpus for {target}");
    }
}

#[test]
fn every_committed_regression_input_runs_clean() {
    // The inputs that found bugs (fuzz/regressions/) stay fixed.
    for (target, run) in TARGETS {
        replay("regressions", target, run);
    }
}

#[test]
#[ignore = "rewrites fuzz/corpus/*/seed-*; run by hand after a format change"]
fn regenerate_seed_corpora() {
    for (target, name, bytes) in fuzzing::seed_corpora().unwrap() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
