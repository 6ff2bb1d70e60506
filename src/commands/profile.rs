//! `llxprt profile …` (SPEC §2.3, §8.1).

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::{CmdError, Streams, exit};
use crate::cli::{PolicyArg, ProfileCommand, SaveCommand, SaveLbArgs, SaveModelArgs, ValidateArgs};
use crate::fsutil::read_limited;
use crate::profile::diagnostic::{Diagnostic, Palette, Severity, render_human, render_json};
use crate::profile::model::{Profile, did_you_mean};
use crate::profile::schema;
use crate::profile::settings::{self, Scope, parse_assignment};
use crate::profile::store::Store;
use crate::profile::validate::{self, FilesResolver, MAX_PROFILE_BYTES, Resolver};
use crate::redact::redact_json;

/// Runs one `profile` subcommand.
pub fn run(cmd: ProfileCommand, store: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    match cmd {
        ProfileCommand::Validate(a) => validate_files(&a, store, io),
        ProfileCommand::List(a) => crate::report::profiles::list(store, a.json, io),
        ProfileCommand::Show(a) => show(store, &a.name, io),
        ProfileCommand::Delete(a) => {
            let name = store.delete(&a.name, a.force)?;
            writeln!(io.err, "deleted profile \"{name}\"")?;
            // SPEC §8.1: the profile's state keys go too.
            if let Err(e) = crate::chat::profiles::forget_state(store, &name) {
                writeln!(io.err, "warning: its engine state stays: {e}")?;
            }
            Ok(exit::OK)
        }
        ProfileCommand::SetDefault(a) => crate::report::profiles::set_default(store, &a.name, io),
        ProfileCommand::Save(SaveCommand::Model(a)) => save_model(store, &a, io),
        ProfileCommand::Save(SaveCommand::Loadbalancer(a)) => save_lb(store, &a, io),
    }
}

fn stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn validate_files(a: &ValidateArgs, store: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    // Per file: its name, path, and its bytes or (message, help) of why it cannot be read.
    type ReadResult = Result<Vec<u8>, (String, String)>;
    let mut files: Vec<(String, PathBuf, ReadResult)> = Vec::new();
    for path in &a.files {
        let bytes = read_limited(path, MAX_PROFILE_BYTES).map_err(|e| match e.kind() {
            // SPEC §7: a huge file is refused with a clear error, and the hint must fit the
            // problem ("check the path" does not help with a 50 MB file).
            std::io::ErrorKind::InvalidData => (
                format!(
                    "the file is larger than {MAX_PROFILE_BYTES} bytes, the most a profile may have"
                ),
                "a profile is a small JSON object; is this the right file?".to_string(),
            ),
            std::io::ErrorKind::NotFound => (
                "cannot read the file: it does not exist".to_string(),
                "check the path".to_string(),
            ),
            _ => match crate::fsutil::not_regular(&e) {
                Some(why) => (
                    why.to_string(),
                    "a profile is a regular JSON file (or a symlink to one)".to_string(),
                ),
                None => (
                    format!("cannot read the file: {e}"),
                    "check the path and its permissions".to_string(),
                ),
            },
        });
        files.push((stem(path), path.clone(), bytes));
    }
    let resolver = FilesResolver {
        files: files
            .iter()
            .filter_map(|(n, p, b)| b.as_ref().ok().map(|b| (n.clone(), p.clone(), b.clone())))
            .collect(),
        fallback: Some(store as &dyn Resolver),
    };
    let (mut errors, mut warnings) = (0usize, 0usize);
    let palette = if io.color {
        Palette::COLOR
    } else {
        Palette::PLAIN
    };
    for (name, path, bytes) in &files {
        let display = path.display().to_string();
        let (text, mut diags): (String, Vec<Diagnostic>) = match bytes {
            Ok(b) => {
                let c = validate::check_profile(b, &resolver, Some(name));
                let d = validate::place_all(&display, &c.text, c.findings);
                (c.text, d)
            }
            Err((msg, help)) => (
                String::new(),
                vec![Diagnostic {
                    file: display.clone(),
                    line: 1,
                    column: 1,
                    pointer: String::new(),
                    severity: Severity::Error,
                    message: msg.clone(),
                    help: Some(help.clone()),
                    span: None,
                }],
            ),
        };
        for d in &mut diags {
            if a.strict && d.severity == Severity::Warning {
                d.severity = Severity::Error;
            }
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
                Severity::Note => {}
            }
            if a.json {
                writeln!(io.out, "{}", render_json(d))?;
            } else {
                writeln!(io.out, "{}", render_human(d, Some(&text), palette))?;
            }
        }
        if !a.json && diags.iter().all(|d| d.severity != Severity::Error) {
            writeln!(io.err, "ok: {display}")?;
        }
    }
    if !a.json {
        writeln!(
            io.err,
            "{} file{}: {errors} error{}, {warnings} warning{}",
            files.len(),
            plural(files.len()),
            plural(errors),
            plural(warnings)
        )?;
    }
    Ok(if errors > 0 { exit::FAILED } else { exit::OK })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Where an effective setting's value came from.
fn effective_rows(
    layers: &[(&str, &settings::Settings)],
    keys: impl Iterator<Item = &'static str>,
) -> Vec<(String, Value, String)> {
    let values: Vec<(&str, Value)> = layers
        .iter()
        .map(|(n, s)| (*n, serde_json::to_value(s).unwrap_or(Value::Null)))
        .collect();
    let schema = schema::profile_schema();
    let defaults = schema.pointer("/$defs/Settings/properties");
    keys.filter_map(|k| {
        let from_layer = values
            .iter()
            .rev()
            .find_map(|(n, v)| v.get(k).map(|x| (x.clone(), (*n).to_string())));
        from_layer
            .or_else(|| {
                defaults
                    .and_then(|d| d.get(k))
                    .and_then(|p| p.get("default"))
                    .map(|d| (d.clone(), "default".to_string()))
            })
            .map(|(v, src)| (k.to_string(), v, src))
    })
    .collect()
}

fn show(store: &Store, name: &str, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    store.path_of(name)?;
    let mut raw = store.raw_json(name)?;
    redact_json(&mut raw);
    writeln!(
        io.out,
        "{}",
        serde_json::to_string_pretty(&raw).expect("plain JSON")
    )?;
    let (profile, diags) = store.load(name)?;
    let model_keys = || {
        settings::SETTING_KEYS
            .iter()
            .filter(|k| k.scope == Scope::Model)
            .map(|k| k.key)
    };
    let failover_keys = || {
        settings::SETTING_KEYS
            .iter()
            .filter(|k| k.scope == Scope::Failover)
            .map(|k| k.key)
    };
    let print_rows = |title: String,
                      rows: Vec<(String, Value, String)>,
                      io: &mut Streams<'_>|
     -> std::io::Result<()> {
        writeln!(io.out, "\n{title}")?;
        for (k, mut v, src) in rows {
            if k == "auth-key" {
                v = json!(crate::redact::redact(v.as_str().unwrap_or("")));
            }
            if k == "custom-headers" {
                let mut wrapper = json!({"custom-headers": v});
                redact_json(&mut wrapper);
                v = wrapper["custom-headers"].take();
            }
            // SPEC §7.1: a URL's userinfo and query (a key pasted into `base-url`).
            if let Value::String(s) = &mut v {
                *s = crate::redact::hide_url_secrets(s);
            }
            writeln!(io.out, "  {k} = {v}  ({src})")?;
        }
        Ok(())
    };
    match &profile {
        Profile::Model(m) => {
            print_rows(
                "effective settings (used alone):".into(),
                effective_rows(
                    &[("profile", &m.settings)],
                    model_keys().chain(failover_keys()),
                ),
                io,
            )?;
        }
        Profile::LoadBalancer(lb) => {
            print_rows(
                "load balancer settings:".into(),
                effective_rows(&[("load balancer", &lb.settings)], failover_keys()),
                io,
            )?;
            let lent = lb.settings.lendable_model_part();
            for b in &lb.backends {
                let (bp, _) = store.load(b)?;
                if let Profile::Model(m) = bp {
                    print_rows(
                        format!("backend {b} ({}/{}):", m.provider, m.model),
                        effective_rows(
                            &[("backend", &m.settings), ("load balancer", &lent)],
                            model_keys(),
                        ),
                        io,
                    )?;
                }
            }
        }
    }
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if warnings > 0 {
        writeln!(
            io.err,
            "{warnings} warning{}: run llxprt profile validate {}",
            plural(warnings),
            store.path_of(name)?.display()
        )?;
    }
    Ok(exit::OK)
}

/// Reads `--set` assignments into an `ephemeralSettings` object; unknown keys are refused on
/// the command line (a typo there is never intended).
fn settings_object(sets: &[String]) -> Result<Map<String, Value>, CmdError> {
    let mut m = Map::new();
    for s in sets {
        let (k, v) =
            parse_assignment(s).map_err(|e| CmdError::new(exit::USAGE, format!("--set: {e}")))?;
        if settings::lookup(&k).is_none() && !settings::FOREIGN_KEYS.contains(&k.as_str()) {
            let mut e = CmdError::new(exit::USAGE, format!("unknown setting \"{k}\""));
            if let Some(s) = did_you_mean(&k, settings::all_spellings()) {
                e = e.help(format!("did you mean \"{s}\"?"));
            }
            return Err(e);
        }
        m.insert(k, v);
    }
    Ok(m)
}

/// A resolver for which every backend is a plain model profile: checks a load balancer's
/// arguments by themselves, apart from what the store holds.
struct AnyBackend;

impl Resolver for AnyBackend {
    fn resolve(&self, _name: &str) -> validate::Resolved {
        validate::Resolved::Model(Box::new(crate::profile::model::ModelProfile {
            provider: "openai".into(),
            model: "any".into(),
            model_params: Map::new(),
            settings: settings::Settings::default(),
            auth: None,
        }))
    }
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where a finding about a profile built from the command line came from, in the command
/// line's words (`--provider`, `--set streaming`), not as a JSON pointer.
fn argument_of(pointer: &str) -> String {
    let tokens = crate::profile::jsonpos::pointer_tokens(pointer);
    match tokens
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        // The messages about buckets and backends name them already.
        [] | ["auth", "buckets", ..] | ["backends", ..] => String::new(),
        ["provider"] => "--provider: ".into(),
        ["model"] => "--model: ".into(),
        ["ephemeralSettings", "base-url", ..] => "--base-url: ".into(),
        ["ephemeralSettings", "auth-keyfile", ..] => "--keyfile: ".into(),
        ["ephemeralSettings", key, ..] => format!("--set {key}: "),
        ["modelParams", key, ..] => format!("--param {key}: "),
        _ => format!("{pointer}: "),
    }
}

/// Validates a profile built from command-line values; errors name the offending argument.
fn build(
    doc: &Value,
    store: &Store,
    name: &str,
    io: &mut Streams<'_>,
) -> Result<Profile, CmdError> {
    let bytes = serde_json::to_vec_pretty(doc).expect("plain JSON");
    let c = validate::check_profile(&bytes, store, Some(name));
    let mut errors = Vec::new();
    for f in &c.findings {
        let line = format!("{}{}", argument_of(&f.pointer), f.message);
        match f.severity {
            Severity::Error => errors.push((line, f.help.clone())),
            Severity::Warning => writeln!(io.err, "warning: {line}")?,
            Severity::Note => {}
        }
    }
    match (c.parsed, errors.first()) {
        (Some(p), None) => Ok(p),
        (_, Some((msg, help))) => {
            // SPEC §8.2: arguments that are wrong by themselves are a usage error (2); valid
            // arguments naming backends the store cannot supply (missing, a load balancer,
            // invalid) make the save refused (1), as when `Store::save` finds it.
            let arguments_fine = validate::check_profile(&bytes, &AnyBackend, Some(name))
                .findings
                .iter()
                .all(|f| f.severity != Severity::Error);
            let code = if arguments_fine {
                exit::FAILED
            } else {
                exit::USAGE
            };
            let mut e = CmdError::new(code, msg.clone());
            e.help.clone_from(help);
            Err(e)
        }
        (None, None) => Err(CmdError::new(exit::USAGE, "the profile does not validate")),
    }
}

fn save_model(store: &Store, a: &SaveModelArgs, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    store.path_of(&a.name)?;
    let mut settings = settings_object(&a.set)?;
    if let Some(u) = &a.base_url {
        settings.insert("base-url".into(), json!(u));
    }
    if let Some(k) = &a.keyfile {
        settings.insert("auth-keyfile".into(), json!(k));
    }
    let mut params = Map::new();
    for p in &a.param {
        let (k, v) =
            parse_assignment(p).map_err(|e| CmdError::new(exit::USAGE, format!("--param: {e}")))?;
        params.insert(k, v);
    }
    let mut doc = json!({"version": 1, "provider": a.provider, "model": a.model});
    if !params.is_empty() {
        doc["modelParams"] = Value::Object(params);
    }
    if !settings.is_empty() {
        doc["ephemeralSettings"] = Value::Object(settings);
    }
    if a.oauth || !a.buckets.is_empty() {
        let mut auth = json!({"type": if a.oauth { "oauth" } else { "apikey" }});
        if !a.buckets.is_empty() {
            auth["buckets"] = json!(a.buckets);
        }
        doc["auth"] = auth;
    }
    let profile = build(&doc, store, &a.name, io)?;
    let path = store.save(&a.name, &profile, a.force)?.path;
    // The name of the file written: `--force` over a name differing only in case keeps the
    // existing profile's name (SPEC §1), and the message must not claim another.
    writeln!(
        io.err,
        "saved model profile \"{}\" to {}",
        stem(&path),
        path.display()
    )?;
    // SPEC §6.3: each bucket should have a stored login; say how to make one.
    if let Profile::Model(m) = &profile {
        for w in crate::auth::store::profile_login_warnings(store.root(), m, false) {
            writeln!(io.err, "{w}")?;
        }
    }
    Ok(exit::OK)
}

fn save_lb(store: &Store, a: &SaveLbArgs, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    store.path_of(&a.name)?;
    for b in &a.backends {
        store.path_of(b)?;
    }
    let policy = match a.policy {
        PolicyArg::Failover => "failover",
        PolicyArg::Roundrobin => "roundrobin",
    };
    let settings = settings_object(&a.set)?;
    let mut doc =
        json!({"version": 1, "type": "loadbalancer", "policy": policy, "backends": a.backends});
    if !settings.is_empty() {
        doc["ephemeralSettings"] = Value::Object(settings);
    }
    let profile = build(&doc, store, &a.name, io)?;
    let path = store.save(&a.name, &profile, a.force)?.path;
    // The name of the file written: `--force` over a name differing only in case keeps the
    // existing profile's name (SPEC §1), and the message must not claim another.
    writeln!(
        io.err,
        "saved load balancer \"{}\" to {}",
        stem(&path),
        path.display()
    )?;
    Ok(exit::OK)
}
