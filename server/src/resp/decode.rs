//! Bytes to [`Frame`]s, a frame at a time, from a buffer that may end
//! anywhere.
//!
//! Wire layout (RESP2 and RESP3; `<n>` is a decimal line, every line ends
//! in CR LF):
//!
//! ```text
//! +<text>          simple string        _                 null
//! -<text>          error                #t | #f           boolean
//! :<i64>           integer              ,<double>         double (also inf, -inf, nan)
//! $<n> <n bytes>   bulk string          (<digits>         big number
//! $-1              null bulk            !<n> <n bytes>    bulk error
//! *<n> <n frames>  array                =<n> <fmt>:<text> verbatim (fmt is 3 bytes)
//! *-1              null array           %<n> <2n frames>  map
//!                                       ~<n> <n frames>   set
//!                                       |<n> <2n frames> <frame>  attribute, then its reply
//!                                       ><n> <n frames>   push
//! ```
//!
//! RESP3's streamed strings and aggregates (`$?`, `*?`) are not accepted:
//! Redis never sends them.
//!
//! Cost: a [`Decoder`] keeps the aggregates it has opened and the elements it
//! has finished, so a frame that arrives in pieces is parsed once in total;
//! only the one unfinished element is looked at again, and for a bulk string
//! that is its header (its length is known, so the body is not scanned until
//! it is all there). The free function [`decode`] starts afresh each call:
//! linear in the frame for one call, but a large aggregate retried on every
//! read costs the square. Servers should hold a `Decoder` per connection.

use super::error::ProtocolError;
use super::frame::Frame;
use super::limits::Limits;
use super::line::{find_line, parse_i64};

/// The shortest frame on the wire (`_\r\n`, `+\r\n`): no aggregate can hold
/// more elements than the buffered bytes divided by this, which bounds what
/// an aggregate header may make us preallocate.
const MIN_FRAME_BYTES: usize = 3;

/// Decodes one frame from the start of `buf`: `Ok(Some((frame, consumed)))`
/// when a whole frame is there, `Ok(None)` when more bytes are needed.
///
/// Starts afresh on every call; see the module doc for when to prefer a
/// [`Decoder`].
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    Decoder::new(*limits).decode(buf)
}

/// A resumable frame decoder for one byte stream.
///
/// Feed it the stream's unconsumed bytes, the same bytes plus whatever
/// arrived since, until it returns a frame and how many bytes it used; then
/// drop those bytes from the front and go on. After an error the stream has
/// no reliable frame boundary left and should be closed.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Aggregates opened but not finished, outermost first.
    stack: Vec<Pending>,
    /// Where the next element starts: bytes before it are already in `stack`.
    pos: usize,
    /// How far the line starting at `pos` has been searched for its CR.
    scanned: usize,
}

#[derive(Debug)]
struct Pending {
    kind: Aggregate,
    /// Elements the header announced (a map's entries count twice, an
    /// attribute's once more for the reply it annotates).
    expected: usize,
    items: Vec<Frame>,
}

#[derive(Debug, Clone, Copy)]
enum Aggregate {
    Array,
    Map,
    Set,
    Attribute,
    Push,
}

/// What one element's worth of parsing found.
enum Step {
    NeedMore,
    Done(Frame, usize),
    Open(Pending, usize),
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            stack: Vec::new(),
            pos: 0,
            scanned: 0,
        }
    }

    /// Decodes the next frame from `buf`, resuming where the previous call
    /// stopped.
    ///
    /// REQUIRES: since the last call that returned a frame or an error (or
    /// since `new`/`reset`), `buf` has only grown at its end.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
        debug_assert!(self.pos <= buf.len(), "REQUIRES: buf only grows");
        let result = self.advance(buf);
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    /// Forgets a partly decoded frame, to start on a fresh buffer.
    pub fn reset(&mut self) {
        self.stack.clear();
        self.pos = 0;
        self.scanned = 0;
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
        loop {
            let (frame, next) = match self.step(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Done(frame, next) => (frame, next),
                Step::Open(pending, next) => {
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(ProtocolError::TooDeep {
                            offset: self.pos,
                            max_depth: self.limits.max_depth,
                        });
                    }
                    if pending.expected > 0 {
                        self.stack.push(pending);
                        self.pos = next;
                        self.scanned = next;
                        continue;
                    }
                    (pending.finish(), next)
                }
            };
            self.pos = next;
            self.scanned = next;
            if let Some(done) = self.complete(frame) {
                return Ok(Some((done, next)));
            }
        }
    }

    /// Hands a finished element to the aggregate it belongs to, closing every
    /// aggregate it completes; returns the outermost frame once it is whole.
    fn complete(&mut self, mut frame: Frame) -> Option<Frame> {
        loop {
            let Some(mut top) = self.stack.pop() else {
                return Some(frame);
            };
            top.items.push(frame);
            if top.items.len() < top.expected {
                self.stack.push(top);
                return None;
            }
            frame = top.finish();
        }
    }

    fn step(&mut self, buf: &[u8]) -> Result<Step, ProtocolError> {
        let at = self.pos;
        let Some(&type_byte) = buf.get(at) else {
            return Ok(Step::NeedMore);
        };
        match type_byte {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => self.scalar(buf, at, type_byte),
            b'$' | b'!' | b'=' => self.blob(buf, at, type_byte),
            b'*' | b'%' | b'~' | b'|' | b'>' => self.aggregate(buf, at, type_byte),
            byte => Err(ProtocolError::UnknownType { offset: at, byte }),
        }
    }

    fn line<'b>(
        &mut self,
        buf: &'b [u8],
        at: usize,
        type_byte: u8,
    ) -> Result<Option<(&'b [u8], usize)>, ProtocolError> {
        let max = self.limits.max_inline_bytes;
        Ok(find_line(buf, at, &mut self.scanned, max, type_byte)?
            .map(|(cr, next)| (buf.get(at + 1..cr).unwrap_or_default(), next)))
    }

    fn scalar(&mut self, buf: &[u8], at: usize, type_byte: u8) -> Result<Step, ProtocolError> {
        let Some((body, next)) = self.line(buf, at, type_byte)? else {
            return Ok(Step::NeedMore);
        };
        let invalid = ProtocolError::InvalidValue {
            offset: at + 1,
            type_byte,
        };
        let frame = match type_byte {
            b'+' => Frame::Simple(body.to_vec()),
            b'-' => Frame::Error(body.to_vec()),
            b':' => Frame::Integer(
                parse_i64(body).ok_or(ProtocolError::InvalidInteger { offset: at + 1 })?,
            ),
            b'_' if body.is_empty() => Frame::Null,
            b'#' if body == b"t" => Frame::Boolean(true),
            b'#' if body == b"f" => Frame::Boolean(false),
            b',' => Frame::Double(parse_double(body).ok_or(invalid)?),
            b'(' if is_big_number(body) => Frame::BigNumber(body.to_vec()),
            _ => return Err(invalid),
        };
        Ok(Step::Done(frame, next))
    }

    fn blob(&mut self, buf: &[u8], at: usize, type_byte: u8) -> Result<Step, ProtocolError> {
        let Some((body, data_at)) = self.line(buf, at, type_byte)? else {
            return Ok(Step::NeedMore);
        };
        let len = match parse_i64(body) {
            Some(-1) if type_byte == b'$' => return Ok(Step::Done(Frame::NullBulk, data_at)),
            Some(len) => u64::try_from(len).ok(),
            None => None,
        };
        let Some(len) = len else {
            return Err(ProtocolError::InvalidBulkLength { offset: at + 1 });
        };
        let Some(data) = bulk_data(buf, at, data_at, len, self.limits.max_bulk_bytes)? else {
            return Ok(Step::NeedMore);
        };
        let next = data_at + data.len() + 2;
        let frame = match type_byte {
            b'$' => Frame::Bulk(data.to_vec()),
            b'!' => Frame::BulkError(data.to_vec()),
            _ => match data {
                [a, b, c, b':', text @ ..] => Frame::Verbatim {
                    format: [*a, *b, *c],
                    text: text.to_vec(),
                },
                _ => {
                    return Err(ProtocolError::InvalidValue {
                        offset: data_at,
                        type_byte,
                    });
                }
            },
        };
        Ok(Step::Done(frame, next))
    }

    fn aggregate(&mut self, buf: &[u8], at: usize, type_byte: u8) -> Result<Step, ProtocolError> {
        let Some((body, next)) = self.line(buf, at, type_byte)? else {
            return Ok(Step::NeedMore);
        };
        let count = match parse_i64(body) {
            Some(-1) if type_byte == b'*' => return Ok(Step::Done(Frame::NullArray, next)),
            Some(count) => u64::try_from(count).ok(),
            None => None,
        };
        let Some(count) = count else {
            return Err(ProtocolError::InvalidMultibulkLength { offset: at + 1 });
        };
        let too_long = ProtocolError::MultibulkTooLong {
            offset: at + 1,
            len: count,
            max: self.limits.max_array_len,
        };
        let count = match usize::try_from(count) {
            Ok(count) if count <= self.limits.max_array_len => count,
            _ => return Err(too_long),
        };
        let (kind, expected) = match type_byte {
            b'*' => (Aggregate::Array, Some(count)),
            b'~' => (Aggregate::Set, Some(count)),
            b'>' => (Aggregate::Push, Some(count)),
            b'%' => (Aggregate::Map, count.checked_mul(2)),
            _ => (
                Aggregate::Attribute,
                count.checked_mul(2).and_then(|n| n.checked_add(1)),
            ),
        };
        let expected = expected.ok_or(too_long)?;
        // Bounded by what is buffered, never by what the header claims.
        let room = buf.len().saturating_sub(next) / MIN_FRAME_BYTES;
        let items = Vec::with_capacity(expected.min(room));
        Ok(Step::Open(
            Pending {
                kind,
                expected,
                items,
            },
            next,
        ))
    }
}

/// The `len` bytes of a bulk string whose header (at `at`) ends at `data_at`,
/// once they and their CRLF are all buffered. `len` is checked against
/// `max_bytes` before anything else, so a huge header makes us neither
/// allocate nor wait.
pub(crate) fn bulk_data(
    buf: &[u8],
    at: usize,
    data_at: usize,
    len: u64,
    max_bytes: usize,
) -> Result<Option<&[u8]>, ProtocolError> {
    let too_long = ProtocolError::BulkTooLong {
        offset: at + 1,
        len,
        max_bytes,
    };
    let end = match usize::try_from(len) {
        Ok(len) if len <= max_bytes => data_at.checked_add(len).ok_or(too_long)?,
        _ => return Err(too_long),
    };
    let Some(crlf) = buf.get(end..end.saturating_add(2)) else {
        return Ok(None);
    };
    match crlf {
        b"\r\n" => Ok(buf.get(data_at..end)),
        [b'\r', _] => Err(ProtocolError::MissingCrlf { offset: end + 1 }),
        _ => Err(ProtocolError::MissingCrlf { offset: end }),
    }
}

impl Pending {
    fn finish(self) -> Frame {
        let mut items = self.items;
        match self.kind {
            Aggregate::Array => Frame::Array(items),
            Aggregate::Set => Frame::Set(items),
            Aggregate::Push => Frame::Push(items),
            Aggregate::Map => Frame::Map(pairs(items)),
            Aggregate::Attribute => {
                // An attribute expects 2n + 1 elements, so the last is there.
                let data = items.pop().unwrap_or(Frame::Null);
                Frame::Attribute {
                    attributes: pairs(items),
                    data: Box::new(data),
                }
            }
        }
    }
}

fn pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    pairs
}

/// A RESP3 double: what Rust's float parser takes (decimal, exponent, `inf`,
/// `-inf`, `nan`), nothing with spaces or other bytes around it.
fn parse_double(body: &[u8]) -> Option<f64> {
    std::str::from_utf8(body).ok()?.parse().ok()
}

/// A RESP3 big number: an optional sign, then at least one digit.
fn is_big_number(body: &[u8]) -> bool {
    let digits = match body {
        [b'-' | b'+', rest @ ..] => rest,
        _ => body,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}
