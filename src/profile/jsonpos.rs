//! Finding where a JSON pointer points in the source text.
//!
//! Owns: mapping a JSON pointer (RFC 6901) to byte spans of the key and the value, and a byte
//! offset to a 1-based line and column. serde_json keeps no spans, so diagnostics (SPEC §2.3)
//! find their place here. It only ever runs on text serde_json already parsed, so the nesting
//! depth is bounded by serde_json's recursion limit; the walk is iterative anyway. Must not:
//! allocate per byte or panic on any input.

use std::ops::Range;

/// Where a pointer's target sits in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The member name (with its quotes) when the target is an object member.
    pub key: Option<Range<usize>>,
    /// The value itself.
    pub value: Range<usize>,
    /// False when only a prefix of the pointer was found (the span is of that prefix).
    pub exact: bool,
}

/// Splits a JSON pointer into its unescaped reference tokens.
pub fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Escapes one reference token for a JSON pointer.
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Finds the key and value spans of `pointer` in `text`; when part of the path is missing,
/// the deepest part found is returned with `exact: false`.
pub fn locate(text: &str, pointer: &str) -> Option<Located> {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    if pos >= b.len() {
        return None;
    }
    let mut key = None;
    for token in pointer_tokens(pointer) {
        let found = match b[pos] {
            b'{' => find_member(text, pos, &token),
            b'[' => token
                .parse::<usize>()
                .ok()
                .and_then(|i| find_element(b, pos, i).map(|v| (None, v))),
            _ => None,
        };
        if let Some((k, v)) = found {
            key = k;
            pos = v;
        } else {
            let end = skip_value(b, pos);
            return Some(Located {
                key,
                value: pos..end,
                exact: false,
            });
        }
    }
    let end = skip_value(b, pos);
    Some(Located {
        key,
        value: pos..end,
        exact: true,
    })
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// End (exclusive) of the string starting at `pos` (which holds the opening quote).
fn skip_string(b: &[u8], pos: usize) -> usize {
    let mut i = pos + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the value starting at `pos`.
fn skip_value(b: &[u8], pos: usize) -> usize {
    if pos >= b.len() {
        return pos;
    }
    match b[pos] {
        b'"' => skip_string(b, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => {
            let mut i = pos;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            i
        }
    }
}

fn key_matches(text: &str, span: Range<usize>, token: &str) -> bool {
    let raw = &text[span.start + 1..span.end.saturating_sub(1).max(span.start + 1)];
    if raw.contains('\\') {
        serde_json::from_str::<String>(&text[span]).is_ok_and(|k| k == token)
    } else {
        raw == token
    }
}

/// Finds member `token` of the object at `pos`: (key span, value start). The last duplicate
/// wins, as in serde_json.
fn find_member(text: &str, pos: usize, token: &str) -> Option<(Option<Range<usize>>, usize)> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, pos + 1);
    let mut found = None;
    while i < b.len() && b[i] == b'"' {
        let key_end = skip_string(b, i);
        let colon = skip_ws(b, key_end);
        if colon >= b.len() || b[colon] != b':' {
            break;
        }
        let value = skip_ws(b, colon + 1);
        if key_matches(text, i..key_end, token) {
            found = Some((Some(i..key_end), value));
        }
        let after = skip_ws(b, skip_value(b, value));
        if after < b.len() && b[after] == b',' {
            i = skip_ws(b, after + 1);
        } else {
            break;
        }
    }
    found
}

fn find_element(b: &[u8], pos: usize, index: usize) -> Option<usize> {
    let mut i = skip_ws(b, pos + 1);
    if i < b.len() && b[i] == b']' {
        return None;
    }
    for n in 0.. {
        if i >= b.len() {
            return None;
        }
        if n == index {
            return Some(i);
        }
        let after = skip_ws(b, skip_value(b, i));
        if after < b.len() && b[after] == b',' {
            i = skip_ws(b, after + 1);
        } else {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "{\n  \"a\": {\"b\": [10, {\"c/d\": true}]},\n  \"k\\u0065y\": \"v\"\n}";

    fn at(pointer: &str) -> (usize, usize) {
        let l = locate(DOC, pointer).unwrap();
        line_col(DOC, l.key.unwrap_or(l.value).start)
    }

    #[test]
    fn finds_members_elements_and_escaped_keys() {
        assert_eq!(at(""), (1, 1));
        assert_eq!(at("/a"), (2, 3));
        assert_eq!(at("/a/b"), (2, 9));
        let l = locate(DOC, "/a/b/1/c~1d").unwrap();
        assert!(l.exact);
        assert_eq!(&DOC[l.value], "true");
        assert_eq!(at("/key"), (3, 3));
        let first = locate(DOC, "/a/b/0").unwrap();
        assert_eq!(&DOC[first.value], "10");
    }

    #[test]
    fn missing_paths_return_the_deepest_prefix() {
        let l = locate(DOC, "/a/zzz/q").unwrap();
        assert!(!l.exact);
        assert_eq!(&DOC[l.key.unwrap()], "\"a\"");
        assert!(locate("", "/x").is_none());
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_col("éé\"x\"", 4), (1, 3));
    }
}
