//! The OAuth endpoints (SPEC §6.3): the token endpoint's authorization-code exchange (RFC 6749
//! §4.1.3, with the PKCE verifier of RFC 7636 §4.5), the `refresh_token` grant (RFC 6749 §6),
//! and the device authorization grant (RFC 8628 §3.1, §3.4–3.5).
//!
//! HTTP follows the transport's conventions (SPEC §6.2): ureq with statuses not turned into
//! errors, proxies from the environment, a connect timeout and a total deadline, capped bodies.
//! It has its own agent: token requests are few, go to other hosts than the providers, and must
//! not follow redirects (a redirected POST would carry a refresh token elsewhere).
//!
//! Owns: the form bodies and reading token responses. Must not: store anything, or put a
//! token, code or verifier in an error message (only the server's `error` code and a scrubbed
//! description are kept).

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::redact::scrub;

/// Largest token-endpoint response read.
pub const MAX_TOKEN_BODY: u64 = 1024 * 1024;
/// Connect timeout of a token request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Total deadline of one token request (connect, send, response, body).
pub const TOTAL_TIMEOUT: Duration = Duration::from_mins(1);
/// Longest token accepted (a JWT with many claims stays far below).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Tokens from a token response. `Debug` shows no token.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// A refresh token, when the server issued one.
    pub refresh_token: Option<String>,
    /// Lifetime in seconds, when given.
    pub expires_in: Option<u64>,
    /// Granted scope, when given.
    pub scope: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tokens(refresh: {}, expires_in: {:?})",
            self.refresh_token.is_some(),
            self.expires_in
        )
    }
}

/// Refuses an endpoint that would carry secrets in clear text: `https://`, or `http://` only to
/// a loopback host (local test servers, development gateways).
pub fn check_endpoint(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let name = if host.starts_with('[') {
            host.split(']').next().map(|h| format!("{h}]"))
        } else {
            host.split(':').next().map(str::to_string)
        }
        .unwrap_or_default();
        if matches!(name.as_str(), "localhost" | "[::1]")
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback())
        {
            return Ok(());
        }
    }
    Err(format!(
        "endpoint \"{url}\" must be https:// (http:// only to a loopback address)"
    ))
}

/// A token usable in an HTTP header: 1–16384 visible ASCII characters.
pub fn header_safe(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("llxprt/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(TOTAL_TIMEOUT))
            .max_redirects(0)
            .build()
            .new_agent()
    })
}

/// `text` with every secret `form` carried (a refresh token, a code, a PKCE verifier, a
/// device code) redacted: a token endpoint may quote what it refused (SPEC §7), and the
/// generic scrubber does not recognise every token's shape.
fn hide_form(form: &[(&str, &str)], text: &str) -> String {
    let secrets: Vec<&str> = form
        .iter()
        .filter(|(k, _)| {
            matches!(
                *k,
                "refresh_token" | "code" | "code_verifier" | "device_code"
            )
        })
        .map(|(_, v)| *v)
        .collect();
    crate::redact::hide_known(text, &secrets)
}

/// POSTs a form and reads the JSON answer (a body that is not JSON reads as `null`).
fn post_form(url: &str, form: &[(&str, &str)]) -> Result<(u16, Value), String> {
    check_endpoint(url)?;
    let mut resp = agent()
        .post(url)
        .header("accept", "application/json")
        .send_form(form.iter().copied())
        .map_err(|e| {
            let text: String = e.to_string().chars().take(200).collect();
            format!("cannot reach {url}: {text}")
        })?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_TOKEN_BODY)
        .read_to_vec()
        .map_err(|e| {
            let text: String = e.to_string().chars().take(200).collect();
            format!("cannot read the answer of {url}: {text}")
        })?;
    let mut v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        // An error answer is only read for its error text: its secrets go before anything
        // cuts that text short (a cut key would no longer match, SPEC §7).
        hide_in_strings(&mut v, form);
    }
    Ok((status, v))
}

fn hide_in_strings(v: &mut Value, form: &[(&str, &str)]) {
    match v {
        Value::String(s) => *s = hide_form(form, s),
        Value::Array(a) => a.iter_mut().for_each(|x| hide_in_strings(x, form)),
        Value::Object(m) => m.values_mut().for_each(|x| hide_in_strings(x, form)),
        _ => {}
    }
}

fn text_field(v: &Value, name: &str) -> Option<String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// The server's `error` and `error_description` (RFC 6749 §5.2), scrubbed and cut short.
fn error_text(status: u16, v: &Value) -> String {
    let code = text_field(v, "error");
    let description = text_field(v, "error_description");
    let mut s = format!("the token endpoint answered {status}");
    if let Some(c) = code {
        s.push_str(": ");
        s.push_str(&scrub(&c.chars().take(100).collect::<String>()));
    }
    if let Some(d) = description {
        s.push_str(" (");
        s.push_str(&scrub(&d.chars().take(200).collect::<String>()));
        s.push(')');
    }
    s
}

fn seconds(v: &Value, name: &str) -> Option<u64> {
    match v.get(name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads a token response (RFC 6749 §5.1): `access_token` is required, `token_type` must be
/// `Bearer` when given.
fn tokens(status: u16, v: &Value) -> Result<Tokens, String> {
    if !(200..300).contains(&status) {
        return Err(error_text(status, v));
    }
    let access_token = text_field(v, "access_token")
        .ok_or_else(|| format!("the token endpoint answered {status} without an access_token"))?;
    if access_token.len() > MAX_TOKEN_LEN {
        // SPEC §7: the limit is named (the token never is).
        return Err(format!(
            "the token endpoint sent an access token of {} bytes; at most {MAX_TOKEN_LEN} are accepted",
            access_token.len()
        ));
    }
    if !header_safe(&access_token) {
        return Err("the token endpoint sent an access token that is not a header value".into());
    }
    if let Some(t) = text_field(v, "token_type")
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "the token endpoint issued a \"{}\" token; llxprt sends Bearer tokens only",
            t.chars().take(40).collect::<String>()
        ));
    }
    let refresh_token = text_field(v, "refresh_token").filter(|r| header_safe(r));
    Ok(Tokens {
        access_token,
        refresh_token,
        expires_in: seconds(v, "expires_in"),
        scope: text_field(v, "scope"),
    })
}

/// Exchanges an authorization code with its PKCE verifier (RFC 6749 §4.1.3, RFC 7636 §4.5).
pub fn exchange_code(
    token_url: &str,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Tokens, String> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    post_form(token_url, &form)
        .and_then(|(status, v)| tokens(status, &v))
        .map_err(|e| hide_form(&form, &e))
}

/// The `refresh_token` grant (RFC 6749 §6). No `scope` is sent: omitted, it means the scope
/// originally granted.
pub fn refresh(
    token_url: &str,
    client_id: Option<&str>,
    refresh_token: &str,
) -> Result<Tokens, String> {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    post_form(token_url, &form)
        .and_then(|(status, v)| tokens(status, &v))
        .map_err(|e| hide_form(&form, &e))
}

/// A device authorization response (RFC 8628 §3.2). `Debug` hides the device code.
pub struct DeviceAuth {
    /// The device code (secret: only sent back to the token endpoint).
    pub device_code: String,
    /// The code the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in, when given.
    pub verification_uri_complete: Option<String>,
    /// Lifetime of the codes (s).
    pub expires_in: u64,
    /// Polling interval (s).
    pub interval: u64,
}

impl std::fmt::Debug for DeviceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceAuth({}, {})",
            self.user_code, self.verification_uri
        )
    }
}

/// Starts the device flow (RFC 8628 §3.1).
pub fn device_start(
    device_url: &str,
    client_id: &str,
    scope: Option<&str>,
) -> Result<DeviceAuth, String> {
    let mut form = vec![("client_id", client_id)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let (status, v) = post_form(device_url, &form)?;
    if !(200..300).contains(&status) {
        return Err(error_text(status, &v).replace("token endpoint", "device endpoint"));
    }
    let field = |n: &str| {
        text_field(&v, n).ok_or_else(|| format!("the device endpoint's answer has no {n}"))
    };
    let printable = |s: &str| s.chars().all(|c| !c.is_control()) && s.len() <= 2048;
    let auth = DeviceAuth {
        device_code: field("device_code")?,
        user_code: field("user_code")?,
        verification_uri: text_field(&v, "verification_uri")
            .or_else(|| text_field(&v, "verification_url"))
            .ok_or("the device endpoint's answer has no verification_uri")?,
        verification_uri_complete: text_field(&v, "verification_uri_complete"),
        // RFC 8628 §3.2: `interval` defaults to 5 s.
        expires_in: seconds(&v, "expires_in").unwrap_or(600),
        interval: seconds(&v, "interval").unwrap_or(5),
    };
    if !printable(&auth.user_code)
        || !printable(&auth.verification_uri)
        || !auth
            .verification_uri_complete
            .as_deref()
            .is_none_or(printable)
    {
        return Err("the device endpoint's answer holds control characters".into());
    }
    Ok(auth)
}

/// One poll of the device flow's token request (RFC 8628 §3.4–3.5).
#[derive(Debug)]
pub enum Poll {
    /// The user approved: the tokens.
    Done(Tokens),
    /// Not yet (`authorization_pending`).
    Pending,
    /// Poll more slowly (`slow_down`: add 5 s to the interval).
    SlowDown,
    /// Denied, expired, or any other failure.
    Failed(String),
}

/// Polls the token endpoint once for a device code.
pub fn device_poll(token_url: &str, client_id: &str, device_code: &str) -> Poll {
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
        ("client_id", client_id),
    ];
    let failed = |e: String| Poll::Failed(hide_form(&form, &e));
    match post_form(token_url, &form) {
        Err(e) => failed(e),
        Ok((status, v)) if (200..300).contains(&status) => match tokens(status, &v) {
            Ok(t) => Poll::Done(t),
            Err(e) => failed(e),
        },
        Ok((status, v)) => match v.get("error").and_then(Value::as_str) {
            Some("authorization_pending") => Poll::Pending,
            Some("slow_down") => Poll::SlowDown,
            _ => failed(error_text(status, &v)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_must_be_https_or_loopback() {
        for ok in [
            "https://auth.example/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/t",
        ] {
            check_endpoint(ok).unwrap();
        }
        for bad in [
            "http://auth.example/token",
            "http://127.0.0.1.evil.example/t",
            "ftp://x",
            "http://localhost.evil/t",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_answers_lose_the_secrets_the_form_carried_before_the_cut() {
        let secret = "rt.secret.0123456789abcdef.zz";
        let form = [("grant_type", "refresh_token"), ("refresh_token", secret)];
        // The token straddles the 200-character cut of the description.
        let text = format!("{} {secret} revoked", "x".repeat(185));
        let mut v = json!({"error": "invalid_grant", "error_description": text});
        hide_in_strings(&mut v, &form);
        let e = error_text(400, &v);
        assert!(!e.contains("0123456789"), "{e}");
        assert!(e.contains("invalid_grant"), "{e}");
        let e = hide_form(&form, &format!("the server said {secret}"));
        assert!(!e.contains("0123456789"), "{e}");
    }

    #[test]
    fn token_responses_are_read_and_errors_never_quote_tokens() {
        let t = tokens(
            200,
            &json!({"access_token": "at-1", "token_type": "bearer", "expires_in": "3600", "refresh_token": "rt-1"}),
        )
        .unwrap();
        assert_eq!(t.expires_in, Some(3600));
        assert_eq!(t.refresh_token.as_deref(), Some("rt-1"));
        assert!(!format!("{t:?}").contains("at-1"));
        assert!(tokens(200, &json!({"token_type": "Bearer"})).is_err());
        assert!(tokens(200, &json!({"access_token": "a b"})).is_err());
        assert!(tokens(200, &json!({"access_token": "a", "token_type": "mac"})).is_err());
        let e = tokens(
            400,
            &json!({"error": "invalid_grant", "error_description": "refresh token rt-abcdefghijklmnopqrstuvwxyz0123456789 was revoked"}),
        )
        .unwrap_err();
        assert!(e.contains("400: invalid_grant"), "{e}");
        assert!(!e.contains("abcdefghijklmnopqrstuvwxyz0123456789"), "{e}");
    }
}
