//! SPEC §7.1 "Special files never hang anything": every file llxprt reads or locks is opened
//! without blocking and accepted only if it is a regular file (a symlink to one is followed the
//! same way everywhere). A FIFO, a directory or a device (`/dev/zero`, through a symlink) in
//! any file's place is a clear error naming the file — in every command, which ends on its own
//! (each run has a watchdog: killed after [`HANG`] and the test fails) — and a state file that
//! cannot be read is moved aside, said on stderr.
//!
//! The roles: a profile's keyfile, a profile, `settings.json`, the state file, the state file's
//! lock, the profiles lock, a bucket's token file and the line history. Each command of
//! [`COMMANDS`] runs against each kind of special file in each role, in a fresh home; the
//! commands that read the file must name it. Serve: a FIFO state file is moved aside at start
//! and serve answers; a backend whose keyfile is a FIFO gets an error answer and serve keeps
//! answering. Symlinked profiles are listed, loaded and routed like regular files.
//!
//! Unix only (FIFOs, symlinks, `/dev/zero`).
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::serve::{Serve, client, get, post};
use support::server::{Reply, Server, openai_stream};
use support::{Cli, Output, Run};

/// How long a command may run before it counts as hung (a loaded 2-core machine runs every one
/// of them in well under a second).
const HANG: Duration = Duration::from_secs(10);

const KEY: &str = "sk-test-special-0123456789abcdefghij";

/// What takes a file's place.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Fifo,
    Dir,
    /// A symlink to `/dev/zero`: endless bytes for a reader that does not check.
    DevZero,
}

const KINDS: [Kind; 3] = [Kind::Fifo, Kind::Dir, Kind::DevZero];

impl Kind {
    /// How the error says what the file is.
    fn what(self) -> &'static str {
        match self {
            Kind::Fifo => "FIFO",
            Kind::Dir => "directory",
            Kind::DevZero => "character device",
        }
    }

    /// Puts this kind of file at `path` (its directory created).
    fn make(self, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match self {
            Kind::Fifo => {
                let ok = Command::new("mkfifo").arg(path).status().unwrap();
                assert!(ok.success(), "mkfifo {}", path.display());
            }
            Kind::Dir => std::fs::create_dir(path).unwrap(),
            Kind::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        }
    }
}

/// The message naming `path` as this kind of file.
fn refusal(path: &Path, kind: Kind) -> String {
    format!(
        "{} is a {}, not a regular file",
        path.display(),
        kind.what()
    )
}

/// Runs to the end, or kills the process after [`HANG`] and fails.
fn bounded(run: Run<'_>, label: &str) -> Output {
    let mut running = run.spawn();
    let deadline = Instant::now() + HANG;
    while !running.exited() {
        if Instant::now() > deadline {
            running.kill();
            let out = running.wait();
            panic!(
                "{label}: still running after {} s, killed:\n{}",
                HANG.as_secs(),
                out.render()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = running.wait();
    assert!(
        !out.all().contains("panicked") && out.code >= 0 && out.code != 101,
        "{label}: a panic or a signal:\n{}",
        out.render()
    );
    out
}

fn openai_base(s: &Server) -> String {
    format!("{}/v1", s.url())
}

/// A private keyfile holding [`KEY`] at `path`.
fn write_key(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, KEY).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// An OpenAI model profile `name` at `base` with its key in `key` (no retries).
fn model(cli: &Cli, name: &str, base: &str, key: &Path) -> serde_json::Value {
    let p = json!({"version": 1, "provider": "openai", "model": format!("{name}-model"),
        "ephemeralSettings": {"auth-keyfile": key.to_str().unwrap(), "base-url": base,
                              "failover_retry_count": 0}});
    cli.write_profile_json(name, &p);
    p
}

/// A home with profile `a` (the default) at `s`, its keyfile `~/a.key`.
fn home(s: &Server) -> Cli {
    let cli = Cli::new();
    let key = cli.user_home().join("a.key");
    write_key(&key);
    model(&cli, "a", &openai_base(s), &key);
    std::fs::write(
        cli.home().join("settings.json"),
        "{\"defaultProfile\": \"a\"}\n",
    )
    .unwrap();
    cli
}

/// One command of the matrix: its label, and its arguments in a home (`base` for a save).
struct Cmd {
    label: &'static str,
    args: fn(&Cli, &str) -> Vec<String>,
    stdin: &'static str,
    /// Standard input stands for a terminal (the session needs one; SPEC §8.1).
    session: bool,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

const COMMANDS: [Cmd; 8] = [
    Cmd {
        label: "chat one-shot",
        args: |_, _| strings(&["chat", "--profile", "a", "hi"]),
        stdin: "",
        session: false,
    },
    Cmd {
        label: "chat with the default profile",
        args: |_, _| strings(&["chat", "hi"]),
        stdin: "",
        session: false,
    },
    Cmd {
        label: "chat session",
        args: |_, _| strings(&["chat", "-i", "--profile", "a"]),
        stdin: "hi\n/quit\n",
        session: true,
    },
    Cmd {
        label: "stats",
        args: |_, _| strings(&["stats"]),
        stdin: "",
        session: false,
    },
    Cmd {
        label: "auth status",
        args: |_, _| strings(&["auth", "status"]),
        stdin: "",
        session: false,
    },
    Cmd {
        label: "profile validate",
        args: |cli, _| {
            let p = cli.profile_path("a");
            strings(&["profile", "validate", p.to_str().unwrap()])
        },
        stdin: "",
        session: false,
    },
    Cmd {
        label: "profile save",
        args: |cli, base| {
            let key = cli.user_home().join("a.key");
            strings(&[
                "profile",
                "save",
                "model",
                "b",
                "--provider",
                "openai",
                "--model",
                "m",
                "--base-url",
                base,
                "--keyfile",
                key.to_str().unwrap(),
            ])
        },
        stdin: "",
        session: false,
    },
    Cmd {
        label: "profile list",
        args: |_, _| strings(&["profile", "list"]),
        stdin: "",
        session: false,
    },
];

/// Every command of [`COMMANDS`] with each kind of special file at `role(cli)`, each in a
/// fresh home: none hangs or panics; `check(kind, path, command label, output)` then looks at
/// what it said.
fn matrix(role: fn(&Cli) -> PathBuf, check: impl Fn(Kind, &Path, &str, &Output)) {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["answered"],
        Some("stop"),
        true,
        None,
    ))]);
    for kind in KINDS {
        for cmd in &COMMANDS {
            let cli = home(&s);
            let path = role(&cli);
            if path.exists() || path.is_symlink() {
                std::fs::remove_file(&path).unwrap();
            }
            kind.make(&path);
            let label = format!("{} with {} as a {kind:?}", cmd.label, path.display());
            let run = cli.cmd(&(cmd.args)(&cli, &openai_base(&s)));
            let run = if cmd.session {
                run.session_input(cmd.stdin)
            } else {
                run.stdin(cmd.stdin)
            };
            let out = bounded(run, &label);
            check(kind, &path, cmd.label, &out);
        }
    }
}

/// Asserts that `out` names `path` as a `kind`.
fn names_it(kind: Kind, path: &Path, label: &str, out: &Output) {
    let want = refusal(path, kind);
    assert!(
        out.all().contains(&want),
        "{label}: expected {want:?} in:\n{}",
        out.render()
    );
}

#[test]
fn keyfile() {
    matrix(
        |cli| cli.user_home().join("a.key"),
        |kind, path, label, out| {
            if label.starts_with("chat") {
                names_it(kind, path, label, out);
            }
            // A session goes on after a failed turn; a one-shot chat fails.
            if label.starts_with("chat") && label != "chat session" {
                assert_ne!(out.code, 0, "{label}: {}", out.render());
            }
        },
    );
}

#[test]
fn profile() {
    matrix(
        |cli| cli.profile_path("a"),
        |kind, path, label, out| {
            // A directory in the profiles directory is no profile file: not listed (a symlink
            // to one is, below); loaded by name, it is named.
            let listed = label == "profile list" && !matches!(kind, Kind::Dir);
            if label.starts_with("chat") || label == "profile validate" || listed {
                names_it(kind, path, label, out);
            }
            if label == "profile save" {
                assert_eq!(out.code, 0, "{label}: {}", out.render());
            }
        },
    );
}

#[test]
fn settings() {
    matrix(
        |cli| cli.home().join("settings.json"),
        |kind, path, label, out| {
            if label == "chat with the default profile" || label == "profile list" {
                names_it(kind, path, label, out);
            }
        },
    );
}

#[test]
fn state_file() {
    matrix(
        |cli| cli.home().join("state/state.json"),
        |kind, path, label, out| {
            if label.starts_with("chat") || label == "stats" || label == "auth status" {
                let said = format!(
                    "the state file {} is a {}, not a regular file; it was moved to {}.unreadable-",
                    path.display(),
                    kind.what(),
                    path.display()
                );
                assert!(
                    out.stderr.contains(&said),
                    "{label}: expected {said:?} in:\n{}",
                    out.render()
                );
                assert!(!path.is_symlink(), "{label}: not moved aside");
                if label.starts_with("chat") {
                    assert!(out.stdout.contains("answered"), "{}", out.render());
                }
            }
        },
    );
}

#[test]
fn state_lock() {
    matrix(
        |cli| cli.home().join("state/state.json.lock"),
        |kind, path, label, out| {
            if label.starts_with("chat") || label == "stats" {
                names_it(kind, path, label, out);
            }
        },
    );
}

#[test]
fn profiles_lock() {
    matrix(
        |cli| cli.home().join("profiles.lock"),
        |kind, path, label, out| {
            if label == "profile save" {
                names_it(kind, path, label, out);
                assert_ne!(out.code, 0, "{label}: {}", out.render());
            }
        },
    );
}

#[test]
fn token_file() {
    matrix(
        |cli| cli.home().join("oauth/openai/work.json"),
        |kind, path, label, out| {
            if label == "auth status" {
                names_it(kind, path, label, out);
            }
        },
    );
}

#[test]
fn history() {
    matrix(
        |cli| cli.home().join("history/repl"),
        |kind, path, label, out| {
            if label == "chat session" {
                names_it(kind, path, label, out);
                assert!(out.stdout.contains("answered"), "{}", out.render());
            }
        },
    );
}

/// `auth login --key-file` may name a pipe (SPEC §7.1): one with a writer is read; one that no
/// program writes is given up on, with an error naming it.
#[test]
fn login_key_file_may_be_a_pipe() {
    let cli = Cli::new();
    let fifo = cli.user_home().join("key.fifo");
    Kind::Fifo.make(&fifo);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(&fifo, KEY))
    };
    let login = |bucket: &str| {
        let f = fifo.to_str().unwrap().to_string();
        cli.cmd(&["auth", "login", "openai", bucket, "--key-file", &f])
    };
    let out = bounded(login("piped"), "login from a written pipe");
    assert_eq!(out.code, 0, "{}", out.render());
    writer.join().unwrap().unwrap();
    let stored = std::fs::read_to_string(cli.home().join("oauth/openai/piped.json")).unwrap();
    assert!(stored.contains(KEY));

    // No writer: given up on within the bound (the read waits 10 s; the watchdog allows more).
    let mut run = login("unwritten").spawn();
    let deadline = Instant::now() + HANG + Duration::from_secs(10);
    while !run.exited() {
        if Instant::now() > deadline {
            run.kill();
            panic!(
                "the login waited on the pipe for good:\n{}",
                run.wait().render()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run.wait();
    assert_ne!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr.contains(&format!(
            "cannot read {}: nothing came within 10 s",
            fifo.display()
        )),
        "{}",
        out.render()
    );

    // A directory is refused at once.
    let dir = cli.user_home().join("keydir");
    Kind::Dir.make(&dir);
    let out = bounded(
        cli.cmd(&[
            "auth",
            "login",
            "openai",
            "d",
            "--key-file",
            dir.to_str().unwrap(),
        ]),
        "login from a directory",
    );
    names_it(Kind::Dir, &dir, "login from a directory", &out);
}

/// Serve with a FIFO as its state file used to never start: it starts, moves the file aside,
/// says so, and answers.
#[test]
fn serve_moves_a_fifo_state_file_aside_and_answers() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["answered"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = home(&s);
    let state = cli.home().join("state/state.json");
    Kind::Fifo.make(&state);
    let serve = Serve::start(&cli, &["--profile", "a"]);
    let agent = client();
    let r = post(
        &agent,
        &serve.chat_url(),
        &json!({"model": "a", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body, serve.log());
    assert!(r.body.contains("answered"), "{}", r.body);
    let log = serve.wait_log("moved to");
    assert!(
        log.contains(&format!(
            "the state file {} is a FIFO, not a regular file; it was moved to",
            state.display()
        )),
        "{log}"
    );
    // Written by serve's state writer, on its own thread.
    let deadline = Instant::now() + HANG;
    while !state.is_file() {
        assert!(
            Instant::now() < deadline,
            "no fresh state file: {}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A backend whose keyfile is a FIFO used to hold a serve slot for good: its requests get an
/// error answer naming the file, again and again (more than a profile's 16 slots), and serve
/// keeps answering the others.
#[test]
fn serve_answers_a_fifo_keyfile_with_an_error_and_goes_on() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["answered"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = home(&s);
    let fifo = cli.user_home().join("bad.key");
    Kind::Fifo.make(&fifo);
    model(&cli, "bad", &openai_base(&s), &fifo);
    let serve = Serve::start(&cli, &["--profile", "a"]);
    // A request that hangs fails the test at its timeout.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(HANG))
        .build()
        .into();
    let ask = |model: &str| {
        post(
            &agent,
            &serve.chat_url(),
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    for _ in 0..20 {
        let r = ask("bad");
        assert_ne!(r.status, 200, "{}", r.body);
        assert!(r.body.contains(&refusal(&fifo, Kind::Fifo)), "{}", r.body);
        let r = ask("a");
        assert_eq!(r.status, 200, "{}\n{}", r.body, serve.log());
    }
    assert_eq!(
        s.requests().len(),
        20,
        "only the good backend's requests went out"
    );
}

/// A symlink to a regular profile file is a profile like any other (SPEC §7.1): listed,
/// loaded, and routed by serve (`/v1/models`, `"model": "linked"`).
#[test]
fn symlinked_profiles_are_listed_loaded_and_routed() {
    let s = Server::start(vec![Reply::sse(openai_stream(
        &["answered"],
        Some("stop"),
        true,
        None,
    ))]);
    let cli = home(&s);
    let real = cli.user_home().join("elsewhere/linked.json");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    let key = cli.user_home().join("a.key");
    model(&cli, "linked", &openai_base(&s), &key);
    std::fs::rename(cli.profile_path("linked"), &real).unwrap();
    std::os::unix::fs::symlink(&real, cli.profile_path("linked")).unwrap();

    let out = bounded(cli.cmd(&["profile", "list"]), "profile list");
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(out.stdout.contains("linked"), "{}", out.render());
    let out = bounded(cli.cmd(&["profile", "show", "linked"]), "profile show");
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(out.stdout.contains("linked-model"), "{}", out.render());

    let serve = Serve::start(&cli, &["--profile", "a"]);
    let agent = client();
    let models = get(&agent, &format!("{}/v1/models", serve.url()));
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"linked".to_string()), "{ids:?}");
    let r = post(
        &agent,
        &serve.chat_url(),
        &json!({"model": "linked", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = s.requests();
    assert_eq!(
        sent.last().unwrap().body["model"],
        "linked-model",
        "routed to it"
    );

    // A symlink to a FIFO or a directory is a profile that does not load, named as such,
    // never a hang.
    let fifo = cli.user_home().join("p.fifo");
    Kind::Fifo.make(&fifo);
    std::os::unix::fs::symlink(&fifo, cli.profile_path("piped")).unwrap();
    let dir = cli.user_home().join("p.dir");
    Kind::Dir.make(&dir);
    std::os::unix::fs::symlink(&dir, cli.profile_path("folder")).unwrap();
    let out = bounded(cli.cmd(&["profile", "list"]), "profile list");
    for (name, kind) in [("piped", Kind::Fifo), ("folder", Kind::Dir)] {
        assert!(
            out.all().contains(&refusal(&cli.profile_path(name), kind)),
            "{}",
            out.render()
        );
    }
    let models = get(&agent, &format!("{}/v1/models", serve.url()));
    assert!(!models.body.contains("\"piped\""), "{}", models.body);
    assert!(!models.body.contains("\"folder\""), "{}", models.body);
}
