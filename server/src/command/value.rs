//! What the engine stores as the value of a key.
//!
//! Layout (see `docs/commands.md`, "Stored values"):
//!
//! ```text
//! type u8 | expire_at_ms u64 LE | payload
//! ```
//!
//! - `type`: 1 = string. Do not change: on disk. New types take new numbers;
//!   a reader that meets a number it does not know refuses the value.
//! - `expire_at_ms`: absolute expiry, milliseconds since the Unix epoch; 0 =
//!   no expiry. A value is gone once `expire_at_ms <= now_ms`.
//! - `payload`: for a string, its bytes, to the end of the value.

use std::fmt;
use std::num::NonZeroU64;

/// Type byte of a string value. Do not change: on disk.
const TYPE_STRING: u8 = 1;
/// Bytes before the payload: the type and the expiry.
const HEADER_BYTES: usize = 1 + 8;

/// A key's value with its expiry, as stored in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// What the key holds.
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; `None` = the key never expires.
    /// Stored as 0 when `None`, which is why 0 itself cannot be an expiry.
    pub expire_at_ms: Option<NonZeroU64>,
}

/// The data a key holds. Only strings so far; lists, hashes and sets will
/// be new variants with new type bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// A binary-safe string (also integers and floats, as their text).
    String(Vec<u8>),
}

/// Why stored bytes are not a [`StoredValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the 9-byte header.
    TooShort { len: usize },
    /// A type byte this version does not know.
    UnknownType { type_byte: u8 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "stored value of {len} bytes is shorter than its {HEADER_BYTES}-byte header"
                )
            }
            Self::UnknownType { type_byte } => write!(f, "unknown stored value type {type_byte}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl StoredValue {
    /// A string value that never expires.
    pub fn string(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Value::String(bytes.into()),
            expire_at_ms: None,
        }
    }

    /// Whether the value still exists at `now_ms`: it has no expiry, or its
    /// expiry is still ahead.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_none_or(|at| at.get() > now_ms)
    }

    /// The bytes the engine stores for this value.
    pub fn encode(&self) -> Vec<u8> {
        let Value::String(payload) = &self.value;
        let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
        out.push(TYPE_STRING);
        let expire = self.expire_at_ms.map_or(0, NonZeroU64::get);
        out.extend_from_slice(&expire.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The expiry of an encoded value, read from its header without copying
    /// the payload (the compaction filter looks at every value it passes).
    pub fn peek_expire_at(bytes: &[u8]) -> Result<Option<NonZeroU64>, DecodeError> {
        let too_short = DecodeError::TooShort { len: bytes.len() };
        let (&type_byte, rest) = bytes.split_first().ok_or(too_short.clone())?;
        let (expire, _) = rest.split_first_chunk::<8>().ok_or(too_short)?;
        if type_byte != TYPE_STRING {
            return Err(DecodeError::UnknownType { type_byte });
        }
        Ok(NonZeroU64::new(u64::from_le_bytes(*expire)))
    }

    /// Reads a value written by [`StoredValue::encode`]. Checked: unknown
    /// types and short input are errors, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let too_short = DecodeError::TooShort { len: bytes.len() };
        let (&type_byte, rest) = bytes.split_first().ok_or(too_short.clone())?;
        let (expire, payload) = rest.split_first_chunk::<8>().ok_or(too_short)?;
        let value = match type_byte {
            TYPE_STRING => Value::String(payload.to_vec()),
            _ => return Err(DecodeError::UnknownType { type_byte }),
        };
        Ok(Self {
            value,
            expire_at_ms: NonZeroU64::new(u64::from_le_bytes(*expire)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The layout is on disk: pin it byte for byte.
    #[test]
    fn encoding_is_type_then_expiry_le_then_payload() {
        let v = StoredValue {
            value: Value::String(b"hi".to_vec()),
            expire_at_ms: NonZeroU64::new(0x0102),
        };
        assert_eq!(v.encode(), [1, 2, 1, 0, 0, 0, 0, 0, 0, b'h', b'i']);
        assert_eq!(StoredValue::decode(&v.encode()), Ok(v));
    }

    // No expiry is stored as 0 and read back as none.
    #[test]
    fn zero_expiry_means_none() {
        let v = StoredValue::string("");
        assert_eq!(v.encode(), [1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(StoredValue::decode(&v.encode()), Ok(v));
    }

    // Short input and unknown types are errors, not panics.
    #[test]
    fn decode_rejects_short_and_unknown() {
        for len in 0..9 {
            let bytes = vec![1; len];
            assert_eq!(
                StoredValue::decode(&bytes),
                Err(DecodeError::TooShort { len })
            );
        }
        let mut bytes = StoredValue::string("x").encode();
        bytes[0] = 2;
        assert_eq!(
            StoredValue::decode(&bytes),
            Err(DecodeError::UnknownType { type_byte: 2 })
        );
    }

    // Expiry is exclusive of the instant: gone at exactly expire_at.
    #[test]
    fn value_is_gone_at_its_expiry() {
        let v = StoredValue {
            value: Value::String(vec![]),
            expire_at_ms: NonZeroU64::new(100),
        };
        assert!(v.is_live(99));
        assert!(!v.is_live(100));
    }
}
