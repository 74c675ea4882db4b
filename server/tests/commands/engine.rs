//! The command layer over a real engine (`Db` on `MemFs`).

use std::sync::Arc;

use cairn_engine::{Db, MemFs, Options, WriteOptions};
use cairn_server::command::{
    Command, EngineState, ExecError, StateError, apply_mutations, execute,
};
use cairn_server::resp::Frame;

use super::{T0, args, bulk, int, nil, ok};

fn open() -> Db {
    Db::open(
        "/db",
        Options {
            fs: Arc::new(MemFs::new()),
            ..Default::default()
        },
    )
    .unwrap()
}

fn run(db: &Db, now: u64, words: &[&str]) -> Frame {
    let cmd = Command::parse(args(words)).unwrap().stamp(now);
    let out = execute(&cmd, &EngineState(db), now).unwrap();
    apply_mutations(db, &out.mutations, WriteOptions::default()).unwrap();
    out.reply
}

// A sequence of commands reads back what earlier ones wrote, expiry too.
#[test]
fn commands_run_against_a_real_db() {
    let db = open();
    assert_eq!(run(&db, T0, &["set", "k", "1", "ex", "10"]), ok());
    assert_eq!(run(&db, T0, &["incrby", "k", "41"]), int(42));
    assert_eq!(run(&db, T0, &["mset", "a", "x", "b", "y"]), ok());
    assert_eq!(run(&db, T0, &["append", "a", "yz"]), int(3));
    assert_eq!(
        run(&db, T0, &["mget", "k", "a", "b", "c"]),
        Frame::Array(vec![bulk("42"), bulk("xyz"), bulk("y"), nil()])
    );
    assert_eq!(run(&db, T0 + 1_000, &["ttl", "k"]), int(9));
    assert_eq!(run(&db, T0, &["del", "a", "b", "c"]), int(2));
    assert_eq!(db.get("a").unwrap(), None);
    assert_eq!(run(&db, T0 + 10_000, &["get", "k"]), nil());
    // The expired value is still stored until a write meets it.
    assert!(db.get("k").unwrap().is_some());
    assert_eq!(run(&db, T0 + 10_000, &["persist", "k"]), int(0));
    assert_eq!(db.get("k").unwrap(), None);
}

// The engine holds exactly StoredValue's encoding.
#[test]
fn engine_holds_the_encoded_value() {
    let db = open();
    run(&db, 1_000, &["set", "k", "v", "px", "1"]);
    let mut want = vec![1];
    want.extend_from_slice(&1_001u64.to_le_bytes());
    want.push(b'v');
    assert_eq!(db.get("k").unwrap(), Some(want));
}

// Bytes the decoder refuses surface as a state error naming the key.
#[test]
fn corrupt_value_is_a_state_error() {
    let db = open();
    db.put("k", [9u8; 3]).unwrap();
    let cmd = Command::parse(args(&["get", "k"])).unwrap();
    let err = execute(&cmd, &EngineState(&db), T0).unwrap_err();
    assert!(
        matches!(&err, ExecError::State(StateError::Corrupt { key, .. }) if key == b"k"),
        "{err:?}"
    );
}
