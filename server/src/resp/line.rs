//! CRLF-terminated lines and the integers in them.
//!
//! Every RESP frame opens with a line: a type byte, a body, CR LF.
//!
//! ```text
//! +OK\r\n          simple string     $5\r\n...      bulk length
//! :-42\r\n         integer           *3\r\n...      aggregate count
//! ```
//!
//! A body holds neither CR nor LF, and is at most `max_inline_bytes` long:
//! past that bound without a CR the peer is misbehaving, and waiting for more
//! would let it grow our buffer without limit.

use super::error::ProtocolError;

/// Finds the line whose type byte is at `type_at`. Returns the end of its
/// body (the CR) and the offset just past its LF, or `None` when the line is
/// not all buffered yet.
///
/// `scanned` remembers how far an earlier call looked without finding the
/// CR, so a long line arriving a byte at a time is scanned once, not once
/// per byte. REQUIRES: `scanned` was reset (to 0 or `type_at`) when the
/// caller moved on to a new line, and `buf` only grew since the last call.
pub(crate) fn find_line(
    buf: &[u8],
    type_at: usize,
    scanned: &mut usize,
    max_bytes: usize,
    type_byte: u8,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let body_start = type_at + 1;
    let from = (*scanned).max(body_start);
    let terminator = buf
        .get(from..)
        .unwrap_or_default()
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|i| from + i);
    let too_long = ProtocolError::LineTooLong {
        offset: type_at,
        type_byte,
        max_bytes,
    };
    let Some(cr) = terminator else {
        if buf.len().saturating_sub(body_start) > max_bytes {
            return Err(too_long);
        }
        *scanned = buf.len();
        return Ok(None);
    };
    if cr - body_start > max_bytes {
        return Err(too_long);
    }
    if buf.get(cr) == Some(&b'\n') {
        return Err(ProtocolError::MissingCrlf { offset: cr });
    }
    match buf.get(cr + 1) {
        None => {
            *scanned = cr;
            Ok(None)
        }
        Some(b'\n') => Ok(Some((cr, cr + 2))),
        Some(_) => Err(ProtocolError::MissingCrlf { offset: cr + 1 }),
    }
}

/// Parses a signed decimal exactly as Redis's `string2ll` does: an optional
/// `-`, then digits with no leading zero (`0` alone is fine, `-0`, `+1`,
/// `01`, ` 1` and the empty string are not), within `i64`.
pub(crate) fn parse_i64(body: &[u8]) -> Option<i64> {
    let (negative, digits) = match body {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, body),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut magnitude: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(b - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins string2ll's strictness: the forms Redis rejects are rejected here.
    #[test]
    fn parse_i64_accepts_only_what_string2ll_accepts() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    // Pins that a line is found only once its LF is buffered, and that a
    // partial scan resumes where it stopped.
    #[test]
    fn find_line_waits_for_lf_and_resumes_scan() {
        let mut scanned = 0;
        assert_eq!(find_line(b"+OK", 0, &mut scanned, 10, b'+'), Ok(None));
        assert_eq!(scanned, 3);
        assert_eq!(find_line(b"+OK\r", 0, &mut scanned, 10, b'+'), Ok(None));
        assert_eq!(scanned, 3);
        assert_eq!(
            find_line(b"+OK\r\n", 0, &mut scanned, 10, b'+'),
            Ok(Some((3, 5)))
        );
        let mut scanned = 0;
        assert_eq!(
            find_line(b"+O\nK\r\n", 0, &mut scanned, 10, b'+'),
            Err(ProtocolError::MissingCrlf { offset: 2 })
        );
        assert_eq!(
            find_line(b"+OKOKOK", 0, &mut 0, 4, b'+'),
            Err(ProtocolError::LineTooLong {
                offset: 0,
                type_byte: b'+',
                max_bytes: 4
            })
        );
    }
}
