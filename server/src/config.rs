//! A node's settings: a TOML file (`cairn start --config node.toml`),
//! every key also a flag; flags win. Defaults make `cairn start` with no
//! arguments a working single node on loopback. See docs/operations.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_replication::RaftOptions;
use serde::Deserialize;

/// One member of the initial cluster, as `id@raft_addr@client_addr@admin_addr`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PeerSpec {
    pub id: u64,
    pub raft_addr: String,
    pub client_addr: String,
    pub admin_addr: String,
}

impl std::str::FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('@').collect();
        let [id, raft_addr, client_addr, admin_addr] = parts.as_slice() else {
            return Err(format!(
                "peer {s:?} is not id@raft_addr@client_addr@admin_addr"
            ));
        };
        let id: u64 = id
            .parse()
            .map_err(|_| format!("peer {s:?}: node id {id:?} is not a number"))?;
        if id == 0 {
            return Err(format!("peer {s:?}: node ids start at 1"));
        }
        Ok(PeerSpec {
            id,
            raft_addr: (*raft_addr).to_owned(),
            client_addr: (*client_addr).to_owned(),
            admin_addr: (*admin_addr).to_owned(),
        })
    }
}

/// When the Raft log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before a write is acknowledged (a majority has it on disk).
    Always,
    /// Never: a write is acknowledged once a majority has it in memory.
    /// Survives the loss of a minority of processes, not of power to a
    /// majority. For development and benchmarks only.
    Never,
}

/// How a misrouted command of a client that follows redirects is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Redirect {
    /// `-MOVED` for connections that asked for the topology (CLUSTER
    /// SLOTS, SHARDS or NODES); proxy for the others.
    Auto,
    /// Always proxy.
    Never,
    /// Always `-MOVED`.
    Always,
}

/// Timing profile of the Raft groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// 100 ms heartbeats, 0.5-1 s elections.
    Lan,
    /// 50 ms heartbeats, 150-300 ms elections (one machine).
    Loopback,
}

/// Everything a node needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id (>= 1), unique in the cluster. Default 1.
    pub node_id: u64,
    /// Where the engine, the Raft log and snapshots live. Default
    /// `./cairn-data`.
    pub data_dir: PathBuf,
    /// RESP listen address. Default 127.0.0.1:7379.
    pub listen: SocketAddr,
    /// Node-to-node (QUIC) listen address. Default 127.0.0.1:7381.
    pub raft_listen: SocketAddr,
    /// Admin HTTP listen address. Default 127.0.0.1:7380.
    pub admin_listen: SocketAddr,
    /// Addresses other nodes and clients are told to use, when the listen
    /// addresses are wildcards. Default: the listen addresses.
    pub advertise_client: Option<String>,
    pub advertise_raft: Option<String>,
    pub advertise_admin: Option<String>,
    /// The initial cluster (all members, this node included). Empty: a
    /// single-node cluster of this node.
    pub peers: Vec<String>,
    /// Whether this node creates the cluster (once; a no-op afterwards).
    /// Default: true when `peers` is empty, else false. `false` with no
    /// peers is a node that waits to be added (`cairn start --join`, then
    /// `cairn admin add-node` on a member).
    pub bootstrap: Option<bool>,
    /// Data groups made at bootstrap. Default 3 per initial node.
    pub groups: Option<u16>,
    /// Replicas per data group. Default 3 (capped at the node count).
    pub replicas: usize,
    /// Cluster CA certificate, node certificate and key (PEM) for QUIC.
    /// Unset: a CA and certificate are generated in `data_dir/tls` (fine
    /// for one node; a cluster needs `cairn certs`).
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Certificate (chain) and key (PEM) for TLS on the RESP port; both or
    /// neither. Set: the port accepts only TLS. Unset: plain TCP.
    pub client_tls_cert: Option<PathBuf>,
    pub client_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) for client certificates. Set: every client
    /// must present a certificate that chains to one of them (mutual TLS).
    /// Needs `client_tls_cert` and `client_tls_key`.
    pub client_tls_ca: Option<PathBuf>,
    /// Password clients must give with AUTH (or HELLO ... AUTH).
    pub requirepass: Option<String>,
    pub fsync: FsyncPolicy,
    /// Engine memory budget (memtables and caches), MiB. Default 512.
    pub memory_mb: usize,
    pub network: Network,
    pub redirect: Redirect,
    /// Most client connections at once; more are refused. Default 10 000.
    pub max_clients: usize,
    /// Longest a client may take to send the rest of a started request,
    /// or to finish a TLS handshake, seconds, before it is disconnected.
    /// Default 30.
    pub request_read_timeout_s: u64,
    /// Longest a command waits for its group (elections included) before
    /// it is answered TRYAGAIN, ms. Default 5 000.
    pub request_timeout_ms: u64,
    /// Largest bulk string a client may send, bytes. Default 512 MiB.
    pub max_bulk_bytes: usize,
    /// Log filter (`info`, `cairn_server=debug,warn`, ...). `RUST_LOG`
    /// wins when set.
    pub log: String,
    /// `id@addr`: dial node `id` at `addr` instead of the Raft address the
    /// cluster map gives it. For proxies and fault injection (the chaos
    /// harness puts a UDP relay on each link); `addr`'s host must be in
    /// the peer's certificate. Default empty.
    pub raft_dial: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            data_dir: PathBuf::from("cairn-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7379)),
            raft_listen: SocketAddr::from(([127, 0, 0, 1], 7381)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 7380)),
            advertise_client: None,
            advertise_raft: None,
            advertise_admin: None,
            peers: Vec::new(),
            bootstrap: None,
            groups: None,
            replicas: 3,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            client_tls_cert: None,
            client_tls_key: None,
            client_tls_ca: None,
            requirepass: None,
            fsync: FsyncPolicy::Always,
            memory_mb: 512,
            network: Network::Lan,
            redirect: Redirect::Auto,
            max_clients: 10_000,
            request_read_timeout_s: 30,
            request_timeout_ms: 5_000,
            max_bulk_bytes: 512 << 20,
            log: "info,openraft=warn".to_owned(),
            raft_dial: Vec::new(),
        }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| format!("config: {e}"))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    pub fn client_addr(&self) -> String {
        self.advertise_client
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    pub fn raft_addr(&self) -> String {
        self.advertise_raft
            .clone()
            .unwrap_or_else(|| self.raft_listen.to_string())
    }

    pub fn admin_addr(&self) -> String {
        self.advertise_admin
            .clone()
            .unwrap_or_else(|| self.admin_listen.to_string())
    }

    /// The initial cluster, this node included.
    pub fn initial_cluster(&self) -> Result<Vec<PeerSpec>, String> {
        if self.peers.is_empty() {
            return Ok(vec![PeerSpec {
                id: self.node_id,
                raft_addr: self.raft_addr(),
                client_addr: self.client_addr(),
                admin_addr: self.admin_addr(),
            }]);
        }
        let peers: Vec<PeerSpec> = self
            .peers
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        if !peers.iter().any(|p| p.id == self.node_id) {
            return Err(format!(
                "peers must include this node (id {})",
                self.node_id
            ));
        }
        let mut ids: Vec<u64> = peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != peers.len() {
            return Err("peers name the same node id twice".to_owned());
        }
        Ok(peers)
    }

    /// `raft_dial` as a map from node id to the address to dial.
    pub fn dial_overrides(&self) -> Result<BTreeMap<u64, String>, String> {
        let mut map = BTreeMap::new();
        for spec in &self.raft_dial {
            let bad = || format!("raft_dial {spec:?} is not id@host:port");
            let (id, addr) = spec.split_once('@').ok_or_else(bad)?;
            let id: u64 = id.parse().map_err(|_| bad())?;
            if id == 0 || !addr.contains(':') {
                return Err(bad());
            }
            if map.insert(id, addr.to_owned()).is_some() {
                return Err(format!("raft_dial names node {id} twice"));
            }
        }
        Ok(map)
    }

    pub fn bootstraps(&self) -> bool {
        self.bootstrap.unwrap_or(self.peers.is_empty())
    }

    pub fn raft_options(&self) -> RaftOptions {
        match self.network {
            Network::Lan => RaftOptions::default(),
            Network::Loopback => RaftOptions::loopback(),
        }
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id == 0 {
            return Err("node_id must be at least 1".into());
        }
        if self.replicas == 0 {
            return Err("replicas must be at least 1".into());
        }
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1".into());
        }
        if self.memory_mb < 16 {
            return Err("memory_mb must be at least 16".into());
        }
        if self.tls_ca.is_some() != self.tls_cert.is_some()
            || self.tls_cert.is_some() != self.tls_key.is_some()
        {
            return Err("tls_ca, tls_cert and tls_key go together".into());
        }
        if self.client_tls_cert.is_some() != self.client_tls_key.is_some() {
            return Err("client_tls_cert and client_tls_key go together".into());
        }
        if self.client_tls_ca.is_some() && self.client_tls_cert.is_none() {
            return Err(
                "client_tls_ca (mutual TLS) needs client_tls_cert and client_tls_key".into(),
            );
        }
        if !self.bootstraps() && self.peers.is_empty() && self.tls_ca.is_none() {
            return Err("a node joining a cluster needs tls_ca, tls_cert and tls_key signed by the cluster's CA (`cairn certs --reuse-ca`)".into());
        }
        if !self.peers.is_empty() && self.tls_ca.is_none() {
            return Err("a multi-node cluster needs tls_ca, tls_cert and tls_key from `cairn certs` (every node must trust one CA)".into());
        }
        self.dial_overrides()?;
        self.initial_cluster().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_loopback_single_node() {
        let c = Config::default();
        assert!(c.validate().is_ok());
        assert!(c.bootstraps());
        assert_eq!(c.initial_cluster().unwrap().len(), 1);
        assert_eq!(c.client_addr(), "127.0.0.1:7379");
    }

    #[test]
    fn toml_overrides_and_rejects_unknown_keys() {
        let c = Config::from_toml(
            "node_id = 2\nlisten = \"0.0.0.0:6379\"\npeers = [\"1@a:1@b:2@c:3\", \"2@d:1@e:2@f:3\"]\nfsync = \"never\"\n",
        )
        .unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.fsync, FsyncPolicy::Never);
        assert!(!c.bootstraps());
        assert_eq!(c.initial_cluster().unwrap()[1].client_addr, "e:2");
        assert!(Config::from_toml("nodeid = 2").is_err());
        // A cluster needs one CA.
        assert!(c.validate().is_err());
        let c = Config {
            tls_ca: Some("ca.pem".into()),
            tls_cert: Some("n.pem".into()),
            tls_key: Some("k.pem".into()),
            ..c
        };
        assert!(c.validate().is_ok());
        let missing_self = Config { node_id: 3, ..c };
        assert!(missing_self.validate().is_err());
        assert!("1@a@b".parse::<PeerSpec>().is_err());
        assert!("0@a@b@c".parse::<PeerSpec>().is_err());
    }

    #[test]
    fn client_tls_settings_go_together() {
        // A certificate without its key, or a client CA without a server
        // certificate, is refused before anything starts.
        let c = Config::from_toml(
            "client_tls_cert = \"s.pem\"\nclient_tls_key = \"s-key.pem\"\nclient_tls_ca = \"ca.pem\"\n",
        )
        .unwrap();
        assert!(c.validate().is_ok());
        let no_key = Config {
            client_tls_key: None,
            ..c.clone()
        };
        assert!(no_key.validate().is_err());
        let only_ca = Config {
            client_tls_ca: Some("ca.pem".into()),
            ..Config::default()
        };
        assert!(only_ca.validate().is_err());
    }

    #[test]
    fn raft_dial_parses_and_rejects_bad_entries() {
        // The dial override is `id@host:port`, one per node.
        let c = Config::from_toml("raft_dial = [\"2@127.0.0.1:9102\", \"3@h:1\"]").unwrap();
        let map = c.dial_overrides().unwrap();
        assert_eq!(map.get(&2).map(String::as_str), Some("127.0.0.1:9102"));
        assert_eq!(map.len(), 2);
        for bad in ["2", "x@a:1", "0@a:1", "2@nohost"] {
            let c = Config {
                raft_dial: vec![bad.to_owned()],
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
        let twice = Config {
            raft_dial: vec!["2@a:1".into(), "2@b:1".into()],
            ..Config::default()
        };
        assert!(twice.dial_overrides().is_err());
    }
}
