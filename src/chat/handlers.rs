//! Carrying out one slash command of the session (SPEC §8.1) and writing what it says: what a
//! command shows goes to stdout, confirmations and refusals to stderr.
//!
//! Owns: the wording of the session's answers to commands and `/help`. Must not: run a turn
//! (it returns [`After::Send`] for `/retry`; the REPL sends), or read input except through the
//! `ask` callback (`/profile load` without a name).

use super::profiles;
use super::session::Session;
use super::slash::{Slash, StatsPart};
use crate::face::{CmdError, Streams};
use crate::profile::names::same_profile_name;
use crate::report::diagnostics::{self, Running};
use crate::state_file::SharedStore;

/// What the REPL does after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Read the next line.
    Continue,
    /// Leave the session (exit 0).
    Quit,
    /// Send this message (`/retry`).
    Send(String),
}

/// `/help`.
pub const HELP: &str = "\
Type a message to send it; start it with // to send a message beginning with /.
  /provider [NAME]         show or choose the provider (a fresh model setup)
  /model [NAME]            show or choose the model
  /baseurl [URL]           show or set the base URL
  /keyfile [PATH]          show or set the file holding the API key
  /set KEY VALUE           set a setting for this session (VALUE as JSON, else text)
  /set KEY                 show a setting and where it comes from
  /set --unset KEY         remove a session setting
  /set modelparam K V      set a model parameter (/set modelparam K shows it)
  /system [TEXT]           show or set the system prompt
  /profile save model NAME [BUCKET…]
  /profile save loadbalancer NAME failover|roundrobin P1 P2 […]
  /profile load [NAME]     load a profile (without NAME: pick from a list); keeps the conversation
  /profile list | delete NAME | set-default NAME|none
  /stats [lb|buckets]      statistics, circuits and cooldowns
  /diagnostics             versions, paths, backends and where their keys come from
  /auth [P [status]]       stored bucket logins: kind, expiry, refresh token, cooldown, last use
  /auth P login B --key-file FILE | --oauth --authorize-url U --token-url U --client-id ID
                           log bucket B in (an API key from a file, or OAuth; --device-url U too)
  /auth P logout B         delete bucket B's login
  /auth P enable|disable   use P's OAuth login \"default\" for this session, or the API key
  /retry                   send the last failed or cancelled message again
  /clear                   forget the conversation
  /help                    this list
  /quit                    leave (also Ctrl-D on an empty line); Ctrl-C cancels an answer";

fn say(io: &mut Streams<'_>, result: Result<String, String>, shown: bool) -> std::io::Result<()> {
    match result {
        Ok(line) if shown => writeln!(io.out, "{line}"),
        Ok(line) => writeln!(io.err, "{line}"),
        Err(e) => error(io, &e),
    }
}

fn say_lines(io: &mut Streams<'_>, result: Result<Vec<String>, String>) -> std::io::Result<()> {
    match result {
        Ok(lines) => lines.iter().try_for_each(|l| writeln!(io.err, "{l}")),
        Err(e) => error(io, &e),
    }
}

/// Writes an `error:` line (red when colour is on, SPEC §8.1 `NO_COLOR`).
pub fn error(io: &mut Streams<'_>, message: &str) -> std::io::Result<()> {
    if io.color {
        writeln!(io.err, "\x1b[31merror:\x1b[0m {message}")
    } else {
        writeln!(io.err, "error: {message}")
    }
}

/// Writes a [`CmdError`] with its `help:` line.
pub fn cmd_error(io: &mut Streams<'_>, e: &CmdError) -> std::io::Result<()> {
    error(io, &e.message)?;
    if let Some(h) = &e.help {
        writeln!(io.err, "help: {h}")?;
    }
    Ok(())
}

/// Carries out one command.
pub fn run(
    cmd: Slash,
    s: &mut Session,
    io: &mut Streams<'_>,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> std::io::Result<After> {
    match cmd {
        Slash::Provider(None) => say(io, Ok(s.show_provider()), true)?,
        Slash::Provider(Some(p)) => say(io, s.set_provider(&p), false)?,
        Slash::Model(None) => say(io, Ok(s.show_model()), true)?,
        Slash::Model(Some(m)) => say(io, s.set_model(&m), false)?,
        Slash::BaseUrl(None) => say(io, Ok(s.show_base_url()), true)?,
        Slash::BaseUrl(Some(u)) => say(io, s.set_base_url(&u), false)?,
        Slash::Keyfile(None) => say(io, Ok(s.show_keyfile()), true)?,
        Slash::Keyfile(Some(k)) => say(io, s.set_keyfile(&k), false)?,
        Slash::System(None) => say(io, Ok(s.show_system()), true)?,
        Slash::System(Some(t)) => say(io, s.set_system(&t), false)?,
        Slash::Show(k) => say(io, s.show(&k), true)?,
        Slash::Set(k, v) => say(io, s.set(&k, &v), false)?,
        Slash::Unset(k) => say(io, s.unset(&k), false)?,
        Slash::ShowParam(k) => say(io, Ok(s.show_param(&k)), true)?,
        Slash::Param(k, v) => say(io, s.set_param(&k, &v), false)?,
        Slash::UnsetParam(k) => say(io, Ok(s.unset_param(&k)), false)?,
        Slash::Auth(args) => super::auth::run(s, &args, io)?,
        Slash::SaveModel { name, buckets } => {
            say_lines(io, profiles::save_model(s, &name, &buckets))?;
        }
        Slash::SaveLoadBalancer {
            name,
            policy,
            backends,
        } => say_lines(io, profiles::save_lb(s, &name, policy, &backends))?,
        Slash::Load(name) => load(s, name, io, ask)?,
        Slash::List => {
            if let Err(e) = crate::report::profiles::list(&s.store().clone(), false, io) {
                cmd_error(io, &e)?;
            }
        }
        Slash::Delete(name) => say_lines(io, profiles::delete(s, &name))?,
        Slash::SetDefault(name) => {
            if let Err(e) = crate::report::profiles::set_default(&s.store().clone(), &name, io) {
                cmd_error(io, &e)?;
            }
        }
        Slash::Stats(part) => stats(s, part, io)?,
        Slash::Diagnostics => {
            let prepared = s.prepare();
            let running = match (&prepared, s.loaded()) {
                (Ok(p), _) => Running::Plan(p),
                (Err(_), None) if s.model_setup().is_err() => Running::Nothing,
                (Err(e), _) => Running::Error(e.clone()),
            };
            let warnings = s.loaded().map(|l| l.warnings.clone()).unwrap_or_default();
            let getenv = |k: &str| std::env::var(k).ok();
            let v = diagnostics::report(
                s.store(),
                s.loaded().map(|l| l.name.as_str()),
                &running,
                &warnings,
                &getenv,
            );
            diagnostics::write_text(&v, io.out)?;
        }
        Slash::Retry => match s.take_retry() {
            Some(m) => return Ok(After::Send(m)),
            None => say(io, Err("nothing to retry: no message failed".into()), false)?,
        },
        Slash::Clear => {
            let n = s.history().len() / 2;
            s.clear();
            say(
                io,
                Ok(format!(
                    "conversation cleared ({n} exchange{} forgotten)",
                    if n == 1 { "" } else { "s" }
                )),
                false,
            )?;
        }
        Slash::Help => writeln!(io.out, "{HELP}")?,
        Slash::Quit => return Ok(After::Quit),
    }
    Ok(After::Continue)
}

fn load(
    s: &mut Session,
    name: Option<String>,
    io: &mut Streams<'_>,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> std::io::Result<()> {
    let name = if let Some(n) = name {
        n
    } else {
        let names = s.store().names();
        if names.is_empty() {
            return error(
                io,
                "no profiles yet: /profile save model NAME saves the current model setup",
            );
        }
        for (i, n) in names.iter().enumerate() {
            writeln!(io.out, "{:>3}. {n}", i + 1)?;
        }
        io.out.flush()?;
        // SPEC §8.1: a number or a name picks; Esc or an empty line cancels; what is typed
        // here is an answer to the question, never a message to the model.
        let answer = ask("number or name (Esc or an empty line cancels)> ");
        let answer = answer.as_deref().map_or("", str::trim);
        if answer.is_empty() {
            return writeln!(
                io.err,
                "cancelled: nothing loaded, the session keeps what it had"
            );
        }
        let by_number = answer
            .parse::<usize>()
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| names.get(i));
        let by_name = || names.iter().find(|n| same_profile_name(n, answer));
        match by_number.or_else(by_name) {
            Some(n) => n.clone(),
            None => {
                return error(
                    io,
                    &format!(
                        "\"{answer}\" is neither a number nor a name from the list; nothing loaded"
                    ),
                );
            }
        }
    };
    match profiles::load_fresh(s, &name) {
        Ok(lines) => lines.iter().try_for_each(|l| writeln!(io.err, "{l}")),
        Err(e) => {
            cmd_error(io, &e)?;
            writeln!(io.err, "the session keeps what it had")
        }
    }
}

fn stats(s: &Session, part: StatsPart, io: &mut Streams<'_>) -> std::io::Result<()> {
    let prepared = match s.prepare() {
        Ok(p) => p,
        Err(e) => return error(io, &format!("no statistics: {e}")),
    };
    let mut file = SharedStore::open(s.store().root());
    let shared = match file.read() {
        Ok(st) => st,
        Err(e) => return error(io, &format!("cannot read the state: {e}")),
    };
    for w in &file.take_warnings() {
        writeln!(io.err, "{}", crate::conversation::notes::state_warning(w))?;
    }
    let now = crate::clock::report_now_ms();
    let v = crate::report::stats::stats_json(&prepared.plan, &shared, now);
    let view = crate::report::stats::TextView {
        name: &prepared.plan.lb,
        routes: &crate::report::stats::routes(&prepared.plan, &shared),
        lb: part != StatsPart::Buckets,
        buckets: part != StatsPart::Lb,
        now,
        width: crate::terminal::report_width(),
    };
    crate::report::stats::write_text(&v, &view, io.out)
}
