//! `cairn-db bench`: LevelDB `db_bench`-style micro-benchmarks.
//!
//! Conventions kept from db_bench so numbers compare: keys are zero-padded
//! decimals in `[0, num)`; values are cut from a pool of half-compressible
//! bytes; `fillseq` and `fillrandom` start from an empty database, the
//! other benchmarks use what the previous ones left; `readrandom` reads
//! `num` random keys of the key space and reports found/num (after
//! `fillrandom` of `num` random keys about 63% of the space exists).
//!
//! Differences, on purpose: after each write benchmark the tool waits
//! (untimed, but reported) for flushes and compactions to finish, so the
//! next benchmark measures a settled tree and write amplification counts
//! all the work the writes caused; `seekrandom` reuses one iterator per
//! thread (RocksDB's convention) rather than creating one per seek.
//!
//! Timing: `micros/op` and `ops/s` are wall time over all threads' ops;
//! p50/p99/p99.9 are per-op latencies (the time between one op's end and
//! the next's, so key generation is included, as in db_bench).

use crate::args::{Arg, CliError, Parser, usage};
use crate::commands::print_memory;
use crate::demo::fresh_temp_dir;
use crate::histogram::Histogram;
use crate::random::{SplitMix64, Values, digits, value_pool, write_key};
use crate::text::human_bytes;
use cairn_engine::{
    Compression, Db, IterOptions, Options, ReadMode, Stats, StdFs, WriteBatch, WriteOptions,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Bounds that keep a typo from asking for something absurd.
const KEY_BYTES_MAX: usize = 1024;
const VALUE_BYTES_MAX: usize = 16 << 20;
const THREADS_MAX: usize = 64;
/// db_bench's default seed.
const SEED_DEFAULT: u64 = 301;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Benchmark {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadRandom,
    ReadSeq,
    ReadReverse,
    SeekRandom,
    DeleteRandom,
    /// Not timed per op: flushes and compacts the whole key range.
    Compact,
}

const ALL: [(&str, Benchmark); 9] = [
    ("fillseq", Benchmark::FillSeq),
    ("fillrandom", Benchmark::FillRandom),
    ("overwrite", Benchmark::Overwrite),
    ("readrandom", Benchmark::ReadRandom),
    ("readseq", Benchmark::ReadSeq),
    ("readreverse", Benchmark::ReadReverse),
    ("seekrandom", Benchmark::SeekRandom),
    ("deleterandom", Benchmark::DeleteRandom),
    ("compact", Benchmark::Compact),
];

const DEFAULT_BENCHMARKS: &str =
    "fillseq,fillrandom,overwrite,readrandom,readseq,readreverse,seekrandom,deleterandom";

impl Benchmark {
    fn name(self) -> &'static str {
        ALL.iter().find(|(_, b)| *b == self).map_or("?", |(n, _)| n)
    }

    fn fresh_db(self) -> bool {
        matches!(self, Benchmark::FillSeq | Benchmark::FillRandom)
    }

    fn writes(self) -> bool {
        matches!(
            self,
            Benchmark::FillSeq
                | Benchmark::FillRandom
                | Benchmark::Overwrite
                | Benchmark::DeleteRandom
        )
    }
}

#[derive(Debug)]
struct Config {
    dir: Option<PathBuf>,
    num: u64,
    key_bytes: usize,
    value_bytes: usize,
    benchmarks: Vec<Benchmark>,
    threads: usize,
    sync: bool,
    read_mode: ReadMode,
    compression: Compression,
    cache_mb: usize,
    seed: u64,
    /// Entries per write batch (db_bench's --batch_size).
    batch: usize,
    concurrent_insert_min: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: None,
            num: 1_000_000,
            key_bytes: 16,
            value_bytes: 100,
            benchmarks: Vec::new(),
            threads: 1,
            sync: false,
            read_mode: ReadMode::Mmap,
            compression: Compression::Lz4,
            cache_mb: 256,
            seed: SEED_DEFAULT,
            batch: 1,
            concurrent_insert_min: Options::default().concurrent_insert_min_entries,
        }
    }
}

fn parse_benchmarks(list: &str) -> Result<Vec<Benchmark>, CliError> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|name| {
            ALL.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    let known: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
                    usage(format!(
                        "unknown benchmark {name:?} (known: {})",
                        known.join(",")
                    ))
                })
        })
        .collect()
}

fn as_usize(flag: &str, n: u64) -> Result<usize, CliError> {
    usize::try_from(n).map_err(|_| usage(format!("{flag}: {n} is too large")))
}

fn parse_flag(p: &mut Parser, c: &mut Config, flag: &str) -> Result<(), CliError> {
    match flag {
        "--dir" => c.dir = Some(PathBuf::from(p.value(flag)?)),
        "--num" => c.num = p.number_value(flag)?,
        "--key-bytes" => c.key_bytes = as_usize(flag, p.number_value(flag)?)?,
        "--value-bytes" => c.value_bytes = as_usize(flag, p.number_value(flag)?)?,
        "--benchmarks" => c.benchmarks = parse_benchmarks(&p.text_value(flag)?)?,
        "--threads" => c.threads = as_usize(flag, p.number_value(flag)?)?,
        "--sync" => c.sync = true,
        "--read-mode" => {
            c.read_mode = match p.text_value(flag)?.as_str() {
                "mmap" => ReadMode::Mmap,
                "pread" => ReadMode::Pread,
                other => {
                    return Err(usage(format!(
                        "--read-mode: {other:?} is not mmap or pread"
                    )));
                }
            }
        }
        "--compression" => {
            c.compression = match p.text_value(flag)?.as_str() {
                "lz4" => Compression::Lz4,
                "none" => Compression::None,
                other => {
                    return Err(usage(format!(
                        "--compression: {other:?} is not lz4 or none"
                    )));
                }
            }
        }
        "--cache-mb" => c.cache_mb = as_usize(flag, p.number_value(flag)?)?,
        "--seed" => c.seed = p.number_value(flag)?,
        "--batch" => c.batch = as_usize(flag, p.number_value(flag)?)?.max(1),
        "--concurrent-insert-min" => {
            c.concurrent_insert_min = as_usize(flag, p.number_value(flag)?)?
        }
        _ => return Err(usage(format!("unknown flag {flag} for bench"))),
    }
    Ok(())
}

fn parse(p: &mut Parser) -> Result<Config, CliError> {
    let mut c = Config::default();
    while let Some(arg) = p.next_arg()? {
        match arg {
            Arg::Flag(f) => parse_flag(p, &mut c, &f)?,
            Arg::Positional(a) => return Err(usage(format!("unexpected argument {a:?}"))),
        }
    }
    if c.benchmarks.is_empty() {
        c.benchmarks = parse_benchmarks(DEFAULT_BENCHMARKS)?;
    }
    validate(&c)?;
    Ok(c)
}

fn validate(c: &Config) -> Result<(), CliError> {
    if c.num == 0 {
        return Err(usage("--num must be at least 1"));
    }
    let needed = digits(c.num - 1);
    if c.key_bytes < needed || c.key_bytes > KEY_BYTES_MAX {
        return Err(usage(format!(
            "--key-bytes must be in {needed}..={KEY_BYTES_MAX}: keys are {needed}-digit numbers for --num {}",
            c.num
        )));
    }
    if c.value_bytes > VALUE_BYTES_MAX {
        return Err(usage(format!(
            "--value-bytes must be at most {VALUE_BYTES_MAX}"
        )));
    }
    if c.threads == 0 || c.threads > THREADS_MAX {
        return Err(usage(format!("--threads must be in 1..={THREADS_MAX}")));
    }
    if u64::try_from(c.threads).unwrap_or(u64::MAX) > c.num {
        return Err(usage("--threads must not exceed --num"));
    }
    Ok(())
}

/// What one thread (or all, merged) did.
#[derive(Debug, Default)]
struct Outcome {
    ops: u64,
    bytes: u64,
    found: u64,
    hist: Histogram,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.found += o.found;
        self.hist.merge(&o.hist);
    }
}

/// State shared by the threads of one benchmark.
struct Ctx<'a> {
    db: &'a Db,
    cfg: &'a Config,
    pool: &'a [u8],
    /// Index of the benchmark in the run: gives each its own random stream,
    /// so `readrandom` does not replay `fillrandom`'s keys.
    index: u64,
}

impl Ctx<'_> {
    fn rng(&self, thread: usize) -> SplitMix64 {
        let mut mix = SplitMix64::new(self.cfg.seed ^ (self.index << 32) ^ thread as u64);
        SplitMix64::new(mix.next_u64())
    }

    /// Thread `t`'s share `[lo, hi)` of `[0, num)`.
    fn share(&self, t: usize) -> (u64, u64) {
        let n = u128::from(self.cfg.num);
        let threads = self.cfg.threads as u128;
        let at = |i: usize| (n * i as u128 / threads) as u64;
        (at(t), at(t + 1))
    }
}

/// Times successive ops of one thread into its histogram.
struct Clock {
    last: Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            last: Instant::now(),
        }
    }

    fn tick(&mut self, out: &mut Outcome) {
        let now = Instant::now();
        out.hist.record(now.duration_since(self.last));
        out.ops += 1;
        self.last = now;
    }
}

fn run_writes(ctx: &Ctx, b: Benchmark, t: usize) -> Result<Outcome, CliError> {
    let (lo, hi) = ctx.share(t);
    let mut rng = ctx.rng(t);
    let mut values = Values::new(ctx.pool, rng.below(ctx.pool.len() as u64) as usize);
    let opts = WriteOptions {
        sync: ctx.cfg.sync,
        ..WriteOptions::default()
    };
    let mut key = vec![0u8; ctx.cfg.key_bytes];
    let mut out = Outcome::default();
    let mut clock = Clock::start();
    let per_batch = ctx.cfg.batch as u64;
    let mut i = 0;
    while i < hi - lo {
        let mut batch = WriteBatch::new();
        let end = (i + per_batch).min(hi - lo);
        for j in i..end {
            let k = match b {
                Benchmark::FillSeq => lo + j,
                _ => lo + rng.below(hi - lo),
            };
            write_key(&mut key, k);
            if b == Benchmark::DeleteRandom {
                batch.delete(&key);
                out.bytes += key.len() as u64;
            } else {
                batch.put(&key, values.next(ctx.cfg.value_bytes));
                out.bytes += (key.len() + ctx.cfg.value_bytes) as u64;
            }
        }
        ctx.db.write(batch, opts)?;
        // Latency is per batch; ops count entries, as db_bench does.
        clock.tick(&mut out);
        out.ops += end - i - 1;
        i = end;
    }
    Ok(out)
}

fn run_read_random(ctx: &Ctx, t: usize) -> Result<Outcome, CliError> {
    let (lo, hi) = ctx.share(t);
    let mut rng = ctx.rng(t);
    let mut key = vec![0u8; ctx.cfg.key_bytes];
    let mut out = Outcome::default();
    let mut clock = Clock::start();
    for _ in lo..hi {
        write_key(&mut key, rng.below(ctx.cfg.num));
        if let Some(v) = ctx.db.get(&key)? {
            out.found += 1;
            out.bytes += (key.len() + v.len()) as u64;
        }
        clock.tick(&mut out);
    }
    Ok(out)
}

fn run_seek_random(ctx: &Ctx, t: usize) -> Result<Outcome, CliError> {
    let (lo, hi) = ctx.share(t);
    let mut rng = ctx.rng(t);
    let mut key = vec![0u8; ctx.cfg.key_bytes];
    let mut iter = ctx.db.iter(IterOptions::new());
    let mut out = Outcome::default();
    let mut clock = Clock::start();
    for _ in lo..hi {
        write_key(&mut key, rng.below(ctx.cfg.num));
        iter.seek(&key);
        if let Some(item) = iter.next() {
            let (k, v) = item?;
            out.found += u64::from(k == key);
            out.bytes += (k.len() + v.len()) as u64;
        }
        clock.tick(&mut out);
    }
    Ok(out)
}

/// Each thread walks its own share of the key space, so with several
/// threads every entry is read once: `[key(lo), key(hi))`, open-ended at
/// the first and last thread. At most `hi - lo` entries are read, so a
/// reused `--dir` holding more keys costs no more than `num` reads.
fn run_scan(ctx: &Ctx, reverse: bool, t: usize) -> Result<Outcome, CliError> {
    let (lo, hi) = ctx.share(t);
    let key_at = |n: u64| {
        let mut k = vec![0u8; ctx.cfg.key_bytes];
        write_key(&mut k, n);
        k
    };
    let opts = IterOptions {
        lower_bound: (t > 0).then(|| key_at(lo)),
        upper_bound: (t + 1 < ctx.cfg.threads).then(|| key_at(hi)),
        reverse,
        ..IterOptions::new()
    };
    let mut out = Outcome::default();
    let mut clock = Clock::start();
    for item in ctx
        .db
        .iter(opts)
        .take(usize::try_from(hi - lo).unwrap_or(usize::MAX))
    {
        let (k, v) = item?;
        out.found += 1;
        out.bytes += (k.len() + v.len()) as u64;
        clock.tick(&mut out);
    }
    Ok(out)
}

fn run_thread(ctx: &Ctx, b: Benchmark, t: usize) -> Result<Outcome, CliError> {
    match b {
        Benchmark::ReadRandom => run_read_random(ctx, t),
        Benchmark::SeekRandom => run_seek_random(ctx, t),
        Benchmark::ReadSeq => run_scan(ctx, false, t),
        Benchmark::ReadReverse => run_scan(ctx, true, t),
        Benchmark::Compact => Ok(Outcome::default()),
        _ => run_writes(ctx, b, t),
    }
}

/// Runs `b` on every thread from a common start; returns the merged
/// outcome and the wall time from the first thread's start to the last
/// one's finish. Threads take their own clocks: on two cores the
/// coordinating thread may not run again until the workers are done.
fn run_threads(ctx: &Ctx, b: Benchmark) -> Result<(Outcome, Duration), CliError> {
    let barrier = Barrier::new(ctx.cfg.threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..ctx.cfg.threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    let outcome = run_thread(ctx, b, t);
                    (started, Instant::now(), outcome)
                })
            })
            .collect();
        let mut total = Outcome::default();
        let mut span: Option<(Instant, Instant)> = None;
        for h in handles {
            let (start, end, outcome) = h
                .join()
                .map_err(|_| CliError::io("benchmark thread", std::io::Error::other("panicked")))?;
            total.merge(outcome?);
            span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
        }
        Ok((total, span.map_or(Duration::ZERO, |(s, e)| e - s)))
    })
}

fn report(
    out: &mut dyn Write,
    b: Benchmark,
    cfg: &Config,
    o: &Outcome,
    elapsed: Duration,
) -> Result<(), CliError> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ops = o.ops.max(1) as f64;
    let mut extra = String::new();
    match b {
        Benchmark::ReadRandom | Benchmark::SeekRandom => {
            extra = format!("  ({} of {} found)", o.found, o.ops);
        }
        Benchmark::ReadSeq | Benchmark::ReadReverse => {
            extra = format!("  ({} entries)", o.found);
        }
        _ => {}
    }
    if cfg.threads > 1 {
        extra.push_str(&format!("  [{} threads]", cfg.threads));
    }
    writeln!(
        out,
        "{:<12} : {:>9.3} micros/op {:>9.0} ops/s {:>7.1} MB/s  p50 {:.2} p99 {:.2} p99.9 {:.2} us{extra}",
        b.name(),
        secs * 1e6 / ops,
        o.ops as f64 / secs,
        o.bytes as f64 / (1 << 20) as f64 / secs,
        o.hist.percentile_micros(0.50),
        o.hist.percentile_micros(0.99),
        o.hist.percentile_micros(0.999),
    )?;
    Ok(())
}

/// Write amplification of what happened between `before` and `after`, and
/// the level shape after.
fn report_writes(out: &mut dyn Write, before: &Stats, after: &Stats) -> Result<(), CliError> {
    let user = after.user_bytes_written - before.user_bytes_written;
    let wal = after.wal_bytes_written - before.wal_bytes_written;
    let flush = after.flush_bytes_written - before.flush_bytes_written;
    let compaction = after.compaction_bytes_written - before.compaction_bytes_written;
    let amp = (wal + flush + compaction) as f64 / user.max(1) as f64;
    writeln!(
        out,
        "{:14} write-amp {amp:.2}: user {} -> wal {}, flush {}, compaction {}; stalls {} ({} ms), slowdowns {}; {:.1} writes per WAL group, {} fsyncs",
        "",
        human_bytes(user),
        human_bytes(wal),
        human_bytes(flush),
        human_bytes(compaction),
        after.stall_count - before.stall_count,
        (after.stall_micros - before.stall_micros) / 1000,
        after.slowdown_count - before.slowdown_count,
        (after.writes - before.writes) as f64
            / (after.write_groups - before.write_groups).max(1) as f64,
        after.wal_syncs - before.wal_syncs,
    )?;
    report_shape(out, after)
}

fn report_shape(out: &mut dyn Write, s: &Stats) -> Result<(), CliError> {
    let shape: Vec<String> = s
        .levels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.files > 0)
        .map(|(i, l)| format!("L{i} {} files {}", l.files, human_bytes(l.bytes)))
        .collect();
    let shape = if shape.is_empty() {
        "no tables yet (all in the memtable)".to_string()
    } else {
        shape.join(", ")
    };
    writeln!(out, "{:14} levels: {shape}", "")?;
    Ok(())
}

fn open(cfg: &Config, path: &Path) -> Result<Db, CliError> {
    let opts = Options {
        fs: Arc::new(StdFs::new(cfg.read_mode)),
        compression: cfg.compression,
        block_cache_bytes: cfg.cache_mb << 20,
        concurrent_insert_min_entries: cfg.concurrent_insert_min,
        ..Options::default()
    };
    Ok(Db::open(path, opts)?)
}

/// Closes `db` and removes its directory; `db_dir` is always the
/// subdirectory this tool made, never the user's `--dir` itself.
fn reopen_empty(db: Db, cfg: &Config, db_dir: &Path) -> Result<Db, CliError> {
    db.close()?;
    drop(db);
    if db_dir.exists() {
        std::fs::remove_dir_all(db_dir)
            .map_err(|e| CliError::io(format!("removing {}", db_dir.display()), e))?;
    }
    open(cfg, db_dir)
}

fn header(out: &mut dyn Write, cfg: &Config, db_dir: &Path) -> Result<(), CliError> {
    writeln!(
        out,
        "cairn-db bench: {} keys of {} B, values of {} B (about half compressible), {} thread(s)",
        cfg.num, cfg.key_bytes, cfg.value_bytes, cfg.threads
    )?;
    writeln!(
        out,
        "options: read mode {}, compression {}, block cache {} MiB, sync {}, seed {}",
        match cfg.read_mode {
            ReadMode::Mmap => "mmap",
            ReadMode::Pread => "pread",
        },
        match cfg.compression {
            Compression::Lz4 => "lz4",
            Compression::None => "none",
        },
        cfg.cache_mb,
        cfg.sync,
        cfg.seed
    )?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(out, "database: {} ({cpus} CPUs)", db_dir.display())?;
    if cfg!(debug_assertions) {
        writeln!(
            out,
            "WARNING: debug build; numbers are meaningless. Use --release."
        )?;
    }
    writeln!(out, "------------------------------------------------")?;
    Ok(())
}

/// Runs one benchmark on `db` and prints its lines.
fn run_one(
    out: &mut dyn Write,
    cfg: &Config,
    db: &Db,
    pool: &[u8],
    index: usize,
    b: Benchmark,
) -> Result<(), CliError> {
    let before = db.stats();
    if b == Benchmark::Compact {
        let started = Instant::now();
        db.compact_range(None, None)?;
        writeln!(
            out,
            "{:<12} : {:>9.3} s",
            b.name(),
            started.elapsed().as_secs_f64()
        )?;
        return report_shape(out, &db.stats());
    }
    let ctx = Ctx {
        db,
        cfg,
        pool,
        index: index as u64,
    };
    let (outcome, elapsed) = run_threads(&ctx, b)?;
    report(out, b, cfg, &outcome, elapsed)?;
    if b.writes() {
        let started = Instant::now();
        db.wait_for_background()?;
        writeln!(
            out,
            "{:14} background flushes and compactions settled {:.2} s later (untimed)",
            "",
            started.elapsed().as_secs_f64()
        )?;
        report_writes(out, &before, &db.stats())?;
    }
    Ok(())
}

pub fn run(p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    let cfg = parse(p)?;
    let (dir, made_dir) = match &cfg.dir {
        Some(d) => (d.clone(), false),
        None => (fresh_temp_dir("bench")?, true),
    };
    let db_dir = dir.join("cairn-bench");
    header(out, &cfg, &db_dir)?;
    let pool = value_pool(cfg.value_bytes, &mut SplitMix64::new(cfg.seed));
    let mut db = open(&cfg, &db_dir)?;
    for (i, b) in cfg.benchmarks.iter().enumerate() {
        if b.fresh_db() {
            db = reopen_empty(db, &cfg, &db_dir)?;
        }
        run_one(out, &cfg, &db, &pool, i, *b)?;
    }
    writeln!(out, "------------------------------------------------")?;
    print_memory(out, &db.stats())?;
    db.close()?;
    drop(db);
    if made_dir {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| CliError::io(format!("removing {}", dir.display()), e))?;
    }
    Ok(())
}
