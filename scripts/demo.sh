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
kubectl logs hello
kubectl apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello-web
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello-web}
  template:
    metadata:
      labels: {app: hello-web}
    spec:
      containers:
      - name: web
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo hello from $HOSTNAME > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
YAML
kubectl rollout status deployment/hello-web --timeout=120s
kubectl get deployments,replicasets,pods -o wide
cat <<TXT

peapod is running (log: $state/peapod-up.log). Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get pods -o wide; kubectl describe pod hello; kubectl logs -f hello
  kubectl scale deployment/hello-web --replicas=3; kubectl rollout restart deployment/hello-web
Stop everything and remove all state:  $bin reset --state-dir $state
TXT
