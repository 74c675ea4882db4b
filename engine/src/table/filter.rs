//! The table's bloom filter over user keys. Layout (do not change: on disk):
//!
//! ```text
//! filter = bits (num_bytes bytes) | k u8
//! num_bytes = ceil(max(num_keys * bits_per_key, 64) / 8), num_bits = 8 * num_bytes
//! ```
//!
//! Bit `i` is bit `i % 8` (least significant first) of byte `i / 8`. A key
//! sets `k` bits by double hashing from `h = util::hash::hash64(user_key)`:
//!
//! ```text
//! delta = rotate_right(h, 21)
//! repeat k times: set bit (h % num_bits); h = h + delta (wrapping)
//! ```
//!
//! `k = clamp(floor(bits_per_key * 0.69), 1, 30)` (0.69 ~ ln 2 minimises
//! false positives). A reader rejects `k` outside 1..=30 as corruption.
//! The filter covers user keys, not internal keys, so one probe answers
//! for every version of a key.

use crate::util::hash::hash64;

/// Largest `k` a filter may use (reading a larger one is corruption).
pub(crate) const MAX_PROBES: u8 = 30;
/// Fewest bits in a filter, so tiny tables are not all false positives.
const MIN_BITS: usize = 64;

/// Collects key hashes while a table is built. Holds 8 bytes per distinct
/// consecutive user key until `finish` (a 64 MiB table of 100-byte entries
/// holds ~5 MiB here).
pub(crate) struct FilterBuilder {
    bits_per_key: usize,
    hashes: Vec<u64>,
}

impl FilterBuilder {
    /// REQUIRES: `bits_per_key > 0` (0 means the table has no filter).
    pub(crate) fn new(bits_per_key: usize) -> Self {
        debug_assert!(bits_per_key > 0);
        FilterBuilder {
            bits_per_key: bits_per_key.max(1),
            hashes: Vec::new(),
        }
    }

    /// Adds a user key. Consecutive versions of one key add it once.
    pub(crate) fn add_key(&mut self, user_key: &[u8]) {
        let h = hash64(user_key);
        if self.hashes.last() != Some(&h) {
            self.hashes.push(h);
        }
    }

    pub(crate) fn finish(&self) -> Vec<u8> {
        let bits = self
            .hashes
            .len()
            .saturating_mul(self.bits_per_key)
            .max(MIN_BITS);
        let num_bytes = bits.div_ceil(8);
        let num_bits = (num_bytes * 8) as u64;
        let k = (self.bits_per_key * 69 / 100).clamp(1, usize::from(MAX_PROBES)) as u8;
        let mut out = vec![0u8; num_bytes + 1];
        for &h in &self.hashes {
            for bit in probes(h, k, num_bits) {
                if let Some(byte) = out.get_mut((bit / 8) as usize) {
                    *byte |= 1 << (bit % 8);
                }
            }
        }
        if let Some(last) = out.last_mut() {
            *last = k;
        }
        out
    }
}

fn probes(mut h: u64, k: u8, num_bits: u64) -> impl Iterator<Item = u64> {
    let delta = h.rotate_right(21);
    (0..k).map(move |_| {
        let bit = h % num_bits;
        h = h.wrapping_add(delta);
        bit
    })
}

/// Checks a filter read from disk; `Err` names what is wrong.
pub(crate) fn validate(filter: &[u8]) -> Result<(), &'static str> {
    match filter.split_last() {
        Some((&k, bits)) if !bits.is_empty() && (1..=MAX_PROBES).contains(&k) => Ok(()),
        Some(_) => Err("bloom filter has no bits or a probe count outside 1..=30"),
        None => Err("bloom filter is empty"),
    }
}

/// False only if `user_key` was certainly not added. REQUIRES: `filter`
/// passed `validate` (an invalid one answers true, never a false negative).
pub(crate) fn may_contain(filter: &[u8], user_key: &[u8]) -> bool {
    let Some((&k, bits)) = filter.split_last() else {
        return true;
    };
    if bits.is_empty() || k == 0 || k > MAX_PROBES {
        return true;
    }
    let num_bits = (bits.len() * 8) as u64;
    probes(hash64(user_key), k, num_bits).all(|bit| {
        bits.get((bit / 8) as usize)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_about_one_percent_false_positives_and_no_false_negatives() {
        // 10 bits/key on 10k keys: every added key matches, ~1% of others do.
        let mut b = FilterBuilder::new(10);
        for i in 0..10_000u32 {
            b.add_key(format!("user-key-{i}").as_bytes());
        }
        let f = b.finish();
        assert_eq!(validate(&f), Ok(()));
        assert_eq!(f.len(), 10_000 * 10 / 8 + 1);
        assert_eq!(f.last(), Some(&6));
        for i in 0..10_000u32 {
            assert!(
                may_contain(&f, format!("user-key-{i}").as_bytes()),
                "false negative {i}"
            );
        }
        let fp = (0..100_000u32)
            .filter(|i| may_contain(&f, format!("absent-{i}").as_bytes()))
            .count();
        let rate = fp as f64 / 100_000.0;
        assert!(rate < 0.02, "false-positive rate {rate}");
    }

    #[test]
    fn empty_filter_rejects_everything_and_bad_filters_fail_validation() {
        // A table with no keys has a valid all-zero filter; hostile k is caught.
        let f = FilterBuilder::new(10).finish();
        assert_eq!(f.len(), 9);
        assert!(!may_contain(&f, b"x"));
        assert!(validate(&[]).is_err());
        assert!(validate(&[6]).is_err());
        assert!(validate(&[0, 0]).is_err());
        assert!(validate(&[0, 31]).is_err());
        assert!(may_contain(&[0, 31], b"x"));
    }
}
