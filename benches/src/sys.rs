//! What the runner measures outside the engines, the same way for all of
//! them: bytes written (`/proc/self/io`), peak RSS (`/proc/self/status`),
//! space on disk (allocated blocks of every file under the database
//! folder), and evicting a database's files from the page cache.
//!
//! Linux only; elsewhere the figures are `None` and print as n/a.

use crate::error::{Result, io};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Bytes this process has caused to be written to storage so far: the
/// kernel's `write_bytes`, counted when a page of a file is dirtied (so a
/// page rewritten before writeback counts once, one rewritten after it
/// counts again). Counts every thread, so engines' background flushes and
/// compactions are included.
pub fn write_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/io").ok()?;
    field(&text, "write_bytes:")
}

/// The process's peak resident set size in bytes since start or the last
/// [`reset_peak_rss`].
pub fn peak_rss_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/status").ok()?;
    field(&text, "VmHWM:").map(|kib| kib * 1024)
}

/// Restarts the peak RSS count at the current RSS (Linux `clear_refs` 5),
/// so each workload reports its own peak. Best effort: if the kernel
/// refuses, the peak is the process's since start.
pub fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Bytes allocated on disk to every file under `dir` (blocks, not
/// lengths: a preallocated or sparse file counts what it occupies).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let entries = fs::read_dir(dir).map_err(io(format!("list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("list {}", dir.display())))?;
        let meta = entry
            .metadata()
            .map_err(io(format!("stat {}", entry.path().display())))?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

/// Every file under `dir`.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(io(format!("list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("list {}", dir.display())))?;
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Drops `dir`'s files from the page cache, so the next reads go to the
/// disk: `sync FILE...` writes back dirty pages (the kernel only drops
/// clean ones), then `dd iflag=nocache count=0` asks it to drop each
/// file's cached pages (POSIX_FADV_DONTNEED). Only this database's files
/// are touched, not the whole machine's cache. Returns false if a tool
/// failed, so the report can say the read was not cold.
pub fn evict_from_page_cache(dir: &Path) -> Result<bool> {
    let mut files = Vec::new();
    files_under(dir, &mut files)?;
    if files.is_empty() {
        return Ok(true);
    }
    let synced = Command::new("sync")
        .args(&files)
        .status()
        .map_err(io("run sync"))?
        .success();
    let mut dropped = true;
    for f in &files {
        let mut arg = std::ffi::OsString::from("if=");
        arg.push(f);
        dropped &= Command::new("dd")
            .arg(arg)
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .map_err(io("run dd"))?
            .success();
    }
    Ok(synced && dropped)
}

/// Waits until the process has written nothing for `quiet` (polled every
/// 100 ms), at most `limit`: the engine-agnostic way to let background
/// flushes and compactions finish so that write amplification counts the
/// work a workload caused. Returns how long it waited.
pub fn settle(quiet: Duration, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut last = write_bytes();
    let mut quiet_since = Instant::now();
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
        let now = write_bytes();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= quiet {
            break;
        }
    }
    start.elapsed()
}
