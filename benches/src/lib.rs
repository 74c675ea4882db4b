//! Cairn's engine benchmarks.
//!
//! - `benches/engine.rs`: criterion benches of the engine's hot paths
//!   (memtable insert, block encode/decode, bloom probe, point gets at
//!   each depth, iterator step, WAL append, group commit).
//! - The `cairn-bench` runner (db_bench style): the same workloads through
//!   one [`Engine`] trait over Cairn and, with the `peers` feature,
//!   RocksDB, fjall, sled and redb, printed as one table. How to run it and
//!   the latest figures: `docs/benchmarks.md`.
//!
//! The library entry is [`run_engine`]; the binary adds the command line
//! and runs each engine in its own process so that peak RSS and the
//! process's write counters belong to one engine.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod data;
mod engines;
mod error;
mod histogram;
mod report;
mod sys;
mod workloads;

pub use data::{KEY_BYTES, key_of};
pub use engines::{Engine, Settings, names as engine_names, open as open_engine};
pub use error::{Error, Result};
pub use report::{EngineRows, from_line, table, to_line};
pub use workloads::{Config, Measured, Row, Workload, run_engine};
