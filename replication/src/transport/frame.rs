//! The RPC frame: how one request and its reply travel on one QUIC
//! bidirectional stream (`docs/format.md`, "RPC frame").
//!
//! ```text
//! request = version u8 | group u64 LE | kind u8 | body_len u32 LE | body
//!           version = 1 (do not change: on the wire)
//! reply   = status u8 | len u32 LE | bytes
//!           status 0 = ok, bytes = the reply body
//!           status 1 = error, bytes = the handler's message, UTF-8
//!           (do not change: on the wire)
//! ```
//!
//! The client writes one request and finishes its send side; the server
//! writes one reply and finishes. Nothing may follow either frame. Every
//! length is checked against the receiver's `max_body_bytes` before a buffer
//! is allocated for it, and read with `read_exact` into a buffer of exactly
//! that size. Unknown versions and statuses are errors, never panics.
//!
//! Readers and writers are generic over tokio's `AsyncRead`/`AsyncWrite`, so
//! the unit tests below run the same code as the QUIC streams do.

use crate::transport::RpcRequest;
use std::fmt;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The request frame version this build speaks (do not change: on the wire;
/// a new layout gets a new version).
pub(crate) const FRAME_VERSION: u8 = 1;
/// `version u8 | group u64 | kind u8 | body_len u32`.
pub(crate) const REQUEST_HEADER_BYTES: usize = 1 + 8 + 1 + 4;
/// `status u8 | len u32`.
pub(crate) const REPLY_HEADER_BYTES: usize = 1 + 4;
/// Reply status: the bytes are the reply body (do not change: on the wire).
const STATUS_OK: u8 = 0;
/// Reply status: the bytes are an error message (do not change: on the wire).
const STATUS_ERROR: u8 = 1;

/// Why a frame could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A request frame with a version this build does not speak.
    UnknownVersion(u8),
    /// A reply frame with a status other than 0 or 1.
    UnknownStatus(u8),
    /// A body or message longer than the limit (or than `u32` can say).
    TooLarge { bytes: u64, max: u64 },
    /// The stream ended inside `part` (`"request header"`, `"reply body"`...).
    Truncated { part: &'static str },
    /// Bytes followed a complete frame.
    TrailingBytes,
    /// The stream failed (reset, connection lost).
    Io(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownVersion(v) => write!(
                f,
                "unknown rpc frame version {v} (this node speaks {FRAME_VERSION})"
            ),
            FrameError::UnknownStatus(s) => write!(f, "unknown rpc reply status {s}"),
            FrameError::TooLarge { bytes, max } => {
                write!(f, "rpc body of {bytes} bytes exceeds the limit of {max}")
            }
            FrameError::Truncated { part } => write!(f, "stream ended inside the {part}"),
            FrameError::TrailingBytes => write!(f, "bytes after the end of the rpc frame"),
            FrameError::Io(reason) => write!(f, "stream failed: {reason}"),
        }
    }
}

/// A decoded reply: the handler's body or its error message.
pub(crate) type Reply = Result<Vec<u8>, String>;

/// Checks `len` against `max_body_bytes` and the `u32` length field.
fn check_len(len: usize, max_body_bytes: usize) -> Result<u32, FrameError> {
    let too_large = FrameError::TooLarge {
        bytes: u64::try_from(len).unwrap_or(u64::MAX),
        max: u64::try_from(max_body_bytes).unwrap_or(u64::MAX),
    };
    if len > max_body_bytes {
        return Err(too_large);
    }
    u32::try_from(len).map_err(|_| too_large)
}

/// The 14-byte request header for `request`, after checking its body
/// length. Layout: `version u8 | group u64 LE | kind u8 | body_len u32 LE`.
pub(crate) fn encode_request_header(
    request: &RpcRequest,
    max_body_bytes: usize,
) -> Result<[u8; REQUEST_HEADER_BYTES], FrameError> {
    let body_len = check_len(request.body.len(), max_body_bytes)?;
    let mut header = [0u8; REQUEST_HEADER_BYTES];
    let (version, rest) = header.split_at_mut(1);
    let (group, rest) = rest.split_at_mut(8);
    let (kind, len) = rest.split_at_mut(1);
    version.copy_from_slice(&[FRAME_VERSION]);
    group.copy_from_slice(&request.group.to_le_bytes());
    kind.copy_from_slice(&[request.kind]);
    len.copy_from_slice(&body_len.to_le_bytes());
    Ok(header)
}

/// A decoded request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestHeader {
    pub(crate) group: u64,
    pub(crate) kind: u8,
    pub(crate) body_len: usize,
}

/// Decodes and checks a request header: the version first, then the body
/// length against `max_body_bytes`.
pub(crate) fn decode_request_header(
    header: &[u8; REQUEST_HEADER_BYTES],
    max_body_bytes: usize,
) -> Result<RequestHeader, FrameError> {
    let [
        version,
        g0,
        g1,
        g2,
        g3,
        g4,
        g5,
        g6,
        g7,
        kind,
        l0,
        l1,
        l2,
        l3,
    ] = *header;
    if version != FRAME_VERSION {
        return Err(FrameError::UnknownVersion(version));
    }
    let body_len = checked_wire_len(u32::from_le_bytes([l0, l1, l2, l3]), max_body_bytes)?;
    Ok(RequestHeader {
        group: u64::from_le_bytes([g0, g1, g2, g3, g4, g5, g6, g7]),
        kind,
        body_len,
    })
}

/// The 5-byte reply header. Layout: `status u8 | len u32 LE`.
pub(crate) fn encode_reply_header(
    reply: &Result<&[u8], &str>,
    max_body_bytes: usize,
) -> Result<[u8; REPLY_HEADER_BYTES], FrameError> {
    let (status, len) = match reply {
        Ok(body) => (STATUS_OK, body.len()),
        Err(message) => (STATUS_ERROR, message.len()),
    };
    let len = check_len(len, max_body_bytes)?;
    let [l0, l1, l2, l3] = len.to_le_bytes();
    Ok([status, l0, l1, l2, l3])
}

/// A decoded reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyHeader {
    pub(crate) ok: bool,
    pub(crate) len: usize,
}

/// Decodes and checks a reply header: the status first, then the length
/// against `max_body_bytes`.
pub(crate) fn decode_reply_header(
    header: &[u8; REPLY_HEADER_BYTES],
    max_body_bytes: usize,
) -> Result<ReplyHeader, FrameError> {
    let [status, l0, l1, l2, l3] = *header;
    let ok = match status {
        STATUS_OK => true,
        STATUS_ERROR => false,
        other => return Err(FrameError::UnknownStatus(other)),
    };
    let len = checked_wire_len(u32::from_le_bytes([l0, l1, l2, l3]), max_body_bytes)?;
    Ok(ReplyHeader { ok, len })
}

/// A length read from the wire, as `usize`, if it is within the limit.
fn checked_wire_len(len: u32, max_body_bytes: usize) -> Result<usize, FrameError> {
    let too_large = FrameError::TooLarge {
        bytes: u64::from(len),
        max: u64::try_from(max_body_bytes).unwrap_or(u64::MAX),
    };
    match usize::try_from(len) {
        Ok(len) if len <= max_body_bytes => Ok(len),
        _ => Err(too_large),
    }
}

/// Writes one request frame. The caller finishes the stream.
pub(crate) async fn write_request<W: AsyncWrite + Unpin>(
    writer: &mut W,
    request: &RpcRequest,
    max_body_bytes: usize,
) -> Result<(), FrameError> {
    let header = encode_request_header(request, max_body_bytes)?;
    writer.write_all(&header).await.map_err(io_error)?;
    writer.write_all(&request.body).await.map_err(io_error)?;
    Ok(())
}

/// Reads and checks a request header. The caller may then reserve memory
/// for `body_len` bytes before calling [`read_request_body`].
pub(crate) async fn read_request_header<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_body_bytes: usize,
) -> Result<RequestHeader, FrameError> {
    let mut header = [0u8; REQUEST_HEADER_BYTES];
    read_exact(reader, &mut header, "request header").await?;
    decode_request_header(&header, max_body_bytes)
}

/// Reads the body announced by `header` and checks that nothing follows.
pub(crate) async fn read_request_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    header: RequestHeader,
) -> Result<RpcRequest, FrameError> {
    let body = read_body(reader, header.body_len, "request body").await?;
    expect_end(reader).await?;
    Ok(RpcRequest {
        group: header.group,
        kind: header.kind,
        body,
    })
}

/// Writes one reply frame. The caller finishes the stream.
pub(crate) async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut W,
    reply: Result<&[u8], &str>,
    max_body_bytes: usize,
) -> Result<(), FrameError> {
    let header = encode_reply_header(&reply, max_body_bytes)?;
    let bytes = match reply {
        Ok(body) => body,
        Err(message) => message.as_bytes(),
    };
    writer.write_all(&header).await.map_err(io_error)?;
    writer.write_all(bytes).await.map_err(io_error)?;
    Ok(())
}

/// Reads one whole reply frame and checks that nothing follows it. An error
/// message that is not valid UTF-8 is kept with its bad sequences replaced:
/// it is a diagnostic, and losing it would hide the remote's complaint.
pub(crate) async fn read_reply<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_body_bytes: usize,
) -> Result<Reply, FrameError> {
    let mut header = [0u8; REPLY_HEADER_BYTES];
    read_exact(reader, &mut header, "reply header").await?;
    let header = decode_reply_header(&header, max_body_bytes)?;
    let bytes = read_body(reader, header.len, "reply body").await?;
    expect_end(reader).await?;
    if header.ok {
        Ok(Ok(bytes))
    } else {
        Ok(Err(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Reads exactly `len` bytes. REQUIRES: `len` was checked against the limit
/// (it came out of a `decode_*_header`).
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
    part: &'static str,
) -> Result<Vec<u8>, FrameError> {
    let mut body = vec![0u8; len];
    read_exact(reader, &mut body, part).await?;
    Ok(body)
}

async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    part: &'static str,
) -> Result<(), FrameError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated { part }),
        Err(e) => Err(io_error(e)),
    }
}

/// Succeeds only if the stream ends here.
async fn expect_end<R: AsyncRead + Unpin>(reader: &mut R) -> Result<(), FrameError> {
    let mut probe = [0u8; 1];
    match reader.read(&mut probe).await {
        Ok(0) => Ok(()),
        Ok(_) => Err(FrameError::TrailingBytes),
        Err(e) => Err(io_error(e)),
    }
}

fn io_error(e: io::Error) -> FrameError {
    FrameError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// A whole request, as the server reads it (header, then body).
    async fn read_request(reader: &mut &[u8], max: usize) -> Result<RpcRequest, FrameError> {
        let header = read_request_header(reader, max).await?;
        read_request_body(reader, header).await
    }

    fn request(body: &[u8]) -> RpcRequest {
        RpcRequest {
            group: 0x0102_0304_0506_0708,
            kind: 7,
            body: body.to_vec(),
        }
    }

    async fn encoded_request(req: &RpcRequest) -> Vec<u8> {
        let mut out = Vec::new();
        write_request(&mut out, req, MAX).await.unwrap();
        out
    }

    async fn encoded_reply(reply: Result<&[u8], &str>) -> Vec<u8> {
        let mut out = Vec::new();
        write_reply(&mut out, reply, MAX).await.unwrap();
        out
    }

    #[tokio::test]
    async fn request_frame_has_the_documented_bytes() {
        // Pins the wire layout of docs/format.md, byte by byte.
        let bytes = encoded_request(&request(b"hi")).await;
        assert_eq!(
            bytes,
            [1, 8, 7, 6, 5, 4, 3, 2, 1, 7, 2, 0, 0, 0, b'h', b'i'],
            "version | group LE | kind | len LE | body"
        );
        let ok = encoded_reply(Ok(b"ok")).await;
        assert_eq!(ok, [0, 2, 0, 0, 0, b'o', b'k']);
        let err = encoded_reply(Err("no")).await;
        assert_eq!(err, [1, 2, 0, 0, 0, b'n', b'o']);
    }

    #[tokio::test]
    async fn request_and_reply_round_trip() {
        // What is written is read back unchanged, empty bodies included.
        for body in [&b""[..], b"x", &[0xAB; MAX]] {
            let req = request(body);
            let bytes = encoded_request(&req).await;
            assert_eq!(read_request(&mut &bytes[..], MAX).await.unwrap(), req);
        }
        let ok = encoded_reply(Ok(b"body")).await;
        assert_eq!(
            read_reply(&mut &ok[..], MAX).await.unwrap(),
            Ok(b"body".to_vec())
        );
        let err = encoded_reply(Err("unknown group 9")).await;
        assert_eq!(
            read_reply(&mut &err[..], MAX).await.unwrap(),
            Err("unknown group 9".to_owned())
        );
    }

    #[tokio::test]
    async fn truncated_frames_are_errors_at_every_length() {
        // A frame cut anywhere is reported as truncated, never read short.
        let req = encoded_request(&request(b"hello")).await;
        for cut in 0..req.len() {
            let err = read_request(&mut &req[..cut], MAX).await.unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
        let reply = encoded_reply(Ok(b"hello")).await;
        for cut in 0..reply.len() {
            let err = read_reply(&mut &reply[..cut], MAX).await.unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn trailing_bytes_after_a_frame_are_rejected() {
        // Exactly one frame per stream direction.
        let mut req = encoded_request(&request(b"a")).await;
        req.push(0);
        let err = read_request(&mut &req[..], MAX).await.unwrap_err();
        assert_eq!(err, FrameError::TrailingBytes);
        let mut reply = encoded_reply(Ok(b"a")).await;
        reply.push(0);
        let err = read_reply(&mut &reply[..], MAX).await.unwrap_err();
        assert_eq!(err, FrameError::TrailingBytes);
    }

    #[tokio::test]
    async fn unknown_version_and_status_are_rejected() {
        // Every version but 1 and every status but 0 and 1 is an error.
        let good = encoded_request(&request(b"a")).await;
        for version in (0..=u8::MAX).filter(|v| *v != FRAME_VERSION) {
            let mut bytes = good.clone();
            bytes[0] = version;
            let err = read_request(&mut &bytes[..], MAX).await.unwrap_err();
            assert_eq!(err, FrameError::UnknownVersion(version));
        }
        let good = encoded_reply(Ok(b"a")).await;
        for status in 2..=u8::MAX {
            let mut bytes = good.clone();
            bytes[0] = status;
            let err = read_reply(&mut &bytes[..], MAX).await.unwrap_err();
            assert_eq!(err, FrameError::UnknownStatus(status));
        }
    }

    #[tokio::test]
    async fn hostile_length_is_refused_before_allocating() {
        // A header claiming 4 GiB - 1 with no body behind it is refused from
        // the header alone: the error is TooLarge, not Truncated, so no
        // buffer of that size was made or read into.
        let mut req = vec![FRAME_VERSION];
        req.extend_from_slice(&9u64.to_le_bytes());
        req.push(1);
        req.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = read_request(&mut &req[..], MAX).await.unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                bytes: u64::from(u32::MAX),
                max: MAX as u64
            }
        );
        let mut reply = vec![STATUS_OK];
        reply.extend_from_slice(&(MAX as u32 + 1).to_le_bytes());
        let err = read_reply(&mut &reply[..], MAX).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn writers_refuse_bodies_over_the_limit() {
        // The sender checks too, so an oversized body never leaves the node.
        let mut out = Vec::new();
        let err = write_request(&mut out, &request(&[0; MAX + 1]), MAX)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert!(out.is_empty(), "nothing written");
        let long = "e".repeat(MAX + 1);
        let err = write_reply(&mut out, Err(&long), MAX).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert!(out.is_empty(), "nothing written");
    }

    #[tokio::test]
    async fn invalid_utf8_error_message_is_kept_lossily() {
        // A remote's message with bad UTF-8 is still reported, not dropped.
        let reply = [STATUS_ERROR, 2, 0, 0, 0, 0xFF, b'x'];
        let got = read_reply(&mut &reply[..], MAX).await.unwrap();
        assert_eq!(got, Err("\u{FFFD}x".to_owned()));
    }
}
