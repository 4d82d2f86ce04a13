#!/usr/bin/env bash
# The main job on a fresh machine: build peapod, build a busybox image from Debian's
# busybox-static, start `peapod up` in the background, run a pod and show it with kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "peapod needs root" >&2; exit 1; }
bash scripts/install-deps.sh
cargo build --release -p peapod
state=${PEAPOD_STATE_DIR:-/var/lib/peapod}
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/peapod
bash tests/fixtures/build-busybox-image.sh target/fixtures
"$bin" image import --state-dir "$state" target/fixtures/busybox.oci.tar
if ! [ -e "$state/peapod.pid" ] || ! kill -0 "$(cat "$state/peapod.pid")" 2>/dev/null; then
  rm -f "$state/kubeconfig"
  nohup "$bin" up --state-dir "$state" >"$state/peapod-up.log" 2>&1 &
fi
export KUBECONFIG=$state/kubeconfig
for _ in $(seq 300); do [ -s "$KUBECONFIG" ] && kubectl get nodes >/dev/null 2>&1 && break; sleep 0.1; done
kubectl wait --for=condition=Ready node --all --timeout=60s
kubectl apply -f examples/hello-pod.yaml
kubectl wait --for=condition=Ready pod/hello --timeout=120s
kubectl get pods -o wide
kubectl logs hello
cat <<TXT

peapod is running (log: $state/peapod-up.log). Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get pods -o wide; kubectl describe pod hello; kubectl logs -f hello
Stop everything and remove all state:  $bin reset --state-dir $state
TXT
