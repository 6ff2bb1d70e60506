//! What the user changes on top of the loaded profile (SPEC §8.1): `/provider`, `/model`,
//! `/baseurl`, `/keyfile`, `/set …` and `/system`, each checked at once.
//!
//! Owns: reading and checking those values and describing the current ones. Must not: print or
//! write files. Every method returns the line to show (`Ok`) or why it was refused (`Err`).

use serde_json::{Map, Value, json};

use super::{Identity, Session};
use crate::profile::model::{Profile, did_you_mean};
use crate::profile::settings::{self, Settings};
use crate::profile::validate::check_settings_value;
use crate::profile::validate::expand_tilde;
use crate::redact::{redact, redact_json};

/// The session-only switch that hides the live notes (SPEC §8.1): not a profile setting, so
/// never saved, and no change of setup clears it.
const QUIET: &str = "quiet";

/// Which session overrides to clear (SPEC §8.1 "What `/set` lasts for").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// §3.1 settings and model parameters: they belong to the model setup (`/provider`).
    Model,
    /// §3.2 settings: written by `/profile save loadbalancer`.
    Failover,
    /// Everything (`/profile load`).
    All,
}

/// A typed value: JSON when it parses, else the text itself (SPEC §8.1).
fn read_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A value as shown: secrets redacted (SPEC §7).
fn shown(key: &str, v: &Value) -> String {
    match key {
        "auth-key" => json!(redact(v.as_str().unwrap_or(""))).to_string(),
        "custom-headers" => {
            let mut w = json!({ "custom-headers": v });
            redact_json(&mut w);
            w["custom-headers"].to_string()
        }
        _ => v.to_string(),
    }
}

impl Session {
    pub(super) fn refuse_with_lb(&self, what: &str) -> Result<(), String> {
        match &self.loaded {
            Some(l) if self.lb_loaded() => Err(format!(
                "{what} is refused while load balancer \"{}\" is loaded: each backend's comes from its own profile (SPEC §3)",
                l.name
            )),
            _ => Ok(()),
        }
    }

    fn model_part(&self) -> Option<(String, String, Option<String>, Option<String>)> {
        self.model_setup().ok().map(|(_, m)| {
            (
                m.provider,
                m.model,
                m.settings.base_url,
                m.settings.auth_keyfile,
            )
        })
    }

    /// `/provider`: the current provider.
    pub fn show_provider(&self) -> String {
        match (&self.loaded, self.model_part()) {
            (Some(l), _) if self.lb_loaded() => {
                format!("load balancer \"{}\": {}", l.name, l.profile.summary())
            }
            (_, Some((p, ..))) => format!("provider: {p}"),
            _ => self.ident.provider.as_ref().map_or_else(
                || "provider: none (choose one with /provider NAME)".to_string(),
                |p| format!("provider: {p}"),
            ),
        }
    }

    /// `/provider NAME`: a fresh model setup (model, base URL, key and buckets cleared).
    pub fn set_provider(&mut self, name: &str) -> Result<String, String> {
        let info = crate::provider::find(name).ok_or_else(|| {
            let known: Vec<&str> = crate::provider::all_names().collect();
            let hint = did_you_mean(name, known.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            format!(
                "unknown provider \"{name}\"{hint} (known: {})",
                known.join(", ")
            )
        })?;
        let mut left = String::new();
        if self.lb_loaded()
            && let Some(l) = self.loaded.take()
        {
            left = format!("left load balancer \"{}\"; ", l.name);
        }
        self.ident = Identity {
            provider: Some(name.to_string()),
            fresh: true,
            ..Identity::default()
        };
        // SPEC §8.1: the §3.1 overrides belonged to the setup left behind.
        let cleared = self.clear_overrides(Part::Model);
        let also = if cleared.is_empty() {
            String::new()
        } else {
            format!("; session settings cleared: {}", cleared.join(", "))
        };
        Ok(format!(
            "{left}provider: {} (model, base URL, key and buckets cleared{also}; choose a model with /model NAME)",
            info.name
        ))
    }

    /// `/model`: the current model.
    pub fn show_model(&self) -> String {
        match self.model_part() {
            Some((_, m, ..)) => format!("model: {m}"),
            None if self.lb_loaded() => self.show_provider(),
            None => "model: none (choose one with /model NAME)".into(),
        }
    }

    /// `/model NAME` (keeps base URL, key and buckets).
    pub fn set_model(&mut self, name: &str) -> Result<String, String> {
        self.refuse_with_lb("/model")?;
        self.ident.model = Some(name.to_string());
        Ok(format!("model: {name}"))
    }

    /// `/baseurl`: the current base URL.
    pub fn show_base_url(&self) -> String {
        match self.model_setup() {
            Ok((_, m)) => {
                let default = m.provider_info().base_url;
                format!(
                    "base URL: {}",
                    m.settings
                        .base_url
                        .unwrap_or_else(|| format!("{default} (the provider's default)"))
                )
            }
            Err(e) => e,
        }
    }

    /// `/baseurl URL`.
    pub fn set_base_url(&mut self, url: &str) -> Result<String, String> {
        self.refuse_with_lb("/baseurl")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "base URL \"{url}\" must start with http:// or https://"
            ));
        }
        self.ident.base_url = Some(url.to_string());
        Ok(format!("base URL: {url}"))
    }

    /// `/keyfile`: where the key comes from (the path, never the key).
    pub fn show_keyfile(&self) -> String {
        match self.model_part() {
            Some((.., Some(k))) => format!("keyfile: {k}"),
            Some(_) => {
                "keyfile: none (the key comes from auth-key, a bucket or the provider's variable)"
                    .into()
            }
            None => self.show_provider(),
        }
    }

    /// `/keyfile PATH`, stored as typed (`~` kept); it replaces a key given with `--set
    /// auth-key`.
    pub fn set_keyfile(&mut self, path: &str) -> Result<String, String> {
        self.refuse_with_lb("/keyfile")?;
        self.ident.keyfile = Some(path.to_string());
        self.ident.key = None;
        let note = if expand_tilde(path).is_file() {
            ""
        } else {
            " (no such file yet)"
        };
        Ok(format!("keyfile: {path}{note}"))
    }

    /// `--set base-url|auth-keyfile|auth-key=…` from the command line, once the profile is
    /// loaded (SPEC §3): the session's model setup, as `/baseurl` and `/keyfile` set it (an
    /// `auth-key` replaces the keyfile, and the reverse). Refused, naming the key, while a load
    /// balancer is loaded: each backend's comes from its own profile.
    pub fn set_identity(&mut self, key: &str, value: &Value) -> Result<(), String> {
        self.refuse_with_lb(&format!("--set {key}"))?;
        let text = value
            .as_str()
            .ok_or_else(|| format!("--set {key}: expected a string"))?;
        match key {
            "base-url" => self
                .set_base_url(text)
                .map(drop)
                .map_err(|e| format!("--set {key}: {e}")),
            "auth-keyfile" => self.set_keyfile(text).map(drop),
            "auth-key" => {
                self.ident.key = Some(text.to_string());
                self.ident.keyfile = None;
                Ok(())
            }
            _ => Err(format!("--set {key} is not a backend's identity")),
        }
    }

    /// `/system`: the system prompt in effect.
    pub fn show_system(&self) -> String {
        let own = self
            .loaded
            .as_ref()
            .and_then(|l| l.profile.settings().system_prompt.clone());
        match (&self.settings.system_prompt, own) {
            (Some(s), _) => format!("system prompt (session): {s}"),
            (None, Some(s)) => format!("system prompt (profile): {s}"),
            (None, None) => "no system prompt (set one with /system TEXT)".into(),
        }
    }

    /// `/system TEXT`: the session's `system-prompt`.
    pub fn set_system(&mut self, text: &str) -> Result<String, String> {
        self.set_checked("system-prompt", Value::String(text.to_string()))?;
        Ok("system prompt set for this session".into())
    }

    fn canonical(key: &str) -> Result<&'static str, String> {
        let row = settings::lookup(key).ok_or_else(|| {
            let hint = did_you_mean(key, settings::all_spellings())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            format!("unknown setting \"{key}\"{hint}")
        })?;
        match row.key {
            "base-url" => Err("base-url: use /baseurl URL".into()),
            "auth-keyfile" => Err("auth-keyfile: use /keyfile PATH".into()),
            // A key typed at the prompt would be kept in the line history (SPEC §7).
            "auth-key" => Err(
                "auth-key is not set in the session (the line would be kept in the history): put the key in a file only you can read and use /keyfile PATH".into(),
            ),
            k => Ok(k),
        }
    }

    fn set_checked(&mut self, key: &'static str, value: Value) -> Result<(), String> {
        check_settings_value(&json!({ key: value.clone() }))?;
        let mut next = self.overrides.clone();
        next.insert(key.to_string(), value);
        self.apply(next)
    }

    fn apply(&mut self, overrides: Map<String, Value>) -> Result<(), String> {
        self.settings = if overrides.is_empty() {
            Settings::default()
        } else {
            check_settings_value(&Value::Object(overrides.clone()))?
        };
        self.overrides = overrides;
        Ok(())
    }

    /// `--set k=v…` from the command line: checked together, as the one-shot always did.
    pub fn set_many(&mut self, sets: Map<String, Value>) -> Result<(), String> {
        let mut next = self.overrides.clone();
        next.extend(sets);
        self.apply(next)
    }

    /// Whether the live notes are hidden (`/set quiet true`, `--quiet`).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// `--quiet`, `/set quiet true|false`.
    pub fn set_quiet(&mut self, on: bool) {
        self.quiet = on;
    }

    fn quiet_line(&self) -> String {
        format!(
            "quiet = {} (this session only: live notes {})",
            self.quiet,
            if self.quiet { "hidden" } else { "shown" }
        )
    }

    /// Clears the session overrides of `part` (SPEC §8.1) and returns their names, in the
    /// order they are shown (`/set` keys, then `modelParams.K`). `quiet` is never cleared.
    pub fn clear_overrides(&mut self, part: Part) -> Vec<String> {
        let goes = |k: &str| {
            let failover =
                settings::lookup(k).is_some_and(|r| r.scope == settings::Scope::Failover);
            match part {
                Part::All => true,
                Part::Model => !failover,
                Part::Failover => failover,
            }
        };
        let (gone, kept): (Map<String, Value>, Map<String, Value>) =
            std::mem::take(&mut self.overrides)
                .into_iter()
                .partition(|(k, _)| goes(k));
        let mut names: Vec<String> = gone.keys().cloned().collect();
        // Each kept value was checked with the others; alone it still is.
        if self.apply(kept).is_err() {
            self.settings = Settings::default();
        }
        if part != Part::Failover {
            names.extend(
                std::mem::take(&mut self.params)
                    .keys()
                    .map(|k| format!("modelParams.{k}")),
            );
        }
        names
    }

    /// `/set KEY VALUE`: VALUE read as JSON, else as a string, checked against the key's
    /// schema at once (SPEC §8.1).
    pub fn set(&mut self, key: &str, text: &str) -> Result<String, String> {
        if key == QUIET {
            return match read_value(text) {
                Value::Bool(on) => {
                    self.quiet = on;
                    Ok(self.quiet_line())
                }
                _ => Err(format!("quiet takes true or false, not {text}")),
            };
        }
        let key = Self::canonical(key)?;
        let value = read_value(text);
        self.set_checked(key, value.clone())?;
        Ok(format!("{key} = {} (session)", shown(key, &value)))
    }

    /// `/set --unset KEY`.
    pub fn unset(&mut self, key: &str) -> Result<String, String> {
        if key == QUIET {
            self.quiet = false;
            return Ok(self.quiet_line());
        }
        let key = Self::canonical(key)?;
        let mut next = self.overrides.clone();
        if next.remove(key).is_none() {
            return Ok(format!("{key} is not set in this session"));
        }
        self.apply(next)?;
        Ok(format!("{key} unset; {}", self.show(key)?))
    }

    /// `/set KEY`: the value in effect and where it comes from.
    pub fn show(&self, key: &str) -> Result<String, String> {
        if key == QUIET {
            return Ok(self.quiet_line());
        }
        let key = settings::lookup(key)
            .map(|r| r.key)
            .ok_or_else(|| format!("unknown setting \"{key}\""))?;
        if let Some(v) = self.overrides.get(key) {
            return Ok(format!("{key} = {} (session)", shown(key, v)));
        }
        let own = self.loaded.as_ref().and_then(|l| {
            serde_json::to_value(l.profile.settings())
                .ok()
                .and_then(|v| v.get(key).cloned())
                .map(|v| (v, &l.profile))
        });
        if let Some((v, p)) = own {
            let kind = match p {
                Profile::Model(_) => "profile",
                Profile::LoadBalancer(_) => "load balancer",
            };
            return Ok(format!("{key} = {} ({kind})", shown(key, &v)));
        }
        let default = crate::profile::schema::profile_schema()
            .pointer(&format!("/$defs/Settings/properties/{key}/default"))
            .cloned();
        Ok(match default {
            Some(d) => format!("{key} = {d} (default)"),
            None => format!("{key} is not set"),
        })
    }

    /// `/set modelparam K V`.
    pub fn set_param(&mut self, key: &str, text: &str) -> Result<String, String> {
        let value = read_value(text);
        let line = format!("modelParams.{key} = {value} (session)");
        self.params.insert(key.to_string(), value);
        Ok(line)
    }

    /// `/set modelparam K`.
    pub fn show_param(&self, key: &str) -> String {
        let own = match &self.loaded {
            Some(l) => match &l.profile {
                Profile::Model(m) => m.model_params.get(key).cloned(),
                Profile::LoadBalancer(_) => None,
            },
            None => None,
        };
        match (self.params.get(key), own) {
            (Some(v), _) => format!("modelParams.{key} = {v} (session)"),
            (None, Some(v)) => format!("modelParams.{key} = {v} (profile)"),
            (None, None) => format!("modelParams.{key} is not set"),
        }
    }

    /// `/set --unset modelparam K`.
    pub fn unset_param(&mut self, key: &str) -> String {
        match self.params.remove(key) {
            Some(_) => format!("modelParams.{key} unset; {}", self.show_param(key)),
            None => format!("modelParams.{key} is not set in this session"),
        }
    }

    /// `--param k=v…`.
    pub fn set_params(&mut self, params: Map<String, Value>) {
        self.params.extend(params);
    }

    /// The session's settings (checked).
    pub fn session_settings(&self) -> &Settings {
        &self.settings
    }

    /// The session's model parameters.
    pub fn session_params(&self) -> &Map<String, Value> {
        &self.params
    }
}
