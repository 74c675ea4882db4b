//! Random argument vectors never panic parse or execute, and reads never
//! mutate.

use cairn_server::command::{Command, execute};
use proptest::collection::vec;
use proptest::prelude::*;

use super::{Model, T0};

const NAMES: &[&str] = &[
    "get",
    "set",
    "setnx",
    "setex",
    "psetex",
    "getset",
    "getdel",
    "getex",
    "mget",
    "mset",
    "msetnx",
    "del",
    "unlink",
    "exists",
    "incr",
    "incrby",
    "decr",
    "decrby",
    "incrbyfloat",
    "append",
    "strlen",
    "getrange",
    "setrange",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "persist",
    "type",
    "ping",
    "echo",
];

const WORDS: &[&str] = &[
    "a",
    "b",
    "nx",
    "xx",
    "gt",
    "lt",
    "ex",
    "px",
    "exat",
    "pxat",
    "get",
    "keepttl",
    "persist",
    "0",
    "-1",
    "1.5",
    "inf",
    "-inf",
    "nan",
    "1e308",
    "9223372036854775807",
    "-9223372036854775808",
    "536870912",
    "",
];

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (prop::sample::select(NAMES), any::<bool>()).prop_map(|(n, upper)| {
            if upper { n.to_ascii_uppercase().into_bytes() } else { n.as_bytes().to_vec() }
        }),
        1 => vec(any::<u8>(), 0..8),
    ]
}

/// Arguments: option words, numbers near the edges and random bytes. No
/// offset between 1 MiB and 512 MiB, so SETRANGE never builds a huge string.
fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        2 => (-100_000i64..100_000).prop_map(|n| n.to_string().into_bytes()),
        1 => Just(T0.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..6),
    ]
}

fn state() -> impl Strategy<Value = Model> {
    let value = prop_oneof![
        Just(b"10".to_vec()),
        Just(b"1.5".to_vec()),
        Just(b"9223372036854775807".to_vec()),
        vec(any::<u8>(), 0..6),
    ];
    vec(
        (
            prop::sample::select(&["a", "b"][..]),
            value,
            prop::option::of(-100i64..100),
        ),
        0..3,
    )
    .prop_map(|entries| {
        let mut m = Model::new();
        for (k, v, expiry) in entries {
            let mut sv = cairn_server::command::StoredValue::string(v);
            sv.expire_at_ms =
                expiry.and_then(|off| std::num::NonZeroU64::new((T0 as i64 + off) as u64));
            m.map.insert(k.as_bytes().to_vec(), sv);
        }
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    // Parse and execute return, whatever the input; reads never mutate;
    // every mutation touches a key the command names.
    #[test]
    fn random_commands_never_panic(
        name in name(),
        rest in vec(arg(), 0..7),
        m in state(),
        skew in -200i64..200,
    ) {
        let mut words = vec![name];
        words.extend(rest);
        let Ok(cmd) = Command::parse(words) else { return Ok(()) };
        let now = (T0 as i64 + skew) as u64;
        let _ = cmd.clone().stamp(now);
        if let Ok(out) = execute(&cmd, &m, now) {
            prop_assert!(cmd.is_write() || out.mutations.is_empty());
            let keys = cmd.keys();
            for mutation in &out.mutations {
                let key = match mutation {
                    cairn_server::command::Mutation::Put { key, .. }
                    | cairn_server::command::Mutation::Delete { key } => key,
                };
                prop_assert!(keys.contains(&key.as_slice()));
            }
        }
    }
}
