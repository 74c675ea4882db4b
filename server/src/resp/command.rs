//! The request view: what a client may send a server. A request is a
//! multibulk of bulk strings, or an inline line; both decode to the same
//! argument list, as in Redis's `processMultibulkBuffer` and
//! `processInlineBuffer`.
//!
//! ```text
//! *<argc>\r\n  then argc times  $<len>\r\n<len bytes>\r\n      multibulk
//! <anything not starting with '*'> ... \n                       inline
//! ```
//!
//! As in Redis, the first byte decides: `*` is a multibulk, anything else an
//! inline line (so `+PING\r\n` is the inline command `+PING`). An inline line
//! ends at LF, with an optional CR before it. `*0` and `*-1` are empty
//! requests, as is an empty inline line: they decode to no arguments, which
//! the server skips without a reply. Other negative counts are errors (Redis
//! treats every count below 1 as empty).
//!
//! Cost: a [`CommandDecoder`] keeps the arguments it has read, so a request
//! arriving in pieces is parsed once; a partial bulk costs a re-read of its
//! header per call, never of its body. [`decode_command`] starts afresh.

use super::decode::bulk_data;
use super::error::ProtocolError;
use super::inline::split_args;
use super::limits::Limits;
use super::line::{find_line, parse_i64};

/// A request's arguments, the command name first, each as sent.
pub type Args = Vec<Vec<u8>>;

/// The shortest argument on the wire (`$0\r\n\r\n`); bounds preallocation.
const MIN_ARG_BYTES: usize = 6;

/// Decodes one request from the start of `buf`: `Ok(Some((args, consumed)))`
/// when a whole one is there, `Ok(None)` when more bytes are needed. `args`
/// is empty for an empty request (skip it).
pub fn decode_command(buf: &[u8], limits: &Limits) -> Result<Option<(Args, usize)>, ProtocolError> {
    CommandDecoder::new(*limits).decode(buf)
}

/// A resumable request decoder for one client connection; same contract as
/// [`Decoder`](super::Decoder): hand it the unconsumed bytes, grown at the
/// end, until it returns a request, then drop what it consumed.
#[derive(Debug)]
pub struct CommandDecoder {
    limits: Limits,
    /// Arguments read so far of a multibulk whose header has been read.
    args: Args,
    /// The multibulk's argument count; 0 before its header.
    expected: usize,
    /// Where the next unread byte of this request is.
    pos: usize,
    /// How far the current line has been searched for its terminator.
    scanned: usize,
}

impl CommandDecoder {
    pub fn new(limits: Limits) -> Self {
        CommandDecoder {
            limits,
            args: Vec::new(),
            expected: 0,
            pos: 0,
            scanned: 0,
        }
    }

    /// Decodes the next request from `buf`, resuming where the previous call
    /// stopped.
    ///
    /// REQUIRES: since the last call that returned a request or an error (or
    /// since `new`/`reset`), `buf` has only grown at its end.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Args, usize)>, ProtocolError> {
        debug_assert!(self.pos <= buf.len(), "REQUIRES: buf only grows");
        let result = self.advance(buf);
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    /// Forgets a partly decoded request, to start on a fresh buffer.
    pub fn reset(&mut self) {
        self.args = Vec::new();
        self.expected = 0;
        self.pos = 0;
        self.scanned = 0;
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Option<(Args, usize)>, ProtocolError> {
        if self.expected == 0 {
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {}
                Some(_) => return self.inline(buf),
            }
            let Some(next) = self.header(buf)? else {
                return Ok(None);
            };
            if self.expected == 0 {
                return Ok(Some((Vec::new(), next)));
            }
        }
        while self.args.len() < self.expected {
            let Some(arg) = self.bulk(buf)? else {
                return Ok(None);
            };
            self.args.push(arg);
        }
        Ok(Some((std::mem::take(&mut self.args), self.pos)))
    }

    /// Reads `*<argc>\r\n`; sets `expected` and returns where the arguments
    /// start.
    fn header(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let max_line = self.limits.max_inline_bytes;
        let Some((cr, next)) = find_line(buf, 0, &mut self.scanned, max_line, b'*')? else {
            return Ok(None);
        };
        let count = match parse_i64(buf.get(1..cr).unwrap_or_default()) {
            Some(-1 | 0) => return Ok(Some(next)),
            Some(count) => u64::try_from(count).ok(),
            None => None,
        };
        let Some(count) = count else {
            return Err(ProtocolError::InvalidMultibulkLength { offset: 1 });
        };
        let count = match usize::try_from(count) {
            Ok(n) if n <= self.limits.max_array_len => n,
            _ => {
                return Err(ProtocolError::MultibulkTooLong {
                    offset: 1,
                    len: count,
                    max: self.limits.max_array_len,
                });
            }
        };
        // Bounded by what is buffered, never by what the header claims.
        let room = buf.len().saturating_sub(next) / MIN_ARG_BYTES;
        self.args = Vec::with_capacity(count.min(room));
        self.expected = count;
        self.pos = next;
        self.scanned = next;
        Ok(Some(next))
    }

    /// Reads one `$<len>\r\n<bytes>\r\n` at `pos` once it is all buffered.
    fn bulk(&mut self, buf: &[u8]) -> Result<Option<Vec<u8>>, ProtocolError> {
        let at = self.pos;
        match buf.get(at) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&got) => {
                return Err(ProtocolError::UnexpectedType {
                    offset: at,
                    expected: b'$',
                    got,
                });
            }
        }
        let max_line = self.limits.max_inline_bytes;
        let Some((cr, data_at)) = find_line(buf, at, &mut self.scanned, max_line, b'$')? else {
            return Ok(None);
        };
        let len = parse_i64(buf.get(at + 1..cr).unwrap_or_default())
            .and_then(|len| u64::try_from(len).ok())
            .ok_or(ProtocolError::InvalidBulkLength { offset: at + 1 })?;
        let Some(data) = bulk_data(buf, at, data_at, len, self.limits.max_bulk_bytes)? else {
            return Ok(None);
        };
        self.pos = data_at + data.len() + 2;
        self.scanned = self.pos;
        Ok(Some(data.to_vec()))
    }

    /// Reads an inline line, ending at LF (a CR before it is dropped).
    fn inline(&mut self, buf: &[u8]) -> Result<Option<(Args, usize)>, ProtocolError> {
        let max_bytes = self.limits.max_inline_bytes;
        let too_long = ProtocolError::InlineTooLong {
            offset: 0,
            max_bytes,
        };
        let from = self.scanned;
        let newline = buf
            .get(from..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| from + i);
        let Some(newline) = newline else {
            if buf.len() > max_bytes {
                return Err(too_long);
            }
            self.scanned = buf.len();
            return Ok(None);
        };
        if newline > max_bytes {
            return Err(too_long);
        }
        let line = buf.get(..newline).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args = split_args(line).map_err(|offset| ProtocolError::UnbalancedQuotes { offset })?;
        Ok(Some((args, newline + 1)))
    }
}
