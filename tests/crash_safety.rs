//! Crash safety (SPEC §1, §7: "a crashed write leaves the previous version intact"), for real:
//! the built binary is started as a child with the stall hook of `src/fsutil.rs` naming one
//! file, the test waits for the hook's marker (the write is then mid-flight: half of the temp
//! file written, or all of it synced and not yet renamed), kills the child with SIGKILL, and
//! checks that the target still holds the previous version byte for byte, that llxprt still
//! reads it, that the killed write's leftover temp file is what the hook said (so the kill
//! really landed mid-write) and harms nothing, and that a later normal write succeeds.
//!
//! Then concurrent writers (SPEC §1: concurrent processes; §5.9: one shared state file): many
//! processes at once, exact counts afterwards.
//!
//! The hook exists only in debug builds (what `cargo test` builds); under `--release` the stall
//! tests say so and pass without running.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::server::{Reply, Server, openai_stream};
use support::{Cli, Run, Running};

/// The longest a test waits for anything; past it the test fails instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Where the hook stalls the write (`LLXPRT_TEST_STALL_AT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Inside the temp file's write, after half of the bytes.
    Half,
    /// Temp file written and synced, rename not done.
    Rename,
}

impl At {
    const BOTH: [At; 2] = [At::Half, At::Rename];

    fn var(self) -> &'static str {
        match self {
            At::Half => "half",
            At::Rename => "rename",
        }
    }
}

/// The stall hook is compiled out of release builds: there is nothing to test.
fn hook_missing() -> bool {
    if cfg!(debug_assertions) {
        return false;
    }
    eprintln!("skipped: the write-stall hook exists only in debug builds");
    true
}

/// A child stalled in the middle of a write. Dropping it kills the child, so a failing test
/// never leaves a process behind.
struct Stalled {
    child: Option<Running>,
    /// The temp file of the stalled write (from the hook's marker).
    temp: PathBuf,
}

impl Stalled {
    /// SIGKILLs the child, checks it died of the signal, and returns the temp file it left.
    fn kill(mut self) -> PathBuf {
        let mut child = self.child.take().expect("not killed yet");
        child.kill();
        let out = child.wait();
        // Unix: no exit code, the process died of the signal (the fixture reports -1).
        #[cfg(unix)]
        assert_eq!(
            out.code,
            -1,
            "killed by SIGKILL, not exited:\n{}",
            out.render()
        );
        #[cfg(not(unix))]
        let _ = out;
        std::mem::take(&mut self.temp)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `run` with the stall hook on the write of the file named `file` at `at`, and waits
/// for the hook's marker. A child that exits first, or no marker within [`TIMEOUT`], fails.
fn stall(cli: &Cli, run: Run<'_>, file: &str, at: At) -> Stalled {
    static N: AtomicUsize = AtomicUsize::new(0);
    // Outside LLXPRT_HOME, so the marker itself can never be mistaken for llxprt's data.
    let marker = cli.user_home().join(format!(
        "stalled-{}.marker",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let child = run
        .env("LLXPRT_TEST_STALL_WRITE", file)
        .env("LLXPRT_TEST_STALL_AT", at.var())
        .env("LLXPRT_TEST_STALL_MARKER", &marker)
        .spawn();
    let mut stalled = Stalled {
        child: Some(child),
        temp: PathBuf::new(),
    };
    let start = Instant::now();
    loop {
        if let Ok(temp) = std::fs::read_to_string(&marker) {
            stalled.temp = PathBuf::from(temp);
            return stalled;
        }
        let child = stalled.child.as_mut().expect("running");
        if child.exited() {
            let out = stalled.child.take().expect("running").wait();
            panic!(
                "the child finished without stalling on {file} ({at:?}):\n{}",
                out.render()
            );
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "no stall marker for {file} ({at:?}) within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `path` holds exactly `want`. Neither is printed (a credential file holds a secret, SPEC
/// §7): only the lengths and the first differing offset.
fn assert_bytes(path: &Path, want: &[u8], what: &str) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: cannot read: {e}"));
    assert!(
        got == want,
        "{what}: {} holds {} bytes, expected {} (first difference at byte {})",
        path.display(),
        got.len(),
        want.len(),
        got.iter().zip(want).take_while(|(a, b)| a == b).count()
    );
}

/// The leftover of a write killed at `at`, checked against the complete new content `new`
/// (what a later normal write of the same change produced): half of it, or all of it.
fn assert_leftover(temp: &Path, new: &[u8], at: At, what: &str) {
    let want = match at {
        At::Half => &new[..new.len() / 2],
        At::Rename => new,
    };
    assert_bytes(temp, want, &format!("{what}: the killed write's temp file"));
}

/// The leftover temp file is in the target's directory, hidden, and was not cleaned up (the
/// process was killed): that is the state every later run must cope with.
fn assert_temp_beside(temp: &Path, target: &Path) {
    assert_eq!(temp.parent(), target.parent(), "{}", temp.display());
    let name = temp.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(".llxprt-tmp-"), "{name}");
    assert!(temp.is_file(), "the killed write left {}", temp.display());
}

fn run_ok<S: AsRef<str>>(cli: &Cli, args: &[S]) -> support::Output {
    let out = cli.run(args);
    assert_eq!(out.code, 0, "{}", out.render());
    out
}

fn json_of(out: &support::Output) -> Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.render()))
}

/// The names `profile list --json` shows, and the default among them.
fn listed(cli: &Cli) -> (Vec<String>, Option<String>) {
    let rows = json_of(&run_ok(cli, &["profile", "list", "--json"]));
    let rows = rows.as_array().expect("an array");
    let names = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let default = rows
        .iter()
        .find(|r| r["default"] == true)
        .map(|r| r["name"].as_str().unwrap().to_string());
    (names, default)
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------------------------
// A process killed mid-write (SPEC §1, §7)
// ---------------------------------------------------------------------------------------------

/// `profile save model work … --force` over an existing `work`, killed mid-write.
#[test]
fn a_profile_save_killed_mid_write_leaves_the_previous_profile() {
    fn save(model: &str) -> Vec<&str> {
        let mut v = vec!["profile", "save", "model", "work", "--provider", "openai"];
        v.extend(["--model", model, "--force"]);
        v
    }
    if hook_missing() {
        return;
    }
    for at in At::BOTH {
        let cli = Cli::new();
        run_ok(&cli, &save("old-model"));
        run_ok(
            &cli,
            &[
                "profile",
                "save",
                "model",
                "other",
                "--provider",
                "openai",
                "--model",
                "m",
            ],
        );
        let target = cli.profile_path("work");
        let old = std::fs::read(&target).unwrap();

        let temp = stall(&cli, cli.cmd(&save("new-model")), "work.json", at).kill();

        assert_bytes(&target, &old, &format!("{at:?}: work.json"));
        assert_temp_beside(&temp, &target);
        let show = run_ok(&cli, &["profile", "show", "work"]);
        assert!(show.stdout.contains("\"old-model\""), "{}", show.stdout);
        // The leftover is neither listed nor in the way of the name checks.
        assert_eq!(listed(&cli).0, ["other", "work"], "{at:?}");
        run_ok(&cli, &["profile", "validate", target.to_str().unwrap()]);

        run_ok(&cli, &save("new-model"));
        let new = std::fs::read(&target).unwrap();
        assert!(new != old);
        assert_leftover(&temp, &new, at, "work.json");
        let show = run_ok(&cli, &["profile", "show", "work"]);
        assert!(show.stdout.contains("\"new-model\""), "{}", show.stdout);
        assert_eq!(listed(&cli).0, ["other", "work"], "{at:?}");
    }
}

/// `profile set-default b` over the default `a`, killed mid-write of `settings.json`.
#[test]
fn a_settings_write_killed_mid_write_leaves_the_previous_default() {
    if hook_missing() {
        return;
    }
    for at in At::BOTH {
        let cli = Cli::new();
        for name in ["a", "b"] {
            run_ok(
                &cli,
                &[
                    "profile",
                    "save",
                    "model",
                    name,
                    "--provider",
                    "openai",
                    "--model",
                    "m",
                ],
            );
        }
        run_ok(&cli, &["profile", "set-default", "a"]);
        let target = cli.home().join("settings.json");
        let old = std::fs::read(&target).unwrap();

        let temp = stall(
            &cli,
            cli.cmd(&["profile", "set-default", "b"]),
            "settings.json",
            at,
        )
        .kill();

        assert_bytes(&target, &old, &format!("{at:?}: settings.json"));
        assert_temp_beside(&temp, &target);
        assert_eq!(
            listed(&cli),
            (vec!["a".into(), "b".into()], Some("a".into()))
        );

        run_ok(&cli, &["profile", "set-default", "b"]);
        let new = std::fs::read(&target).unwrap();
        assert_leftover(&temp, &new, at, "settings.json");
        assert_eq!(
            listed(&cli),
            (vec!["a".into(), "b".into()], Some("b".into()))
        );
    }
}

/// `auth login openai k --key-file NEW` over a stored key, killed mid-write of the bucket file.
#[test]
fn a_token_write_killed_mid_write_leaves_the_previous_credential() {
    if hook_missing() {
        return;
    }
    for at in At::BOTH {
        let cli = Cli::new();
        let old_key = cli.user_home().join("old.key");
        let new_key = cli.user_home().join("new.key");
        private_file(&old_key, "sk-crash-old-0123456789abcdefghij");
        private_file(&new_key, "sk-crash-new-9876543210zyxwvutsrq");
        let login = |keyfile: &Path| {
            vec![
                "auth".to_string(),
                "login".into(),
                "openai".into(),
                "k".into(),
                "--key-file".into(),
                keyfile.to_str().unwrap().into(),
            ]
        };
        run_ok(&cli, &login(&old_key));
        let target = cli.home().join("oauth/openai/k.json");
        let old = std::fs::read(&target).unwrap();

        let temp = stall(&cli, cli.cmd(&login(&new_key)), "k.json", at).kill();

        assert_bytes(&target, &old, &format!("{at:?}: k.json"));
        assert_temp_beside(&temp, &target);
        // What the killed write left holds (part of) a secret: it is private like the target.
        #[cfg(unix)]
        assert_eq!(mode(&temp), 0o600, "{}", temp.display());
        let rows = json_of(&run_ok(&cli, &["auth", "status", "--json"]));
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "only the bucket, not the leftover: {rows:?}");
        assert_eq!(
            (&rows[0]["bucket"], &rows[0]["kind"]),
            (&json!("k"), &json!("apikey"))
        );

        run_ok(&cli, &login(&new_key));
        let new = std::fs::read(&target).unwrap();
        assert!(new != old);
        assert_leftover(&temp, &new, at, "k.json");
        let rows = json_of(&run_ok(&cli, &["auth", "status", "--json"]));
        assert_eq!(rows.as_array().unwrap().len(), 1);
        assert_eq!(rows[0]["kind"], "apikey");
    }
}

const KEY: &str = "sk-test-crash-0123456789abcdefghij";

fn ok_stream() -> Reply {
    Reply::sse(openai_stream(&["ok"], Some("stop"), true, Some((5, 3))))
}

/// A model profile `name` at `server`, with a private keyfile (bucket `openai/default`), or
/// with the stored buckets `buckets`.
fn model(cli: &Cli, name: &str, server: &Server, buckets: &[&str]) {
    let keyfile = cli.user_home().join(format!("{name}.key"));
    private_file(&keyfile, KEY);
    let mut p = json!({
        "version": 1,
        "provider": "openai",
        "model": format!("{name}-model"),
        "ephemeralSettings": {
            "auth-keyfile": keyfile.to_str().unwrap(),
            "base-url": format!("{}/v1", server.url()),
        },
    });
    if !buckets.is_empty() {
        p["auth"] = json!({"type": "apikey", "buckets": buckets});
    }
    cli.write_profile_json(name, &p);
}

/// `stats --profile NAME --json`.
fn stats(cli: &Cli, name: &str) -> Value {
    json_of(&run_ok(cli, &["stats", "--profile", name, "--json"]))
}

fn chat(cli: &Cli, name: &str) {
    run_ok(cli, &["chat", "--profile", name, "hi"]);
}

/// `stats --reset` (the state file's plain locked update), killed mid-write of `state.json`.
#[test]
fn a_state_reset_killed_mid_write_leaves_the_previous_state() {
    if hook_missing() {
        return;
    }
    let server = Server::start(vec![ok_stream()]);
    for at in At::BOTH {
        let cli = Cli::new();
        model(&cli, "solo", &server, &[]);
        chat(&cli, "solo");
        chat(&cli, "solo");
        let target = cli.home().join("state/state.json");
        let old = std::fs::read(&target).unwrap();

        let temp = stall(&cli, cli.cmd(&["stats", "--reset"]), "state.json", at).kill();

        assert_bytes(&target, &old, &format!("{at:?}: state.json"));
        assert_temp_beside(&temp, &target);
        let v = stats(&cli, "solo");
        assert_eq!(
            (&v["lb"]["requests"], &v["lb"]["successes"]),
            (&json!(2), &json!(2))
        );
        assert_eq!(v["buckets"]["solo/default"]["requests"], 2);

        // The killed process held the state lock; the kernel released it with the process.
        run_ok(&cli, &["stats", "--reset"]);
        let new = std::fs::read(&target).unwrap();
        assert_leftover(&temp, &new, at, "state.json");
        assert_eq!(stats(&cli, "solo")["lb"]["requests"], 0);
        chat(&cli, "solo");
        assert_eq!(stats(&cli, "solo")["lb"]["requests"], 1);
    }
}

/// A chat killed while its first engine step's state write stalls: `half` stalls the step's
/// staging on the main thread (before the request is sent), `rename` the write that a sending
/// step finishes on its own thread while the request goes out (src/state_file.rs).
#[test]
fn a_chat_killed_mid_state_write_leaves_the_previous_state() {
    if hook_missing() {
        return;
    }
    let server = Server::start(vec![ok_stream()]);
    for at in At::BOTH {
        let cli = Cli::new();
        model(&cli, "solo", &server, &[]);
        chat(&cli, "solo");
        let target = cli.home().join("state/state.json");
        let old = std::fs::read(&target).unwrap();

        let stalled = stall(
            &cli,
            cli.cmd(&["chat", "--profile", "solo", "hi"]),
            "state.json",
            at,
        );
        let temp = stalled.kill();

        assert_bytes(&target, &old, &format!("{at:?}: state.json"));
        assert_temp_beside(&temp, &target);
        // The killed write was the new request's arrival: complete (and counting it) when
        // stalled before the rename, cut in half otherwise.
        let leftover = std::fs::read(&temp).unwrap();
        match (at, serde_json::from_slice::<Value>(&leftover)) {
            (At::Rename, Ok(v)) => assert_eq!(v["lb/solo"]["stats"]["requests"], 2, "{v}"),
            (At::Half, Err(_)) => {}
            (at, parsed) => panic!("{at:?}: unexpected leftover {parsed:?}"),
        }
        let v = stats(&cli, "solo");
        assert_eq!(
            (&v["lb"]["requests"], &v["lb"]["successes"]),
            (&json!(1), &json!(1))
        );

        // A later chat takes the lock the killed one held, and nothing of the killed request
        // was counted.
        chat(&cli, "solo");
        let v = stats(&cli, "solo");
        assert_eq!(
            (&v["lb"]["requests"], &v["lb"]["successes"]),
            (&json!(2), &json!(2))
        );
        assert_eq!(v["buckets"]["solo/default"]["successes"], 2);
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent writers (SPEC §1, §5.9)
// ---------------------------------------------------------------------------------------------

/// Starts every command at once, then waits for all; each must exit 0.
fn all_at_once(cli: &Cli, commands: &[Vec<String>]) {
    let children: Vec<Running> = commands.iter().map(|args| cli.cmd(args).spawn()).collect();
    for (args, child) in commands.iter().zip(children) {
        let out = child.wait();
        assert_eq!(out.code, 0, "llxprt {}:\n{}", args.join(" "), out.render());
    }
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(ToString::to_string).collect()
}

/// Eight processes each save their own profile at once: all eight are there, whole.
#[test]
fn eight_concurrent_profile_saves_all_land() {
    let cli = Cli::new();
    let commands: Vec<Vec<String>> = (0..8)
        .map(|i| {
            let (name, model) = (format!("p{i}"), format!("model-{i}"));
            args(&[
                "profile",
                "save",
                "model",
                &name,
                "--provider",
                "openai",
                "--model",
                &model,
            ])
        })
        .collect();
    all_at_once(&cli, &commands);
    let want: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    assert_eq!(listed(&cli).0, want);
    for i in 0..8 {
        let v: Value = serde_json::from_str(&cli.read_profile(&format!("p{i}"))).unwrap();
        assert_eq!(v["model"], format!("model-{i}"));
    }
    // Every write finished: no temp file is left.
    let files = std::fs::read_dir(cli.profiles_dir()).unwrap().count();
    assert_eq!(files, 8);
}

/// Waits for `child` to exit, at most [`TIMEOUT`]; past it the child is killed and the test
/// fails.
fn wait_within(mut child: Running, what: &str) -> support::Output {
    let start = Instant::now();
    while !child.exited() {
        if start.elapsed() > TIMEOUT {
            child.kill();
            panic!(
                "{what} did not finish within {TIMEOUT:?}:\n{}",
                child.wait().render()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait()
}

/// `child` is still running a second after it started: it waits for a lock another process
/// holds (a process that took no lock is done long before).
fn assert_waits(child: &mut Running, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        assert!(
            !child.exited(),
            "{what} finished without waiting for the lock the stalled process holds"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn save_model_args(name: &str, model: &str) -> Vec<String> {
    args(&[
        "profile",
        "save",
        "model",
        name,
        "--provider",
        "openai",
        "--model",
        model,
    ])
}

/// SPEC §1 (a name not equal, ignoring case, to an existing profile's): eight processes save
/// one new name at once, each in another case and without `--force`. The check and the write
/// are one step under the profiles lock, so exactly one saves and seven are told it exists —
/// never two files differing in case, never one silently replacing another.
#[test]
fn concurrent_saves_of_one_new_name_in_any_case_save_exactly_one() {
    let cli = Cli::new();
    let names = ["dup", "Dup", "DUP", "dUp", "duP", "DUp", "dUP", "DuP"];
    let children: Vec<Running> = names
        .iter()
        .enumerate()
        .map(|(i, n)| cli.cmd(&save_model_args(n, &format!("model-{i}"))).spawn())
        .collect();
    let outs: Vec<support::Output> = children
        .into_iter()
        .zip(names)
        .map(|(c, n)| wait_within(c, &format!("profile save model {n}")))
        .collect();
    let winners: Vec<usize> = (0..names.len()).filter(|&i| outs[i].code == 0).collect();
    assert_eq!(winners.len(), 1, "exactly one save succeeds: {outs:#?}");
    let w = winners[0];
    let winner = names[w];
    assert!(
        outs[w]
            .stderr
            .starts_with(&format!("saved model profile \"{winner}\"")),
        "{}",
        outs[w].render()
    );
    for (i, out) in outs.iter().enumerate().filter(|(i, _)| *i != w) {
        assert_eq!(out.code, 1, "{}: {}", names[i], out.render());
        assert_eq!(
            out.stderr,
            format!("error: profile \"{winner}\" already exists; add --force to replace it\n"),
            "{}",
            names[i]
        );
    }
    assert_eq!(listed(&cli).0, [winner]);
    let v: Value = serde_json::from_str(&cli.read_profile(winner)).unwrap();
    assert_eq!(
        v["model"],
        format!("model-{w}"),
        "the winner's profile, whole"
    );
    let files = std::fs::read_dir(cli.profiles_dir()).unwrap().count();
    assert_eq!(files, 1, "one file, no temp file left");
}

/// A save of a new name waits while another process is writing that name in another case
/// (stalled before its rename, holding the profiles lock): it used to check, find nothing and
/// write a second file. Once the stalled process is killed, the kernel releases its lock and the
/// waiting save goes on, sees that nothing was written, and saves.
#[test]
fn a_save_waits_for_a_save_of_the_name_in_another_case_and_a_killed_one_holds_nothing_up() {
    if hook_missing() {
        return;
    }
    let cli = Cli::new();
    let stalled = stall(
        &cli,
        cli.cmd(&save_model_args("Work", "first")),
        "Work.json",
        At::Rename,
    );
    let mut second = cli.cmd(&save_model_args("work", "second")).spawn();
    assert_waits(&mut second, "profile save model work");
    stalled.kill();
    let out = wait_within(second, "profile save model work");
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(listed(&cli).0, ["work"]);
    let v: Value = serde_json::from_str(&cli.read_profile("work")).unwrap();
    assert_eq!(v["model"], "second");
}

/// `profile delete a` of the default `a`, stalled while it clears the default (holding the
/// settings lock), and a `profile set-default b` meanwhile: the set-default waits for it
/// instead of landing between the delete's check of the default and its clearing of it (where
/// the delete would then remove `b`). Killed, the delete leaves the default it did not clear;
/// the set-default then names `b`.
#[test]
fn a_set_default_waits_for_a_delete_clearing_the_default() {
    if hook_missing() {
        return;
    }
    let cli = Cli::new();
    for name in ["a", "b"] {
        run_ok(&cli, &save_model_args(name, "m"));
    }
    run_ok(&cli, &["profile", "set-default", "a"]);
    let stalled = stall(
        &cli,
        cli.cmd(&["profile", "delete", "a"]),
        "settings.json",
        At::Rename,
    );
    assert!(!cli.profile_path("a").exists(), "a.json is deleted first");
    let mut set = cli.cmd(&["profile", "set-default", "b"]).spawn();
    assert_waits(&mut set, "profile set-default b");
    stalled.kill();
    let out = wait_within(set, "profile set-default b");
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(listed(&cli), (vec!["b".into()], Some("b".into())));
}

/// Eight processes each log in their own bucket at once (creating the provider's directory
/// among them): eight credentials, each with its own key.
#[test]
fn eight_concurrent_logins_of_distinct_buckets_all_land() {
    let cli = Cli::new();
    let commands: Vec<Vec<String>> = (0..8)
        .map(|i| {
            let keyfile = cli.user_home().join(format!("k{i}.key"));
            private_file(&keyfile, &format!("sk-concurrent-{i}-0123456789abcdef"));
            let bucket = format!("b{i}");
            args(&[
                "auth",
                "login",
                "openai",
                &bucket,
                "--key-file",
                keyfile.to_str().unwrap(),
            ])
        })
        .collect();
    all_at_once(&cli, &commands);
    let rows = json_of(&run_ok(&cli, &["auth", "status", "--json"]));
    let buckets: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(buckets, ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"]);
    for i in 0..8 {
        let path = cli.home().join(format!("oauth/openai/b{i}.json"));
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        // Compared, never printed (SPEC §7).
        assert!(
            v["key"] == format!("sk-concurrent-{i}-0123456789abcdef"),
            "bucket b{i} holds another bucket's key"
        );
    }
}

/// Eight chats on four profiles and a `stats --reset` of a fifth, all at once, all writing the
/// one state file: every profile's own keys, the bucket they share and the reset all land
/// (lock → re-read → change → write → unlock, SPEC §5.9).
#[test]
fn concurrent_chats_on_distinct_profiles_and_a_reset_lose_no_update() {
    let cli = Cli::new();
    let servers: Vec<Server> = (0..5).map(|_| Server::start(vec![ok_stream()])).collect();
    for (i, server) in servers.iter().take(4).enumerate() {
        model(&cli, &format!("m{i}"), server, &[]);
    }
    // The reset's profile has a bucket of its own: resetting it touches no key of the others.
    let keyfile = cli.user_home().join("z-bucket.key");
    private_file(&keyfile, KEY);
    run_ok(
        &cli,
        &[
            "auth",
            "login",
            "openai",
            "zb",
            "--key-file",
            keyfile.to_str().unwrap(),
        ],
    );
    model(&cli, "z", &servers[4], &["zb"]);
    chat(&cli, "z");
    assert_eq!(stats(&cli, "z")["buckets"]["z/zb"]["requests"], 1);

    let mut commands: Vec<Vec<String>> = (0..8)
        .map(|i| args(&["chat", "--profile", &format!("m{}", i % 4), "hi"]))
        .collect();
    commands.insert(4, args(&["stats", "--reset", "--profile", "z"]));
    all_at_once(&cli, &commands);

    for (i, server) in servers.iter().take(4).enumerate() {
        assert_eq!(server.requests().len(), 2, "m{i}'s server");
        let v = stats(&cli, &format!("m{i}"));
        assert_eq!(
            (&v["lb"]["requests"], &v["lb"]["successes"]),
            (&json!(2), &json!(2)),
            "m{i}: {v}"
        );
        assert_eq!(v["backends"][format!("m{i}")]["successes"], 2, "m{i}: {v}");
        // Each profile sends to its own server: its `default` bucket is an account of its own
        // (SPEC §5.9), and its two chats, only those, counted there.
        let bucket = &v["buckets"][format!("m{i}/default")];
        assert_eq!(
            (&bucket["requests"], &bucket["successes"]),
            (&json!(2), &json!(2)),
            "m{i}: {v}"
        );
    }
    let z = stats(&cli, "z");
    assert_eq!(z["lb"]["requests"], 0, "{z}");
    assert_eq!(z["buckets"]["z/zb"]["requests"], 0, "{z}");
}
