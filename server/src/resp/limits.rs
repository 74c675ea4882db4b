//! Bounds on everything a peer can ask the decoder to hold.

/// Limits the decoder checks every declared length against before it
/// allocates or waits for more bytes. Defaults follow Redis where Redis has
/// one; see `docs/protocol.md` for the reasoning.
///
/// The limits bound a single length, not a whole frame: a multibulk of
/// `max_array_len` bulks of `max_bulk_bytes` each is allowed by these limits.
/// The total a connection may buffer is the server's to bound (Redis's
/// `client-query-buffer-limit`, 1 GiB by default), because the server owns
/// the buffer and the decoder only ever borrows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (`$`, `!`, `=`) payload. Default 512 MiB, Redis's
    /// `proto-max-bulk-len`: every Redis client already stays under it.
    pub max_bulk_bytes: usize,
    /// Most elements in one aggregate (`*`, `~`, `>`), or entries in one map
    /// or attribute (`%`, `|`). Default 1 Mi (1,048,576): far above any sane
    /// batch (a 500k-key MSET), while bounding the per-request work and the
    /// element bookkeeping (about 24 bytes per argument) one command can cost.
    pub max_array_len: usize,
    /// Longest inline request line, and longest RESP line (a length header,
    /// a simple string, an integer). Default 64 KiB, Redis's
    /// `PROTO_INLINE_MAX_SIZE`. A line without its CRLF inside this bound is
    /// an error, not a reason to keep buffering.
    pub max_inline_bytes: usize,
    /// Deepest nesting of aggregates (an array inside an array is depth 2).
    /// Default 32: Redis's deepest replies nest a handful of levels (hiredis
    /// gives up beyond 9), and the bound keeps recursion over a decoded
    /// [`Frame`] (drop, encode, compare) shallow.
    ///
    /// [`Frame`]: super::Frame
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_inline_bytes: 64 * 1024,
            max_depth: 32,
        }
    }
}
