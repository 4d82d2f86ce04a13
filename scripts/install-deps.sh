#!/usr/bin/env bash
# Installs the Debian packages peapod's tests, fixtures and demo need (idempotent; run as root).
set -euo pipefail
# gcc + libc6-dev: cargo links with `cc`, and ring compiles its C and assembly; nftables: the
# service proxy drives `nft`; iptables: the CNI bridge's masquerade (and the network tests);
# curl: the test registry's readiness check; protobuf-compiler: `protoc` builds the etcd
# client's gRPC types; etcd-server: the etcd members the etcd store's tests start.
pkgs=(gcc libc6-dev busybox-static docker-registry skopeo umoci containernetworking-plugins
  iptables nftables iproute2 procps curl jq ca-certificates python3 protobuf-compiler etcd-server
  tmux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required: https://rustup.rs" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl is required on PATH" >&2; exit 1; }
