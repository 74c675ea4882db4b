//! Keys that expire: when they vanish, TTL and PTTL, EXPIRE and its
//! options, PERSIST, and what writes do with an expired key.

use cairn_server::command::{Command, Mutation, execute};

use super::{Model, T0, args, bulk, int, nil};

// A key is gone at exactly its expiry, not a millisecond later.
#[test]
fn key_vanishes_at_exactly_its_expiry() {
    let mut m = Model::new();
    m.run(&["set", "k", "v", "px", "100"]).unwrap();
    assert_eq!(m.run_at(T0 + 99, &["get", "k"]), Ok(bulk("v")));
    assert_eq!(m.run_at(T0 + 100, &["get", "k"]), Ok(nil()));
    assert_eq!(m.run_at(T0 + 100, &["exists", "k"]), Ok(int(0)));
    assert_eq!(m.run_at(T0 + 100, &["ttl", "k"]), Ok(int(-2)));
    assert_eq!(m.run_at(T0 + 100, &["strlen", "k"]), Ok(int(0)));
}

// Reads of an expired key leave it stored; writes delete or overwrite it.
#[test]
fn writes_delete_expired_keys_reads_do_not() {
    let mut m = Model::new();
    m.run(&["set", "k", "v", "px", "10"]).unwrap();
    let later = T0 + 10;
    m.run_at(later, &["get", "k"]).unwrap();
    assert!(m.raw("k").is_some());
    let cmd = Command::parse(args(&["del", "k"])).unwrap();
    let out = execute(&cmd, &m, later).unwrap();
    assert_eq!(out.reply, int(0));
    assert_eq!(out.mutations, vec![Mutation::Delete { key: b"k".to_vec() }]);
}

// A write that treats an expired key as missing starts afresh.
#[test]
fn writes_see_expired_keys_as_missing() {
    let mut m = Model::new();
    let later = T0 + 10;
    m.run(&["set", "k", "41", "px", "10"]).unwrap();
    assert_eq!(m.run_at(later, &["incr", "k"]), Ok(int(1)));
    assert_eq!(m.raw("k"), Some((b"1".to_vec(), None)));
    m.run(&["set", "k", "v", "px", "10"]).unwrap();
    assert_eq!(m.run_at(later, &["setnx", "k", "w"]), Ok(int(1)));
    m.run(&["set", "k", "v", "px", "10"]).unwrap();
    assert_eq!(m.run_at(later, &["set", "k", "w", "xx"]), Ok(nil()));
    assert!(m.raw("k").is_none());
    m.run(&["set", "k", "v", "px", "10"]).unwrap();
    assert_eq!(m.run_at(later, &["append", "k", "x"]), Ok(int(1)));
    m.run(&["set", "k", "v", "px", "10"]).unwrap();
    assert_eq!(m.run_at(later, &["expire", "k", "100"]), Ok(int(0)));
    assert!(m.raw("k").is_none());
}

// TTL rounds to the nearest second as Redis does ((ms + 500) / 1000);
// PTTL is exact; -1 without expiry, -2 without key.
#[test]
fn ttl_rounds_like_redis() {
    let mut m = Model::new();
    m.run(&["set", "k", "v", "px", "10000"]).unwrap();
    assert_eq!(m.run(&["ttl", "k"]), Ok(int(10)));
    assert_eq!(m.run_at(T0 + 499, &["ttl", "k"]), Ok(int(10)));
    assert_eq!(m.run_at(T0 + 500, &["ttl", "k"]), Ok(int(10)));
    assert_eq!(m.run_at(T0 + 501, &["ttl", "k"]), Ok(int(9)));
    assert_eq!(m.run_at(T0 + 9_501, &["ttl", "k"]), Ok(int(0)));
    assert_eq!(m.run_at(T0 + 9_500, &["ttl", "k"]), Ok(int(1)));
    assert_eq!(m.run_at(T0 + 9_999, &["pttl", "k"]), Ok(int(1)));
    m.run(&["set", "p", "v"]).unwrap();
    assert_eq!(m.run(&["ttl", "p"]), Ok(int(-1)));
    assert_eq!(m.run(&["pttl", "p"]), Ok(int(-1)));
    assert_eq!(m.run(&["pttl", "x"]), Ok(int(-2)));
}

// EXPIRE sets a TTL (1), on a missing key does nothing (0).
#[test]
fn expire_forms() {
    let mut m = Model::new();
    assert_eq!(m.run(&["expire", "k", "10"]), Ok(int(0)));
    m.run(&["set", "k", "v"]).unwrap();
    assert_eq!(m.run(&["expire", "k", "10"]), Ok(int(1)));
    assert_eq!(m.raw("k").unwrap().1, Some(T0 + 10_000));
    assert_eq!(m.run(&["pexpire", "k", "10"]), Ok(int(1)));
    assert_eq!(m.raw("k").unwrap().1, Some(T0 + 10));
    assert_eq!(m.run(&["expireat", "k", "1800000000"]), Ok(int(1)));
    assert_eq!(m.raw("k").unwrap().1, Some(1_800_000_000_000));
    assert_eq!(m.run(&["pexpireat", "k", "1800000000001"]), Ok(int(1)));
    assert_eq!(m.raw("k").unwrap().1, Some(1_800_000_000_001));
}

// A zero, negative or past time deletes the key and replies 1.
#[test]
fn expire_in_the_past_deletes() {
    for words in [
        &["expire", "k", "0"][..],
        &["expire", "k", "-5"],
        &["pexpire", "k", "0"],
        &["expireat", "k", "1"],
        &["pexpireat", "k", "1700000000000"],
    ] {
        let mut m = Model::new();
        m.run(&["set", "k", "v"]).unwrap();
        assert_eq!(m.run(words), Ok(int(1)), "{words:?}");
        assert!(m.map.is_empty(), "{words:?}");
    }
}

// A relative time that overflows once added to now is refused.
#[test]
fn expire_overflow_against_now_is_refused() {
    let mut m = Model::new();
    m.run(&["set", "k", "v"]).unwrap();
    let max = i64::MAX.to_string();
    assert_eq!(
        m.run(&["pexpire", "k", &max]),
        Err("ERR invalid expire time in 'pexpire' command".into())
    );
    assert_eq!(
        m.run(&["set", "k", "v", "px", &max]),
        Err("ERR invalid expire time in 'set' command".into())
    );
    assert_eq!(m.run(&["pexpireat", "k", &max]), Ok(int(1)));
}

// NX: only without a TTL. XX: only with one.
#[test]
fn expire_nx_and_xx() {
    let mut m = Model::new();
    m.run(&["set", "k", "v"]).unwrap();
    assert_eq!(m.run(&["expire", "k", "10", "xx"]), Ok(int(0)));
    assert_eq!(m.raw("k").unwrap().1, None);
    assert_eq!(m.run(&["expire", "k", "10", "nx"]), Ok(int(1)));
    assert_eq!(m.run(&["expire", "k", "20", "nx"]), Ok(int(0)));
    assert_eq!(m.run(&["expire", "k", "20", "xx"]), Ok(int(1)));
    assert_eq!(m.raw("k").unwrap().1, Some(T0 + 20_000));
}

// GT: only later than the current TTL, and never on a key without one
// (no TTL is infinite). LT: only earlier, and always on a key without one.
#[test]
fn expire_gt_and_lt() {
    let mut m = Model::new();
    m.run(&["set", "k", "v"]).unwrap();
    assert_eq!(m.run(&["expire", "k", "10", "gt"]), Ok(int(0)));
    assert_eq!(m.run(&["expire", "k", "10", "lt"]), Ok(int(1)));
    assert_eq!(m.run(&["expire", "k", "10", "gt"]), Ok(int(0)));
    assert_eq!(m.run(&["expire", "k", "20", "gt"]), Ok(int(1)));
    assert_eq!(m.run(&["expire", "k", "20", "lt"]), Ok(int(0)));
    assert_eq!(m.run(&["expire", "k", "15", "lt"]), Ok(int(1)));
    assert_eq!(m.raw("k").unwrap().1, Some(T0 + 15_000));
    m.run(&["set", "p", "v"]).unwrap();
    assert_eq!(m.run(&["expire", "p", "10", "xx", "lt"]), Ok(int(0)));
}

// PERSIST drops a TTL (1); without one, or without a key, it replies 0.
#[test]
fn persist_drops_ttl() {
    let mut m = Model::new();
    assert_eq!(m.run(&["persist", "k"]), Ok(int(0)));
    m.run(&["set", "k", "v", "ex", "5"]).unwrap();
    assert_eq!(m.run(&["persist", "k"]), Ok(int(1)));
    assert_eq!(m.raw("k"), Some((b"v".to_vec(), None)));
    assert_eq!(m.run(&["persist", "k"]), Ok(int(0)));
}
