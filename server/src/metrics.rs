//! Counters and latency histograms, rendered in Prometheus text format by
//! the admin server. Lock-free on the hot path: a command's counter and
//! histogram are found once per command name (a read lock on a small map)
//! and then updated with relaxed atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, microseconds.
const BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let labels = labels.trim_end_matches(',');
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Per-command statistics.
#[derive(Debug, Default)]
pub struct CommandStats {
    pub calls: Counter,
    pub errors: Counter,
    pub latency: Histogram,
}

/// The node's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    commands: RwLock<BTreeMap<String, Arc<CommandStats>>>,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub connections_rejected: Counter,
    pub protocol_errors: Counter,
    /// TLS handshakes on the RESP port that failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Ops this node sent to another node.
    pub forwarded: Counter,
    /// Ops another node sent here.
    pub forwarded_in: Counter,
    pub moved: Counter,
    pub tryagain: Counter,
}

/// Most distinct command names tracked; unknown names share one entry, so
/// a client sending random names cannot grow the map.
const MAX_TRACKED_COMMANDS: usize = 256;

impl Metrics {
    /// The stats of command `name` (lower case).
    pub fn command(&self, name: &str) -> Arc<CommandStats> {
        if let Some(stats) = self
            .commands
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Arc::clone(stats);
        }
        let mut commands = self.commands.write().unwrap_or_else(|p| p.into_inner());
        let key = if commands.len() >= MAX_TRACKED_COMMANDS {
            "other"
        } else {
            name
        };
        Arc::clone(commands.entry(key.to_owned()).or_default())
    }

    /// Total calls per command, for INFO commandstats.
    pub fn command_calls(&self) -> Vec<(String, u64, u64)> {
        self.commands
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, s)| (name.clone(), s.calls.get(), s.latency.count()))
            .collect()
    }

    /// Prometheus text for the server's own metrics.
    pub fn render(&self, out: &mut String) {
        let commands = self.commands.read().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP cairn_commands_total Commands processed, by command.\n");
        out.push_str("# TYPE cairn_commands_total counter\n");
        for (name, stats) in commands.iter() {
            let _ = writeln!(
                out,
                "cairn_commands_total{{command=\"{name}\"}} {}",
                stats.calls.get()
            );
        }
        out.push_str("# HELP cairn_command_errors_total Error replies, by command.\n");
        out.push_str("# TYPE cairn_command_errors_total counter\n");
        for (name, stats) in commands.iter() {
            let _ = writeln!(
                out,
                "cairn_command_errors_total{{command=\"{name}\"}} {}",
                stats.errors.get()
            );
        }
        out.push_str("# HELP cairn_command_duration_seconds Command latency, by command.\n");
        out.push_str("# TYPE cairn_command_duration_seconds histogram\n");
        for (name, stats) in commands.iter() {
            stats.latency.render(
                out,
                "cairn_command_duration_seconds",
                &format!("command=\"{name}\","),
            );
        }
        let simple: [(&str, &str, &str, u64); 9] = [
            (
                "cairn_connections",
                "gauge",
                "Open client connections.",
                self.connections.get(),
            ),
            (
                "cairn_connections_total",
                "counter",
                "Client connections accepted.",
                self.connections_total.get(),
            ),
            (
                "cairn_connections_rejected_total",
                "counter",
                "Client connections refused (max_clients).",
                self.connections_rejected.get(),
            ),
            (
                "cairn_protocol_errors_total",
                "counter",
                "Connections closed for malformed input.",
                self.protocol_errors.get(),
            ),
            (
                "cairn_tls_handshake_failures_total",
                "counter",
                "TLS handshakes on the RESP port that failed or timed out.",
                self.tls_handshake_failures.get(),
            ),
            (
                "cairn_forwarded_total",
                "counter",
                "Operations proxied to another node.",
                self.forwarded.get(),
            ),
            (
                "cairn_forwarded_in_total",
                "counter",
                "Operations proxied here by another node.",
                self.forwarded_in.get(),
            ),
            (
                "cairn_moved_total",
                "counter",
                "MOVED redirections sent.",
                self.moved.get(),
            ),
            (
                "cairn_tryagain_total",
                "counter",
                "TRYAGAIN replies sent.",
                self.tryagain.get(),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        let get = m.command("get");
        get.calls.inc();
        get.latency.observe(Duration::from_micros(70));
        get.latency.observe(Duration::from_millis(3));
        m.connections.inc();
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("cairn_commands_total{command=\"get\"} 1"));
        assert!(
            out.contains("cairn_command_duration_seconds_bucket{command=\"get\",le=\"0.0001\"} 1")
        );
        assert!(
            out.contains("cairn_command_duration_seconds_bucket{command=\"get\",le=\"0.005\"} 2")
        );
        assert!(out.contains("cairn_command_duration_seconds_count{command=\"get\"} 2"));
        assert!(out.contains("cairn_connections 1"));
    }

    #[test]
    fn command_names_are_bounded() {
        let m = Metrics::default();
        for i in 0..1_000 {
            m.command(&format!("junk{i}")).calls.inc();
        }
        assert!(m.command_calls().len() <= MAX_TRACKED_COMMANDS + 1);
    }
}
