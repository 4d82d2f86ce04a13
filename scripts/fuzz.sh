#!/usr/bin/env bash
# Builds the cargo-fuzz targets under fuzz/ and runs each for a bounded time, then prints a
# table of executions and findings per target.
#
#   scripts/fuzz.sh [--stable] [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGETs default to every target. By default the targets are
# built by `cargo +nightly fuzz build` (AddressSanitizer, release, in fuzz/target). With
# --stable they are built by the stable toolchain in the project's own target directory, with
# coverage instrumentation on the project's crates only (fuzz/rustc-wrapper.sh), so the
# dependencies of the project's debug build are reused: minutes instead of a full rebuild, and
# debug assertions and overflow checks stay on; no sanitizer (the fuzzed code has no unsafe). Runs in libFuzzer's fork
# mode with crashes, timeouts and OOMs ignored, so one finding does not stop the rest of the
# run; every finding is saved under fuzz/artifacts/<target>/ (reproduce with
# `cargo +nightly fuzz run <target> <file>`). New inputs go to fuzz/work/<target>/; the
# committed seeds in fuzz/corpus/<target>/ are only read. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). Exits 1 when anything was found.
set -euo pipefail

stable=false
if [ "${1:-}" = "--stable" ]; then
    stable=true
    shift
fi
secs=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if $stable; then
    RUSTC_WRAPPER=$root/fuzz/rustc-wrapper.sh CARGO_TARGET_DIR=$root/target \
        cargo build --manifest-path fuzz/Cargo.toml --bins >&2
    bin_dir=target/debug
else
    cargo +nightly fuzz build >&2
    triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
    bin_dir=fuzz/target/$triple/release
fi
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | tail -n +2)
fi
logs=fuzz/work/logs
mkdir -p "$logs"

rows=()
found=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    echo "== $t (${secs}s)" >&2
    # libFuzzer exits non-zero when it saw a crash even with -ignore_crashes; the table says so.
    "$bin_dir/$t" "fuzz/work/$t" "fuzz/corpus/$t" \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$logs/$t.log" 2>&1 || true
    # Fork mode's status lines: `#<execs>: cov: … oom/timeout/crash: O/T/C time: …`.
    last=$(grep -E '^#[0-9]+: cov:' "$logs/$t.log" | tail -n 1 || true)
    execs=$(sed -nE 's/^#([0-9]+):.*/\1/p' <<<"$last")
    otc=$(sed -nE 's|.*oom/timeout/crash: ([0-9]+/[0-9]+/[0-9]+).*|\1|p' <<<"$last")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    new=$((after - before))
    found=$((found + new))
    rows+=("$(printf '%-16s %12s %8s %14s %10s' "$t" "${execs:-?}" "${cov:-?}" "${otc:-?}" "$new")")
done

printf '\n%-16s %12s %8s %14s %10s\n' target executions cov oom/tmo/crash artifacts
printf '%s\n' "${rows[@]}"
echo "logs: $logs/; findings: fuzz/artifacts/<target>/"
[ "$found" -eq 0 ]
