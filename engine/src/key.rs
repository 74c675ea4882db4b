//! Internal keys: how MVCC versions of one user key sort and are stored.
//!
//! Layout (do not change: on disk in every table and in the WAL's replay):
//!
//! ```text
//! internal key = user_key ++ trailer
//! trailer      = u64 big endian of !((seq << 8) | kind)
//! ```
//!
//! The trailer is inverted so that, for one user key, newer sequence numbers
//! sort first when the trailer bytes are compared bytewise. Internal keys are
//! ordered by [`compare_internal`]: user key ascending (bytewise), then trailer
//! ascending, i.e. sequence number descending. A plain bytewise compare of
//! whole internal keys would be wrong ("a"+trailer vs "ab"), so every ordered
//! structure goes through `compare_internal`.

use std::cmp::Ordering;

/// Sequence numbers are 56 bits: the low byte of the packed trailer is the kind.
pub(crate) const MAX_SEQUENCE: u64 = (1 << 56) - 1;

/// Bytes in the trailer appended to every user key.
pub(crate) const TRAILER_LEN: usize = 8;

/// What an entry in the engine means. The numeric values are written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum ValueKind {
    /// A point tombstone (do not change: on disk).
    Delete = 0,
    /// A value (do not change: on disk).
    Value = 1,
    /// A range tombstone `[key, value)` in a write batch (do not change: on
    /// disk). Range tombstones never appear as point entries in tables.
    RangeDelete = 2,
}

impl ValueKind {
    pub(crate) fn from_u8(b: u8) -> Option<ValueKind> {
        match b {
            0 => Some(ValueKind::Delete),
            1 => Some(ValueKind::Value),
            2 => Some(ValueKind::RangeDelete),
            _ => None,
        }
    }
}

/// The kind used in seek targets: the largest, so a lookup key sorts before
/// every real entry with the same user key and sequence number.
const KIND_FOR_SEEK: u8 = 0xff;

fn pack(seq: u64, kind: u8) -> u64 {
    debug_assert!(seq <= MAX_SEQUENCE);
    !((seq << 8) | u64::from(kind))
}

/// Appends the internal key for `(user_key, seq, kind)` to `dst`.
pub(crate) fn append_internal_key(dst: &mut Vec<u8>, user_key: &[u8], seq: u64, kind: ValueKind) {
    dst.extend_from_slice(user_key);
    dst.extend_from_slice(&encode_trailer(seq, kind));
}

/// The 8 bytes an internal key ends with: sequence number and kind.
pub(crate) fn encode_trailer(seq: u64, kind: ValueKind) -> [u8; TRAILER_LEN] {
    pack(seq, kind as u8).to_be_bytes()
}

/// The trailer of `lookup_key(_, seq)`.
pub(crate) fn lookup_trailer(seq: u64) -> [u8; TRAILER_LEN] {
    pack(seq, KIND_FOR_SEEK).to_be_bytes()
}

pub(crate) fn make_internal_key(user_key: &[u8], seq: u64, kind: ValueKind) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    append_internal_key(&mut k, user_key, seq, kind);
    k
}

/// The key to seek to when looking up `user_key` as of snapshot `seq`: it sorts
/// before every entry of `user_key` with a sequence number `<= seq` and after
/// every entry with a larger one.
pub(crate) fn lookup_key(user_key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    k.extend_from_slice(user_key);
    k.extend_from_slice(&lookup_trailer(seq));
    k
}

/// An internal key split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParsedKey<'a> {
    pub user_key: &'a [u8],
    pub seq: u64,
    pub kind: ValueKind,
}

/// Splits an internal key; `None` if it is too short or has an unknown kind
/// (callers report that as corruption with file and offset).
pub(crate) fn parse_internal_key(ikey: &[u8]) -> Option<ParsedKey<'_>> {
    let split = ikey.len().checked_sub(TRAILER_LEN)?;
    let (user_key, trailer) = ikey.split_at(split);
    let packed = !u64::from_be_bytes(trailer.try_into().ok()?);
    let kind = ValueKind::from_u8((packed & 0xff) as u8)?;
    Some(ParsedKey {
        user_key,
        seq: packed >> 8,
        kind,
    })
}

/// The user-key part of an internal key. A key shorter than a trailer (only
/// possible with corrupt input) is treated as all user key, so comparisons
/// stay total and never panic.
pub(crate) fn user_key(ikey: &[u8]) -> &[u8] {
    match ikey.len().checked_sub(TRAILER_LEN) {
        Some(split) => ikey.get(..split).unwrap_or(ikey),
        None => ikey,
    }
}

fn trailer(ikey: &[u8]) -> &[u8] {
    match ikey.len().checked_sub(TRAILER_LEN) {
        Some(split) => ikey.get(split..).unwrap_or(&[]),
        None => &[],
    }
}

/// The total order of internal keys: user key ascending, then sequence
/// number descending (then kind descending).
pub(crate) fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    user_key(a)
        .cmp(user_key(b))
        .then_with(|| trailer(a).cmp(trailer(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_sort_first_within_a_user_key() {
        // The MVCC order every iterator relies on.
        let old = make_internal_key(b"k", 5, ValueKind::Value);
        let new = make_internal_key(b"k", 9, ValueKind::Delete);
        assert_eq!(compare_internal(&new, &old), Ordering::Less);
    }

    #[test]
    fn user_key_prefix_sorts_before_longer_key() {
        // "a"+trailer must sort before "ab"+trailer whatever the trailer bytes.
        let a = make_internal_key(b"a", 1, ValueKind::Value);
        let ab = make_internal_key(b"ab", MAX_SEQUENCE, ValueKind::Value);
        assert_eq!(compare_internal(&a, &ab), Ordering::Less);
    }

    #[test]
    fn lookup_key_lands_between_visible_and_future_versions() {
        // A seek to the lookup key skips versions newer than the snapshot.
        let lk = lookup_key(b"k", 7);
        let future = make_internal_key(b"k", 8, ValueKind::Value);
        let visible = make_internal_key(b"k", 7, ValueKind::Value);
        assert_eq!(compare_internal(&future, &lk), Ordering::Less);
        assert_eq!(compare_internal(&lk, &visible), Ordering::Less);
    }

    #[test]
    fn parse_rejects_short_keys_and_unknown_kinds() {
        // Corrupt bytes give None, never a panic.
        assert!(parse_internal_key(b"short").is_none());
        let mut k = make_internal_key(b"k", 1, ValueKind::Value);
        let last = k.len() - 1;
        k[last] = !7u8; // kind 7 after inversion
        assert!(parse_internal_key(&k).is_none());
        let ok = make_internal_key(b"key", 42, ValueKind::Delete);
        let p = parse_internal_key(&ok).map(|p| (p.user_key.to_vec(), p.seq, p.kind));
        assert_eq!(p, Some((b"key".to_vec(), 42, ValueKind::Delete)));
    }
}
