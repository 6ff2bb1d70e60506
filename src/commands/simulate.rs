//! `llxprt simulate TRACE` (SPEC §9).

use serde_json::{Map, Value};

use super::{CmdError, Streams, exit};
use crate::cli::SimulateArgs;
use crate::fsutil::read_limited;
use crate::profile::diagnostic::{Palette, Severity, render_human};
use crate::profile::settings::{Settings, parse_assignment};
use crate::profile::store::Store;
use crate::profile::validate;
use crate::simulate::{self, trace};

/// Runs a trace through the engine; exit 0 when the simulation ran (whatever its requests
/// did), 3 when the trace or a profile cannot be used, 2 for a bad `--set`.
pub fn run(args: &SimulateArgs, store: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let display = args.trace.display().to_string();
    let bytes = read_limited(&args.trace, trace::MAX_TRACE_BYTES)
        .map_err(|e| CmdError::new(exit::CONFIG, format!("cannot read trace {display}: {e}")))?;
    let checked = trace::check_trace(&bytes);
    let diags = validate::place_all(&display, &checked.text, checked.findings);
    let palette = if io.color {
        Palette::COLOR
    } else {
        Palette::PLAIN
    };
    let Some(t) = checked.parsed else {
        for d in diags.iter().filter(|d| d.severity == Severity::Error) {
            writeln!(io.err, "{}", render_human(d, Some(&checked.text), palette))?;
        }
        return Err(
            CmdError::new(exit::CONFIG, format!("trace {display} is not valid")).help(
                "fix the errors above; the trace format is SPEC §9.1 and schema/trace.schema.json",
            ),
        );
    };
    let mut session = t.settings.clone().unwrap_or_default();
    session.extra.clear();
    session.normalise();
    let mut sets = Map::new();
    for s in &args.set {
        let (k, v) =
            parse_assignment(s).map_err(|e| CmdError::new(exit::USAGE, format!("--set {e}")))?;
        sets.insert(k, v);
    }
    if !sets.is_empty() {
        let ignored: Vec<String> = sets
            .keys()
            .filter(|k| ["base-url", "auth-keyfile", "auth-key"].contains(&k.as_str()))
            .cloned()
            .collect();
        let over: Settings = validate::check_settings_value(&Value::Object(sets))
            .map_err(|e| CmdError::new(exit::USAGE, format!("--set {e}")))?;
        session.overlay(&over);
        // SPEC §3: a backend's identity only comes from the backend, and a simulation sends
        // nothing and reads no key, so these change nothing here (chat refuses them with a
        // load balancer; with a model profile alone they only say where requests go).
        for k in ignored {
            writeln!(
                io.err,
                "warning: --set {k} changes nothing in a simulation: a backend's base-url, auth-keyfile and auth-key come from its own profile (SPEC §3), and simulate sends no request"
            )?;
        }
    }
    let name = args.profile.clone().unwrap_or_else(|| t.profile.clone());
    let (plan, backends) = simulate::plan_for(&t, &name, &session, Some(store)).map_err(|e| {
        CmdError::new(exit::CONFIG, e)
            .help("embed it in the trace's \"profiles\", or save it with llxprt profile save")
    })?;
    simulate::stream(&t, &plan, &backends, io.out, args.json)?;
    Ok(exit::OK)
}
