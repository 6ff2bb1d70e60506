//! The one CLI fixture of the end-to-end tests (STYLE 13): a private `LLXPRT_HOME` and `HOME`
//! in temp directories, a way to run the built binary, and a rendering of its exit code,
//! stdout and stderr as one stable string for insta.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the fixture"
)]

pub mod oauth;
pub mod pty;
pub mod redis_server;
pub mod serve;
pub mod server;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// The debug build's hook that makes a piped standard input count as a terminal, so the session
/// reads its lines from it (`commands::chat_input`).
pub const SESSION_STDIN_HOOK: &str = "LLXPRT_TEST_SESSION_STDIN";

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Output {
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
    /// Standard output, lossy UTF-8.
    pub stdout: String,
    /// Standard error, lossy UTF-8.
    pub stderr: String,
    /// `(path, placeholder)` pairs to replace when rendering.
    replacements: Vec<(String, &'static str)>,
}

impl Output {
    /// Exit code, stdout and stderr together, with the temp paths replaced by `[HOME]` and
    /// `[USERHOME]`, for snapshots.
    pub fn render(&self) -> String {
        let text = format!(
            "exit: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code, self.stdout, self.stderr
        );
        self.scrub(&text)
    }

    /// `text` with the temp paths replaced by their placeholders.
    pub fn scrub(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (path, placeholder) in &self.replacements {
            t = t.replace(path.as_str(), placeholder);
        }
        t
    }

    /// Everything the run wrote, unscrubbed (for "this string appears nowhere" checks).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A temp `LLXPRT_HOME` (and a separate temp `HOME`, so `~` never means the real home) and a
/// runner for the built binary.
pub struct Cli {
    home: TempDir,
    user_home: TempDir,
}

/// One command to run, built by [`Cli::cmd`].
pub struct Run<'a> {
    cli: &'a Cli,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    null_stdin: bool,
    cwd: Option<PathBuf>,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Run<'_> {
    /// Feeds `bytes` to standard input (otherwise stdin is empty).
    #[must_use]
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Drives the interactive session with `bytes` as its typed lines. The session needs a
    /// terminal (SPEC §8.1); the debug build's `LLXPRT_TEST_SESSION_STDIN` hook makes standard
    /// input count as one, so the session reads them from the pipe.
    #[must_use]
    pub fn session_input(self, bytes: impl Into<Vec<u8>>) -> Self {
        self.env(SESSION_STDIN_HOOK, "1").stdin(bytes)
    }

    /// Standard input is `/dev/null` (a character device, not a pipe), as `</dev/null` gives.
    #[must_use]
    pub fn null_stdin(mut self) -> Self {
        self.null_stdin = true;
        self
    }

    /// Runs in `dir` (otherwise in the `LLXPRT_HOME` temp dir).
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets an environment variable for this run, besides the fixture's own (the rest of the
    /// environment is cleared).
    #[must_use]
    pub fn env(mut self, key: &str, value: impl Into<std::ffi::OsString>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Runs the binary and waits for it.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// Starts the binary (stdin written, then closed) without waiting, so a test can act on
    /// the running process (send it a signal) before collecting its output.
    pub fn spawn(self) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llxprt"));
        cmd.args(&self.args)
            .env_clear()
            .env("LLXPRT_HOME", self.cli.home())
            .env("HOME", self.cli.user_home())
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.cwd.as_deref().unwrap_or(self.cli.home()))
            .stdin(if self.null_stdin {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the llxprt binary runs");
        // Written, then closed (dropped) at the end of the `if`.
        if let Some(mut stdin) = child.stdin.take()
            && let Some(bytes) = &self.stdin
        {
            // The program may exit before reading everything; that is its business.
            let _ = stdin.write_all(bytes);
        }
        Running {
            child,
            replacements: self.cli.replacements(),
        }
    }
}

/// A started run of the binary.
pub struct Running {
    child: std::process::Child,
    replacements: Vec<(String, &'static str)>,
}

impl Running {
    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would (Unix).
    #[cfg(unix)]
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -INT failed");
    }

    /// Kills the process with SIGKILL on Unix (`Child::kill`), as a crash would; collect it with
    /// [`Running::wait`]. Killing a process that already exited is not an error.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Whether the process has exited (without waiting for it).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the process and collects its output.
    pub fn wait(self) -> Output {
        let out = self.child.wait_with_output().expect("llxprt finishes");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            replacements: self.replacements,
        }
    }
}

impl Cli {
    /// A fresh, empty `LLXPRT_HOME` and `HOME`.
    pub fn new() -> Cli {
        Cli {
            home: tempfile::Builder::new()
                .prefix("llxprt-home-")
                .tempdir()
                .expect("temp dir"),
            user_home: tempfile::Builder::new()
                .prefix("llxprt-user-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// The `LLXPRT_HOME` directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The `HOME` directory (what `~` means to the binary).
    pub fn user_home(&self) -> &Path {
        self.user_home.path()
    }

    /// `<LLXPRT_HOME>/profiles`.
    pub fn profiles_dir(&self) -> PathBuf {
        self.home().join("profiles")
    }

    /// The file of profile `name`.
    pub fn profile_path(&self, name: &str) -> PathBuf {
        self.profiles_dir().join(format!("{name}.json"))
    }

    /// Writes `<home>/profiles/NAME.json` with exactly `text`.
    pub fn write_profile(&self, name: &str, text: &str) -> PathBuf {
        let path = self.profile_path(name);
        std::fs::create_dir_all(self.profiles_dir()).expect("create profiles dir");
        std::fs::write(&path, text).expect("write profile");
        path
    }

    /// Writes `<home>/profiles/NAME.json` as pretty JSON.
    pub fn write_profile_json(&self, name: &str, value: &serde_json::Value) -> PathBuf {
        let mut text = serde_json::to_string_pretty(value).expect("plain JSON");
        text.push('\n');
        self.write_profile(name, &text)
    }

    /// A model profile `name` for `provider` at `base` (model id `<name>-model`), its key in a
    /// private keyfile `<HOME>/<name>.key` holding `key`, with `settings` added to its
    /// `ephemeralSettings`. Returns the profile; writing it is the caller's.
    pub fn keyed_model(
        &self,
        name: &str,
        provider: &str,
        base: &str,
        key: &str,
        settings: &serde_json::Value,
    ) -> serde_json::Value {
        let keyfile = self.user_home().join(format!("{name}.key"));
        std::fs::write(&keyfile, key).expect("write keyfile");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600))
                .expect("keyfile mode");
        }
        let mut all =
            serde_json::json!({"auth-keyfile": keyfile.to_str().expect("UTF-8"), "base-url": base});
        for (k, v) in settings.as_object().expect("settings are an object") {
            all[k] = v.clone();
        }
        serde_json::json!({"version": 1, "provider": provider, "model": format!("{name}-model"),
            "ephemeralSettings": all})
    }

    /// Reads `<home>/profiles/NAME.json`.
    pub fn read_profile(&self, name: &str) -> String {
        std::fs::read_to_string(self.profile_path(name)).expect("read profile")
    }

    /// A command with these arguments.
    pub fn cmd<S: AsRef<str>>(&self, args: &[S]) -> Run<'_> {
        Run {
            cli: self,
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            stdin: None,
            null_stdin: false,
            cwd: None,
            env: Vec::new(),
        }
    }

    /// Runs the binary with these arguments and empty stdin.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Output {
        self.cmd(args).run()
    }

    /// Runs and renders in one go (the usual snapshot input).
    pub fn render<S: AsRef<str>>(&self, args: &[S]) -> String {
        self.run(args).render()
    }

    /// Runs several commands in turn and renders them as one transcript: each command line
    /// (`$ llxprt …`) followed by its rendered output (STYLE 9).
    pub fn transcript(&self, commands: &[&[&str]]) -> String {
        let mut out = String::new();
        for args in commands {
            let _ = writeln!(out, "$ llxprt {}", args.join(" "));
            out.push_str(&self.run(args).render());
            out.push('\n');
        }
        out
    }

    fn replacements(&self) -> Vec<(String, &'static str)> {
        let mut v = Vec::new();
        for (dir, placeholder) in [(self.home(), "[HOME]"), (self.user_home(), "[USERHOME]")] {
            v.push((dir.display().to_string(), placeholder));
            // The same directory reached through symlinks (macOS /var → /private/var).
            if let Ok(c) = dir.canonicalize() {
                v.push((c.display().to_string(), placeholder));
            }
        }
        // Longest first, so a path is never half-replaced by a shorter prefix.
        v.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        v
    }
}
