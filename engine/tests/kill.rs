//! A real writer process killed with SIGKILL mid-load on the real file
//! system: the reopened database holds every write the child acknowledged
//! (synced or not: a process crash loses nothing handed to the OS), is the
//! state after a prefix of its writes, and holds nothing that was never
//! written. The test binary re-executes itself as the child.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

mod common;

use cairn_engine::{Db, Options};
use common::{Model, Rng, Workload, Write, check_prefix, dump, key};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "CAIRN_KILL_CHILD";
const CHILD_START: &str = "CAIRN_KILL_START";
const TEST_NAME: &str = "killed_writer_recovers_synced_prefix";
const WORKLOAD: Workload = Workload {
    sync_percent: 15,
    ..Workload::new("k")
};
/// Writes one child may make before it gives up waiting to be killed.
const CHILD_MAX_WRITES: u64 = 200_000;

fn opts() -> Options {
    Options {
        write_buffer_bytes: 64 << 10,
        target_file_size_bytes: 64 << 10,
        max_bytes_for_level_base: 256 << 10,
        block_cache_bytes: 1 << 20,
        ..Options::default()
    }
}

/// Write `id`, the same in child and parent: its content depends on `id` only.
fn write_for(id: u64) -> Write {
    WORKLOAD.generate(&mut Rng::new(id), id)
}

/// The child: writes forever from `start`, printing `ack <id>` after each
/// acknowledged write, flushed, so the parent knows what was acknowledged.
fn child(dir: &Path, start: u64) {
    let db = Db::open(dir, opts()).unwrap();
    let mut out = std::io::stdout().lock();
    // libtest has printed "test <name> ... " without a newline; end that line.
    writeln!(out).unwrap();
    for id in start..start + CHILD_MAX_WRITES {
        write_for(id).apply(&db).unwrap();
        writeln!(out, "ack {id}").unwrap();
        out.flush().unwrap();
    }
}

/// What the parent learned from one child before killing it.
struct Round {
    start: u64,
    /// Highest acknowledged id, if any.
    last_acked: Option<u64>,
    /// Highest id acknowledged as synced, if any.
    last_synced: Option<u64>,
}

fn run_child(dir: &Path, start: u64, kill_after: u64) -> Round {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_START, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut round = Round {
        start,
        last_acked: None,
        last_synced: None,
    };
    let note = |line: &str, round: &mut Round| {
        if let Some(id) = line.strip_prefix("ack ") {
            let id: u64 = id.parse().unwrap();
            assert_eq!(
                id,
                round.last_acked.map_or(start, |l| l + 1),
                "acks out of order"
            );
            round.last_acked = Some(id);
            if write_for(id).sync {
                round.last_synced = Some(id);
            }
        }
    };
    let mut acks = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        note(&line, &mut round);
        if line.starts_with("ack ") {
            acks += 1;
            if acks >= kill_after {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines already in the pipe were acknowledged too.
    for line in lines {
        note(&line.unwrap(), &mut round);
    }
    round
}

#[test]
fn killed_writer_recovers_synced_prefix() {
    // Pins durability across SIGKILL on a real file system: synced acks survive, state is a prefix.
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let start = std::env::var(CHILD_START).unwrap().parse().unwrap();
        child(Path::new(&dir), start);
        return;
    }
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0xC0FFEE);
    let mut base = Model::new();
    let mut next_id = 0;
    for round_no in 0..4 {
        let kill_after = rng.range(200, 1500);
        let round = run_child(dir.path(), next_id, kill_after);
        let last_acked = round.last_acked.expect("the child acknowledged nothing");
        // The one write in flight at the kill may have landed too.
        let writes: Vec<Write> = (round.start..=last_acked + 1).map(write_for).collect();
        // A killed process loses nothing it handed to the OS, and every
        // write is handed over (a copy into the mapped WAL) before it is
        // acknowledged: all acknowledged writes survive, synced or not.
        // (`last_synced` would bound what survives a machine crash.)
        let must_survive = (last_acked - round.start + 1) as usize;
        let db = Db::open(dir.path(), opts()).unwrap();
        let probe = (0..WORKLOAD.keys).map(|i| key(WORKLOAD.prefix, i));
        let got = dump(&db, probe).unwrap();
        let prefix = check_prefix(&base, &writes, &got, must_survive).unwrap_or_else(|why| {
            panic!(
                "round {round_no}: {why}; acked {}..={last_acked}, last synced {:?}, report {:?}",
                round.start,
                round.last_synced,
                db.recovery_report()
            )
        });
        assert!(prefix >= must_survive);
        db.close().unwrap();
        drop(db);
        base = got;
        next_id = last_acked + 2;
    }
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "kill rounds took {:?}",
        began.elapsed()
    );
}
