//! One trait over every engine, and the settings that make them equal.
//!
//! Every engine gets the same [`Settings`]; each adapter maps them onto its
//! own options and says in its module docs where it cannot match them. The
//! table of what each engine actually does is in `docs/benchmarks.md`.

mod cairn;
#[cfg(feature = "peer-fjall")]
mod fjall;
#[cfg(feature = "peer-redb")]
mod redb;
#[cfg(feature = "peer-rocksdb")]
mod rocksdb;
#[cfg(feature = "peer-sled")]
mod sled;

use crate::error::{Error, Result};
use std::path::Path;

/// What every engine is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Block (or page) cache, bytes.
    pub cache_bytes: usize,
    /// Memtable (write buffer) size, bytes, where the engine has one.
    pub write_buffer_bytes: usize,
    /// Background threads for flushes and compactions, where configurable.
    pub background_threads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            background_threads: 2,
        }
    }
}

/// A key-value engine as the workloads drive it. Methods take `&self` so
/// that readers and writers share one open engine across threads.
pub trait Engine: Send + Sync {
    /// Writes `key = value`. `sync`: durable (fsynced) before returning;
    /// otherwise the engine's ordinary durability (see the module docs).
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()>;
    /// Deletes `key` (not synced).
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// The length of `key`'s value, if it exists. (The length, not the
    /// bytes: each adapter reads the value through its fastest API.)
    fn get(&self, key: &[u8]) -> Result<Option<usize>>;
    /// Calls `f` on every entry in key order; returns how many.
    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<u64>;
    /// Positions a new iterator at the first key `>= key` and reads up to
    /// `n` entries from there; returns the bytes read (keys plus values).
    fn seek_next(&self, key: &[u8], n: usize) -> Result<u64>;
    /// Makes every write so far durable and in its files, untimed, after
    /// each write workload and before space is measured. Engines that hand
    /// every write to the OS (Cairn, RocksDB, fjall) and sled (which writes
    /// its buffers out on its own within 500 ms) need nothing; redb keeps
    /// non-durable commits in memory, so it commits durably here.
    fn persist(&self) -> Result<()> {
        Ok(())
    }
    /// Compacts the whole key space so deleted data's space comes back.
    /// `Ok(false)`: the engine has no such operation.
    fn compact(&self) -> Result<bool>;
    /// Closes the engine, writing whatever it writes at a clean close.
    fn close(self: Box<Self>) -> Result<()>;
}

/// The engines this build knows.
pub fn names() -> Vec<&'static str> {
    let mut v = vec!["cairn"];
    for (name, built) in [
        ("rocksdb", cfg!(feature = "peer-rocksdb")),
        ("fjall", cfg!(feature = "peer-fjall")),
        ("sled", cfg!(feature = "peer-sled")),
        ("redb", cfg!(feature = "peer-redb")),
    ] {
        if built {
            v.push(name);
        }
    }
    v
}

/// Opens (creating if missing) engine `name` in `dir`.
pub fn open(name: &str, dir: &Path, s: &Settings) -> Result<Box<dyn Engine>> {
    match name {
        "cairn" => cairn::open(dir, s),
        #[cfg(feature = "peer-rocksdb")]
        "rocksdb" => rocksdb::open(dir, s),
        #[cfg(feature = "peer-fjall")]
        "fjall" => fjall::open(dir, s),
        #[cfg(feature = "peer-sled")]
        "sled" => sled::open(dir, s),
        #[cfg(feature = "peer-redb")]
        "redb" => redb::open(dir, s),
        other => Err(Error::Usage(format!(
            "unknown engine {other:?} (this build has: {}; peers need --features peers)",
            names().join(",")
        ))),
    }
}
