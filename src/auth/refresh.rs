//! Token refresh for OAuth buckets (SPEC §5.3 the 401 row, §6.3): the `refresh_token` grant
//! when the engine orders one after a 401, and before use when the stored access token is
//! known to expire within 60 s.
//!
//! Owns: the per-turn memory of which token was sent on which bucket and which refresh failed,
//! and the refresh itself: lock the bucket (a sibling lock file, [`store::lock`]) → re-read the
//! file → refresh only if the file still needs it → write atomically (0600) → unlock. A second
//! process that waited on the lock therefore finds the first one's fresh token and uses it
//! instead of refreshing again; that matters because refresh tokens may rotate (a second grant
//! with the old refresh token would fail, or revoke the login). Must not: choose a bucket,
//! retry, or put a token in a message.
//!
//! Why refresh-before-use is done here, in the credential lookup of a Send, and not ordered by
//! the engine (SPEC §5.1 says the shell decides nothing): the engine's order is "send on bucket
//! b"; carrying it out needs b's credential, and a credential whose expiry is stored and past is
//! not usable — renewing it is part of obtaining the credential, like reading a keyfile. No
//! retry, advance or wait is chosen here, and nothing the engine counts changes: if the renewal
//! fails, the attempt is reported as an `auth` outcome without a request (a certain 401 is not
//! sent), and from there the engine decides exactly as for a provider's 401 — it may order a
//! refresh, which this turn answers from its memory of the failure instead of asking the token
//! endpoint twice, and then advances. The alternative (the plan marking expiring buckets so the
//! engine orders the refresh) would add a state the engine must reason about for a fact only
//! the shell can observe (a file's contents at send time), and would still need the lookup to
//! re-check under the lock. Recorded in docs/decisions.md ("Accounts").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::store::{self, LOCK_WAIT};
use super::token;
use crate::auth::credentials::{self, Lookup, Secret, Source, StoredCredential};
use crate::clock::now_ms;
use crate::profile::model::ModelProfile;

/// A token that expires within this margin is refreshed before use (SPEC §6.3).
pub const EXPIRY_MARGIN_MS: u64 = 60_000;

/// Whether `cred` is an OAuth login whose access token is known to expire within the margin.
pub fn expiring(cred: &StoredCredential, now: u64) -> bool {
    matches!(cred, StoredCredential::Oauth { expires_at_ms: Some(t), .. }
        if t.saturating_sub(EXPIRY_MARGIN_MS) <= now)
}

fn can_refresh(cred: &StoredCredential) -> bool {
    matches!(
        cred,
        StoredCredential::Oauth {
            refresh_token: Some(_),
            token_url: Some(_),
            ..
        }
    )
}

/// A short fingerprint of a token, so the memory of what was sent holds no token.
fn fingerprint(token: &str) -> [u8; 16] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// What one turn knows about its OAuth buckets.
#[derive(Debug, Default)]
pub struct Refresher {
    /// Fingerprint of the access token last sent, per `provider/bucket`.
    sent: BTreeMap<String, [u8; 16]>,
    /// Why a refresh failed in this turn, per `provider/bucket`.
    failed: BTreeMap<String, String>,
}

impl Refresher {
    /// The credential of one bucket of `profile` for one Send (SPEC §6.3): an `oauth`
    /// profile's bucket gets its stored OAuth login, refreshed first when it expires within
    /// 60 s (see the module docs for why this is not an engine decision); an API-key profile's
    /// bucket gets its key by [`credentials::resolve_for`], never refreshed. Only OAuth buckets
    /// are ever refreshed: the profile's `auth` says which they are, not the file's contents.
    pub fn credential(
        &mut self,
        root: &Path,
        profile: &ModelProfile,
        bucket: &str,
        now: u64,
        getenv: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, String> {
        if Lookup::of(profile) != Lookup::OauthLogin {
            return credentials::resolve_for(root, profile, bucket, getenv);
        }
        let provider = profile.provider_info().name;
        let (cred, path) = credentials::oauth_login(root, provider, bucket)?;
        self.fresh_login(root, provider, bucket, cred, path, now)
            .map(Some)
    }

    /// `cred`, an OAuth login read from `path`, refreshed under the bucket's lock first when it
    /// expires within the margin and can be refreshed.
    fn fresh_login(
        &mut self,
        root: &Path,
        provider: &str,
        bucket: &str,
        mut cred: StoredCredential,
        path: PathBuf,
        now: u64,
    ) -> Result<Secret, String> {
        let key = format!("{provider}/{bucket}");
        if expiring(&cred, now) && can_refresh(&cred) {
            if let Some(why) = self.failed.get(&key) {
                return Err(why.clone());
            }
            cred = refresh_under_lock(root, provider, bucket, |c| expiring(c, now))
                .map_err(|e| self.fail(&key, provider, bucket, &e))?;
        }
        let StoredCredential::Oauth { access_token, .. } = cred else {
            // Another process stored an API key in the bucket while this one waited for its
            // lock (a file's contents are outside input: no panic).
            return Err(format!(
                "{key} no longer holds an OAuth login; log in with llxprt auth login {provider} {bucket}"
            ));
        };
        self.sent.insert(key, fingerprint(&access_token));
        Ok(Secret::new(access_token, true, Source::BucketFile(path)))
    }

    /// Carries out the engine's refresh order after a 401 on `provider/bucket`: under the lock,
    /// re-reads the file; if it holds another token than the one this turn sent, another
    /// process refreshed meanwhile and that token is used; else the `refresh_token` grant.
    pub fn after_401(&mut self, root: &Path, provider: &str, bucket: &str) -> Result<(), String> {
        let key = format!("{provider}/{bucket}");
        if let Some(why) = self.failed.get(&key) {
            return Err(why.clone());
        }
        let sent = self.sent.get(&key).copied();
        refresh_under_lock(root, provider, bucket, |c| match c {
            StoredCredential::Oauth { access_token, .. } => {
                sent.is_none_or(|s| s == fingerprint(access_token))
            }
            StoredCredential::Apikey { .. } => true,
        })
        .map(|_| ())
        .map_err(|e| self.fail(&key, provider, bucket, &e))
    }

    fn fail(&mut self, key: &str, provider: &str, bucket: &str, why: &str) -> String {
        let msg = format!(
            "token refresh of {key} failed: {why}; log in again with llxprt auth login {provider} {bucket}"
        );
        self.failed.insert(key.to_string(), msg.clone());
        msg
    }
}

/// Under the bucket's lock: re-reads the file and, while `needs` still holds for what it
/// holds, performs the `refresh_token` grant and stores the new tokens (keeping the old
/// refresh token when the answer has none). Returns the credential now stored.
fn refresh_under_lock(
    root: &Path,
    provider: &str,
    bucket: &str,
    needs: impl Fn(&StoredCredential) -> bool,
) -> Result<StoredCredential, String> {
    let _lock = store::lock(root, provider, bucket, LOCK_WAIT)?;
    let cred =
        store::read(root, provider, bucket)?.ok_or_else(|| "the login was removed".to_string())?;
    if !needs(&cred) {
        return Ok(cred);
    }
    let StoredCredential::Oauth {
        refresh_token: Some(old_refresh),
        token_url: Some(token_url),
        client_id,
        scope,
        ..
    } = cred
    else {
        return Err("no refresh token and token URL are stored".into());
    };
    let t = token::refresh(&token_url, client_id.as_deref(), &old_refresh)?;
    let issued = now_ms();
    let fresh = StoredCredential::Oauth {
        version: 1,
        access_token: t.access_token,
        refresh_token: Some(t.refresh_token.unwrap_or(old_refresh)),
        expires_at_ms: t
            .expires_in
            .map(|s| issued.saturating_add(s.saturating_mul(1000))),
        token_url: Some(token_url),
        client_id,
        scope: t.scope.or(scope),
    };
    store::write(root, provider, bucket, &fresh)
        .map_err(|e| format!("cannot store the new tokens: {}", e.kind()))?;
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(access: &str, expires: Option<u64>, url: Option<&str>) -> StoredCredential {
        StoredCredential::Oauth {
            version: 1,
            access_token: access.into(),
            refresh_token: Some("rt".into()),
            expires_at_ms: expires,
            token_url: url.map(str::to_string),
            client_id: None,
            scope: None,
        }
    }

    #[test]
    fn expiry_margin_is_sixty_seconds() {
        let c = oauth("a", Some(100_000), None);
        assert!(!expiring(&c, 39_999));
        assert!(expiring(&c, 40_000));
        assert!(!expiring(&oauth("a", None, None), u64::MAX));
    }

    #[test]
    fn a_fresh_token_is_used_as_stored_and_a_bucket_without_a_login_is_an_error() {
        use crate::profile::raw::AuthKind;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let no_env = |_: &str| None;
        store::write(root, "openai", "w", &oauth("at-1", Some(u64::MAX), None)).unwrap();
        let mut r = Refresher::default();
        let p = profile(AuthKind::Oauth, &["w", "k", "none"]);
        let s = r.credential(root, &p, "w", 0, &no_env).unwrap().unwrap();
        assert_eq!(s.expose(), "at-1");
        assert!(s.oauth);
        let key = StoredCredential::Apikey {
            version: 1,
            key: "k".into(),
        };
        store::write(root, "openai", "k", &key).unwrap();
        for bucket in ["k", "none"] {
            let e = r.credential(root, &p, bucket, 0, &no_env).unwrap_err();
            assert!(
                e.contains(&format!("llxprt auth login openai {bucket}")),
                "{e}"
            );
        }
    }

    #[test]
    fn another_process_s_fresh_token_is_used_without_a_grant() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The token URL is unreachable: any grant attempt would fail the test.
        let url = Some("http://127.0.0.1:1/token");
        store::write(root, "openai", "w", &oauth("at-old", None, url)).unwrap();
        let mut r = Refresher::default();
        let p = profile(crate::profile::raw::AuthKind::Oauth, &["w"]);
        let no_env = |_: &str| None;
        r.credential(root, &p, "w", 0, &no_env).unwrap();
        // Another process refreshed after this one sent at-old.
        store::write(root, "openai", "w", &oauth("at-new", None, url)).unwrap();
        r.after_401(root, "openai", "w").unwrap();
        assert_eq!(
            r.credential(root, &p, "w", 0, &no_env)
                .unwrap()
                .unwrap()
                .expose(),
            "at-new"
        );
        // Now at-new is refused too: this time a grant is needed, and it fails (no server);
        // the failure is remembered for the turn and says how to log in again.
        let e = r.after_401(root, "openai", "w").unwrap_err();
        assert!(e.contains("llxprt auth login openai w"), "{e}");
        assert_eq!(r.after_401(root, "openai", "w").unwrap_err(), e);
    }

    fn profile(kind: crate::profile::raw::AuthKind, buckets: &[&str]) -> ModelProfile {
        ModelProfile {
            provider: "openai".into(),
            model: "m".into(),
            model_params: serde_json::Map::new(),
            settings: crate::profile::settings::Settings::default(),
            auth: Some(crate::profile::model::Auth {
                kind,
                buckets: Some(buckets.iter().map(|b| (*b).to_string()).collect()),
            }),
        }
    }

    #[test]
    fn only_an_oauth_profile_s_buckets_are_refreshed_before_use() {
        use crate::profile::raw::AuthKind;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Expired, with an unreachable token URL: a refresh attempt fails.
        let url = Some("http://127.0.0.1:1/token");
        store::write(root, "openai", "w", &oauth("at-old", Some(1), url)).unwrap();
        let no_env = |_: &str| None;
        // An API-key profile's bucket holding a token: sent as stored, never refreshed.
        let mut r = Refresher::default();
        let s = r
            .credential(root, &profile(AuthKind::Apikey, &["w"]), "w", 10, &no_env)
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "at-old");
        // An OAuth profile's bucket: refreshed before use (here the refresh fails).
        let e = r
            .credential(root, &profile(AuthKind::Oauth, &["w"]), "w", 10, &no_env)
            .unwrap_err();
        assert!(e.contains("token refresh of openai/w failed"), "{e}");
        assert!(e.contains("llxprt auth login openai w"), "{e}");
        // An OAuth profile's bucket without a login is an error, never another source.
        let env = |_: &str| Some("sk-env-0123456789".to_string());
        let e = r
            .credential(root, &profile(AuthKind::Oauth, &["none"]), "none", 10, &env)
            .unwrap_err();
        assert!(e.contains("llxprt auth login openai none"), "{e}");
    }
}
