//! The bucket files (SPEC §1, §6.3): `<root>/oauth/<provider>/<bucket>.json`, one
//! [`StoredCredential`] each, written atomically with mode 0600, and the per-bucket lock that
//! serialises token refreshes across processes.
//!
//! Owns: naming a bucket (provider aliases → canonical name, bucket-name rules), reading,
//! writing, listing and deleting bucket files, and the sibling `<bucket>.json.lock` file.
//! Must not: print a secret, or put one in an error message.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::auth::credentials::{MAX_SECRET_FILE_BYTES, StoredCredential, bucket_path};
use crate::fsutil::{open_lock, read_limited, write_atomic};
use crate::profile::model::ModelProfile;
use crate::profile::names::check_bucket_name;
use crate::provider::{self, Provider};

/// The canonical provider for a name or alias (SPEC §6.1: `codex` → `openai`, `claudecode` →
/// `anthropic`; credentials are stored under the canonical name).
pub fn provider(name: &str) -> Result<&'static Provider, String> {
    provider::find(name).ok_or_else(|| {
        let known: Vec<&str> = provider::all_names().collect();
        format!("unknown provider \"{name}\" (known: {})", known.join(", "))
    })
}

/// A provider and a checked bucket name (SPEC §1: the name is checked before any path is
/// built from it).
pub fn target(provider_name: &str, bucket: &str) -> Result<(&'static Provider, String), String> {
    let p = provider(provider_name)?;
    check_bucket_name(bucket).map_err(|e| format!("invalid bucket name \"{bucket}\": {e}"))?;
    Ok((p, bucket.to_string()))
}

/// Reads one bucket file: `Ok(None)` when there is none. The error names the file, never its
/// content.
pub fn read(root: &Path, provider: &str, bucket: &str) -> Result<Option<StoredCredential>, String> {
    read_path(&bucket_path(root, provider, bucket))
}

/// [`read`] by path.
pub fn read_path(path: &Path) -> Result<Option<StoredCredential>, String> {
    let bytes = match read_limited(path, MAX_SECRET_FILE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::auth::credentials::read_error(path, &e)),
    };
    // serde's message could quote a value; only the position is kept.
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        format!(
            "{} is not a credential file (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Writes one bucket file atomically (temp file, fsync, rename; mode 0600, SPEC §1). The
/// directories are created private (0700) when missing.
pub fn write(
    root: &Path,
    provider: &str,
    bucket: &str,
    cred: &StoredCredential,
) -> std::io::Result<PathBuf> {
    let path = bucket_path(root, provider, bucket);
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut text = serde_json::to_string_pretty(cred).expect("plain data");
    text.push('\n');
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Deletes one bucket file; `Ok(false)` when there was none.
pub fn delete(root: &Path, provider: &str, bucket: &str) -> std::io::Result<bool> {
    match fs::remove_file(bucket_path(root, provider, bucket)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// One stored bucket as listed.
#[derive(Debug)]
pub struct Listed {
    /// Canonical provider name.
    pub provider: String,
    /// Bucket name.
    pub bucket: String,
    /// Its file.
    pub path: PathBuf,
    /// The credential, or why it cannot be read.
    pub credential: Result<StoredCredential, String>,
}

/// Every stored bucket, of one provider or of all, sorted by provider then bucket. Temp files,
/// lock files and names that are not valid buckets are skipped.
pub fn list(root: &Path, only: Option<&Provider>) -> Vec<Listed> {
    let mut out = Vec::new();
    for p in provider::PROVIDERS {
        if only.is_some_and(|o| o.name != p.name) {
            continue;
        }
        let dir = root.join("oauth").join(p.name);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| !n.starts_with(".llxprt-tmp-") && check_bucket_name(n).is_ok())
            .collect();
        names.sort();
        for bucket in names {
            let path = bucket_path(root, p.name, &bucket);
            let credential = read_path(&path).and_then(|c| c.ok_or_else(|| "gone".to_string()));
            out.push(Listed {
                provider: p.name.to_string(),
                bucket,
                path,
                credential,
            });
        }
    }
    out
}

/// The warnings of `profile save model … BUCKET…` (SPEC §6.3): each listed bucket without a
/// stored credential for `provider`, with how to log it in (`session`: the `/auth` form), and
/// each whose stored kind differs from the profile's `auth` type.
pub fn login_warnings(
    root: &Path,
    provider: &str,
    buckets: &[String],
    oauth: bool,
    session: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for b in buckets.iter().filter(|b| check_bucket_name(b).is_ok()) {
        let how = if session {
            format!(
                "/auth {provider} login {b} --key-file FILE (or the OAuth flags), or llxprt auth login {provider} {b} in a shell"
            )
        } else {
            format!("llxprt auth login {provider} {b}")
        };
        match read(root, provider, b) {
            Ok(None) => out.push(format!(
                "warning: bucket \"{b}\" has no stored credential for {provider}; log it in with {how}"
            )),
            Ok(Some(StoredCredential::Oauth { .. })) if !oauth => out.push(format!(
                "warning: bucket \"{b}\" holds an OAuth login but the profile's auth type is apikey: a 401 will not refresh it (save with --oauth)"
            )),
            Ok(Some(StoredCredential::Apikey { .. })) if oauth => out.push(format!(
                "warning: bucket \"{b}\" holds an API key but the profile's auth type is oauth, which uses OAuth logins only; log it in with {how}"
            )),
            Ok(Some(_)) => {}
            Err(e) => out.push(format!("warning: bucket \"{b}\": {e}; log it in again with {how}")),
        }
    }
    out
}

/// [`login_warnings`] for the buckets of a saved model profile that need a stored login
/// (SPEC §6.3): every bucket of an `oauth` profile (its implicit `default` included) and the
/// listed buckets of an API-key profile; an API-key profile without a list needs none (its key
/// comes from the keyfile, `auth-key` or the provider's variable).
pub fn profile_login_warnings(root: &Path, profile: &ModelProfile, session: bool) -> Vec<String> {
    let listed = profile.auth.as_ref().is_some_and(|a| a.buckets.is_some());
    if !profile.is_oauth() && !listed {
        return Vec::new();
    }
    login_warnings(
        root,
        profile.provider_info().name,
        &profile.bucket_names(),
        profile.is_oauth(),
        session,
    )
}

/// Whether the bucket holds an OAuth login with a refresh token (the plan's `refreshable`,
/// SPEC §5.3).
pub fn has_refresh_token(root: &Path, provider: &str, bucket: &str) -> bool {
    matches!(
        read(root, provider, bucket),
        Ok(Some(StoredCredential::Oauth {
            refresh_token: Some(_),
            ..
        }))
    )
}

/// An exclusive lock on a bucket's sibling lock file, released on drop (SPEC §6.3: refreshes
/// of one bucket are serialised across processes). The lock is on a separate file because
/// the bucket file itself is replaced by a rename.
#[derive(Debug)]
pub struct BucketLock {
    _file: File,
}

/// How long a process waits for another one's refresh before giving up: longer than one
/// token request may take (its own timeouts, [`super::token`]).
pub const LOCK_WAIT: Duration = Duration::from_secs(75);

/// Takes the bucket's lock, waiting at most `wait`.
pub fn lock(
    root: &Path,
    provider: &str,
    bucket: &str,
    wait: Duration,
) -> Result<BucketLock, String> {
    let path = bucket_path(root, provider, bucket);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    if let Some(dir) = lock_path.parent() {
        create_private_dir(dir)
            .map_err(|e| format!("cannot create {}: {}", dir.display(), e.kind()))?;
    }
    // Opened without blocking, a regular file only (SPEC §7.1).
    let file = open_lock(&lock_path).map_err(|e| match crate::fsutil::not_regular(&e) {
        Some(why) => why.to_string(),
        None => format!("cannot open {}: {}", lock_path.display(), e.kind()),
    })?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(BucketLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another llxprt process has held {} for over {} s",
                    lock_path.display(),
                    wait.as_secs()
                ));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {}", lock_path.display(), e.kind()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(access: &str) -> StoredCredential {
        StoredCredential::Oauth {
            version: 1,
            access_token: access.into(),
            refresh_token: Some("r".into()),
            expires_at_ms: None,
            token_url: None,
            client_id: None,
            scope: None,
        }
    }

    #[test]
    fn aliases_are_stored_under_the_canonical_name_and_names_are_checked() {
        assert_eq!(target("codex", "w").unwrap().0.name, "openai");
        assert_eq!(target("claudecode", "w").unwrap().0.name, "anthropic");
        assert!(
            target("nope", "w")
                .unwrap_err()
                .contains("unknown provider")
        );
        let e = target("openai", "a/b").unwrap_err();
        assert!(e.starts_with("invalid bucket name \"a/b\""), "{e}");
        assert!(target("openai", "Login").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn write_list_read_delete_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let path = write(root, "openai", "work", &oauth("tok-1")).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        write(root, "openai", "home", &oauth("tok-2")).unwrap();
        let _l = lock(root, "openai", "work", Duration::ZERO).unwrap();
        fs::write(path.with_file_name(".llxprt-tmp-x.json"), "{}").unwrap();
        let names: Vec<_> = list(root, None).into_iter().map(|l| l.bucket).collect();
        assert_eq!(names, ["home", "work"]);
        assert!(has_refresh_token(root, "openai", "work"));
        let w = login_warnings(
            root,
            "openai",
            &["work".into(), "gone".into()],
            false,
            false,
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("\"work\" holds an OAuth login"), "{w:?}");
        assert!(w[1].contains("llxprt auth login openai gone"), "{w:?}");
        assert!(login_warnings(root, "openai", &["work".into()], true, true).is_empty());
        assert!(delete(root, "openai", "work").unwrap());
        assert!(!delete(root, "openai", "work").unwrap());
        assert_eq!(read(root, "openai", "work").unwrap(), None);
    }

    #[test]
    fn a_held_lock_times_out_and_a_damaged_file_is_named_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let held = lock(root, "openai", "b", Duration::ZERO).unwrap();
        let e = lock(root, "openai", "b", Duration::from_millis(50)).unwrap_err();
        assert!(e.contains("another llxprt process"), "{e}");
        drop(held);
        lock(root, "openai", "b", Duration::ZERO).unwrap();
        let p = bucket_path(root, "openai", "bad");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, r#"{"kind":"apikey","key":"sk-secret-value"#).unwrap();
        let e = read(root, "openai", "bad").unwrap_err();
        assert!(!e.contains("sk-secret"), "{e}");
    }
}
