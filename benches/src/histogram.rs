//! A log-linear latency histogram (copied from `cairn-db bench`: 8 sub-buckets
//! per power of two of nanoseconds, so percentiles are within 12.5%).

use std::time::Duration;

/// log2 of the sub-buckets per power of two.
const SUB_BITS: u32 = 3;
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// 8 exact buckets for 0..8, then 8 per power of two from 2^3 to 2^63.
const BUCKETS: usize = (65 - SUB_BITS as usize) << SUB_BITS;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    max_nanos: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            max_nanos: 0,
        }
    }
}

/// The bucket holding `v`.
fn bucket_of(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB_BUCKETS - 1);
    (((exp - SUB_BITS + 1) as u64) << SUB_BITS | sub) as usize
}

/// The smallest and largest value in bucket `i`.
fn bucket_bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return (i, i);
    }
    let exp = (i >> SUB_BITS) + u64::from(SUB_BITS) - 1;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    let low = (SUB_BUCKETS + (i & (SUB_BUCKETS - 1))) * width;
    (low, low.saturating_add(width - 1))
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if let Some(c) = self.counts.get_mut(bucket_of(nanos)) {
            *c += 1;
        }
        self.count += 1;
        self.max_nanos = self.max_nanos.max(nanos);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.max_nanos = self.max_nanos.max(other.max_nanos);
    }

    /// The value at quantile `q` (0..=1) in microseconds: the midpoint of
    /// its bucket, never above the largest value seen.
    pub fn percentile_micros(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bucket_bounds(i);
                let mid = low + (high - low) / 2;
                return mid.min(self.max_nanos) as f64 / 1000.0;
            }
        }
        self.max_nanos as f64 / 1000.0
    }
}
