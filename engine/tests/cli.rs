//! The `cairn-db` binary end to end: the commands a new user types from the
//! README, and the benchmark smoke run CI keeps alive so the tool never rots.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

use std::path::Path;
use std::process::{Command, Output};

fn cairn_db(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-db"))
        .args(args)
        .output()
        .expect("run cairn-db")
}

/// Runs `args`, requires success and returns stdout.
fn ok(args: &[&str]) -> String {
    let out = cairn_db(args);
    assert!(
        out.status.success(),
        "cairn-db {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn put_get_scan_delete_round_trip_through_the_binary() {
    // What the README shows: writes persist across invocations, scan is
    // ordered and bounded, delete hides the key.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = path(&db);
    for (k, v) in [
        ("user:2", "bob"),
        ("user:1", "alice"),
        ("zebra", "z"),
        ("tab\tkey", "v"),
    ] {
        assert_eq!(ok(&["put", db, k, v]), "OK\n");
    }
    assert_eq!(ok(&["get", db, "user:1"]), "alice\n");
    assert_eq!(ok(&["get", db, "nobody"]), "(nil)\n");
    assert_eq!(
        ok(&["scan", db]),
        "tab\\tkey\tv\nuser:1\talice\nuser:2\tbob\nzebra\tz\n"
    );
    assert_eq!(
        ok(&["scan", db, "--prefix", "user:"]),
        "user:1\talice\nuser:2\tbob\n"
    );
    assert_eq!(ok(&["scan", db, "--reverse", "--limit", "1"]), "zebra\tz\n");
    assert_eq!(
        ok(&["scan", db, "--start", "user:2", "--end", "zebra"]),
        "user:2\tbob\n"
    );
    assert_eq!(ok(&["delete", db, "user:1"]), "OK\n");
    assert_eq!(ok(&["get", db, "user:1"]), "(nil)\n");
    assert_eq!(ok(&["scan", db, "--prefix=user:"]), "user:2\tbob\n");
    ok(&["compact", db]);
    assert!(ok(&["stats", db]).contains("write amplification"));
    assert_eq!(ok(&["get", db, "user:2"]), "bob\n");
}

#[test]
fn usage_errors_exit_2_and_engine_errors_exit_1() {
    // Scripts tell a wrong command line from a failed command by the code.
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-db");
    for args in [
        &[][..],
        &["frobnicate"],
        &["get", "only-dir"],
        &["scan", "d", "--limit", "many"],
        &["bench", "--benchmarks", "fillsideways"],
    ] {
        let out = cairn_db(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let out = cairn_db(&["get", path(&missing), "k"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));
    assert!(!missing.exists(), "a read must not create a database");
    assert!(ok(&["--help"]).contains("USAGE"));
}

/// The `(found of total)` or `(entries)` note of benchmark `name`'s line.
fn note<'a>(report: &'a str, name: &str) -> &'a str {
    let line = report
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{report}"));
    let start = line.rfind('(').unwrap();
    &line[start..=line.rfind(')').unwrap()]
}

#[test]
fn bench_smoke_run_reads_back_what_it_wrote() {
    // CI's guard that bench still runs: after fillseq every key is found
    // and readseq sees all of them; after fillrandom about 1 - 1/e of the
    // key space exists (db_bench's convention) and readseq agrees with it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = path(tmp.path());
    let seq = ok(&[
        "bench",
        "--dir",
        dir,
        "--num",
        "1000",
        "--benchmarks",
        "fillseq,readrandom,readseq",
    ]);
    assert_eq!(note(&seq, "readrandom"), "(1000 of 1000 found)", "{seq}");
    assert_eq!(note(&seq, "readseq"), "(1000 entries)", "{seq}");
    assert!(seq.contains("write-amp"), "{seq}");

    let random = ok(&[
        "bench",
        "--dir",
        dir,
        "--num",
        "1000",
        "--benchmarks",
        "fillrandom,readrandom,readseq",
        "--threads",
        "2",
    ]);
    let found: u32 = note(&random, "readrandom")
        .trim_start_matches('(')
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((550..=720).contains(&found), "{random}");
    let entries: u32 = note(&random, "readseq")
        .trim_matches(|c| c == '(' || c == ')')
        .trim_end_matches(" entries")
        .parse()
        .unwrap();
    assert!((550..=720).contains(&entries), "{random}");
}
