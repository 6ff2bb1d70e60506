//! Every clap type of the command line (SPEC §8.1), and no logic (STYLE 8). Doc comments are
//! the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// llxprt: an LLM client that keeps answering when providers misbehave.
///
/// Profiles describe a provider + model (optionally several accounts), or a load balancer over
/// model profiles. Every retry, bucket advance and failover is decided by one pure engine;
/// `simulate` replays recorded failures through it.
///
/// Without a command: `llxprt` opens the interactive session; `llxprt PROMPT` answers once with
/// `--profile-load NAME` or the default profile (a PROMPT that is a command's name runs the
/// command: use `llxprt chat PROMPT` for such a prompt). Piped input is one prompt: after
/// PROMPT and a blank line, or alone.
#[derive(Debug, Parser)]
#[command(
    name = "llxprt",
    version,
    propagate_version = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: chat).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The seed documents' top-level form: `llxprt [--profile-load NAME] [-i] [PROMPT]`.
    #[command(flatten)]
    pub top: TopArgs,
}

/// `llxprt [--profile-load NAME] [-i] [PROMPT]` (SPEC §8.1).
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Profile to load (default: the default profile).
    #[arg(long, value_name = "NAME")]
    pub profile_load: Option<String>,
    /// Open the interactive session (PROMPT, if given, is sent first); needs a terminal.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Answer this prompt once and exit (without -i); piped input follows it after a blank
    /// line.
    pub prompt: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, validate and delete profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Ask a profile one question (streams the answer; `served by …` on stderr).
    Chat(ChatArgs),
    /// Replay a failure trace through the engine in virtual time (no network, no credentials).
    Simulate(SimulateArgs),
    /// Statistics, circuits and cooldowns from the shared engine state.
    Stats(StatsArgs),
    /// Version, paths, backends and where their credentials come from (never the values).
    Diagnostics(DiagnosticsArgs),
    /// Bucket logins: API keys and OAuth tokens per account (SPEC §6.3).
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Serve an OpenAI-compatible API on loopback, every request through the profiles.
    Serve(ServeArgs),
}

/// Arguments of `serve` (SPEC §8.3).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Profile serving requests whose `model` names no profile (default: the default profile).
    #[arg(long)]
    pub profile: Option<String>,
    /// Address to listen on (a non-loopback address needs a key: --api-key-file or
    /// LLXPRT_SERVE_API_KEY).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4000")]
    pub listen: String,
    /// Key clients must send as `Authorization: Bearer KEY`. Visible to every local user
    /// (`ps`): prefer --api-key-file or the LLXPRT_SERVE_API_KEY environment variable.
    #[arg(long, value_name = "KEY", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Read the key clients must send from FILE (read once; may be a pipe such as
    /// `<(pass show llxprt)`). Without it or --api-key, LLXPRT_SERVE_API_KEY is used.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Write what really happened as a trace `llxprt simulate` replays (SPEC §9.2).
    #[arg(long, value_name = "TRACE")]
    pub record: Option<PathBuf>,
    /// Requests of one profile running at once (default 16), and 4 × N in all (default 64);
    /// more wait up to 30 s, then get a 503.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub max_concurrency: Option<u16>,
}

/// `llxprt auth …`
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Store a credential for PROVIDER's BUCKET: an API key (from --key-file or standard
    /// input, never echoed), or OAuth tokens (--oauth with the endpoints, or --device-url).
    Login(AuthLoginArgs),
    /// Delete a bucket's stored credential.
    Logout(AuthTargetArgs),
    /// List the stored buckets: kind, expiry, refresh token, cooldown and last use.
    Status(AuthStatusArgs),
}

/// Arguments of `auth login`.
#[derive(Debug, Args)]
pub struct AuthLoginArgs {
    /// Provider (aliases: codex = openai, claudecode = anthropic).
    pub provider: String,
    /// Bucket (account) name.
    pub bucket: String,
    /// File holding the API key (without it and without OAuth flags, standard input).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Sign in with OAuth 2.0 (authorization code + PKCE, loopback redirect).
    #[arg(long)]
    pub oauth: bool,
    /// The authorization endpoint.
    #[arg(long, value_name = "URL")]
    pub authorize_url: Option<String>,
    /// The token endpoint (also used for refreshes).
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// The OAuth client id.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// The scope to ask for.
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,
    /// Use the device authorization grant (RFC 8628) at this endpoint instead of a browser
    /// redirect.
    #[arg(long, value_name = "URL")]
    pub device_url: Option<String>,
    /// Longest wait for the sign-in, in seconds (at most a day).
    // SPEC §7: bounded, so the deadline it sets can never overflow.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Print the URL only; never start a browser.
    #[arg(long)]
    pub no_browser: bool,
}

/// A provider and a bucket.
#[derive(Debug, Args)]
pub struct AuthTargetArgs {
    /// Provider.
    pub provider: String,
    /// Bucket.
    pub bucket: String,
}

/// Arguments of `auth status`.
#[derive(Debug, Args)]
pub struct AuthStatusArgs {
    /// Only this provider's buckets.
    pub provider: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `diagnostics`.
#[derive(Debug, Args)]
pub struct DiagnosticsArgs {
    /// Profile (default: the default profile).
    #[arg(long)]
    pub profile: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which part of the statistics to show.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatsView {
    /// The load balancer and its backends.
    Lb,
    /// The buckets.
    Buckets,
}

/// Arguments of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show only the load balancer or only the buckets.
    pub view: Option<StatsView>,
    /// Profile (default: the default profile).
    #[arg(long)]
    pub profile: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Clear statistics, circuits, cooldowns and TPM (of this profile, or of all profiles).
    #[arg(long)]
    pub reset: bool,
}

/// Arguments of `chat`.
#[derive(Debug, Default, Args)]
pub struct ChatArgs {
    /// Profile to use (default: the default profile).
    #[arg(long)]
    pub profile: Option<String>,
    /// The prompt; piped input follows it after a blank line. Without it, piped input is the
    /// prompt, and on a terminal the interactive session opens.
    pub prompt: Option<String>,
    /// Open the interactive session (PROMPT, if given, is sent first); needs a terminal.
    #[arg(short = 'i', long, conflicts_with = "json")]
    pub interactive: bool,
    /// Print one JSON object (answer, backend, usage, attempts) instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Hide the live notes of retries, bucket advances and failovers (in the session:
    /// `/set quiet false` shows them again).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// A session setting, KEY=VALUE; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A model parameter for every backend, KEY=VALUE; repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// System prompt.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Write what really happened as a trace `llxprt simulate` replays (SPEC §9.2).
    #[arg(long, value_name = "TRACE")]
    pub record: Option<std::path::PathBuf>,
}

/// `llxprt profile …`
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Check profile files: JSON syntax, the schema, and semantics (exit 1 on errors).
    Validate(ValidateArgs),
    /// List the stored profiles (`*` marks the default).
    List(JsonFlag),
    /// Show a stored profile (secrets redacted) and its effective settings.
    Show(NameArg),
    /// Delete a stored profile.
    Delete(DeleteArgs),
    /// Set the default profile, or `none` to clear it.
    SetDefault(NameArg),
    /// Save a model or load-balancer profile.
    #[command(subcommand)]
    Save(SaveCommand),
}

/// Arguments of `profile validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Profile files; load balancers may name backends given here or stored in the profiles
    /// directory.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One JSON object per diagnostic, one per line.
    #[arg(long)]
    pub json: bool,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
}

/// A `--json` flag alone.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A profile name argument.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Profile name.
    pub name: String,
}

/// Arguments of `profile delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Profile name.
    pub name: String,
    /// Delete even when a load balancer lists it as a backend.
    #[arg(long)]
    pub force: bool,
}

/// `llxprt profile save …`
#[derive(Debug, Subcommand)]
pub enum SaveCommand {
    /// Save a model profile: one provider + model (+ buckets).
    Model(SaveModelArgs),
    /// Save a load balancer over at least two model profiles.
    Loadbalancer(SaveLbArgs),
}

/// Arguments of `profile save model`.
#[derive(Debug, Args)]
pub struct SaveModelArgs {
    /// Profile name.
    pub name: String,
    /// Provider (openai, anthropic, gemini, qwen, kimi, …).
    #[arg(long)]
    pub provider: String,
    /// Model id sent to the provider.
    #[arg(long)]
    pub model: String,
    /// API base URL (stored as `base-url`).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// File holding the API key (stored as `auth-keyfile`, as typed).
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<String>,
    /// A setting, KEY=VALUE (VALUE read as JSON, else as a string); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A model parameter passed into request bodies, KEY=VALUE; repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// The buckets hold OAuth logins (default: API keys).
    #[arg(long)]
    pub oauth: bool,
    /// Replace an existing profile.
    #[arg(long)]
    pub force: bool,
    /// Accounts to rotate through on rate limits, in order.
    #[arg(value_name = "BUCKET")]
    pub buckets: Vec<String>,
}

/// Load-balancer policy on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    /// Start every request at the first backend.
    Failover,
    /// Rotate the starting backend per request.
    Roundrobin,
}

/// Arguments of `profile save loadbalancer`.
#[derive(Debug, Args)]
pub struct SaveLbArgs {
    /// Profile name.
    pub name: String,
    /// failover or roundrobin.
    pub policy: PolicyArg,
    /// Backend model profiles, in priority order (at least 2).
    #[arg(num_args = 2.., required = true, value_name = "PROFILE")]
    pub backends: Vec<String>,
    /// A failover setting, KEY=VALUE; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Replace an existing profile.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Trace file (SPEC §9.1).
    pub trace: PathBuf,
    /// Run this profile instead of the trace's `profile`.
    #[arg(long)]
    pub profile: Option<String>,
    /// A session setting, KEY=VALUE, over the trace's `settings`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// JSON Lines: one object per engine action, then a summary line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
