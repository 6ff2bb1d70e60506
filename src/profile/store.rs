//! The profile store (SPEC §1): the root directory, profile files, `settings.json`.
//!
//! Owns: where files live, listing, loading (with full validation), saving and deleting
//! profiles atomically, and the default profile. Names are checked before any filesystem
//! access. Must not: print.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::diagnostic::{Diagnostic, Severity};
use super::model::{ModelProfile, Profile};
use super::names::check_profile_name;
use super::validate::{self, MAX_PROFILE_BYTES, Resolved, Resolver};
use crate::fsutil::{read_limited, write_atomic};

/// An error of the store, with the exit-code class it belongs to (SPEC §8.2).
#[derive(Debug)]
pub enum StoreError {
    /// A name argument is invalid (usage error, exit 2).
    InvalidName(String),
    /// The profile does not exist (configuration error, exit 3).
    Missing(String),
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
            StoreError::InvalidName(m)
            | StoreError::Missing(m)
            | StoreError::Refused(m)
            | StoreError::Io(m) => f.write_str(m),
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
}

/// Valid model profiles: file → (its bytes, the profile).
type Validated = HashMap<PathBuf, (Vec<u8>, ModelProfile)>;

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

    /// The file of a profile, after checking the name (SPEC §1).
    pub fn path_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_profile_name(name).map_err(|why| {
            StoreError::InvalidName(format!("invalid profile name \"{name}\": {why}"))
        })?;
        Ok(self.profiles_dir().join(format!("{name}.json")))
    }

    /// Names of the profile files, sorted; temporary and dot files are ignored.
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.profiles_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| check_profile_name(n).is_ok())
            .collect();
        names.sort_by(|a, b| a.to_lowercase().cmp(&b.to_lowercase()).then(a.cmp(b)));
        names
    }

    /// The existing profile whose name equals `name` ignoring case, if any.
    fn existing_name(&self, name: &str) -> Option<String> {
        self.names()
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(name))
    }

    /// Reads a profile's bytes (bounded). An invalid name is refused as such (SPEC §1), and a
    /// file that cannot be read — one over [`MAX_PROFILE_BYTES`] included — is a profile that
    /// does not load (SPEC §7, §8.2: a configuration error).
    fn read(&self, name: &str) -> Result<(PathBuf, Vec<u8>), StoreError> {
        self.path_of(name)?;
        let actual = self
            .existing_name(name)
            .ok_or_else(|| StoreError::Missing(format!("profile \"{name}\" does not exist")))?;
        let path = self.path_of(&actual)?;
        let bytes = read_limited(&path, MAX_PROFILE_BYTES).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::InvalidData {
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
        Ok((path, bytes))
    }

    /// Loads and fully validates a profile, backends included (SPEC §2.3 "every load").
    pub fn load(&self, name: &str) -> Result<(Profile, Vec<Diagnostic>), StoreError> {
        let (path, bytes) = self.read(name)?;
        self.check(name, path, bytes)
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

    /// Loads a model profile to run as a backend: [`Store::load`] without the diagnostics,
    /// which are only warnings for a profile that loads. The file is read every time; its
    /// validation is skipped when its bytes are those of a profile that validated before.
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
    pub fn save(&self, name: &str, profile: &Profile, force: bool) -> Result<PathBuf, StoreError> {
        let mut path = self.path_of(name)?;
        if let Some(existing) = self.existing_name(name) {
            if !force {
                return Err(StoreError::Refused(format!(
                    "profile \"{existing}\" already exists; add --force to replace it"
                )));
            }
            if existing != name {
                let old = self.path_of(&existing)?;
                path = old;
            }
        }
        if let Profile::LoadBalancer(lb) = profile {
            for b in &lb.backends {
                if b.eq_ignore_ascii_case(name) {
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
        Ok(path)
    }

    /// Load balancers that list `name` as a backend.
    ///
    /// Each file's own `backends` (or `profiles`) is read without validating the file: a load
    /// balancer that no longer loads (another backend deleted with `--force`, a typo) still
    /// references `name`, and deleting `name` must still be refused (SPEC §8.1).
    pub fn referrers(&self, name: &str) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|n| !n.eq_ignore_ascii_case(name))
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
                        .any(|b| b.eq_ignore_ascii_case(name))
            })
            .collect()
    }

    /// Deletes a profile; refused while a load balancer references it unless `force`. Deleting
    /// the default clears the default.
    pub fn delete(&self, name: &str, force: bool) -> Result<String, StoreError> {
        self.path_of(name)?;
        let actual = self
            .existing_name(name)
            .ok_or_else(|| StoreError::Missing(format!("profile \"{name}\" does not exist")))?;
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
        if self
            .default_profile()?
            .is_some_and(|d| d.eq_ignore_ascii_case(&actual))
        {
            self.set_default(None)?;
        }
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
            Err(e) => Err(StoreError::Io(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
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
    pub fn set_default(&self, name: Option<&str>) -> Result<(), StoreError> {
        let mut m = self.read_settings()?;
        match name {
            Some(n) => {
                m.insert("defaultProfile".into(), Value::String(n.to_string()));
            }
            None => {
                m.remove("defaultProfile");
            }
        }
        let mut text =
            serde_json::to_string_pretty(&Value::Object(m)).expect("a JSON map serialises");
        text.push('\n');
        let path = self.settings_path();
        write_atomic(&path, text.as_bytes())
            .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", path.display())))
    }
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
            Err(StoreError::Missing(_) | StoreError::InvalidName(_)) => Resolved::Missing,
            Err(_) => Resolved::Invalid(self.profiles_dir().join(format!("{name}.json"))),
        }
    }
    fn names(&self) -> Vec<String> {
        Store::names(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend checked once is not checked again while its file is unchanged, and any change
    /// to the file is seen (it is read every time).
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
