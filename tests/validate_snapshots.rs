//! `llxprt profile validate` on broken profiles (SPEC §2.3): every file in
//! `tests/fixtures/broken/` is validated as text and as `--json`, and both outputs (exit code,
//! stdout, stderr) are snapshotted. The three layers — syntax, schema, semantics — each have
//! their fixtures (`syntax_*`, `schema_*`, `sem_*`); inputs that cannot be committed as files
//! (deep nesting, file modes, 50 MB) are generated here.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cli, Output};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken")
}

/// A home whose profiles directory holds the backends the load-balancer fixtures name.
fn home_with_backends() -> Cli {
    let cli = Cli::new();
    cli.write_profile_json(
        "claude-primary",
        &json!({"version": 1, "provider": "anthropic", "model": "claude-sonnet-4-5"}),
    );
    cli.write_profile_json(
        "openai-backup",
        &json!({"version": 1, "provider": "openai", "model": "gpt-4o"}),
    );
    cli.write_profile_json(
        "small-ctx",
        &json!({"version": 1, "provider": "ollama", "model": "qwen3:8b",
                "ephemeralSettings": {"context-limit": 32000}}),
    );
    cli.write_profile_json(
        "big-ctx",
        &json!({"version": 1, "provider": "anthropic", "model": "claude-opus-4-1",
                "ephemeralSettings": {"context-limit": 200_000}}),
    );
    cli.write_profile_json(
        "solo-retry",
        &json!({"version": 1, "provider": "openai", "model": "gpt-4o-mini",
                "ephemeralSettings": {"failover_retry_count": 3}}),
    );
    cli.write_profile_json(
        "some-lb",
        &json!({"version": 1, "type": "loadbalancer", "policy": "failover",
                "backends": ["claude-primary", "openai-backup"]}),
    );
    cli.write_profile("broken", "{\"version\": 1, \"provider\": \"openai\"}\n");
    cli
}

/// Checks what every diagnostic must carry (SPEC §2.3): a `--> file:line:col` in the text
/// output and, in the JSON output, the documented keys and a `help`.
fn check_shape(file: &str, human: &Output, json: &Output) {
    let lines: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(
        !lines.is_empty(),
        "{file}: no diagnostics\n{}",
        json.render()
    );
    for d in &lines {
        for key in ["file", "line", "column", "pointer", "severity", "message"] {
            assert!(d.get(key).is_some(), "{file}: {key} missing in {d}");
        }
        assert!(
            d["help"].as_str().is_some_and(|h| !h.is_empty()),
            "{file}: every diagnostic has a help: {d}"
        );
        assert!(d["line"].as_u64().unwrap() >= 1 && d["column"].as_u64().unwrap() >= 1);
        let place = format!(
            "--> {}:{}:{}",
            d["file"].as_str().unwrap(),
            d["line"],
            d["column"]
        );
        assert!(
            human.stdout.contains(&place),
            "{file}: text output lacks {place}\n{}",
            human.render()
        );
    }
    assert_eq!(
        human.stdout.matches("= help: ").count(),
        lines.len(),
        "{file}: one help line per diagnostic\n{}",
        human.render()
    );
    assert_eq!(
        human.code, json.code,
        "{file}: --json changes the exit code"
    );
    for out in [human, json] {
        assert!(
            !out.all().contains("not valid under any of the schemas"),
            "{file}: an unexplained union failure\n{}",
            out.render()
        );
        assert!(!out.all().contains("panicked"), "{}", out.render());
    }
}

/// Validates one committed fixture and snapshots both outputs.
fn check_fixture(stem: &str) {
    let cli = home_with_backends();
    let file = format!("{stem}.json");
    let human = cli
        .cmd(&["profile", "validate", &file])
        .cwd(fixtures_dir())
        .run();
    let json = cli
        .cmd(&["profile", "validate", "--json", &file])
        .cwd(fixtures_dir())
        .run();
    check_shape(&file, &human, &json);
    insta::assert_snapshot!(stem.to_string(), human.render());
    insta::assert_snapshot!(format!("{stem}__json"), json.render());
}

macro_rules! broken {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_fixture(stringify!($name));
            }
        )*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

broken! {
    // Layer 1: JSON syntax.
    syntax_empty,
    syntax_trailing_comma,
    syntax_unterminated_string,
    syntax_top_level_array,
    syntax_top_level_number,
    syntax_unquoted_key,
    syntax_missing_comma,
    syntax_comment,
    syntax_trailing_characters,
    syntax_column_after_non_ascii,
    syntax_truncated,
    syntax_invalid_utf8,
    // Layer 2: the schema.
    schema_wrong_type_setting,
    schema_retry_count_out_of_range,
    schema_bad_policy,
    schema_bad_streaming,
    schema_missing_provider,
    schema_missing_version,
    schema_lb_missing_policy,
    schema_auth_type_invalid,
    schema_auth_unknown_key,
    schema_negative_number,
    schema_status_code_700,
    schema_settings_not_object,
    schema_version_string,
    schema_backends_not_array,
    schema_model_params_array,
    schema_header_not_string,
    schema_empty_buckets,
    schema_type_unknown,
    // Layer 3: semantics.
    sem_version_2,
    sem_unknown_provider,
    sem_unknown_provider_far,
    sem_misspelled_setting,
    sem_unknown_top_level_key,
    sem_backend_missing,
    sem_backend_is_loadbalancer,
    sem_backend_invalid,
    sem_duplicate_backends,
    sem_one_backend,
    sem_lists_itself,
    sem_invalid_backend_name,
    sem_invalid_bucket_name,
    sem_reserved_bucket_login,
    sem_duplicate_bucket,
    sem_raw_auth_key,
    sem_secret_in_bad_value,
    sem_lb_setting_on_model,
    sem_base_url_on_loadbalancer,
    sem_tpm_threshold,
    sem_profiles_synonym,
    sem_backends_and_profiles,
    sem_type_standard,
    sem_context_limits_differ,
    sem_backend_sets_failover_settings,
    sem_other_tool_loadbalancer,
    sem_synonym_timeout_ms,
    sem_keyfile_missing,
    sem_base_url_not_http,
    sem_empty_model,
    sem_duplicate_status_code,
    // All three layers in one file, reported together.
    mixed_all_layers,
}

#[test]
fn every_fixture_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = LISTED.iter().map(|s| (*s).to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// SPEC §7: a secret in a broken profile is never printed, not even in a snippet.
#[test]
fn secrets_never_appear_in_diagnostics() {
    let cli = home_with_backends();
    for stem in ["sem_raw_auth_key", "sem_secret_in_bad_value"] {
        let file = format!("{stem}.json");
        for args in [
            vec!["profile", "validate", &file],
            vec!["profile", "validate", "--json", &file],
        ] {
            let out = cli.cmd(&args).cwd(fixtures_dir()).run();
            for secret in ["SECRET-0123456789", "98765432109876543210"] {
                assert!(!out.all().contains(secret), "{}", out.render());
            }
        }
    }
}

#[test]
fn nesting_100000_levels_deep_is_an_error_not_a_crash() {
    let cli = Cli::new();
    let depth = 100_000;
    let text = format!(
        "{{\"version\": 1, \"provider\": \"openai\", \"model\": \"m\", \"modelParams\": {}1{}}}\n",
        "{\"a\": ".repeat(depth),
        "}".repeat(depth)
    );
    std::fs::write(cli.home().join("deep.json"), text).unwrap();
    let human = cli.run(&["profile", "validate", "deep.json"]);
    let json = cli.run(&["profile", "validate", "--json", "deep.json"]);
    check_shape("deep.json", &human, &json);
    insta::assert_snapshot!("generated_deep_nesting", human.render());
    insta::assert_snapshot!("generated_deep_nesting__json", json.render());
}

#[cfg(unix)]
#[test]
fn world_readable_keyfile_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    let key = cli.user_home().join(".openai_key");
    std::fs::write(&key, "sk-test-not-a-real-key-000000\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let profile = json!({"version": 1, "provider": "openai", "model": "gpt-4o",
        "ephemeralSettings": {"auth-keyfile": "~/.openai_key"}});
    let text = serde_json::to_string_pretty(&profile).unwrap() + "\n";
    std::fs::write(cli.home().join("keyfile.json"), text).unwrap();
    let human = cli.run(&["profile", "validate", "keyfile.json"]);
    let json = cli.run(&["profile", "validate", "--json", "keyfile.json"]);
    check_shape("keyfile.json", &human, &json);
    insta::assert_snapshot!("generated_keyfile_world_readable", human.render());
    insta::assert_snapshot!("generated_keyfile_world_readable__json", json.render());
    assert!(!human.all().contains("sk-test-not-a-real-key"));

    // The same file made private: no diagnostic at all.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let private = cli.run(&["profile", "validate", "--json", "keyfile.json"]);
    assert_eq!((private.code, private.stdout.as_str()), (0, ""));
}

#[test]
fn strict_turns_a_warning_only_file_into_a_failure() {
    let cli = home_with_backends();
    let file = "sem_tpm_threshold.json";
    let lenient = cli
        .cmd(&["profile", "validate", file])
        .cwd(fixtures_dir())
        .run();
    assert_eq!(lenient.code, 0, "{}", lenient.render());
    assert!(lenient.stdout.contains("warning: "), "{}", lenient.render());
    let strict = cli
        .cmd(&["profile", "validate", "--strict", file])
        .cwd(fixtures_dir())
        .run();
    assert_eq!(strict.code, 1, "{}", strict.render());
    insta::assert_snapshot!("strict_warning_only", strict.render());
    let strict_json = cli
        .cmd(&["profile", "validate", "--strict", "--json", file])
        .cwd(fixtures_dir())
        .run();
    assert_eq!(strict_json.code, 1, "{}", strict_json.render());
    // Notes stay notes under --strict: a notes-only file still passes.
    let notes = cli
        .cmd(&["profile", "validate", "--strict", "sem_type_standard.json"])
        .cwd(fixtures_dir())
        .run();
    assert_eq!(notes.code, 0, "{}", notes.render());
}

#[test]
fn every_example_profile_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles-examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    // The fixture's HOME has no keyfiles: their absence is a warning, never an error.
    let cli = Cli::new();
    let mut args = vec!["profile".to_string(), "validate".to_string()];
    args.extend(files.iter().cloned());
    let out = cli.cmd(&args).cwd(&dir).run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr
            .contains(&format!("{} files: 0 errors", files.len())),
        "{}",
        out.render()
    );
    args.insert(2, "--json".into());
    let json = cli.cmd(&args).cwd(&dir).run();
    assert_eq!(json.code, 0, "{}", json.render());
    for line in json.stdout.lines() {
        let d: Value = serde_json::from_str(line).unwrap();
        assert_ne!(d["severity"], "error", "{line}");
    }
}

#[test]
fn a_50_mb_file_is_refused_quickly() {
    let cli = Cli::new();
    let path = cli.home().join("huge.json");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"{\"version\": 1, \"provider\": \"openai\", \"model\": \"")
            .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..50 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n").unwrap();
    }
    let start = Instant::now();
    let human = cli.run(&["profile", "validate", "huge.json"]);
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?} to refuse a 50 MB file"
    );
    let json = cli.run(&["profile", "validate", "--json", "huge.json"]);
    check_shape("huge.json", &human, &json);
    assert_eq!(human.code, 1);
    insta::assert_snapshot!("generated_50_mb", human.render());
    insta::assert_snapshot!("generated_50_mb__json", json.render());
}
