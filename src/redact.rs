//! Secret redaction (SPEC §7): API keys, tokens, keyfile contents and sensitive header values
//! never appear in output; at most an `sk-…abcd` style hint does.
//!
//! Owns: the redacted form of a secret and the walk that redacts a JSON document. Must not:
//! log or print.

use serde_json::Value;

/// The redacted form of a secret: at most its first 3 and last 4 characters, and only for a
/// secret long enough (≥ 16 characters) that they reveal nothing useful.
pub fn redact(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 16 {
        return "…".to_string();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// Whether a header or setting name says it carries a secret.
pub fn is_secret_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    ["auth", "key", "token", "cookie", "secret", "password"]
        .iter()
        .any(|w| l.contains(w))
        && l != "auth-keyfile"
}

/// Redacts every secret in a profile-shaped JSON document: `auth-key`, sensitive
/// `custom-headers` values, and any string under a key that names a token.
pub fn redact_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "custom-headers" {
                    if let Value::Object(h) = child {
                        for (name, hv) in h.iter_mut() {
                            if is_secret_name(name)
                                && let Value::String(s) = hv
                            {
                                *s = redact(s);
                            }
                        }
                    }
                    continue;
                }
                if is_secret_name(k)
                    && let Value::String(s) = child
                {
                    *s = redact(s);
                    continue;
                }
                redact_json(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_keep_at_most_a_hint() {
        assert_eq!(redact("sk-abcdefghijklmnopqrstuvwxyz1234"), "sk-…1234");
        assert_eq!(redact("short"), "…");
        let mut v = serde_json::json!({"ephemeralSettings": {
            "auth-key": "sk-live-0123456789abcdef", "auth-keyfile": "~/.k",
            "custom-headers": {"X-Api-Key": "0123456789abcdefXYZ", "X-Trace": "visible"}}});
        redact_json(&mut v);
        let s = v.to_string();
        assert!(!s.contains("0123456789abcdef"), "{s}");
        assert!(s.contains("~/.k") && s.contains("visible"), "{s}");
    }
}
