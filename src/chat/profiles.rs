//! The session's `/profile` commands (SPEC §8.1): save the model setup or a load balancer,
//! load, delete.
//!
//! Owns: what a saved profile contains when it comes from the session — provider, model, base
//! URL (when not the provider's default), keyfile, auth and buckets, the session's
//! `modelParams` and §3.1 settings, never §3.2 ones for a model profile; a load balancer gets
//! the session's §3.2 settings. Must not: print (each function returns its lines).

use serde_json::{Value, json};

use super::session::{Part, Session};
use crate::profile::diagnostic::Severity;
use crate::profile::model::{Auth, Profile};
use crate::profile::names::same_profile_name;
use crate::profile::raw::{AuthKind, Policy};
use crate::profile::store::{Store, StoreError};
use crate::profile::validate;
use crate::state_file::SharedStore;

/// Checks a profile built in the session like a file (SPEC §2.3): errors refuse the save,
/// warnings are returned to show.
fn check(store: &Store, name: &str, doc: &Value) -> Result<(Profile, Vec<String>), String> {
    let bytes = serde_json::to_vec_pretty(doc).expect("plain JSON");
    let c = validate::check_profile(&bytes, store, Some(name));
    let mut warnings = Vec::new();
    for f in &c.findings {
        let at = f.pointer.trim_start_matches('/');
        let line = if at.is_empty() {
            f.message.clone()
        } else {
            format!("{at}: {}", f.message)
        };
        match f.severity {
            Severity::Error => return Err(line),
            Severity::Warning => warnings.push(format!("warning: {line}")),
            Severity::Note => {}
        }
    }
    c.parsed
        .map(|p| (p, warnings))
        .ok_or_else(|| "the profile does not validate".to_string())
}

/// Saves over an existing profile without `--force` (the session says so instead, SPEC §8.1).
fn save(store: &Store, name: &str, profile: &Profile, what: &str) -> Result<String, String> {
    // Whether a profile was replaced is decided by the store, under its lock (SPEC §1): a
    // check made here first could be out of date by the time of the write.
    let saved = store.save(name, profile, true).map_err(|e| e.to_string())?;
    let path = saved.path;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(if saved.replaced {
        format!(
            "replaced the existing profile \"{stem}\" with this {what} ({})",
            path.display()
        )
    } else {
        format!("saved {what} \"{stem}\" to {}", path.display())
    })
}

/// `/profile save model NAME [BUCKET…]`; the saved profile becomes the loaded one (SPEC
/// §8.1), so the next message already uses its buckets and key.
pub fn save_model(s: &mut Session, name: &str, buckets: &[String]) -> Result<Vec<String>, String> {
    if let Some(l) = s.loaded().filter(|_| s.lb_loaded()) {
        return Err(format!(
            "/profile save model is refused while load balancer \"{}\" is loaded (its backends are saved profiles already); /profile save loadbalancer saves one",
            l.name
        ));
    }
    s.store().path_of(name).map_err(|e| e.to_string())?;
    let (_, m) = s.model_setup()?;
    let info = m.provider_info();
    // §3.1 settings: the profile's own under the session's; never §3.2 ones (SPEC §8.1).
    let mut settings = m.settings.clone();
    settings.overlay(&s.session_settings().lendable_model_part());
    let mut settings_out = settings.lendable_model_part();
    settings_out.base_url = settings
        .base_url
        .filter(|u| u.trim_end_matches('/') != info.base_url.trim_end_matches('/'));
    settings_out.auth_keyfile = settings.auth_keyfile;
    settings_out.auth_key = settings.auth_key;
    settings_out.extra.clear();
    let mut params = m.model_params.clone();
    params.extend(
        s.session_params()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let auth = if buckets.is_empty() {
        m.auth.clone()
    } else {
        Some(Auth {
            kind: m.auth.as_ref().map_or(AuthKind::Apikey, |a| a.kind),
            buckets: Some(buckets.to_vec()),
        })
    };
    let profile = Profile::Model(crate::profile::model::ModelProfile {
        provider: m.provider.clone(),
        model: m.model.clone(),
        model_params: params,
        settings: settings_out,
        auth,
    });
    let doc: Value = serde_json::from_str(&profile.to_json()).expect("profiles serialise");
    let (checked, mut lines) = check(s.store(), name, &doc)?;
    // SPEC §6.3: each bucket should have a stored login for this provider; say how to make one.
    if let Profile::Model(m) = &checked {
        lines.extend(crate::auth::store::profile_login_warnings(
            s.store().root(),
            m,
            true,
        ));
    }
    lines.push(save(s.store(), name, &checked, "model profile")?);
    match s.load(name) {
        Ok(l) => lines.push(format!(
            "loaded profile \"{}\": the next message uses it",
            l.name
        )),
        Err(e) => lines.push(format!("warning: it could not be loaded: {}", e.message)),
    }
    Ok(lines)
}

/// `/profile save loadbalancer NAME POLICY P1 P2 …`: the session's §3.2 settings (the loaded
/// profile's own under `/set`'s).
pub fn save_lb(
    s: &mut Session,
    name: &str,
    policy: Policy,
    backends: &[String],
) -> Result<Vec<String>, String> {
    s.store().path_of(name).map_err(|e| e.to_string())?;
    if let Some(b) = backends.iter().find(|b| same_profile_name(b, name)) {
        return Err(format!(
            "load balancer \"{name}\" may not list itself (\"{b}\") as a backend"
        ));
    }
    let mut failover = s
        .loaded()
        .map(|l| l.profile.settings().failover_part())
        .unwrap_or_default();
    failover.overlay(&s.session_settings().failover_part());
    let mut doc = json!({"version": 1, "type": "loadbalancer", "policy": policy.as_str(), "backends": backends});
    let settings = serde_json::to_value(&failover).expect("plain data");
    if settings.as_object().is_some_and(|o| !o.is_empty()) {
        doc["ephemeralSettings"] = settings;
    }
    let (checked, mut lines) = check(s.store(), name, &doc)?;
    lines.push(save(s.store(), name, &checked, "load balancer")?);
    // SPEC §8.1: the §3.2 overrides went into the load balancer; they no longer belong to
    // the session.
    let cleared = s.clear_overrides(Part::Failover);
    if !cleared.is_empty() {
        lines.push(format!(
            "session settings cleared (saved in \"{name}\"): {}",
            cleared.join(", ")
        ));
    }
    Ok(lines)
}

/// `/profile load NAME` typed in the session: the load, then the session overrides cleared
/// (SPEC §8.1: it starts from the loaded profile's own settings), said by name. On a failed
/// load the session keeps everything it had.
pub fn load_fresh(s: &mut Session, name: &str) -> Result<Vec<String>, crate::face::CmdError> {
    let mut lines = load(s, name)?;
    let cleared = s.clear_overrides(Part::All);
    if !cleared.is_empty() {
        lines.push(format!(
            "session settings cleared (the profile's own apply): {}",
            cleared.join(", ")
        ));
    }
    Ok(lines)
}

/// Loads a profile: the lines to show (what was loaded; its warnings as one line).
pub fn load(s: &mut Session, name: &str) -> Result<Vec<String>, crate::face::CmdError> {
    let l = s.load(name)?;
    let mut lines = vec![format!(
        "loaded profile \"{}\": {}",
        l.name,
        l.profile
            .summary()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    )];
    let n = l.warnings.len();
    if n > 0 {
        // SPEC §8.1: warnings as one line.
        lines.push(format!(
            "{n} warning{}: run llxprt profile validate {}",
            if n == 1 { "" } else { "s" },
            l.path.display()
        ));
    }
    Ok(lines)
}

/// `/profile delete NAME`: refused while a load balancer references it, naming which (no
/// `--force` in the session); the profile's state keys go too (SPEC §8.1).
pub fn delete(s: &Session, name: &str) -> Result<Vec<String>, String> {
    let store = s.store();
    store.path_of(name).map_err(|e| e.to_string())?;
    let refs = store.referrers(name);
    if !refs.is_empty() {
        return Err(format!(
            "profile \"{name}\" is a backend of {}: remove it there first (on the command line, llxprt profile delete --force deletes it anyway)",
            refs.iter()
                .map(|r| format!("\"{r}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let actual = store.delete(name, false).map_err(|e| match e {
        StoreError::Missing {
            suggestion: Some(ref s),
            ..
        } => format!("{e}; did you mean \"{s}\"?"),
        StoreError::Missing { .. } => format!("{e} (/profile list shows them)"),
        other => other.to_string(),
    })?;
    let mut lines = vec![format!("deleted profile \"{actual}\"")];
    if let Err(e) = forget_state(store, &actual) {
        lines.push(format!("warning: its engine state stays: {e}"));
    }
    if s.loaded().is_some_and(|l| l.name == actual) {
        lines.push("it stays loaded in this session until another is loaded".into());
    }
    Ok(lines)
}

/// Removes a deleted profile's `lb/<name>` and `backend/<name>` state keys (bucket keys
/// belong to accounts, shared by every profile, and stay; SPEC §5.9).
pub fn forget_state(store: &Store, name: &str) -> std::io::Result<()> {
    let mut file = SharedStore::open(store.root());
    if let SharedStore::File(f) = &file
        && !f.path().exists()
    {
        return Ok(());
    }
    file.update(|shared| {
        shared.lbs.remove(name);
        shared.backends.remove(name);
    })
}
