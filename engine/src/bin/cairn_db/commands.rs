//! The one-shot commands: put, get, delete, scan, stats, compact.

use crate::args::{Arg, CliError, Parser, expect_positionals, usage};
use crate::text::{escape, human_bytes};
use cairn_engine::{Db, IterOptions, Options, Stats, WriteBatch, WriteOptions};
use std::ffi::OsString;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// Opens the database in `dir`. Only `put` creates one: a typo in the
/// directory of a read should fail, not leave an empty database behind.
/// The directory is checked here because `Db::open` creates it and its
/// LOCK file before it looks for a database, even without
/// `create_if_missing`.
fn open(dir: &OsString, create: bool) -> Result<Db, CliError> {
    let path = PathBuf::from(dir);
    if !create && !path.is_dir() {
        return Err(CliError::io(
            format!("no database in {}", path.display()),
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let opts = Options {
        create_if_missing: create,
        ..Options::default()
    };
    Ok(Db::open(path, opts)?)
}

/// Positionals of a command that takes no flags (besides `--help`, which
/// `main` handles before we get here).
fn positionals(p: &mut Parser, names: &[&str]) -> Result<Vec<OsString>, CliError> {
    let mut got = Vec::new();
    while let Some(arg) = p.next_arg()? {
        match arg {
            Arg::Positional(a) => got.push(a),
            Arg::Flag(f) => return Err(usage(format!("unknown flag {f}"))),
        }
    }
    expect_positionals(got, names)
}

/// A CLI write is synced before "OK" is printed: the process exits right
/// after, and an acknowledged write should survive a power cut.
fn write_synced(db: &Db, batch: WriteBatch) -> Result<(), CliError> {
    let opts = WriteOptions {
        sync: true,
        ..WriteOptions::default()
    };
    db.write(batch, opts)?;
    db.close()?;
    Ok(())
}

pub fn put(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let [dir, key, value]: [OsString; 3] = positionals(p, &["dir", "key", "value"])?
        .try_into()
        .map_err(|_| usage("put takes <dir> <key> <value>"))?;
    let db = open(&dir, true)?;
    let mut batch = WriteBatch::new();
    batch.put(key.into_vec(), value.into_vec());
    write_synced(&db, batch)?;
    writeln!(out, "OK")?;
    Ok(())
}

pub fn delete(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let [dir, key]: [OsString; 2] = positionals(p, &["dir", "key"])?
        .try_into()
        .map_err(|_| usage("delete takes <dir> <key>"))?;
    let db = open(&dir, false)?;
    let mut batch = WriteBatch::new();
    batch.delete(key.into_vec());
    write_synced(&db, batch)?;
    writeln!(out, "OK")?;
    Ok(())
}

pub fn get(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let [dir, key]: [OsString; 2] = positionals(p, &["dir", "key"])?
        .try_into()
        .map_err(|_| usage("get takes <dir> <key>"))?;
    let db = open(&dir, false)?;
    match db.get(key.into_vec())? {
        Some(v) => writeln!(out, "{}", escape(&v))?,
        None => writeln!(out, "(nil)")?,
    }
    Ok(())
}

#[derive(Debug, Default)]
struct ScanArgs {
    dir: Option<OsString>,
    prefix: Option<Vec<u8>>,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    reverse: bool,
    limit: Option<u64>,
}

fn parse_scan(p: &mut Parser) -> Result<ScanArgs, CliError> {
    let mut a = ScanArgs::default();
    let mut positional = Vec::new();
    while let Some(arg) = p.next_arg()? {
        match arg {
            Arg::Positional(v) => positional.push(v),
            Arg::Flag(f) => match f.as_str() {
                "--prefix" => a.prefix = Some(p.value(&f)?.into_vec()),
                "--start" => a.start = Some(p.value(&f)?.into_vec()),
                "--end" => a.end = Some(p.value(&f)?.into_vec()),
                "--reverse" => a.reverse = true,
                "--limit" => a.limit = Some(p.number_value(&f)?),
                _ => return Err(usage(format!("unknown flag {f} for scan"))),
            },
        }
    }
    a.dir = expect_positionals(positional, &["dir"])?.pop();
    Ok(a)
}

/// `--prefix` narrowed further by `--start` (inclusive) and `--end`
/// (exclusive), whichever is tighter.
fn scan_bounds(a: &ScanArgs) -> IterOptions {
    let mut opts = match &a.prefix {
        Some(prefix) => IterOptions::prefix(prefix),
        None => IterOptions::new(),
    };
    if let Some(start) = &a.start
        && opts.lower_bound.as_ref().is_none_or(|lo| start > lo)
    {
        opts.lower_bound = Some(start.clone());
    }
    if let Some(end) = &a.end
        && opts.upper_bound.as_ref().is_none_or(|hi| end < hi)
    {
        opts.upper_bound = Some(end.clone());
    }
    opts.reverse = a.reverse;
    opts
}

pub fn scan(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let a = parse_scan(p)?;
    let dir = a.dir.clone().ok_or_else(|| usage("scan takes <dir>"))?;
    let db = open(&dir, false)?;
    let limit = a.limit.unwrap_or(u64::MAX);
    let mut out = BufWriter::new(out);
    let mut iter = db.iter(scan_bounds(&a));
    let mut printed = 0u64;
    while printed < limit {
        let Some(item) = iter.next() else { break };
        let (k, v) = item?;
        writeln!(out, "{}\t{}", escape(&k), escape(&v))?;
        printed += 1;
    }
    out.flush()?;
    Ok(())
}

pub fn stats(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let dir = positionals(p, &["dir"])?
        .pop()
        .ok_or_else(|| usage("stats takes <dir>"))?;
    let db = open(&dir, false)?;
    let s = db.stats();
    print_levels(out, &s)?;
    writeln!(
        out,
        "write amplification: {:.2} (counted since this process opened the database)",
        s.write_amplification()
    )?;
    print_memory(out, &s)?;
    writeln!(
        out,
        "last sequence {}, range tombstones {}",
        s.last_sequence, s.range_tombstones
    )?;
    Ok(())
}

pub fn compact(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let dir = positionals(p, &["dir"])?
        .pop()
        .ok_or_else(|| usage("compact takes <dir>"))?;
    let db = open(&dir, false)?;
    let before = db.stats().table_bytes();
    let started = std::time::Instant::now();
    db.compact_range(None, None)?;
    let s = db.stats();
    db.close()?;
    writeln!(
        out,
        "compacted in {:.2} s: {} -> {} of tables",
        started.elapsed().as_secs_f64(),
        human_bytes(before),
        human_bytes(s.table_bytes())
    )?;
    print_levels(out, &s)?;
    Ok(())
}

/// The level table: files and bytes per level, down to the deepest level
/// that holds anything (L0 always shown).
pub fn print_levels(out: &mut dyn Write, s: &Stats) -> Result<(), CliError> {
    let deepest = s.levels.iter().rposition(|l| l.files > 0).unwrap_or(0);
    writeln!(out, "level  files        bytes")?;
    for (i, l) in s.levels.iter().enumerate().take(deepest + 1) {
        writeln!(out, "L{i:<4} {:>6} {:>12}", l.files, human_bytes(l.bytes))?;
    }
    let files: usize = s.levels.iter().map(|l| l.files).sum();
    writeln!(out, "total {files:>6} {:>12}", human_bytes(s.table_bytes()))?;
    Ok(())
}

pub fn print_memory(out: &mut dyn Write, s: &Stats) -> Result<(), CliError> {
    writeln!(
        out,
        "memory: {} (memtables {} in {} immutable + 1 active, block cache {}, \
         indexes and filters {} for {} open tables)",
        human_bytes(s.memory_bytes()),
        human_bytes(s.memtable_bytes),
        s.immutable_memtables,
        human_bytes(s.block_cache_bytes),
        human_bytes(s.table_cache_bytes),
        s.open_tables
    )?;
    Ok(())
}
