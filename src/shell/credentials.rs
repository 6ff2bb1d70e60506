//! Credentials (SPEC §6.3, §7): where each bucket's secret comes from, and reading it without
//! ever printing it.
//!
//! Owns: the implicit `default` bucket's key (`auth-keyfile` > `auth-key` > the provider's
//! variable) and the bucket files `<root>/oauth/<provider>/<bucket>.json`. Must not: log,
//! print or put a secret in an error message.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::read_limited;
use crate::profile::validate::expand_tilde;

/// Largest keyfile or token file read (SPEC §7).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A stored bucket credential (`<root>/oauth/<provider>/<bucket>.json`, SPEC §6.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoredCredential {
    /// An API key.
    Apikey {
        /// Format version (1).
        version: u64,
        /// The key.
        key: String,
    },
    /// OAuth tokens.
    Oauth {
        /// Format version (1).
        version: u64,
        /// Access token.
        access_token: String,
        /// Refresh token, if any.
        #[serde(default)]
        refresh_token: Option<String>,
        /// Expiry (Unix ms), if known.
        #[serde(default)]
        expires_at_ms: Option<u64>,
        /// Token endpoint for refreshes.
        #[serde(default)]
        token_url: Option<String>,
        /// OAuth client id.
        #[serde(default)]
        client_id: Option<String>,
        /// Scope.
        #[serde(default)]
        scope: Option<String>,
    },
}

/// Where a credential came from, for `diagnostics` (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A keyfile path.
    Keyfile(PathBuf),
    /// `auth-key` in the profile.
    Inline,
    /// An environment variable, by name.
    Env(&'static str),
    /// A bucket file.
    BucketFile(PathBuf),
    /// No credential needed or found.
    None,
}

/// A secret with where it came from. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The value (never printed).
    value: String,
    /// OAuth access token (else an API key).
    pub oauth: bool,
    /// Where it came from.
    pub source: Source,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secret({}, {:?})",
            crate::redact::redact(&self.value),
            self.source
        )
    }
}

impl Secret {
    /// A secret read from `source` (`oauth`: an access token, else an API key).
    pub fn new(value: String, oauth: bool, source: Source) -> Secret {
        Secret {
            value,
            oauth,
            source,
        }
    }

    /// The value, for the request header only.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

/// The bucket file of `provider`/`bucket` under `root`.
pub fn bucket_path(root: &Path, provider: &str, bucket: &str) -> PathBuf {
    root.join("oauth")
        .join(provider)
        .join(format!("{bucket}.json"))
}

/// Why a key or token file could not be read: the file and the kind of error, never the
/// content — except that a file over [`MAX_SECRET_FILE_BYTES`] says so, with the limit (the
/// error `read_limited` gives it holds nothing else; SPEC §7).
pub fn read_error(path: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::InvalidData {
        format!("cannot read {}: {e}", path.display())
    } else {
        format!("cannot read {}: {}", path.display(), e.kind())
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = read_limited(path, MAX_SECRET_FILE_BYTES).map_err(|e| read_error(path, &e))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(trimmed.to_string())
}

/// Finds the credential of one bucket (SPEC §6.3). `getenv` is the environment lookup
/// (injected so tests control it).
pub fn resolve(
    root: &Path,
    provider: &'static crate::provider::Provider,
    bucket: &str,
    keyfile: Option<&str>,
    inline_key: Option<&str>,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    let file = bucket_path(root, provider.name, bucket);
    if bucket != "default" || file.exists() {
        let text = read_secret_file(&file).map_err(|e| {
            format!(
                "{e}; log in with llxprt auth login {} {bucket}",
                provider.name
            )
        })?;
        let stored: StoredCredential = serde_json::from_str(&text)
            .map_err(|_| format!("{} is not a credential file", file.display()))?;
        let (value, oauth) = match stored {
            StoredCredential::Apikey { key, .. } => (key, false),
            StoredCredential::Oauth { access_token, .. } => (access_token, true),
        };
        return Ok(Some(Secret {
            value,
            oauth,
            source: Source::BucketFile(file),
        }));
    }
    if let Some(kf) = keyfile {
        let path = expand_tilde(kf);
        let value = read_secret_file(&path)?;
        return Ok(Some(Secret {
            value,
            oauth: false,
            source: Source::Keyfile(path),
        }));
    }
    if let Some(k) = inline_key {
        return Ok(Some(Secret {
            value: k.to_string(),
            oauth: false,
            source: Source::Inline,
        }));
    }
    if let Some(var) = provider.key_env {
        if let Some(v) = getenv(var).filter(|v| !v.trim().is_empty()) {
            return Ok(Some(Secret {
                value: v.trim().to_string(),
                oauth: false,
                source: Source::Env(var),
            }));
        }
        return Err(format!(
            "no API key for {}: set auth-keyfile in the profile, or the {var} environment variable",
            provider.name
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyfile_beats_inline_beats_environment_and_nothing_leaks() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::provider::find("openai").unwrap();
        let kf = dir.path().join("key");
        std::fs::write(&kf, "  sk-from-file-0123456789  \n").unwrap();
        let env = |_: &str| Some("sk-from-env".to_string());
        let s = resolve(
            dir.path(),
            p,
            "default",
            Some(kf.to_str().unwrap()),
            Some("sk-inline"),
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.expose(), "sk-from-file-0123456789");
        assert!(!format!("{s:?}").contains("from-file"));
        let s = resolve(dir.path(), p, "default", None, Some("sk-inline"), &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.source, Source::Inline);
        let s = resolve(dir.path(), p, "default", None, None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.source, Source::Env("OPENAI_API_KEY"));
        let err = resolve(dir.path(), p, "default", None, None, &|_| None).unwrap_err();
        assert!(err.contains("OPENAI_API_KEY"), "{err}");
    }

    #[test]
    fn named_buckets_read_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::provider::find("anthropic").unwrap();
        let err = resolve(dir.path(), p, "team1", None, None, &|_| None).unwrap_err();
        assert!(err.contains("llxprt auth login anthropic team1"), "{err}");
        let f = bucket_path(dir.path(), "anthropic", "team1");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(
            &f,
            r#"{"version":1,"kind":"oauth","access_token":"tok-123","refresh_token":"r"}"#,
        )
        .unwrap();
        let s = resolve(dir.path(), p, "team1", None, None, &|_| None)
            .unwrap()
            .unwrap();
        assert!(s.oauth);
        assert_eq!(s.expose(), "tok-123");
    }
}
