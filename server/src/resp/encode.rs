//! [`Frame`]s to bytes, for a RESP2 or a RESP3 client.
//!
//! Layout as in `decode.rs`. A RESP2 client is sent only RESP2 types; the
//! RESP3 ones degrade as Redis degrades them:
//!
//! ```text
//! frame           RESP3                  RESP2
//! Null            _                      $-1     (null bulk)
//! NullBulk        _                      $-1
//! NullArray       _                      *-1
//! Boolean         #t / #f                :1 / :0
//! Double          ,<text>                $<n> <text>
//! BigNumber       (<digits>              $<n> <digits>
//! BulkError       !<n> <text>            -<text> (CR, LF become spaces)
//! Verbatim        =<n> <fmt>:<text>      $<n> <text> (format dropped)
//! Map             %<n> k v ...           *<2n> k v ...
//! Set             ~<n> ...               *<n> ...
//! Attribute       |<n> k v ... <data>    <data>  (attributes dropped)
//! Push            ><n> ...               *<n> ...
//! ```
//!
//! Line types (simple string, error, big number, double) cannot carry CR or
//! LF; the encoder replaces each with a space, as Redis does for error
//! replies, so no payload can inject a frame. A double is written in the
//! shortest form that parses back to the same value.

use super::frame::{Frame, RespVersion};

impl Frame {
    /// Appends this frame's wire form for a client speaking `version`.
    ///
    /// Recurses once per nesting level: frames decoded under
    /// [`Limits::max_depth`](super::Limits) are safe; so are replies the
    /// server builds, which nest a few levels.
    pub fn encode(&self, out: &mut Vec<u8>, version: RespVersion) {
        let resp3 = version == RespVersion::Resp3;
        match self {
            Frame::Simple(text) => line(out, b'+', text),
            Frame::Error(text) => line(out, b'-', text),
            Frame::Integer(n) => {
                out.push(b':');
                push_i64(out, *n);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Bulk(data) => blob(out, b'$', data),
            Frame::NullBulk | Frame::Null if !resp3 => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray if !resp3 => out.extend_from_slice(b"*-1\r\n"),
            Frame::NullBulk | Frame::NullArray | Frame::Null => out.extend_from_slice(b"_\r\n"),
            Frame::Boolean(b) => out.extend_from_slice(match (resp3, b) {
                (true, true) => b"#t\r\n",
                (true, false) => b"#f\r\n",
                (false, true) => b":1\r\n",
                (false, false) => b":0\r\n",
            }),
            Frame::Double(d) if resp3 => line(out, b',', format_double(*d).as_bytes()),
            Frame::Double(d) => blob(out, b'$', format_double(*d).as_bytes()),
            Frame::BigNumber(digits) if resp3 => line(out, b'(', digits),
            Frame::BigNumber(digits) => blob(out, b'$', digits),
            Frame::BulkError(text) if resp3 => blob(out, b'!', text),
            Frame::BulkError(text) => line(out, b'-', text),
            Frame::Verbatim { format, text } if resp3 => {
                header(out, b'=', text.len() + 4);
                out.extend_from_slice(format);
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Verbatim { text, .. } => blob(out, b'$', text),
            Frame::Array(items) => aggregate(out, b'*', items, version),
            Frame::Set(items) => aggregate(out, if resp3 { b'~' } else { b'*' }, items, version),
            Frame::Push(items) => aggregate(out, if resp3 { b'>' } else { b'*' }, items, version),
            Frame::Map(entries) if resp3 => map(out, b'%', entries, version),
            Frame::Map(entries) => {
                header(out, b'*', entries.len() * 2);
                entries_body(out, entries, version);
            }
            Frame::Attribute { attributes, data } => {
                if resp3 {
                    map(out, b'|', attributes, version);
                }
                data.encode(out, version);
            }
        }
    }
}

/// `<type><text>\r\n`, with CR and LF in `text` written as spaces.
fn line(out: &mut Vec<u8>, type_byte: u8, text: &[u8]) {
    out.push(type_byte);
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `<type><len>\r\n<data>\r\n`
fn blob(out: &mut Vec<u8>, type_byte: u8, data: &[u8]) {
    header(out, type_byte, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, type_byte: u8, items: &[Frame], version: RespVersion) {
    header(out, type_byte, items.len());
    for item in items {
        item.encode(out, version);
    }
}

fn map(out: &mut Vec<u8>, type_byte: u8, entries: &[(Frame, Frame)], version: RespVersion) {
    header(out, type_byte, entries.len());
    entries_body(out, entries, version);
}

fn entries_body(out: &mut Vec<u8>, entries: &[(Frame, Frame)], version: RespVersion) {
    for (key, value) in entries {
        key.encode(out, version);
        value.encode(out, version);
    }
}

/// `<type><len>\r\n`
fn header(out: &mut Vec<u8>, type_byte: u8, len: usize) {
    out.push(type_byte);
    push_u64(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// The shortest text that parses back to `d`: plain decimals for everyday
/// magnitudes (`1`, `0.5`, `123456.75`), exponent form outside them
/// (`1e300`, `1.5e-7`), and `inf`, `-inf`, `nan` as RESP3 spells them.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if d == 0.0 || (1e-5..1e17).contains(&d.abs()) {
        format!("{d}")
    } else {
        format!("{d:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins integer formatting at the edges of i64.
    #[test]
    fn integers_encode_in_decimal_at_the_edges() {
        for (n, text) in [
            (0, "0"),
            (-1, "-1"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let mut out = Vec::new();
            push_i64(&mut out, n);
            assert_eq!(out, text.as_bytes());
        }
    }

    // Pins the double spellings clients parse: no ".0", exponent form only
    // at extreme magnitudes, RESP3's inf/nan words.
    #[test]
    fn doubles_use_short_spellings() {
        assert_eq!(format_double(1.0), "1");
        assert_eq!(format_double(3.25), "3.25");
        assert_eq!(format_double(-0.5), "-0.5");
        assert_eq!(format_double(1e300), "1e300");
        assert_eq!(format_double(1.5e-7), "1.5e-7");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(f64::NAN), "nan");
    }
}
