#!/usr/bin/env bash
# Runs everything CI runs: installs test dependencies, format and lint checks, unit,
# integration and end-to-end tests (real namespaces, mounts, cgroups, registry, kubectl),
# then checks that the tests left nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the tests need root (namespaces, overlay mounts, cgroups)" >&2; exit 1; }
bash scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast -- --test-threads=2
bash scripts/check-leaks.sh
