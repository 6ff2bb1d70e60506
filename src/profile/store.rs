//! The profile store (SPEC §1): the root directory, profile files, `settings.json`.
//!
//! Owns: where files live, listing, loading (with full validation), saving and deleting
//! profiles atomically, and the default profile. Names are checked before any filesystem
//! access. Must not: print.
//!
//! Concurrent `llxprt` processes may change the store at once (SPEC §1), so every check that a
//! write depends on is made under an advisory lock (std `File::lock`), held until the write is
//! in place: `<root>/profiles.lock` for the profiles directory (saving and deleting profiles,
//! and naming the default, which must exist), `<root>/settings.json.lock` for each read-modify-
//! write of `settings.json`. A process that needs both takes the profiles lock first. The lock
//! files sit beside what they guard, never inside the profiles directory, so no listing of it
//! ever sees them; a killed process's lock is released by the kernel.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::diagnostic::{Diagnostic, Severity};
use super::model::{ModelProfile, Profile, Purpose, did_you_mean};
use super::names::{check_profile_name, same_profile_name};
use super::validate::{self, MAX_PROFILE_BYTES, Resolved, Resolver};
use crate::fsutil::{not_regular, open_lock, read_limited, write_atomic};

/// An error of the store, with the exit-code class it belongs to (SPEC §8.2).
#[derive(Debug)]
pub enum StoreError {
    /// A name argument is invalid (usage error, exit 2).
    InvalidName(String),
    /// The profile does not exist (configuration error, exit 3).
    Missing {
        /// The name asked for, as given.
        name: String,
        /// The existing profile whose name is closest, when it is close enough to be a typo
        /// (SPEC §8.1: a missing profile name gets a did-you-mean).
        suggestion: Option<String>,
    },
    /// The profile exists but does not load (exit 3); diagnostics say why.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        diagnostics: Vec<Diagnostic>,
    },
    /// The operation is refused (exit 1), e.g. deleting a referenced backend.
    Refused(String),
    /// I/O failed (exit 1).
    Io(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::InvalidName(m) | StoreError::Refused(m) | StoreError::Io(m) => {
                f.write_str(m)
            }
            StoreError::Missing { name, .. } => write!(f, "profile \"{name}\" does not exist"),
            StoreError::Invalid { path, diagnostics } => {
                let first = diagnostics.iter().find(|d| d.severity == Severity::Error);
                match first {
                    Some(d) => write!(
                        f,
                        "{}:{}:{}: {}",
                        path.display(),
                        d.line,
                        d.column,
                        d.message
                    ),
                    None => write!(f, "{} does not validate", path.display()),
                }
            }
        }
    }
}

/// The llxprt root directory and what lives in it.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Model profiles that validated, by file, with the exact bytes they were read from (shared
    /// by clones). A model profile's validity depends on its bytes alone (its file-system
    /// checks only warn), so a backend read again with the same bytes is not validated again:
    /// loading a load balancer checks each backend once, not once for the load balancer's
    /// check and again for each plan built from it.
    models: Arc<Mutex<Validated>>,
    /// Profiles [`Store::load`] validated, by file (shared by clones): a long-running process
    /// (`serve`, a request at a time) looks at the files again (a `stat`, and a read when one
    /// changed, see [`Stamp`]) and validates only when the bytes of the profile or, for a load
    /// balancer, of one of its backends changed.
    loaded: Arc<Mutex<HashMap<PathBuf, Loaded>>>,
    /// The last listing of the profiles directory, for [`Store::names_recent`].
    listing: Arc<Mutex<Option<Listing>>>,
    /// Profile files as last read, by path, with the [`Stamp`] they had (shared by clones): a
    /// file whose stamp is unchanged is not read again (a request of `serve` costs one `stat`
    /// per profile file, not an open and a read).
    files: Arc<Mutex<Files>>,
}

/// What tells a file's contents apart without reading them: its device and inode (every
/// llxprt write is a rename, so a new inode), its length and its modification time. Only two
/// edits in place of the same length within one tick of the file system's clock (milliseconds
/// on ext4, a second on some others), with a read between them, would leave the second unseen
/// until the next change.
type Stamp = (u64, u64, u64, SystemTime);

fn stamp(m: &fs::Metadata) -> Option<Stamp> {
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt as _;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Some((dev, ino, m.len(), m.modified().ok()?))
}

/// A listing of the profiles directory: the names, the directory's modification time then,
/// and when it was made.
#[derive(Debug, Clone)]
struct Listing {
    names: Vec<String>,
    modified: Option<SystemTime>,
    at: Instant,
}

/// Drops the cached listing when a save or delete of this store ends (it changed the
/// directory; its modification time alone may not show it).
struct Relist<'a>(&'a Mutex<Option<Listing>>);

impl Drop for Relist<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// How long [`Store::names_recent`] may reuse a listing whose directory looks unchanged: a
/// bound on what a file system with coarse modification times could hide.
const LISTING_REUSE: Duration = Duration::from_secs(1);

/// Profile files as last read: file → (its stamp then, its bytes).
type Files = HashMap<PathBuf, (Stamp, Vec<u8>)>;

/// Valid model profiles: file → (its bytes, the profile).
type Validated = HashMap<PathBuf, (Vec<u8>, ModelProfile)>;

/// A profile [`Store::load`] validated, with the bytes it depends on.
#[derive(Debug, Clone)]
struct Loaded {
    bytes: Vec<u8>,
    /// A load balancer's backends as they were read before the validation: name → bytes
    /// (`None`: the backend could not be read).
    backends: Vec<(String, Option<Vec<u8>>)>,
    profile: Profile,
    diagnostics: Vec<Diagnostic>,
}

/// What [`Store::save`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The file written: an existing profile's file when a name differing only in case was
    /// replaced (`force`), so its stem is the name the profile now has.
    pub path: PathBuf,
    /// Whether an existing profile was replaced.
    pub replaced: bool,
}

/// One entry of `profile list`.
#[derive(Debug)]
pub struct Listed {
    /// Profile name (file stem).
    pub name: String,
    /// The profile, or why it does not load.
    pub profile: Result<Profile, String>,
}

impl Store {
    /// The store at `$LLXPRT_HOME`, else `~/.llxprt` (SPEC §1).
    pub fn from_env() -> Result<Store, StoreError> {
        if let Some(root) = std::env::var_os("LLXPRT_HOME").filter(|v| !v.is_empty()) {
            return Ok(Store::at(root));
        }
        let home = directories::BaseDirs::new().ok_or_else(|| {
            StoreError::Io("cannot find the home directory; set LLXPRT_HOME".into())
        })?;
        Ok(Store::at(home.home_dir().join(".llxprt")))
    }

    /// A store at an explicit root.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store {
            root: root.into(),
            models: Arc::default(),
            loaded: Arc::default(),
            listing: Arc::default(),
            files: Arc::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/profiles`.
    pub fn profiles_dir(&self) -> PathBuf {
        self.root.join("profiles")
    }

    /// `<root>/settings.json`.
    pub fn settings_path(&self) -> PathBuf {
        self.root.join("settings.json")
    }

    /// Locks the profiles directory (`<root>/profiles.lock`, see the module doc) until the
    /// returned file is dropped.
    fn lock_profiles(&self) -> Result<File, StoreError> {
        lock_beside(&self.root.join("profiles.lock"))
    }

    /// Locks `settings.json` (`<root>/settings.json.lock`) until the returned file is dropped.
    fn lock_settings(&self) -> Result<File, StoreError> {
        lock_beside(&self.root.join("settings.json.lock"))
    }

    /// The file of a profile, after checking the name (SPEC §1).
    pub fn path_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_profile_name(name).map_err(|why| {
            StoreError::InvalidName(format!("invalid profile name \"{name}\": {why}"))
        })?;
        Ok(self.profiles_dir().join(format!("{name}.json")))
    }

    /// Names of the profile files, sorted; temporary and dot files and directories are
    /// ignored. Anything else is listed: a symlink, which loading follows as every read does
    /// (to a directory too), and a FIFO, socket or device, which is then a profile that does
    /// not load, with the error naming it (SPEC §7.1) — rather than a profile that loads by
    /// name in one command but is missing from every listing.
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.profiles_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| check_profile_name(n).is_ok())
            .collect();
        names.sort_by(|a, b| a.to_lowercase().cmp(&b.to_lowercase()).then(a.cmp(b)));
        names
    }

    /// [`Store::names`] for a caller that asks on every request (`serve` matching a request's
    /// `model`): the last listing is reused while the directory's modification time is
    /// unchanged and it is under a second (`LISTING_REUSE`) old, so a request costs one `stat`,
    /// not a directory read. A profile added or removed shows at once where the file system
    /// keeps fine modification times (ext4, tmpfs, APFS), within a second elsewhere.
    pub fn names_recent(&self) -> Vec<String> {
        let modified = fs::metadata(self.profiles_dir())
            .and_then(|m| m.modified())
            .ok();
        let mut cached = self.listing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = cached.as_ref()
            && l.modified.is_some()
            && l.modified == modified
            && l.at.elapsed() < LISTING_REUSE
        {
            return l.names.clone();
        }
        let names = self.names();
        *cached = Some(Listing {
            names: names.clone(),
            modified,
            at: Instant::now(),
        });
        names
    }

    /// The error for a profile `name` that does not exist, with the closest existing name when
    /// one is close enough to be a typo.
    fn missing(&self, name: &str) -> StoreError {
        let names = self.names();
        StoreError::Missing {
            name: name.to_string(),
            suggestion: did_you_mean(name, names.iter().map(String::as_str)).map(str::to_string),
        }
    }

    /// The existing profile whose name equals `name` ignoring case, if any.
    fn existing_name(&self, name: &str) -> Option<String> {
        self.names()
            .into_iter()
            .find(|n| same_profile_name(n, name))
    }

    /// Reads a profile's bytes (bounded). An invalid name is refused as such (SPEC §1), and a
    /// file that cannot be read — one over [`MAX_PROFILE_BYTES`] included — is a profile that
    /// does not load (SPEC §7, §8.2: a configuration error).
    fn read(&self, name: &str) -> Result<(PathBuf, Vec<u8>), StoreError> {
        let exact = self.path_of(name)?;
        // The name as given names the file (one stat); else the listing finds it in any case.
        // Something other than a file there (a directory, a FIFO) is read as the file, to be
        // refused by name (SPEC §7.1), not said not to exist.
        let (path, meta) = match fs::metadata(&exact) {
            Ok(m) if m.is_file() => (exact, Some(m)),
            Ok(_) => (exact, None),
            Err(_) => {
                let actual = self.existing_name(name).ok_or_else(|| self.missing(name))?;
                let path = self.path_of(&actual)?;
                let meta = fs::metadata(&path).ok();
                (path, meta)
            }
        };
        let stamp = meta.as_ref().and_then(stamp);
        if let Some(st) = stamp {
            let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, bytes)) = files.get(&path).filter(|(was, _)| *was == st) {
                return Ok((path, bytes.clone()));
            }
        }
        let bytes = read_limited(&path, MAX_PROFILE_BYTES).map_err(|e| {
            let message = if let Some(why) = not_regular(&e) {
                why.to_string()
            } else if e.kind() == std::io::ErrorKind::InvalidData {
                format!(
                    "the file is larger than {MAX_PROFILE_BYTES} bytes, the most a profile may have"
                )
            } else {
                format!("cannot read the file: {e}")
            };
            StoreError::Invalid {
                diagnostics: vec![Diagnostic {
                    file: path.display().to_string(),
                    line: 1,
                    column: 1,
                    pointer: String::new(),
                    severity: Severity::Error,
                    message,
                    help: None,
                    span: None,
                }],
                path: path.clone(),
            }
        })?;
        if let Some(st) = stamp {
            self.files
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(path.clone(), (st, bytes.clone()));
        }
        Ok((path, bytes))
    }

    /// Loads and fully validates a profile, backends included (SPEC §2.3 "every load").
    ///
    /// A profile read with the same bytes as at its last load — and for a load balancer, each
    /// backend with the same bytes too — is not validated again (its diagnostics are those of
    /// that load: a keyfile's warning appears or goes with the next change to the profile).
    pub fn load(&self, name: &str) -> Result<(Profile, Vec<Diagnostic>), StoreError> {
        let (path, bytes) = self.read(name)?;
        let cached = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&path)
            .filter(|l| l.bytes == bytes)
            .cloned();
        if let Some(l) = cached
            && l.backends
                .iter()
                .all(|(b, was)| self.backend_bytes(b) == *was)
        {
            return Ok((l.profile, l.diagnostics));
        }
        // The backends as they are before the check: a change after it shows at the next load.
        let backends: Vec<(String, Option<Vec<u8>>)> = lb_backends(&bytes)
            .into_iter()
            .map(|b| {
                let now = self.backend_bytes(&b);
                (b, now)
            })
            .collect();
        let (profile, diagnostics) = self.check(name, path.clone(), bytes.clone())?;
        let listed = match &profile {
            Profile::LoadBalancer(lb) => lb.backends.clone(),
            Profile::Model(_) => Vec::new(),
        };
        // Only when the backends read above are the ones validated (always, unless the file
        // was read differently: then nothing is kept).
        if listed == backends.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>() {
            self.loaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    path,
                    Loaded {
                        bytes,
                        backends,
                        profile: profile.clone(),
                        diagnostics: diagnostics.clone(),
                    },
                );
        }
        Ok((profile, diagnostics))
    }

    /// A backend profile's bytes, if it can be read.
    fn backend_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.read(name).ok().map(|(_, b)| b)
    }

    /// Validates a profile's bytes read from `path`.
    fn check(
        &self,
        name: &str,
        path: PathBuf,
        bytes: Vec<u8>,
    ) -> Result<(Profile, Vec<Diagnostic>), StoreError> {
        let checked = validate::check_profile(&bytes, self, Some(name));
        let diags =
            validate::place_all(&path.display().to_string(), &checked.text, checked.findings);
        match checked.parsed {
            Some(p) => {
                if let Profile::Model(m) = &p {
                    self.remember(path, bytes, m);
                }
                Ok((p, diags))
            }
            None => Err(StoreError::Invalid {
                path,
                diagnostics: diags,
            }),
        }
    }

    /// Loads a profile for `simulate` (SPEC §9): the file's syntax, schema and single-file
    /// checks, without its base URL or anything outside it
    /// ([`validate::check_profile_for`] with [`Purpose::Simulate`]). Not remembered: a
    /// simulation loads each profile once.
    pub fn load_for_simulation(&self, name: &str) -> Result<Profile, StoreError> {
        let (path, bytes) = self.read(name)?;
        let checked = validate::check_profile_for(&bytes, self, Some(name), Purpose::Simulate);
        checked.parsed.ok_or_else(|| StoreError::Invalid {
            diagnostics: validate::place_all(
                &path.display().to_string(),
                &checked.text,
                checked.findings,
            ),
            path,
        })
    }

    /// Loads a model profile to run as a backend: [`Store::load`] without the diagnostics,
    /// which are only warnings for a profile that loads. The file is looked at every time (read
    /// again when its device, inode, length or time changed); its validation is skipped when
    /// its bytes are those of a profile that validated before.
    pub fn load_backend(&self, name: &str) -> Result<Profile, StoreError> {
        let (path, bytes) = self.read(name)?;
        if let Some(m) = self.remembered(&path, &bytes) {
            return Ok(Profile::Model(m));
        }
        self.check(name, path, bytes).map(|(p, _)| p)
    }

    fn remembered(&self, path: &Path, bytes: &[u8]) -> Option<ModelProfile> {
        let models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        models
            .get(path)
            .filter(|(b, _)| b == bytes)
            .map(|(_, m)| m.clone())
    }

    fn remember(&self, path: PathBuf, bytes: Vec<u8>, m: &ModelProfile) {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        models.insert(path, (bytes, m.clone()));
    }

    /// Lists every profile with its validity.
    pub fn list(&self) -> Vec<Listed> {
        self.names()
            .into_iter()
            .map(|name| {
                let profile = self.load(&name).map(|(p, _)| p).map_err(|e| match e {
                    StoreError::Invalid { diagnostics, .. } => diagnostics
                        .iter()
                        .find(|d| d.severity == Severity::Error)
                        .map_or_else(
                            || "does not validate".to_string(),
                            |d| format!("{}:{}: {}", d.line, d.column, d.message),
                        ),
                    other => other.to_string(),
                });
                Listed { name, profile }
            })
            .collect()
    }

    /// The raw stored JSON of a profile.
    pub fn raw_json(&self, name: &str) -> Result<Value, StoreError> {
        let (path, bytes) = self.read(name)?;
        serde_json::from_slice(&bytes).map_err(|_| {
            // The syntax layer places and explains the error (SPEC §2.3); serde_json's own
            // message, placed at the document, said "1:1 … at line 1 column 15".
            let c = validate::check_profile(&bytes, &validate::NoResolver, Some(name));
            StoreError::Invalid {
                diagnostics: validate::place_all(&path.display().to_string(), &c.text, c.findings),
                path,
            }
        })
    }

    /// Saves a profile atomically (mode 0600). Without `force`, an existing profile (any case)
    /// is not overwritten; with it, a name differing only in case replaces that file.
    ///
    /// The checks (the name is free, the backends exist) and the write are one step under the
    /// profiles lock: of two processes saving the same new name at once, in any case, exactly
    /// one writes it and the other is told it exists (SPEC §1).
    pub fn save(&self, name: &str, profile: &Profile, force: bool) -> Result<Saved, StoreError> {
        let _relist = Relist(&self.listing);
        let mut path = self.path_of(name)?;
        let _lock = self.lock_profiles()?;
        let existing = self.existing_name(name);
        if let Some(existing) = &existing {
            if !force {
                return Err(StoreError::Refused(format!(
                    "profile \"{existing}\" already exists; add --force to replace it"
                )));
            }
            if existing != name {
                path = self.path_of(existing)?;
            }
        }
        if let Profile::LoadBalancer(lb) = profile {
            for b in &lb.backends {
                if same_profile_name(b, name) {
                    return Err(StoreError::Refused(format!(
                        "load balancer \"{name}\" cannot list itself as a backend"
                    )));
                }
                match self.resolve(b) {
                    Resolved::Model(_) => {}
                    Resolved::LoadBalancer => {
                        return Err(StoreError::Refused(format!(
                            "backend \"{b}\" is a load balancer; backends must be model profiles"
                        )));
                    }
                    Resolved::Invalid(p) => {
                        return Err(StoreError::Refused(format!(
                            "backend \"{b}\" does not validate: run llxprt profile validate {}",
                            p.display()
                        )));
                    }
                    Resolved::Missing => {
                        return Err(StoreError::Refused(format!(
                            "backend \"{b}\" does not exist; save it first with llxprt profile save model {b} …"
                        )));
                    }
                }
            }
        }
        write_atomic(&path, profile.to_json().as_bytes())
            .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", path.display())))?;
        Ok(Saved {
            path,
            replaced: existing.is_some(),
        })
    }

    /// Load balancers that list `name` as a backend.
    ///
    /// Each file's own `backends` (or `profiles`) is read without validating the file: a load
    /// balancer that no longer loads (another backend deleted with `--force`, a typo) still
    /// references `name`, and deleting `name` must still be refused (SPEC §8.1).
    pub fn referrers(&self, name: &str) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|n| !same_profile_name(n, name))
            .filter(|n| {
                let Ok((_, bytes)) = self.read(n) else {
                    return false;
                };
                let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                    return false;
                };
                v.get("type").and_then(Value::as_str) == Some("loadbalancer")
                    && ["backends", "profiles"]
                        .iter()
                        .filter_map(|k| v.get(k).and_then(Value::as_array))
                        .flatten()
                        .filter_map(Value::as_str)
                        .any(|b| same_profile_name(b, name))
            })
            .collect()
    }

    /// Deletes a profile; refused while a load balancer references it unless `force`. Deleting
    /// the default clears the default.
    ///
    /// Under the profiles lock (no load balancer naming it can be saved meanwhile), and the
    /// default is cleared by one read-modify-write under the settings lock, so a default named
    /// by another process in the meantime stays.
    pub fn delete(&self, name: &str, force: bool) -> Result<String, StoreError> {
        let _relist = Relist(&self.listing);
        self.path_of(name)?;
        let missing = || self.missing(name);
        // A missing profile is refused without creating the lock (or the root).
        self.existing_name(name).ok_or_else(missing)?;
        let _lock = self.lock_profiles()?;
        let actual = self.existing_name(name).ok_or_else(missing)?;
        let refs = self.referrers(&actual);
        if !refs.is_empty() && !force {
            return Err(StoreError::Refused(format!(
                "profile \"{actual}\" is a backend of {}; remove it there first, or add --force",
                refs.iter()
                    .map(|r| format!("\"{r}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let path = self.path_of(&actual)?;
        fs::remove_file(&path)
            .map_err(|e| StoreError::Io(format!("cannot delete {}: {e}", path.display())))?;
        self.update_settings(|m| {
            let was_default = m
                .get("defaultProfile")
                .and_then(Value::as_str)
                .is_some_and(|d| same_profile_name(d, &actual));
            if was_default {
                m.remove("defaultProfile");
            }
            was_default
        })?;
        Ok(actual)
    }

    fn read_settings(&self) -> Result<serde_json::Map<String, Value>, StoreError> {
        let path = self.settings_path();
        match read_limited(&path, MAX_PROFILE_BYTES) {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) | Err(_) => Err(StoreError::Io(format!(
                    "{} is not a JSON object; fix or delete it",
                    path.display()
                ))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Map::new()),
            Err(e) => Err(StoreError::Io(match not_regular(&e) {
                Some(why) => why.to_string(),
                None => format!("cannot read {}: {e}", path.display()),
            })),
        }
    }

    /// One read-modify-write of `settings.json` under its lock: lock → re-read → `change` →
    /// write atomically → unlock, so two processes changing it at once (different keys, or a
    /// check and a change of the same key) lose neither change (SPEC §1). `change` returns
    /// whether it changed anything; nothing is written when it did not.
    fn update_settings(
        &self,
        change: impl FnOnce(&mut serde_json::Map<String, Value>) -> bool,
    ) -> Result<(), StoreError> {
        let _lock = self.lock_settings()?;
        let mut m = self.read_settings()?;
        if !change(&mut m) {
            return Ok(());
        }
        let mut text =
            serde_json::to_string_pretty(&Value::Object(m)).expect("a JSON map serialises");
        text.push('\n');
        let path = self.settings_path();
        write_atomic(&path, text.as_bytes())
            .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", path.display())))
    }

    /// The default profile's name from `settings.json`.
    pub fn default_profile(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .read_settings()?
            .get("defaultProfile")
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// Sets (or, with `None`, clears) the default profile; other keys of `settings.json` stay.
    /// The name is written as given: [`Store::set_default_existing`] names an existing profile.
    pub fn set_default(&self, name: Option<&str>) -> Result<(), StoreError> {
        self.update_settings(|m| {
            match name {
                Some(n) => {
                    m.insert("defaultProfile".into(), Value::String(n.to_string()));
                }
                None => {
                    m.remove("defaultProfile");
                }
            }
            true
        })
    }

    /// Makes the existing profile `name` (any case) the default and returns its stored name.
    /// The check that it exists and the write are one step under the profiles lock, so a
    /// `profile delete` of it cannot land in between and leave the default naming nothing.
    pub fn set_default_existing(&self, name: &str) -> Result<String, StoreError> {
        self.path_of(name)?;
        let missing = || self.missing(name);
        self.existing_name(name).ok_or_else(missing)?;
        let _lock = self.lock_profiles()?;
        let actual = self.existing_name(name).ok_or_else(missing)?;
        self.set_default(Some(&actual))?;
        Ok(actual)
    }
}

/// Opens (creating it and its directory) and locks the lock file at `path`; the lock is held
/// until the file is dropped, or the process ends (SPEC §1).
fn lock_beside(path: &Path) -> Result<File, StoreError> {
    let fail = |e: std::io::Error| {
        StoreError::Io(match not_regular(&e) {
            Some(why) => why.to_string(),
            None => format!("cannot lock {}: {e}", path.display()),
        })
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    // Opened without blocking, a regular file only (SPEC §7.1).
    let f = open_lock(path).map_err(fail)?;
    f.lock().map_err(fail)?;
    Ok(f)
}

impl Resolver for Store {
    fn resolve(&self, name: &str) -> Resolved {
        match self.read(name) {
            Ok((path, bytes)) => {
                if let Some(m) = self.remembered(&path, &bytes) {
                    return Resolved::Model(Box::new(m));
                }
                let resolved = validate::classify(&bytes, &path);
                if let Resolved::Model(m) = &resolved {
                    self.remember(path, bytes, m);
                }
                resolved
            }
            Err(StoreError::Missing { .. } | StoreError::InvalidName(_)) => Resolved::Missing,
            Err(_) => Resolved::Invalid(self.profiles_dir().join(format!("{name}.json"))),
        }
    }
    fn names(&self) -> Vec<String> {
        Store::names(self)
    }
}

/// The backend names a load balancer's text lists (`backends`, or its synonym `profiles`), as
/// far as it can be read; nothing for a model profile or text that does not parse.
fn lb_backends(bytes: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Vec::new();
    };
    if v.get("type").and_then(Value::as_str) != Some("loadbalancer") {
        return Vec::new();
    }
    v.get("backends")
        .or_else(|| v.get("profiles"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    /// The longest a test waits for a thread; past it the test fails instead of hanging.
    const TIMEOUT: Duration = Duration::from_secs(20);

    fn json_map(v: &Value) -> serde_json::Map<String, Value> {
        v.as_object().expect("an object").clone()
    }

    /// A store with the model profiles `names` (files written directly, not through the store).
    fn store_with(names: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        fs::create_dir_all(store.profiles_dir()).unwrap();
        for n in names {
            write_model(&store, n);
        }
        (dir, store)
    }

    fn write_model(store: &Store, name: &str) {
        fs::write(
            store.profiles_dir().join(format!("{name}.json")),
            r#"{"version": 1, "provider": "openai", "model": "m"}"#,
        )
        .unwrap();
    }

    fn model_profile() -> Profile {
        Profile::Model(ModelProfile {
            provider: "openai".into(),
            model: "m".into(),
            model_params: serde_json::Map::new(),
            settings: super::super::settings::Settings::default(),
            auth: None,
        })
    }

    #[test]
    fn a_profile_file_is_read_again_only_when_its_stamp_changes() {
        let (_dir, store) = store_with(&[]);
        let path = store.profiles_dir().join("a.json");
        let m1 = r#"{"version": 1, "provider": "openai", "model": "m1"}"#;
        let m2 = r#"{"version": 1, "provider": "openai", "model": "m2"}"#;
        fs::write(&path, m1).unwrap();
        assert_eq!(store.read("a").unwrap().1, m1.as_bytes());
        // Planted under the same stamp: a reuse returns it, so the file was not read.
        let plant = |bytes: &str| {
            let mut files = store.files.lock().unwrap();
            files.get_mut(&path).unwrap().1 = bytes.as_bytes().to_vec();
        };
        plant("planted");
        assert_eq!(store.read("a").unwrap().1, b"planted");
        // Replaced by a rename (as every llxprt write is) with the same length and time: the
        // new inode is seen.
        let old_time = fs::metadata(&path).unwrap().modified().unwrap();
        let next = store.profiles_dir().join(".next");
        fs::write(&next, m2).unwrap();
        File::options()
            .write(true)
            .open(&next)
            .unwrap()
            .set_modified(old_time)
            .unwrap();
        fs::rename(&next, &path).unwrap();
        assert_eq!(store.read("a").unwrap().1, m2.as_bytes());
        // Written in place with another length: seen too.
        plant("planted");
        fs::write(&path, format!("{m1} ")).unwrap();
        assert_eq!(store.read("a").unwrap().1, format!("{m1} ").as_bytes());
    }

    #[test]
    fn a_recent_listing_is_reused_only_while_the_directory_looks_unchanged() {
        let (_dir, store) = store_with(&["a"]);
        assert_eq!(store.names_recent(), ["a"]);
        // Planted in the cache: what a reuse would return.
        let plant = |names: &[&str]| {
            let mut l = store.listing.lock().unwrap();
            l.as_mut().unwrap().names = names.iter().map(|n| (*n).to_string()).collect();
        };
        plant(&["planted"]);
        assert_eq!(store.names_recent(), ["planted"], "unchanged: reused");
        // Another writer adds a file: the directory's modification time moves.
        let before = fs::metadata(store.profiles_dir())
            .unwrap()
            .modified()
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let mut n = 0;
        while fs::metadata(store.profiles_dir())
            .unwrap()
            .modified()
            .unwrap()
            == before
        {
            assert!(
                Instant::now() < deadline,
                "the directory's time never moved"
            );
            n += 1;
            write_model(&store, &format!("b{n}"));
        }
        assert!(store.names_recent().contains(&"b1".to_string()), "relisted");
        // An old listing is made again even with the same time; a save of this store drops it.
        plant(&["planted"]);
        store.listing.lock().unwrap().as_mut().unwrap().at -= LISTING_REUSE;
        assert_ne!(store.names_recent(), ["planted"], "too old: relisted");
        plant(&["planted"]);
        store.save("c", &model_profile(), false).unwrap();
        assert!(
            store.names_recent().contains(&"c".to_string()),
            "saved: relisted"
        );
    }

    /// `h` is still running a while after it started: blocked on a lock the test holds.
    fn still_waiting<T>(h: &JoinHandle<T>) -> bool {
        thread::sleep(Duration::from_millis(300));
        !h.is_finished()
    }

    fn join_within<T>(h: JoinHandle<T>, what: &str) -> T {
        let start = Instant::now();
        while !h.is_finished() {
            assert!(
                start.elapsed() < TIMEOUT,
                "{what} did not finish within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
        h.join().expect("the thread does not panic")
    }

    /// SPEC §1: two writers of `settings.json` changing different keys at once both land. A's
    /// read-modify-write waits (up to a second) inside its change for B's to finish; B must
    /// wait for A's lock instead, and then re-read what A wrote.
    #[test]
    fn settings_writers_of_different_keys_lose_neither_change() {
        let (_dir, store) = store_with(&[]);
        let (inside_tx, inside_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let a = {
            let store = store.clone();
            thread::spawn(move || {
                store.update_settings(|m| {
                    inside_tx.send(()).unwrap();
                    let _ = done_rx.recv_timeout(Duration::from_secs(1));
                    m.insert("other".into(), Value::from(1));
                    true
                })
            })
        };
        inside_rx
            .recv_timeout(TIMEOUT)
            .expect("A reads settings.json");
        // B, while A has read and not written yet.
        store.set_default(Some("b")).unwrap();
        let _ = done_tx.send(());
        join_within(a, "A's settings update").unwrap();
        let m = store.read_settings().unwrap();
        assert_eq!(
            m,
            json_map(&serde_json::json!({"other": 1, "defaultProfile": "b"}))
        );
    }

    /// `profile delete` of the default, with a `set-default b` landing between its check of the
    /// default and its clearing of it: `b` stays the default. The test holds the settings lock
    /// as the set-default does; the delete must wait for it and decide on what it wrote.
    #[test]
    fn a_default_named_while_the_old_default_is_deleted_stays() {
        let (_dir, store) = store_with(&["a", "b"]);
        store.set_default(Some("a")).unwrap();
        let lock = store.lock_settings().unwrap();
        let delete = {
            let store = store.clone();
            thread::spawn(move || store.delete("a", false))
        };
        let start = Instant::now();
        while store.profiles_dir().join("a.json").exists() {
            assert!(start.elapsed() < TIMEOUT, "a.json is never deleted");
            thread::sleep(Duration::from_millis(5));
        }
        assert!(
            still_waiting(&delete),
            "the delete changed settings.json without waiting for its lock"
        );
        write_atomic(
            &store.settings_path(),
            b"{\n  \"defaultProfile\": \"b\"\n}\n",
        )
        .unwrap();
        drop(lock);
        assert_eq!(join_within(delete, "the delete").unwrap(), "a");
        assert_eq!(store.default_profile().unwrap().as_deref(), Some("b"));
        assert_eq!(store.names(), ["b"]);
        // Deleting the default itself still clears it.
        store.delete("B", false).unwrap();
        assert_eq!(store.default_profile().unwrap(), None);
    }

    /// SPEC §1: of two saves of one new name at once, in any case, exactly one writes it; the
    /// other is told it exists (`force` replaces that file, never adds a second one). The
    /// test holds the profiles lock as the first save does while it writes `foo.json`.
    #[test]
    fn of_two_saves_of_a_new_name_in_any_case_one_wins() {
        let (_dir, store) = store_with(&[]);
        let save = |name: &'static str, force: bool| {
            let store = store.clone();
            thread::spawn(move || store.save(name, &model_profile(), force))
        };

        let lock = store.lock_profiles().unwrap();
        let second = save("Foo", false);
        assert!(
            still_waiting(&second),
            "the save checked and wrote without waiting for the profiles lock"
        );
        write_model(&store, "foo");
        drop(lock);
        match join_within(second, "the second save") {
            Err(StoreError::Refused(m)) => assert_eq!(
                m,
                "profile \"foo\" already exists; add --force to replace it"
            ),
            other => panic!("expected the refusal, got {other:?}"),
        }
        assert_eq!(store.names(), ["foo"]);

        // With force (`/profile save` in the session), the file that won is replaced.
        let lock = store.lock_profiles().unwrap();
        let forced = save("Bar", true);
        assert!(still_waiting(&forced), "the forced save did not wait");
        write_model(&store, "bar");
        drop(lock);
        let saved = join_within(forced, "the forced save").unwrap();
        assert_eq!(
            saved,
            Saved {
                path: store.profiles_dir().join("bar.json"),
                replaced: true
            }
        );
        assert_eq!(store.names(), ["bar", "foo"]);
        // The lock file is beside the profiles directory: nothing in it but profiles.
        assert!(store.root().join("profiles.lock").is_file());
        let mut files: Vec<String> = fs::read_dir(store.profiles_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["bar.json", "foo.json"]);
    }

    /// `load` validates again whenever the profile's bytes or a backend's bytes changed, and
    /// only then (a long-running `serve` loads per request).
    #[test]
    fn a_load_sees_every_change_to_the_profile_and_its_backends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        fs::create_dir_all(store.profiles_dir()).unwrap();
        let write = |name: &str, text: &str| {
            fs::write(store.profiles_dir().join(format!("{name}.json")), text).unwrap();
        };
        write(
            "a",
            r#"{"version": 1, "provider": "openai", "model": "m1"}"#,
        );
        write(
            "b",
            r#"{"version": 1, "provider": "openai", "model": "m2"}"#,
        );
        write(
            "lb",
            r#"{"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"]}"#,
        );
        assert!(store.load("lb").is_ok());
        assert!(store.load("lb").is_ok(), "unchanged: still valid");
        // A backend turned into a load balancer: the load balancer no longer loads.
        write(
            "b",
            r#"{"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "a2"]}"#,
        );
        assert!(matches!(store.load("lb"), Err(StoreError::Invalid { .. })));
        write(
            "b",
            r#"{"version": 1, "provider": "openai", "model": "m2"}"#,
        );
        assert!(store.load("lb").is_ok());
        // A backend gone.
        fs::remove_file(store.profiles_dir().join("a.json")).unwrap();
        assert!(matches!(store.load("lb"), Err(StoreError::Invalid { .. })));
        write(
            "a",
            r#"{"version": 1, "provider": "openai", "model": "m1"}"#,
        );
        // The profile itself changed.
        write(
            "lb",
            r#"{"version": 1, "type": "loadbalancer", "policy": "roundrobin", "backends": ["a", "b"]}"#,
        );
        match store.load("lb") {
            Ok((Profile::LoadBalancer(lb), _)) => {
                assert_eq!(lb.policy, crate::profile::raw::Policy::Roundrobin);
            }
            other => panic!("a load balancer, got {other:?}"),
        }
        write("lb", r#"{"version": 1, "provider": "openai"}"#);
        assert!(matches!(store.load("lb"), Err(StoreError::Invalid { .. })));
    }

    /// A backend checked once is not checked again while its file is unchanged, and any change
    /// to the file is seen (it is looked at every time).
    #[test]
    fn backends_are_read_every_time_and_revalidated_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        fs::create_dir_all(store.profiles_dir()).unwrap();
        let write = |name: &str, text: &str| {
            fs::write(store.profiles_dir().join(format!("{name}.json")), text).unwrap();
        };
        write(
            "a",
            r#"{"version": 1, "provider": "openai", "model": "m1"}"#,
        );
        write(
            "b",
            r#"{"version": 1, "provider": "anthropic", "model": "m2"}"#,
        );
        write(
            "lb",
            r#"{"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["a", "b"]}"#,
        );
        assert!(matches!(
            store.load("lb"),
            Ok((Profile::LoadBalancer(_), _))
        ));
        let model = |p: Profile| match p {
            Profile::Model(m) => m.model,
            Profile::LoadBalancer(_) => panic!("a model profile"),
        };
        assert_eq!(model(store.clone().load_backend("a").unwrap()), "m1");
        write(
            "a",
            r#"{"version": 1, "provider": "openai", "model": "m3"}"#,
        );
        assert_eq!(model(store.load_backend("a").unwrap()), "m3");
        write("a", r#"{"version": 1, "provider": "openai"}"#);
        assert!(matches!(
            store.load_backend("a"),
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(store.resolve("a"), Resolved::Invalid(_)));
        write(
            "a",
            r#"{"version": 1, "provider": "openai", "model": "m1"}"#,
        );
        assert!(matches!(store.resolve("a"), Resolved::Model(_)));
        assert!(matches!(
            store.load_backend("lb"),
            Ok(Profile::LoadBalancer(_))
        ));
    }
}
