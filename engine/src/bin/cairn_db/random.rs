//! Deterministic randomness for benchmarks: splitmix64 keys and db_bench's
//! half-compressible values.

/// splitmix64 (Steele, Lea, Flood 2014): one add and two multiplies per
/// number, passes BigCrush, and any seed (even 0) is fine.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` by multiply-shift (Lemire); the bias, below
    /// n / 2^64, does not matter here. REQUIRES: n > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Bytes of the value pool: values are windows into it, as in db_bench.
const POOL_BYTES_MIN: usize = 1 << 20;
/// db_bench builds values from 100-byte pieces, each 50 random printable
/// bytes repeated: lz4 halves them, as real values often compress.
const PIECE_BYTES: usize = 100;
const PIECE_RANDOM_BYTES: usize = 50;

/// A pool of half-compressible bytes to cut values from.
pub fn value_pool(value_bytes: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let len = POOL_BYTES_MIN.max(value_bytes);
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

/// Successive values from a pool, each starting where the last ended.
#[derive(Debug)]
pub struct Values<'a> {
    pool: &'a [u8],
    pos: usize,
}

impl<'a> Values<'a> {
    pub fn new(pool: &'a [u8], start: usize) -> Self {
        Values {
            pool,
            pos: start % pool.len().max(1),
        }
    }

    /// The next `len` bytes. REQUIRES: `len <= pool.len()` (the pool is
    /// built at least one value long).
    pub fn next(&mut self, len: usize) -> &'a [u8] {
        if self.pos + len > self.pool.len() {
            self.pos = 0;
        }
        let v = self.pool.get(self.pos..self.pos + len).unwrap_or(self.pool);
        self.pos += len;
        v
    }
}

/// Writes `n` as a zero-padded decimal filling `key` (db_bench's `%016d`).
/// REQUIRES: `n` has at most `key.len()` digits (checked when the
/// benchmark is configured), else the high digits are dropped.
pub fn write_key(key: &mut [u8], mut n: u64) {
    for b in key.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Decimal digits of `n`.
pub fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_decimals() {
        let mut k = [0u8; 16];
        write_key(&mut k, 42);
        assert_eq!(&k, b"0000000000000042");
        assert_eq!(digits(0), 1);
        assert_eq!(digits(999_999), 6);
        assert_eq!(digits(1_000_000), 7);
    }

    #[test]
    fn values_compress_about_half() {
        // The pool repeats each 50 random bytes twice; check the structure
        // rather than an lz4 ratio, which the tool does not link directly.
        let pool = value_pool(100, &mut SplitMix64::new(301));
        assert_eq!(pool.len(), 1 << 20);
        assert_eq!(pool[..50], pool[50..100]);
        assert!(pool.iter().all(|b| (b' '..=b'~').contains(b)));
        let mut values = Values::new(&pool, pool.len() - 10);
        assert_eq!(values.next(100).len(), 100);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(0);
        assert!((0..10_000).all(|_| r.below(7) < 7));
    }
}
