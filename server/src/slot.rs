//! Hash slots, exactly as Redis Cluster computes them, and how a user key
//! becomes an engine key.
//!
//! A key's slot is CRC16 (XMODEM) of the key, or of its hash tag (the bytes
//! between the first `{` and the next `}`, when not empty), modulo 16384.
//! In the engine a key lives at `slot u16 BE ++ 'k' ++ key`, so a slot, and
//! a range of slots, is a contiguous key range: a Raft group owning slots
//! `lo..=hi` owns engine keys `[lo BE, (hi+1) BE)`. Beside its keys, each
//! slot range has one bookkeeping key, `lo BE ++ 'c'` (the group's
//! replicated clock, see `app`), which no user key can collide with.

use cairn_replication::KeyRange;

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

/// Highest slot.
pub const MAX_SLOT: u16 = SLOTS - 1;

/// Marks a user key in a slot.
const KEY_TAG: u8 = b'k';

/// Marks the replicated clock of the slot range starting at this slot.
const CLOCK_TAG: u8 = b'c';

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis's
/// `crc16.c`.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, honouring a non-empty `{hash tag}`.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) & MAX_SLOT
}

/// The engine key of `key` in `slot`.
pub fn data_key(slot: u16, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 3);
    out.extend_from_slice(&slot.to_be_bytes());
    out.push(KEY_TAG);
    out.extend_from_slice(key);
    out
}

/// The first engine key of the keys of `slot`; `slot_keys_end` is one past
/// the last.
pub fn slot_keys_start(slot: u16) -> Vec<u8> {
    let mut out = slot.to_be_bytes().to_vec();
    out.push(KEY_TAG);
    out
}

pub fn slot_keys_end(slot: u16) -> Vec<u8> {
    let mut out = slot.to_be_bytes().to_vec();
    out.push(KEY_TAG + 1);
    out
}

/// The user key and slot of an engine data key, or `None` for any other
/// engine key (bookkeeping, replication's own, the cluster map).
pub fn split_data_key(engine_key: &[u8]) -> Option<(u16, &[u8])> {
    let (&[hi, lo, tag], rest) = engine_key.split_first_chunk::<3>()?;
    let slot = u16::from_be_bytes([hi, lo]);
    (slot < SLOTS && tag == KEY_TAG).then_some((slot, rest))
}

/// The engine key holding the replicated clock of the range starting at
/// `first_slot`.
pub fn clock_key(first_slot: u16) -> Vec<u8> {
    let mut out = first_slot.to_be_bytes().to_vec();
    out.push(CLOCK_TAG);
    out
}

/// The engine key range of slots `lo..=hi`.
pub fn slots_key_range(lo: u16, hi: u16) -> KeyRange {
    let end = u32::from(hi) + 1;
    // Slots fit in 14 bits, so `hi + 1` fits in two bytes.
    let end = u16::try_from(end).unwrap_or(u16::MAX);
    KeyRange::new(lo.to_be_bytes().to_vec(), end.to_be_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis_reference() {
        // Redis's crc16.c test vector.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_redis_cluster() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & MAX_SLOT);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") & MAX_SLOT);
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{unclosed"), crc16(b"{unclosed") & MAX_SLOT);
    }

    #[test]
    fn data_keys_sort_by_slot_and_stay_in_the_range() {
        let range = slots_key_range(100, 200);
        for slot in [100, 150, 200] {
            let key = data_key(slot, b"\xff\xff\xffzz");
            assert!(range.contains(&key));
            assert_eq!(split_data_key(&key), Some((slot, &b"\xff\xff\xffzz"[..])));
            assert!(key.as_slice() >= slot_keys_start(slot).as_slice());
            assert!(key.as_slice() < slot_keys_end(slot).as_slice());
        }
        assert!(!range.contains(&data_key(99, b"")));
        assert!(!range.contains(&data_key(201, b"")));
        assert!(range.contains(&clock_key(100)));
        assert_eq!(split_data_key(&clock_key(100)), None);
        let all = slots_key_range(0, MAX_SLOT);
        assert!(all.contains(&data_key(MAX_SLOT, b"\xff")));
        assert!(!all.contains(&[0xFE, b'm']));
    }
}
