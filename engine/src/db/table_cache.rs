//! Open tables, bounded in number (`max_open_files`) and in the bytes their
//! indexes and filters hold (`table_cache_bytes`), evicted by CLOCK.

use crate::error::{Error, Result};
use crate::fs::{FileSystem, join};
use crate::table::{BlockCache, Table};
use crate::util::cache::ClockCache;
use crate::version::set::table_name;
use crate::version::{FileMeta, FileReclaimer};
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) struct TableCache {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    tables: ClockCache<u64, Arc<Table>>,
    blocks: Arc<BlockCache>,
}

impl TableCache {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        max_open_files: usize,
        table_cache_bytes: usize,
        blocks: Arc<BlockCache>,
    ) -> Self {
        TableCache {
            fs,
            dir,
            tables: ClockCache::new(table_cache_bytes, max_open_files.max(1)),
            blocks,
        }
    }

    /// The open table for `file`, opening (and verifying) it on a miss.
    pub(crate) fn get(&self, file: &FileMeta) -> Result<Arc<Table>> {
        self.get_by_number(file.number)
    }

    pub(crate) fn get_by_number(&self, number: u64) -> Result<Arc<Table>> {
        if let Some(t) = self.tables.get(&number) {
            return Ok(t);
        }
        let path = join(&self.dir, &table_name(number));
        let file = self
            .fs
            .open_random(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let table = Arc::new(Table::open(file, path, number, self.blocks.clone())?);
        self.tables
            .insert(number, table.clone(), table.memory_bytes());
        Ok(table)
    }

    pub(crate) fn evict(&self, number: u64) {
        self.tables.remove(&number);
    }

    /// Bytes of indexes and filters held by open tables.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.tables.total_charge()
    }

    pub(crate) fn open_tables(&self) -> usize {
        self.tables.len()
    }

    pub(crate) fn block_cache_bytes(&self) -> usize {
        self.blocks.total_charge()
    }
}

/// Deletes table files that left the version once no reader holds them.
pub(crate) struct Reclaimer {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    pub tables: Arc<TableCache>,
}

impl FileReclaimer for Reclaimer {
    fn reclaim(&self, number: u64) {
        self.tables.evict(number);
        // A file that cannot be removed now is an orphan removed at next open.
        let _ = self.fs.remove(&join(&self.dir, &table_name(number)));
    }
}
