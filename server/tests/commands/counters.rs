//! INCR, INCRBY, DECR, DECRBY, INCRBYFLOAT.

use cairn_server::command::StoredValue;

use super::{Model, T0, bulk, int};

const NOT_INT: &str = "ERR value is not an integer or out of range";

// A missing key counts from 0; each form adds what it says.
#[test]
fn incr_family_counts_from_zero() {
    let mut m = Model::new();
    assert_eq!(m.run(&["incr", "k"]), Ok(int(1)));
    assert_eq!(m.run(&["incrby", "k", "10"]), Ok(int(11)));
    assert_eq!(m.run(&["decr", "k"]), Ok(int(10)));
    assert_eq!(m.run(&["decrby", "k", "15"]), Ok(int(-5)));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("-5")));
}

// A value that is not a strict 64-bit integer is refused.
#[test]
fn incr_on_non_integer_is_an_error() {
    let mut m = Model::new();
    for v in ["abc", "1.5", " 1", "01", "", "9223372036854775808"] {
        m.run(&["set", "k", v]).unwrap();
        assert_eq!(m.run(&["incr", "k"]), Err(NOT_INT.into()), "{v:?}");
    }
}

// Going past i64 either way is an overflow error, and nothing is written.
#[test]
fn incr_overflow_is_an_error() {
    let mut m = Model::new();
    let overflow = "ERR increment or decrement would overflow";
    m.run(&["set", "k", "9223372036854775807"]).unwrap();
    assert_eq!(m.run(&["incr", "k"]), Err(overflow.into()));
    m.run(&["set", "k", "-9223372036854775808"]).unwrap();
    assert_eq!(m.run(&["decr", "k"]), Err(overflow.into()));
    assert_eq!(m.run(&["decrby", "k", "1"]), Err(overflow.into()));
    assert_eq!(m.run(&["get", "k"]), Ok(bulk("-9223372036854775808")));
    assert_eq!(m.run(&["incrby", "k", "9223372036854775807"]), Ok(int(-1)));
}

// INCR keeps the key's TTL.
#[test]
fn incr_keeps_ttl() {
    let mut m = Model::new();
    m.run(&["set", "k", "1", "px", "100"]).unwrap();
    m.run(&["incr", "k"]).unwrap();
    assert_eq!(m.raw("k"), Some((b"2".to_vec(), Some(T0 + 100))));
}

// INCRBYFLOAT as in the Redis docs: 10.50 + 0.1 = 10.6, 5.0e3 + 2.0e2 =
// 5200, no exponent and no trailing zeros.
#[test]
fn incrbyfloat_formats_like_redis() {
    let mut m = Model::new();
    m.run(&["set", "k", "10.50"]).unwrap();
    assert_eq!(m.run(&["incrbyfloat", "k", "0.1"]), Ok(bulk("10.6")));
    assert_eq!(m.run(&["incrbyfloat", "k", "-5"]), Ok(bulk("5.6")));
    m.run(&["set", "k", "5.0e3"]).unwrap();
    assert_eq!(m.run(&["incrbyfloat", "k", "2.0e2"]), Ok(bulk("5200")));
    assert_eq!(m.run(&["incrbyfloat", "n", "5.0e3"]), Ok(bulk("5000")));
    assert_eq!(m.run(&["get", "n"]), Ok(bulk("5000")));
    assert_eq!(m.run(&["incrbyfloat", "z", "-0.0"]), Ok(bulk("0")));
    assert_eq!(m.run(&["incrbyfloat", "i", "3"]), Ok(bulk("3")));
    // f64, not long double: Redis would keep the 3 (see docs/commands.md).
    assert_eq!(
        m.run(&["incrbyfloat", "i", "1e20"]),
        Ok(bulk("100000000000000000000"))
    );
}

// A stored value that is not a float is refused; so is an infinite result.
#[test]
fn incrbyfloat_errors() {
    let mut m = Model::new();
    m.run(&["set", "k", "abc"]).unwrap();
    assert_eq!(
        m.run(&["incrbyfloat", "k", "1"]),
        Err("ERR value is not a valid float".into())
    );
    let nan_inf = "ERR increment would produce NaN or Infinity";
    assert_eq!(m.run(&["incrbyfloat", "n", "inf"]), Err(nan_inf.into()));
    m.run(&["set", "big", "1.7e308"]).unwrap();
    assert_eq!(
        m.run(&["incrbyfloat", "big", "1.7e308"]),
        Err(nan_inf.into())
    );
    assert!(m.raw("n").is_none());
}

// INCRBYFLOAT keeps the TTL and works on integer text too.
#[test]
fn incrbyfloat_keeps_ttl() {
    let mut m = Model::new();
    m.map.insert(b"k".to_vec(), StoredValue::string("7"));
    m.run(&["pexpire", "k", "9"]).unwrap();
    assert_eq!(m.run(&["incrbyfloat", "k", "0.5"]), Ok(bulk("7.5")));
    assert_eq!(m.raw("k"), Some((b"7.5".to_vec(), Some(T0 + 9))));
}
