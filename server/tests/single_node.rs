//! Every command against one real node, through the `redis` crate, with
//! replies compared to what Redis documents.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::TestCluster;
use redis::{AsyncCommands, RedisResult, Value, cmd};

async fn q<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> RedisResult<T> {
    let mut c = cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(con).await
}

fn err_code(r: RedisResult<Value>) -> String {
    let e = r.expect_err("expected an error reply");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_commands_behave_as_redis_documents() {
    let cluster = TestCluster::start(1).await;
    let mut c = cluster.conn(1).await;

    let _: () = c.set("k", "v").await.unwrap();
    assert_eq!(c.get::<_, String>("k").await.unwrap(), "v");
    assert_eq!(
        q::<Option<String>>(&mut c, &["GET", "missing"])
            .await
            .unwrap(),
        None
    );
    // SET options.
    assert_eq!(
        q::<Option<String>>(&mut c, &["SET", "k", "v2", "NX"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        q::<String>(&mut c, &["SET", "k", "v2", "XX", "GET"])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(
        q::<String>(&mut c, &["SET", "k", "v3", "PX", "100000"])
            .await
            .unwrap(),
        "OK"
    );
    let pttl: i64 = q(&mut c, &["PTTL", "k"]).await.unwrap();
    assert!((99_000..=100_000).contains(&pttl), "{pttl}");
    assert_eq!(
        q::<String>(&mut c, &["SET", "k", "v4", "KEEPTTL"])
            .await
            .unwrap(),
        "OK"
    );
    assert!(q::<i64>(&mut c, &["PTTL", "k"]).await.unwrap() > 90_000);
    assert_eq!(q::<i64>(&mut c, &["PERSIST", "k"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), -1);
    assert_eq!(q::<i64>(&mut c, &["TTL", "nope"]).await.unwrap(), -2);
    assert_eq!(q::<i64>(&mut c, &["SETNX", "k", "x"]).await.unwrap(), 0);
    assert_eq!(
        q::<String>(&mut c, &["SETEX", "s", "100", "x"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(
        q::<String>(&mut c, &["PSETEX", "p", "100000", "x"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(
        q::<String>(&mut c, &["GETSET", "s", "y"]).await.unwrap(),
        "x"
    );
    assert_eq!(q::<String>(&mut c, &["GETDEL", "s"]).await.unwrap(), "y");
    assert_eq!(
        q::<Option<String>>(&mut c, &["GETEX", "s"]).await.unwrap(),
        None
    );
    assert_eq!(
        q::<String>(&mut c, &["GETEX", "p", "PERSIST"])
            .await
            .unwrap(),
        "x"
    );
    assert_eq!(q::<i64>(&mut c, &["TTL", "p"]).await.unwrap(), -1);
    // Counters.
    assert_eq!(q::<i64>(&mut c, &["INCR", "n"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(&mut c, &["INCRBY", "n", "10"]).await.unwrap(), 11);
    assert_eq!(q::<i64>(&mut c, &["DECR", "n"]).await.unwrap(), 10);
    assert_eq!(q::<i64>(&mut c, &["DECRBY", "n", "20"]).await.unwrap(), -10);
    assert_eq!(
        q::<String>(&mut c, &["INCRBYFLOAT", "f", "1.5"])
            .await
            .unwrap(),
        "1.5"
    );
    assert!(err_code(q(&mut c, &["INCR", "k"]).await).contains("not an integer"));
    // Strings.
    assert_eq!(
        q::<i64>(&mut c, &["APPEND", "a", "Hello"]).await.unwrap(),
        5
    );
    assert_eq!(
        q::<i64>(&mut c, &["APPEND", "a", " World"]).await.unwrap(),
        11
    );
    assert_eq!(q::<i64>(&mut c, &["STRLEN", "a"]).await.unwrap(), 11);
    assert_eq!(
        q::<String>(&mut c, &["GETRANGE", "a", "0", "4"])
            .await
            .unwrap(),
        "Hello"
    );
    assert_eq!(
        q::<i64>(&mut c, &["SETRANGE", "a", "6", "Redis"])
            .await
            .unwrap(),
        11
    );
    assert_eq!(c.get::<_, String>("a").await.unwrap(), "Hello Redis");
    // Multi-key within one slot; CROSSSLOT across.
    assert_eq!(
        q::<String>(&mut c, &["MSET", "{u}1", "a", "{u}2", "b"])
            .await
            .unwrap(),
        "OK"
    );
    let got: Vec<Option<String>> = q(&mut c, &["MGET", "{u}1", "{u}2", "{u}3"]).await.unwrap();
    assert_eq!(got, vec![Some("a".into()), Some("b".into()), None]);
    assert_eq!(
        q::<i64>(&mut c, &["MSETNX", "{u}3", "c", "{u}1", "z"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        q::<i64>(&mut c, &["EXISTS", "{u}1", "{u}2", "{u}3"])
            .await
            .unwrap(),
        2
    );
    assert!(err_code(q(&mut c, &["MGET", "x", "y"]).await).starts_with("CROSSSLOT"));
    assert_eq!(q::<i64>(&mut c, &["DEL", "{u}1", "{u}3"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(&mut c, &["UNLINK", "{u}2"]).await.unwrap(), 1);
    // Expiry.
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "k", "100"]).await.unwrap(), 1);
    assert_eq!(
        q::<i64>(&mut c, &["EXPIRE", "k", "50", "GT"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(q::<i64>(&mut c, &["PEXPIRE", "k", "100"]).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        q::<Option<String>>(&mut c, &["GET", "k"]).await.unwrap(),
        None
    );
    assert_eq!(q::<i64>(&mut c, &["EXPIREAT", "n", "1"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "n"]).await.unwrap(), 0);
    assert_eq!(
        q::<i64>(&mut c, &["PEXPIREAT", "f", "99999999999999"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(q::<String>(&mut c, &["TYPE", "f"]).await.unwrap(), "string");
    assert_eq!(
        q::<String>(&mut c, &["TYPE", "none"]).await.unwrap(),
        "none"
    );
    // Errors as Redis words them.
    assert!(err_code(q(&mut c, &["GET"]).await).contains("wrong number of arguments"));
    assert!(err_code(q(&mut c, &["NOSUCH", "x"]).await).contains("unknown command"));
    assert!(
        err_code(q(&mut c, &["SET", "k", "v", "EX", "0"]).await).contains("invalid expire time")
    );
    assert!(err_code(q(&mut c, &["SET", "k", "v", "NX", "XX"]).await).contains("syntax error"));
    // Oversized writes are refused with a reply; the group keeps serving.
    let big_key = "k".repeat(70_000);
    assert!(err_code(q(&mut c, &["SET", &big_key, "v"]).await).contains("key longer"));
    let big = "x".repeat(20 << 20);
    assert_eq!(
        q::<String>(&mut c, &["SET", "big", &big]).await.unwrap(),
        "OK"
    );
    assert!(err_code(q(&mut c, &["APPEND", "big", &big]).await).contains("maximum allowed size"));
    assert_eq!(
        q::<i64>(&mut c, &["STRLEN", "big"]).await.unwrap(),
        20 << 20
    );
    assert_eq!(q::<i64>(&mut c, &["DEL", "big"]).await.unwrap(), 1);
    // Connection commands.
    assert_eq!(q::<String>(&mut c, &["PING"]).await.unwrap(), "PONG");
    assert_eq!(q::<String>(&mut c, &["ECHO", "hi"]).await.unwrap(), "hi");
    assert_eq!(q::<String>(&mut c, &["SELECT", "0"]).await.unwrap(), "OK");
    assert!(err_code(q(&mut c, &["SELECT", "1"]).await).contains("out of range"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_commands_cover_every_group() {
    let cluster = TestCluster::start(1).await;
    let mut c = cluster.conn(1).await;
    for i in 0..300 {
        let _: () = c.set(format!("key:{i}"), i).await.unwrap();
    }
    let _: () = c.set("other", 1).await.unwrap();
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 301);
    let mut keys: Vec<String> = q(&mut c, &["KEYS", "key:*"]).await.unwrap();
    keys.sort();
    assert_eq!(keys.len(), 300);
    // A full SCAN returns every key (at least once), with MATCH and COUNT.
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_owned();
    let mut calls = 0;
    loop {
        let (next, batch): (String, Vec<String>) =
            q(&mut c, &["SCAN", &cursor, "MATCH", "key:*", "COUNT", "7"])
                .await
                .unwrap();
        seen.extend(batch);
        calls += 1;
        if next == "0" {
            break;
        }
        cursor = next;
        assert!(calls < 10_000, "scan does not end");
    }
    assert_eq!(seen.len(), 300);
    assert!(calls > 10, "COUNT is honoured");
    assert!(err_code(q(&mut c, &["SCAN", "abc"]).await).contains("invalid cursor"));
    assert_eq!(q::<String>(&mut c, &["FLUSHDB"]).await.unwrap(), "OK");
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 0);
    let _: () = c.set("after", 1).await.unwrap();
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_atomic_and_watch_aborts_on_change() {
    let cluster = TestCluster::start(1).await;
    let mut c = cluster.single(1).await;
    let mut other = cluster.conn(1).await;
    let (ok, results): (String, Vec<Value>) = redis::pipe()
        .cmd("MULTI")
        .cmd("SET")
        .arg("{t}a")
        .arg("1")
        .cmd("INCR")
        .arg("{t}a")
        .cmd("GET")
        .arg("{t}a")
        .cmd("EXEC")
        .query_async::<(String, String, String, String, Vec<Value>)>(&mut c)
        .await
        .map(|(ok, _, _, _, r)| (ok, r))
        .unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(results.len(), 3);
    assert_eq!(results[1], Value::Int(2));
    // WATCH, a change by another client, EXEC: aborted (nil).
    assert_eq!(q::<String>(&mut c, &["WATCH", "{t}a"]).await.unwrap(), "OK");
    let _: () = other.set("{t}a", "changed").await.unwrap();
    let aborted: (String, String, Value) = redis::pipe()
        .cmd("MULTI")
        .cmd("SET")
        .arg("{t}a")
        .arg("mine")
        .cmd("EXEC")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(aborted.2, Value::Nil);
    assert_eq!(other.get::<_, String>("{t}a").await.unwrap(), "changed");
    // WATCH without a change: applied.
    assert_eq!(q::<String>(&mut c, &["WATCH", "{t}a"]).await.unwrap(), "OK");
    let applied: (String, String, Vec<Value>) = redis::pipe()
        .cmd("MULTI")
        .cmd("SET")
        .arg("{t}a")
        .arg("mine")
        .cmd("EXEC")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(applied.2.len(), 1);
    assert_eq!(other.get::<_, String>("{t}a").await.unwrap(), "mine");
    // A queued error aborts the whole transaction; cross-slot is refused.
    let r: RedisResult<(String, Value, Value)> = redis::pipe()
        .cmd("MULTI")
        .cmd("GET")
        .cmd("EXEC")
        .query_async(&mut c)
        .await;
    assert!(r.is_err());
    let r: RedisResult<(String, String, String, Value)> = redis::pipe()
        .cmd("MULTI")
        .cmd("SET")
        .arg("x")
        .arg("1")
        .cmd("SET")
        .arg("y")
        .arg("1")
        .cmd("EXEC")
        .query_async(&mut c)
        .await;
    let e = format!("{:?}", r.unwrap_err());
    assert!(e.contains("CrossSlot"), "{e}");
    assert!(err_code(q(&mut c, &["EXEC"]).await).contains("EXEC without MULTI"));
    assert!(err_code(q(&mut c, &["DISCARD"]).await).contains("DISCARD without MULTI"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_commands_answer_what_clients_ask() {
    let cluster = TestCluster::start(1).await;
    let mut c = cluster.single(1).await;
    assert_eq!(
        q::<String>(&mut c, &["CLIENT", "SETNAME", "me"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(
        q::<String>(&mut c, &["CLIENT", "GETNAME"]).await.unwrap(),
        "me"
    );
    assert!(q::<i64>(&mut c, &["CLIENT", "ID"]).await.unwrap() > 0);
    assert!(
        q::<String>(&mut c, &["CLIENT", "INFO"])
            .await
            .unwrap()
            .contains("name=me")
    );
    let info: String = q(&mut c, &["INFO"]).await.unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Replication",
        "# Keyspace",
        "# Stats",
    ] {
        assert!(info.contains(section), "{section}");
    }
    assert!(q::<i64>(&mut c, &["COMMAND", "COUNT"]).await.unwrap() > 40);
    let cfg: Vec<String> = q(&mut c, &["CONFIG", "GET", "save"]).await.unwrap();
    assert_eq!(cfg[0], "save");
    let cfg: Vec<String> = q(&mut c, &["CONFIG", "GET", "maxmemory*"]).await.unwrap();
    assert_eq!(cfg.len(), 4);
    assert_eq!(
        q::<i64>(&mut c, &["CLUSTER", "KEYSLOT", "foo"])
            .await
            .unwrap(),
        12182
    );
    let slots: Vec<Value> = q(&mut c, &["CLUSTER", "SLOTS"]).await.unwrap();
    assert_eq!(slots.len(), 3);
    let myid: String = q(&mut c, &["CLUSTER", "MYID"]).await.unwrap();
    assert_eq!(myid.len(), 40);
    assert!(
        q::<String>(&mut c, &["CLUSTER", "NODES"])
            .await
            .unwrap()
            .contains("myself")
    );
    assert!(
        q::<String>(&mut c, &["CLUSTER", "INFO"])
            .await
            .unwrap()
            .contains("cluster_state:ok")
    );
    let _: () = c.set("foo", 1).await.unwrap();
    assert_eq!(
        q::<i64>(&mut c, &["CLUSTER", "COUNTKEYSINSLOT", "12182"])
            .await
            .unwrap(),
        1
    );
    // HELLO 3 switches to RESP3 (a map reply), HELLO 2 back.
    let hello: Value = q(&mut c, &["HELLO", "3"]).await.unwrap();
    assert!(matches!(hello, Value::Map(_)), "{hello:?}");
    let _: Value = q(&mut c, &["HELLO", "2"]).await.unwrap();
    assert!(err_code(q(&mut c, &["HELLO", "4"]).await).starts_with("NOPROTO"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_required_when_configured() {
    let cluster = TestCluster::start_with(1, |c| c.requirepass = Some("s3cret".into())).await;
    let url = cluster.url(1);
    let client = redis::Client::open(url.clone()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    assert!(err_code(q(&mut c, &["GET", "k"]).await).starts_with("NOAUTH"));
    assert!(err_code(q(&mut c, &["AUTH", "wrong"]).await).starts_with("WRONGPASS"));
    assert_eq!(
        q::<String>(&mut c, &["AUTH", "s3cret"]).await.unwrap(),
        "OK"
    );
    let _: () = c.set("k", "v").await.unwrap();
    // The URL form authenticates on connect.
    let authed = url.replace("redis://", "redis://:s3cret@");
    let mut c2 = redis::Client::open(authed)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert_eq!(c2.get::<_, String>("k").await.unwrap(), "v");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart() {
    let mut cluster = TestCluster::start(1).await;
    {
        let mut c = cluster.conn(1).await;
        for i in 0..100 {
            let _: () = c.set(format!("k{i}"), i).await.unwrap();
        }
        let _: () = c.set_ex("ttl", "v", 1000).await.unwrap();
    }
    cluster.stop(1).await;
    cluster.restart(1).await;
    cluster.wait_ready().await;
    let mut c = cluster.conn(1).await;
    for i in 0..100 {
        assert_eq!(c.get::<_, i64>(format!("k{i}")).await.unwrap(), i);
    }
    assert!(q::<i64>(&mut c, &["TTL", "ttl"]).await.unwrap() > 990);
    cluster.shutdown().await;
}

/// Reads one RESP reply (simple, error, integer, bulk) as text.
async fn read_reply(reader: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let line = line.trim_end().to_owned();
    match line.as_bytes().first() {
        Some(b'$') => {
            let len: i64 = line[1..].parse().unwrap();
            if len < 0 {
                return "(nil)".into();
            }
            let mut body = vec![0u8; len as usize + 2];
            reader.read_exact(&mut body).await.unwrap();
            String::from_utf8_lossy(&body[..len as usize]).into_owned()
        }
        _ => line,
    }
}

/// A pipeline of writes over many slots, with reads and failing commands in
/// between, is answered in order and exactly as one-at-a-time execution
/// would; the writes between two reads go out as one entry per group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_are_batched_and_answered_in_order() {
    use tokio::io::AsyncWriteExt;
    let cluster = TestCluster::start(1).await;
    let shared = &cluster.server(1).shared;
    let proposed = || -> u64 {
        let map = shared.map();
        map.groups
            .keys()
            .filter_map(|&g| shared.node.group(g))
            .map(|g| g.metrics().proposed_requests)
            .sum()
    };
    let before = proposed();
    let mut stream = tokio::net::TcpStream::connect(cluster.server(1).client_addr())
        .await
        .unwrap();
    let mut request = String::new();
    let mut expected: Vec<String> = Vec::new();
    let mut push = |args: &[&str], reply: &str| {
        request.push_str(&format!("*{}\r\n", args.len()));
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        expected.push(reply.to_owned());
    };
    push(&["SET", "text", "abc"], "+OK");
    for i in 0..200 {
        let key = format!("key:{i}");
        let value = format!("v{i}");
        push(&["SET", &key, &value], "+OK");
        push(&["INCR", "counter"], &format!(":{}", i + 1));
        if i % 50 == 25 {
            // Not a number: this command fails, the others in its entry
            // are applied.
            push(
                &["INCR", "text"],
                "-ERR value is not an integer or out of range",
            );
            push(&["APPEND", &key, "!"], &format!(":{}", value.len() + 1));
        }
        if i % 64 == 63 {
            // A read ends the run: it sees every write before it.
            push(&["GET", "counter"], &(i + 1).to_string());
        }
    }
    push(&["GET", "key:0"], "v0");
    push(&["GET", "key:25"], "v25!");
    push(&["GET", "key:199"], "v199");
    // A run of reads over every group: one barrier and snapshot per group.
    for i in 0..200 {
        let key = format!("key:{i}");
        let want = if i % 50 == 25 {
            format!("v{i}!")
        } else {
            format!("v{i}")
        };
        push(&["GET", &key], &want);
        if i % 40 == 0 {
            push(&["STRLEN", &key], &format!(":{}", want.len()));
        }
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    for (i, want) in expected.iter().enumerate() {
        let got = read_reply(&mut reader).await;
        assert_eq!(&got, want, "reply {i}");
    }
    // 405 writes, in 5 runs (cut by 3 GETs and the final reads), over the
    // groups of one node: far fewer entries than writes.
    let entries = proposed() - before;
    let groups = shared.map().groups.len() as u64;
    assert!(
        entries <= 5 * groups,
        "{entries} entries for 405 pipelined writes over {groups} groups"
    );
    cluster.shutdown().await;
}
