//! Every trace in `profiles-examples/traces/` replays as a snapshot of its timeline (STYLE 9),
//! deterministically, and its `--json` output follows SPEC §9.2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn traces() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles-examples/traces");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// Runs `llxprt simulate` with an empty LLXPRT_HOME (traces must be self-contained).
fn simulate(trace: &Path, extra: &[&str]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llxprt"))
        .arg("simulate")
        .arg(trace)
        .args(extra)
        .env("LLXPRT_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn every_trace_replays_as_its_snapshot() {
    let all = traces();
    assert!(
        all.len() >= 10,
        "expected the seed behaviours' traces, found {}",
        all.len()
    );
    for t in all {
        let name = t.file_stem().unwrap().to_string_lossy().into_owned();
        let (code, stdout, stderr) = simulate(&t, &[]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(stderr.is_empty(), "{name}: {stderr}");
        insta::assert_snapshot!(format!("trace_{name}"), stdout);
    }
}

#[test]
fn the_same_trace_prints_the_same_bytes() {
    for t in traces() {
        for flags in [&[][..], &["--json"][..]] {
            let a = simulate(&t, flags);
            let b = simulate(&t, flags);
            assert_eq!(a, b, "{}", t.display());
        }
    }
}

#[test]
fn json_lines_end_with_the_summary_of_spec_9_2() {
    for t in traces() {
        let (code, stdout, _) = simulate(&t, &["--json"]);
        assert_eq!(code, 0);
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (last, actions) = lines.split_last().unwrap();
        for a in actions {
            let o = a.as_object().unwrap();
            assert!(
                o["t_ms"].is_u64() && o["request"].is_u64() && o["action"].is_string(),
                "{a}"
            );
        }
        let summary = last["summary"].as_object().unwrap();
        let mut keys: Vec<&str> = summary.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["backends", "requests"]);
        for r in summary["requests"].as_array().unwrap() {
            let o = r.as_object().unwrap();
            let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let result = o["result"].as_str().unwrap();
            let mut want = vec![
                "attempts", "backend", "bucket", "end_ms", "id", "result", "start_ms",
            ];
            if result == "error" {
                want.push("error");
                want.sort_unstable();
            } else {
                assert_eq!(result, "ok");
            }
            assert_eq!(keys, want, "{r}");
            for a in o["attempts"].as_array().unwrap() {
                let class = a["class"].as_str().unwrap();
                let has_status = a.get("status").is_some();
                assert_eq!(
                    has_status,
                    !matches!(class, "network" | "timeout" | "interrupted"),
                    "{a}"
                );
            }
        }
        for (_, b) in summary["backends"].as_object().unwrap() {
            let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["circuit", "requests", "successes"]);
        }
    }
}

#[test]
fn enterprise_ha_shows_the_seed_chain_step_by_step() {
    let t =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles-examples/traces/enterprise-ha.json");
    let (_, stdout, _) = simulate(&t, &["--json"]);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sends: Vec<String> = lines
        .iter()
        .filter(|l| l["request"] == 1 && l["action"] == "send")
        .map(|l| {
            format!(
                "{}/{}",
                l["backend"].as_str().unwrap(),
                l["bucket"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        sends,
        [
            "claude-ha/team1@company.com",
            "claude-ha/team2@company.com",
            "claude-ha/personal@gmail.com",
            "openai-ha/enterprise@company.com"
        ]
    );
    let times: Vec<u64> = lines
        .iter()
        .filter(|l| l["request"] == 1 && l["action"] == "send")
        .map(|l| l["t_ms"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "virtual time advances: {times:?}"
    );
}

#[test]
fn set_overrides_the_trace_settings() {
    let t =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles-examples/traces/fast-failover.json");
    let (_, base, _) = simulate(&t, &["--json"]);
    let (_, patient, _) = simulate(
        &t,
        &[
            "--json",
            "--set",
            "failover_retry_count=3",
            "--set",
            "failover_retry_delay_ms=1000",
        ],
    );
    let retries = |s: &str| {
        s.lines()
            .filter(|l| l.contains("\"action\":\"retry\""))
            .count()
    };
    assert_eq!(retries(&base), 0);
    assert!(retries(&patient) >= 3, "{patient}");
    let (code, _, stderr) = simulate(&t, &["--set", "failover_retry_count=-1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("failover_retry_count"), "{stderr}");
}

/// SPEC §3: a backend's `base-url`, `auth-keyfile` and `auth-key` only come from the backend,
/// and a simulation sends nothing: `--set` of one runs the same timeline with a warning naming
/// it, instead of being taken without a word (`chat` refuses them with a load balancer).
#[test]
fn set_of_a_backend_identity_changes_nothing_and_says_so() {
    let t =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles-examples/traces/enterprise-ha.json");
    let (code, plain, stderr) = simulate(&t, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
    for (key, value) in [
        ("base-url", "http://127.0.0.1:1/v1"),
        ("auth-keyfile", "/nonexistent/key"),
        ("auth-key", "sk-test-simulated-0123456789abcdef"),
    ] {
        let (code, out, stderr) = simulate(&t, &["--set", &format!("{key}={value}")]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(out, plain, "--set {key} changed the timeline");
        assert_eq!(
            stderr,
            format!(
                "warning: --set {key} changes nothing in a simulation: a backend's base-url, auth-keyfile and auth-key come from its own profile (SPEC §3), and simulate sends no request\n"
            )
        );
    }
}

/// SPEC §9: "keyfiles, tokens and base URLs in the profiles are not read or checked there":
/// a trace's embedded profile whose `base-url` is not an http(s) URL (a recorded trace with the
/// URL blanked, an internal scheme) still replays, while `profile validate` of the same
/// profile still refuses it.
#[test]
fn a_directory_profile_s_base_url_and_keyfile_are_not_checked_either() {
    // SPEC §9: "keyfiles, tokens and base URLs in the profiles are not read or checked there",
    // for the profiles of the profiles directory as for those embedded in the trace: a load
    // balancer over a backend whose base URL is not http(s) and whose keyfile is missing.
    let home = tempfile::tempdir().unwrap();
    let profiles = home.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let odd = serde_json::json!({"version": 1, "provider": "openai", "model": "m",
        "ephemeralSettings": {"base-url": "unix:///run/llm.sock", "auth-keyfile": "/nonexistent/key"}});
    let plain = serde_json::json!({"version": 1, "provider": "openai", "model": "m2"});
    let lb = serde_json::json!({"version": 1, "type": "loadbalancer", "policy": "failover",
        "backends": ["odd", "plain"]});
    for (name, p) in [("odd", &odd), ("plain", &plain), ("lb", &lb)] {
        std::fs::write(profiles.join(format!("{name}.json")), p.to_string()).unwrap();
    }
    let trace = serde_json::json!({"version": 1, "profile": "lb", "requests": [{"at_ms": 0}],
        "outcomes": {"odd": {"*": [{"status": 503}]}}});
    let path = home.path().join("trace.json");
    std::fs::write(&path, trace.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llxprt"))
        .args(["simulate", "--json"])
        .arg(&path)
        .env("LLXPRT_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let request = &summary["summary"]["requests"][0];
    assert_eq!(request["result"], "ok", "{stdout}");
    assert_eq!(request["backend"], "plain", "{stdout}");
    // A live load still refuses the backend.
    let out = Command::new(env!("CARGO_BIN_EXE_llxprt"))
        .args(["chat", "--profile", "lb", "hi"])
        .env("LLXPRT_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn a_trace_profile_s_base_url_is_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let profile = serde_json::json!({"version": 1, "provider": "openai", "model": "m",
        "ephemeralSettings": {"base-url": "unix:///run/llm.sock", "auth-keyfile": "/nonexistent/key"}});
    let trace = serde_json::json!({"version": 1, "profile": "p", "profiles": {"p": profile},
        "requests": [{"at_ms": 0}], "outcomes": {"p": {"*": [{"status": 200}]}}});
    let path = dir.path().join("trace.json");
    std::fs::write(&path, trace.to_string()).unwrap();
    let (code, stdout, stderr) = simulate(&path, &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["summary"]["requests"][0]["result"], "ok",
        "{stdout}"
    );
    // Validation of the same profile is unchanged.
    let file = dir.path().join("p.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llxprt"))
        .args(["profile", "validate"])
        .arg(&file)
        .env("LLXPRT_HOME", dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("\"base-url\" must be an http:// or https:// URL")
            || String::from_utf8_lossy(&out.stderr)
                .contains("\"base-url\" must be an http:// or https:// URL"),
        "{out:?}"
    );
}
