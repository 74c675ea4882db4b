//! Cairn's engine with its defaults, the cache and memtable from
//! [`Settings`]: WAL on, every write handed to the OS before it is
//! acknowledged (no fsync unless `sync`), lz4 on every block, 10-bit bloom
//! filters.

use super::{Engine, Settings};
use crate::error::{Result, engine};
use cairn_engine::{Db, IterOptions, Options, WriteBatch, WriteOptions};
use std::path::Path;

const NAME: &str = "cairn";

struct Cairn {
    db: Db,
}

pub(super) fn open(dir: &Path, s: &Settings) -> Result<Box<dyn Engine>> {
    let opts = Options {
        block_cache_bytes: s.cache_bytes,
        write_buffer_bytes: s.write_buffer_bytes,
        background_threads: s.background_threads,
        // As RocksDB's adapter sets its `max_subcompactions`.
        max_subcompactions: s.background_threads,
        ..Options::default()
    };
    let db = Db::open(dir, opts).map_err(engine(NAME, "open"))?;
    Ok(Box::new(Cairn { db }))
}

impl Engine for Cairn {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        let opts = WriteOptions {
            sync,
            ..WriteOptions::default()
        };
        self.db.write(batch, opts).map_err(engine(NAME, "put"))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.db.delete(key).map_err(engine(NAME, "delete"))
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        let v = self.db.get(key).map_err(engine(NAME, "get"))?;
        Ok(v.map(|v| v.len()))
    }

    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<u64> {
        // The borrowing walk (as RocksDB's raw iterator): no copy per entry.
        let mut iter = self.db.iter(IterOptions::new());
        let mut n = 0;
        while iter.advance().map_err(engine(NAME, "scan"))? {
            f(iter.key(), iter.value());
            n += 1;
        }
        Ok(n)
    }

    fn seek_next(&self, key: &[u8], n: usize) -> Result<u64> {
        let mut iter = self.db.iter(IterOptions::new());
        iter.seek(key);
        let mut bytes = 0;
        for _ in 0..n {
            if !iter.advance().map_err(engine(NAME, "seek"))? {
                break;
            }
            bytes += (iter.key().len() + iter.value().len()) as u64;
        }
        Ok(bytes)
    }

    fn compact(&self) -> Result<bool> {
        self.db
            .compact_range(None, None)
            .map_err(engine(NAME, "compact"))?;
        Ok(true)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.close().map_err(engine(NAME, "close"))
    }
}
