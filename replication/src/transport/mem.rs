//! An in-process transport for tests: nodes register their handler with a
//! [`MemNetwork`], and every link (ordered pair of nodes) can drop, delay or
//! duplicate messages, or be cut, independently. A cut or dropped request
//! behaves like lost datagrams: the caller waits out its timeout. The reply
//! crosses the reverse link, so "applied, but the reply was lost" happens
//! too. Randomness comes from one seeded generator, so a failing seed can
//! be replayed (up to tokio's scheduling).

use super::{BoxFuture, RpcHandler, RpcRequest, Transport, TransportError};
use crate::types::NodeId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Faults of one direction of a link. Probabilities are per mille.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkFaults {
    pub drop_per_mille: u32,
    pub duplicate_per_mille: u32,
    pub delay_ms: u64,
    /// Extra random delay in `[0, jitter_ms]`, which also reorders messages.
    pub jitter_ms: u64,
}

/// Counts of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemNetworkStats {
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

#[derive(Default)]
struct Links {
    default: LinkFaults,
    faults: HashMap<(NodeId, NodeId), LinkFaults>,
    cut: HashSet<(NodeId, NodeId)>,
    rng: u64,
}

impl Links {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: small, seedable, good enough for fault decisions.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.next_random() % 1000 < u64::from(per_mille)
    }
}

/// What happens to one message on a link.
struct Fate {
    lost: bool,
    duplicate: bool,
    delay: Duration,
}

#[derive(Default)]
struct Inner {
    handlers: RwLock<HashMap<NodeId, Arc<dyn RpcHandler>>>,
    links: Mutex<Links>,
    delivered: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
}

impl Inner {
    fn fate(&self, from: NodeId, to: NodeId) -> Fate {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.cut.contains(&(from, to)) {
            return Fate {
                lost: true,
                duplicate: false,
                delay: Duration::ZERO,
            };
        }
        let faults = links
            .faults
            .get(&(from, to))
            .copied()
            .unwrap_or(links.default);
        let lost = links.chance(faults.drop_per_mille);
        let duplicate = links.chance(faults.duplicate_per_mille);
        let jitter = if faults.jitter_ms > 0 {
            links.next_random() % (faults.jitter_ms + 1)
        } else {
            0
        };
        Fate {
            lost,
            duplicate,
            delay: Duration::from_millis(faults.delay_ms + jitter),
        }
    }

    fn handler(&self, node: NodeId) -> Option<Arc<dyn RpcHandler>> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .cloned()
    }
}

/// The in-process network. Cheap to clone.
#[derive(Clone)]
pub struct MemNetwork {
    inner: Arc<Inner>,
}

impl MemNetwork {
    /// A network with no faults; `seed` drives every random fault decision.
    pub fn new(seed: u64) -> MemNetwork {
        let inner = Inner::default();
        inner.links.lock().unwrap_or_else(|p| p.into_inner()).rng = seed | 1;
        MemNetwork {
            inner: Arc::new(inner),
        }
    }

    /// Makes `node` reachable, served by `handler` (replacing an earlier one).
    pub fn register(&self, node: NodeId, handler: Arc<dyn RpcHandler>) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, handler);
    }

    /// Makes `node` unreachable, as if its process were gone.
    pub fn unregister(&self, node: NodeId) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&node);
    }

    /// The transport `node` sends with.
    pub fn transport(&self, node: NodeId) -> Arc<dyn Transport> {
        Arc::new(MemTransport {
            inner: self.inner.clone(),
            from: node,
        })
    }

    fn with_links(&self, f: impl FnOnce(&mut Links)) {
        f(&mut self.inner.links.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Cuts every link between nodes of different sides, both ways.
    pub fn partition(&self, sides: &[&[NodeId]]) {
        self.with_links(|links| {
            for (i, a) in sides.iter().enumerate() {
                for b in sides.iter().skip(i + 1) {
                    for &x in a.iter() {
                        for &y in b.iter() {
                            links.cut.insert((x, y));
                            links.cut.insert((y, x));
                        }
                    }
                }
            }
        });
    }

    /// Cuts `node` off from `others`, both ways.
    pub fn isolate(&self, node: NodeId, others: &[NodeId]) {
        self.partition(&[&[node], others]);
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.with_links(|links| {
            links.cut.insert((from, to));
        });
    }

    /// Restores every cut link (faults set with `set_faults` stay).
    pub fn heal(&self) {
        self.with_links(|links| links.cut.clear());
    }

    /// Faults for messages from `from` to `to`.
    pub fn set_faults(&self, from: NodeId, to: NodeId, faults: LinkFaults) {
        self.with_links(|links| {
            links.faults.insert((from, to), faults);
        });
    }

    /// Faults for every link without its own setting.
    pub fn set_default_faults(&self, faults: LinkFaults) {
        self.with_links(|links| links.default = faults);
    }

    /// Removes every fault and cut.
    pub fn clear_faults(&self) {
        self.with_links(|links| {
            links.faults.clear();
            links.default = LinkFaults::default();
            links.cut.clear();
        });
    }

    pub fn stats(&self) -> MemNetworkStats {
        MemNetworkStats {
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            duplicated: self.inner.duplicated.load(Ordering::Relaxed),
        }
    }
}

struct MemTransport {
    inner: Arc<Inner>,
    from: NodeId,
}

impl Transport for MemTransport {
    fn call(
        &self,
        target: NodeId,
        _addr: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let inner = self.inner.clone();
        let from = self.from;
        let timed_out = TransportError::Timeout {
            node: target,
            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        Box::pin(async move {
            let exchange = exchange(inner, from, target, request);
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(timed_out),
            }
        })
    }
}

/// Delivers one request and brings back its reply, subject to the faults of
/// both directions. A lost message never resolves (the caller times out).
async fn exchange(
    inner: Arc<Inner>,
    from: NodeId,
    target: NodeId,
    request: RpcRequest,
) -> Result<Vec<u8>, TransportError> {
    let Some(handler) = inner.handler(target) else {
        return Err(TransportError::Unreachable {
            node: target,
            reason: "not registered with the in-memory network".into(),
        });
    };
    let there = inner.fate(from, target);
    if there.lost {
        inner.dropped.fetch_add(1, Ordering::Relaxed);
        return std::future::pending().await;
    }
    tokio::time::sleep(there.delay).await;
    if there.duplicate {
        inner.duplicated.fetch_add(1, Ordering::Relaxed);
        let copy = handler.handle(request.clone());
        tokio::spawn(async move {
            let _ = copy.await;
        });
    }
    inner.delivered.fetch_add(1, Ordering::Relaxed);
    let reply = handler.handle(request).await;
    let back = inner.fate(target, from);
    if back.lost {
        inner.dropped.fetch_add(1, Ordering::Relaxed);
        return std::future::pending().await;
    }
    tokio::time::sleep(back.delay).await;
    reply.map_err(|message| TransportError::Remote {
        node: target,
        message,
    })
}
