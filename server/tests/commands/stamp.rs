//! stamp(): relative expiries become absolute, so every replica applies
//! the same write whatever its clock says.

use cairn_server::command::{Command, ExecError, Expiry, Outcome, SetTtl, execute};
use proptest::prelude::*;

use super::{Model, T0, args};

fn parse(words: &[&str]) -> Command {
    Command::parse(args(words)).unwrap()
}

// Each relative form turns into its absolute one at the given time.
#[test]
fn stamp_rewrites_relative_expiries() {
    let stamped = |w: &[&str]| parse(w).stamp(T0);
    assert_eq!(
        stamped(&["set", "k", "v", "ex", "2"]),
        parse(&["set", "k", "v", "pxat", &(T0 + 2000).to_string()])
    );
    assert_eq!(
        stamped(&["set", "k", "v", "px", "2", "nx", "get"]),
        parse(&["set", "k", "v", "pxat", &(T0 + 2).to_string(), "nx", "get"])
    );
    assert_eq!(
        stamped(&["setex", "k", "2", "v"]),
        parse(&["set", "k", "v", "pxat", &(T0 + 2000).to_string()])
    );
    assert_eq!(
        stamped(&["psetex", "k", "2", "v"]),
        parse(&["set", "k", "v", "pxat", &(T0 + 2).to_string()])
    );
    assert_eq!(
        stamped(&["getex", "k", "ex", "2"]),
        parse(&["getex", "k", "pxat", &(T0 + 2000).to_string()])
    );
    assert_eq!(
        stamped(&["expire", "k", "-2", "xx"]),
        parse(&["pexpireat", "k", &(T0 - 2000).to_string(), "xx"])
    );
    assert_eq!(
        stamped(&["pexpire", "k", "2", "gt"]),
        parse(&["pexpireat", "k", &(T0 + 2).to_string(), "gt"])
    );
}

// Absolute forms and commands without expiry are left as they are.
#[test]
fn stamp_leaves_absolute_and_other_commands() {
    for w in [
        &["set", "k", "v", "exat", "5"][..],
        &["set", "k", "v", "keepttl"],
        &["expireat", "k", "5"],
        &["getex", "k", "persist"],
        &["incr", "k"],
    ] {
        assert_eq!(parse(w).stamp(T0), parse(w), "{w:?}");
    }
}

// A relative time that would overflow stays relative, so executing it
// still reports Redis's error.
#[test]
fn stamp_keeps_overflowing_times_relative() {
    let max = i64::MAX.to_string();
    let cmd = parse(&["pexpire", "k", &max]);
    assert_eq!(cmd.clone().stamp(T0), cmd);
    let Command::Set { ttl, .. } = parse(&["set", "k", "v", "px", &max]).stamp(T0) else {
        panic!()
    };
    assert_eq!(ttl, SetTtl::Expire(Expiry::Px(i64::MAX)));
}

// Once stamped, the expiry written no longer depends on when it is applied.
#[test]
fn stamped_write_is_independent_of_later_clocks() {
    let cmd = parse(&["set", "k", "v", "ex", "10"]).stamp(T0);
    let m = Model::new();
    let at_t0 = execute(&cmd, &m, T0).unwrap();
    let later = execute(&cmd, &m, T0 + 7_000).unwrap();
    assert_eq!(at_t0.mutations, later.mutations);
}

fn outcome(r: Result<Outcome, ExecError>) -> Result<Outcome, Vec<u8>> {
    r.map_err(|e| e.to_redis_error())
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_string()), Just("b".to_string())]
}

fn time_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3_000i64..3_000).prop_map(|n| n.to_string()),
        Just(i64::MAX.to_string()),
        Just((i64::MAX / 1000).to_string()),
        Just(T0.to_string()),
        Just((T0 / 1000 + 1).to_string()),
    ]
}

/// Commands that carry an expiry, relative or absolute, with options.
fn expiry_command() -> impl Strategy<Value = Vec<String>> {
    let set_opt = prop_oneof![Just("ex"), Just("px"), Just("exat"), Just("pxat")];
    let cond = prop_oneof![
        Just(vec![]),
        Just(vec!["nx"]),
        Just(vec!["xx"]),
        Just(vec!["gt"]),
        Just(vec!["lt"]),
        Just(vec!["xx", "lt"])
    ];
    let expire = prop_oneof![
        Just("expire"),
        Just("pexpire"),
        Just("expireat"),
        Just("pexpireat")
    ];
    prop_oneof![
        (key(), set_opt.clone(), time_arg(), any::<bool>()).prop_map(|(k, o, t, get)| {
            let mut w = vec!["set".into(), k, "v".into(), o.into(), t];
            if get {
                w.push("get".into());
            }
            w
        }),
        (key(), time_arg()).prop_map(|(k, t)| vec!["setex".into(), k, t, "v".into()]),
        (key(), time_arg()).prop_map(|(k, t)| vec!["psetex".into(), k, t, "v".into()]),
        (key(), set_opt, time_arg()).prop_map(|(k, o, t)| vec!["getex".into(), k, o.into(), t]),
        (expire, key(), time_arg(), cond).prop_map(|(c, k, t, o)| {
            let mut w = vec![c.into(), k, t];
            w.extend(o.into_iter().map(String::from));
            w
        }),
    ]
}

/// A state of up to two keys, each maybe with an expiry near T0.
fn state() -> impl Strategy<Value = Model> {
    let entry = prop_oneof![
        Just(None),
        (prop::option::of(-5_000i64..5_000)).prop_map(Some)
    ];
    (entry.clone(), entry).prop_map(|(a, b)| {
        let mut m = Model::new();
        for (k, e) in [("a", a), ("b", b)] {
            let Some(offset) = e else { continue };
            m.run(&["set", k, "x"]).unwrap();
            if let Some(off) = offset {
                m.run(&["pexpireat", k, &(T0 as i64 + off).to_string()])
                    .unwrap();
            }
        }
        m
    })
}

proptest! {
    // Stamping at t0 then executing at t0 is the same as executing the
    // original at t0: reply, mutations and errors.
    #[test]
    fn stamp_then_execute_equals_execute(words in expiry_command(), m in state(), skew in -3_000i64..3_000) {
        let now = (T0 as i64 + skew) as u64;
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let Ok(cmd) = Command::parse(args(&words)) else { return Ok(()) };
        let plain = outcome(execute(&cmd, &m, now));
        let stamped = outcome(execute(&cmd.clone().stamp(now), &m, now));
        prop_assert_eq!(plain, stamped);
    }
}
