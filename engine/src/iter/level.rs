//! Iterates one level of non-overlapping tables (L1 and below) as one
//! sorted run, opening each table through the table cache only when the
//! iterator reaches it.

use super::{Direction, InternalIterator};
use crate::db::table_cache::TableCache;
use crate::error::{Error, Result};
use crate::key::compare_internal;
use crate::table::TableIterator;
use crate::version::FileMeta;
use std::cmp::Ordering;
use std::sync::Arc;

pub(crate) struct LevelIterator {
    files: Vec<Arc<FileMeta>>,
    tables: Arc<TableCache>,
    dir: Direction,
    fill_cache: bool,
    /// Index of the table `cur` iterates.
    idx: Option<usize>,
    cur: Option<TableIterator>,
    err: Option<Error>,
}

impl LevelIterator {
    /// REQUIRES: `files` sorted by key and non-overlapping.
    pub(crate) fn new(
        files: Vec<Arc<FileMeta>>,
        tables: Arc<TableCache>,
        dir: Direction,
        fill_cache: bool,
    ) -> Self {
        LevelIterator {
            files,
            tables,
            dir,
            fill_cache,
            idx: None,
            cur: None,
            err: None,
        }
    }

    fn open(&mut self, idx: Option<usize>) {
        self.idx = idx;
        self.cur = None;
        let Some(f) = idx.and_then(|i| self.files.get(i)) else {
            return;
        };
        match self.tables.get(f) {
            Ok(t) => self.cur = Some(t.iter(self.dir, self.fill_cache)),
            Err(e) => self.err = Some(e),
        }
    }

    /// The next table index in iteration order.
    fn step(&self, idx: usize) -> Option<usize> {
        match self.dir {
            Direction::Forward => (idx + 1 < self.files.len()).then_some(idx + 1),
            Direction::Reverse => idx.checked_sub(1),
        }
    }

    /// Moves past exhausted tables, stopping on an error.
    fn skip_exhausted(&mut self) {
        while self.err.is_none() {
            let Some(cur) = &self.cur else { return };
            if cur.valid() {
                return;
            }
            if let Err(e) = cur.status() {
                self.err = Some(e);
                return;
            }
            let next = self.idx.and_then(|i| self.step(i));
            self.open(next);
            if let Some(c) = &mut self.cur {
                c.seek_to_first();
            }
        }
    }
}

impl InternalIterator for LevelIterator {
    fn seek_to_first(&mut self) {
        let first = match self.dir {
            Direction::Forward => (!self.files.is_empty()).then_some(0),
            Direction::Reverse => self.files.len().checked_sub(1),
        };
        self.open(first);
        if let Some(c) = &mut self.cur {
            c.seek_to_first();
        }
        self.skip_exhausted();
    }

    fn seek(&mut self, target: &[u8]) {
        let idx = match self.dir {
            // First table whose largest key >= target.
            Direction::Forward => {
                let i = self
                    .files
                    .partition_point(|f| compare_internal(&f.largest, target) == Ordering::Less);
                (i < self.files.len()).then_some(i)
            }
            // Last table whose smallest key <= target.
            Direction::Reverse => self
                .files
                .partition_point(|f| compare_internal(&f.smallest, target) != Ordering::Greater)
                .checked_sub(1),
        };
        self.open(idx);
        if let Some(c) = &mut self.cur {
            c.seek(target);
        }
        self.skip_exhausted();
    }

    fn next(&mut self) {
        if let Some(c) = &mut self.cur {
            c.next();
        }
        self.skip_exhausted();
    }

    fn valid(&self) -> bool {
        self.err.is_none() && self.cur.as_ref().is_some_and(|c| c.valid())
    }

    fn key(&self) -> &[u8] {
        self.cur.as_ref().map(|c| c.key()).unwrap_or(&[])
    }

    fn value(&self) -> &[u8] {
        self.cur.as_ref().map(|c| c.value()).unwrap_or(&[])
    }

    fn status(&self) -> Result<()> {
        match &self.err {
            Some(e) => Err(e.clone()),
            None => self.cur.as_ref().map_or(Ok(()), |c| c.status()),
        }
    }
}
