//! What `serve` refuses before it looks at a request (SPEC §7: `serve` spends the user's keys,
//! so it only answers what a local program meant to send).
//!
//! Owns: the loopback test of the listen address, the `Host` check against DNS rebinding, the
//! bearer-token check of `--api-key`, and the content-type and size checks of a POST. Must not:
//! read bodies or answer (the caller writes the refusal).
//!
//! Decisions where SPEC is silent:
//! - Loopback hosts are `localhost`, any `*.localhost` (RFC 6761 keeps them on the machine), and
//!   loopback IP literals (`127.0.0.0/8`, `[::1]`), with any port.
//! - With a non-loopback `--listen` (which requires `--api-key`), any `Host` is accepted: the
//!   clients then name the machine by its own name, and a rebinding page cannot send the key.
//! - With `--api-key`, every route needs the key, `/health` included.

use std::net::{IpAddr, SocketAddr};

use super::conn::{Head, MAX_BODY};

/// A refusal: status, OpenAI error `type` and `code`, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Error type.
    pub kind: &'static str,
    /// Error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn refuse(status: u16, kind: &'static str, code: &'static str, message: String) -> Refusal {
    Refusal {
        status,
        kind,
        code,
        message,
    }
}

/// Whether the listen address is a loopback one (SPEC §7).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Whether a `Host` header names this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, port)) if port.strip_prefix(':').is_some_and(is_port) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Compares without an early exit, so the time taken does not tell how much of a guessed key
/// was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The checks every request passes first: `Host` (when listening on loopback) and the API key.
pub fn check_origin(head: &Head, loopback: bool, api_key: Option<&str>) -> Result<(), Refusal> {
    if head.headers.iter().filter(|(k, _)| k == "host").count() > 1 {
        return Err(refuse(
            400,
            "invalid_request_error",
            "bad_host",
            "the request has more than one Host header".into(),
        ));
    }
    if loopback {
        match head.header("host") {
            Some(h) if is_loopback_host(h) => {}
            Some(_) => {
                return Err(refuse(
                    403,
                    "invalid_request_error",
                    "forbidden_host",
                    "the Host header does not name a loopback address; llxprt serve answers only local programs (DNS rebinding protection)".into(),
                ));
            }
            None => {
                return Err(refuse(
                    400,
                    "invalid_request_error",
                    "missing_host",
                    "the request has no Host header".into(),
                ));
            }
        }
    }
    if let Some(key) = api_key {
        let sent = head
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        if !sent.is_some_and(|s| same(s.as_bytes(), key.as_bytes())) {
            return Err(refuse(
                401,
                "authentication_error",
                "invalid_api_key",
                "missing or wrong API key: send the key llxprt serve was given (--api-key-file, LLXPRT_SERVE_API_KEY or --api-key) as Authorization: Bearer KEY".into(),
            ));
        }
    }
    Ok(())
}

/// The checks of a POST with a JSON body, before the body is read: a `Content-Length` (no
/// chunked uploads), `Content-Type: application/json` (a web page's simple cross-origin POST
/// cannot send it), and at most 8 MiB (SPEC §7). Returns the body length.
pub fn check_json_post(head: &Head) -> Result<usize, Refusal> {
    if head.chunked {
        return Err(refuse(
            411,
            "invalid_request_error",
            "length_required",
            "send the request body with a Content-Length (chunked request bodies are not accepted)"
                .into(),
        ));
    }
    let media = head
        .header("content-type")
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return Err(refuse(
            415,
            "invalid_request_error",
            "unsupported_media_type",
            format!(
                "the request body must be sent as Content-Type: application/json (got {})",
                head.header("content-type").unwrap_or("none")
            ),
        ));
    }
    let Some(len) = head.content_length else {
        return Err(refuse(
            411,
            "invalid_request_error",
            "length_required",
            "the request has no Content-Length".into(),
        ));
    };
    if len > MAX_BODY {
        return Err(refuse(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("the request body is {len} bytes; the limit is {MAX_BODY} (8 MiB)"),
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            keep_alive: true,
            content_length: Some(2),
            chunked: false,
            expect_continue: false,
        }
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:4000",
            "LOCALHOST.",
            "api.localhost:1",
            "127.0.0.1",
            "127.1.2.3:4000",
            "[::1]",
            "[::1]:4000",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "localhost.evil.com",
            "evil.com:4000",
            "10.0.0.1",
            "0.0.0.0",
            "[::]:4000",
            "::1",
            "localhost:x",
            "[::1]x",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn origin_and_key() {
        let h = head(&[("host", "evil.example:4000")]);
        assert_eq!(check_origin(&h, true, None).unwrap_err().status, 403);
        assert!(check_origin(&h, false, None).is_ok());
        let h = head(&[("host", "localhost:4000"), ("authorization", "Bearer k1")]);
        assert!(check_origin(&h, true, Some("k1")).is_ok());
        assert_eq!(check_origin(&h, true, Some("k2")).unwrap_err().status, 401);
        assert_eq!(
            check_origin(&head(&[]), true, None).unwrap_err().status,
            400
        );
    }

    #[test]
    fn json_posts() {
        let mut h = head(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(check_json_post(&h), Ok(2));
        h.headers[0].1 = "text/plain".into();
        assert_eq!(check_json_post(&h).unwrap_err().status, 415);
        h.headers[0].1 = "application/json".into();
        h.content_length = Some(MAX_BODY + 1);
        assert_eq!(check_json_post(&h).unwrap_err().status, 413);
        h.content_length = None;
        assert_eq!(check_json_post(&h).unwrap_err().status, 411);
    }
}
