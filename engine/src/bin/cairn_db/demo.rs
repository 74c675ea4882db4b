//! `cairn-db demo`: a ten-second tour of the engine for a new user.

use crate::args::{Arg, CliError, Parser, usage};
use crate::commands::{print_levels, print_memory};
use crate::text::{escape, human_bytes};
use cairn_engine::{Db, IterOptions, Options, WriteBatch};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DEMO_KEYS: u32 = 100_000;
/// Keys per write batch: one WAL record each, so the load takes well under
/// a second instead of 100k separate commits.
const DEMO_BATCH_KEYS: u32 = 1_000;

fn parse(p: &mut Parser) -> Result<Option<PathBuf>, CliError> {
    let mut dir = None;
    while let Some(arg) = p.next_arg()? {
        match arg {
            Arg::Flag(f) if f == "--dir" => dir = Some(PathBuf::from(p.value(&f)?)),
            Arg::Flag(f) => return Err(usage(format!("unknown flag {f} for demo"))),
            Arg::Positional(a) => return Err(usage(format!("unexpected argument {a:?}"))),
        }
    }
    Ok(dir)
}

/// A fresh directory under the system temp dir, named after this process
/// and the clock so two demos never share one.
pub fn fresh_temp_dir(what: &str) -> Result<PathBuf, CliError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("cairn-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

fn user_key(i: u32) -> String {
    format!("user:{i:06}")
}

pub fn run(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let dir = match parse(p)? {
        Some(d) => d,
        None => fresh_temp_dir("demo")?,
    };
    writeln!(out, "Opening a database in {}", dir.display())?;
    let db = Db::open(&dir, Options::default())?;
    load(&db, out)?;
    read_back(&db, out)?;
    snapshot(&db, out)?;
    range_delete(&db, out)?;
    flush_and_compact(&db, out)?;
    db.close()?;
    where_it_lives(&dir, out)
}

fn load(db: &Db, out: &mut dyn Write) -> Result<(), CliError> {
    let started = Instant::now();
    let mut batch = WriteBatch::new();
    for i in 0..DEMO_KEYS {
        batch.put(
            user_key(i),
            format!("{{\"name\":\"user {i}\",\"visits\":{}}}", i % 97),
        );
        if batch.len() as u32 == DEMO_BATCH_KEYS {
            db.write(std::mem::take(&mut batch), Default::default())?;
        }
    }
    if !batch.is_empty() {
        db.write(batch, Default::default())?;
    }
    let secs = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "\n1. Wrote {DEMO_KEYS} keys (user:000000 .. user:{:06}) in batches of {DEMO_BATCH_KEYS}: \
         {secs:.2} s, {:.0} keys/s. They sit in the WAL and the memtable.",
        DEMO_KEYS - 1,
        f64::from(DEMO_KEYS) / secs.max(1e-9)
    )?;
    Ok(())
}

fn read_back(db: &Db, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(out, "\n2. Reading some back:")?;
    for i in [0, 4_242, DEMO_KEYS - 1] {
        show_get(db, &user_key(i), out)?;
    }
    show_get(db, "user:nobody", out)
}

fn show_get(db: &Db, key: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let shown = match db.get(key)? {
        Some(v) => escape(&v),
        None => "(nil)".to_string(),
    };
    writeln!(out, "   get {key:<12} -> {shown}")?;
    Ok(())
}

fn snapshot(db: &Db, out: &mut dyn Write) -> Result<(), CliError> {
    let key = user_key(42);
    let snap = db.snapshot();
    db.put(&key, "{\"name\":\"user 42\",\"visits\":1000}")?;
    let now = db.get(&key)?.unwrap_or_default();
    let then = db.get_at(&key, &snap)?.unwrap_or_default();
    writeln!(
        out,
        "\n3. Took a snapshot (sequence {}), then overwrote {key}:\n   \
         now           -> {}\n   at snapshot   -> {}",
        snap.sequence(),
        escape(&now),
        escape(&then)
    )?;
    Ok(())
}

fn range_delete(db: &Db, out: &mut dyn Write) -> Result<(), CliError> {
    let (start, end) = (user_key(50_000), user_key(60_000));
    db.delete_range(&start, &end)?;
    let left = db.iter(IterOptions::new()).count();
    let in_range = db
        .iter(IterOptions::range(start.clone(), end.clone()))
        .count();
    writeln!(
        out,
        "\n4. Deleted the range [{start}, {end}) with one range tombstone: \
         {left} keys left, {in_range} in the range."
    )?;
    Ok(())
}

fn flush_and_compact(db: &Db, out: &mut dyn Write) -> Result<(), CliError> {
    let started = Instant::now();
    db.flush()?;
    let flushed = db.stats();
    db.compact_range(None, None)?;
    let s = db.stats();
    let l0_bytes = flushed.levels.first().map_or(0, |l| l.bytes);
    writeln!(
        out,
        "\n5. Flushed the memtable to L0 ({l0_bytes} bytes of tables), then compacted \
         everything to the last level ({} bytes) in {:.2} s.",
        s.table_bytes(),
        started.elapsed().as_secs_f64()
    )?;
    let moved = s.trivial_moves - flushed.trivial_moves;
    if moved > 0 && s.table_bytes() == l0_bytes {
        writeln!(
            out,
            "   The table was moved down without being rewritten ({moved} trivial move(s)), \
             so the keys under the range tombstone are still on disk, hidden by it:"
        )?;
    } else {
        writeln!(
            out,
            "   Compaction rewrote the tables, dropping the keys under the range tombstone:"
        )?;
    }
    print_levels(out, &s)?;
    writeln!(
        out,
        "write amplification {:.2} (WAL + flush + compaction bytes per user byte)",
        s.write_amplification()
    )?;
    print_memory(out, &s)
}

fn where_it_lives(dir: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        files.push((entry.file_name().to_string_lossy().into_owned(), len));
    }
    files.sort();
    writeln!(out, "\n6. The data lives in {}:", dir.display())?;
    for (name, len) in &files {
        writeln!(out, "   {name:<20} {:>10}", human_bytes(*len))?;
    }
    let d = dir.display();
    writeln!(
        out,
        "\nTry next:\n   cairn-db get {d} user:000042\n   cairn-db scan {d} --prefix user:0499 --limit 5\n   \
         cairn-db stats {d}\n   cairn-db bench --num 100000\nRemove it with: rm -r {d}"
    )?;
    Ok(())
}
