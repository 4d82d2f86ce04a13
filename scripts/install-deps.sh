#!/usr/bin/env bash
# Installs the Debian packages peapod's tests, fixtures and demo need (idempotent; run as root).
set -euo pipefail
# gcc + libc6-dev: cargo links with `cc`, and ring compiles its C and assembly; nftables: the
# service proxy drives `nft`; iptables: the CNI bridge's masquerade (and the network tests);
# curl: the test registry's readiness check; protobuf-compiler: `protoc` builds the etcd
# client's gRPC types; etcd-server: the etcd members the etcd store's tests start;
# python3-venv, nodejs, npm: the official Python and JavaScript Kubernetes clients the client
# tests drive; tmux: the terminal the interactive (`kubectl run -it`) tests type into.
pkgs=(gcc libc6-dev busybox-static docker-registry skopeo umoci containernetworking-plugins
  iptables nftables iproute2 procps curl jq ca-certificates python3 protobuf-compiler etcd-server
  python3-venv tmux)
# A newer Node.js (e.g. NodeSource's) brings its own npm: take Debian's only when missing.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
# The client libraries, pinned, under one prefix the client tests look in (PEAPOD_CLIENTS
# overrides it): a venv (Debian's Python is externally managed, PEP 668) and an npm prefix.
clients=${PEAPOD_CLIENTS:-/opt/peapod-clients}
python_client=kubernetes==37.0.2
node_client=@kubernetes/client-node@1.4.0
if ! "$clients/python/bin/python3" -c 'import kubernetes, sys; sys.exit(kubernetes.__version__ != "37.0.2")' 2>/dev/null; then
  /usr/bin/python3 -m venv "$clients/python"
  "$clients/python/bin/pip" install -q "$python_client"
fi
if [ "$(cd "$clients/node" 2>/dev/null && node -p 'require("./node_modules/@kubernetes/client-node/package.json").version' 2>/dev/null)" != 1.4.0 ]; then
  npm install -q --prefix "$clients/node" --no-audit --no-fund "$node_client"
fi
# kubectl 1.28, the SPDY exec/attach client of the client tests, from the Kubernetes release
# site, checked against its published SHA-256 (kept when one is already installed).
old_kubectl=1.28.15
if [ ! -x "$clients/bin/kubectl-1.28" ] && ! command -v kubectl.1.28 >/dev/null &&
  [ ! -x /usr/lib/google-cloud-sdk/bin/kubectl.1.28 ]; then
  mkdir -p "$clients/bin"
  base="https://dl.k8s.io/release/v$old_kubectl/bin/linux/amd64/kubectl"
  if curl -fsSL -o "$clients/bin/kubectl-1.28.tmp" "$base" &&
    echo "$(curl -fsSL "$base.sha256")  $clients/bin/kubectl-1.28.tmp" | sha256sum -c --quiet; then
    chmod +x "$clients/bin/kubectl-1.28.tmp"
    mv "$clients/bin/kubectl-1.28.tmp" "$clients/bin/kubectl-1.28"
  else
    rm -f "$clients/bin/kubectl-1.28.tmp"
    echo "warning: could not fetch kubectl $old_kubectl; the SPDY client test needs it" >&2
  fi
fi
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required: https://rustup.rs" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl is required on PATH" >&2; exit 1; }
