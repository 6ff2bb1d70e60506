//! `llxprt serve`: a local OpenAI-compatible gateway over the same engine (SPEC §8.3), so any
//! OpenAI-compatible tool can use llxprt profiles.
//!
//! Every request runs the one loop ([`crate::driver::drive`] with the HTTP executor), like a
//! `chat` turn; all connections share one engine state (SPEC §5.9). Parts:
//! - [`pool`]: the listener, a thread per connection, the connection cap, Ctrl-C;
//! - [`slots`]: request slots per profile under a global limit (SPEC §7.1);
//! - [`hangup`]: noticing a client that went away while its request waits or runs;
//! - [`conn`]: HTTP/1.1 framing within bounds (sizes, deadlines, keep-alive);
//! - [`guard`]: the refusals of SPEC §7 (listen address, `Host`, API key, content type, size);
//! - [`handler`]: routes, and a chat request from body to answer and log line;
//! - [`request`]: what llxprt reads from a Chat Completions request;
//! - [`plan`]: the profile and plan a request runs on;
//! - [`run`]: the shared engine state and one run of the driver;
//! - [`sink`]: the streamed answer on the client's socket;
//! - [`wire`]: the JSON shapes and the status rules of errors;
//! - [`health`]: `/health`; [`log`]: the request log line; [`record`]: `--record` with
//!   concurrent requests.
//!
//! Must not: decide retries, waits, order or failover (the engine does), print anywhere but
//! through the log function the command gives it, or touch a provider except through the
//! shell.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::plan::MidStream;
use crate::face::{CmdError, exit};
use crate::profile::store::Store;

pub mod conn;
pub mod guard;
mod handler;
pub mod hangup;
pub mod health;
pub mod log;
pub mod plan;
pub mod pool;
pub mod record;
pub mod request;
pub mod run;
pub mod sink;
pub mod slots;
pub mod wire;

/// Where log lines go (standard error, one line per call).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// What `llxprt serve` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The profile serving requests whose `model` names no profile.
    pub profile: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The key clients must send as a bearer token.
    pub api_key: Option<String>,
    /// `--record TRACE`.
    pub record: Option<PathBuf>,
    /// `--max-concurrency N`: requests of one profile at once (N), and in all (4 × N); `None`
    /// for the defaults ([`slots::PER_PROFILE`], [`slots::GLOBAL`]).
    pub max_concurrency: Option<usize>,
}

/// What every worker shares.
pub struct Ctx {
    /// The profile store.
    pub store: Store,
    /// The `--profile` one.
    pub default_profile: String,
    /// Listening on loopback (then `Host` must be a loopback name).
    pub loopback: bool,
    /// Serve's own key (`--api-key-file`, `--api-key` or `LLXPRT_SERVE_API_KEY`).
    pub api_key: Option<String>,
    /// The shared engine state.
    pub engine: run::Engine,
    /// `--record`.
    pub recording: Option<record::Recording>,
    /// The request slots (SPEC §7.1).
    pub slots: slots::Slots,
    /// Watches the clients of waiting and running requests for a hang-up.
    pub hangup: hangup::Watcher,
    log: Log,
    stop: AtomicBool,
    requests: AtomicU64,
}

impl Ctx {
    /// Whether Ctrl-C was pressed.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Stops accepting; requests in flight finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Logs one request line (SPEC §8.3).
    pub fn log_line(&self, line: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        (self.log)(&format!("llxprt serve: {line}"));
    }
}

/// The refusal of a non-loopback `--listen` without a key (`--api-key-file`,
/// `LLXPRT_SERVE_API_KEY` or `--api-key`, SPEC §7), a usage error.
pub fn check_listen(listen: &SocketAddr, api_key: Option<&str>) -> Result<(), CmdError> {
    if guard::is_loopback(listen) || api_key.is_some_and(|k| !k.is_empty()) {
        return Ok(());
    }
    Err(CmdError::new(
        exit::USAGE,
        format!("--listen {listen} is not a loopback address, and serve spends your keys for whoever can reach it"),
    )
    .help("add --api-key-file FILE or set LLXPRT_SERVE_API_KEY (clients then send Authorization: Bearer KEY), or listen on 127.0.0.1"))
}

/// Runs the gateway until Ctrl-C (SPEC §8.3). Errors: the profile does not run (exit 3), the
/// listen address is refused (2) or cannot be bound (1).
pub fn serve(store: Store, opts: Options, log: &Log) -> Result<(), CmdError> {
    check_listen(&opts.listen, opts.api_key.as_deref())?;
    plan::check(&store, &opts.profile).map_err(|e| {
        CmdError::new(exit::CONFIG, e)
            .help("run llxprt profile validate on it, or pick another with --profile")
    })?;
    // SPEC §5.8: restart behaves as continue in serve, said once at start-up.
    let restart: Vec<String> = store
        .names()
        .into_iter()
        .filter(|n| plan::check(&store, n) == Ok(MidStream::Restart))
        .collect();
    if !restart.is_empty() {
        log(&format!(
            "warning: mid_stream \"restart\" behaves as \"continue\" in serve (set in {}): text already sent to a client cannot be taken back",
            restart.join(", ")
        ));
    }
    let listener = TcpListener::bind(opts.listen).map_err(|e| {
        CmdError::new(
            exit::FAILED,
            format!("cannot listen on {}: {e}", opts.listen),
        )
    })?;
    let addr = listener.local_addr().map_err(|e| {
        CmdError::new(
            exit::FAILED,
            format!("cannot listen on {}: {e}", opts.listen),
        )
    })?;
    let report = log.clone();
    let (engine, dropped) = run::Engine::new(store.root(), move |m: &str| {
        report(&format!("llxprt serve: warning: {m}"));
    })
    .map_err(|e| CmdError::new(exit::CONFIG, e))?;
    for w in dropped {
        log(&format!(
            "llxprt serve: {}",
            crate::conversation::notes::state_warning(&w)
        ));
    }
    // The stored spelling of the name, so requests naming it in another case share its slots.
    let default_profile = plan::profile_for(&store, Some(&opts.profile), &opts.profile);
    let ctx = Arc::new(Ctx {
        default_profile,
        loopback: guard::is_loopback(&addr),
        api_key: opts.api_key.filter(|k| !k.is_empty()),
        engine,
        recording: opts.record.as_deref().map(record::Recording::new),
        slots: match opts.max_concurrency {
            Some(n) => slots::Slots::new(n, n.saturating_mul(4)),
            None => slots::Slots::new(slots::PER_PROFILE, slots::GLOBAL),
        },
        hangup: hangup::Watcher::default(),
        store,
        log: log.clone(),
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
    });
    if let Err(e) = pool::install_ctrl_c(&ctx, addr) {
        log(&format!(
            "warning: cannot catch Ctrl-C ({e}); it will end the server at once"
        ));
    }
    log(&format!(
        "llxprt serve: listening on http://{addr} (profile {}); Ctrl-C stops",
        opts.profile
    ));
    pool::run(&listener, &ctx);
    ctx.engine.close();
    log(&format!(
        "llxprt serve: stopped after {} requests",
        ctx.requests.load(Ordering::Relaxed)
    ));
    Ok(())
}
