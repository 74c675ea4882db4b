//! sled 0.34 (its last stable line) as close to Cairn as it goes: a cache
//! of `cache_bytes`; fsync (`flush`) after `sync` writes. It cannot match
//! the rest: writes are buffered in memory and written to the OS every
//! 500 ms (its default `flush_every_ms`), so an unsynced write can be lost
//! at a process crash (weaker than Cairn: an advantage to sled); no
//! compression (sled's is zstd behind a feature, off here); no
//! compaction call (it reclaims space by itself: `compact` is n/a).

use super::{Engine, Settings};
use crate::error::{Result, engine};
use std::path::Path;

const NAME: &str = "sled";

struct Sled {
    db: sled::Db,
}

pub(super) fn open(dir: &Path, s: &Settings) -> Result<Box<dyn Engine>> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(s.cache_bytes as u64)
        .flush_every_ms(Some(500))
        .open()
        .map_err(engine(NAME, "open"))?;
    Ok(Box::new(Sled { db }))
}

impl Engine for Sled {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        self.db.insert(key, value).map_err(engine(NAME, "put"))?;
        if sync {
            self.db.flush().map_err(engine(NAME, "sync"))?;
        }
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.db.remove(key).map_err(engine(NAME, "delete"))?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        let v = self.db.get(key).map_err(engine(NAME, "get"))?;
        Ok(v.map(|v| v.len()))
    }

    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<u64> {
        let mut n = 0;
        for item in self.db.iter() {
            let (k, v) = item.map_err(engine(NAME, "scan"))?;
            f(&k, &v);
            n += 1;
        }
        Ok(n)
    }

    fn seek_next(&self, key: &[u8], n: usize) -> Result<u64> {
        let mut bytes = 0;
        for item in self.db.range(key..).take(n) {
            let (k, v) = item.map_err(engine(NAME, "seek"))?;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok(bytes)
    }

    fn compact(&self) -> Result<bool> {
        Ok(false)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush().map_err(engine(NAME, "close"))?;
        Ok(())
    }
}
