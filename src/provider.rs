//! The provider table of SPEC §6.1: names, aliases, wire protocols, default base URLs and key
//! variables. One table, with its sources noted.
//!
//! Owns: what a provider name means. Must not: do I/O.

use serde::{Deserialize, Serialize};

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenAI Chat Completions (`POST {base}/chat/completions`).
    ChatCompletions,
    /// Anthropic Messages (`POST {base}/v1/messages`).
    Messages,
    /// Google Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
}

/// One row of the provider table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider {
    /// Canonical name, as stored in profiles and credential paths.
    pub name: &'static str,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Default base URL.
    pub base_url: &'static str,
    /// Environment variable holding the API key, if the provider needs one.
    pub key_env: Option<&'static str>,
}

const fn p(
    name: &'static str,
    protocol: Protocol,
    base_url: &'static str,
    key_env: Option<&'static str>,
) -> Provider {
    Provider {
        name,
        protocol,
        base_url,
        key_env,
    }
}

/// Every provider llxprt knows (SPEC §6.1). Base URLs and variables are each provider's
/// documented OpenAI-compatible endpoint and key variable as published in its API docs:
/// OpenAI, Anthropic and Google (API references); Qwen (Alibaba Cloud Model Studio,
/// international "compatible-mode"); Kimi (Moonshot platform); DeepSeek, Mistral, OpenRouter,
/// xAI and Synthetic (their API quick-starts); Ollama, LM Studio and llama.cpp (their default
/// local server ports).
pub const PROVIDERS: &[Provider] = &[
    p(
        "openai",
        Protocol::ChatCompletions,
        "https://api.openai.com/v1",
        Some("OPENAI_API_KEY"),
    ),
    p(
        "anthropic",
        Protocol::Messages,
        "https://api.anthropic.com",
        Some("ANTHROPIC_API_KEY"),
    ),
    p(
        "gemini",
        Protocol::Gemini,
        "https://generativelanguage.googleapis.com",
        Some("GEMINI_API_KEY"),
    ),
    p(
        "qwen",
        Protocol::ChatCompletions,
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        Some("DASHSCOPE_API_KEY"),
    ),
    p(
        "kimi",
        Protocol::ChatCompletions,
        "https://api.moonshot.ai/v1",
        Some("MOONSHOT_API_KEY"),
    ),
    p(
        "deepseek",
        Protocol::ChatCompletions,
        "https://api.deepseek.com/v1",
        Some("DEEPSEEK_API_KEY"),
    ),
    p(
        "mistral",
        Protocol::ChatCompletions,
        "https://api.mistral.ai/v1",
        Some("MISTRAL_API_KEY"),
    ),
    p(
        "openrouter",
        Protocol::ChatCompletions,
        "https://openrouter.ai/api/v1",
        Some("OPENROUTER_API_KEY"),
    ),
    p(
        "xai",
        Protocol::ChatCompletions,
        "https://api.x.ai/v1",
        Some("XAI_API_KEY"),
    ),
    p(
        "synthetic",
        Protocol::ChatCompletions,
        "https://api.synthetic.new/openai/v1",
        Some("SYNTHETIC_API_KEY"),
    ),
    p(
        "ollama",
        Protocol::ChatCompletions,
        "http://localhost:11434/v1",
        None,
    ),
    p(
        "lmstudio",
        Protocol::ChatCompletions,
        "http://localhost:1234/v1",
        None,
    ),
    p(
        "llamacpp",
        Protocol::ChatCompletions,
        "http://localhost:8080/v1",
        None,
    ),
];

/// Names accepted for a canonical provider (SPEC §6.1: the seeds log in as `codex`/`claudecode`).
pub const ALIASES: &[(&str, &str)] = &[("codex", "openai"), ("claudecode", "anthropic")];

/// Finds a provider by name or alias (case-sensitive, as stored in files).
pub fn find(name: &str) -> Option<&'static Provider> {
    let canonical = ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, c)| *c);
    PROVIDERS.iter().find(|p| p.name == canonical)
}

/// Every name a user may write, for suggestions.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    PROVIDERS
        .iter()
        .map(|p| p.name)
        .chain(ALIASES.iter().map(|(a, _)| *a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_canonical_names() {
        assert_eq!(find("codex").unwrap().name, "openai");
        assert_eq!(find("claudecode").unwrap().protocol, Protocol::Messages);
        assert!(find("openaii").is_none());
        for p in PROVIDERS {
            assert!(p.base_url.starts_with("http"), "{}", p.name);
        }
    }
}
