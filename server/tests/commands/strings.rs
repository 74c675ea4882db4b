//! GET, SET and kin, MGET/MSET, APPEND, STRLEN, GETRANGE, SETRANGE.

use cairn_server::resp::Frame;

use super::{Model, T0, bulk, int, nil, ok};

// SET then GET returns the value; a missing key is nil.
#[test]
fn set_then_get() {
    let mut m = Model::new();
    assert_eq!(m.run(&["get", "k"]), Ok(nil()));
    assert_eq!(m.run(&["set", "k", "v"]), Ok(ok()));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("v")));
}

// NX writes only a missing key, XX only an existing one; a refusal is nil.
#[test]
fn set_nx_and_xx() {
    let mut m = Model::new();
    assert_eq!(m.run(&["set", "k", "a", "xx"]), Ok(nil()));
    assert_eq!(m.run(&["get", "k"]), Ok(nil()));
    assert_eq!(m.run(&["set", "k", "a", "nx"]), Ok(ok()));
    assert_eq!(m.run(&["set", "k", "b", "nx"]), Ok(nil()));
    assert_eq!(m.run(&["set", "k", "c", "xx"]), Ok(ok()));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("c")));
}

// SET GET replies the old value, even when NX refuses the write (Redis 7).
#[test]
fn set_get_replies_old_value() {
    let mut m = Model::new();
    assert_eq!(m.run(&["set", "k", "a", "get"]), Ok(nil()));
    assert_eq!(m.run(&["set", "k", "b", "get"]), Ok(bulk("a")));
    assert_eq!(m.run(&["set", "k", "c", "nx", "get"]), Ok(bulk("b")));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("b")));
    assert_eq!(m.run(&["set", "x", "c", "xx", "get"]), Ok(nil()));
    assert_eq!(m.run(&["get", "x"]), Ok(nil()));
}

// SET clears a TTL unless KEEPTTL; KEEPTTL on a key without one sets none.
#[test]
fn set_clears_ttl_unless_keepttl() {
    let mut m = Model::new();
    m.run(&["set", "k", "a", "px", "5000"]).unwrap();
    m.run(&["set", "k", "b", "keepttl"]).unwrap();
    assert_eq!(m.raw("k"), Some((b"b".to_vec(), Some(T0 + 5000))));
    m.run(&["set", "k", "c"]).unwrap();
    assert_eq!(m.raw("k"), Some((b"c".to_vec(), None)));
    m.run(&["set", "n", "c", "keepttl"]).unwrap();
    assert_eq!(m.raw("n"), Some((b"c".to_vec(), None)));
}

// EX, PX, EXAT, PXAT all land as one absolute expiry in ms.
#[test]
fn set_expiry_forms() {
    let mut m = Model::new();
    m.run(&["set", "a", "v", "ex", "10"]).unwrap();
    m.run(&["set", "b", "v", "px", "10"]).unwrap();
    m.run(&["set", "c", "v", "exat", "1800000000"]).unwrap();
    m.run(&["set", "d", "v", "pxat", "1800000000123"]).unwrap();
    assert_eq!(m.raw("a").unwrap().1, Some(T0 + 10_000));
    assert_eq!(m.raw("b").unwrap().1, Some(T0 + 10));
    assert_eq!(m.raw("c").unwrap().1, Some(1_800_000_000_000));
    assert_eq!(m.raw("d").unwrap().1, Some(1_800_000_000_123));
}

// SET with an absolute time already past replies OK and leaves no key.
#[test]
fn set_with_past_time_leaves_no_key() {
    let mut m = Model::new();
    m.run(&["set", "k", "old"]).unwrap();
    assert_eq!(m.run(&["set", "k", "v", "pxat", "1"]), Ok(ok()));
    assert_eq!(m.run(&["get", "k"]), Ok(nil()));
    assert!(m.map.is_empty());
}

// SETNX replies 1 when it wrote, 0 when the key existed.
#[test]
fn setnx_replies_whether_it_wrote() {
    let mut m = Model::new();
    assert_eq!(m.run(&["setnx", "k", "a"]), Ok(int(1)));
    assert_eq!(m.run(&["setnx", "k", "b"]), Ok(int(0)));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("a")));
}

// SETEX and PSETEX set the value and a relative expiry.
#[test]
fn setex_and_psetex() {
    let mut m = Model::new();
    assert_eq!(m.run(&["setex", "k", "3", "v"]), Ok(ok()));
    assert_eq!(m.raw("k"), Some((b"v".to_vec(), Some(T0 + 3000))));
    assert_eq!(m.run(&["psetex", "k", "3", "w"]), Ok(ok()));
    assert_eq!(m.raw("k"), Some((b"w".to_vec(), Some(T0 + 3))));
}

// GETSET replies the old value and clears the TTL; GETDEL removes the key.
#[test]
fn getset_and_getdel() {
    let mut m = Model::new();
    assert_eq!(m.run(&["getset", "k", "a"]), Ok(nil()));
    m.run(&["expire", "k", "100"]).unwrap();
    assert_eq!(m.run(&["getset", "k", "b"]), Ok(bulk("a")));
    assert_eq!(m.raw("k"), Some((b"b".to_vec(), None)));
    assert_eq!(m.run(&["getdel", "k"]), Ok(bulk("b")));
    assert_eq!(m.run(&["getdel", "k"]), Ok(nil()));
    assert!(m.map.is_empty());
}

// GETEX returns the value and changes the TTL as asked.
#[test]
fn getex_changes_ttl() {
    let mut m = Model::new();
    assert_eq!(m.run(&["getex", "k", "ex", "5"]), Ok(nil()));
    assert!(m.map.is_empty());
    m.run(&["set", "k", "v"]).unwrap();
    assert_eq!(m.run(&["getex", "k"]), Ok(bulk("v")));
    assert_eq!(m.raw("k").unwrap().1, None);
    assert_eq!(m.run(&["getex", "k", "px", "50"]), Ok(bulk("v")));
    assert_eq!(m.raw("k").unwrap().1, Some(T0 + 50));
    assert_eq!(m.run(&["getex", "k", "persist"]), Ok(bulk("v")));
    assert_eq!(m.raw("k").unwrap().1, None);
    // A past absolute time deletes the key, after replying its value.
    assert_eq!(m.run(&["getex", "k", "exat", "1"]), Ok(bulk("v")));
    assert_eq!(m.run(&["get", "k"]), Ok(nil()));
    assert!(m.map.is_empty());
}

// MGET answers each key in order, nil for missing; MSET writes all.
#[test]
fn mget_and_mset() {
    let mut m = Model::new();
    assert_eq!(m.run(&["mset", "a", "1", "b", "2", "a", "3"]), Ok(ok()));
    assert_eq!(
        m.run(&["mget", "a", "x", "b"]),
        Ok(Frame::Array(vec![bulk("3"), nil(), bulk("2")]))
    );
}

// MSET is one batch: each key once, its last value, TTLs cleared.
#[test]
fn mset_is_one_batch_with_last_value_per_key() {
    use cairn_server::command::{Command, Mutation, StoredValue, execute};
    let mut m = Model::new();
    m.run(&["set", "a", "old", "ex", "10"]).unwrap();
    let cmd = Command::parse(super::args(&["mset", "a", "1", "b", "2", "a", "3"])).unwrap();
    let out = execute(&cmd, &m, T0).unwrap();
    assert_eq!(
        out.mutations,
        vec![
            Mutation::Put {
                key: b"a".to_vec(),
                value: StoredValue::string("3")
            },
            Mutation::Put {
                key: b"b".to_vec(),
                value: StoredValue::string("2")
            },
        ]
    );
}

// MSETNX writes all keys only if none exists.
#[test]
fn msetnx_all_or_nothing() {
    let mut m = Model::new();
    assert_eq!(m.run(&["msetnx", "a", "1", "b", "2"]), Ok(int(1)));
    assert_eq!(m.run(&["msetnx", "c", "3", "b", "4"]), Ok(int(0)));
    assert_eq!(
        m.run(&["mget", "a", "b", "c"]),
        Ok(Frame::Array(vec![bulk("1"), bulk("2"), nil()]))
    );
}

// APPEND creates or extends, replies the new length, keeps the TTL.
#[test]
fn append_extends_and_keeps_ttl() {
    let mut m = Model::new();
    assert_eq!(m.run(&["append", "k", "Hello"]), Ok(int(5)));
    m.run(&["pexpire", "k", "100"]).unwrap();
    assert_eq!(m.run(&["append", "k", " World"]), Ok(int(11)));
    assert_eq!(m.raw("k"), Some((b"Hello World".to_vec(), Some(T0 + 100))));
}

// STRLEN is the byte length, 0 for a missing key.
#[test]
fn strlen_counts_bytes() {
    let mut m = Model::new();
    assert_eq!(m.run(&["strlen", "k"]), Ok(int(0)));
    m.run(&["set", "k", "héllo"]).unwrap();
    assert_eq!(m.run(&["strlen", "k"]), Ok(int(6)));
}

// GETRANGE as in the Redis docs' example, plus clamping and empty ranges.
#[test]
fn getrange_edges() {
    let mut m = Model::new();
    assert_eq!(m.run(&["getrange", "k", "0", "-1"]), Ok(bulk("")));
    m.run(&["set", "k", "This is a string"]).unwrap();
    let cases = [
        ("0", "3", "This"),
        ("-3", "-1", "ing"),
        ("0", "-1", "This is a string"),
        ("10", "100", "string"),
        ("5", "3", ""),
        ("-1", "-5", ""),
        ("100", "200", ""),
        ("-100", "3", "This"),
        ("0", "-100", "T"),
        (
            "-9223372036854775808",
            "9223372036854775807",
            "This is a string",
        ),
    ];
    for (start, end, want) in cases {
        assert_eq!(
            m.run(&["getrange", "k", start, end]),
            Ok(bulk(want)),
            "{start} {end}"
        );
    }
}

// SETRANGE overwrites, pads with zero bytes, and writes nothing for "".
#[test]
fn setrange_edges() {
    let mut m = Model::new();
    m.run(&["set", "k", "Hello World"]).unwrap();
    assert_eq!(m.run(&["setrange", "k", "6", "Redis"]), Ok(int(11)));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("Hello Redis")));
    assert_eq!(m.run(&["setrange", "p", "6", "Redis"]), Ok(int(11)));
    assert_eq!(m.raw("p").unwrap().0, b"\0\0\0\0\0\0Redis");
    // Nothing to write: the length, and no key created.
    assert_eq!(m.run(&["setrange", "k", "100", ""]), Ok(int(11)));
    assert_eq!(m.run(&["setrange", "n", "5", ""]), Ok(int(0)));
    assert_eq!(m.raw("n"), None);
    // Inside the string the length does not change.
    assert_eq!(m.run(&["setrange", "k", "0", "J"]), Ok(int(11)));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("Jello Redis")));
}

// SETRANGE refuses to build a string over 512 MiB, and writes nothing.
// (APPEND's same check needs a 512 MiB value to reach: not tested here.)
#[test]
fn setrange_over_512_mib_is_refused() {
    let mut m = Model::new();
    let too_long = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    assert_eq!(
        m.run(&["setrange", "k", "536870912", "x"]),
        Err(too_long.into())
    );
    assert_eq!(
        m.run(&["setrange", "k", "536870911", "xy"]),
        Err(too_long.into())
    );
    assert_eq!(
        m.run(&["setrange", "k", "9223372036854775807", "x"]),
        Err(too_long.into())
    );
    assert!(m.map.is_empty());
}
