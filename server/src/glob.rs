//! Redis's glob patterns (KEYS, SCAN MATCH): `*`, `?`, `[abc]`, `[^a-z]`,
//! and `\` escaping, matched byte by byte as `stringmatchlen` does.

/// Whether `text` matches `pattern`. Iterative, with one backtrack point
/// for the last `*`, so time is O(pattern * text) at worst and there is no
/// recursion to exhaust the stack.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t])
                        && matched
                    {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last star swallow one more byte.
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches byte `c` against the class starting at `pattern[open] == '['`.
/// Returns whether it matched and the index after the class. An unclosed
/// class runs to the end of the pattern, as in Redis.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    let next = (i + 1).min(pattern.len());
    Some((matched != negate, next))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_like_redis() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("user:*", "user:1000"),
            ("*:*:*", "a:b:c"),
            ("a\\*b", "a*b"),
            ("[\\]]", "]"),
            ("**x", "yyx"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p.as_bytes(), t.as_bytes()), "{p} ~ {t}");
        }
        let no: &[(&str, &str)] = &[
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("user:*", "users"),
            ("a\\*b", "axb"),
            ("abc", "abcd"),
            ("", "a"),
        ];
        for (p, t) in no {
            assert!(!glob_match(p.as_bytes(), t.as_bytes()), "{p} !~ {t}");
        }
    }

    #[test]
    fn hostile_patterns_finish() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(5_000);
        assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
    }
}
