//! Building the engine's [`Plan`] from validated profiles: the backend order, the bucket
//! chains with their accounts (SPEC §5.9), the backends' fingerprints, and the §3.2 settings
//! resolved (defaults < profile < session). The profile module keeps its own spelling of the
//! policy and of `mid_stream`; this is where they become the engine's.
//!
//! Owns: account keys and fingerprints. Must not: read files (a lookup function supplies
//! backend profiles; key files are named, never opened — simulate derives the same accounts).

use crate::engine::plan::{BackendPlan, BucketPlan, FailoverSettings, MidStream, Plan, Policy};
use crate::profile::model::{ModelProfile, Profile};
use crate::profile::raw::Policy as FilePolicy;
use crate::profile::resolve::{ResolvedBackend, backend_settings};
use crate::profile::settings::{MidStream as FileMidStream, Settings};

/// The engine's policy for a profile's.
pub fn policy(p: FilePolicy) -> Policy {
    match p {
        FilePolicy::Failover => Policy::Failover,
        FilePolicy::Roundrobin => Policy::Roundrobin,
    }
}

/// A file's policy for the engine's (a plan written back as a profile).
pub fn file_policy(p: Policy) -> FilePolicy {
    match p {
        Policy::Failover => FilePolicy::Failover,
        Policy::Roundrobin => FilePolicy::Roundrobin,
    }
}

/// The engine's `mid_stream` for a setting's.
pub fn mid_stream(m: FileMidStream) -> MidStream {
    match m {
        FileMidStream::Restart => MidStream::Restart,
        FileMidStream::Continue => MidStream::Continue,
        FileMidStream::Buffer => MidStream::Buffer,
        FileMidStream::Error => MidStream::Error,
    }
}

/// A setting's `mid_stream` for the engine's (a plan written back as settings).
pub fn file_mid_stream(m: MidStream) -> FileMidStream {
    match m {
        MidStream::Restart => FileMidStream::Restart,
        MidStream::Continue => FileMidStream::Continue,
        MidStream::Buffer => FileMidStream::Buffer,
        MidStream::Error => FileMidStream::Error,
    }
}

/// Resolves the §3.2 settings of the profile being run: defaults < profile < session.
/// `mid_stream_default` is the driver's (terminal, pipe, serve or simulate, SPEC §3.2).
pub fn failover_settings(
    own: &Settings,
    session: &Settings,
    mid_stream_default: MidStream,
) -> FailoverSettings {
    let mut s = own.failover_part();
    s.overlay(&session.failover_part());
    let d = FailoverSettings::default();
    FailoverSettings {
        retry_count: s.failover_retry_count.unwrap_or(d.retry_count),
        retry_delay_ms: s.failover_retry_delay_ms.unwrap_or(d.retry_delay_ms),
        on_network_errors: s.failover_on_network_errors.unwrap_or(d.on_network_errors),
        status_codes: s.failover_status_codes.unwrap_or(d.status_codes),
        tpm_threshold: s.lb_tpm_failover_threshold,
        breaker_threshold: s.lb_circuit_breaker_threshold,
        breaker_timeout_ms: s
            .lb_circuit_breaker_timeout_ms
            .unwrap_or(d.breaker_timeout_ms),
        retry_after_max_ms: s.retry_after_max_ms.unwrap_or(d.retry_after_max_ms),
        bucket_cooldown_ms: s.bucket_cooldown_ms.unwrap_or(d.bucket_cooldown_ms),
        max_attempts: s.max_attempts,
        mid_stream: s.mid_stream.map_or(mid_stream_default, mid_stream),
        on_context_length: s.failover_on_context_length.unwrap_or(d.on_context_length),
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The first 16 hex digits of SHA-256 over `text`.
fn digest16(text: &str) -> String {
    hex(&ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref()[..8])
}

/// SHA-256 of `text`, in hex.
pub fn sha256_hex(text: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// A base URL as accounts compare it (SPEC §5.9): scheme and host lower-cased, one trailing
/// `/` removed.
pub fn normalise_base_url(url: &str) -> String {
    let url = url.strip_suffix('/').unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    )
}

/// Where an API-key profile's implicit `default` bucket takes its key from, as written (SPEC
/// §5.9): `keyfile:<path, no ~ expansion>`, `key:<SHA-256 hex of the inline key>`, or
/// `env:<variable>`. An inline key recorded in a trace as `sha256:<hex>` is that digest.
pub fn key_source(m: &ModelProfile) -> String {
    if let Some(path) = &m.settings.auth_keyfile {
        return format!("keyfile:{path}");
    }
    if let Some(key) = &m.settings.auth_key {
        if let Some(hex) = key.strip_prefix("sha256:")
            && hex.len() == 64
            && hex.bytes().all(|c| c.is_ascii_hexdigit())
        {
            return format!("key:{}", hex.to_ascii_lowercase());
        }
        return format!("key:{}", sha256_hex(key));
    }
    format!("env:{}", m.provider_info().key_env.unwrap_or(""))
}

/// The account of one bucket of a model profile (SPEC §5.9): a login is
/// `<provider>/<bucket>`; the implicit `default` bucket of an API-key profile is
/// `<provider>/default:<digest of base URL and key source>`, so profiles on different servers
/// or with different keys never share a cooldown.
pub fn account(m: &ModelProfile, bucket: &str) -> String {
    let info = m.provider_info();
    if m.auth.as_ref().and_then(|a| a.buckets.as_ref()).is_some() || m.is_oauth() {
        return format!("{}/{bucket}", info.name);
    }
    let base = m.settings.base_url.as_deref().unwrap_or(info.base_url);
    format!(
        "{}/{bucket}:{}",
        info.name,
        digest16(&format!("{}\n{}", normalise_base_url(base), key_source(m)))
    )
}

/// The fingerprint of a backend's state (SPEC §5.9): a digest of provider, model and base URL,
/// so a key in a base URL's query never reaches the state.
pub fn fingerprint(m: &ModelProfile) -> String {
    let info = m.provider_info();
    let base = m.settings.base_url.as_deref().unwrap_or(info.base_url);
    digest16(&format!("{}\n{}\n{base}", info.name, m.model))
}

/// Builds the plan for running `name`: a model profile alone is a load balancer of one
/// backend (SPEC §5.2). `lookup` finds backend model profiles by name; `refreshable` says
/// whether an OAuth bucket has a refresh token. The resolved backends come in the plan's
/// order: the engine's backend indices index both.
pub fn build_plan(
    name: &str,
    profile: &Profile,
    lookup: &dyn Fn(&str) -> Result<ModelProfile, String>,
    session: &Settings,
    mid_stream_default: MidStream,
    refreshable: &dyn Fn(&str, &str) -> bool,
) -> Result<(Plan, Vec<ResolvedBackend>), String> {
    let (policy, members, own, lb_settings): (
        Policy,
        Vec<(String, ModelProfile)>,
        &Settings,
        Option<&Settings>,
    ) = match profile {
        Profile::Model(m) => (
            Policy::Failover,
            vec![(name.to_string(), m.clone())],
            &m.settings,
            None,
        ),
        Profile::LoadBalancer(lb) => {
            let mut v = Vec::new();
            for b in &lb.backends {
                v.push((b.clone(), lookup(b)?));
            }
            (self::policy(lb.policy), v, &lb.settings, Some(&lb.settings))
        }
    };
    let mut backends = Vec::new();
    let mut resolved = Vec::new();
    for (bname, m) in members {
        let info = m.provider_info();
        let bs = backend_settings(&m, lb_settings, session);
        let oauth = m.is_oauth();
        let buckets = m
            .bucket_names()
            .into_iter()
            .map(|bk| BucketPlan {
                key: account(&m, &bk),
                oauth,
                refreshable: oauth && refreshable(info.name, &bk),
                name: bk,
            })
            .collect();
        backends.push(BackendPlan {
            name: bname.clone(),
            provider: info.name.to_string(),
            model: m.model.clone(),
            fingerprint: fingerprint(&m),
            buckets,
            context_limit: m.settings.context_limit.unwrap_or(0),
            accepts_prefill: bs.accepts_prefill,
        });
        resolved.push(ResolvedBackend {
            name: bname,
            profile: m,
            settings: bs,
        });
    }
    let plan = Plan {
        lb: name.to_string(),
        policy,
        backends,
        settings: failover_settings(own, session, mid_stream_default),
    };
    Ok((plan, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(json: serde_json::Value) -> ModelProfile {
        let raw = serde_json::from_value(json).expect("a raw profile");
        let analysis = crate::profile::model::analyse(&raw);
        match analysis.profile {
            Some(Profile::Model(m)) => m,
            _ => panic!("not a model profile: {:?}", analysis.findings),
        }
    }

    /// SPEC §5.9: the `default` bucket of an API-key profile is the key it sends to the server
    /// it sends it to; a login is its provider and name.
    #[test]
    fn accounts_follow_server_and_key_source_never_the_key() {
        let openai = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "a",
            "ephemeralSettings": {"auth-keyfile": "~/.openai_key"}}),
        );
        let same = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "b",
            "ephemeralSettings": {"auth-keyfile": "~/.openai_key",
                                  "base-url": "https://API.OpenAI.com/v1/"}}),
        );
        let other_host = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "a",
            "ephemeralSettings": {"auth-keyfile": "~/.openai_key",
                                  "base-url": "https://api.synthetic.new/openai/v1"}}),
        );
        let other_key = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "a",
            "ephemeralSettings": {"auth-keyfile": "~/.other_key"}}),
        );
        let inline = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "a",
            "ephemeralSettings": {"auth-key": "sk-secret-value-1234"}}),
        );
        let recorded = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "a",
            "ephemeralSettings": {"auth-key": format!("sha256:{}", sha256_hex("sk-secret-value-1234"))}}),
        );
        let env = model(serde_json::json!({"version": 1, "provider": "openai", "model": "a"}));
        let named = model(
            serde_json::json!({"version": 1, "provider": "codex", "model": "a",
            "auth": {"type": "oauth", "buckets": ["work"]}}),
        );
        let oauth_default = model(serde_json::json!({"version": 1, "provider": "anthropic",
            "model": "a", "auth": {"type": "oauth"}}));

        let a = account(&openai, "default");
        assert!(
            a.starts_with("openai/default:") && a.len() == "openai/default:".len() + 16,
            "{a}"
        );
        assert_eq!(
            a,
            account(&same, "default"),
            "case and a trailing / do not matter"
        );
        assert_ne!(a, account(&other_host, "default"));
        assert_ne!(a, account(&other_key, "default"));
        assert_ne!(a, account(&env, "default"));
        assert_eq!(account(&inline, "default"), account(&recorded, "default"));
        assert!(!account(&inline, "default").contains("secret"));
        assert_eq!(account(&named, "work"), "openai/work");
        assert_eq!(account(&oauth_default, "default"), "anthropic/default");
        assert_eq!(key_source(&env), "env:OPENAI_API_KEY");
    }

    /// SPEC §5.9: the fingerprint is a digest, so a key in a base URL's query never reaches
    /// the state.
    #[test]
    fn fingerprints_are_digests() {
        let m = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "a",
            "ephemeralSettings": {"base-url": "https://h.example/v1?key=sk-in-the-query"}}),
        );
        let f = fingerprint(&m);
        assert_eq!(f.len(), 16);
        assert!(f.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!f.contains("sk-"));
        let other = model(
            serde_json::json!({"version": 1, "provider": "openai", "model": "b",
            "ephemeralSettings": {"base-url": "https://h.example/v1?key=sk-in-the-query"}}),
        );
        assert_ne!(f, fingerprint(&other));
    }
}
