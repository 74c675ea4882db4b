//! The runner's smoke mode on Cairn (peers are compiled out by default):
//! every workload runs end to end at tiny sizes, so the runner never rots.
//! Timings are never asserted, only that each workload produced a row.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use cairn_benches::{Config, Workload, run_engine, table};

#[test]
fn smoke_run_produces_a_row_for_every_workload() {
    // Pins that the runner's library entry runs every workload on Cairn
    // and that Cairn can do every one of them (none is n/a).
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        dir: Some(dir.path().to_path_buf()),
        ..Config::smoke()
    };
    let mut log = Vec::new();
    let rows = run_engine("cairn", &cfg, &mut log).unwrap();
    let ran: Vec<Workload> = rows.iter().map(|r| r.workload).collect();
    assert_eq!(ran, Workload::all());
    for r in &rows {
        let m = r
            .measured
            .as_ref()
            .unwrap_or_else(|| panic!("{:?} is n/a", r.workload));
        if r.workload != Workload::Compact {
            assert!(m.ops > 0, "{:?} did no ops", r.workload);
        }
    }
    let t = table(&[("cairn".into(), rows)]);
    assert!(t.contains("| sync16 | cairn |"), "{t}");
}
