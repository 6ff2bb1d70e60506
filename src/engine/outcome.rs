//! Attempt outcomes and their classes (SPEC §4).
//!
//! Owns: the [`Class`] of an outcome, the [`Outcome`] the shell (or the simulator) reports, and
//! the classification of an HTTP status with its provider error code and message. Must not:
//! decide what happens next (that is `decide`).

use serde::{Deserialize, Serialize};

/// The class of one attempt's outcome (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// 2xx with a complete body or a finished stream.
    Success,
    /// HTTP 429, Anthropic `rate_limit_error`, Gemini `RESOURCE_EXHAUSTED`.
    RateLimit,
    /// HTTP 402, or a 429 saying `insufficient_quota` / `billing_hard_limit_reached`.
    Quota,
    /// HTTP 401.
    Auth,
    /// HTTP 403.
    Forbidden,
    /// HTTP 5xx (Anthropic 529 `overloaded_error` included).
    Server,
    /// DNS, refused, reset, TLS, closed before a response.
    Network,
    /// Connect or first-byte timeout.
    Timeout,
    /// 400/413 saying the context window was exceeded.
    ContextLength,
    /// A refusal by the provider's safety system.
    ContentFilter,
    /// Any other 4xx.
    Client,
    /// The stream broke after output began.
    Interrupted,
}

impl Class {
    /// The `snake_case` name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Success => "success",
            Class::RateLimit => "rate_limit",
            Class::Quota => "quota",
            Class::Auth => "auth",
            Class::Forbidden => "forbidden",
            Class::Server => "server",
            Class::Network => "network",
            Class::Timeout => "timeout",
            Class::ContextLength => "context_length",
            Class::ContentFilter => "content_filter",
            Class::Client => "client",
            Class::Interrupted => "interrupted",
        }
    }

    /// Whether the class comes from an HTTP status (SPEC §9.2: `status` is reported for
    /// `success` through `client`, omitted for `network`, `timeout` and `interrupted`).
    pub fn has_status(self) -> bool {
        !matches!(self, Class::Network | Class::Timeout | Class::Interrupted)
    }

    /// Whether the circuit breaker counts this as a failure of the backend (SPEC §5.11).
    pub fn is_breaker_failure(self) -> bool {
        matches!(
            self,
            Class::RateLimit
                | Class::Quota
                | Class::Auth
                | Class::Forbidden
                | Class::Server
                | Class::Network
                | Class::Timeout
                | Class::Interrupted
        )
    }

    /// The status a class implies when the outcome carries none (for matching against
    /// `failover_status_codes`).
    pub fn default_status(self) -> Option<u16> {
        match self {
            Class::Success | Class::ContentFilter => Some(200),
            Class::RateLimit => Some(429),
            Class::Quota => Some(402),
            Class::Auth => Some(401),
            Class::Forbidden => Some(403),
            Class::Server => Some(500),
            Class::ContextLength | Class::Client => Some(400),
            Class::Network | Class::Timeout | Class::Interrupted => None,
        }
    }
}

/// What one attempt produced, as reported to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The class (SPEC §4).
    pub class: Class,
    /// HTTP status, where one was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` (or `retry-after-ms`, Gemini `retryDelay`) in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Provider error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Provider error message (already redacted by the shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tokens used (prompt + completion) on success.
    #[serde(default)]
    pub tokens: u64,
    /// Time from sending to the outcome, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Output tokens already delivered to the caller (for `interrupted`).
    #[serde(default)]
    pub delivered_tokens: u64,
    /// `x-ratelimit-*` / `anthropic-ratelimit-*` response headers, kept for diagnostics
    /// (SPEC §4).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub ratelimit: std::collections::BTreeMap<String, String>,
}

impl Outcome {
    /// An outcome of a class.
    pub fn of(class: Class) -> Self {
        Outcome {
            class,
            status: None,
            retry_after_ms: None,
            code: None,
            message: None,
            tokens: 0,
            latency_ms: 0,
            delivered_tokens: 0,
            ratelimit: std::collections::BTreeMap::new(),
        }
    }

    /// The status to match against `failover_status_codes`.
    pub fn effective_status(&self) -> Option<u16> {
        self.status.or_else(|| self.class.default_status())
    }
}

fn says_context_length(code: Option<&str>, message: Option<&str>) -> bool {
    if code.is_some_and(|c| c == "context_length_exceeded" || c == "model_context_window_exceeded")
    {
        return true;
    }
    let m = message.unwrap_or("").to_ascii_lowercase();
    [
        "prompt is too long",
        "maximum context length",
        "context length",
        "context window",
        "too many tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn says_content_filter(code: Option<&str>, message: Option<&str>) -> bool {
    let c = code.unwrap_or("").to_ascii_lowercase();
    if [
        "content_policy_violation",
        "content_filter",
        "safety",
        "prohibited_content",
        "blocklist",
    ]
    .iter()
    .any(|p| c == *p)
    {
        return true;
    }
    let m = message.unwrap_or("");
    m.contains("content_policy_violation") || m.contains("content_filter")
}

/// Classifies an HTTP status with the provider's error code and message (SPEC §4).
pub fn classify_status(status: u16, code: Option<&str>, message: Option<&str>) -> Class {
    match status {
        200..=299 if says_content_filter(code, message) => Class::ContentFilter,
        200..=299 => Class::Success,
        429 if code
            .is_some_and(|c| c == "insufficient_quota" || c == "billing_hard_limit_reached") =>
        {
            Class::Quota
        }
        429 => Class::RateLimit,
        402 => Class::Quota,
        401 => Class::Auth,
        403 => Class::Forbidden,
        400 | 413 if says_context_length(code, message) => Class::ContextLength,
        400..=499 if says_content_filter(code, message) => Class::ContentFilter,
        500..=599 => Class::Server,
        _ => Class::Client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify_as_spec_4() {
        assert_eq!(classify_status(200, None, None), Class::Success);
        assert_eq!(
            classify_status(200, Some("SAFETY"), None),
            Class::ContentFilter
        );
        assert_eq!(classify_status(429, None, None), Class::RateLimit);
        assert_eq!(
            classify_status(429, Some("insufficient_quota"), None),
            Class::Quota
        );
        assert_eq!(classify_status(402, None, None), Class::Quota);
        assert_eq!(classify_status(401, None, None), Class::Auth);
        assert_eq!(classify_status(403, None, None), Class::Forbidden);
        assert_eq!(classify_status(529, None, None), Class::Server);
        assert_eq!(
            classify_status(400, Some("context_length_exceeded"), None),
            Class::ContextLength
        );
        assert_eq!(
            classify_status(400, None, Some("prompt is too long: 210000 tokens")),
            Class::ContextLength
        );
        assert_eq!(
            classify_status(
                413,
                None,
                Some("This model's maximum context length is 8192")
            ),
            Class::ContextLength
        );
        assert_eq!(
            classify_status(400, Some("content_policy_violation"), None),
            Class::ContentFilter
        );
        assert_eq!(classify_status(404, None, None), Class::Client);
        assert_eq!(classify_status(400, None, Some("bad")), Class::Client);
    }
}
