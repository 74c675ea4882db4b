//! Keys, values and key orders, the same for every engine.
//!
//! Keys are `KEY_BYTES` zero-padded decimals in `[0, num)` (db_bench's
//! convention), so key order is numeric order. Values are cut from a pool
//! of half-compressible bytes: each 100-byte piece is 50 random printable
//! bytes repeated, so lz4 halves them (db_bench's `compression_ratio` 0.5).

/// Key length: 16 bytes, as in db_bench.
pub const KEY_BYTES: usize = 16;

/// The SplitMix64 generator: fast, seedable, good enough to pick keys.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut g = SplitMix64(seed);
        // One step so that nearby seeds start far apart.
        g.0 = g.next_u64();
        g
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (Lemire's multiply-shift; `n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Writes `n` as a zero-padded decimal filling `key`.
pub fn write_key(key: &mut [u8; KEY_BYTES], mut n: u64) {
    for b in key.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The key of number `n`.
pub fn key_of(n: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    write_key(&mut k, n);
    k
}

/// A pseudo-random permutation of `[0, num)` without a table: an
/// invertible mix on the enclosing power of two, applied again until the
/// result falls below `num` (cycle walking; under two steps on average).
/// `fillrandom` and `deleterandom` use it to touch every key exactly once
/// in random order.
#[derive(Debug, Clone, Copy)]
pub struct Permutation {
    num: u64,
    bits: u32,
    seed: u64,
}

impl Permutation {
    /// A permutation of `[0, num)` chosen by `seed`.
    pub fn new(num: u64, seed: u64) -> Self {
        let bits = (64 - num.saturating_sub(1).leading_zeros()).max(2);
        Permutation { num, bits, seed }
    }

    fn mix(&self, mut x: u64) -> u64 {
        let mask = if self.bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        let half = self.bits / 2;
        for round in 0..3u64 {
            // Each step is a bijection on `bits`-bit numbers.
            x = (x.wrapping_add(self.seed.wrapping_add(round))) & mask;
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15 | 1) & mask;
            x ^= x >> half;
        }
        x
    }

    /// The `i`-th element (`i < num`).
    pub fn at(&self, i: u64) -> u64 {
        let mut x = self.mix(i);
        while x >= self.num {
            x = self.mix(x);
        }
        x
    }
}

/// The smallest pool: large enough that values do not repeat in a block.
const POOL_BYTES_MIN: usize = 1 << 20;
const PIECE_BYTES: usize = 100;
const PIECE_RANDOM_BYTES: usize = 50;

/// A pool of half-compressible printable bytes at least `value_bytes` long.
pub fn value_pool(value_bytes: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let len = POOL_BYTES_MIN.max(value_bytes * 2);
    let mut pool = Vec::with_capacity(len + PIECE_BYTES);
    while pool.len() < len {
        let piece: Vec<u8> = (0..PIECE_RANDOM_BYTES)
            .map(|_| b' ' + rng.below(95) as u8)
            .collect();
        pool.extend(piece.iter().cycle().take(PIECE_BYTES));
    }
    pool.truncate(len);
    pool
}

/// Successive values of one length cut from a pool.
#[derive(Debug)]
pub struct Values<'a> {
    pool: &'a [u8],
    len: usize,
    pos: usize,
}

impl<'a> Values<'a> {
    /// Values of `len` bytes from `pool`, starting near `start`.
    /// REQUIRES: `len <= pool.len()`.
    pub fn new(pool: &'a [u8], len: usize, start: usize) -> Self {
        assert!(len <= pool.len(), "value longer than its pool");
        Values {
            pool,
            len,
            pos: start % (pool.len() - len + 1),
        }
    }

    /// The next value.
    pub fn next_value(&mut self) -> &'a [u8] {
        if self.pos + self.len > self.pool.len() {
            self.pos = 0;
        }
        let v = self
            .pool
            .get(self.pos..self.pos + self.len)
            .unwrap_or(self.pool);
        self.pos += self.len;
        v
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn permutation_touches_every_key_once() {
        // Pins that fillrandom writes each key exactly once, for sizes on
        // and off a power of two.
        for num in [1u64, 2, 3, 7, 64, 1000, 4097] {
            let p = Permutation::new(num, 42);
            let mut seen = vec![false; num as usize];
            for i in 0..num {
                let x = p.at(i) as usize;
                assert!(!seen[x], "num {num}: {x} twice");
                seen[x] = true;
            }
        }
    }

    #[test]
    fn permutation_is_not_the_identity() {
        // Pins that fillrandom is random order, not sequential.
        let p = Permutation::new(1_000_000, 7);
        let in_place = (0..1000).filter(|&i| p.at(i) == i).count();
        assert!(in_place < 10, "{in_place}");
    }

    #[test]
    fn keys_are_zero_padded_decimals() {
        // Pins key order = numeric order.
        assert_eq!(&key_of(42), b"0000000000000042");
    }

    #[test]
    fn values_have_the_asked_length_and_repeat_halves() {
        // Pins the half-compressible value shape.
        let pool = value_pool(100, 301);
        assert_eq!(pool[..50], pool[50..100]);
        let mut v = Values::new(&pool, 1024, pool.len() - 10);
        assert_eq!(v.next_value().len(), 1024);
        assert_eq!(v.next_value().len(), 1024);
    }
}
