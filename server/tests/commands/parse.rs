//! Parsing: names, arity, options and numbers, with Redis's error texts.

use cairn_server::command::{
    Command, CommandError, ExpireCondition, Expiry, GetExTtl, SetCondition, SetTtl,
};

use super::{Model, args};

fn parse(words: &[&str]) -> Result<Command, CommandError> {
    Command::parse(args(words))
}

fn err(words: &[&str]) -> String {
    let e = parse(words).expect_err("should not parse");
    String::from_utf8(e.to_redis_error()).unwrap()
}

const SYNTAX: &str = "ERR syntax error";
const NOT_INT: &str = "ERR value is not an integer or out of range";

// Names are case-insensitive.
#[test]
fn command_names_ignore_case() {
    assert_eq!(parse(&["get", "k"]), parse(&["GeT", "k"]));
    assert_eq!(
        parse(&["INCRBYFLOAT", "k", "1"]),
        parse(&["incrbyfloat", "k", "1"])
    );
}

// Unknown commands quote the name and each argument, as Redis 7 does.
#[test]
fn unknown_command_quotes_name_and_args() {
    assert_eq!(
        err(&["foo", "a", "b"]),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err(&["Foo"]),
        "ERR unknown command 'Foo', with args beginning with: "
    );
}

// The quoted arguments stop once 128 bytes are written; the last is cut.
#[test]
fn unknown_command_quotes_at_most_128_bytes_of_args() {
    let long = "x".repeat(200);
    let e = err(&["nope", &long, "next"]);
    let expected = format!(
        "ERR unknown command 'nope', with args beginning with: '{}' ",
        "x".repeat(128)
    );
    assert_eq!(e, expected);
}

// An empty request is its own error; the server skips it without replying.
#[test]
fn empty_request_is_an_error() {
    assert_eq!(Command::parse(vec![]), Err(CommandError::Empty));
}

// Wrong arity names the command in lower case, whatever case was sent.
#[test]
fn wrong_arity_names_the_command() {
    assert_eq!(
        err(&["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&["get", "a", "b"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&["set", "k"]),
        "ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        err(&["setex", "k", "1"]),
        "ERR wrong number of arguments for 'setex' command"
    );
    assert_eq!(
        err(&["del"]),
        "ERR wrong number of arguments for 'del' command"
    );
    assert_eq!(
        err(&["expire", "k"]),
        "ERR wrong number of arguments for 'expire' command"
    );
    assert_eq!(
        err(&["echo"]),
        "ERR wrong number of arguments for 'echo' command"
    );
}

// MSET and MSETNX need key-value pairs; PING takes at most one message.
#[test]
fn odd_mset_and_long_ping_are_arity_errors() {
    assert_eq!(
        err(&["mset", "a", "1", "b"]),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err(&["msetnx", "a"]),
        "ERR wrong number of arguments for 'msetnx' command"
    );
    assert_eq!(
        err(&["ping", "a", "b"]),
        "ERR wrong number of arguments for 'ping' command"
    );
}

// SET's options parse into typed fields, in any order and case.
#[test]
fn set_options_parse_into_fields() {
    assert_eq!(
        parse(&["set", "k", "v", "nx", "Px", "100", "GET"]),
        Ok(Command::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            condition: SetCondition::IfMissing,
            ttl: SetTtl::Expire(Expiry::Px(100)),
            get: true,
        })
    );
    let Ok(Command::Set { ttl, condition, .. }) = parse(&["set", "k", "v", "KEEPTTL", "XX"]) else {
        panic!()
    };
    assert_eq!((ttl, condition), (SetTtl::Keep, SetCondition::IfExists));
}

// Redis refuses NX with XX, two expiries, KEEPTTL with an expiry, and
// options SET does not take.
#[test]
fn set_incompatible_options_are_syntax_errors() {
    for words in [
        &["set", "k", "v", "nx", "xx"][..],
        &["set", "k", "v", "xx", "nx"],
        &["set", "k", "v", "ex", "1", "px", "1"],
        &["set", "k", "v", "ex", "1", "ex", "1"],
        &["set", "k", "v", "keepttl", "ex", "1"],
        &["set", "k", "v", "ex", "1", "keepttl"],
        &["set", "k", "v", "persist"],
        &["set", "k", "v", "ex"],
        &["set", "k", "v", "bogus"],
    ] {
        assert_eq!(err(words), SYNTAX, "{words:?}");
    }
}

// Redis 7 allows GET with NX, and repeating NX, XX, GET or KEEPTTL.
#[test]
fn set_get_with_nx_and_repeats_are_allowed() {
    assert!(parse(&["set", "k", "v", "nx", "get"]).is_ok());
    assert!(
        parse(&[
            "set", "k", "v", "nx", "nx", "get", "get", "keepttl", "keepttl"
        ])
        .is_ok()
    );
}

// The expiry's number is checked after every option: a syntax error wins.
#[test]
fn set_expiry_errors_come_after_syntax() {
    assert_eq!(err(&["set", "k", "v", "ex", "abc"]), NOT_INT);
    assert_eq!(err(&["set", "k", "v", "ex", "abc", "nx", "xx"]), SYNTAX);
    assert_eq!(
        err(&["set", "k", "v", "ex", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&["set", "k", "v", "px", "-5"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&["set", "k", "v", "exat", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    // Seconds that overflow once made milliseconds.
    let big = (i64::MAX / 1000 + 1).to_string();
    assert_eq!(
        err(&["set", "k", "v", "ex", &big]),
        "ERR invalid expire time in 'set' command"
    );
    assert!(parse(&["set", "k", "v", "pxat", &i64::MAX.to_string()]).is_ok());
}

// SETEX and PSETEX check their time as SET does, naming themselves.
#[test]
fn setex_checks_its_time() {
    assert_eq!(err(&["setex", "k", "x", "v"]), NOT_INT);
    assert_eq!(
        err(&["setex", "k", "0", "v"]),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        err(&["psetex", "k", "-1", "v"]),
        "ERR invalid expire time in 'psetex' command"
    );
}

// GETEX takes one of EX, PX, EXAT, PXAT, PERSIST, and none of SET's others.
#[test]
fn getex_options() {
    let Ok(Command::GetEx { ttl, .. }) = parse(&["getex", "k", "persist"]) else {
        panic!()
    };
    assert_eq!(ttl, GetExTtl::Persist);
    let Ok(Command::GetEx { ttl, .. }) = parse(&["getex", "k", "exat", "5"]) else {
        panic!()
    };
    assert_eq!(ttl, GetExTtl::Expire(Expiry::ExAt(5)));
    for words in [
        &["getex", "k", "nx"][..],
        &["getex", "k", "get"],
        &["getex", "k", "keepttl"],
        &["getex", "k", "persist", "ex", "1"],
        &["getex", "k", "ex", "1", "persist"],
    ] {
        assert_eq!(err(words), SYNTAX, "{words:?}");
    }
    assert_eq!(
        err(&["getex", "k", "ex", "0"]),
        "ERR invalid expire time in 'getex' command"
    );
}

// EXPIRE's options: unknown ones, NX with another, GT with LT; then the
// number. XX with GT or LT is allowed.
#[test]
fn expire_option_errors() {
    assert_eq!(
        err(&["expire", "k", "10", "zz"]),
        "ERR Unsupported option zz"
    );
    assert_eq!(
        err(&["expire", "k", "10", "nx", "xx"]),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        err(&["pexpire", "k", "10", "gt", "lt"]),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(
        err(&["expire", "k", "abc", "zz"]),
        "ERR Unsupported option zz"
    );
    assert_eq!(err(&["expire", "k", "abc"]), NOT_INT);
    let big = (i64::MAX / 1000 + 1).to_string();
    assert_eq!(
        err(&["expire", "k", &big]),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        err(&["expireat", "k", &big]),
        "ERR invalid expire time in 'expireat' command"
    );
    let Ok(Command::Expire { condition, .. }) = parse(&["expire", "k", "-1", "XX", "gt"]) else {
        panic!()
    };
    assert_eq!(
        condition,
        ExpireCondition {
            xx: true,
            gt: true,
            ..Default::default()
        }
    );
}

// Integers are read as strictly as string2ll.
#[test]
fn integer_arguments_are_strict() {
    for bad in [
        "",
        " 1",
        "1 ",
        "+1",
        "01",
        "-0",
        "1.0",
        "9223372036854775808",
    ] {
        assert_eq!(err(&["incrby", "k", bad]), NOT_INT, "{bad:?}");
    }
    assert!(parse(&["incrby", "k", "-9223372036854775808"]).is_ok());
    assert_eq!(err(&["getrange", "k", "a", "1"]), NOT_INT);
    assert_eq!(err(&["setrange", "k", "x", "v"]), NOT_INT);
}

// DECRBY by i64::MIN cannot be negated; Redis refuses it up front.
#[test]
fn decrby_min_is_refused() {
    assert_eq!(
        err(&["decrby", "k", "-9223372036854775808"]),
        "ERR decrement would overflow"
    );
}

// INCRBYFLOAT's increment must be a float; NaN is not one.
#[test]
fn incrbyfloat_increment_must_be_a_float() {
    for bad in ["abc", "nan", " 1", "1e", ""] {
        assert_eq!(
            err(&["incrbyfloat", "k", bad]),
            "ERR value is not a valid float",
            "{bad:?}"
        );
    }
}

// A negative SETRANGE offset is refused before the key is looked at.
#[test]
fn setrange_negative_offset() {
    assert_eq!(
        err(&["setrange", "k", "-1", "v"]),
        "ERR offset is out of range"
    );
}

// Errors leave the state alone.
#[test]
fn errors_write_nothing() {
    let mut m = Model::new();
    m.run(&["set", "k", "abc"]).unwrap();
    let before = m.map.clone();
    assert!(m.run(&["incr", "k"]).is_err());
    assert!(m.run(&["set", "k", "v", "nx", "xx"]).is_err());
    assert_eq!(m.map, before);
}
