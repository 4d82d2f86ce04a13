#!/usr/bin/env python3
"""Pod delete latency: API `DELETE` -> the object gone (its DELETED event on a watch).

Starts `peapod up` in a temp state dir (busybox image imported from the fixture), then, one
pod at a time: creates a pod whose process exits at once on SIGTERM (a shell waiting with a
TERM trap), waits until it is Running, sends `DELETE` with the pod's own grace period and
times it until the watch shows the pod DELETED. Prints min/median/p90/max, and, from the node
API's `/metrics`, the time of the agent's kill syncs (`kubelet_pod_worker_duration_seconds`
with operation_type=kill) and of each step of the pod's end
(`peapod_pod_stop_phase_duration_seconds`), so the node's share is told from the API's.
Several `--peapod` binaries take turns in blocks of `--pods` (a fresh `peapod up` each).
Usage: python3 bench/delete_latency.py [--pods 20] [--rounds 2] [--peapod BIN]... [--log FILE]
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apply_latency import wait_for_node, free_port, ROOT  # noqa: E402


def pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "delete"}},
            "spec": {"terminationGracePeriodSeconds": 30, "containers": [{
                "name": "main", "image": "docker.io/library/busybox:latest",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}


class Watch(threading.Thread):
    """The first time each pod is seen Running, and when it is seen DELETED."""
    def __init__(self, api):
        super().__init__(daemon=True)
        self.api, self.cond = api, threading.Condition()
        self.running, self.deleted = {}, {}

    def run(self):
        resp = self.api.request("GET", "/api/v1/namespaces/default/pods?watch=true&labelSelector=bench%3Ddelete")
        for line in resp:
            ev = json.loads(line)
            obj = ev.get("object", {})
            name = obj.get("metadata", {}).get("name")
            now = time.monotonic()
            with self.cond:
                if ev.get("type") == "DELETED":
                    self.deleted.setdefault(name, now)
                elif obj.get("status", {}).get("phase") == "Running":
                    self.running.setdefault(name, now)
                self.cond.notify_all()

    def wait_for(self, table, name, timeout=120):
        deadline = time.monotonic() + timeout
        with self.cond:
            while name not in table:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{name}: not seen in time")
                self.cond.wait(left)
            return table[name]


def node_sums(state, port):
    """Sum and count of the agent's kill syncs and of each stop phase, from the node API's
    /metrics: {series: (sum, count)}."""
    import re, ssl, urllib.request
    token = open(os.path.join(state, "node-api-token")).read().strip()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
    req.add_header("Authorization", "Bearer " + token)
    text = urllib.request.urlopen(req, context=ctx, timeout=10).read().decode()
    out = {}
    pattern = re.compile(r'^(kubelet_pod_worker_duration_seconds|peapod_pod_stop_phase_duration_seconds)_(sum|count)\{[^}]*(?:operation_type|phase)="([^"]+)"[^}]*\} (\S+)$')
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        family, kind, label, value = m.groups()
        if family.startswith("kubelet") and label != "kill":
            continue
        key = "kill sync" if family.startswith("kubelet") else label
        total, count = out.get(key, (0.0, 0.0))
        out[key] = (float(value), count) if kind == "sum" else (total, float(value))
    return out


# `--log FILE`: where the last `peapod up`'s log is kept (run with PEAPOD_LOG=... set).
KEEP_LOG = None


def run_block(binary, fixtures, pods, prefix):
    tmp = tempfile.mkdtemp(prefix="peapod-bench-")
    state = os.path.join(tmp, "state")
    subprocess.run([binary, "image", "import", "--state-dir", state,
                    os.path.join(fixtures, "busybox.oci.tar")], check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(tmp, "up.log"), "w")
    node_port = free_port()
    up = subprocess.Popen([binary, "up", "--state-dir", state, "--listen", f"127.0.0.1:{free_port()}",
                           "--node-api-listen", f"127.0.0.1:{node_port}", "--node-name", "bench"],
                          stdout=log, stderr=log)
    times, phases = [], {}
    try:
        api = wait_for_node(state)
        watch = Watch(api)
        watch.start()
        time.sleep(1)
        for i in range(pods):
            name = f"{prefix}-{i}"
            api.request("POST", "/api/v1/namespaces/default/pods", pod(name)).read()
            watch.wait_for(watch.running, name)
            time.sleep(0.5)
            before = node_sums(state, node_port)
            t0 = time.monotonic()
            api.request("DELETE", f"/api/v1/namespaces/default/pods/{name}").read()
            gone = watch.wait_for(watch.deleted, name)
            times.append(1000 * (gone - t0))
            time.sleep(0.3)
            after = node_sums(state, node_port)
            for key, (total, count) in after.items():
                b_total, b_count = before.get(key, (0.0, 0.0))
                if count > b_count:
                    phases.setdefault(key, []).append(1000 * (total - b_total) / (count - b_count))
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
        subprocess.run([binary, "reset", "--state-dir", state], stdout=subprocess.DEVNULL)
        if KEEP_LOG:
            shutil.copy(os.path.join(tmp, "up.log"), KEEP_LOG)
        shutil.rmtree(tmp, ignore_errors=True)
    return times, phases


def summary(xs):
    xs = sorted(xs)
    if not xs:
        return "n/a"
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"min {xs[0]:.1f}  median {statistics.median(xs):.1f}  p90 {p90:.1f}  max {xs[-1]:.1f} ms (n={len(xs)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--peapod", action="append", default=None)
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    global KEEP_LOG
    KEEP_LOG = args.log
    binaries = args.peapod or [os.path.join(ROOT, "target/release/peapod")]
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures], check=True)
    results = {b: ([], {}) for b in binaries}
    for r in range(args.rounds):
        for b in binaries:
            times, phases = run_block(b, fixtures, args.pods, f"del{r}")
            results[b][0].extend(times)
            for key, xs in phases.items():
                results[b][1].setdefault(key, []).extend(xs)
    for b in binaries:
        times, phases = results[b]
        print(f"binary: {b}")
        print(f"  DELETE -> DELETED on a watch: {summary(times)}")
        for key, xs in sorted(phases.items()):
            print(f"  {key}: {summary(xs)}")


if __name__ == "__main__":
    sys.exit(main())
