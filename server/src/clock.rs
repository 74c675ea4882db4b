//! Each data group's replicated clock.
//!
//! Expiry must mean the same on every replica. The leader stamps its wall
//! clock into every write; the state machine applies the write at
//! `max(stamp, clock)` and stores that as the group's clock (one key in the
//! group's range, written in the same batch). So the clock only moves
//! forward, is the same on every replica at the same log position, and
//! survives restarts and snapshots with the data.
//!
//! Two things read it:
//! - reads judge expiry at `max(wall clock, group clock)`, so a leader whose
//!   wall clock lags never shows a key an earlier write already saw expire;
//! - the compaction filter removes an expired key only when the group's
//!   *durable* clock on this replica has passed its expiry. Every later
//!   write applies at a time at least that clock, so removing the key can
//!   never make a replica's state differ from the leader's. Durable matters:
//!   applied state is written without the engine's WAL and becomes durable
//!   at the next memtable flush, while a compaction's output is durable at
//!   once. Judging by an in-memory clock could drop a key that, after a
//!   crash rolls the clock back and the log is re-applied, must still be
//!   live. So the filter uses the clock as of the last flush this node made
//!   (`flush_clocks`, every [`FLUSH_INTERVAL`]); a key in no known group, or
//!   in a group with no durable clock yet, is kept.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::slot::split_data_key;

/// The clocks of the groups hosted here, by first slot.
#[derive(Debug, Default)]
pub struct Clocks {
    ranges: RwLock<BTreeMap<u16, Range>>,
}

#[derive(Debug, Clone)]
struct Range {
    group: u64,
    last_slot: u16,
    clock: Arc<AtomicU64>,
    /// The clock as of the last flush known to cover it.
    durable: Arc<AtomicU64>,
}

/// How often a node flushes its engine so the durable clocks move on (only
/// when some clock moved).
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Unix milliseconds on this machine's wall clock.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Clocks {
    pub fn new() -> Arc<Clocks> {
        Arc::new(Clocks::default())
    }

    /// Registers (or re-registers) group `group` over `first..=last` with
    /// the clock value its engine holds. Nothing is durable yet.
    pub fn register(&self, group: u64, first: u16, last: u16, value: u64) {
        let mut ranges = self.ranges.write().unwrap_or_else(|p| p.into_inner());
        ranges.retain(|_, r| r.group != group);
        ranges.insert(
            first,
            Range {
                group,
                last_slot: last,
                clock: Arc::new(AtomicU64::new(value)),
                durable: Arc::new(AtomicU64::new(0)),
            },
        );
    }

    pub fn unregister(&self, group: u64) {
        let mut ranges = self.ranges.write().unwrap_or_else(|p| p.into_inner());
        ranges.retain(|_, r| r.group != group);
    }

    fn range_of(&self, slot: u16) -> Option<Range> {
        let ranges = self.ranges.read().unwrap_or_else(|p| p.into_inner());
        let (_, range) = ranges.range(..=slot).next_back()?;
        (slot <= range.last_slot).then(|| range.clone())
    }

    /// Moves the clock of the group starting at `first` forward to `value`
    /// (called by the state machine after computing it).
    pub fn advance(&self, first: u16, value: u64) {
        if let Some(range) = self.range_of(first) {
            range.clock.fetch_max(value, Ordering::Relaxed);
        }
    }

    /// The clock of the group owning `slot`, if it is hosted here.
    pub fn of_slot(&self, slot: u16) -> Option<u64> {
        self.range_of(slot)
            .map(|range| range.clock.load(Ordering::Relaxed))
    }

    /// The time to judge expiry at for a read of `slot`.
    pub fn read_time(&self, slot: u16) -> u64 {
        wall_clock_ms().max(self.of_slot(slot).unwrap_or(0))
    }

    /// The time the compaction filter judges `engine_key` at: its group's
    /// durable clock, or `None` (keep) for a key that is not user data or
    /// whose group is not known here.
    pub fn filter_time(&self, engine_key: &[u8]) -> Option<u64> {
        let (slot, _) = split_data_key(engine_key)?;
        self.range_of(slot)
            .map(|range| range.durable.load(Ordering::Relaxed))
            .filter(|&t| t > 0)
    }

    /// Each group's clock now, for those ahead of their durable clock.
    fn pending(&self) -> Vec<(Arc<AtomicU64>, u64)> {
        let ranges = self.ranges.read().unwrap_or_else(|p| p.into_inner());
        ranges
            .values()
            .filter_map(|r| {
                let now = r.clock.load(Ordering::Relaxed);
                (now > r.durable.load(Ordering::Relaxed)).then(|| (Arc::clone(&r.durable), now))
            })
            .collect()
    }

    /// Flushes the engine if some clock moved, then marks the clocks read
    /// before the flush durable. Called every [`FLUSH_INTERVAL`].
    pub fn flush_clocks(&self, db: &cairn_engine::Db) -> cairn_engine::Result<()> {
        let pending = self.pending();
        if pending.is_empty() {
            return Ok(());
        }
        db.flush()?;
        for (durable, value) in pending {
            durable.fetch_max(value, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::{clock_key, data_key};

    #[test]
    fn clocks_are_found_by_slot_and_only_move_forward() {
        let clocks = Clocks::new();
        clocks.register(1, 0, 99, 1_000);
        clocks.register(2, 100, 199, 0);
        assert_eq!(clocks.of_slot(50), Some(1_000));
        assert_eq!(clocks.of_slot(100), Some(0));
        assert_eq!(clocks.of_slot(200), None);
        clocks.advance(0, 900);
        assert_eq!(clocks.of_slot(0), Some(1_000));
        clocks.advance(0, 2_000);
        assert_eq!(clocks.of_slot(99), Some(2_000));
        // Nothing is durable until a flush.
        assert_eq!(clocks.filter_time(&data_key(5, b"k")), None);
        let db = cairn_engine::Db::open(
            "/db",
            cairn_engine::Options {
                fs: Arc::new(cairn_engine::MemFs::new()),
                ..cairn_engine::Options::default()
            },
        )
        .unwrap();
        clocks.flush_clocks(&db).unwrap();
        assert_eq!(clocks.filter_time(&data_key(5, b"k")), Some(2_000));
        clocks.advance(0, 3_000);
        assert_eq!(clocks.filter_time(&data_key(5, b"k")), Some(2_000));
        // A group whose clock never moved keeps everything, as do keys that
        // are not user data and slots not hosted here.
        assert_eq!(clocks.filter_time(&data_key(150, b"k")), None);
        assert_eq!(clocks.filter_time(&clock_key(0)), None);
        assert_eq!(clocks.filter_time(&data_key(300, b"k")), None);
        clocks.unregister(1);
        assert_eq!(clocks.of_slot(50), None);
        assert!(clocks.read_time(50) >= wall_clock_ms() - 1_000);
    }
}
