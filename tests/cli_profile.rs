//! Every `llxprt profile` subcommand and its error paths, end to end through the CLI fixture
//! (SPEC §1, §8.1, §8.2): exit code, stdout and stderr snapshotted together.

mod support;

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};
use support::Cli;

const SECRET: &str = "sk-live-SECRET-0123456789abcdef";

/// Every file under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// SPEC §1: pretty JSON, 2-space indent, a trailing newline, mode 0600.
fn assert_canonical_file(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let _: Value = serde_json::from_str(&text).unwrap();
    assert!(text.starts_with("{\n") && text.ends_with("\n}\n"), "{text}");
    // One member or element per line, each nesting level indented by two spaces.
    let mut depth = 0usize;
    for line in text.lines() {
        let t = line.trim_start_matches(' ');
        if t.starts_with('}') || t.starts_with(']') {
            depth -= 1;
        }
        assert_eq!(
            line.len() - t.len(),
            2 * depth,
            "bad indent: {line:?}\n{text}"
        );
        if t.ends_with('{') || t.ends_with('[') {
            depth += 1;
        }
    }
    assert_eq!(depth, 0, "{text}");
    assert!(text.contains("\n  \"version\": 1,\n"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    }
}

/// A home with two model profiles and a load balancer over them.
fn home_with_lb() -> Cli {
    let cli = Cli::new();
    cli.write_profile_json(
        "claude",
        &json!({"version": 1, "provider": "anthropic", "model": "claude-sonnet-4-5"}),
    );
    cli.write_profile_json(
        "gpt",
        &json!({"version": 1, "provider": "openai", "model": "gpt-4o"}),
    );
    cli.write_profile_json(
        "ha",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover",
                "backends": ["claude", "gpt"]}),
    );
    cli
}

// ---- save model ----

#[test]
fn save_model_with_every_option() {
    let cli = Cli::new();
    let out = cli.run(&[
        "profile",
        "save",
        "model",
        "claude-work",
        "--provider",
        "anthropic",
        "--model",
        "claude-sonnet-4-5",
        "--base-url",
        "https://api.anthropic.com",
        "--keyfile",
        "~/.anthropic_key",
        "--set",
        "context-limit=200000",
        "--set",
        "streaming=disabled",
        "--set",
        "reasoning.enabled=true",
        "--param",
        "temperature=0.7",
        "--param",
        "max_tokens=4096",
        "work",
        "personal",
    ]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!(out.render());
    let path = cli.profile_path("claude-work");
    assert_canonical_file(&path);
    insta::assert_snapshot!(
        "save_model_with_every_option_file",
        cli.read_profile("claude-work")
    );
    // What was saved validates cleanly apart from the missing keyfile (the fixture's HOME).
    let v = cli.run(&["profile", "validate", "--json", path.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{}", v.render());
    assert_eq!(v.stdout.lines().count(), 1, "{}", v.render());
    assert!(v.stdout.contains("does not exist"), "{}", v.render());
}

#[test]
fn save_model_oauth_with_and_without_buckets() {
    let cli = Cli::new();
    let t = cli.transcript(&[
        &[
            "profile",
            "save",
            "model",
            "gem",
            "--provider",
            "gemini",
            "--model",
            "gemini-2.5-pro",
            "--oauth",
        ],
        &[
            "profile",
            "save",
            "model",
            "qwen",
            "--provider",
            "qwen",
            "--model",
            "qwen3-coder-plus",
            "--oauth",
            "alice@example.com",
            "bob",
        ],
    ]);
    insta::assert_snapshot!(t);
    let gem: Value = serde_json::from_str(&cli.read_profile("gem")).unwrap();
    assert_eq!(gem["auth"], json!({"type": "oauth"}));
    let qwen: Value = serde_json::from_str(&cli.read_profile("qwen")).unwrap();
    assert_eq!(
        qwen["auth"],
        json!({"type": "oauth", "buckets": ["alice@example.com", "bob"]})
    );
    assert_canonical_file(&cli.profile_path("qwen"));
}

#[test]
fn save_model_refuses_invalid_names_before_touching_the_filesystem() {
    let cli = Cli::new();
    let mut t = String::new();
    for name in ["../evil", "a/b", "a\\b", "none", " padded", ".."] {
        let out = cli.run(&[
            "profile",
            "save",
            "model",
            name,
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
        ]);
        assert_eq!(out.code, 2, "{}", out.render());
        assert!(
            out.stderr
                .contains(&format!("invalid profile name \"{name}\"")),
            "{}",
            out.render()
        );
        let _ = writeln!(
            t,
            "$ llxprt profile save model {name:?} …\n{}",
            out.render()
        );
    }
    insta::assert_snapshot!(t);
    // Nothing was created: not the profiles directory, not a file beside or above it.
    assert_eq!(tree(cli.home()), Vec::<String>::new());
    assert!(!cli.home().parent().unwrap().join("evil.json").exists());
    // The other commands refuse them the same way.
    for args in [
        &["profile", "show", "../evil"][..],
        &["profile", "delete", "../evil"],
        &["profile", "set-default", "a/b"],
        &[
            "profile",
            "save",
            "loadbalancer",
            "../lb",
            "failover",
            "x",
            "y",
        ],
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "failover",
            "x",
            "../y",
        ],
    ] {
        let out = cli.run(args);
        assert_eq!(out.code, 2, "{args:?}\n{}", out.render());
        assert!(
            out.stderr.contains("invalid profile name"),
            "{}",
            out.render()
        );
    }
    assert_eq!(tree(cli.home()), Vec::<String>::new());
}

#[test]
fn save_model_argument_errors_are_usage_errors() {
    let cli = Cli::new();
    let t = cli.transcript(&[
        &[
            "profile",
            "save",
            "model",
            "x",
            "--provider",
            "openaii",
            "--model",
            "gpt-4o",
        ],
        &[
            "profile",
            "save",
            "model",
            "x",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--set",
            "failover_retry_cont=2",
        ],
        &[
            "profile",
            "save",
            "model",
            "x",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--set",
            "streaming=on",
        ],
        &[
            "profile",
            "save",
            "model",
            "x",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--set",
            "noequals",
        ],
        &[
            "profile",
            "save",
            "model",
            "x",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--base-url",
            "api.openai.com",
        ],
        &[
            "profile",
            "save",
            "model",
            "x",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "login",
        ],
        &[
            "profile",
            "save",
            "model",
            "x",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--param",
            "temperature",
        ],
        &["profile", "save", "model", "x", "--provider", "openai"],
    ]);
    insta::assert_snapshot!(t);
    assert_eq!(t.matches("exit: 2\n").count(), 8, "{t}");
    assert!(t.contains("did you mean \"openai\"?"), "{t}");
    assert!(t.contains("did you mean \"failover_retry_count\"?"), "{t}");
    assert!(!cli.profile_path("x").exists());
}

/// `llxprt profile save model NAME --provider openai --model MODEL [--force]`.
fn save_openai_model(cli: &Cli, name: &str, model: &str, force: bool) -> support::Output {
    let mut args = vec![
        "profile",
        "save",
        "model",
        name,
        "--provider",
        "openai",
        "--model",
        model,
    ];
    if force {
        args.push("--force");
    }
    cli.run(&args)
}

#[test]
fn save_model_over_an_existing_profile_needs_force() {
    let cli = Cli::new();
    let save = |name: &str, model: &str, force: bool| save_openai_model(&cli, name, model, force);
    assert_eq!(save("main", "gpt-4o", false).code, 0);
    let before = cli.read_profile("main");

    let refused = save("main", "gpt-4.1", false);
    assert_eq!(refused.code, 1, "{}", refused.render());
    assert_eq!(
        cli.read_profile("main"),
        before,
        "a refused save changed the file"
    );
    let clash = save("MAIN", "gpt-4.1", false);
    assert_eq!(clash.code, 1, "{}", clash.render());
    assert!(!cli.profile_path("MAIN").exists());

    let forced = save("main", "gpt-4.1", true);
    assert_eq!(forced.code, 0, "{}", forced.render());
    assert!(cli.read_profile("main").contains("gpt-4.1"));
    // With --force, a name differing only in case replaces that profile, under its name.
    let forced_clash = save("Main", "o3", true);
    assert_eq!(forced_clash.code, 0, "{}", forced_clash.render());
    assert!(cli.read_profile("main").contains("\"o3\""));
    let names: Vec<String> = tree(&cli.profiles_dir());
    assert_eq!(names, vec!["main.json"]);
    assert_canonical_file(&cli.profile_path("main"));

    insta::assert_snapshot!(format!(
        "{}\n{}\n{}\n{}",
        refused.render(),
        clash.render(),
        forced.render(),
        forced_clash.render()
    ));
}

/// SPEC §1: "not equal, ignoring case, to an existing profile's name" holds beyond ASCII: `É`
/// clashes with `é` (one file on a case-insensitive filesystem), and `ΣΟΦΙΑ` with `σοφια`.
#[test]
fn a_name_equal_ignoring_case_beyond_ascii_needs_force() {
    let cli = Cli::new();
    let save = |name: &str, model: &str, force: bool| save_openai_model(&cli, name, model, force);
    for (existing, clash) in [("é", "É"), ("σοφια", "ΣΟΦΙΑ")] {
        assert_eq!(save(existing, "first", false).code, 0);
        let refused = save(clash, "second", false);
        assert_eq!(refused.code, 1, "{}", refused.render());
        assert!(
            refused.stderr.contains(&format!(
                "profile \"{existing}\" already exists; add --force"
            )),
            "{}",
            refused.render()
        );
        assert!(!cli.profile_path(clash).exists());
        // --force replaces that profile, under its name; loading by either spelling finds it.
        let forced = save(clash, "second", true);
        assert_eq!(forced.code, 0, "{}", forced.render());
        assert!(cli.read_profile(existing).contains("\"second\""));
        assert!(!cli.profile_path(clash).exists());
        let shown = cli.run(&["profile", "show", clash]);
        assert_eq!(shown.code, 0, "{}", shown.render());
        assert!(shown.stdout.contains("\"second\""), "{}", shown.render());
    }
    assert_eq!(tree(&cli.profiles_dir()).len(), 2);
}

// ---- save loadbalancer ----

#[test]
fn save_loadbalancer_and_its_refusals() {
    let cli = home_with_lb();
    let t = cli.transcript(&[
        // Fewer than 2 backends: clap refuses it (usage, 2).
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "failover",
            "claude",
        ],
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "random",
            "claude",
            "gpt",
        ],
        // Arguments wrong by themselves: usage, 2.
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "failover",
            "claude",
            "lb",
        ],
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "failover",
            "claude",
            "Claude",
        ],
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "failover",
            "claude",
            "gpt",
            "--set",
            "failover_retry_count=101",
        ],
        // Backends the store cannot supply: refused, 1.
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "failover",
            "claude",
            "clade2",
        ],
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "failover",
            "claude",
            "ha",
        ],
        // And one that works.
        &[
            "profile",
            "save",
            "loadbalancer",
            "lb",
            "roundrobin",
            "gpt",
            "claude",
            "--set",
            "failover_retry_count=2",
            "--set",
            "failover_status_codes=[429,503]",
        ],
    ]);
    insta::assert_snapshot!(t);
    let codes: Vec<&str> = t.lines().filter_map(|l| l.strip_prefix("exit: ")).collect();
    assert_eq!(codes, ["2", "2", "2", "2", "2", "1", "1", "0"], "{t}");
    let path = cli.profile_path("lb");
    assert_canonical_file(&path);
    insta::assert_snapshot!("save_loadbalancer_file", cli.read_profile("lb"));
    let list = cli.run(&["profile", "list"]);
    assert!(
        list.stdout
            .contains("lb      loadbalancer  roundrobin  gpt, claude"),
        "{}",
        list.render()
    );
}

// ---- list ----

#[test]
fn list_text_and_json() {
    let cli = Cli::new();
    let empty = cli.run(&["profile", "list"]);
    assert_eq!((empty.code, empty.stdout.as_str()), (0, ""));
    let empty_json = cli.run(&["profile", "list", "--json"]);
    assert_eq!(empty_json.stdout.trim(), "[]");

    let cli = home_with_lb();
    cli.write_profile("broken", "{\"version\": 1, \"provider\": \"openai\",}\n");
    cli.write_profile_json(
        "old-version",
        &json!({"version": 2, "provider": "openai", "model": "gpt-4o"}),
    );
    // Temporary and dot files, and files that are not profiles, are not listed.
    cli.write_profile(".hidden", "{}");
    cli.write_profile(".llxprt-tmp-abc123", "{");
    std::fs::write(cli.profiles_dir().join(".llxprt-tmp-XYZ"), "{").unwrap();
    std::fs::write(cli.profiles_dir().join("notes.txt"), "hello").unwrap();
    std::fs::create_dir(cli.profiles_dir().join("subdir.json")).unwrap();
    assert_eq!(cli.run(&["profile", "set-default", "gpt"]).code, 0);

    let text = cli.run(&["profile", "list"]);
    let json = cli.run(&["profile", "list", "--json"]);
    insta::assert_snapshot!(format!("{}\n{}", empty.render(), text.render()));
    insta::assert_snapshot!("list_json", json.render());
    assert_eq!(text.code, 0);
    let default_lines: Vec<&str> = text.stdout.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(default_lines.len(), 1, "{}", text.render());
    assert!(default_lines[0].starts_with("* gpt "), "{}", text.render());
    assert!(
        text.stdout.contains("(invalid: ") && text.stdout.contains("broken"),
        "{}",
        text.render()
    );
    assert!(!text.all().contains("hidden") && !text.all().contains("tmp"));
    assert!(!text.all().contains("notes") && !text.all().contains("subdir"));
    let rows: Vec<Value> = serde_json::from_str(&json.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["broken", "claude", "gpt", "ha", "old-version"]);
    assert_eq!(
        rows.iter().filter(|r| r["default"] == true).count(),
        1,
        "{rows:?}"
    );
    assert!(rows[0]["invalid"].is_string(), "{rows:?}");
}

// ---- show ----

#[test]
fn show_redacts_secrets_everywhere() {
    let cli = Cli::new();
    cli.write_profile_json(
        "keyed",
        &json!({"version": 1, "provider": "openai", "model": "gpt-4o",
                "ephemeralSettings": {
                    "auth-key": SECRET,
                    "custom-headers": {"Authorization": format!("Bearer {SECRET}"),
                                       "X-Trace": "visible"}}}),
    );
    cli.write_profile_json(
        "other",
        &json!({"version": 1, "provider": "anthropic", "model": "claude-sonnet-4-5"}),
    );
    let saved = cli.run(&[
        "profile",
        "save",
        "model",
        "via-cli",
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
        "--set",
        &format!("auth-key={SECRET}"),
        "--set",
        &format!("custom-headers={{\"X-Api-Key\": \"{SECRET}\"}}"),
    ]);
    assert_eq!(saved.code, 0, "{}", saved.render());
    let lb = cli.run(&[
        "profile",
        "save",
        "loadbalancer",
        "lb",
        "failover",
        "keyed",
        "other",
    ]);
    assert_eq!(lb.code, 0, "{}", lb.render());
    let show = cli.run(&["profile", "show", "keyed"]);
    let show_lb = cli.run(&["profile", "show", "lb"]);
    insta::assert_snapshot!(show.render());
    insta::assert_snapshot!("show_loadbalancer", show_lb.render());
    // SPEC §7.1: every custom header's value is a secret, whatever its name; the name stays.
    assert!(
        show.stdout.contains("X-Trace") && !show.stdout.contains("visible"),
        "a header's name stays, its value goes"
    );

    let keyed_path = cli.profile_path("keyed");
    let mut outputs = vec![saved, lb, show, show_lb];
    for args in [
        &["profile", "show", "via-cli"][..],
        &["profile", "list"],
        &["profile", "list", "--json"],
        &["profile", "validate", keyed_path.to_str().unwrap()],
        &[
            "profile",
            "validate",
            "--json",
            keyed_path.to_str().unwrap(),
        ],
        &["profile", "delete", "keyed"],
    ] {
        outputs.push(cli.run(args));
    }
    // A profile that does not even parse, holding the key, shown and listed.
    cli.write_profile(
        "broken-keyed",
        &format!("{{\n  \"version\": 1,\n  \"ephemeralSettings\": {{\"auth-key\": \"{SECRET}\"\n"),
    );
    for args in [
        &["profile", "show", "broken-keyed"][..],
        &["profile", "list"],
        &[
            "profile",
            "validate",
            cli.profile_path("broken-keyed").to_str().unwrap(),
        ],
    ] {
        outputs.push(cli.run(args));
    }
    for out in &outputs {
        assert!(
            !out.all().contains("SECRET-0123456789"),
            "a secret was printed:\n{}",
            out.render()
        );
    }
}

#[test]
fn show_errors() {
    let cli = Cli::new();
    cli.write_profile("broken", "{\"version\": 1,, }\n");
    cli.write_profile_json(
        "lonely-lb",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover",
                "backends": ["gone-a", "gone-b"]}),
    );
    let t = cli.transcript(&[
        &["profile", "show", "nope"],
        &["profile", "show", "broken"],
        &["profile", "show", "lonely-lb"],
    ]);
    insta::assert_snapshot!(t);
    let codes: Vec<&str> = t.lines().filter_map(|l| l.strip_prefix("exit: ")).collect();
    assert_eq!(codes, ["3", "3", "3"], "{t}");
}

// ---- delete ----

#[test]
fn delete_is_refused_while_referenced_and_clears_the_default() {
    let cli = home_with_lb();
    cli.write_profile_json(
        "ha2",
        &json!({"version": 1, "type": "loadbalancer", "policy": "roundrobin",
                "profiles": ["gpt", "claude"]}),
    );
    assert_eq!(cli.run(&["profile", "set-default", "gpt"]).code, 0);
    let t = cli.transcript(&[
        &["profile", "delete", "GPT"],
        &["profile", "delete", "nope"],
        &["profile", "delete", "gpt", "--force"],
        &["profile", "list"],
        &["profile", "delete", "ha"],
        &["profile", "list"],
    ]);
    insta::assert_snapshot!(t);
    let codes: Vec<&str> = t.lines().filter_map(|l| l.strip_prefix("exit: ")).collect();
    assert_eq!(codes, ["1", "3", "0", "0", "0", "0"], "{t}");
    assert!(
        t.contains("\"ha\", \"ha2\""),
        "both referrers are named:\n{t}"
    );
    assert!(!cli.profile_path("gpt").exists());
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(cli.home().join("settings.json")).unwrap())
            .unwrap();
    assert_eq!(settings.get("defaultProfile"), None, "{settings}");
}

/// Regression: a load balancer that no longer loads (one backend deleted with `--force`)
/// was not counted as a referrer, so its other backend could be deleted without `--force`.
#[test]
fn delete_counts_referrers_that_no_longer_load() {
    let cli = home_with_lb();
    assert_eq!(cli.run(&["profile", "delete", "gpt", "--force"]).code, 0);
    let out = cli.run(&["profile", "delete", "claude"]);
    assert_eq!(out.code, 1, "{}", out.render());
    assert!(out.stderr.contains("\"ha\""), "{}", out.render());
    assert!(cli.profile_path("claude").exists());
    insta::assert_snapshot!(out.render());
}

// ---- set-default ----

#[test]
fn set_default_name_or_none() {
    let cli = home_with_lb();
    let t = cli.transcript(&[
        &["profile", "set-default", "missing"],
        &["profile", "set-default", "a/b"],
        &["profile", "set-default", "CLAUDE"],
        &["profile", "list"],
        &["profile", "set-default", "None"],
        &["profile", "list"],
    ]);
    insta::assert_snapshot!(t);
    let codes: Vec<&str> = t.lines().filter_map(|l| l.strip_prefix("exit: ")).collect();
    assert_eq!(codes, ["3", "2", "0", "0", "0", "0"], "{t}");
    let settings_path = cli.home().join("settings.json");
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    assert_eq!(settings, json!({}));

    // Other keys of settings.json survive; the stored name is the profile's own spelling.
    std::fs::write(&settings_path, "{\"theme\": \"dark\"}\n").unwrap();
    assert_eq!(cli.run(&["profile", "set-default", "Gpt"]).code, 0);
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    assert_eq!(settings, json!({"theme": "dark", "defaultProfile": "gpt"}));
}

/// SPEC §8.1: `profile list` is aligned and fitted to the terminal's width (here 56 columns
/// through the debug build's `LLXPRT_TEST_COLUMNS`): a long backend list or reason wraps inside
/// its column instead of running past the edge.
#[test]
fn list_fits_a_narrow_terminal() {
    let cli = home_with_lb();
    for (name, model) in [
        ("gemini-flash", "gemini-2.5-flash"),
        ("mistral", "mistral-large"),
    ] {
        cli.write_profile_json(
            name,
            &json!({"version": 1, "provider": "openai", "model": model}),
        );
    }
    cli.write_profile_json(
        "many",
        &json!({"version": 1, "type": "loadbalancer", "policy": "roundrobin",
                "backends": ["claude", "gpt", "gemini-flash", "mistral"]}),
    );
    cli.write_profile("broken", "{\"version\": 1, \"provider\": \"openai\",}\n");
    let out = cli
        .cmd(&["profile", "list"])
        .env("LLXPRT_TEST_COLUMNS", "56")
        .run();
    assert!(
        out.stdout.lines().all(|l| l.chars().count() <= 56),
        "{}",
        out.stdout
    );
    insta::assert_snapshot!(out.render());
}
