//! The workloads, run in order against one engine, and what each measures.
//!
//! A run keeps one database folder: `fillseq` and `fillrandom` start from an
//! empty one, every other workload uses what the ones before it left (so
//! the default order fills, overwrites, reads, then deletes). Every figure
//! is taken the same way for every engine, outside the engine:
//!
//! - ops/s and MB/s: wall time from the first thread's start to the last
//!   one's end; MB/s counts key + value bytes written or read.
//! - p50/p99/p99.9: per-op latency, the time between one op's end and the
//!   next's on the same thread (db_bench's convention).
//! - write amplification: bytes the process wrote to files during the
//!   workload and until it has been quiet for a while after it (background
//!   flushes and compactions included; `sys::settle`), over the key + value
//!   bytes the workload wrote.
//! - space amplification: bytes allocated on disk under the folder after
//!   the workload settled, over the live key + value bytes.
//! - peak RSS: the process's high-water mark during the workload.

use crate::data::{KEY_BYTES, Permutation, SplitMix64, Values, value_pool, write_key};
use crate::engines::{self, Engine, Settings};
use crate::error::{Error, Result, io};
use crate::histogram::Histogram;
use crate::sys;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One workload of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `num` puts in key order into an empty database.
    FillSeq,
    /// `num` puts of every key once, in random order, into an empty database.
    FillRandom,
    /// `num` puts of uniformly random existing keys.
    Overwrite,
    /// One full scan in key order.
    ReadSeq,
    /// `num` gets of uniformly random keys, with the data in cache.
    ReadRandom,
    /// `num / 10` seeks to random keys, each reading 10 entries.
    SeekRandom,
    /// Close, drop the files from the page cache, reopen, then `num / 10`
    /// random gets.
    ReadRandomCold,
    /// `readers` threads do `num` random gets in all while one thread
    /// overwrites random keys as fast as it can.
    ReadWhileWriting,
    /// Deletes half of the keys (each once, random order).
    DeleteRandom,
    /// Compacts the whole key space; reports the space reclaimed.
    Compact,
    /// `sync_writes` fsynced puts from one thread.
    SyncWrite1,
    /// `sync_writes` fsynced puts from 16 threads (group commit).
    SyncWrite16,
}

const ALL: [(&str, Workload); 12] = [
    ("fillseq", Workload::FillSeq),
    ("fillrandom", Workload::FillRandom),
    ("overwrite", Workload::Overwrite),
    ("readseq", Workload::ReadSeq),
    ("readrandom", Workload::ReadRandom),
    ("seekrandom", Workload::SeekRandom),
    ("readrandom-cold", Workload::ReadRandomCold),
    ("readwhilewriting", Workload::ReadWhileWriting),
    ("deleterandom", Workload::DeleteRandom),
    ("compact", Workload::Compact),
    ("sync1", Workload::SyncWrite1),
    ("sync16", Workload::SyncWrite16),
];

/// Entries each `seekrandom` op reads after its seek.
pub const SEEK_NEXTS: usize = 10;
/// Writer threads of `sync16`.
const SYNC_WRITERS: usize = 16;

impl Workload {
    /// Every workload, in the default order.
    pub fn all() -> Vec<Workload> {
        ALL.iter().map(|(_, w)| *w).collect()
    }

    /// The name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        ALL.iter().find(|(_, w)| *w == self).map_or("?", |(n, _)| n)
    }

    /// Parses a name from [`Workload::name`].
    pub fn parse(name: &str) -> Result<Workload> {
        ALL.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| *w)
            .ok_or_else(|| {
                let known: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
                Error::Usage(format!(
                    "unknown workload {name:?} (known: {})",
                    known.join(",")
                ))
            })
    }

    /// Whether a higher figure is better for the ratio column: throughput
    /// for all but `compact`, whose figure is its duration.
    pub fn ratio_on_time(self) -> bool {
        self == Workload::Compact
    }
}

/// What to run and how big.
#[derive(Debug, Clone)]
pub struct Config {
    /// Keys in the key space, and ops of the main workloads.
    pub num: u64,
    /// Value length in bytes.
    pub value_bytes: usize,
    /// The workloads, in order.
    pub workloads: Vec<Workload>,
    /// Reader threads of `readwhilewriting`.
    pub readers: usize,
    /// Puts of each sync workload (all threads together).
    pub sync_writes: u64,
    /// Seed of every key stream.
    pub seed: u64,
    /// Parent of the database folders; a temporary folder if `None`.
    pub dir: Option<PathBuf>,
    /// The equal settings every engine gets.
    pub settings: Settings,
    /// How long the process must write nothing before a write workload
    /// counts as settled.
    pub settle_quiet: Duration,
    /// The longest wait for settling.
    pub settle_limit: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            num: 1_000_000,
            value_bytes: 100,
            workloads: Workload::all(),
            readers: 2,
            sync_writes: 20_000,
            seed: 301,
            dir: None,
            settings: Settings::default(),
            settle_quiet: Duration::from_millis(1500),
            settle_limit: Duration::from_secs(120),
        }
    }
}

impl Config {
    /// The smoke mode: every workload, tiny sizes, a run of seconds. For
    /// CI, so that the runner never rots; its figures mean nothing.
    pub fn smoke() -> Config {
        Config {
            num: 2_000,
            sync_writes: 64,
            settle_quiet: Duration::from_millis(50),
            settle_limit: Duration::from_secs(2),
            settings: Settings {
                cache_bytes: 8 << 20,
                write_buffer_bytes: 64 << 10,
                background_threads: 2,
            },
            ..Config::default()
        }
    }

    /// Checks sizes before anything runs.
    pub fn validate(&self) -> Result<()> {
        if self.num == 0 || self.num > 10u64.pow(KEY_BYTES as u32) / 10 {
            return Err(Error::Usage("--num must be in 1..=10^15".into()));
        }
        if self.value_bytes == 0 || self.value_bytes > 1 << 20 {
            return Err(Error::Usage("--value-bytes must be in 1..=1048576".into()));
        }
        if self.readers == 0 || self.readers > 64 {
            return Err(Error::Usage("--readers must be in 1..=64".into()));
        }
        if self.sync_writes < SYNC_WRITERS as u64 {
            return Err(Error::Usage(format!(
                "--sync-writes must be at least {SYNC_WRITERS}"
            )));
        }
        Ok(())
    }

    fn entry_bytes(&self) -> u64 {
        (KEY_BYTES + self.value_bytes) as u64
    }
}

/// What one workload measured on one engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Operations done (for `compact`, 0).
    pub ops: u64,
    /// Wall time in seconds.
    pub secs: f64,
    /// Key + value bytes written or read.
    pub bytes: u64,
    /// Latency percentiles in microseconds (0 when not per op).
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Write amplification, for workloads that write.
    pub write_amp: Option<f64>,
    /// Space amplification after the workload.
    pub space_amp: Option<f64>,
    /// Peak RSS during the workload, bytes.
    pub peak_rss: Option<u64>,
}

impl Measured {
    /// Operations per second (0 when no ops).
    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Mebibytes per second.
    pub fn mb_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 / self.secs / f64::from(1 << 20)
        } else {
            0.0
        }
    }
}

/// One line of the table: a workload on one engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// `None`: the engine cannot do this workload (n/a).
    pub measured: Option<Measured>,
    /// Anything else worth a word (found ratio, space reclaimed, ...).
    pub note: String,
}

/// A thread's share of a workload.
#[derive(Debug, Default)]
struct Outcome {
    ops: u64,
    bytes: u64,
    found: u64,
    hist: Histogram,
    start: Option<Instant>,
    end: Option<Instant>,
}

impl Outcome {
    fn begin() -> Outcome {
        let now = Instant::now();
        Outcome {
            start: Some(now),
            end: Some(now),
            ..Outcome::default()
        }
    }

    /// Records one op ending now.
    fn tick(&mut self, bytes: u64) {
        let now = Instant::now();
        if let Some(last) = self.end {
            self.hist.record(now.duration_since(last));
        }
        self.end = Some(now);
        self.ops += 1;
        self.bytes += bytes;
    }

    fn merge(&mut self, o: Outcome) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.found += o.found;
        self.hist.merge(&o.hist);
        self.start = match (self.start, o.start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.end = match (self.end, o.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn secs(&self) -> f64 {
        match (self.start, self.end) {
            (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
            _ => 0.0,
        }
    }

    fn measured(&self) -> Measured {
        Measured {
            ops: self.ops,
            secs: self.secs(),
            bytes: self.bytes,
            p50_us: self.hist.percentile_micros(0.5),
            p99_us: self.hist.percentile_micros(0.99),
            p999_us: self.hist.percentile_micros(0.999),
            ..Measured::default()
        }
    }
}

/// Runs `threads` copies of `f(thread)` from a common start and merges them.
fn in_threads(threads: usize, f: impl Fn(usize) -> Result<Outcome> + Sync) -> Result<Outcome> {
    let barrier = Barrier::new(threads);
    let results: Vec<Result<Outcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(t)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Check("a worker thread panicked".into())))
            })
            .collect()
    });
    let mut total = Outcome::default();
    for r in results {
        total.merge(r?);
    }
    Ok(total)
}

/// Thread `t` of `threads`' share `[lo, hi)` of `[0, n)`.
fn share(n: u64, t: usize, threads: usize) -> (u64, u64) {
    let at = |i: usize| (u128::from(n) * i as u128 / threads as u128) as u64;
    (at(t), at(t + 1))
}

/// One engine's run: its folder, the open engine, and what is live.
struct Run<'a> {
    cfg: &'a Config,
    name: &'a str,
    dir: PathBuf,
    engine: Option<Box<dyn Engine>>,
    pool: Vec<u8>,
    /// Keys that exist now, when known (for space amplification and checks).
    live_keys: Option<u64>,
}

impl Run<'_> {
    fn engine(&self) -> Result<&dyn Engine> {
        self.engine
            .as_deref()
            .ok_or_else(|| Error::Check("engine not open".into()))
    }

    fn close(&mut self) -> Result<()> {
        if let Some(e) = self.engine.take() {
            e.close()?;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<()> {
        self.engine = Some(engines::open(self.name, &self.dir, &self.cfg.settings)?);
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        self.close()?;
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .map_err(io(format!("remove {}", self.dir.display())))?;
        }
        std::fs::create_dir_all(&self.dir).map_err(io(format!("create {}", self.dir.display())))?;
        self.live_keys = Some(0);
        self.open()
    }

    fn rng(&self, w: Workload, t: usize) -> SplitMix64 {
        let index = ALL.iter().position(|(_, x)| *x == w).unwrap_or(0) as u64;
        SplitMix64::new(self.cfg.seed ^ (index << 40) ^ t as u64)
    }

    fn space_amp(&self) -> Result<Option<f64>> {
        let live = self.live_keys.unwrap_or(0) * self.cfg.entry_bytes();
        if live == 0 {
            return Ok(None);
        }
        Ok(Some(sys::dir_bytes(&self.dir)? as f64 / live as f64))
    }

    /// Puts from `threads` threads, `total` in all; `key(t, i, rng)` picks
    /// the `i`-th key of thread `t`.
    fn puts(
        &self,
        w: Workload,
        threads: usize,
        total: u64,
        sync: bool,
        key: impl Fn(u64, &mut SplitMix64) -> u64 + Sync,
    ) -> Result<Outcome> {
        let engine = self.engine()?;
        let entry = self.cfg.entry_bytes();
        in_threads(threads, |t| {
            let (lo, hi) = share(total, t, threads);
            let mut rng = self.rng(w, t);
            let start = rng.below(self.pool.len() as u64) as usize;
            let mut values = Values::new(&self.pool, self.cfg.value_bytes, start);
            let mut k = [0u8; KEY_BYTES];
            let mut out = Outcome::begin();
            for i in lo..hi {
                write_key(&mut k, key(i, &mut rng));
                engine.put(&k, values.next_value(), sync)?;
                out.tick(entry);
            }
            Ok(out)
        })
    }

    /// `total` random gets of keys in `[0, num)` from `threads` threads.
    fn gets(&self, w: Workload, threads: usize, total: u64) -> Result<Outcome> {
        let engine = self.engine()?;
        let num = self.cfg.num;
        in_threads(threads, |t| {
            let (lo, hi) = share(total, t, threads);
            let mut rng = self.rng(w, t);
            let mut k = [0u8; KEY_BYTES];
            let mut out = Outcome::begin();
            for _ in lo..hi {
                write_key(&mut k, rng.below(num));
                let len = engine.get(&k)?;
                out.found += u64::from(len.is_some());
                out.tick(len.map_or(0, |l| (KEY_BYTES + l) as u64));
            }
            Ok(out)
        })
    }

    fn found_note(&self, out: &Outcome) -> Result<String> {
        // With every key of the space live, a get that misses is a wrong
        // answer: fail loudly rather than report a fast engine that lost data.
        if self.live_keys == Some(self.cfg.num) && out.found != out.ops {
            return Err(Error::Check(format!(
                "{}: {} of {} gets found nothing, but every key was written",
                self.name,
                out.ops - out.found,
                out.ops
            )));
        }
        Ok(format!(
            "found {:.0}%",
            100.0 * out.found as f64 / out.ops.max(1) as f64
        ))
    }

    /// Runs one workload and measures it.
    fn workload(&mut self, w: Workload) -> Result<Row> {
        sys::reset_peak_rss();
        let written_before = sys::write_bytes();
        let (out, note, writes) = match w {
            Workload::FillSeq | Workload::FillRandom => {
                self.reset()?;
                let perm = Permutation::new(self.cfg.num, self.cfg.seed);
                let out = if w == Workload::FillSeq {
                    self.puts(w, 1, self.cfg.num, false, |i, _| i)?
                } else {
                    self.puts(w, 1, self.cfg.num, false, |i, _| perm.at(i))?
                };
                self.live_keys = Some(self.cfg.num);
                (out, String::new(), true)
            }
            Workload::Overwrite => {
                let num = self.cfg.num;
                let out = self.puts(w, 1, num, false, |_, rng| rng.below(num))?;
                (out, String::new(), true)
            }
            Workload::ReadSeq => self.read_seq()?,
            Workload::ReadRandom => {
                let out = self.gets(w, 1, self.cfg.num)?;
                let note = self.found_note(&out)?;
                (out, note, false)
            }
            Workload::SeekRandom => self.seek_random()?,
            Workload::ReadRandomCold => self.read_random_cold()?,
            Workload::ReadWhileWriting => self.read_while_writing()?,
            Workload::DeleteRandom => self.delete_random()?,
            Workload::Compact => return self.compact(),
            Workload::SyncWrite1 | Workload::SyncWrite16 => {
                let threads = if w == Workload::SyncWrite1 {
                    1
                } else {
                    SYNC_WRITERS
                };
                let num = self.cfg.num;
                let out = self.puts(w, threads, self.cfg.sync_writes, true, |_, rng| {
                    rng.below(num)
                })?;
                (out, format!("{threads} writer(s)"), true)
            }
        };
        let mut m = out.measured();
        if writes {
            self.engine()?.persist()?;
            sys::settle(self.cfg.settle_quiet, self.cfg.settle_limit);
            let user = out.ops * self.cfg.entry_bytes();
            m.write_amp = match (written_before, sys::write_bytes()) {
                (Some(a), Some(b)) if user > 0 => Some(b.saturating_sub(a) as f64 / user as f64),
                _ => None,
            };
        }
        m.space_amp = self.space_amp()?;
        m.peak_rss = sys::peak_rss_bytes();
        Ok(Row {
            workload: w,
            measured: Some(m),
            note,
        })
    }

    fn read_seq(&self) -> Result<(Outcome, String, bool)> {
        let mut out = Outcome::begin();
        let n = self.engine()?.scan(&mut |k, v| {
            out.tick((k.len() + v.len()) as u64);
        })?;
        if let Some(live) = self.live_keys
            && live != n
        {
            return Err(Error::Check(format!(
                "{}: a full scan read {n} entries, {live} are live",
                self.name
            )));
        }
        Ok((out, format!("{n} entries"), false))
    }

    fn seek_random(&self) -> Result<(Outcome, String, bool)> {
        let engine = self.engine()?;
        let seeks = (self.cfg.num / 10).max(1);
        let mut rng = self.rng(Workload::SeekRandom, 0);
        let mut k = [0u8; KEY_BYTES];
        let mut out = Outcome::begin();
        for _ in 0..seeks {
            write_key(&mut k, rng.below(self.cfg.num));
            let bytes = engine.seek_next(&k, SEEK_NEXTS)?;
            out.tick(bytes);
        }
        Ok((out, format!("seek + {SEEK_NEXTS} entries"), false))
    }

    fn read_random_cold(&mut self) -> Result<(Outcome, String, bool)> {
        self.close()?;
        let evicted = sys::evict_from_page_cache(&self.dir)?;
        let start = Instant::now();
        self.open()?;
        let reopen = start.elapsed();
        let gets = (self.cfg.num / 10).max(1);
        let out = self.gets(Workload::ReadRandomCold, 1, gets)?;
        let found = self.found_note(&out)?;
        let cache = if evicted {
            "page cache dropped"
        } else {
            "page cache NOT dropped"
        };
        let note = format!(
            "reopen {:.0} ms, {cache}, {found}",
            reopen.as_secs_f64() * 1e3
        );
        Ok((out, note, false))
    }

    fn read_while_writing(&self) -> Result<(Outcome, String, bool)> {
        let engine = self.engine()?;
        let stop = AtomicBool::new(false);
        let readers = self.cfg.readers;
        let (reads, writes) = std::thread::scope(|s| {
            let writer = s.spawn(|| -> Result<Outcome> {
                let mut rng = self.rng(Workload::ReadWhileWriting, 1000);
                let mut values = Values::new(&self.pool, self.cfg.value_bytes, 0);
                let mut k = [0u8; KEY_BYTES];
                let mut out = Outcome::begin();
                while !stop.load(Ordering::Relaxed) {
                    write_key(&mut k, rng.below(self.cfg.num));
                    engine.put(&k, values.next_value(), false)?;
                    out.tick(self.cfg.entry_bytes());
                }
                Ok(out)
            });
            let reads = self.gets(Workload::ReadWhileWriting, readers, self.cfg.num);
            stop.store(true, Ordering::Relaxed);
            let writes = writer
                .join()
                .unwrap_or_else(|_| Err(Error::Check("the writer panicked".into())));
            (reads, writes)
        });
        let (reads, writes) = (reads?, writes?);
        engine.persist()?;
        let note = format!(
            "{readers} readers; writer {:.0} puts/s",
            writes.ops as f64 / writes.secs().max(1e-9)
        );
        Ok((reads, note, false))
    }

    fn delete_random(&mut self) -> Result<(Outcome, String, bool)> {
        let engine = self.engine()?;
        let deletes = self.cfg.num / 2;
        let perm = Permutation::new(self.cfg.num, self.cfg.seed ^ 0xDE1E7E);
        let mut k = [0u8; KEY_BYTES];
        let mut out = Outcome::begin();
        for i in 0..deletes {
            write_key(&mut k, perm.at(i));
            engine.delete(&k)?;
            out.tick(KEY_BYTES as u64);
        }
        engine.persist()?;
        if self.live_keys == Some(self.cfg.num) {
            self.live_keys = Some(self.cfg.num - deletes);
        } else {
            self.live_keys = None;
        }
        sys::settle(self.cfg.settle_quiet, self.cfg.settle_limit);
        Ok((out, format!("{deletes} keys"), false))
    }

    fn compact(&mut self) -> Result<Row> {
        let before = sys::dir_bytes(&self.dir)?;
        let start = Instant::now();
        let supported = self.engine()?.compact()?;
        let secs = start.elapsed().as_secs_f64();
        sys::settle(self.cfg.settle_quiet, self.cfg.settle_limit);
        let after = sys::dir_bytes(&self.dir)?;
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let reclaimed = 100.0 * (before as f64 - after as f64) / before.max(1) as f64;
        let note = format!(
            "on disk {:.1} -> {:.1} MiB ({reclaimed:.0}% reclaimed)",
            mib(before),
            mib(after)
        );
        if !supported {
            return Ok(Row {
                workload: Workload::Compact,
                measured: None,
                note: format!("no compaction call; {note} after settling"),
            });
        }
        let m = Measured {
            secs,
            space_amp: self.space_amp()?,
            peak_rss: sys::peak_rss_bytes(),
            ..Measured::default()
        };
        Ok(Row {
            workload: Workload::Compact,
            measured: Some(m),
            note,
        })
    }
}

/// Runs `cfg`'s workloads on engine `name` in a fresh folder under
/// `cfg.dir` (or a temporary one), removed afterwards. Progress goes to
/// `log`, one line per workload.
pub fn run_engine(name: &str, cfg: &Config, log: &mut dyn Write) -> Result<Vec<Row>> {
    cfg.validate()?;
    let temp;
    let parent: &Path = match &cfg.dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new()
                .prefix("cairn-bench")
                .tempdir_in(std::env::current_dir().map_err(io("current dir"))?)
                .map_err(io("make a temporary folder"))?;
            temp.path()
        }
    };
    let dir = parent.join(format!("{name}-db"));
    let mut run = Run {
        cfg,
        name,
        dir: dir.clone(),
        engine: None,
        pool: value_pool(cfg.value_bytes, cfg.seed),
        live_keys: None,
    };
    if !cfg
        .workloads
        .first()
        .is_some_and(|w| matches!(w, Workload::FillSeq | Workload::FillRandom))
    {
        run.reset()?;
    }
    let mut rows = Vec::new();
    for &w in &cfg.workloads {
        let row = run.workload(w)?;
        let _ = writeln!(log, "{name:>8} {:<17} {}", w.name(), summary(&row));
        rows.push(row);
    }
    run.close()?;
    std::fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
    Ok(rows)
}

fn summary(row: &Row) -> String {
    match &row.measured {
        None => format!("n/a ({})", row.note),
        Some(m) if row.workload.ratio_on_time() => format!("{:.2} s; {}", m.secs, row.note),
        Some(m) => format!(
            "{:>12.0} ops/s  p99 {:.1} us  {}",
            m.ops_per_sec(),
            m.p99_us,
            row.note
        ),
    }
}
