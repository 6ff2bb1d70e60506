//! `llxprt chat` one-shot (SPEC §8.1): answer one prompt through the engine and the HTTP
//! shell, streaming to stdout, with the `served by` line on stderr, or one `--json` object.

use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value, json};

use super::{CmdError, Streams, exit};
use crate::cli::ChatArgs;
use crate::driver::{self, Ending};
use crate::engine::plan::MidStream;
use crate::profile::model::{ModelProfile, Profile};
use crate::profile::resolve::build_plan;
use crate::profile::settings::{Settings, parse_assignment};
use crate::profile::store::Store;
use crate::shell::http::{AnswerSink, HttpExec, now_ms};
use crate::shell::protocol::{Role, Turn};
use crate::simulate::trace::check_settings_value;
use crate::state_file::StateFile;

/// Largest prompt read from standard input (SPEC §7).
pub const MAX_STDIN_PROMPT: u64 = 16 * 1024 * 1024;

#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one output stream"
)]
struct Sink<'a, 'b> {
    io: &'a mut Streams<'b>,
    quiet: bool,
    wrote: bool,
    ends_with_newline: bool,
    closed: bool,
}

impl AnswerSink for Sink<'_, '_> {
    fn text(&mut self, text: &str) {
        if self.quiet || self.closed || text.is_empty() {
            return;
        }
        if self
            .io
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.io.out.flush())
            .is_err()
        {
            self.closed = true; // a closed stdout ends quietly (SPEC §8.1)
        }
        self.wrote = true;
        self.ends_with_newline = text.ends_with('\n');
    }
    fn notice(&mut self, line: &str) {
        if self.wrote && !self.ends_with_newline && !self.quiet {
            let _ = self.io.out.write_all(b"\n");
            let _ = self.io.out.flush();
            self.ends_with_newline = true;
        }
        let _ = writeln!(self.io.err, "{line}");
    }
}

fn request_id() -> u64 {
    // Unique across processes sharing the state file (a probe names its request).
    (u64::from(std::process::id()) << 32) | (now_ms() & 0xffff_ffff)
}

/// Runs `llxprt chat`.
pub fn run(args: &ChatArgs, store: &Store, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let name = match &args.profile {
        Some(n) => n.clone(),
        None => store.default_profile()?.ok_or_else(|| {
            CmdError::new(exit::CONFIG, "no profile given and no default profile")
                .help("create one with llxprt profile save model NAME --provider P --model M, then llxprt profile set-default NAME")
        })?,
    };
    let (profile, _) = store.load(&name)?;
    let prompt = match &args.prompt {
        Some(p) => p.clone(),
        None if !std::io::stdin().is_terminal() => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(MAX_STDIN_PROMPT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| {
                    CmdError::new(exit::FAILED, format!("cannot read standard input: {e}"))
                })?;
            if buf.len() as u64 > MAX_STDIN_PROMPT {
                return Err(CmdError::new(
                    exit::USAGE,
                    format!("the prompt on standard input is over {MAX_STDIN_PROMPT} bytes"),
                ));
            }
            String::from_utf8(buf).map_err(|_| {
                CmdError::new(exit::USAGE, "the prompt on standard input is not UTF-8")
            })?
        }
        None => {
            return Err(CmdError::new(
                exit::USAGE,
                "give a PROMPT (the interactive session is not available in this version)",
            ));
        }
    };
    if prompt.trim().is_empty() {
        return Err(CmdError::new(exit::USAGE, "the prompt is empty"));
    }
    let mut session = Settings::default();
    let mut sets = Map::new();
    for s in &args.set {
        let (k, v) =
            parse_assignment(s).map_err(|e| CmdError::new(exit::USAGE, format!("--set {e}")))?;
        sets.insert(k, v);
    }
    if !sets.is_empty() {
        session = check_settings_value(&Value::Object(sets))
            .map_err(|e| CmdError::new(exit::USAGE, format!("--set {e}")))?;
    }
    if let Some(sys) = &args.system {
        session.system_prompt = Some(sys.clone());
    }
    let mut params = Map::new();
    for p in &args.param {
        let (k, v) =
            parse_assignment(p).map_err(|e| CmdError::new(exit::USAGE, format!("--param {e}")))?;
        params.insert(k, v);
    }
    let lookup = |n: &str| -> Result<ModelProfile, String> {
        match store.load(n).map_err(|e| e.to_string())?.0 {
            Profile::Model(m) => Ok(m),
            Profile::LoadBalancer(_) => Err(format!("backend \"{n}\" is a load balancer")),
        }
    };
    let mode_default = if args.json || !std::io::stdout().is_terminal() {
        MidStream::Buffer
    } else {
        MidStream::Restart
    };
    let root = store.root().to_path_buf();
    let refreshable = |provider: &str, bucket: &str| {
        let path = crate::shell::credentials::bucket_path(&root, provider, bucket);
        std::fs::read_to_string(path).is_ok_and(|t| t.contains("\"refresh_token\""))
    };
    let (plan, mut backends) = build_plan(
        &name,
        &profile,
        &lookup,
        &session,
        mode_default,
        &refreshable,
    )
    .map_err(|e| {
        CmdError::new(exit::CONFIG, e).help(format!(
            "re-save it, or run llxprt profile validate {}",
            store
                .path_of(&name)
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ))
    })?;
    for b in &mut backends {
        b.profile
            .model_params
            .extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let turns = vec![Turn {
        role: Role::User,
        text: prompt,
        reasoning: None,
    }];
    let system = session.system_prompt.clone().or_else(|| {
        backends
            .first()
            .and_then(|b| b.settings.settings.system_prompt.clone())
    });
    let plan = Arc::new(plan);
    let mut state = StateFile::new(store.root());
    let cancel = Arc::new(AtomicBool::new(false));
    let getenv = |k: &str| std::env::var(k).ok();
    let mut sink = Sink {
        io,
        quiet: args.json,
        wrote: false,
        ends_with_newline: true,
        closed: false,
    };
    let mut exec = HttpExec::new(
        store.root().to_path_buf(),
        &backends,
        &turns,
        system.as_deref(),
        plan.settings.mid_stream,
        &mut sink,
        cancel,
        &getenv,
    );
    let started = std::time::Instant::now();
    let ending = driver::drive(&mut state, &mut exec, request_id(), plan.clone(), now_ms());
    let answer = exec.answer();
    let attempts = std::mem::take(&mut exec.attempts);
    let malformed = exec.malformed;
    drop(exec);
    let io = sink.io;
    if malformed > 0 {
        writeln!(
            io.err,
            "note: {malformed} malformed stream event{} skipped",
            if malformed == 1 { "" } else { "s" }
        )?;
    }
    match ending {
        Ending::Delivered {
            backend, bucket, ..
        } => {
            let b = backends
                .iter()
                .find(|x| x.name == backend)
                .expect("the engine delivers from a plan backend");
            let ms = started.elapsed().as_millis();
            if args.json {
                let o = json!({
                    "answer": answer.text,
                    "reasoning": answer.reasoning,
                    "finish_reason": answer.finish_reason,
                    "backend": backend,
                    "bucket": bucket,
                    "provider": b.profile.provider_info().name,
                    "model": b.profile.model,
                    "usage": {"prompt_tokens": answer.usage.prompt_tokens, "completion_tokens": answer.usage.completion_tokens, "total_tokens": answer.usage.total()},
                    "attempts": attempts,
                });
                writeln!(io.out, "{o}")?;
            } else if sink.wrote && !sink.ends_with_newline {
                writeln!(io.out)?;
            }
            writeln!(
                io.err,
                "served by {backend}/{bucket} ({} {}, {ms} ms, {} tokens)",
                b.profile.provider_info().name,
                b.profile.model,
                answer.usage.total()
            )?;
            Ok(exit::OK)
        }
        Ending::Failed { error, .. } => {
            if args.json {
                writeln!(io.out, "{}", json!({"error": error, "attempts": attempts}))?;
            }
            Err(CmdError::new(exit::FAILED, error))
        }
        Ending::Cancelled { .. } => Err(CmdError::new(130, "cancelled")),
    }
}
