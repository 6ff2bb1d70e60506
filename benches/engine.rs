//! `cargo bench --bench engine`: the engine's cost per event and `simulate`'s throughput.
//!
//! Prints medians over repeated runs (no timed assertions anywhere; SPEC targets are compared
//! by a reader): decide() per event on a 3-backend × 3-bucket load balancer, and a
//! 100 000-request simulation with human and JSON output, plus the engine state's size after
//! 10 000 and 100 000 requests (it must not grow per request); the state file's size and the
//! bytes its rewrites cost per request at 2 000 requests a second, with and without a TPM
//! threshold (SPEC §7.1); and the peak memory of the release binary's `simulate` on 10^6
//! requests (SPEC §7.1: at most ~100 bytes per request).

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llxprt::engine::plan::{BackendPlan, BucketPlan, FailoverSettings, Plan, Policy};
use llxprt::engine::{Class, EngineState, Event, Outcome};
use llxprt::profile::settings::Settings;
use llxprt::simulate::{self, trace::Trace};
use llxprt::state_file::to_keyed;

fn plan() -> Arc<Plan> {
    let backends = ["claude-ha", "openai-ha", "gemini-ha"]
        .iter()
        .map(|name| BackendPlan {
            name: (*name).to_string(),
            provider: (*name).to_string(),
            model: "m".into(),
            fingerprint: format!("{name}|m|u"),
            buckets: ["team1", "team2", "personal"]
                .iter()
                .map(|b| BucketPlan {
                    name: (*b).to_string(),
                    key: format!("{name}/{b}"),
                    oauth: false,
                    refreshable: false,
                })
                .collect(),
            context_limit: 200_000,
            accepts_prefill: false,
        })
        .collect();
    Arc::new(Plan {
        lb: "enterprise-ha".into(),
        policy: Policy::Roundrobin,
        backends,
        settings: FailoverSettings {
            breaker_threshold: Some(5),
            tpm_threshold: Some(10_000_000),
            bucket_cooldown_ms: 0,
            ..FailoverSettings::default()
        },
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One request: 429 on the first bucket, 503 then success on the second (4 events).
fn one_request(st: &mut EngineState, plan: &Arc<Plan>, id: u64, now: u64) -> usize {
    let mut n = 0;
    let mut step = |e: Event| {
        n += 1;
        black_box(st.step(black_box(&e)));
    };
    step(Event::RequestArrived {
        now,
        request: id,
        plan: plan.clone(),
    });
    step(Event::AttemptFinished {
        now: now + 10,
        request: id,
        outcome: Outcome {
            status: Some(429),
            ..Outcome::of(Class::RateLimit)
        },
    });
    step(Event::AttemptFinished {
        now: now + 20,
        request: id,
        outcome: Outcome {
            status: Some(503),
            ..Outcome::of(Class::Server)
        },
    });
    step(Event::AttemptFinished {
        now: now + 30,
        request: id,
        outcome: Outcome {
            tokens: 100,
            ..Outcome::of(Class::Success)
        },
    });
    n
}

fn bench_decide() {
    let plan = plan();
    let mut st = EngineState::default();
    let mut id = 0;
    let mut runs = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        let mut events = 0;
        for _ in 0..10_000 {
            id += 1;
            events += one_request(&mut st, &plan, id, id * 100);
        }
        runs.push(start.elapsed().as_nanos() as f64 / events as f64);
    }
    println!(
        "decide() per event (3 backends x 3 buckets): median {:.0} ns over 21 runs of 40 000 events (target <= 1000 ns)",
        median(runs)
    );
}

fn state_size_after(requests: u64) -> usize {
    let plan = plan();
    let mut st = EngineState::default();
    for id in 1..=requests {
        one_request(&mut st, &plan, id, id * 100);
    }
    assert!(st.requests.is_empty());
    serde_json::to_vec(&st).unwrap().len()
}

fn big_trace(n: u64) -> Trace {
    serde_json::from_value(serde_json::json!({
        "version": 1,
        "profile": "enterprise-ha",
        "profiles": {
            "claude-ha": {"version": 1, "provider": "anthropic", "model": "m", "auth": {"type": "oauth", "buckets": ["team1", "team2", "personal"]}},
            "openai-ha": {"version": 1, "provider": "openai", "model": "m", "auth": {"type": "apikey", "buckets": ["enterprise", "backup"]}},
            "gemini-ha": {"version": 1, "provider": "gemini", "model": "m"},
            "enterprise-ha": {"version": 1, "type": "loadbalancer", "policy": "failover", "backends": ["claude-ha", "openai-ha", "gemini-ha"],
                              "ephemeralSettings": {"lb_circuit_breaker_threshold": 3, "bucket_cooldown_ms": 5000}}
        },
        "requests": {"count": n, "interval_ms": 1000},
        "outcomes": {
            "claude-ha": {"team1": [{"status": 429, "times": 100_000_000}], "*": [{"status": 503, "times": 3}, {"status": 200}]},
            "openai-ha": {"*": [{"status": 200, "latency_ms": 300}]}
        }
    }))
    .unwrap()
}

fn bench_simulate() {
    let t = big_trace(100_000);
    let (plan, backends) =
        simulate::plan_for(&t, "enterprise-ha", &Settings::default(), None).unwrap();
    for json in [false, true] {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let mut sink = std::io::sink();
            let start = Instant::now();
            let s = simulate::run(&t, &plan, &backends, &mut sink, json).unwrap();
            runs.push(start.elapsed().as_secs_f64());
            assert_eq!(s.requests.len(), 100_000);
        }
        println!(
            "simulate 100 000 requests ({} output): median {:.3} s over 5 runs (target < 1 s)",
            if json { "JSON Lines" } else { "human" },
            median(runs)
        );
    }
}

/// The state file (keyed form, as written) after `n` one-attempt requests at 2 000 a second on
/// one backend with one bucket: its size, and the bytes written per request, each engine step
/// rewriting the whole file (SPEC §5.9).
fn state_file_at_2000_per_second(n: u64, tpm_threshold: Option<u64>) -> (usize, usize) {
    let plan = Arc::new(Plan {
        lb: "lb".into(),
        policy: Policy::Failover,
        backends: vec![BackendPlan {
            name: "a".into(),
            provider: "openai".into(),
            model: "m".into(),
            fingerprint: "0123456789abcdef".into(),
            buckets: vec![BucketPlan {
                name: "default".into(),
                key: "openai/default:0123456789abcdef".into(),
                oauth: false,
                refreshable: false,
            }],
            context_limit: 200_000,
            accepts_prefill: false,
        }],
        settings: FailoverSettings {
            tpm_threshold,
            ..FailoverSettings::default()
        },
    });
    let mut st = EngineState::default();
    let size = |st: &EngineState| {
        serde_json::to_string(&to_keyed(&st.shared))
            .expect("plain data")
            .len()
            + 1
    };
    let (mut written, mut counted) = (0, 0);
    for id in 1..=n {
        let now = 1_700_000_000_000 + id / 2;
        let measure = id > n - 1_000;
        st.step(&Event::RequestArrived {
            now,
            request: id,
            plan: plan.clone(),
        });
        if measure {
            written += size(&st);
        }
        // Requests end in the order they arrive: time never goes back.
        st.step(&Event::AttemptFinished {
            now,
            request: id,
            outcome: Outcome {
                status: Some(200),
                tokens: 1_000,
                latency_ms: 300,
                ..Outcome::of(Class::Success)
            },
        });
        if measure {
            written += size(&st);
            counted += 1;
        }
    }
    (size(&st), written / counted)
}

fn bench_state_file() {
    for (label, threshold) in [
        ("no TPM threshold", None),
        ("a TPM threshold", Some(u64::MAX)),
    ] {
        // After 65 s and after 130 s: past the first minute both, so the windows are full.
        let (a, per_a) = state_file_at_2000_per_second(130_000, threshold);
        let (b, per_b) = state_file_at_2000_per_second(260_000, threshold);
        println!(
            "state file at 2 000 requests/s, {label}: {a} bytes after 130 000 requests, {b} after 260 000; written per request (2 steps, each rewriting it): {per_a} / {per_b} bytes (SPEC §7.1: no growth with the rate without a threshold)"
        );
    }
}

/// Peak resident memory (KiB) of `bin simulate trace [--json]`, polled from `/proc` while it
/// runs (as `tests/simulate_memory.rs` does), and how long it took.
fn simulate_peak_rss(bin: &Path, home: &Path, trace: &Path, json: bool) -> (u64, f64) {
    let mut cmd = Command::new(bin);
    cmd.arg("simulate").arg(trace);
    if json {
        cmd.arg("--json");
    }
    let start = Instant::now();
    let mut child = cmd
        .env("LLXPRT_HOME", home)
        .stdout(Stdio::null())
        .spawn()
        .expect("run llxprt");
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().expect("wait").is_none() {
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (peak, start.elapsed().as_secs_f64())
}

fn bench_simulate_memory() {
    let dir = std::env::temp_dir().join(format!("llxprt-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let trace = dir.join("trace.json");
    let mut t = serde_json::to_value(big_trace(1_000_000)).unwrap();
    t["requests"]["interval_ms"] = 50.into();
    std::fs::write(&trace, t.to_string()).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_llxprt"));
    for json in [false, true] {
        let (kib, secs) = simulate_peak_rss(bin, &dir.join("home"), &trace, json);
        println!(
            "simulate 1 000 000 requests ({} output, release binary): peak RSS {:.1} MB, {secs:.1} s (target < 200 MB)",
            if json { "JSON Lines" } else { "human" },
            kib as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent; keep it quick then.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        let plan = plan();
        let mut st = EngineState::default();
        assert_eq!(one_request(&mut st, &plan, 1, 0), 4);
        return;
    }
    // The timed sections first: the state-file and memory sections churn megabytes of heap,
    // and a timing taken after them measures that too.
    bench_decide();
    bench_simulate();
    let (a, b) = (state_size_after(10_000), state_size_after(100_000));
    println!(
        "engine state after 10 000 requests: {a} bytes of JSON; after 100 000: {b} bytes (no per-request growth beyond counter digits)"
    );
    bench_state_file();
    bench_simulate_memory();
}
