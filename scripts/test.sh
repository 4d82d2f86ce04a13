#!/usr/bin/env bash
# Runs everything CI runs: installs test dependencies, format and lint checks, unit,
# integration and end-to-end tests (real namespaces, mounts, cgroups, registry, kubectl),
# then checks that the tests left nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the tests need root (namespaces, overlay mounts, cgroups)" >&2; exit 1; }
bash scripts/install-deps.sh
# Node-wide things every peapod shares and `peapod reset` keeps (as kubelet keeps `kubepods`
# and a CNI bridge stays after its pods): the parent cgroup `peapod/` and the default bridge
# `peapod0`. When the suite is the one that creates them, it removes them at the end.
shared_before=$( (ls -d /sys/fs/cgroup/*/peapod /sys/fs/cgroup/peapod; ip -br link show peapod0) 2>/dev/null || true)
# What an earlier run on this machine left (one that was killed midway) is not this run's leak.
leaks_before=$(mktemp)
trap 'rm -f "$leaks_before"' EXIT
bash scripts/check-leaks.sh --shared --record "$leaks_before"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast -- --test-threads=2
if [ -z "$shared_before" ]; then
  for d in /sys/fs/cgroup/*/peapod /sys/fs/cgroup/peapod; do if [ -d "$d" ]; then rmdir "$d"; fi; done
  if ip link show peapod0 >/dev/null 2>&1; then ip link delete peapod0; fi
  bash scripts/check-leaks.sh --shared --before "$leaks_before"
else
  bash scripts/check-leaks.sh --before "$leaks_before"
fi
