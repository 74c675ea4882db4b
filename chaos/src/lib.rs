//! Cairn's fault-injection harness (issue 7), after etcd's robustness
//! tests and Jepsen: real `cairn` processes on loopback, concurrent Redis
//! clients, faults on a seeded schedule (SIGKILL and restart, SIGSTOP and
//! SIGCONT, partitions made by UDP relays on every link, leader
//! transfers, nodes joining, leaving, and wiped and re-added), then
//! healing and a judgement of the recorded history.
//!
//! The tree follows a run: `cluster` starts the processes behind the
//! `relay`s, `workload` drives the clients over `resp` and records a
//! `history`, `fault` injects and undoes faults, `check` judges the
//! history (`check::linear` is the linearizability checker), and `run`
//! ties them together and reports. See docs/testing.md, "Fault injection".

#![deny(clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod check;
pub mod cluster;
pub mod fault;
pub mod history;
pub mod relay;
pub mod resp;
pub mod rng;
pub mod run;
pub mod workload;

pub use run::{Report, RunConfig, run};
