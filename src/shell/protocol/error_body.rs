//! Reading what a provider said went wrong, from an error body or an in-stream error event
//! (SPEC §4), tolerant of every protocol's shape.
//!
//! Owns: finding the message, code and retry hint in `{"error": {...}}` (OpenAI, Gemini),
//! `{"type":"error","error":{...}}` (Anthropic), a bare `{"error": "text"}`, `{"message": …}` or
//! `{"detail": …}` (OpenAI-compatible servers), a Gemini array of one such object, or a body that
//! is not JSON; and the bounds on what is kept (SPEC §7). Must not: choose an in-stream error's
//! status (each protocol maps its own types) or classify (the engine does).

use serde_json::Value;

use super::ProviderError;

/// The longest provider message kept, in characters.
pub(super) const MAX_MESSAGE_CHARS: usize = 2000;

/// How much of a body that is not JSON becomes the message, in characters.
pub(super) const NON_JSON_CHARS: usize = 500;

/// What an error object said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ErrorFields {
    /// The message (capped at [`MAX_MESSAGE_CHARS`]).
    pub message: String,
    /// Gemini `status`, else a string `code`, else `type`.
    pub code: Option<String>,
    /// The error `type` (OpenAI, Anthropic), when there is one.
    pub kind: Option<String>,
    /// A numeric `code` that is an HTTP status (Gemini; some OpenAI-compatible servers).
    pub http_status: Option<u16>,
    /// Gemini `RetryInfo.retryDelay`, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// Reads an error body whatever its shape; `status` is the HTTP status.
pub(super) fn parse(status: u16, body: &[u8]) -> ProviderError {
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(v) => fields(&v).unwrap_or_else(|| ErrorFields {
            message: truncate(&v.to_string(), NON_JSON_CHARS),
            ..ErrorFields::default()
        }),
        Err(_) => ErrorFields {
            message: truncate(String::from_utf8_lossy(body).trim(), NON_JSON_CHARS),
            ..ErrorFields::default()
        },
    };
    ProviderError {
        status,
        code: fields.code,
        message: if fields.message.is_empty() {
            "(empty body)".to_owned()
        } else {
            fields.message
        },
        retry_after_ms: fields.retry_after_ms,
    }
}

/// Finds the error fields in a JSON value, or `None` when it does not look like an error.
pub(super) fn fields(v: &Value) -> Option<ErrorFields> {
    if let Some(first) = v.as_array().and_then(|a| a.first()) {
        return fields(first);
    }
    let obj = v.as_object()?;
    match obj.get("error") {
        Some(Value::Object(e)) => {
            let message = str_of(e.get("message")).unwrap_or_default();
            let kind = str_of(e.get("type"));
            let code = str_of(e.get("status"))
                .or_else(|| str_of(e.get("code")))
                .or_else(|| kind.clone());
            let http_status = e
                .get("code")
                .and_then(Value::as_u64)
                .filter(|c| (100..=599).contains(c))
                .map(|c| c as u16);
            let retry_after_ms = e
                .get("details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
                .and_then(parse_duration_ms);
            Some(ErrorFields {
                message: truncate(&message, MAX_MESSAGE_CHARS),
                code,
                kind,
                http_status,
                retry_after_ms,
            })
        }
        Some(Value::String(s)) => Some(ErrorFields {
            message: truncate(s, MAX_MESSAGE_CHARS),
            code: str_of(obj.get("code")).or_else(|| str_of(obj.get("type"))),
            ..ErrorFields::default()
        }),
        _ => {
            let message = str_of(obj.get("message")).or_else(|| str_of(obj.get("detail")))?;
            Some(ErrorFields {
                message: truncate(&message, MAX_MESSAGE_CHARS),
                code: str_of(obj.get("code")).or_else(|| str_of(obj.get("type"))),
                ..ErrorFields::default()
            })
        }
    }
}

/// A protobuf `Duration` string (`"22s"`, `"8.94s"`, `"0.5s"`) in milliseconds, rounded.
pub(super) fn parse_duration_ms(s: &str) -> Option<u64> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    // A day is far beyond any sane hint; anything larger (or NaN, negative) is noise.
    (secs.is_finite() && (0.0..=86_400.0).contains(&secs)).then(|| (secs * 1000.0).round() as u64)
}

/// The first `max` characters of `s`, with `…` when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_shape_code_else_type() {
        let e = parse(
            429,
            br#"{"error":{"message":"You exceeded your quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
        assert_eq!(e.message, "You exceeded your quota");
        let e = parse(
            400,
            br#"{"error":{"message":"bad","type":"invalid_request_error","code":null}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("invalid_request_error"));
    }

    #[test]
    fn anthropic_shape() {
        let e = parse(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"r"}"#,
        );
        assert_eq!(
            e,
            ProviderError {
                status: 529,
                code: Some("overloaded_error".to_owned()),
                message: "Overloaded".to_owned(),
                retry_after_ms: None
            }
        );
    }

    #[test]
    fn gemini_shape_with_retry_info_and_as_an_array() {
        let body = json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "8.94s"}]}});
        let e = parse(429, body.to_string().as_bytes());
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.retry_after_ms, Some(8940));
        let f = fields(&json!([body])).unwrap();
        assert_eq!(f.http_status, Some(429));
        assert_eq!(f.retry_after_ms, Some(8940));
    }

    #[test]
    fn other_shapes_and_non_json() {
        assert_eq!(parse(500, br#"{"error":"boom"}"#).message, "boom");
        assert_eq!(parse(422, br#"{"detail":"nope"}"#).message, "nope");
        assert_eq!(parse(502, br#"{"x":1}"#).message, r#"{"x":1}"#);
        assert_eq!(parse(502, b"").message, "(empty body)");
        let mut html = b"  <html>".to_vec();
        html.extend("x".repeat(600).bytes());
        html.extend(b"\xFF</html>");
        let e = parse(502, &html);
        assert!(e.message.starts_with("<html>xxx"));
        assert_eq!(e.message.chars().count(), NON_JSON_CHARS + 1);
        assert_eq!(
            parse(502, b"bad \xFF gateway").message,
            "bad \u{FFFD} gateway"
        );
    }

    #[test]
    fn long_messages_are_capped() {
        let body = json!({"error": {"message": "é".repeat(5000)}});
        let e = parse(400, body.to_string().as_bytes());
        assert_eq!(e.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(e.message.ends_with('…'));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("22s"), Some(22_000));
        assert_eq!(parse_duration_ms("8.94s"), Some(8940));
        assert_eq!(parse_duration_ms("0.0006s"), Some(1));
        assert_eq!(parse_duration_ms("1.5"), None);
        assert_eq!(parse_duration_ms("-1s"), None);
        assert_eq!(parse_duration_ms("NaNs"), None);
        assert_eq!(parse_duration_ms("1e300s"), None);
    }
}
