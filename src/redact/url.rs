//! The secrets a URL can carry (SPEC §7.1 "Secrets, harder cases"): its userinfo
//! (`https://user:pass@host`) and the values of its query and fragment (`?key=sk-…`), where a
//! key pasted into `base-url` ends up.
//!
//! Owns: finding URLs in a message and hiding those parts; listing them as known secrets.
//! Must not: touch anything else in the text (a URL's scheme, host, port and path stay
//! readable: they are what a user needs to fix a `base-url`).

/// Where each URL of `text` starts and ends (byte offsets): a scheme, `://`, then everything
/// up to whitespace, a quote, `<`, `>`, `` ` `` or `\` (the start of an escape in JSON text).
fn urls(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for sep in memchr::memmem::find_iter(b, b"://") {
        let start = b[..sep]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))
            .map_or(0, |p| p + 1);
        if start == sep
            || out
                .last()
                .is_some_and(|r: &std::ops::Range<usize>| r.end > sep)
        {
            continue;
        }
        let end = b[sep + 3..]
            .iter()
            .position(|c| {
                c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\')
            })
            .map_or(b.len(), |p| sep + 3 + p);
        out.push(start..end);
    }
    out
}

/// The secret parts of one URL (`scheme://…`), as ranges of `url`: the userinfo, and each
/// query or fragment parameter's value (the whole parameter when it has no `=`).
fn secret_ranges(url: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let Some(sep) = url.find("://") else {
        return out;
    };
    let auth_start = sep + 3;
    let auth_end = url[auth_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |p| auth_start + p);
    if let Some(at) = url[auth_start..auth_end].rfind('@') {
        out.push(auth_start..auth_start + at);
    }
    if let Some(q) = url[auth_end..].find(['?', '#']) {
        let mut at = auth_end + q + 1;
        for param in url[at..].split(['&', ';', '#', '?']) {
            let value = match param.find('=') {
                Some(eq) => at + eq + 1..at + param.len(),
                None => at..at + param.len(),
            };
            if !value.is_empty() {
                out.push(value);
            }
            at += param.len() + 1;
        }
    }
    out
}

/// `text` with the userinfo and the query and fragment values of every URL in it replaced by
/// `…` (SPEC §7.1): `https://user:pass@host/v1?key=sk-…&alt=sse` becomes
/// `https://…@host/v1?key=…&alt=…`. Parameter names stay, so the message still says what was
/// there.
pub fn hide_url_secrets(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for url in urls(text) {
        for r in secret_ranges(&text[url.clone()]) {
            out.push_str(&text[done..url.start + r.start]);
            out.push('…');
            done = url.start + r.end;
        }
    }
    out.push_str(&text[done..]);
    out
}

/// The secret parts of a URL (its userinfo, the user and password apart, and its query and
/// fragment values), for [`super::hide_known`]: a provider may echo them without the URL.
/// As in [`super::secret_parts`], parts under 8 characters are left out (a user name like
/// `user`, a flag like `alt=sse`): hiding them would garble every message.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in urls(url) {
        let one = &url[r];
        for s in secret_ranges(one) {
            let part = &one[s];
            out.push(part.to_string());
            if let Some((user, pass)) = part.split_once(':') {
                out.extend([user.to_string(), pass.to_string()]);
            }
        }
    }
    out.retain(|s| s.chars().count() >= 8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_values_are_hidden_the_rest_stays() {
        assert_eq!(
            hide_url_secrets(
                "POST https://user:sk-pass@h.example:8443/v1/chat?key=sk-q&alt=sse#t=x failed"
            ),
            "POST https://…@h.example:8443/v1/chat?key=…&alt=…#t=… failed"
        );
        assert_eq!(
            hide_url_secrets(r#"{"url":"http://127.0.0.1:9/v1?token"} and ftp://a@b"#),
            r#"{"url":"http://127.0.0.1:9/v1?…"} and ftp://…@b"#
        );
        for kept in [
            "no url here: key=sk-abc",
            "https://api.openai.com/v1/chat/completions",
            "a://",
            "://x@y",
            "http://h/v1?",
        ] {
            assert_eq!(hide_url_secrets(kept), kept);
        }
    }

    #[test]
    fn a_url_lists_its_secrets() {
        assert_eq!(
            url_secrets("https://me:pw123456@h/v1?key=sk-0123456789&x"),
            ["me:pw123456", "pw123456", "sk-0123456789"]
        );
        assert!(url_secrets("https://h.example/v1").is_empty());
    }
}
