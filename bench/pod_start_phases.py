#!/usr/bin/env python3
"""Where a pod's start goes, phase by phase.

Starts `peapod up` in a temp state dir (busybox imported from the fixture) and creates pods one
at a time. For each pod it measures on the client, through a watch on the API, the time from
sending the POST until the pod is bound to the node and until it is Running, and reads the
node's histograms (node API `/metrics`) before and after: since only that pod starts in
between, the change of each histogram's `_sum` is that pod's exact time in the phase. Prints
the median and p90 over the pods of every phase:

  API create -> bound            client: POST sent until the watch shows spec.nodeName
  agent sees -> worker syncs     kubelet_pod_worker_start_duration_seconds (incl. admission)
  observe, volumes, sandbox, network, image, spec, create, rootfs, spawn, event, status_patch
                                 peapod_pod_start_phase_duration_seconds{phase}
                                 (image, spec, create, rootfs, spawn: per container, summed;
                                 event: every event the start records, summed, sent in the
                                 background while the containers start)
  agent sees -> Running written  kubelet_pod_start_duration_seconds
  first sync outside the phases  kubelet_pod_worker_duration_seconds{create} - the phases but
                                 event (older builds awaited their events in the sync: this
                                 then holds them, less the Pulled one inside image)
  watch delivery (both hops)     client total - API create->bound - the node's share: the
                                 bound pod reaching the agent plus the Running status
                                 reaching the client

With several --peapod binaries, the binaries take turns (--rounds blocks of --pods pods
each, a fresh `peapod up` per block), so a busy machine slows them alike; a binary without
/metrics (older builds) gets the client figures only.

Usage: python3 bench/pod_start_phases.py [--pods 30] [--rounds 2] [--containers 1]
                                         [--peapod BIN]...
"""
import argparse, json, os, re, shutil, signal, ssl, statistics, subprocess, sys, tempfile, time
import urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apply_latency import Api, Watch, free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$')
PHASES = ["observe", "volumes", "sandbox", "network", "image", "spec", "create", "rootfs",
          "spawn", "event", "status_patch"]


def pod(name, containers):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "1"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": f"c{i}", "image": "docker.io/library/busybox:latest",
                "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}
                for i in range(containers)]}}


class NodeMetrics:
    """The node API's /metrics, reached with the node API token of the state dir."""

    def __init__(self, api, node, state):
        obj = json.load(api.request("GET", f"/api/v1/nodes/{node}"))
        port = obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        addr = next(a["address"] for a in obj["status"]["addresses"] if a["type"] == "InternalIP")
        self.url = f"https://{addr}:{port}/metrics"
        self.token = open(os.path.join(state, "node-api-token")).read().strip()
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE

    def read(self):
        """{(name, labels): value} of every _sum and _count sample; None without /metrics."""
        req = urllib.request.Request(self.url, headers={"Authorization": "Bearer " + self.token})
        try:
            text = urllib.request.urlopen(req, context=self.ctx, timeout=10).read().decode()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        out = {}
        for line in text.splitlines():
            m = SAMPLE.match(line)
            if m and (m.group(1).endswith("_sum") or m.group(1).endswith("_count")):
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
        return out


def delta(before, after, name, labels=""):
    return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)


def run_block(binary, pods, containers, prefix, results):
    tmp = tempfile.mkdtemp(prefix="peapod-phases-bench-")
    state = os.path.join(tmp, "state")
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run([binary, "image", "import", "--state-dir", state,
                    os.path.join(fixtures, "busybox.oci.tar")], check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(tmp, "up.log"), "w")
    node = "phases-bench"
    up = subprocess.Popen([binary, "up", "--state-dir", state, "--listen", f"127.0.0.1:{free_port()}",
                           "--node-api-listen", f"127.0.0.1:{free_port()}", "--node-name", node],
                          stdout=log, stderr=log)
    try:
        kubeconfig = os.path.join(state, "kubeconfig")
        for _ in range(300):
            if os.path.exists(kubeconfig):
                break
            time.sleep(0.1)
        api = Api(kubeconfig)
        for _ in range(600):
            try:
                obj = json.load(api.request("GET", f"/api/v1/nodes/{node}"))
                if any(c["type"] == "Ready" and c["status"] == "True" for c in obj["status"]["conditions"]):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        metrics = NodeMetrics(api, node, state)
        watch = Watch(api)
        watch.start()
        # Let start-up work (controllers' first lists, the node's first heartbeats) settle.
        time.sleep(2)
        for i in range(pods):
            name = f"{prefix}-{i}"
            before = metrics.read()
            t0 = time.monotonic()
            api.request("POST", "/api/v1/namespaces/default/pods", pod(name, containers)).read()
            watch.wait([name])
            row = {"total": (watch.running[name] - t0) * 1000,
                   "bound": (watch.scheduled.get(name, watch.running[name]) - t0) * 1000}
            if before is not None:
                # The agent observes the pod's start right after its Running status is written.
                deadline = time.monotonic() + 10
                while True:
                    after = metrics.read()
                    if delta(before, after, "kubelet_pod_start_duration_seconds_count") >= 1:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name}: the node never observed its start")
                    time.sleep(0.005)
                ms = lambda n, l="": delta(before, after, n, l) * 1000  # noqa: E731
                row["worker_start"] = ms("kubelet_pod_worker_start_duration_seconds_sum")
                row["pod_start"] = ms("kubelet_pod_start_duration_seconds_sum")
                row["first_sync"] = ms("kubelet_pod_worker_duration_seconds_sum", 'operation_type="create"')
                for p in PHASES:
                    row[p] = ms("peapod_pod_start_phase_duration_seconds_sum", f'phase="{p}"')
                row["events"] = delta(before, after, "peapod_pod_start_phase_duration_seconds_count",
                                      'phase="event"')
                row["watch"] = row["total"] - row["bound"] - row["pod_start"]
                # Events are sent off the sync's path.
                row["other"] = row["first_sync"] - sum(row[p] for p in PHASES if p != "event")
            results.append(row)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
        subprocess.run([binary, "reset", "--state-dir", state], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def report(binary, rows):
    print(f"\n== {binary}: {len(rows)} pods")
    def line(label, key):
        vals = [r[key] for r in rows if key in r]
        if vals:
            print(f"  {label:<34} median {statistics.median(vals):7.1f}   p90 {pct(vals, 0.9):7.1f}")
    line("apply -> Running (client, ms)", "total")
    line("API create -> bound (client)", "bound")
    if not any("pod_start" in r for r in rows):
        print("  (no /metrics on this binary: client figures only)")
        return
    line("bound -> agent + Running -> client", "watch")
    line("agent sees -> Running written", "pod_start")
    line("  agent sees -> worker syncs", "worker_start")
    for p in PHASES:
        line(f"  {p}", p)
    line("  first sync (whole)", "first_sync")
    line("  first sync outside the phases", "other")
    ev = [r["events"] for r in rows if "events" in r]
    print(f"  events recorded per pod (median)    {statistics.median(ev):.0f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=30, help="pods per block")
    ap.add_argument("--rounds", type=int, default=1, help="blocks per binary, taking turns")
    ap.add_argument("--containers", type=int, default=1, help="containers per pod")
    ap.add_argument("--peapod", action="append", help="binary (repeat to compare)")
    args = ap.parse_args()
    binaries = args.peapod or [os.path.join(ROOT, "target/release/peapod")]
    if not os.path.exists(binaries[0]):
        subprocess.run(["cargo", "build", "--release", "-p", "peapod"], cwd=ROOT, check=True)
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures],
                   check=True, stdout=subprocess.DEVNULL)
    results = {b: [] for b in binaries}
    for r in range(args.rounds):
        for j, b in enumerate(binaries):
            run_block(b, args.pods, args.containers, f"r{r}b{j}", results[b])
    print(f"pods started one at a time, {args.containers} container(s) each; figures in ms")
    for b in binaries:
        report(b, results[b])


if __name__ == "__main__":
    sys.exit(main())
