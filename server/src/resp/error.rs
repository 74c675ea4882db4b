//! What can be wrong with bytes a peer sent, where, and how Redis says it.

use std::fmt;

/// A malformed or over-limit frame. Offsets count bytes from the start of
/// the buffer handed to the decoder (the start of the frame being decoded).
///
/// After an error the connection's byte stream has no reliable frame
/// boundary left: reply with [`ProtocolError::to_redis_error`] and close, as
/// Redis does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame started with a byte that is no RESP type.
    UnknownType { offset: usize, byte: u8 },
    /// A request's multibulk held something other than a bulk string.
    UnexpectedType {
        offset: usize,
        expected: u8,
        got: u8,
    },
    /// A RESP line (length header, simple string, integer, ...) ran past
    /// `max_inline_bytes` without its CRLF. `type_byte` is the line's type.
    LineTooLong {
        offset: usize,
        type_byte: u8,
        max_bytes: usize,
    },
    /// An inline request line ran past `max_inline_bytes` without its newline.
    InlineTooLong { offset: usize, max_bytes: usize },
    /// A CR not followed by LF, a bare LF inside a line, or bulk data not
    /// followed by CRLF. `offset` is the byte that should have been CR or LF.
    MissingCrlf { offset: usize },
    /// An aggregate's count was not a number, or negative where no null is
    /// allowed.
    InvalidMultibulkLength { offset: usize },
    /// An aggregate's count exceeded `max_array_len`.
    MultibulkTooLong { offset: usize, len: u64, max: usize },
    /// A bulk length was not a number, or negative where no null is allowed.
    InvalidBulkLength { offset: usize },
    /// A bulk length exceeded `max_bulk_bytes`.
    BulkTooLong {
        offset: usize,
        len: u64,
        max_bytes: usize,
    },
    /// An integer (`:`) line was not a 64-bit signed decimal.
    InvalidInteger { offset: usize },
    /// A null, boolean, double, big number or verbatim string had a body
    /// its type does not allow. `type_byte` names the type.
    InvalidValue { offset: usize, type_byte: u8 },
    /// Aggregates nested deeper than `max_depth`.
    TooDeep { offset: usize, max_depth: usize },
    /// An inline request's quotes did not close, or a closing quote was
    /// followed by something other than a space.
    UnbalancedQuotes { offset: usize },
}

impl ProtocolError {
    /// The error reply Redis would send for this input, without the leading
    /// `-` and trailing CRLF: `ERR Protocol error: invalid bulk length`.
    /// Where Redis has no wording (it never checks the CRLF after bulk data,
    /// and never decodes RESP3 from clients) the text follows its style.
    pub fn to_redis_error(&self) -> String {
        let what = match *self {
            ProtocolError::UnknownType { byte, .. } => {
                format!("invalid type byte '{}'", Printable(byte))
            }
            ProtocolError::UnexpectedType { expected, got, .. } => format!(
                "expected '{}', got '{}'",
                Printable(expected),
                Printable(got)
            ),
            ProtocolError::LineTooLong { type_byte, .. } => match type_byte {
                b'*' => "too big mbulk count string".to_owned(),
                b'$' => "too big bulk count string".to_owned(),
                _ => "too big line".to_owned(),
            },
            ProtocolError::InlineTooLong { .. } => "too big inline request".to_owned(),
            ProtocolError::MissingCrlf { .. } => "expected CRLF".to_owned(),
            ProtocolError::InvalidMultibulkLength { .. }
            | ProtocolError::MultibulkTooLong { .. } => "invalid multibulk length".to_owned(),
            ProtocolError::InvalidBulkLength { .. } | ProtocolError::BulkTooLong { .. } => {
                "invalid bulk length".to_owned()
            }
            ProtocolError::InvalidInteger { .. } => "invalid integer".to_owned(),
            ProtocolError::InvalidValue { type_byte, .. } => {
                format!("invalid {} value", type_name(type_byte))
            }
            ProtocolError::TooDeep { .. } => "too deep nesting".to_owned(),
            ProtocolError::UnbalancedQuotes { .. } => "unbalanced quotes in request".to_owned(),
        };
        format!("ERR Protocol error: {what}")
    }

    /// The byte offset the error was found at.
    pub fn offset(&self) -> usize {
        match *self {
            ProtocolError::UnknownType { offset, .. }
            | ProtocolError::UnexpectedType { offset, .. }
            | ProtocolError::LineTooLong { offset, .. }
            | ProtocolError::InlineTooLong { offset, .. }
            | ProtocolError::MissingCrlf { offset }
            | ProtocolError::InvalidMultibulkLength { offset }
            | ProtocolError::MultibulkTooLong { offset, .. }
            | ProtocolError::InvalidBulkLength { offset }
            | ProtocolError::BulkTooLong { offset, .. }
            | ProtocolError::InvalidInteger { offset }
            | ProtocolError::InvalidValue { offset, .. }
            | ProtocolError::TooDeep { offset, .. }
            | ProtocolError::UnbalancedQuotes { offset } => offset,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.to_redis_error(), self.offset())
    }
}

impl std::error::Error for ProtocolError {}

fn type_name(type_byte: u8) -> &'static str {
    match type_byte {
        b'_' => "null",
        b'#' => "boolean",
        b',' => "double",
        b'(' => "big number",
        b'=' => "verbatim string",
        _ => "RESP",
    }
}

/// A byte shown as itself when it is printable ASCII, else as `\xNN`, so an
/// error reply stays one clean line whatever the peer sent.
struct Printable(u8);

impl fmt::Display for Printable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "{}", char::from(self.0))
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}
