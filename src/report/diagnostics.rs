//! `llxprt diagnostics [--profile NAME] [--json]` and the session's `/diagnostics` (SPEC §8.1):
//! version, root, default and loaded profile; per backend its provider, model, base URL and
//! where each bucket's credential comes from; circuits, TPM and cooldowns; proxy variables;
//! state and history paths; the load's warnings.
//!
//! Owns: the report's content, as JSON and as text. Must not: show a secret — a credential is
//! described by its source (a path, a variable's name, a bucket file with its expiry), never
//! by its value (SPEC §7); proxy variables by name only (their values may carry passwords).

use serde_json::{Value, json};

use crate::auth::credentials::{self, Source, StoredCredential};
use crate::chat::session::Session;
use crate::cli::DiagnosticsArgs;
use crate::clock::now_ms;
use crate::conversation::prepare::Prepared;
use crate::engine::plan::MidStream;
use crate::face::{CmdError, Streams, exit};
use crate::profile::resolve::ResolvedBackend;
use crate::profile::store::Store;
use crate::state_file::SharedStore;
use crate::timefmt::rfc3339;

/// The proxy variables the transport reads (SPEC §6.2), both spellings.
const PROXY_VARIABLES: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// `<root>/history/repl`: the session's line history (SPEC §1).
pub fn history_path(store: &Store) -> std::path::PathBuf {
    store.root().join("history").join("repl")
}

/// What is being run, as far as it could be prepared.
pub enum Running<'a> {
    /// Nothing is loaded.
    Nothing,
    /// This plan.
    Plan(&'a Prepared),
    /// It could not be prepared, and why.
    Error(String),
}

fn credential(
    store: &Store,
    b: &ResolvedBackend,
    bucket: &str,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Value {
    // The lookup a Send makes, by the profile's `auth` (SPEC §6.3), without the refresh.
    let resolved = credentials::resolve_for(store.root(), &b.profile, bucket, getenv);
    // Only the source leaves this function; the secret is dropped unread.
    match resolved.map(|s| s.map(|s| s.source)) {
        Ok(Some(Source::Keyfile(p))) => {
            json!({"bucket": bucket, "source": "keyfile", "path": p.display().to_string()})
        }
        Ok(Some(Source::Inline)) => json!({"bucket": bucket, "source": "auth-key in the profile"}),
        Ok(Some(Source::Env(var))) => {
            json!({"bucket": bucket, "source": "environment", "variable": var})
        }
        Ok(Some(Source::BucketFile(p))) => {
            // Bounded, and never waiting on a FIFO (SPEC §7.1).
            let stored = crate::fsutil::read_limited(&p, credentials::MAX_SECRET_FILE_BYTES)
                .ok()
                .and_then(|t| serde_json::from_slice::<StoredCredential>(&t).ok());
            let (kind, expires) = match stored {
                Some(StoredCredential::Oauth { expires_at_ms, .. }) => {
                    ("oauth", expires_at_ms.map(rfc3339))
                }
                _ => ("apikey", None),
            };
            json!({"bucket": bucket, "source": "bucket file", "path": p.display().to_string(), "kind": kind, "expires": expires})
        }
        Ok(Some(Source::None) | None) => json!({"bucket": bucket, "source": "none needed"}),
        Err(problem) => json!({"bucket": bucket, "source": "missing", "problem": problem}),
    }
}

/// The report as JSON (the `--json` form; the text form prints the same fields).
pub fn report(
    store: &Store,
    loaded: Option<&str>,
    running: &Running<'_>,
    warnings: &[String],
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Value {
    let mut backends = Vec::new();
    let mut cooldowns = Vec::new();
    let mut ratelimits = Vec::new();
    let mut error = None;
    let mut profile = None;
    let mut keeper = SharedStore::choose(store.root(), getenv, None);
    match running {
        Running::Nothing => {}
        Running::Error(e) => error = Some(e.clone()),
        Running::Plan(p) => {
            profile = Some(p.plan.lb.clone());
            let shared = keeper.read().unwrap_or_default();
            let now = now_ms();
            let stats = super::stats::stats_json(&p.plan, &shared, now);
            for b in &p.backends {
                let info = b.profile.provider_info();
                let st = &stats["backends"][&b.name];
                backends.push(json!({
                    "name": b.name,
                    "provider": info.name,
                    "model": b.profile.model,
                    // SPEC §7.1: a key pasted into the URL is not shown.
                    "base_url": crate::redact::hide_url_secrets(b.profile.settings.base_url.as_deref().unwrap_or(info.base_url)),
                    "credentials": b.profile.bucket_names().iter().map(|k| credential(store, b, k, getenv)).collect::<Vec<_>>(),
                    "circuit": st["circuit"],
                    "tpm": st["tpm"],
                }));
            }
            for (k, s) in stats["buckets"].as_object().into_iter().flatten() {
                if let Some(until) = s["cooldown_until"].as_str() {
                    cooldowns.push(json!({"bucket": k, "until": until}));
                }
                if s["ratelimit"].as_object().is_some_and(|m| !m.is_empty()) {
                    ratelimits.push(
                        json!({"bucket": k, "at": s["ratelimit_at"], "headers": s["ratelimit"]}),
                    );
                }
            }
        }
    }
    let mut v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "root": store.root().display().to_string(),
        "default_profile": store.default_profile().ok().flatten(),
        "loaded_profile": loaded,
        "running": profile,
        "warnings": warnings,
        "backends": backends,
        "cooldowns": cooldowns,
        "ratelimits": ratelimits,
        "proxy_variables": PROXY_VARIABLES.iter().filter(|k| getenv(k).is_some()).collect::<Vec<_>>(),
        "state_file": keeper.describe(),
        "history_file": history_path(store).display().to_string(),
    });
    if let Some(e) = error {
        v["error"] = json!(e);
    }
    // SPEC §5.9.1: a state server is shown with its password redacted, and whether it answers.
    if !matches!(keeper, SharedStore::File(_)) {
        v["state_server"] = match keeper.check() {
            Ok(how) => json!({"url": keeper.describe(), "answers": true, "check": how}),
            Err(e) => json!({"url": keeper.describe(), "answers": false, "problem": e}),
        };
    }
    v
}

fn or_none(v: &Value) -> String {
    v.as_str()
        .map_or_else(|| "none".to_string(), str::to_string)
}

/// The text form of [`report`].
pub fn write_text(v: &Value, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(out, "llxprt {}", or_none(&v["version"]))?;
    writeln!(out, "root: {}", or_none(&v["root"]))?;
    writeln!(out, "default profile: {}", or_none(&v["default_profile"]))?;
    writeln!(out, "loaded profile: {}", or_none(&v["loaded_profile"]))?;
    if let Some(r) = v["running"]
        .as_str()
        .filter(|r| Some(*r) != v["loaded_profile"].as_str())
    {
        writeln!(out, "running: {r}")?;
    }
    if let Some(e) = v["error"].as_str() {
        writeln!(out, "cannot run: {e}")?;
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        writeln!(out, "warning: {}", or_none(w))?;
    }
    for b in v["backends"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "backend {}: {} {} at {}; circuit {}, tpm {}",
            or_none(&b["name"]),
            or_none(&b["provider"]),
            or_none(&b["model"]),
            or_none(&b["base_url"]),
            or_none(&b["circuit"]),
            b["tpm"]
        )?;
        for c in b["credentials"].as_array().into_iter().flatten() {
            let detail = ["path", "variable"]
                .iter()
                .find_map(|k| c[*k].as_str())
                .map(|d| format!(" {d}"))
                .or_else(|| c["problem"].as_str().map(|p| format!(" ({p})")))
                .unwrap_or_default();
            let expires = c["expires"]
                .as_str()
                .map(|e| format!(", expires {e}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  bucket {}: {}{detail}{expires}",
                or_none(&c["bucket"]),
                or_none(&c["source"])
            )?;
        }
    }
    let cooldowns: Vec<String> = v["cooldowns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} until {}", or_none(&c["bucket"]), or_none(&c["until"])))
        .collect();
    writeln!(
        out,
        "cooldowns: {}",
        if cooldowns.is_empty() {
            "none".into()
        } else {
            cooldowns.join(", ")
        }
    )?;
    for r in v["ratelimits"].as_array().into_iter().flatten() {
        let headers: Vec<String> = r["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, h)| format!("{k}: {}", h.as_str().unwrap_or("")))
            .collect();
        writeln!(
            out,
            "rate limits of {} (at {}): {}",
            or_none(&r["bucket"]),
            or_none(&r["at"]),
            headers.join(", ")
        )?;
    }
    let proxies: Vec<&str> = v["proxy_variables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    writeln!(
        out,
        "proxy variables: {}",
        if proxies.is_empty() {
            "none".into()
        } else {
            proxies.join(", ")
        }
    )?;
    match v.get("state_server") {
        Some(s) if s["answers"] == true => writeln!(
            out,
            "state: {} (shared state server; {})",
            or_none(&s["url"]),
            or_none(&s["check"])
        )?,
        Some(s) => writeln!(
            out,
            "state: {} (shared state server; does not answer: {})",
            or_none(&s["url"]),
            or_none(&s["problem"])
        )?,
        None => writeln!(out, "state: {}", or_none(&v["state_file"]))?,
    }
    writeln!(out, "history: {}", or_none(&v["history_file"]))
}

/// Runs `llxprt diagnostics`: exit 3 (after the report) when the profile cannot be loaded.
pub fn run(args: &DiagnosticsArgs, store: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let name = match &args.profile {
        Some(n) => Some(n.clone()),
        None => store.default_profile()?,
    };
    let mut session = Session::new(store.clone(), MidStream::Buffer);
    let mut code = exit::OK;
    let mut loaded = None;
    let mut warnings = Vec::new();
    let prepared = match &name {
        None => Ok(None),
        Some(n) => match session.load(n) {
            Ok(l) => {
                loaded = Some(l.name.clone());
                warnings.clone_from(&l.warnings);
                session.prepare().map(Some)
            }
            Err(e) => {
                code = e.code;
                Err(e.message)
            }
        },
    };
    let running = match &prepared {
        Ok(None) => Running::Nothing,
        Ok(Some(p)) => Running::Plan(p),
        Err(e) => Running::Error(e.clone()),
    };
    let getenv = |k: &str| std::env::var(k).ok();
    let v = report(store, loaded.as_deref(), &running, &warnings, &getenv);
    if args.json {
        writeln!(io.out, "{v}")?;
    } else {
        write_text(&v, io.out)?;
    }
    Ok(code)
}
