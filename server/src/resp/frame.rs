//! What a RESP message is: one [`Frame`], possibly holding others.

/// One RESP value. RESP2 has the first seven variants; RESP3 adds the rest.
/// Encoding for a RESP2 client degrades the RESP3 ones the way Redis does
/// (see [`Frame::encode`]); decoding accepts both versions at any time.
///
/// Line payloads (simple strings, errors, big numbers) never contain CR or
/// LF on the wire; bulk payloads are binary safe.
///
/// Serde forms it for replies that travel between nodes and through the
/// Raft log (postcard), where RESP would blur RESP2's two nulls.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Frame {
    /// `+OK\r\n`: a short status line.
    Simple(Vec<u8>),
    /// `-ERR message\r\n`: the text includes the error code (`ERR`,
    /// `WRONGTYPE`, `MOVED`, ...), as Redis sends it.
    Error(Vec<u8>),
    /// `:42\r\n`
    Integer(i64),
    /// `$3\r\nfoo\r\n`
    Bulk(Vec<u8>),
    /// `$-1\r\n`: RESP2's missing value. A RESP3 client is sent `_\r\n`.
    NullBulk,
    /// `*2\r\n...`
    Array(Vec<Frame>),
    /// `*-1\r\n`: RESP2's missing aggregate. A RESP3 client is sent `_\r\n`.
    NullArray,
    /// `_\r\n`: RESP3's one null. A RESP2 client is sent `$-1\r\n`.
    Null,
    /// `#t\r\n` / `#f\r\n`
    Boolean(bool),
    /// `,3.14\r\n`, also `,inf\r\n`, `,-inf\r\n`, `,nan\r\n`.
    Double(f64),
    /// `(3492890328409238509324850943850943825024385\r\n`: the digits with
    /// an optional sign, kept as text because they need not fit any integer.
    BigNumber(Vec<u8>),
    /// `!21\r\nSYNTAX invalid syntax\r\n`: an error that may hold CR or LF.
    BulkError(Vec<u8>),
    /// `=15\r\ntxt:Some string\r\n`: text with a three-byte format tag
    /// (`txt`, `mkd`).
    Verbatim { format: [u8; 3], text: Vec<u8> },
    /// `%2\r\n` then key, value, key, value. Order is kept as received.
    Map(Vec<(Frame, Frame)>),
    /// `~2\r\n...`: order is kept as received; duplicates are not removed.
    Set(Vec<Frame>),
    /// `|1\r\n` key, value, then the frame the attributes describe. RESP3
    /// sends attributes ahead of the reply they annotate, so they are decoded
    /// together with it.
    Attribute {
        attributes: Vec<(Frame, Frame)>,
        data: Box<Frame>,
    },
    /// `>3\r\nmessage\r\n...`: out-of-band data (pub/sub, invalidation).
    Push(Vec<Frame>),
}

/// The protocol version a client speaks: RESP2 until it sends `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RespVersion {
    #[default]
    Resp2,
    Resp3,
}
