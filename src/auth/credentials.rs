//! Credentials (SPEC §6.3, §7): where each bucket's secret comes from, and reading it without
//! ever printing it.
//!
//! Owns: the order in which a bucket's credential is looked for, the implicit `default`
//! bucket's key, and the bucket files `<root>/oauth/<provider>/<bucket>.json`. Must not: log,
//! print or put a secret in an error message; refresh a token (that is
//! [`crate::auth::refresh`], which calls [`resolve_for`] for everything but an OAuth login).
//!
//! Where a bucket's credential comes from depends on its profile's `auth` ([`Lookup`]):
//! - an `oauth` profile (with a bucket list, or without one: its one bucket `default`, SPEC
//!   §5.11): the bucket's stored OAuth login, nothing else — never a keyfile, an inline key or
//!   an environment variable, and never a stored API key;
//! - an API-key profile with `auth.buckets`: each bucket's stored file;
//! - an API-key profile without a bucket list (the implicit `default` bucket, SPEC §6.3):
//!   `auth-keyfile`, then `auth-key`, then the provider's environment variable.
//!
//! Decision where SPEC is silent: only when none of those three is set does the implicit
//! `default` bucket fall back to a stored API key `<root>/oauth/<provider>/default.json`
//! (`llxprt auth login <provider> default`), as a last resort: a profile's own key always
//! wins over a login shared by every profile of the provider. A stored OAuth `default` login
//! is never used by an API-key profile (it belongs to `oauth` profiles).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::read_limited;
use crate::profile::model::{Auth, ModelProfile};
use crate::profile::raw::AuthKind;
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
/// content — except that a file over [`MAX_SECRET_FILE_BYTES`] says so, with the limit, and
/// a file that is no regular file says what it is (the errors `read_limited` gives them hold
/// nothing else; SPEC §7, §7.1).
pub fn read_error(path: &Path, e: &std::io::Error) -> String {
    if let Some(why) = crate::fsutil::not_regular(e) {
        why.to_string()
    } else if e.kind() == std::io::ErrorKind::InvalidData
        || e.kind() == std::io::ErrorKind::TimedOut
    {
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

/// How a bucket's credential is looked for: decided by its profile's `auth` (SPEC §2.1, §6.3;
/// the module docs give the order of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A bucket of an `oauth` profile, listed or the implicit `default`: its stored OAuth login
    /// only (refreshed before use by [`crate::auth::refresh`]).
    OauthLogin,
    /// A listed bucket of an API-key profile: its stored file.
    StoredFile,
    /// The implicit `default` bucket of an API-key profile: `auth-keyfile`, `auth-key`, the
    /// provider's variable, then a stored API-key `default` login.
    ImplicitKey,
}

impl Lookup {
    /// The lookup of every bucket of `profile`.
    pub fn of(profile: &ModelProfile) -> Lookup {
        match &profile.auth {
            Some(a) if a.kind == AuthKind::Oauth => Lookup::OauthLogin,
            Some(Auth {
                buckets: Some(_), ..
            }) => Lookup::StoredFile,
            _ => Lookup::ImplicitKey,
        }
    }
}

/// Reads a bucket file: `Ok(None)` when there is none; the error names the file, never its
/// content.
fn read_stored(path: &Path) -> Result<Option<StoredCredential>, String> {
    let text = match read_secret_file(path) {
        Ok(t) => t,
        Err(_) if !path.exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|_| format!("{} is not a credential file", path.display()))
}

/// The advice that ends every "this bucket has no usable login" message (SPEC §6.3).
fn login_advice(provider: &str, bucket: &str) -> String {
    format!("log in with llxprt auth login {provider} {bucket}")
}

fn stored_secret(stored: StoredCredential, path: PathBuf) -> Secret {
    let (value, oauth) = match stored {
        StoredCredential::Apikey { key, .. } => (key, false),
        StoredCredential::Oauth { access_token, .. } => (access_token, true),
    };
    Secret {
        value,
        oauth,
        source: Source::BucketFile(path),
    }
}

/// The stored OAuth login of an `oauth` profile's bucket, as stored (no refresh): a missing
/// file, or one holding an API key, is an error that says how to log in (SPEC §6.3).
pub fn oauth_login(
    root: &Path,
    provider: &str,
    bucket: &str,
) -> Result<(StoredCredential, PathBuf), String> {
    let path = bucket_path(root, provider, bucket);
    match read_stored(&path)? {
        Some(c @ StoredCredential::Oauth { .. }) => Ok((c, path)),
        Some(StoredCredential::Apikey { .. }) => Err(format!(
            "{provider}/{bucket} holds an API key, not an OAuth login, and the profile's auth type is \"oauth\"; {} --oauth …, or make the profile's auth type \"apikey\"",
            login_advice(provider, bucket)
        )),
        None => Err(format!(
            "no OAuth login is stored for {provider}/{bucket}; {}",
            login_advice(provider, bucket)
        )),
    }
}

/// Finds the credential of one bucket of `profile` without refreshing anything (SPEC §6.3; the
/// order is in the module docs). `getenv` is the environment lookup (injected so tests control
/// it). Sends go through [`crate::auth::refresh::Refresher::credential`], which refreshes an
/// expiring OAuth login first; `diagnostics` reports the source of what this returns.
pub fn resolve_for(
    root: &Path,
    profile: &ModelProfile,
    bucket: &str,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    let provider = profile.provider_info();
    match Lookup::of(profile) {
        Lookup::OauthLogin => {
            let (stored, path) = oauth_login(root, provider.name, bucket)?;
            Ok(Some(stored_secret(stored, path)))
        }
        Lookup::StoredFile => stored_file(root, provider.name, bucket).map(Some),
        Lookup::ImplicitKey => implicit_key(
            root,
            provider,
            profile.settings.auth_keyfile.as_deref(),
            profile.settings.auth_key.as_deref(),
            getenv,
        ),
    }
}

/// A listed bucket's stored file, whatever it holds (an OAuth token in an API-key profile's
/// bucket is sent as stored, without a refresh).
fn stored_file(root: &Path, provider: &str, bucket: &str) -> Result<Secret, String> {
    let path = bucket_path(root, provider, bucket);
    let text =
        read_secret_file(&path).map_err(|e| format!("{e}; {}", login_advice(provider, bucket)))?;
    let stored: StoredCredential = serde_json::from_str(&text)
        .map_err(|_| format!("{} is not a credential file", path.display()))?;
    Ok(stored_secret(stored, path))
}

/// The implicit `default` bucket of an API-key profile (SPEC §6.3): `auth-keyfile`, then
/// `auth-key`, then the provider's variable; then, only when none of them is set, a stored
/// API-key `default` login (the decision in the module docs).
fn implicit_key(
    root: &Path,
    provider: &'static crate::provider::Provider,
    keyfile: Option<&str>,
    inline_key: Option<&str>,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    if let Some(kf) = keyfile {
        // SPEC §5.3, §8.1: the bucket is passed over with why, in the path as written (no
        // request was sent, so no status is quoted).
        let path = expand_tilde(kf);
        if !path.exists() {
            return Err(format!("no key: {kf} not found"));
        }
        let value = read_secret_file(&path).map_err(|e| format!("no key: {e}"))?;
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
    if let Some(var) = provider.key_env
        && let Some(v) = getenv(var).filter(|v| !v.trim().is_empty())
    {
        return Ok(Some(Secret {
            value: v.trim().to_string(),
            oauth: false,
            source: Source::Env(var),
        }));
    }
    let path = bucket_path(root, provider.name, "default");
    let stored = read_stored(&path)?;
    if let Some(s @ StoredCredential::Apikey { .. }) = stored {
        return Ok(Some(stored_secret(s, path)));
    }
    let Some(var) = provider.key_env else {
        return Ok(None);
    };
    let oauth_note = if stored.is_some() {
        format!(
            " ({}/default holds an OAuth login, which only a profile with \"auth\": {{\"type\": \"oauth\"}} uses)",
            provider.name
        )
    } else {
        String::new()
    };
    Err(format!(
        "no API key for {}: set auth-keyfile in the profile, or the {var} environment variable, or {}{oauth_note}",
        provider.name,
        login_advice(provider.name, "default")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::settings::Settings;

    const FILE_KEY: &str = "sk-from-file-0123456789";
    const STORED_KEY: &str = "sk-stored-default-0123456789";

    /// An `openai` profile with this `auth` and, optionally, a keyfile and an inline key.
    fn profile(
        kind: Option<AuthKind>,
        buckets: Option<&[&str]>,
        keyfile: Option<&Path>,
        inline: Option<&str>,
    ) -> ModelProfile {
        ModelProfile {
            provider: "openai".into(),
            model: "m".into(),
            model_params: serde_json::Map::new(),
            settings: Settings {
                auth_keyfile: keyfile.map(|p| p.display().to_string()),
                auth_key: inline.map(str::to_string),
                ..Settings::default()
            },
            auth: kind.map(|kind| Auth {
                kind,
                buckets: buckets.map(|b| b.iter().map(|s| (*s).to_string()).collect()),
            }),
        }
    }

    fn store(root: &Path, bucket: &str, cred: &StoredCredential) {
        let f = bucket_path(root, "openai", bucket);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, serde_json::to_string(cred).unwrap()).unwrap();
    }

    fn stored_key() -> StoredCredential {
        StoredCredential::Apikey {
            version: 1,
            key: STORED_KEY.into(),
        }
    }

    fn stored_login(token: &str) -> StoredCredential {
        StoredCredential::Oauth {
            version: 1,
            access_token: token.into(),
            refresh_token: None,
            expires_at_ms: None,
            token_url: None,
            client_id: None,
            scope: None,
        }
    }

    /// An environment holding the provider's variable only.
    fn env(name: &str) -> Option<String> {
        (name == "OPENAI_API_KEY").then(|| "sk-from-env".to_string())
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn keyfile_beats_inline_beats_environment_and_nothing_leaks() {
        let dir = tempfile::tempdir().unwrap();
        let kf = dir.path().join("key");
        std::fs::write(&kf, format!("  {FILE_KEY}  \n")).unwrap();
        for kind in [None, Some(AuthKind::Apikey)] {
            let both = profile(kind, None, Some(&kf), Some("sk-inline"));
            let s = resolve_for(dir.path(), &both, "default", &env)
                .unwrap()
                .unwrap();
            assert_eq!(s.expose(), FILE_KEY);
            assert!(!s.oauth);
            assert!(!format!("{s:?}").contains("from-file"));
            let inline = profile(kind, None, None, Some("sk-inline"));
            let s = resolve_for(dir.path(), &inline, "default", &env)
                .unwrap()
                .unwrap();
            assert_eq!(s.source, Source::Inline);
            let bare = profile(kind, None, None, None);
            let s = resolve_for(dir.path(), &bare, "default", &env)
                .unwrap()
                .unwrap();
            assert_eq!(s.source, Source::Env("OPENAI_API_KEY"));
            let err = resolve_for(dir.path(), &bare, "default", &no_env).unwrap_err();
            assert!(err.contains("OPENAI_API_KEY"), "{err}");
            assert!(err.contains("llxprt auth login openai default"), "{err}");
        }
    }

    /// Regression: a stored `default.json` (`llxprt auth login openai default`) was read before
    /// the profile's own keyfile, so every openai profile sent it (SPEC §6.3).
    #[test]
    fn a_stored_default_key_is_only_the_last_resort_of_the_implicit_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        store(root, "default", &stored_key());
        let kf = root.join("key");
        std::fs::write(&kf, FILE_KEY).unwrap();
        let s = resolve_for(root, &profile(None, None, Some(&kf), None), "default", &env)
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.expose(), &s.source),
            (FILE_KEY, &Source::Keyfile(kf.clone()))
        );
        let s = resolve_for(
            root,
            &profile(None, None, None, Some("sk-in")),
            "default",
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.source, Source::Inline);
        let s = resolve_for(root, &profile(None, None, None, None), "default", &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.source, Source::Env("OPENAI_API_KEY"));
        let s = resolve_for(root, &profile(None, None, None, None), "default", &no_env)
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), STORED_KEY);
        assert!(!s.oauth);
        assert_eq!(
            s.source,
            Source::BucketFile(bucket_path(root, "openai", "default"))
        );
    }

    #[test]
    fn an_api_key_profile_never_uses_a_stored_oauth_default_login() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        store(root, "default", &stored_login("at-default"));
        let bare = profile(Some(AuthKind::Apikey), None, None, None);
        let s = resolve_for(root, &bare, "default", &env).unwrap().unwrap();
        assert_eq!(s.source, Source::Env("OPENAI_API_KEY"));
        let err = resolve_for(root, &bare, "default", &no_env).unwrap_err();
        assert!(err.contains("holds an OAuth login"), "{err}");
        assert!(!err.contains("at-default"), "{err}");
    }

    #[test]
    fn an_oauth_profile_uses_its_stored_logins_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let kf = root.join("key");
        std::fs::write(&kf, FILE_KEY).unwrap();
        for (buckets, bucket) in [(None, "default"), (Some(&["work"][..]), "work")] {
            let p = profile(Some(AuthKind::Oauth), buckets, Some(&kf), Some("sk-inline"));
            // No login: never the keyfile, the inline key or the variable.
            let err = resolve_for(root, &p, bucket, &env).unwrap_err();
            assert!(
                err.contains(&format!("llxprt auth login openai {bucket}")),
                "{err}"
            );
            // A stored API key is not an OAuth login either.
            store(root, bucket, &stored_key());
            let err = resolve_for(root, &p, bucket, &env).unwrap_err();
            assert!(err.contains("holds an API key"), "{err}");
            assert!(!err.contains(STORED_KEY), "{err}");
            store(root, bucket, &stored_login("at-1"));
            let s = resolve_for(root, &p, bucket, &env).unwrap().unwrap();
            assert_eq!(s.expose(), "at-1");
            assert!(s.oauth);
        }
    }

    #[test]
    fn listed_buckets_read_their_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let kf = root.join("key");
        std::fs::write(&kf, FILE_KEY).unwrap();
        // A bucket list naming `default` is a list: its file, never the profile's keyfile.
        let p = profile(
            Some(AuthKind::Apikey),
            Some(&["default", "team1"]),
            Some(&kf),
            None,
        );
        for bucket in ["default", "team1"] {
            let err = resolve_for(root, &p, bucket, &env).unwrap_err();
            assert!(
                err.contains(&format!("llxprt auth login openai {bucket}")),
                "{err}"
            );
        }
        store(root, "team1", &stored_login("tok-123"));
        let s = resolve_for(root, &p, "team1", &no_env).unwrap().unwrap();
        assert!(s.oauth);
        assert_eq!(s.expose(), "tok-123");
    }
}
