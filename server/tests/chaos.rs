//! The short seeded fault-injection run (issue 7) that CI runs: three real
//! `cairn` processes behind relays the harness controls, concurrent
//! clients, and at least one kill, one pause, one partition and one
//! membership change (a node wiped and added back). The history must pass
//! every check (see `chaos/src/check/mod.rs`). Longer runs: `cargo run -p
//! cairn-chaos` (docs/testing.md, "Fault injection").

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use cairn_chaos::fault::{Class, Fault, Step};
use cairn_chaos::{RunConfig, run};

#[test]
fn short_seeded_run_with_a_kill_a_pause_a_partition_and_a_wiped_node_finds_no_anomaly() {
    // Each fault of the fixed schedule but the last hits the leader of a
    // workload key's group; the last takes a node out, wipes it and adds
    // it back (it must catch up and serve); the rest of the time is
    // random faults. fsync stays `always`
    // (the default durability): the run is bounded by its schedule, not by
    // disk speed.
    let dir = tempfile::Builder::new()
        .prefix("cairn-chaos-ci")
        .tempdir()
        .unwrap();
    let mut config = RunConfig::new(env!("CARGO_BIN_EXE_cairn").into(), dir.path().into(), 7);
    let step = |fault, hold_ms, rest_ms| Step {
        fault,
        hold_ms,
        rest_ms,
    };
    config.fixed = vec![
        step(Fault::KillLeader, 3_000, 3_000),
        step(Fault::PauseLeader, 2_500, 3_000),
        step(Fault::IsolateLeader, 3_500, 3_000),
        step(Fault::TransferLeader, 0, 2_000),
        step(Fault::WipeAndReAdd, 1_000, 2_000),
    ];
    config.classes = vec![Class::Kill, Class::Pause, Class::Partition];
    config.duration = Duration::from_secs(30);
    config.clients = 4;
    config.follower_clients = 2;
    let report = run(&config).unwrap();
    println!("{}", report.summary());
    let keep = |why: &str| -> ! {
        let path = dir.keep();
        panic!(
            "{why}; data, node logs and anomaly files in {}",
            path.display()
        );
    };
    if !report.findings.anomalies.is_empty() {
        keep(&format!("anomalies: {:#?}", report.findings.anomalies));
    }
    if !report.problems.is_empty() {
        keep(&format!("problems: {:?}", report.problems));
    }
    assert!(
        report.findings.unknown.is_empty(),
        "{:?}",
        report.findings.unknown
    );
    for class in [
        Class::Kill,
        Class::Pause,
        Class::Partition,
        Class::Membership,
    ] {
        assert!(
            report.injected(class) >= 1,
            "no {class:?}: {}",
            report.summary()
        );
    }
    assert!(report.ops >= 500, "too little load: {}", report.summary());
}
