//! `hash64`: the 64-bit hash of bytes behind every table's bloom filter.
//!
//! Its output decides which filter bits a key sets, so it is part of the
//! table format (do not change: on disk). It is an xxh64-style mix written
//! out here rather than taken from a crate, so no dependency upgrade can
//! silently change it; `hash64_output_is_pinned` fails if it ever does.
//!
//! Algorithm (all arithmetic wrapping, words little endian):
//!
//! ```text
//! h = P3 ^ (len * P1)
//! for each full 8-byte word w:   h = rotl(h ^ round(w), 27) * P1 + P4
//! if 1..=7 bytes remain:         t = remaining bytes zero-padded to a word
//!                                h = rotl(h ^ round(t), 27) * P1 + P4
//! round(w) = rotl(w * P2, 31) * P1
//! finish:  h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
//! ```
//!
//! The length is mixed in first, so zero padding of the tail is unambiguous.

#![cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "used by the memtable flush, version set and DB read path being wired in concurrently; remove once they call it"
    )
)]

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;

fn round(w: u64) -> u64 {
    w.wrapping_mul(P2).rotate_left(31).wrapping_mul(P1)
}

fn mix(h: u64, w: u64) -> u64 {
    (h ^ round(w))
        .rotate_left(27)
        .wrapping_mul(P1)
        .wrapping_add(P4)
}

/// Little-endian word from up to 8 bytes (zero padded); never panics.
fn le_word(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// The 64-bit hash of `data` (do not change: on disk, in bloom filters).
pub(crate) fn hash64(data: &[u8]) -> u64 {
    let mut h = P3 ^ (data.len() as u64).wrapping_mul(P1);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        h = mix(h, le_word(w));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        h = mix(h, le_word(tail));
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash64_output_is_pinned() {
        // The hash is on disk (bloom filters): these values must never change.
        let got: Vec<u64> = [&b""[..], b"a", b"cairn", b"12345678", b"123456789abcdefgh"]
            .iter()
            .map(|d| hash64(d))
            .collect();
        assert_eq!(got, PINNED);
    }

    #[test]
    fn hash64_separates_zero_padding_and_single_bit_flips() {
        // Tails that differ only by trailing zeros, and one-bit flips, hash apart.
        assert_ne!(hash64(b"ab"), hash64(b"ab\0"));
        assert_ne!(hash64(b""), hash64(b"\0"));
        let base = hash64(b"user-key-0001");
        for i in 0..13 * 8 {
            let mut k = b"user-key-0001".to_vec();
            k[i / 8] ^= 1 << (i % 8);
            assert_ne!(hash64(&k), base, "bit {i}");
        }
    }

    const PINNED: [u64; 5] = [
        15610338416011052929,
        5292686818495586296,
        15861782949033898220,
        9316592084111927025,
        4527995782719584307,
    ];
}

/// A fast `Hasher` for the caches' keys: file numbers and block offsets,
/// which no user chooses, so SipHash's resistance to chosen-key flooding
/// buys nothing there and costs two full hashes per block lookup. Words are
/// folded with a multiply, and `finish` applies murmur3's 64-bit finalizer
/// so every output bit depends on every input bit: block offsets are
/// multiples of 4 KiB, and a bare multiply would leave the low bits (which
/// the hash table indexes by) all zero.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            if let Some(dst) = word.get_mut(..chunk.len()) {
                dst.copy_from_slice(chunk);
            }
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// `BuildHasher` for [`IntHasher`].
pub(crate) type IntHashBuilder = std::hash::BuildHasherDefault<IntHasher>;

#[cfg(test)]
mod int_hasher_tests {
    use super::IntHashBuilder;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn block_offsets_spread_over_low_bits() {
        // Offsets that are multiples of 4 KiB must not collide in the low
        // bits a hash table indexes by.
        let b = IntHashBuilder::default();
        let buckets: HashSet<u64> = (0..1024u64)
            .map(|i| b.hash_one((7u64, i * 4096)) & 1023)
            .collect();
        assert!(
            buckets.len() > 600,
            "only {} of 1024 buckets used",
            buckets.len()
        );
    }
}
