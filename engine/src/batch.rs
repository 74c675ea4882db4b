//! `WriteBatch`: an atomic group of updates, and its encoding, which is also
//! the payload of a WAL record.
//!
//! Layout (do not change: on disk in the WAL):
//!
//! ```text
//! batch  = base_seq u64 LE | count u32 LE | entry*count
//! entry  = kind u8 | varint key_len | key | rest
//! rest   = Value:       varint value_len | value
//!          Delete:      (nothing)
//!          RangeDelete: varint end_len | end          (deletes [key, end))
//! ```
//!
//! Entry `i` of a batch gets sequence number `base_seq + i`, so every update,
//! including each range delete, has its own sequence number. Group commit
//! concatenates the entries of several batches under one header.

use crate::error::{Error, Result};
use crate::key::{MAX_SEQUENCE, ValueKind};
use crate::util::coding::{Decoder, put_length_prefixed};

/// Bytes of the header in front of the entries.
pub(crate) const BATCH_HEADER_LEN: usize = 12;

/// An atomic group of puts, deletes and range deletes.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteBatch {
    rep: Vec<u8>,
    count: u32,
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch::new()
    }
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("count", &self.count)
            .field("bytes", &self.rep.len())
            .finish()
    }
}

impl WriteBatch {
    pub fn new() -> Self {
        WriteBatch {
            rep: vec![0; BATCH_HEADER_LEN],
            count: 0,
        }
    }

    /// An empty batch with room for `bytes` of entries, so a batch whose
    /// size is known (one put) is built without reallocating.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut rep = Vec::with_capacity(BATCH_HEADER_LEN.saturating_add(bytes));
        rep.resize(BATCH_HEADER_LEN, 0);
        WriteBatch { rep, count: 0 }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.rep.push(ValueKind::Value as u8);
        put_length_prefixed(&mut self.rep, key.as_ref());
        put_length_prefixed(&mut self.rep, value.as_ref());
        self.bump_count(1);
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.rep.push(ValueKind::Delete as u8);
        put_length_prefixed(&mut self.rep, key.as_ref());
        self.bump_count(1);
    }

    /// Deletes every key in `[start, end)`. An empty range (start >= end) is a
    /// no-op at read time but still takes a sequence number.
    pub fn delete_range(&mut self, start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) {
        self.rep.push(ValueKind::RangeDelete as u8);
        put_length_prefixed(&mut self.rep, start.as_ref());
        put_length_prefixed(&mut self.rep, end.as_ref());
        self.bump_count(1);
    }

    /// Number of updates in the batch.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size in bytes (what the WAL record will carry).
    pub fn size_bytes(&self) -> usize {
        self.rep.len()
    }

    pub fn clear(&mut self) {
        self.rep.truncate(BATCH_HEADER_LEN);
        self.count = 0;
        self.bump_count(0);
    }

    /// Appends the entries of `other` (used by group commit).
    pub(crate) fn append_entries(&mut self, other: &WriteBatch) {
        self.rep
            .extend_from_slice(other.rep.get(BATCH_HEADER_LEN..).unwrap_or(&[]));
        self.bump_count(other.count);
    }

    /// Keeps the header's count equal to the entries, so the encoding is
    /// always decodable.
    fn bump_count(&mut self, n: u32) {
        self.count += n;
        // In place: this runs once per update on the write path.
        if let Some(field) = self.rep.get_mut(8..BATCH_HEADER_LEN) {
            field.copy_from_slice(&self.count.to_le_bytes());
        }
    }

    /// Stamps the base sequence number into the header.
    pub(crate) fn set_base_seq(&mut self, seq: u64) {
        if let Some(field) = self.rep.get_mut(..8) {
            field.copy_from_slice(&seq.to_le_bytes());
        }
    }

    pub(crate) fn encoded(&self) -> &[u8] {
        &self.rep
    }

    /// Checks every key and value against the configured bounds.
    pub(crate) fn validate(&self, max_key_bytes: usize, max_value_bytes: usize) -> Result<()> {
        for op in BatchOps::new(&self.rep).map_err(Error::InvalidArgument)? {
            let op = op.map_err(Error::InvalidArgument)?;
            if op.key.len() > max_key_bytes {
                return Err(Error::InvalidArgument(format!(
                    "key of {} bytes exceeds max_key_bytes {max_key_bytes}",
                    op.key.len()
                )));
            }
            let value_limit = if op.kind == ValueKind::RangeDelete {
                max_key_bytes
            } else {
                max_value_bytes
            };
            if op.value.len() > value_limit {
                return Err(Error::InvalidArgument(format!(
                    "value of {} bytes exceeds the limit of {value_limit}",
                    op.value.len()
                )));
            }
        }
        Ok(())
    }
}

/// One decoded update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchOp<'a> {
    pub kind: ValueKind,
    pub key: &'a [u8],
    /// The value (Value), the range end (RangeDelete), empty (Delete).
    pub value: &'a [u8],
}

/// Decodes an encoded batch: header, then each entry. Errors are strings the
/// caller wraps with a file and offset (WAL replay) or an argument error.
pub(crate) struct BatchOps<'a> {
    decoder: Decoder<'a>,
    remaining: u32,
    pub base_seq: u64,
}

impl<'a> BatchOps<'a> {
    pub(crate) fn new(rep: &'a [u8]) -> std::result::Result<Self, String> {
        let mut decoder = Decoder::new(rep);
        let base_seq = decoder.fixed64().ok_or("batch shorter than its header")?;
        let count = decoder.fixed32().ok_or("batch shorter than its header")?;
        // Each entry takes at least 2 bytes: a count larger than that is a lie.
        if count as usize > decoder.remaining().len() / 2 {
            return Err(format!(
                "batch count {count} exceeds what its bytes can hold"
            ));
        }
        // Sequence numbers are 56 bits (the internal-key trailer packs the
        // kind below them): a batch from disk claiming more is corrupt, and
        // replaying it would wrap into other keys' trailers.
        let past_last = base_seq.checked_add(u64::from(count));
        if past_last.is_none_or(|end| end > MAX_SEQUENCE + 1) {
            return Err(format!(
                "batch sequence numbers {base_seq} + {count} pass the largest sequence number"
            ));
        }
        Ok(BatchOps {
            decoder,
            remaining: count,
            base_seq,
        })
    }

    /// Entries not decoded yet: all of them before iteration starts.
    pub(crate) fn entries(&self) -> u64 {
        u64::from(self.remaining)
    }

    fn decode_one(&mut self) -> std::result::Result<BatchOp<'a>, String> {
        let at = self.decoder.position();
        let tag = self
            .decoder
            .u8()
            .ok_or_else(|| format!("truncated entry at byte {at}"))?;
        let kind = ValueKind::from_u8(tag)
            .ok_or_else(|| format!("unknown entry kind {tag} at byte {at}"))?;
        let key = self
            .decoder
            .length_prefixed()
            .ok_or_else(|| format!("truncated key at byte {at}"))?;
        let value = match kind {
            ValueKind::Delete => &[][..],
            ValueKind::Value | ValueKind::RangeDelete => self
                .decoder
                .length_prefixed()
                .ok_or_else(|| format!("truncated value at byte {at}"))?,
        };
        Ok(BatchOp { kind, key, value })
    }
}

/// Writers log groups in sequence order (one leader at a time), so the
/// sequence numbers of the batches replayed from the WALs, in file order,
/// never go back. A batch that does would break the order L0 tables and
/// memtables are searched in (newest first): a point lookup could stop at
/// an older version than iteration returns.
pub(crate) fn check_sequence_order(replayed_end: u64, base_seq: u64) -> Result<(), String> {
    if base_seq < replayed_end {
        return Err(format!(
            "batch sequence numbers start at {base_seq}, before the end of the previous \
             batch ({replayed_end}): they must increase"
        ));
    }
    Ok(())
}

impl<'a> Iterator for BatchOps<'a> {
    type Item = std::result::Result<BatchOp<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            if !self.decoder.is_empty() {
                self.decoder = Decoder::new(&[]);
                return Some(Err("trailing bytes after the last entry".to_string()));
            }
            return None;
        }
        self.remaining -= 1;
        let op = self.decode_one();
        if op.is_err() {
            self.remaining = 0;
            self.decoder = Decoder::new(&[]);
        }
        Some(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_roundtrips_every_kind() {
        // Encoding and decoding agree on kinds, keys, values and order.
        let mut b = WriteBatch::new();
        b.put(b"k1", b"v1");
        b.delete(b"k2");
        b.delete_range(b"a", b"z");
        b.set_base_seq(100);
        let ops = BatchOps::new(b.encoded()).unwrap();
        assert_eq!(ops.base_seq, 100);
        let got: Vec<_> = ops.map(|o| o.unwrap()).collect();
        assert_eq!(
            got[0],
            BatchOp {
                kind: ValueKind::Value,
                key: b"k1",
                value: b"v1"
            }
        );
        assert_eq!(
            got[1],
            BatchOp {
                kind: ValueKind::Delete,
                key: b"k2",
                value: b""
            }
        );
        assert_eq!(
            got[2],
            BatchOp {
                kind: ValueKind::RangeDelete,
                key: b"a",
                value: b"z"
            }
        );
    }

    #[test]
    fn group_append_keeps_entries_in_order() {
        // Group commit concatenation yields the writers' entries in order.
        let mut a = WriteBatch::new();
        a.put(b"a", b"1");
        let mut b = WriteBatch::new();
        b.delete(b"b");
        a.append_entries(&b);
        a.set_base_seq(7);
        let keys: Vec<_> = BatchOps::new(a.encoded())
            .unwrap()
            .map(|o| o.unwrap().key.to_vec())
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        // Truncations, unknown kinds and lying counts decode to errors.
        let mut b = WriteBatch::new();
        b.put(b"key", b"value");
        b.set_base_seq(1);
        let rep = b.encoded().to_vec();
        for cut in 0..rep.len() {
            let res: std::result::Result<Vec<_>, _> = match BatchOps::new(&rep[..cut]) {
                Ok(ops) => ops.collect(),
                Err(e) => Err(e),
            };
            assert!(res.is_err(), "cut at {cut} decoded");
        }
        let mut bad = rep.clone();
        bad[BATCH_HEADER_LEN] = 9;
        assert!(BatchOps::new(&bad).unwrap().next().unwrap().is_err());
        let mut lying = rep;
        lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(BatchOps::new(&lying).is_err());
    }

    #[test]
    fn batch_with_sequence_numbers_past_2_pow_56_is_corrupt() {
        // Found by fuzzing (wal_reader): a WAL batch with base_seq near
        // 2^64 reached the memtable and failed the trailer's assertion.
        let mut b = WriteBatch::new();
        b.put(b"k", b"v");
        b.put(b"l", b"w");
        b.set_base_seq(MAX_SEQUENCE - 1);
        assert!(BatchOps::new(b.encoded()).is_ok());
        for base in [MAX_SEQUENCE, MAX_SEQUENCE + 1, u64::MAX - 1, u64::MAX] {
            b.set_base_seq(base);
            assert!(BatchOps::new(b.encoded()).is_err(), "base {base} accepted");
        }
    }

    #[test]
    fn validate_enforces_key_and_value_bounds() {
        // Oversized keys and values are refused before they reach the WAL.
        let mut b = WriteBatch::new();
        b.put(vec![0u8; 11], b"v");
        assert!(b.validate(10, 100).is_err());
        let mut b = WriteBatch::new();
        b.put(b"k", vec![0u8; 101]);
        assert!(b.validate(10, 100).is_err());
        let mut b = WriteBatch::new();
        b.put(b"k", b"v");
        assert!(b.validate(10, 100).is_ok());
    }
}
