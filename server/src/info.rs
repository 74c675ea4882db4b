//! INFO, COMMAND and CONFIG: what clients and tools ask a server about
//! itself.

use std::fmt::Write as _;

use crate::entry::Args;
use crate::resp::Frame;
use crate::server::Shared;

/// The Redis version Cairn reports (the command set it follows).
pub const REDIS_VERSION: &str = "7.2.0";

/// Name, arity, flags, first key, last key, key step.
type CommandSpec = (&'static str, i64, &'static [&'static str], i64, i64, i64);

/// Every command name the server answers, lower case, with its arity (as
/// COMMAND reports it: negative means "at least"), flags, and first key /
/// last key / step.
const COMMAND_TABLE: &[CommandSpec] = &[
    ("get", 2, &["readonly", "fast"], 1, 1, 1),
    ("set", -3, &["write", "denyoom"], 1, 1, 1),
    ("setnx", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("setex", 4, &["write", "denyoom"], 1, 1, 1),
    ("psetex", 4, &["write", "denyoom"], 1, 1, 1),
    ("getset", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("getdel", 2, &["write", "fast"], 1, 1, 1),
    ("getex", -2, &["write", "fast"], 1, 1, 1),
    ("mget", -2, &["readonly", "fast"], 1, -1, 1),
    ("mset", -3, &["write", "denyoom"], 1, -1, 2),
    ("msetnx", -3, &["write", "denyoom"], 1, -1, 2),
    ("del", -2, &["write"], 1, -1, 1),
    ("unlink", -2, &["write", "fast"], 1, -1, 1),
    ("exists", -2, &["readonly", "fast"], 1, -1, 1),
    ("incr", 2, &["write", "denyoom", "fast"], 1, 1, 1),
    ("incrby", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("decr", 2, &["write", "denyoom", "fast"], 1, 1, 1),
    ("decrby", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("incrbyfloat", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("append", 3, &["write", "denyoom", "fast"], 1, 1, 1),
    ("strlen", 2, &["readonly", "fast"], 1, 1, 1),
    ("getrange", 4, &["readonly"], 1, 1, 1),
    ("setrange", 4, &["write", "denyoom"], 1, 1, 1),
    ("expire", -3, &["write", "fast"], 1, 1, 1),
    ("pexpire", -3, &["write", "fast"], 1, 1, 1),
    ("expireat", -3, &["write", "fast"], 1, 1, 1),
    ("pexpireat", -3, &["write", "fast"], 1, 1, 1),
    ("ttl", 2, &["readonly", "fast"], 1, 1, 1),
    ("pttl", 2, &["readonly", "fast"], 1, 1, 1),
    ("persist", 2, &["write", "fast"], 1, 1, 1),
    ("type", 2, &["readonly", "fast"], 1, 1, 1),
    ("scan", -2, &["readonly"], 0, 0, 0),
    ("keys", 2, &["readonly"], 0, 0, 0),
    ("dbsize", 1, &["readonly", "fast"], 0, 0, 0),
    ("flushdb", -1, &["write"], 0, 0, 0),
    ("flushall", -1, &["write"], 0, 0, 0),
    ("ping", -1, &["fast"], 0, 0, 0),
    ("echo", 2, &["fast"], 0, 0, 0),
    ("select", 2, &["loading", "stale", "fast"], 0, 0, 0),
    ("quit", -1, &["fast"], 0, 0, 0),
    ("reset", 1, &["fast"], 0, 0, 0),
    (
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
    ),
    (
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
    ),
    ("info", -1, &["loading", "stale"], 0, 0, 0),
    ("command", -1, &["loading", "stale"], 0, 0, 0),
    ("client", -2, &["loading", "stale"], 0, 0, 0),
    ("config", -2, &["admin", "loading", "stale"], 0, 0, 0),
    ("cluster", -2, &["stale"], 0, 0, 0),
    ("readonly", 1, &["loading", "stale", "fast"], 0, 0, 0),
    ("readwrite", 1, &["loading", "stale", "fast"], 0, 0, 0),
    ("asking", 1, &["fast"], 0, 0, 0),
    (
        "multi",
        1,
        &["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
    ),
    ("exec", 1, &["noscript", "loading", "stale"], 0, 0, 0),
    (
        "discard",
        1,
        &["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
    ),
    (
        "watch",
        -2,
        &["noscript", "loading", "stale", "fast"],
        1,
        -1,
        1,
    ),
    (
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
    ),
    ("time", 1, &["loading", "stale", "fast"], 0, 0, 0),
    ("wait", 3, &["noscript"], 0, 0, 0),
];

/// Names of every command, for metric labels.
pub const KNOWN_COMMANDS: &[&str] = &[
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
    "scan",
    "keys",
    "dbsize",
    "flushdb",
    "flushall",
    "ping",
    "echo",
    "select",
    "quit",
    "reset",
    "auth",
    "hello",
    "info",
    "command",
    "client",
    "config",
    "cluster",
    "readonly",
    "readwrite",
    "asking",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "time",
    "wait",
];

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

fn command_entry(entry: &CommandSpec) -> Frame {
    let (name, arity, flags, first, last, step) = *entry;
    Frame::Array(vec![
        bulk(name),
        Frame::Integer(arity),
        Frame::Set(
            flags
                .iter()
                .map(|f| Frame::Simple(f.as_bytes().to_vec()))
                .collect(),
        ),
        Frame::Integer(first),
        Frame::Integer(last),
        Frame::Integer(step),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

/// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS (empty), and
/// COMMAND GETKEYS is not offered.
pub fn command(args: &Args) -> Frame {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    match sub.as_str() {
        "" => Frame::Array(COMMAND_TABLE.iter().map(command_entry).collect()),
        "count" => Frame::Integer(i64::try_from(COMMAND_TABLE.len()).unwrap_or(0)),
        "info" => Frame::Array(
            args[2..]
                .iter()
                .map(|name| {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    COMMAND_TABLE
                        .iter()
                        .find(|e| e.0 == name)
                        .map_or(Frame::NullArray, command_entry)
                })
                .collect(),
        ),
        "docs" => Frame::Map(Vec::new()),
        "list" => Frame::Array(COMMAND_TABLE.iter().map(|e| bulk(e.0)).collect()),
        _ => {
            Frame::Error(format!("ERR unknown subcommand '{sub}'. Try COMMAND HELP.").into_bytes())
        }
    }
}

/// CONFIG GET for the parameters clients and tools ask about; CONFIG SET
/// and the rest are refused (settings come from the node's config).
pub fn config(shared: &Shared, args: &Args) -> Frame {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    match sub.as_str() {
        "get" if args.len() >= 3 => {
            let values = config_values(shared);
            let mut out = Vec::new();
            for pattern in &args[2..] {
                let pattern = String::from_utf8_lossy(pattern).to_ascii_lowercase();
                for (name, value) in &values {
                    if crate::glob::glob_match(pattern.as_bytes(), name.as_bytes()) {
                        out.push((bulk(name), bulk(value)));
                    }
                }
            }
            Frame::Map(out)
        }
        "resetstat" => Frame::Simple(b"OK".to_vec()),
        "get" => Frame::Error(b"ERR wrong number of arguments for 'config|get' command".to_vec()),
        _ => Frame::Error(
            format!("ERR CONFIG {sub} is not supported: settings come from the node's config file and flags").into_bytes(),
        ),
    }
}

fn config_values(shared: &Shared) -> Vec<(&'static str, String)> {
    let c = &shared.config;
    vec![
        ("save", String::new()),
        ("appendonly", "yes".into()),
        (
            "appendfsync",
            match c.fsync {
                crate::config::FsyncPolicy::Always => "always".into(),
                crate::config::FsyncPolicy::Never => "no".into(),
            },
        ),
        ("databases", "1".into()),
        ("maxclients", c.max_clients.to_string()),
        ("maxmemory", (c.memory_mb << 20).to_string()),
        ("maxmemory-policy", "noeviction".into()),
        ("proto-max-bulk-len", c.max_bulk_bytes.to_string()),
        ("timeout", "0".into()),
        ("port", shared.client_addr.port().to_string()),
        ("bind", shared.client_addr.ip().to_string()),
        ("cluster-enabled", "yes".into()),
        ("requirepass", String::new()),
    ]
}

/// INFO [section ...].
pub async fn info(shared: &Shared, args: &Args) -> Frame {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "all" | "everything" | "default"));
    let want = |s: &str| all || wanted.iter().any(|w| w == s);
    let mut out = String::new();
    if want("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\ncairn_version:{}\r\nredis_mode:cluster\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{:040x}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nnode_id:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            shared.id,
            shared.client_addr.port(),
            shared.started_at.elapsed().as_secs(),
            shared.id,
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nrejected_connections:{}\r\n\r\n",
            shared.metrics.connections.get(),
            shared.config.max_clients,
            shared.metrics.connections_rejected.get(),
        );
    }
    if want("stats") {
        let total: u64 = shared
            .metrics
            .command_calls()
            .iter()
            .map(|(_, calls, _)| calls)
            .sum();
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nproxied_commands:{}\r\nmoved_replies:{}\r\ntryagain_replies:{}\r\n\r\n",
            shared.metrics.connections_total.get(),
            total,
            shared.metrics.connections_rejected.get(),
            shared.metrics.forwarded.get(),
            shared.metrics.moved.get(),
            shared.metrics.tryagain.get(),
        );
    }
    if want("replication") {
        let groups = shared.node.groups();
        let leading = groups.iter().filter(|g| g.is_leader()).count();
        let _ = write!(
            out,
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nraft_groups_hosted:{}\r\nraft_groups_leading:{}\r\n",
            groups.len(),
            leading
        );
        for g in groups {
            let m = g.metrics();
            let _ = write!(
                out,
                "raft_group_{}:state={},term={},leader={},applied={}\r\n",
                m.group,
                m.state,
                m.term,
                m.leader
                    .map_or_else(|| "none".to_owned(), |l| l.to_string()),
                m.last_applied.map_or(0, |l| l.index),
            );
        }
        out.push_str("\r\n");
    }
    if want("keyspace") {
        out.push_str("# Keyspace\r\n");
        let keys = shared.count_local_keys();
        if keys > 0 {
            let _ = write!(out, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
        }
        out.push_str("\r\n");
    }
    if want("commandstats") {
        out.push_str("# Commandstats\r\n");
        for (name, calls, _) in shared.metrics.command_calls() {
            let _ = write!(out, "cmdstat_{name}:calls={calls}\r\n");
        }
        out.push_str("\r\n");
    }
    Frame::Verbatim {
        format: *b"txt",
        text: out.into_bytes(),
    }
}

impl Shared {
    /// Keys stored on this node's replicas (INFO keyspace: this node's
    /// view, as in Redis Cluster, where INFO is per node).
    pub fn count_local_keys(&self) -> u64 {
        let db = self.node.db();
        let end = crate::slot::slot_keys_end(crate::slot::MAX_SLOT);
        db.iter(cairn_engine::IterOptions::range(vec![0, 0], end))
            .filter_map(Result::ok)
            .filter(|(k, _)| crate::slot::split_data_key(k).is_some())
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_in_the_table_is_known_and_the_reverse() {
        for e in COMMAND_TABLE {
            assert!(KNOWN_COMMANDS.contains(&e.0), "{}", e.0);
        }
        assert_eq!(COMMAND_TABLE.len(), KNOWN_COMMANDS.len());
    }

    #[test]
    fn command_info_and_count() {
        let count = command(&vec![b"COMMAND".to_vec(), b"COUNT".to_vec()]);
        assert_eq!(count, Frame::Integer(COMMAND_TABLE.len() as i64));
        let info = command(&vec![
            b"COMMAND".to_vec(),
            b"INFO".to_vec(),
            b"get".to_vec(),
            b"nope".to_vec(),
        ]);
        let Frame::Array(items) = info else { panic!() };
        assert!(matches!(&items[0], Frame::Array(e) if e[1] == Frame::Integer(2)));
        assert_eq!(items[1], Frame::NullArray);
    }
}
