//! redb 4 (a copy-on-write B-tree, no WAL) as close to Cairn as it goes:
//! one write transaction per put, committed with `Durability::None`
//! (redb's only mode without an fsync per commit: the commit stays in
//! redb's memory until a later durable commit, so a process crash can lose
//! it: weaker than Cairn, an advantage to redb), and with
//! `Durability::Immediate` (fsync) for `sync` writes; a cache of
//! `cache_bytes`; no compression (redb has none). Each read or scan runs
//! in its own read transaction. `compact` is redb's `Database::compact`,
//! after a durable commit (compaction refuses to run over non-durable ones).

use super::{Engine, Settings};
use crate::error::{Result, engine};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::RwLock;

const NAME: &str = "redb";
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

struct Redb {
    /// Write-locked only by `compact`, which needs `&mut Database`.
    db: RwLock<Database>,
}

pub(super) fn open(dir: &Path, s: &Settings) -> Result<Box<dyn Engine>> {
    std::fs::create_dir_all(dir).map_err(engine(NAME, "open"))?;
    let db = Database::builder()
        .set_cache_size(s.cache_bytes)
        .create(dir.join("data.redb"))
        .map_err(engine(NAME, "open"))?;
    let engine = Redb {
        db: RwLock::new(db),
    };
    // Create the table so that reads before the first write find it.
    engine.commit(true, |_| Ok(()))?;
    Ok(Box::new(engine))
}

impl Redb {
    fn commit(
        &self,
        durable: bool,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> std::result::Result<(), redb::StorageError>,
    ) -> Result<()> {
        let db = self.db.read().map_err(engine(NAME, "lock"))?;
        let mut tx = db.begin_write().map_err(engine(NAME, "begin_write"))?;
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        tx.set_durability(durability)
            .map_err(engine(NAME, "durability"))?;
        {
            let mut table = tx.open_table(TABLE).map_err(engine(NAME, "open_table"))?;
            f(&mut table).map_err(engine(NAME, "write"))?;
        }
        tx.commit().map_err(engine(NAME, "commit"))
    }
}

impl Engine for Redb {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        self.commit(sync, |t| t.insert(key, value).map(drop))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.commit(false, |t| t.remove(key).map(drop))
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        let db = self.db.read().map_err(engine(NAME, "lock"))?;
        let tx = db.begin_read().map_err(engine(NAME, "begin_read"))?;
        let table = tx.open_table(TABLE).map_err(engine(NAME, "open_table"))?;
        let v = table.get(key).map_err(engine(NAME, "get"))?;
        Ok(v.map(|v| v.value().len()))
    }

    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<u64> {
        let db = self.db.read().map_err(engine(NAME, "lock"))?;
        let tx = db.begin_read().map_err(engine(NAME, "begin_read"))?;
        let table = tx.open_table(TABLE).map_err(engine(NAME, "open_table"))?;
        let mut n = 0;
        for item in table.iter().map_err(engine(NAME, "scan"))? {
            let (k, v) = item.map_err(engine(NAME, "scan"))?;
            f(k.value(), v.value());
            n += 1;
        }
        Ok(n)
    }

    fn seek_next(&self, key: &[u8], n: usize) -> Result<u64> {
        let db = self.db.read().map_err(engine(NAME, "lock"))?;
        let tx = db.begin_read().map_err(engine(NAME, "begin_read"))?;
        let table = tx.open_table(TABLE).map_err(engine(NAME, "open_table"))?;
        let mut bytes = 0;
        for item in table.range(key..).map_err(engine(NAME, "seek"))?.take(n) {
            let (k, v) = item.map_err(engine(NAME, "seek"))?;
            bytes += (k.value().len() + v.value().len()) as u64;
        }
        Ok(bytes)
    }

    fn persist(&self) -> Result<()> {
        self.commit(true, |_| Ok(()))
    }

    fn compact(&self) -> Result<bool> {
        self.commit(true, |_| Ok(()))?;
        let mut db = self.db.write().map_err(engine(NAME, "lock"))?;
        db.compact().map_err(engine(NAME, "compact"))?;
        Ok(true)
    }

    fn close(self: Box<Self>) -> Result<()> {
        // A durable commit, so that what was written is in the file.
        self.commit(true, |_| Ok(()))
    }
}
