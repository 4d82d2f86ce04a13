#!/usr/bin/env bash
# RUSTC_WRAPPER for stable-toolchain fuzz builds (scripts/fuzz.sh --stable): adds libFuzzer's
# coverage instrumentation to the project's own crates and the fuzz targets only, so the
# dependencies already compiled for the project's debug build are reused as they are.
rustc=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
own=false
case "${CARGO_MANIFEST_DIR:-}" in
"$root"/crates/* | "$root"/fuzz) own=true ;;
esac
for a in "$@"; do
    case "$a" in
    build_script_* | proc-macro) own=false ;;
    esac
done
if $own; then
    exec "$rustc" "$@" --cfg fuzzing -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares
fi
exec "$rustc" "$@"
