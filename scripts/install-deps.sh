#!/usr/bin/env bash
# Installs the Debian packages peapod's tests, fixtures and demo need (idempotent).
set -euo pipefail
pkgs=(busybox-static docker-registry skopeo umoci containernetworking-plugins iproute2 procps jq ca-certificates python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required: https://rustup.rs" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl is required on PATH" >&2; exit 1; }
