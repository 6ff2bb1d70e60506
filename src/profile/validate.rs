//! `llxprt profile validate` and every load (SPEC §2.3): three layers — JSON syntax, the
//! committed schema, semantics — reported together as [`Diagnostic`]s.
//!
//! Owns: running the layers over one file's bytes, resolving load-balancer backends, and the
//! checks that touch the filesystem (keyfiles). Must not: print or decide exit codes.

use std::path::{Path, PathBuf};

use jsonschema::error::ValidationErrorKind;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::diagnostic::{Diagnostic, Finding, Severity, place};
use super::jsonpos::escape_token;
use super::model::{self, Profile, did_you_mean};
use super::names::same_profile_name;
use super::numbers;
use super::raw::RawProfile;
use super::schema;
use super::settings::{Scope, Settings};

/// Largest profile file read (SPEC §7: no unbounded allocation). Profiles are small; 1 MiB
/// leaves room for long system prompts.
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

/// Result of the first two layers plus the single-file semantics.
#[derive(Debug)]
pub struct Checked<T> {
    /// The file's text (lossy UTF-8), for snippets.
    pub text: String,
    /// The parsed document, when the syntax was valid.
    pub value: Option<Value>,
    /// The typed result, when nothing was an error.
    pub parsed: Option<T>,
    /// Every finding so far.
    pub findings: Vec<Finding>,
}

fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

/// Layer 1: JSON syntax. A failure is one finding placed by serde_json's line and column
/// (converted to characters, see [`char_position`]).
pub fn parse_json(bytes: &[u8]) -> Result<Value, (usize, usize, String)> {
    serde_json::from_slice::<Value>(bytes).map_err(|e| {
        let s = syntax_error(bytes, &e);
        (s.line, s.column, s.message)
    })
}

/// A JSON syntax error, placed and explained.
struct SyntaxError {
    line: usize,
    column: usize,
    message: String,
    help: String,
}

fn syntax_error(bytes: &[u8], e: &serde_json::Error) -> SyntaxError {
    let raw = strip_position(&e.to_string()).to_string();
    let (mut line, mut column) = char_position(bytes, e.line(), e.column());
    if raw.contains("trailing comma") && e.column() > 0 {
        // serde_json stops at the closing bracket; the caret belongs under the comma.
        let at = line_start(bytes, e.line()) + e.column() - 1;
        if let Some(comma) = bytes[..at.min(bytes.len())]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .filter(|&i| bytes[i] == b',')
        {
            let l = 1 + bytes[..comma].iter().filter(|b| **b == b'\n').count();
            (line, column) = char_position(bytes, l, comma - line_start(bytes, l) + 1);
        }
    }
    // What the text holds at the error, for hints that depend on it (comments, quotes).
    let rest: String = String::from_utf8_lossy(bytes)
        .lines()
        .nth(line - 1)
        .unwrap_or("")
        .chars()
        .skip(column - 1)
        .take(2)
        .collect();
    let comment = rest.starts_with("//") || rest.starts_with("/*");
    let (message, help) = if bytes.iter().all(u8::is_ascii_whitespace) {
        (
            "the file is empty".to_string(),
            "a profile is one JSON object: {\"version\": 1, …}".to_string(),
        )
    } else if comment {
        (
            format!("{raw} (JSON has no comments)"),
            "remove the comment".to_string(),
        )
    } else if raw.contains("control character") {
        (
            "a string is not closed before the end of the line".to_string(),
            "add the closing \" (a line break inside a string is written \\n)".to_string(),
        )
    } else if raw.contains("invalid unicode code point") {
        (
            "the file is not valid UTF-8 here".to_string(),
            "save the file as UTF-8".to_string(),
        )
    } else {
        (raw.clone(), syntax_help(&raw, &rest))
    };
    SyntaxError {
        line,
        column,
        message,
        help,
    }
}

/// Byte offset where 1-based `line` starts (the end of the text past the last line).
fn line_start(bytes: &[u8], line: usize) -> usize {
    if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    }
}

/// serde_json counts columns in bytes, up to and including the offending byte, and reports
/// column 0 when the last byte it read was the newline ending the previous line. Diagnostics
/// count characters (SPEC §2.3: line:column of the offending token), so a line with `é` or `ñ`
/// before the error would otherwise put the caret too far right; and an error at a newline
/// (an unclosed string, the end of the file) belongs at the end of the line it ends.
fn char_position(bytes: &[u8], line: usize, byte_column: usize) -> (usize, usize) {
    let line = line.max(1);
    let start_of = |l: usize| line_start(bytes, l);
    let chars = |b: &[u8]| String::from_utf8_lossy(b).chars().count();
    if byte_column == 0 {
        if line == 1 {
            return (1, 1);
        }
        let start = start_of(line - 1);
        let end = start_of(line).saturating_sub(1).max(start);
        let text = &bytes[start..end];
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        return (line - 1, chars(text) + 1);
    }
    let start = start_of(line);
    let end = (start + byte_column - 1).min(bytes.len());
    (line, chars(&bytes[start..end]) + 1)
}

/// Layer 2: the schema. A union's failure is reported as the errors of the branch the value
/// belongs to (never only "not valid under any of the schemas").
pub fn schema_findings(schema: &schema::Schema, value: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    if schema.is_valid(value) {
        return out;
    }
    let root_schema = schema.value();
    for e in schema.iter_errors(value) {
        collect(&e, root_schema, value, &mut out);
    }
    out.dedup();
    out
}

/// Reads a JSON value as a settings object (`--set`, `/set`, a trace's overrides) and checks it
/// against the settings schema; the error names the key and what is wrong with it.
pub fn check_settings_value(v: &Value) -> Result<Settings, String> {
    let findings = schema_findings(&schema::SETTINGS, v);
    if let Some(f) = findings.first() {
        return Err(format!(
            "{}: {}",
            f.pointer.trim_start_matches('/'),
            f.message
        ));
    }
    let mut s: Settings = serde_json::from_value(v.clone()).map_err(|e| {
        // SPEC §7: a number too large for its type names its key and the limit.
        match numbers::unreadable_integers(schema::SETTINGS.value(), v).first() {
            Some(f) => format!("{}: {}", f.pointer.trim_start_matches('/'), f.message),
            None => e.to_string(),
        }
    })?;
    s.normalise();
    Ok(s)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn is_secret_pointer(p: &str) -> bool {
    let l = p.to_lowercase();
    l.contains("auth-key")
        || l.contains("custom-headers")
        || l.contains("token")
        || l.contains("key")
}

fn collect(
    e: &jsonschema::ValidationError<'_>,
    root_schema: &Value,
    instance: &Value,
    out: &mut Vec<Finding>,
) {
    let pointer = e.instance_path().as_str().to_string();
    match e.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let here = instance.pointer(&pointer);
            if pointer.is_empty() && here.is_some_and(|v| !v.is_object()) {
                out.push(
                    Finding::error(
                        "",
                        format!(
                            "expected a JSON object, found {}",
                            kind_of(here.unwrap_or(&Value::Null))
                        ),
                    )
                    .help("a profile is one JSON object: {\"version\": 1, …}"),
                );
                return;
            }
            if let Some(f) = constant_union(&pointer, here, context) {
                out.push(f);
                return;
            }
            let pick = pick_branch(root_schema, &pointer, here, context);
            for sub in context.get(pick).into_iter().flatten() {
                collect(sub, root_schema, instance, out);
            }
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for key in unexpected {
                let ptr = format!("{pointer}/{}", escape_token(key));
                out.push(
                    Finding::error(ptr, format!("unknown key \"{key}\" here"))
                        .at_key()
                        .help(allowed_keys_help(root_schema, instance, &pointer, key)),
                );
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or("?");
            let mut f = Finding::error(pointer.clone(), format!("missing required key \"{name}\""));
            if let Some(d) = schema::describe(
                root_schema,
                instance,
                &format!("{pointer}/{}", escape_token(name)),
            ) {
                f = f.help(format!("add \"{name}\": {}", d.replace('\n', " ")));
            }
            out.push(f);
        }
        _ => {
            let here = instance.pointer(&pointer);
            // A container is never shown whole (it may hold a secret, and it would not fit);
            // neither is a value under a secret's name (SPEC §7).
            let hide =
                is_secret_pointer(&pointer) || here.is_some_and(|v| v.is_object() || v.is_array());
            let message = match e.kind() {
                // "expected a boolean, found a string" — without the `null` that every
                // optional field's schema allows, which only confuses (SPEC §2.3).
                ValidationErrorKind::Type { kind } => {
                    let found = here.map_or("nothing", kind_of);
                    let shown = match here {
                        Some(v) if !hide => format!(" ({})", truncate(&v.to_string(), 60)),
                        _ => String::new(),
                    };
                    format!("expected {}, found {found}{shown}", expected_types(kind))
                }
                ValidationErrorKind::MinItems { limit } => {
                    let n = here.and_then(Value::as_array).map_or(0, Vec::len);
                    format!(
                        "expected at least {limit} item{}, found {n}",
                        if *limit == 1 { "" } else { "s" }
                    )
                }
                // SPEC §7: lists from outside have a limit (`docs/limits.md`).
                ValidationErrorKind::MaxItems { limit } => {
                    let n = here.and_then(Value::as_array).map_or(0, Vec::len);
                    format!("expected at most {limit} items, found {n}")
                }
                _ if hide => e.masked().to_string(),
                _ => e.to_string(),
            };
            let mut f = Finding::error(pointer.clone(), truncate(&message, 200));
            if let Some((name, d)) = describe_nearest(root_schema, instance, &pointer) {
                f = f.help(format!("\"{name}\": {}", d.replace('\n', " ")));
            }
            out.push(f);
        }
    }
}

/// The description of the value at `pointer` or, when it has none (an array element, a
/// header value), of its nearest described ancestor, with that ancestor's name.
fn describe_nearest(
    root_schema: &Value,
    instance: &Value,
    pointer: &str,
) -> Option<(String, String)> {
    let mut p = pointer;
    while !p.is_empty() {
        if let Some(d) = schema::describe(root_schema, instance, p) {
            let name = p.rsplit('/').next().unwrap_or("");
            return Some((name.replace("~1", "/").replace("~0", "~"), d));
        }
        p = p.rsplit_once('/').map_or("", |(parent, _)| parent);
    }
    None
}

/// "a boolean", "an integer or a string": the types a schema `type` allows, `null` left out.
fn expected_types(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::JsonType;
    let types: Vec<JsonType> = match kind {
        jsonschema::error::TypeKind::Single(t) => vec![*t],
        jsonschema::error::TypeKind::Multiple(set) => set.iter().collect(),
    };
    let words: Vec<&str> = types
        .iter()
        .filter(|t| **t != JsonType::Null || types.len() == 1)
        .map(|t| match t {
            JsonType::Null => "null",
            JsonType::Boolean => "a boolean (true or false)",
            JsonType::Integer => "an integer",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        })
        .collect();
    words.join(" or ")
}

fn allowed_keys_help(root_schema: &Value, instance: &Value, pointer: &str, key: &str) -> String {
    let keys = schema::keys_at(root_schema, instance, pointer);
    if let Some(s) = did_you_mean(key, keys.iter().map(String::as_str)) {
        return format!("did you mean \"{s}\"?");
    }
    if keys.is_empty() {
        "remove it; see schema/profile.schema.json for the keys allowed here".to_string()
    } else {
        format!("remove it; the keys allowed here are {}", keys.join(", "))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Picks the union branch an instance belongs to: for a profile, by its `type` (a load
/// balancer says so; anything else is a model profile); elsewhere the branch with the fewest
/// errors (ties: the first).
fn pick_branch(
    root_schema: &Value,
    pointer: &str,
    here: Option<&Value>,
    context: &[Vec<jsonschema::ValidationError<'static>>],
) -> usize {
    let profile_position = (pointer.is_empty() && root_schema.get("anyOf").is_some())
        || pointer
            .strip_prefix("/profiles/")
            .is_some_and(|rest| !rest.contains('/'));
    if profile_position {
        let is_lb = here.and_then(|v| v.get("type")).and_then(Value::as_str)
            == Some("loadbalancer")
            || here.is_some_and(|v| v.get("policy").is_some() || v.get("backends").is_some());
        return usize::from(!is_lb);
    }
    // A branch that fails only because the value is of another type (the `null` of an
    // optional field, say) is the wrong branch, however few its errors.
    context
        .iter()
        .enumerate()
        .min_by_key(|(_, errs)| {
            let wrong_type = errs.iter().any(|e| {
                matches!(e.kind(), ValidationErrorKind::Type { .. })
                    && e.instance_path().as_str() == pointer
            });
            (usize::from(wrong_type), errs.len())
        })
        .map_or(0, |(i, _)| i)
}

/// A union of constants (a string enum whose variants carry descriptions) failed: one
/// finding that lists the allowed values and suggests the closest.
fn constant_union(
    pointer: &str,
    here: Option<&Value>,
    context: &[Vec<jsonschema::ValidationError<'static>>],
) -> Option<Finding> {
    let mut allowed = Vec::new();
    for branch in context {
        // A variant is `{"type": "string", "const": "x"}`: a value of another type fails both
        // keywords; the type error says nothing the list of allowed values does not.
        let mut constants = 0;
        for e in branch {
            match e.kind() {
                ValidationErrorKind::Constant { expected_value } => {
                    allowed.push((**expected_value).clone());
                    constants += 1;
                }
                ValidationErrorKind::Enum { options } => {
                    allowed.extend(options.as_array().into_iter().flatten().cloned());
                    constants += 1;
                }
                ValidationErrorKind::Type { .. } if e.instance_path().as_str() == pointer => {}
                _ => return None,
            }
        }
        if constants != 1 {
            return None;
        }
    }
    let shown = here.map_or_else(|| "the value".to_string(), |v| truncate(&v.to_string(), 60));
    let list = allowed
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut f = Finding::error(pointer, format!("{shown} is not one of {list}"));
    let names: Vec<String> = allowed
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if let Some(s) = here
        .and_then(Value::as_str)
        .and_then(|h| did_you_mean(h, names.iter().map(String::as_str)))
    {
        f = f.help(format!("did you mean \"{s}\"?"));
    } else {
        f = f.help(format!("use one of {list}"));
    }
    Some(f)
}

/// Removes the values schema errors point at, so the semantic layer can still look at the rest
/// of a document (all three layers are reported together, SPEC §2.3).
fn prune(value: &Value, findings: &[Finding]) -> Value {
    let mut v = value.clone();
    for f in findings {
        let Some((parent, last)) = f.pointer.rsplit_once('/') else {
            continue;
        };
        let key = last.replace("~1", "/").replace("~0", "~");
        if let Some(Value::Object(m)) = v.pointer_mut(parent) {
            m.remove(&key);
        }
    }
    v
}

/// Layers 1 and 2 and the typed parse, for any schema-described document.
pub fn check_document<T: DeserializeOwned>(bytes: &[u8], schema: &schema::Schema) -> Checked<T> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let value = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => v,
        Err(e) => {
            let s = syntax_error(bytes, &e);
            return Checked {
                text,
                value: None,
                parsed: None,
                findings: vec![Finding {
                    pointer: format!("@{}:{}", s.line, s.column),
                    target: super::diagnostic::Target::Value,
                    severity: Severity::Error,
                    message: format!("invalid JSON: {}", s.message),
                    help: Some(s.help),
                }],
            };
        }
    };
    let findings = schema_findings(schema, &value);
    let parsed = if findings.is_empty() {
        match serde_json::from_value::<T>(value.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                // A number the schema took as an integer but its type cannot hold (SPEC §7)
                // is named where it is; anything else is serde's whole-document message.
                let mut findings = numbers::unreadable_integers(schema.value(), &value);
                if findings.is_empty() {
                    findings.push(Finding::error("", format!("cannot read the document: {e}")));
                }
                return Checked {
                    text,
                    value: Some(value),
                    parsed: None,
                    findings,
                };
            }
        }
    } else {
        None
    };
    Checked {
        text,
        value: Some(value),
        parsed,
        findings,
    }
}

fn syntax_help(msg: &str, rest: &str) -> String {
    if msg.contains("EOF while parsing") {
        if msg.contains("value") {
            "the file ends where a value should be; a profile is one JSON object".into()
        } else {
            "the file ends too early: close every { and [".into()
        }
    } else if msg.contains("trailing comma") {
        "remove the comma before the closing bracket".into()
    } else if msg.contains("recursion limit") {
        "the document is nested too deeply to be a profile".into()
    } else if rest.starts_with('\'') {
        "JSON strings and keys are written in double quotes, not single quotes".into()
    } else if msg.contains("key must be a string") {
        if rest.starts_with(',') {
            "remove the extra comma".into()
        } else {
            "object keys are written in double quotes".into()
        }
    } else if msg.contains("expected `,` or `}`") {
        "a comma is missing between two members (or a } is missing before this)".into()
    } else if msg.contains("expected `,` or `]`") {
        "a comma is missing between two elements (or a ] is missing before this)".into()
    } else if msg.contains("trailing characters") {
        "there is more text after the profile's closing }; remove it".into()
    } else if msg.contains("expected value") || msg.contains("expected ident") {
        "a value is missing or misspelled here (strings need double quotes; true, false and null are lowercase)".into()
    } else if msg.contains("invalid escape") {
        "a backslash in a string starts an escape: write \\\\ for one backslash".into()
    } else {
        "fix the JSON syntax at this position".into()
    }
}

/// Turns findings into diagnostics placed in the file.
pub fn place_all(file: &str, text: &str, findings: Vec<Finding>) -> Vec<Diagnostic> {
    let mut placed: Vec<Diagnostic> = findings
        .into_iter()
        .map(|f| {
            if let Some(pos) = f.pointer.strip_prefix('@') {
                // A syntax error: serde_json's position, no pointer.
                let (l, c) = pos.split_once(':').unwrap_or(("1", "1"));
                let line = l.parse().unwrap_or(1);
                let column = c.parse().unwrap_or(1);
                let span = line_offset(text, line).map(|o| {
                    let start = o + text[o..]
                        .chars()
                        .take(column - 1)
                        .map(char::len_utf8)
                        .sum::<usize>();
                    start..start
                });
                Diagnostic {
                    file: file.into(),
                    line,
                    column,
                    pointer: String::new(),
                    severity: f.severity,
                    message: f.message,
                    help: f.help,
                    span,
                }
            } else {
                place(file, text, f)
            }
        })
        .collect();
    placed.sort_by_key(|d| (d.line, d.column));
    placed
}

fn line_offset(text: &str, line: usize) -> Option<usize> {
    if line == 1 {
        return Some(0);
    }
    text.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)
}

/// What a backend name resolves to, for the load-balancer checks.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A valid model profile.
    Model(Box<model::ModelProfile>),
    /// A valid load-balancer profile.
    LoadBalancer,
    /// A file that does not validate.
    Invalid(PathBuf),
    /// No such profile.
    Missing,
}

/// Looks up backend names: the profiles directory, or files given on the same command line.
pub trait Resolver {
    /// Resolves one backend name.
    fn resolve(&self, name: &str) -> Resolved;
    /// Every known profile name, for "did you mean".
    fn names(&self) -> Vec<String>;
}

/// Checks one profile file's bytes, all three layers; `resolver` answers backend lookups.
pub fn check_profile(
    bytes: &[u8],
    resolver: &dyn Resolver,
    self_name: Option<&str>,
) -> Checked<Profile> {
    check_profile_for(bytes, resolver, self_name, model::Purpose::Run)
}

/// [`check_profile`] for a `purpose`. For [`model::Purpose::Simulate`] the base URL is not
/// checked and nothing outside the file is (no keyfile, no backend: `simulate` resolves the
/// backends itself, the same way), since a simulation reads no keyfile, token or base URL
/// (SPEC §9).
pub fn check_profile_for(
    bytes: &[u8],
    resolver: &dyn Resolver,
    self_name: Option<&str>,
    purpose: model::Purpose,
) -> Checked<Profile> {
    let fs_checks = purpose == model::Purpose::Run;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Checked {
            text: String::new(),
            value: None,
            parsed: None,
            findings: vec![
                Finding::error(
                    "",
                    format!(
                        "the file has {} bytes; a profile may have at most {MAX_PROFILE_BYTES}",
                        bytes.len()
                    ),
                )
                .help("a profile is a small JSON object; is this the right file?"),
            ],
        };
    }
    let c = check_document::<RawProfile>(bytes, &schema::PROFILE);
    let Some(raw) = c.parsed else {
        let mut findings = c.findings;
        // The semantic layer still looks at what the schema did not reject.
        if let Some(v) = &c.value {
            let pruned = prune(v, &findings);
            if schema::PROFILE.is_valid(&pruned)
                && let Ok(raw) = serde_json::from_value::<RawProfile>(pruned)
            {
                let flagged: Vec<String> = findings.iter().map(|f| f.pointer.clone()).collect();
                let analysis = model::analyse_for(&raw, purpose);
                let mut semantic = analysis.findings;
                // Backends and keyfiles too: SPEC §2.3 reports all three layers together.
                if let Some(p) = analysis.profile.as_ref().filter(|_| fs_checks) {
                    semantic_fs_checks(&raw, p, resolver, self_name, &mut semantic);
                }
                findings.extend(
                    semantic
                        .into_iter()
                        .filter(|f| !flagged.contains(&f.pointer)),
                );
            }
        }
        return Checked {
            text: c.text,
            value: c.value,
            parsed: None,
            findings,
        };
    };
    let analysis = model::analyse_for(&raw, purpose);
    let mut findings = c.findings;
    findings.extend(analysis.findings);
    if let Some(p) = analysis.profile.as_ref().filter(|_| fs_checks) {
        semantic_fs_checks(&raw, p, resolver, self_name, &mut findings);
    }
    let ok = !findings.iter().any(|f| f.severity == Severity::Error);
    Checked {
        text: c.text,
        value: c.value,
        parsed: if ok { analysis.profile } else { None },
        findings,
    }
}

/// Expands a leading `~` with the home directory.
pub fn expand_tilde(path: &str) -> PathBuf {
    if let Some(rest) = path
        .strip_prefix("~/")
        .or_else(|| (path == "~").then_some(""))
        && let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
    {
        return home.join(rest);
    }
    PathBuf::from(path)
}

fn keyfile_findings(path: &str, out: &mut Vec<Finding>) {
    let ptr = "/ephemeralSettings/auth-keyfile";
    let full = expand_tilde(path);
    match std::fs::metadata(&full) {
        Err(_) => out.push(
            Finding::warning(ptr, format!("keyfile {path} does not exist")).help(
                "create it with the API key as its only content (chmod 600), or fix the path",
            ),
        ),
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    out.push(
                        Finding::warning(
                            ptr,
                            format!(
                                "keyfile {path} can be read by other users (mode {:o})",
                                mode & 0o777
                            ),
                        )
                        .help(format!("chmod 600 {path}")),
                    );
                }
            }
            #[cfg(not(unix))]
            let _ = meta;
        }
    }
}

fn semantic_fs_checks(
    raw: &RawProfile,
    p: &Profile,
    resolver: &dyn Resolver,
    self_name: Option<&str>,
    out: &mut Vec<Finding>,
) {
    match p {
        Profile::Model(m) => {
            if let Some(kf) = &m.settings.auth_keyfile {
                keyfile_findings(kf, out);
            }
        }
        Profile::LoadBalancer(l) => {
            let field = match raw {
                RawProfile::LoadBalancer(r) if r.backends.is_none() => "profiles",
                _ => "backends",
            };
            let mut limits = Vec::new();
            for (i, name) in l.backends.iter().enumerate() {
                let ptr = format!("/{field}/{i}");
                if self_name.is_some_and(|s| same_profile_name(s, name)) {
                    out.push(
                        Finding::error(ptr, format!("the load balancer lists itself (\"{name}\")"))
                            .help("a backend must be a model profile"),
                    );
                    continue;
                }
                match resolver.resolve(name) {
                    Resolved::Model(b) => {
                        limits.push((name.clone(), b.settings.context_limit));
                        let failover_keys: Vec<&str> = super::settings::SETTING_KEYS
                            .iter()
                            .filter(|k| k.scope == Scope::Failover)
                            .filter(|k| setting_is_set(&b.settings, k.key))
                            .map(|k| k.key)
                            .collect();
                        if !failover_keys.is_empty() {
                            out.push(
                                Finding::warning(ptr, format!("backend \"{name}\" sets {}, which only applies when it is used alone", failover_keys.join(", ")))
                                    .help("set failover settings on this load balancer (SPEC §3)"),
                            );
                        }
                    }
                    Resolved::LoadBalancer => out.push(
                        Finding::error(ptr, format!("backend \"{name}\" is a load balancer"))
                            .help("backends must be model profiles; list that load balancer's backends here instead"),
                    ),
                    Resolved::Invalid(path) => out.push(
                        Finding::error(ptr, format!("backend \"{name}\" does not validate"))
                            .help(format!("run llxprt profile validate {}", path.display())),
                    ),
                    Resolved::Missing => {
                        let names = resolver.names();
                        let mut f = Finding::error(ptr, format!("backend \"{name}\" does not exist"));
                        f = match did_you_mean(name, names.iter().map(String::as_str)) {
                            Some(s) => f.help(format!("did you mean \"{s}\"?")),
                            None => f.help(format!("create it with llxprt profile save model {name} --provider P --model M")),
                        };
                        out.push(f);
                    }
                }
            }
            let distinct: std::collections::BTreeSet<_> = limits.iter().map(|(_, l)| *l).collect();
            if distinct.len() > 1 {
                let list: Vec<String> = limits
                    .iter()
                    .map(|(n, l)| {
                        format!(
                            "{n}: {}",
                            l.map_or("default".to_string(), |v| v.to_string())
                        )
                    })
                    .collect();
                out.push(
                    Finding::note(format!("/{field}"), format!("backends have different context limits ({})", list.join(", ")))
                        .help("the conversation is trimmed per backend: a switch to a smaller window sends less history"),
                );
            }
        }
    }
}

fn setting_is_set(s: &super::settings::Settings, key: &str) -> bool {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.get(key).map(|x| !x.is_null()))
        .unwrap_or(false)
}

/// Resolves names among a set of files given together, then falls back to another resolver.
pub struct FilesResolver<'a> {
    /// `(name, bytes)` of each file given; a name is its file stem.
    pub files: Vec<(String, PathBuf, Vec<u8>)>,
    /// The profiles directory, if any.
    pub fallback: Option<&'a dyn Resolver>,
}

impl Resolver for FilesResolver<'_> {
    fn resolve(&self, name: &str) -> Resolved {
        if let Some((_, path, bytes)) = self
            .files
            .iter()
            .find(|(n, _, _)| same_profile_name(n, name))
        {
            return classify(bytes, path);
        }
        self.fallback.map_or(Resolved::Missing, |f| f.resolve(name))
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.files.iter().map(|(n, _, _)| n.clone()).collect();
        if let Some(f) = self.fallback {
            v.extend(f.names());
        }
        v
    }
}

/// Classifies a backend file without resolving its own backends (a backend must be a model).
pub fn classify(bytes: &[u8], path: &Path) -> Resolved {
    let c = check_profile(bytes, &NoResolver, None);
    match c.parsed {
        Some(Profile::Model(m)) => Resolved::Model(Box::new(m)),
        Some(Profile::LoadBalancer(_)) => Resolved::LoadBalancer,
        None => {
            // A load balancer whose own backends are unknown here is still a load balancer.
            let is_lb = c
                .value
                .as_ref()
                .and_then(|v| v.get("type"))
                .and_then(Value::as_str)
                == Some("loadbalancer");
            if is_lb {
                Resolved::LoadBalancer
            } else {
                Resolved::Invalid(path.to_path_buf())
            }
        }
    }
}

/// A resolver that knows no profiles.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn resolve(&self, _name: &str) -> Resolved {
        Resolved::Missing
    }
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}
