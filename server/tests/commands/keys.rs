//! DEL, UNLINK, EXISTS, TYPE, PING, ECHO; keys() and is_write().

use cairn_server::command::Command;
use cairn_server::resp::Frame;

use super::{Model, args, bulk, int};

// DEL counts keys that existed; a repeat counts once.
#[test]
fn del_counts_existing_keys_once() {
    let mut m = Model::new();
    m.run(&["mset", "a", "1", "b", "2"]).unwrap();
    assert_eq!(m.run(&["del", "a", "a", "x", "b"]), Ok(int(2)));
    assert!(m.map.is_empty());
    assert_eq!(m.run(&["unlink", "a"]), Ok(int(0)));
}

// UNLINK is DEL for us (there is no background freeing to do).
#[test]
fn unlink_deletes() {
    let mut m = Model::new();
    m.run(&["set", "a", "1"]).unwrap();
    assert_eq!(m.run(&["unlink", "a", "b"]), Ok(int(1)));
    assert_eq!(m.run(&["exists", "a"]), Ok(int(0)));
}

// EXISTS counts a key once per time it is named.
#[test]
fn exists_counts_repeats() {
    let mut m = Model::new();
    m.run(&["set", "a", "1"]).unwrap();
    assert_eq!(m.run(&["exists", "a", "a", "b"]), Ok(int(2)));
}

// TYPE is "string" or "none", as a status reply.
#[test]
fn type_is_string_or_none() {
    let mut m = Model::new();
    m.run(&["set", "a", "1"]).unwrap();
    assert_eq!(m.run(&["type", "a"]), Ok(Frame::Simple(b"string".to_vec())));
    assert_eq!(m.run(&["type", "b"]), Ok(Frame::Simple(b"none".to_vec())));
}

// PING is PONG, or its message as a bulk string; ECHO echoes.
#[test]
fn ping_and_echo() {
    let mut m = Model::new();
    assert_eq!(m.run(&["ping"]), Ok(Frame::Simple(b"PONG".to_vec())));
    assert_eq!(m.run(&["PING", "hi"]), Ok(bulk("hi")));
    assert_eq!(m.run(&["echo", "hello world"]), Ok(bulk("hello world")));
}

fn keys_of(words: &[&str]) -> Vec<Vec<u8>> {
    let cmd = Command::parse(args(words)).unwrap();
    cmd.keys().into_iter().map(<[u8]>::to_vec).collect()
}

// keys() lists every key argument in order, repeats kept, none for PING.
#[test]
fn keys_lists_key_arguments() {
    assert_eq!(keys_of(&["mset", "a", "1", "b", "2"]), args(&["a", "b"]));
    assert_eq!(keys_of(&["del", "a", "a"]), args(&["a", "a"]));
    assert_eq!(keys_of(&["set", "k", "v", "ex", "1"]), args(&["k"]));
    assert_eq!(keys_of(&["getrange", "k", "0", "1"]), args(&["k"]));
    assert!(keys_of(&["ping"]).is_empty());
    assert!(keys_of(&["echo", "k"]).is_empty());
}

// is_write() follows Redis's write flag.
#[test]
fn is_write_follows_redis_flags() {
    let write = |words: &[&str]| Command::parse(args(words)).unwrap().is_write();
    for w in [
        &["set", "k", "v"][..],
        &["getex", "k"],
        &["del", "k"],
        &["incr", "k"],
        &["persist", "k"],
    ] {
        assert!(write(w), "{w:?}");
    }
    for r in [
        &["get", "k"][..],
        &["mget", "k"],
        &["ttl", "k"],
        &["exists", "k"],
        &["ping"],
    ] {
        assert!(!write(r), "{r:?}");
    }
}
