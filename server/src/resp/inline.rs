//! Inline requests: the plain-text form (`SET a "b c"`) that telnet users and
//! `redis-cli`'s raw mode send, split into arguments exactly as Redis's
//! `sdssplitargs` splits them.
//!
//! - Arguments are separated by blanks (space, tab, CR, LF, VT, FF).
//! - `"..."` takes escapes: `\n \r \t \b \a`, `\xHH` (two hex digits), and
//!   `\` before any other byte stands for that byte.
//! - `'...'` takes only `\'`; every other byte is literal.
//! - A quote may open mid-argument (`a"b c"` is `ab c`), but a closing quote
//!   must end the argument: `"a"b` and `'it''s'` are errors, as in Redis.
//! - Unlike Redis, which works on C strings, a NUL byte is an ordinary byte
//!   rather than the end of the line.

/// Splits `line` (without its newline) into arguments. Fails with the offset
/// of the quote that did not close, or of the byte after a closing quote
/// that should have been a blank.
pub(crate) fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, usize> {
    let mut args = Vec::new();
    let mut at = 0;
    loop {
        while line.get(at).copied().is_some_and(is_blank) {
            at += 1;
        }
        if at >= line.len() {
            return Ok(args);
        }
        let (arg, next) = split_one(line, at)?;
        args.push(arg);
        at = next;
    }
}

#[derive(Clone, Copy)]
enum Quote {
    None,
    Double { opened_at: usize },
    Single { opened_at: usize },
}

/// One argument starting at `at` (not a blank); returns it and where the
/// scan stopped.
fn split_one(line: &[u8], mut at: usize) -> Result<(Vec<u8>, usize), usize> {
    let mut arg = Vec::new();
    let mut quote = Quote::None;
    loop {
        let byte = line.get(at).copied();
        let next = line.get(at + 1).copied();
        match (quote, byte) {
            (Quote::None, None | Some(b' ' | b'\n' | b'\r' | b'\t')) => return Ok((arg, at)),
            (Quote::None, Some(b'"')) => quote = Quote::Double { opened_at: at },
            (Quote::None, Some(b'\'')) => quote = Quote::Single { opened_at: at },
            (Quote::Double { opened_at } | Quote::Single { opened_at }, None) => {
                return Err(opened_at);
            }
            (Quote::Double { .. }, Some(b'\\')) if next == Some(b'x') => {
                match (hex_value(line.get(at + 2)), hex_value(line.get(at + 3))) {
                    (Some(high), Some(low)) => {
                        arg.push(high << 4 | low);
                        at += 3;
                    }
                    _ => {
                        arg.push(b'x');
                        at += 1;
                    }
                }
            }
            (Quote::Double { .. }, Some(b'\\')) if next.is_some() => {
                arg.push(match next {
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(b'b') => 0x08,
                    Some(b'a') => 0x07,
                    other => other.unwrap_or(b'\\'),
                });
                at += 1;
            }
            (Quote::Single { .. }, Some(b'\\')) if next == Some(b'\'') => {
                arg.push(b'\'');
                at += 1;
            }
            (Quote::Double { .. }, Some(b'"')) | (Quote::Single { .. }, Some(b'\'')) => {
                return match next {
                    Some(after) if !is_blank(after) => Err(at + 1),
                    _ => Ok((arg, at + 1)),
                };
            }
            (_, Some(byte)) => arg.push(byte),
        }
        at += 1;
    }
}

/// C's `isspace` in the "C" locale, which `sdssplitargs` skips between
/// arguments and requires after a closing quote.
fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    char::from(*byte?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, usize> {
        split_args(line.as_bytes()).map(|args| {
            args.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    }

    // Pins sdssplitargs's plain splitting: runs of blanks separate, leading
    // and trailing blanks vanish, an empty line has no arguments.
    #[test]
    fn split_args_splits_on_runs_of_blanks() {
        assert_eq!(split("  SET\ta   b \x0b").unwrap(), ["SET", "a", "b"]);
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split(" \t ").unwrap(), Vec::<String>::new());
    }

    // Pins double-quote escapes, including \xHH and a backslash before any
    // other byte, and that an invalid \x escape keeps the x.
    #[test]
    fn split_args_double_quotes_take_escapes() {
        assert_eq!(split(r#""a\x41""#).unwrap(), ["aA"]);
        assert_eq!(
            split(r#""\n\r\t\b\a\"\\\q""#).unwrap(),
            ["\n\r\t\x08\x07\"\\q"]
        );
        assert_eq!(split(r#""\xZZ""#).unwrap(), ["xZZ"]);
        assert_eq!(split(r#""a b" c"#).unwrap(), ["a b", "c"]);
        assert_eq!(split(r#"a"b c""#).unwrap(), ["ab c"]);
        assert_eq!(split(r#""""#).unwrap(), [""]);
    }

    // Pins single quotes: only \' is an escape; '' inside is an error as in
    // Redis, because a closing quote must end the argument.
    #[test]
    fn split_args_single_quotes_are_literal_but_for_escaped_quote() {
        assert_eq!(split(r"'it\'s'").unwrap(), ["it's"]);
        assert_eq!(split(r"'a\nb'").unwrap(), ["a\\nb"]);
        assert_eq!(split(r"'it''s'"), Err(4));
    }

    // Pins the unbalanced-quote cases sdssplitargs rejects, with offsets.
    #[test]
    fn split_args_rejects_unbalanced_quotes() {
        assert_eq!(split(r#"SET "abc"#), Err(4));
        assert_eq!(split(r"SET 'abc"), Err(4));
        assert_eq!(split(r#""abc\"#), Err(0));
        assert_eq!(split(r#""a"b"#), Err(3));
    }
}
