//! Iteration over internal keys. Every source (memtable, table, level,
//! merge of them) is an [`InternalIterator`]; `DbIterator` turns the merged
//! stream into user-visible keys at a snapshot.
//!
//! An iterator runs in one direction, fixed when it is created. That keeps
//! the merge simple and obviously correct (no direction switch with its
//! re-seek of every child); a caller that wants the other direction makes a
//! second iterator.

use crate::error::Result;

/// The direction an iterator walks the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Ascending internal-key order.
    Forward,
    /// Descending internal-key order.
    Reverse,
}

/// A cursor over entries ordered by `key::compare_internal`.
pub(crate) trait InternalIterator: Send {
    /// Positions at the first entry in iteration order: the smallest key
    /// (forward) or the largest (reverse).
    fn seek_to_first(&mut self);
    /// Forward: the first entry with key >= `target`. Reverse: the last entry
    /// with key <= `target`. Keys compare with `key::compare_internal`.
    fn seek(&mut self, target: &[u8]);
    /// Moves one entry in the iterator's direction. REQUIRES: `valid()`.
    fn next(&mut self);
    /// True while positioned at an entry and no error was met.
    fn valid(&self) -> bool;
    /// The current internal key. REQUIRES: `valid()`.
    fn key(&self) -> &[u8];
    /// The current value. REQUIRES: `valid()`.
    fn value(&self) -> &[u8];
    /// The first error met; once an error is set, `valid()` is false.
    fn status(&self) -> Result<()>;
}

pub(crate) mod db_iter;
pub(crate) mod level;
pub(crate) mod merge;
