//! The checks other than linearizability, on small hand-made histories.

use super::*;
use crate::history::{FollowerRegRead, RegRecord};

fn incr(client: u32, result: Option<i64>) -> IncrRecord {
    IncrRecord {
        client,
        key: "c0".into(),
        invoke_ns: 0,
        result,
    }
}

fn append(token: &str, t: u64, new_len: Option<u64>) -> AppendRecord {
    AppendRecord {
        client: 1,
        key: "a0".into(),
        token: format!("{token};"),
        invoke_ns: t,
        complete_ns: new_len.map(|_| t + 1),
        new_len,
    }
}

fn read(value: &str, t: u64, mode: ReadMode) -> AppendRead {
    AppendRead {
        client: 2,
        key: "a0".into(),
        mode,
        invoke_ns: t,
        complete_ns: t + 1,
        value: value.as_bytes().to_vec(),
    }
}

fn kinds(h: &History) -> Vec<&'static str> {
    check_all(h, Limits::default())
        .anomalies
        .iter()
        .map(|a| a.kind)
        .collect()
}

#[test]
fn counter_between_acknowledged_and_attempted_passes() {
    // Two acknowledged, one indeterminate: 2 or 3 are both fine.
    let mut h = History {
        incrs: vec![incr(1, Some(1)), incr(2, Some(2)), incr(3, None)],
        ..History::default()
    };
    for ok in [2, 3] {
        h.final_counters = vec![("c0".into(), Some(ok))];
        assert!(kinds(&h).is_empty(), "{ok}");
    }
    h.final_counters = vec![("c0".into(), Some(1))];
    assert!(kinds(&h).contains(&"counter-out-of-bounds"));
    h.final_counters = vec![("c0".into(), Some(4))];
    assert_eq!(kinds(&h), vec!["counter-out-of-bounds"]);
}

#[test]
fn counter_duplicate_results_are_caught() {
    // Two acknowledged INCRs returning 1: one was applied twice or lost.
    let h = History {
        incrs: vec![incr(1, Some(1)), incr(2, Some(1))],
        final_counters: vec![("c0".into(), Some(2))],
        ..History::default()
    };
    assert_eq!(kinds(&h), vec!["counter-duplicate"]);
}

#[test]
fn appends_in_order_with_prefix_reads_pass() {
    // x then y (indeterminate but applied), reads along the way.
    let h = History {
        appends: vec![append("x", 0, Some(2)), append("y", 3, None)],
        append_reads: vec![
            read("x;", 2, ReadMode::Leader),
            read(
                "",
                0,
                ReadMode::Follower {
                    node: 2,
                    session: 1,
                },
            ),
            read(
                "x;y;",
                9,
                ReadMode::Follower {
                    node: 2,
                    session: 1,
                },
            ),
        ],
        final_appends: vec![("a0".into(), Some(b"x;y;".to_vec()))],
        ..History::default()
    };
    assert!(kinds(&h).is_empty(), "{:?}", kinds(&h));
}

#[test]
fn lost_duplicated_and_foreign_tokens_are_caught() {
    // Each break of the final value has its own name.
    let base = History {
        appends: vec![append("x", 0, Some(2)), append("y", 3, Some(4))],
        ..History::default()
    };
    let with_final = |v: &str| History {
        final_appends: vec![("a0".into(), Some(v.as_bytes().to_vec()))],
        ..base.clone()
    };
    assert_eq!(kinds(&with_final("x;")), vec!["append-lost"]);
    assert!(kinds(&with_final("x;y;x;")).contains(&"append-duplicate"));
    assert!(kinds(&with_final("x;y;z;")).contains(&"append-never-written"));
    assert_eq!(
        kinds(&with_final("y;x;")),
        vec!["append-misplaced", "append-misplaced"]
    );
    assert_eq!(kinds(&with_final("x;y")), vec!["append-torn"]);
}

#[test]
fn stale_and_backward_reads_are_caught() {
    // A default read after x was acknowledged must hold x; a READONLY
    // connection may lag but never go back.
    let mut h = History {
        appends: vec![append("x", 0, Some(2)), append("y", 3, Some(4))],
        final_appends: vec![("a0".into(), Some(b"x;y;".to_vec()))],
        ..History::default()
    };
    h.append_reads = vec![read("", 5, ReadMode::Leader)];
    assert_eq!(kinds(&h), vec!["stale-read"]);
    let f = ReadMode::Follower {
        node: 3,
        session: 7,
    };
    h.append_reads = vec![read("x;y;", 5, f), read("x;", 8, f)];
    assert_eq!(kinds(&h), vec!["follower-went-back"]);
    // Another connection may be behind the first.
    let g = ReadMode::Follower {
        node: 3,
        session: 8,
    };
    h.append_reads = vec![read("x;y;", 5, f), read("x;", 8, g)];
    assert!(kinds(&h).is_empty());
    h.append_reads = vec![read("x;q;", 5, f)];
    assert_eq!(kinds(&h), vec!["append-read-not-prefix"]);
}

#[test]
fn registers_never_written_and_stale_values_are_caught() {
    // A default read of a value nobody wrote, a stale default read, and a
    // READONLY read of a value nobody wrote.
    let reg = |op, i, c| RegRecord {
        client: 1,
        key: "r0".into(),
        op,
        invoke_ns: i,
        complete_ns: c,
    };
    let mut h = History {
        registers: vec![
            reg(RegOp::Write(1), 0, Some(1)),
            reg(RegOp::Write(2), 2, Some(3)),
            reg(RegOp::Read(Some(1)), 4, Some(5)),
        ],
        ..History::default()
    };
    assert_eq!(kinds(&h), vec!["not-linearizable"]);
    h.registers[2].op = RegOp::Read(Some(5));
    assert_eq!(kinds(&h), vec!["never-written"]);
    h.registers.truncate(2);
    h.follower_reg_reads = vec![FollowerRegRead {
        client: 3,
        key: "r0".into(),
        node: 2,
        session: 1,
        invoke_ns: 9,
        complete_ns: 10,
        value: Some(1),
    }];
    assert!(kinds(&h).is_empty());
    h.follower_reg_reads[0].value = Some(3);
    assert_eq!(kinds(&h), vec!["follower-never-written"]);
}

#[test]
fn follower_reads_judged_as_linearizable_expose_staleness() {
    // The checker's self-test mode: a READONLY read that lags a completed
    // write passes as a follower read, and fails when judged as a default
    // read would be.
    let reg = |op, i, c| RegRecord {
        client: 1,
        key: "r0".into(),
        op,
        invoke_ns: i,
        complete_ns: Some(c),
    };
    let h = History {
        registers: vec![reg(RegOp::Write(1), 0, 1), reg(RegOp::Write(2), 2, 3)],
        follower_reg_reads: vec![FollowerRegRead {
            client: 3,
            key: "r0".into(),
            node: 2,
            session: 1,
            invoke_ns: 4,
            complete_ns: 5,
            value: Some(1),
        }],
        ..History::default()
    };
    assert!(kinds(&h).is_empty());
    let strict = Limits {
        follower_reads_linearizable: true,
        ..Limits::default()
    };
    let found = check_all(&h, strict);
    assert_eq!(found.anomalies.len(), 1);
    assert_eq!(found.anomalies[0].kind, "not-linearizable");
}
