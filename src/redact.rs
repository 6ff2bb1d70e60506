//! Secret redaction (SPEC §7): API keys, tokens, keyfile contents and sensitive header values
//! never appear in output; at most an `sk-…abcd` style hint does.
//!
//! Owns: the redacted form of a secret, the walk that redacts a JSON document, hiding the
//! secrets a request carried in what a server said ([`hide_known`], in [`known`]), a URL's
//! userinfo and query ([`url`]), and scrubbing what looks like a key out of a provider's
//! message ([`scrub`]). Must not: log or print; alter an answer's text (only llxprt's own
//! messages go through here).

mod known;
mod url;

use serde_json::Value;

pub use url::{hide_url_secrets, url_secrets};

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

/// The parts of a secret header value that a server may quote on their own, for
/// [`hide_known`]: the whole value, each word of it (split at whitespace, `;` and `,`) and
/// each word's part after `=` (a cookie's value) — so `Bearer <token>` hides the token and
/// `sid=<v>; theme=dark` hides `<v>`, while an auth scheme like `Bearer` stays readable.
/// Parts shorter than 8 characters are left out: they are no secret worth the name (`on`,
/// `v2` under an `X-Auth-Mode` header) and hiding them would garble every message.
pub fn secret_parts(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let words = value.split(|c: char| c.is_whitespace() || c == ';' || c == ',');
    let parts = std::iter::once(value.trim()).chain(
        words
            .flat_map(|w| [Some(w), w.split_once('=').map(|(_, v)| v)])
            .flatten(),
    );
    for part in parts {
        if part.chars().count() >= 8 && !out.iter().any(|o| o == part) {
            out.push(part.to_string());
        }
    }
    out
}

/// `text` with each of `secrets` hidden (SPEC §7, §7.1): for a message that may quote what a
/// request carried — a provider's error echoing the key, a token or a header it refused.
/// A secret is found whatever its ASCII case and `%XX`-encoded; found whole it becomes its
/// redacted form (the longest secret wins where one contains another); a secret of 16
/// characters or more is also hidden by any run of 8 of its characters, counting those its
/// redacted form shows (see [`known`]). Text without them is returned unchanged.
pub fn hide_known<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let list: Vec<&str> = secrets.iter().map(AsRef::as_ref).collect();
    known::hide(text, &list)
}

/// The secrets a backend's `custom-headers` carry, for [`hide_known`]: every header's value,
/// whatever the header's name (SPEC §7.1: `X-Credential` is as secret as `Authorization`),
/// in the parts [`secret_parts`] lists.
pub fn header_secrets<'a>(headers: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    headers.into_iter().flat_map(|v| secret_parts(v)).collect()
}

/// Redacts every secret in a profile-shaped JSON document: `auth-key`, every `custom-headers`
/// value (whatever the header's name, SPEC §7.1, and whatever its type: a header value of the
/// wrong type is still the secret), any string under a key that names a token, and the
/// userinfo and query of a URL anywhere (a key pasted into `base-url`). The profile's own
/// `auth` object (`{"type": "oauth", "buckets": […]}`) is no secret; its members are judged by
/// name.
pub fn redact_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "custom-headers" {
                    if let Value::Object(h) = child {
                        h.values_mut().for_each(redact_all);
                    } else {
                        redact_all(child);
                    }
                    continue;
                }
                if is_secret_name(k) && !(k == "auth" && child.is_object()) {
                    redact_secret_value(child);
                    continue;
                }
                redact_json(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_json),
        Value::String(s) if s.contains("://") => *s = hide_url_secrets(s),
        _ => {}
    }
}

/// Redacts every string and long number inside `v`, whatever the member names.
fn redact_all(v: &mut Value) {
    match v {
        Value::Object(m) => m.values_mut().for_each(redact_all),
        Value::Array(a) => a.iter_mut().for_each(redact_all),
        leaf => redact_secret_value(leaf),
    }
}

/// Character ranges of the secrets in one line of JSON source text, each with its redacted
/// replacement: the value that follows a member name that names a secret ([`is_secret_name`])
/// or `custom-headers` (every header value is a secret, SPEC §7.1), whether a string (its
/// contents), a long bare token (≥ 16 characters: a key typed without quotes, never a token
/// count), or every such value in an array or object opened on that line; only the members of
/// `auth` are judged by their own names, as in [`redact_json`]. Any other string holding a
/// URL loses its userinfo and query ([`hide_url_secrets`]).
/// Used for the snippets of diagnostics, which show source lines
/// of files that may hold a raw `auth-key` (SPEC §7). Works on broken JSON too: an unclosed
/// string runs to the end of the line.
pub fn secret_spans(line: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let c: Vec<char> = line.chars().collect();
    let string_end = |start: usize| -> (usize, bool) {
        let mut i = start + 1;
        while i < c.len() {
            match c[i] {
                '\\' => i += 2,
                '"' => return (i + 1, true),
                _ => i += 1,
            }
        }
        (c.len(), false)
    };
    let skip_ws = |mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let token_end = |mut i: usize| {
        while i < c.len() && !matches!(c[i], ',' | '}' | ']' | ':') && !c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut push = |range: std::ops::Range<usize>, quoted: bool| {
        let text: String = c[range.clone()].iter().collect();
        if quoted || text.chars().count() >= 16 {
            out.push((range, redact(&text)));
        }
    };
    let mut in_urls = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] != '"' {
            i += 1;
            continue;
        }
        let (end, closed) = string_end(i);
        let colon = skip_ws(end);
        if !(closed && colon < c.len() && c[colon] == ':') {
            // A string value: a URL in it loses its userinfo and query.
            let inner = i + 1..if closed { end - 1 } else { end };
            let text: String = c[inner.clone()].iter().collect();
            if text.contains("://") {
                let hidden = hide_url_secrets(&text);
                if hidden != text {
                    in_urls.push((inner, hidden));
                }
            }
            i = end;
            continue;
        }
        let name: String = c[i + 1..end - 1].iter().collect();
        if !is_secret_name(&name) && name != "custom-headers" {
            i = colon + 1;
            continue;
        }
        let v = skip_ws(colon + 1);
        if v >= c.len() {
            break;
        }
        match c[v] {
            '"' => {
                let (vend, vclosed) = string_end(v);
                push(v + 1..if vclosed { vend - 1 } else { vend }, true);
                i = vend;
            }
            // The profile's `auth` object is structure (`type`, `buckets`): its members are
            // judged by their own names.
            '{' if name == "auth" => i = v + 1,
            '[' | '{' => {
                // Everything inside, member names excepted, up to the matching bracket: under
                // a secret's name even an object (a header value of the wrong type) is the
                // secret.
                let mut depth = 0usize;
                let mut j = v;
                while j < c.len() {
                    match c[j] {
                        '[' | '{' => depth += 1,
                        ']' | '}' => {
                            depth -= 1;
                            if depth == 0 {
                                j += 1;
                                break;
                            }
                        }
                        '"' => {
                            let (send, sclosed) = string_end(j);
                            let after = skip_ws(send);
                            if !(after < c.len() && c[after] == ':') {
                                push(j + 1..if sclosed { send - 1 } else { send }, true);
                            }
                            j = send;
                            continue;
                        }
                        ch if ch.is_whitespace() || ch == ',' || ch == ':' => {}
                        _ => {
                            let tend = token_end(j);
                            push(j..tend, false);
                            j = tend.max(j + 1);
                            continue;
                        }
                    }
                    j += 1;
                }
                i = j;
            }
            _ => {
                let tend = token_end(v);
                push(v..tend, false);
                i = tend.max(v + 1);
            }
        }
    }
    if !in_urls.is_empty() {
        out.extend(in_urls);
        out.sort_by_key(|(r, _)| r.start);
    }
    out
}

/// Redacts a value stored under a secret's name: a string, a long number (a key typed without
/// quotes), or each of those in an array (SPEC §7: a broken profile shown by `profile show`
/// must not print its key either).
fn redact_secret_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = redact(s),
        Value::Number(n) if n.to_string().len() >= 16 => *v = Value::String(redact(&n.to_string())),
        Value::Array(_) | Value::Object(_) => redact_all(v),
        _ => {}
    }
}

/// Replaces anything that looks like a key or token in a message with its redacted form, and
/// a URL's userinfo and query values with `…` (SPEC §7, §7.1).
pub fn scrub(message: &str) -> String {
    hide_url_secrets(message)
        .split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
        .map(|w| {
            let core = w
                .trim_end_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',');
            let looks_secret = core.len() >= 20
                && (core.starts_with("sk-")
                    || core.starts_with("AIza")
                    || core.starts_with("ya29.")
                    || core.starts_with("Bearer"))
                || (core.len() >= 32
                    && core
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            if looks_secret {
                w.replacen(core, &redact(core), 1)
            } else {
                w.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

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
        // SPEC §7.1: every custom header's value is a secret, whatever the header's name.
        assert!(s.contains("~/.k") && !s.contains("visible"), "{s}");
        let mut v = serde_json::json!({"auth": "sk-live-0123456789abcdef"});
        redact_json(&mut v);
        assert!(!v.to_string().contains("0123456789abcdef"), "{v}");
        let mut v = serde_json::json!({"auth-key": ["sk-live-0123456789abcdef"],
            "X-Api-Key": 98_765_432_109_876_543u64, "max_tokens": 4096,
            "auth": {"type": "oauth", "buckets": ["work"]}});
        redact_json(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("0123456789abcdef") && !s.contains("432109"),
            "{s}"
        );
        assert!(
            s.contains("4096") && s.contains("oauth") && s.contains("work"),
            "{s}"
        );
        // A header value of the wrong type is still the secret.
        let mut v = serde_json::json!({"custom-headers": {
            "Cookie": ["sid=0123456789abcdefXYZ"], "X-Api-Key": {"v": "0123456789abcdefXYZ"},
            "X-Trace": ["visible"]}});
        redact_json(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("0123456789abcdef") && !s.contains("visible"),
            "{s}"
        );
    }

    #[test]
    fn every_custom_header_and_a_urls_userinfo_and_query_are_secret() {
        let cred = "cr.secret.0123456789abcdef.zz";
        let mut v = serde_json::json!({"ephemeralSettings": {
            "custom-headers": {"X-Credential": cred, "X-Title": "my-app"},
            "base-url": "https://me:pw.secret.0123456789@h.example/v1?key=q.secret.0123456789",
            "model": "gpt-4o"}});
        redact_json(&mut v);
        let s = v.to_string();
        assert!(!s.contains("secret") && !s.contains("my-app"), "{s}");
        assert!(
            s.contains("https://…@h.example/v1?key=…") && s.contains("gpt-4o"),
            "{s}"
        );
        // The parts a server may quote, whatever the header's name.
        let known = header_secrets([&cred.to_string(), &"ab".to_string()]);
        assert_eq!(known, [cred]);
        // Source lines of a diagnostic snippet.
        for line in [
            format!(r#"  "custom-headers": {{"X-Credential": "{cred}"}},"#),
            r#"  "base-url": "https://me:pw.secret.0123456789@h.example/v1?key=q.secret.0123456789","#
                .to_string(),
        ] {
            let shown = apply(&line);
            assert!(!shown.contains("secret"), "{shown}");
        }
        assert_eq!(
            apply(r#""base-url": "https://h.example/v1""#),
            r#""base-url": "https://h.example/v1""#
        );
    }

    #[test]
    fn echoed_secrets_are_hidden_in_every_form() {
        let key = "sk-proj-Zq8Wm3Xy0123456789abcdef";
        let middle: String = key.chars().skip(10).take(10).collect();
        for echo in [
            key.to_string(),
            key.to_ascii_uppercase(),
            key.replace('-', "%2D"),
            key.bytes().fold(String::new(), |mut o, b| {
                let _ = write!(o, "%{b:02x}");
                o
            }),
            middle,
        ] {
            let shown = hide_known(&format!("Incorrect API key provided: {echo}."), &[key]);
            assert!(shown.starts_with("Incorrect API key provided: "), "{shown}");
            let low = shown.to_ascii_lowercase();
            let k = key.to_ascii_lowercase();
            for i in 0..=k.len() - 8 {
                assert!(!low.contains(&k[i..i + 8]), "{echo} shown as {shown}");
            }
        }
        // A short secret only whole; unrelated text untouched.
        assert_eq!(hide_known("code ABCDEFGHIJ", &["abcdefghij"]), "code …");
        assert_eq!(
            hide_known("code ABCDEFGHI", &["abcdefghij"]),
            "code ABCDEFGHI"
        );
        let plain = "The server is overloaded; retry in 20 s (request 5f2c).";
        assert_eq!(hide_known(plain, &[key]), plain);
    }

    #[test]
    fn known_secrets_are_hidden_whole_and_in_parts() {
        let header = "Bearer ha.secret.0123456789abcdef.zz";
        let cookie = "sid=ck.secret.0123456789abcdef.zz; theme=dark";
        let mut known = secret_parts(header);
        known.extend(secret_parts(cookie));
        assert!(known.contains(&"ha.secret.0123456789abcdef.zz".to_string()));
        assert!(known.contains(&"ck.secret.0123456789abcdef.zz".to_string()));
        assert!(!known.contains(&"Bearer".to_string()), "{known:?}");
        for echo in [
            format!("bad header {header}"),
            "token ha.secret.0123456789abcdef.zz refused".to_string(),
            format!("cookie: {cookie}"),
            "sid ck.secret.0123456789abcdef.zz unknown".to_string(),
        ] {
            let shown = hide_known(&echo, &known);
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
        }
        assert_eq!(hide_known("nothing here", &known), "nothing here");
        assert!(secret_parts("on").is_empty());
    }

    fn apply(line: &str) -> String {
        let c: Vec<char> = line.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        for (r, repl) in secret_spans(line) {
            out.extend(&c[i..r.start]);
            out.push_str(&repl);
            i = r.end;
        }
        out.extend(&c[i..]);
        out
    }

    #[test]
    fn source_lines_lose_their_secrets() {
        let secret = "sk-live-SECRET-0123456789abcdef";
        for line in [
            format!(r#"    "auth-key": "{secret}","#),
            format!(
                r#"  "custom-headers": {{"Authorization": "Bearer {secret}", "X-Trace": "on"}}"#
            ),
            format!(r#"    "auth-key": ["{secret}", 12345678901234567890],"#),
            format!(r#"  "api_key": {{"token": "{secret}"}}"#),
            format!(r#"    "auth-key": "{secret}"#),
            r#"    "X-Api-Key": 12345678901234567890"#.to_string(),
            format!(r#"  "auth": {{"type": "apikey"}}, "token": "{secret}""#),
            format!(r#"    "custom-headers": {{"X-Api-Key": {{"v": "{secret}"}}}}"#),
        ] {
            let shown = apply(&line);
            assert!(!shown.contains("SECRET-0123"), "{shown}");
            assert!(!shown.contains("5678901234567"), "{shown}");
        }
        let kept = r#""auth-keyfile": "~/.k", "X-Trace": "on", "token": true, "max_tokens": 4096, "auth": {"type": "oauth", "buckets": ["work"]}"#;
        assert_eq!(apply(kept), kept);
    }

    #[test]
    fn scrub_hides_a_urls_userinfo_and_query() {
        let m = scrub("cannot reach https://u:kf.secret.1@h.example/v1?key=kf.secret.2 (refused)");
        assert_eq!(m, "cannot reach https://…@h.example/v1?key=… (refused)");
    }

    #[test]
    fn scrub_hides_keys_in_messages() {
        let m =
            scrub("Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz123456. See docs");
        assert!(!m.contains("abcdefghijklmnop"), "{m}");
        assert!(m.contains("Incorrect API key provided"), "{m}");
    }
}
