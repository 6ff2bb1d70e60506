#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (what `cargo fuzz build -s
# none` does, without installing cargo-fuzz) and runs each for SECONDS (default 60) from the
# committed seeds. A crash leaves its input in fuzz/artifacts/<target>/ and fails the run;
# such an input becomes a regression test in tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-60}"
TOOLCHAIN=""
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then TOOLCHAIN="+nightly"; fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation off build scripts (they run on the host).
# Not --locked: fuzz/Cargo.lock follows the main crate's dependencies, which change.
HOST="$(rustc $TOOLCHAIN -vV | sed -n 's/^host: //p')"
cargo $TOOLCHAIN build --release --bins --target "$HOST"
for t in profile trace sse bodies decide; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  echo "== fuzz $t for ${SECONDS_EACH}s"
  "target/$HOST/release/$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 "corpus/$t" "seeds/$t" 2>&1 | tail -n 12
done
