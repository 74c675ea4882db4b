//! Links the harness can cut: one UDP relay per directed link.
//!
//! Node `i` dials node `j` at the front socket of relay (i, j) (the node's
//! `raft_dial` setting); the relay forwards each datagram from its back
//! socket to `j`'s real QUIC address, and `j`'s answers back to `i`. QUIC
//! runs over UDP, so a relay that drops everything cuts the connection
//! `i` made to `j` in both directions, exactly as a network would: the
//! nodes see timeouts, not errors. `j`'s own calls to `i` go through relay
//! (j, i), so a symmetric partition blocks both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Largest datagram forwarded (QUIC's are at most ~1.5 KiB here).
const DATAGRAM_BYTES_MAX: usize = 65_536;

struct Link {
    front: SocketAddr,
    blocked: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

/// Every directed link between the nodes. Dropping it stops the relays.
pub struct Relays {
    links: BTreeMap<(u64, u64), Link>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Relays {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Relays {
    /// A relay for every ordered pair of distinct nodes; `raft` is each
    /// node's real QUIC address. Call inside a tokio runtime.
    pub async fn start(raft: &BTreeMap<u64, SocketAddr>) -> Result<Relays, String> {
        let mut relays = Relays {
            links: BTreeMap::new(),
            tasks: Vec::new(),
        };
        for &from in raft.keys() {
            for (&to, &target) in raft {
                if from != to {
                    relays.add(from, to, target).await?;
                }
            }
        }
        Ok(relays)
    }

    async fn add(&mut self, from: u64, to: u64, target: SocketAddr) -> Result<(), String> {
        let bind = |what| move |e: std::io::Error| format!("relay {from}->{to} {what}: {e}");
        let front = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(bind("front"))?,
        );
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.map_err(bind("back"))?);
        let front_addr = front.local_addr().map_err(bind("front"))?;
        let blocked = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        // The dialling node's address, learned from its first datagram.
        let (client_tx, client_rx) = tokio::sync::watch::channel(None::<SocketAddr>);
        let forward = {
            let (front, back, blocked, dropped) = (
                front.clone(),
                back.clone(),
                blocked.clone(),
                dropped.clone(),
            );
            tokio::spawn(async move {
                let mut buf = vec![0; DATAGRAM_BYTES_MAX];
                while let Ok((n, source)) = front.recv_from(&mut buf).await {
                    if *client_tx.borrow() != Some(source) {
                        let _ = client_tx.send(Some(source));
                    }
                    if blocked.load(Ordering::SeqCst) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(datagram) = buf.get(..n) {
                        let _ = back.send_to(datagram, target).await;
                    }
                }
            })
        };
        let backward = {
            let (blocked, dropped) = (blocked.clone(), dropped.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; DATAGRAM_BYTES_MAX];
                while let Ok((n, source)) = back.recv_from(&mut buf).await {
                    let client = *client_rx.borrow();
                    match client {
                        Some(client) if source == target && !blocked.load(Ordering::SeqCst) => {
                            if let Some(datagram) = buf.get(..n) {
                                let _ = front.send_to(datagram, client).await;
                            }
                        }
                        _ => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        self.tasks.extend([forward, backward]);
        self.links.insert(
            (from, to),
            Link {
                front: front_addr,
                blocked,
                dropped,
            },
        );
        Ok(())
    }

    /// The address node `from` should dial to reach `to`.
    pub fn front(&self, from: u64, to: u64) -> Option<SocketAddr> {
        self.links.get(&(from, to)).map(|l| l.front)
    }

    /// Cuts (or restores) both directions between `a` and `b`.
    pub fn set_cut(&self, a: u64, b: u64, cut: bool) {
        for key in [(a, b), (b, a)] {
            if let Some(link) = self.links.get(&key) {
                link.blocked.store(cut, Ordering::SeqCst);
            }
        }
    }

    /// Cuts every link between a node of `side` and one outside it.
    pub fn cut_between(&self, side: &[u64], nodes: &[u64]) {
        for &a in side {
            for &b in nodes.iter().filter(|b| !side.contains(b)) {
                self.set_cut(a, b, true);
            }
        }
    }

    pub fn heal(&self) {
        for link in self.links.values() {
            link.blocked.store(false, Ordering::SeqCst);
        }
    }

    /// Node pairs currently cut (each pair once, smaller id first).
    pub fn cuts(&self) -> Vec<(u64, u64)> {
        self.links
            .iter()
            .filter(|((a, b), l)| a < b && l.blocked.load(Ordering::SeqCst))
            .map(|(&k, _)| k)
            .collect()
    }

    /// Datagrams dropped so far, all links.
    pub fn dropped(&self) -> u64 {
        self.links
            .values()
            .map(|l| l.dropped.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relay_forwards_both_ways_until_cut() {
        // A datagram through relay (1, 2) reaches node 2's socket, the
        // answer comes back to node 1; once cut, nothing passes.
        let node1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let node2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let raft = BTreeMap::from([
            (1, node1.local_addr().unwrap()),
            (2, node2.local_addr().unwrap()),
        ]);
        let relays = Relays::start(&raft).await.unwrap();
        let front = relays.front(1, 2).unwrap();
        let mut buf = [0u8; 16];
        node1.send_to(b"ping", front).await.unwrap();
        let (n, via) = node2.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        node2.send_to(b"pong", via).await.unwrap();
        let (n, from) = node1.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], front));
        relays.set_cut(2, 1, true);
        assert_eq!(relays.cuts(), vec![(1, 2)]);
        node1.send_to(b"lost", front).await.unwrap();
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            node2.recv_from(&mut buf),
        )
        .await;
        assert!(waited.is_err(), "a cut link passed a datagram");
        relays.heal();
        node1.send_to(b"back", front).await.unwrap();
        let (n, _) = node2.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");
        assert!(relays.dropped() >= 1);
    }
}
