//! SPEC §7.1 "`simulate`'s memory grows by at most ~100 bytes per request of the trace": the
//! binary replays a small and a large counted trace, human and `--json`, and its peak resident
//! memory (VmHWM, polled from `/proc` while it runs) may grow by no more than 100 bytes per
//! extra request. The mechanism is tested here on the debug binary with generous bounds; `cargo
//! bench --bench engine` prints the release figure for 10^6 requests.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A counted trace of `n` requests: a load balancer whose first backend fails now and then,
/// so requests carry a few attempts each.
fn write_trace(dir: &Path, n: u64) -> std::path::PathBuf {
    let trace = serde_json::json!({
        "version": 1,
        "profile": "lb",
        "profiles": {
            "a": {"version": 1, "provider": "anthropic", "model": "m", "auth": {"type": "oauth", "buckets": ["team1", "team2"]}},
            "b": {"version": 1, "provider": "openai", "model": "m"},
            "lb": {"version": 1, "type": "loadbalancer", "policy": "roundrobin", "backends": ["a", "b"],
                   "ephemeralSettings": {"lb_circuit_breaker_threshold": 3, "bucket_cooldown_ms": 500}}
        },
        "requests": {"count": n, "interval_ms": 50},
        "outcomes": {
            "a": {"team1": [{"status": 429, "times": 1_000_000_000}], "*": [{"status": 503, "times": 3}, {"status": 200, "latency_ms": 20}]},
            "b": {"*": [{"status": 200, "latency_ms": 30}]}
        }
    });
    let path = dir.join(format!("trace-{n}.json"));
    std::fs::write(&path, trace.to_string()).expect("write the trace");
    path
}

/// Peak resident memory in KiB of `llxprt simulate TRACE [--json]`, its output thrown away.
/// Polled from `/proc/<pid>/status` while it runs (gone once it exits), so it can only read
/// low by what the last few milliseconds added.
pub fn peak_rss_kib(bin: &Path, home: &Path, trace: &Path, json: bool) -> u64 {
    let mut cmd = Command::new(bin);
    cmd.arg("simulate").arg(trace);
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .env("LLXPRT_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run llxprt");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for llxprt") {
            assert!(status.success(), "llxprt simulate failed: {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_mins(10),
            "simulate ran for ten minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    peak
}

#[test]
fn simulate_memory_does_not_grow_with_the_trace() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("a home");
    let bin = Path::new(env!("CARGO_BIN_EXE_llxprt"));
    let (small_n, large_n) = (1_000u64, 100_000u64);
    let small = write_trace(dir.path(), small_n);
    let large = write_trace(dir.path(), large_n);
    for json in [false, true] {
        let base = peak_rss_kib(bin, &home, &small, json);
        let peak = peak_rss_kib(bin, &home, &large, json);
        let per_request = (peak.saturating_sub(base) * 1024) / (large_n - small_n);
        eprintln!(
            "simulate{}: peak RSS {base} KiB for {small_n} requests, {peak} KiB for {large_n} ({per_request} bytes per extra request)",
            if json { " --json" } else { "" }
        );
        assert!(
            per_request < 100,
            "SPEC §7.1: simulate{} grew by {per_request} bytes per request ({base} KiB → {peak} KiB)",
            if json { " --json" } else { "" }
        );
        assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
    }
}
