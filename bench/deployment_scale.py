#!/usr/bin/env python3
"""A Deployment of N replicas through the controllers: create -> all available, a rolling
update -> all replaced and available, scale to zero -> no pod left; and `peapod up`'s RSS
and CPU (% of one core over --idle seconds, controllers, API server and node together)
while the N pods run and nothing changes.

Starts `peapod up` in a temp state dir (busybox image imported from the fixture, one node,
so N <= 110, the kubelet's default maxPods; a rolling update surges 25 % above N and the
surplus waits for room), then drives the Deployment through the API and times each step
from the request to the state, read from the Deployment's status (and the pod list for the
last step).
Usage: python3 bench/deployment_scale.py [--replicas 100] [--idle 20] [--peapod PATH]
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

from apply_latency import ROOT, Api, free_port, rss_kib

NS = "/apis/apps/v1/namespaces/default/deployments"


def deployment(replicas, rev):
    labels = {"app": "scale"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "scale"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels, "annotations": {"rev": rev}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                                      "name": "main", "image": "docker.io/library/busybox:latest",
                                      "imagePullPolicy": "IfNotPresent",
                                      "command": ["sleep", "3600"]}]}}}}


def wait_for(what, check, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def status(api):
    d = json.load(api.request("GET", NS + "/scale"))
    return d.get("metadata", {}).get("generation"), d.get("status", {})


def rolled_out(api, n):
    generation, s = status(api)
    return (s.get("observedGeneration") == generation and s.get("updatedReplicas", 0) == n
            and s.get("availableReplicas", 0) == n and s.get("replicas", 0) == n)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def merge_patch(api, path, body):
    req = urllib.request.Request(api.server + path, data=json.dumps(body).encode(), method="PATCH")
    req.add_header("Authorization", "Bearer " + api.token)
    req.add_header("Content-Type", "application/merge-patch+json")
    urllib.request.urlopen(req, context=api.ctx, timeout=60).read()


def pods_left(api):
    pods = json.load(api.request("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dscale"))
    return len(pods.get("items", []))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--peapod", default=os.path.join(ROOT, "target/release/peapod"))
    args = ap.parse_args()
    n = args.replicas
    if not os.path.exists(args.peapod):
        subprocess.run(["cargo", "build", "--release", "-p", "peapod"], cwd=ROOT, check=True)
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures],
                   check=True)
    tmp = tempfile.mkdtemp(prefix="peapod-bench-")
    state = os.path.join(tmp, "state")
    subprocess.run([args.peapod, "image", "import", "--state-dir", state,
                    os.path.join(fixtures, "busybox.oci.tar")], check=True,
                   stdout=subprocess.DEVNULL)
    log = open(os.path.join(tmp, "up.log"), "w")
    up = subprocess.Popen([args.peapod, "up", "--state-dir", state,
                           "--listen", f"127.0.0.1:{free_port()}",
                           "--node-api-listen", f"127.0.0.1:{free_port()}", "--node-name", "bench"],
                          stdout=log, stderr=log)
    try:
        kubeconfig = os.path.join(state, "kubeconfig")
        wait_for("the kubeconfig", lambda: os.path.exists(kubeconfig), 60)
        api = Api(kubeconfig)

        def node_ready():
            try:
                node = json.load(api.request("GET", "/api/v1/nodes/bench"))
            except Exception:
                return False
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in node["status"]["conditions"])
        wait_for("the node Ready", node_ready, 120)
        idle = rss_kib(up.pid)

        t0 = time.monotonic()
        api.request("POST", NS, deployment(n, "1")).read()
        wait_for(f"{n} replicas available", lambda: rolled_out(api, n))
        created = time.monotonic() - t0
        time.sleep(5)
        busy = rss_kib(up.pid)
        c0, w0 = cpu_seconds(up.pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = 100 * (cpu_seconds(up.pid) - c0) / (time.monotonic() - w0)

        t0 = time.monotonic()
        merge_patch(api, NS + "/scale", {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}})
        wait_for("the rollout", lambda: rolled_out(api, n))
        rolled = time.monotonic() - t0

        t0 = time.monotonic()
        merge_patch(api, NS + "/scale", {"spec": {"replicas": 0}})
        wait_for("no pod left", lambda: pods_left(api) == 0)
        emptied = time.monotonic() - t0

        print(f"Deployment of {n} replicas: create -> all available {created:.2f} s; "
              f"rolling update -> all replaced and available {rolled:.2f} s; "
              f"scale to 0 -> no pod left {emptied:.2f} s")
        print(f"peapod up RSS: idle {idle/1024:.1f} MiB, with {n} pods {busy/1024:.1f} MiB")
        print(f"peapod up CPU with {n} idle pods (no probes): {idle_cpu:.2f} % of one core "
              f"over {args.idle:.0f} s")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        subprocess.run([args.peapod, "reset", "--state-dir", state], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
