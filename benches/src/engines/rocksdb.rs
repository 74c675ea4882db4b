//! RocksDB (`rocksdb` crate) made equal to Cairn: WAL on and written to the
//! OS on every write (`manual_wal_flush` off, the default), fsync only for
//! `sync` writes; lz4 on every level; an LRU block cache of
//! `cache_bytes`; 10-bit bloom filters (whole-key, full filters); 4 KiB
//! blocks; a `write_buffer_bytes` memtable; `background_threads` jobs,
//! and as many subcompactions (Cairn splits a manual compaction over its
//! background threads; RocksDB's default of 1 would not).
//! Reads use `get_pinned` (no copy of the value), scans a raw iterator.

use super::{Engine, Settings};
use crate::error::{Result, engine};
use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteOptions};
use std::path::Path;

const NAME: &str = "rocksdb";

struct Rocks {
    db: DB,
    plain: WriteOptions,
    synced: WriteOptions,
}

pub(super) fn open(dir: &Path, s: &Settings) -> Result<Box<dyn Engine>> {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(s.cache_bytes));
    table.set_bloom_filter(10.0, false);
    table.set_block_size(4 << 10);
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_block_based_table_factory(&table);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_write_buffer_size(s.write_buffer_bytes);
    let threads = i32::try_from(s.background_threads).unwrap_or(2);
    opts.increase_parallelism(threads);
    opts.set_max_background_jobs(threads);
    opts.set_max_subcompactions(u32::try_from(s.background_threads).unwrap_or(2));
    let db = DB::open(&opts, dir).map_err(engine(NAME, "open"))?;
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    Ok(Box::new(Rocks {
        db,
        plain: WriteOptions::default(),
        synced,
    }))
}

impl Engine for Rocks {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        let opts = if sync { &self.synced } else { &self.plain };
        self.db
            .put_opt(key, value, opts)
            .map_err(engine(NAME, "put"))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.db
            .delete_opt(key, &self.plain)
            .map_err(engine(NAME, "delete"))
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        let v = self.db.get_pinned(key).map_err(engine(NAME, "get"))?;
        Ok(v.map(|v| v.len()))
    }

    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<u64> {
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        let mut n = 0;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            f(k, v);
            n += 1;
            it.next();
        }
        it.status().map_err(engine(NAME, "scan"))?;
        Ok(n)
    }

    fn seek_next(&self, key: &[u8], n: usize) -> Result<u64> {
        let mut it = self.db.raw_iterator();
        it.seek(key);
        let mut bytes = 0;
        for _ in 0..n {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            bytes += (k.len() + v.len()) as u64;
            it.next();
        }
        it.status().map_err(engine(NAME, "seek"))?;
        Ok(bytes)
    }

    fn compact(&self) -> Result<bool> {
        self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(true)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush_wal(true).map_err(engine(NAME, "close"))?;
        drop(self);
        Ok(())
    }
}
