//! fjall 3 made equal to Cairn: its journal is written to the OS on every
//! write (the default, `manual_journal_persist` off), fsynced
//! (`persist(SyncData)`) after `sync` writes; lz4 on every level's data
//! blocks (fjall's default compresses only from L2 down); a cache of
//! `cache_bytes`; a `write_buffer_bytes` memtable; `background_threads`
//! workers; its default bloom filters. One keyspace holds everything.

use super::{Engine, Settings};
use crate::error::{Result, engine};
use fjall::{
    CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode,
    config::CompressionPolicy,
};
use std::path::Path;

const NAME: &str = "fjall";

struct Fjall {
    db: Database,
    ks: Keyspace,
}

pub(super) fn open(dir: &Path, s: &Settings) -> Result<Box<dyn Engine>> {
    let db = Database::builder(dir)
        .cache_size(s.cache_bytes as u64)
        .worker_threads(s.background_threads.max(1))
        .open()
        .map_err(engine(NAME, "open"))?;
    let memtable = s.write_buffer_bytes as u64;
    let ks = db
        .keyspace("kv", || {
            KeyspaceCreateOptions::default()
                .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
                .max_memtable_size(memtable)
        })
        .map_err(engine(NAME, "open"))?;
    Ok(Box::new(Fjall { db, ks }))
}

impl Engine for Fjall {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        self.ks.insert(key, value).map_err(engine(NAME, "put"))?;
        if sync {
            self.db
                .persist(PersistMode::SyncData)
                .map_err(engine(NAME, "sync"))?;
        }
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.ks.remove(key).map_err(engine(NAME, "delete"))
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        let v = self.ks.get(key).map_err(engine(NAME, "get"))?;
        Ok(v.map(|v| v.len()))
    }

    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<u64> {
        let mut n = 0;
        for guard in self.ks.iter() {
            let (k, v) = guard.into_inner().map_err(engine(NAME, "scan"))?;
            f(&k, &v);
            n += 1;
        }
        Ok(n)
    }

    fn seek_next(&self, key: &[u8], n: usize) -> Result<u64> {
        let mut bytes = 0;
        for guard in self.ks.range(key..).take(n) {
            let (k, v) = guard.into_inner().map_err(engine(NAME, "seek"))?;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok(bytes)
    }

    fn compact(&self) -> Result<bool> {
        self.ks.major_compact().map_err(engine(NAME, "compact"))?;
        Ok(true)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(engine(NAME, "close"))
    }
}
