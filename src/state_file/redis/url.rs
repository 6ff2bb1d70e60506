//! The shared state server's address (SPEC §5.9.1): `redis://[user:password@]host:port[/db]`
//! or `rediss://…` (TLS), with an optional `?prefix=` for the keys.
//!
//! Owns: reading the URL, the key prefix, and the one form of it that may be shown (the
//! password replaced by `***`, SPEC §7). Must not: connect anywhere.

use url::Url;

/// The key prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "llxprt:";

/// A parsed state URL.
#[derive(Clone)]
pub struct StateUrl {
    /// The URL the client connects to (without `prefix`).
    connect: String,
    /// Prepended to every key (`llxprt:lb/<name>`).
    pub prefix: String,
    /// The URL as it may be shown: password redacted.
    pub shown: String,
    /// The password, to scrub from any message that might echo it.
    secret: Option<String>,
}

impl std::fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in a debug print.
        f.write_str(&self.shown)
    }
}

impl StateUrl {
    /// Reads `text`; an error names what is wrong, never the password.
    pub fn parse(text: &str) -> Result<StateUrl, String> {
        let mut url = Url::parse(text.trim()).map_err(|e| {
            format!(
                "the state URL is not a URL ({e}); expected redis://[user:password@]host:port[/db]"
            )
        })?;
        match url.scheme() {
            "redis" | "rediss" => {}
            other => {
                return Err(format!(
                    "the state URL's scheme is \"{other}\"; only redis:// and rediss:// are supported"
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the state URL names no host".into());
        }
        let mut prefix = DEFAULT_PREFIX.to_string();
        let mut rest = Vec::new();
        for (k, v) in url.query_pairs() {
            if k == "prefix" {
                prefix = v.into_owned();
            } else {
                rest.push((k.into_owned(), v.into_owned()));
            }
        }
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
        let secret = url.password().map(percent_decode).filter(|p| !p.is_empty());
        let mut shown = url.clone();
        if shown.password().is_some() {
            // Only fails for URLs that cannot have a password, which a redis:// URL can.
            let _ = shown.set_password(Some("***"));
        }
        let mut shown = shown.to_string();
        if prefix != DEFAULT_PREFIX {
            shown.push_str(if shown.contains('?') { "&" } else { "?" });
            shown.push_str("prefix=");
            shown.push_str(&prefix);
        }
        Ok(StateUrl {
            connect: url.to_string(),
            prefix,
            shown,
            secret,
        })
    }

    /// The URL to connect to.
    pub(super) fn connect(&self) -> &str {
        &self.connect
    }

    /// `text` with the password (raw or percent-encoded) replaced by `***`, for a message
    /// that may echo what the client library saw.
    pub fn scrub(&self, text: &str) -> String {
        match &self.secret {
            Some(s) => {
                let encoded: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
                text.replace(s.as_str(), "***").replace(&encoded, "***")
            }
            None => text.to_string(),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted_and_prefix_taken_out() {
        let u = StateUrl::parse("redis://ops:s%40cret-pw-123@Cache.example:6380/2?prefix=team-a:")
            .unwrap();
        assert_eq!(u.prefix, "team-a:");
        assert_eq!(
            u.shown,
            "redis://ops:***@Cache.example:6380/2?prefix=team-a:"
        );
        assert_eq!(
            u.connect(),
            "redis://ops:s%40cret-pw-123@Cache.example:6380/2"
        );
        assert!(!format!("{u:?}").contains("cret"));
        assert_eq!(u.scrub("WRONGPASS s@cret-pw-123"), "WRONGPASS ***");
        let plain = StateUrl::parse("redis://127.0.0.1:7000").unwrap();
        assert_eq!(plain.prefix, DEFAULT_PREFIX);
        assert_eq!(plain.shown, "redis://127.0.0.1:7000");
    }

    #[test]
    fn other_schemes_and_garbage_are_errors_that_name_no_secret() {
        let e = StateUrl::parse("http://u:hunter2hunter2@x").err().unwrap();
        assert!(e.contains("\"http\"") && !e.contains("hunter2"), "{e}");
        assert!(StateUrl::parse("not a url").is_err());
        assert!(StateUrl::parse("redis://").is_err());
    }
}
