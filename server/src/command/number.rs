//! Numbers as Redis reads and writes them in strings.
//!
//! Integers follow `string2ll` (shared with the RESP codec). Floats follow
//! `string2ld` and `ld2string` in human mode, but in `f64` rather than C's
//! `long double`: see "Where Cairn differs" in `docs/commands.md`.

pub(crate) use crate::resp::parse_i64;

/// Longest float text accepted, Redis's `MAX_LONG_DOUBLE_CHARS` (5 KiB).
const FLOAT_TEXT_MAX_BYTES: usize = 5 * 1024;

/// Parses a float the way Redis's `string2ld` does: no leading blank, the
/// whole text consumed, `inf` and `infinity` accepted, NaN refused, and a
/// text that overflows to infinity or underflows to zero refused (strtold's
/// `ERANGE`).
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    let starts_blank = text.first().is_none_or(u8::is_ascii_whitespace);
    if starts_blank || text.len() >= FLOAT_TEXT_MAX_BYTES {
        return None;
    }
    let s = std::str::from_utf8(text).ok()?;
    let value: f64 = s.parse().ok()?;
    let unsigned = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let spelled_infinite = unsigned == "inf" || unsigned == "infinity";
    if value.is_nan() || (value.is_infinite() && !spelled_infinite) {
        return None;
    }
    let mantissa = unsigned.split('e').next().unwrap_or("");
    let underflowed = value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    (!underflowed).then_some(value)
}

/// Formats a finite float as INCRBYFLOAT replies and stores it: plain
/// decimal, no exponent, no trailing zeros, no trailing point, `-0` as `0`.
/// Uses the shortest digits that read back as the same `f64`, where Redis
/// prints 17 decimals of a `long double` and trims the zeros.
pub(crate) fn format_f64(value: f64) -> Vec<u8> {
    if value == 0.0 {
        return b"0".to_vec();
    }
    format!("{value}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    // What string2ld accepts and refuses, within f64.
    #[test]
    fn parse_f64_follows_string2ld() {
        assert_eq!(parse_f64(b"10.5"), Some(10.5));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"0"), Some(0.0));
        assert_eq!(parse_f64(b"0e10"), Some(0.0));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"nan",
            b"abc",
            b"1e400",
            b"1e-400",
            b"1,5",
        ] {
            assert_eq!(parse_f64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    // Plain decimal, shortest digits, no trailing zeros.
    #[test]
    fn format_f64_is_plain_and_trimmed() {
        assert_eq!(format_f64(5000.0), b"5000");
        assert_eq!(format_f64(10.6), b"10.6");
        assert_eq!(format_f64(-0.0), b"0");
        assert_eq!(format_f64(1e20), b"100000000000000000000");
        assert_eq!(format_f64(1.5e-7), b"0.00000015");
    }
}
