#!/usr/bin/env python3
"""apply->Running latency, time to get N pods Running, and peapod's memory.

Starts `peapod up` in a temp state dir (busybox image imported from the fixture), then:
  1. creates pods one at a time (POST to the API) and measures, through a watch on the API,
     the time from sending the POST until the pod's phase is Running (min/median/p99/max);
  2. creates a burst of pods at once and measures the time until all are Running;
  3. reads VmRSS of `peapod up` idle and with the burst running, and the shims' RSS.
Usage: python3 bench/apply_latency.py [--sequential 20] [--burst 50] [--peapod PATH]
"""
import argparse, base64, json, os, shutil, signal, socket, ssl, statistics, subprocess
import sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smaps_kib(pid, field):
    """A field of /proc/PID/smaps_rollup (Pss, Private_Dirty...): RSS counts the binary's
    shared pages in full for every shim, while Pss and Private show what a pod really costs."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def private_kib(pid):
    return smaps_kib(pid, "Private_Clean") + smaps_kib(pid, "Private_Dirty")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Api:
    def __init__(self, kubeconfig):
        # kubeconfig is YAML written by peapod; pull the three fields we need without a YAML lib.
        text = open(kubeconfig).read()
        def field(name):
            for line in text.splitlines():
                line = line.strip()
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip().strip('"')
            raise KeyError(name)
        self.server = field("server")
        ca = base64.b64decode(field("certificate-authority-data")).decode()
        self.token = field("token")
        self.ctx = ssl.create_default_context(cadata=ca)

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Content-Type", "application/json")
        return urllib.request.urlopen(req, context=self.ctx, timeout=60)


def wait_for_node(state, node="bench"):
    """The API of the `peapod up` running in `state`, once its kubeconfig is written and the
    node `node` is Ready (about a minute at most)."""
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
    return api


def pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "1"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": "docker.io/library/busybox:latest",
                "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}}


class Watch(threading.Thread):
    """Records the first time each pod is seen bound to a node and seen Running."""
    def __init__(self, api):
        super().__init__(daemon=True)
        self.api, self.running, self.cond = api, {}, threading.Condition()
        self.scheduled = {}

    def run(self):
        resp = self.api.request("GET", "/api/v1/namespaces/default/pods?watch=true")
        try:
            self.follow(resp)
        except (TimeoutError, OSError):
            pass  # a quiet watch (the --settle wait) times out; every pod was seen by then

    def follow(self, resp):
        for line in resp:
            ev = json.loads(line)
            obj = ev.get("object", {})
            name = obj.get("metadata", {}).get("name")
            if obj.get("spec", {}).get("nodeName"):
                self.scheduled.setdefault(name, time.monotonic())
            if obj.get("status", {}).get("phase") == "Running":
                with self.cond:
                    self.running.setdefault(name, time.monotonic())
                    self.cond.notify_all()

    def wait(self, names, timeout=300):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(n in self.running for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pods not Running: {[n for n in names if n not in self.running]}")
                self.cond.wait(left)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequential", type=int, default=20)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--settle", type=float, default=0,
                    help="also measure peapod up's RSS this many seconds after the burst, once "
                         "the start's transient allocations and watch history have gone")
    ap.add_argument("--peapod", default=os.path.join(ROOT, "target/release/peapod"))
    args = ap.parse_args()
    if not os.path.exists(args.peapod):
        subprocess.run(["cargo", "build", "--release", "-p", "peapod"], cwd=ROOT, check=True)
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures], check=True)
    tmp = tempfile.mkdtemp(prefix="peapod-bench-")
    state = os.path.join(tmp, "state")
    subprocess.run([args.peapod, "image", "import", "--state-dir", state,
                    os.path.join(fixtures, "busybox.oci.tar")], check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(tmp, "up.log"), "w")
    up = subprocess.Popen([args.peapod, "up", "--state-dir", state, "--listen", f"127.0.0.1:{free_port()}",
                           "--node-api-listen", f"127.0.0.1:{free_port()}", "--node-name", "bench"],
                          stdout=log, stderr=log)
    try:
        api = wait_for_node(state)
        time.sleep(2)
        idle = rss_kib(up.pid)
        idle_anon = smaps_kib(up.pid, "Anonymous")
        watch = Watch(api)
        watch.start()
        time.sleep(0.5)

        lat, sched = [], []
        for i in range(args.sequential):
            name = f"seq-{i}"
            t0 = time.monotonic()
            api.request("POST", "/api/v1/namespaces/default/pods", pod(name)).read()
            watch.wait([name])
            lat.append((watch.running[name] - t0) * 1000)
            sched.append((watch.scheduled.get(name, watch.running[name]) - t0) * 1000)
        lat.sort()
        if lat:
            p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
            print(f"apply->Running over {len(lat)} pods (ms): min {lat[0]:.0f}"
                  f"  median {statistics.median(lat):.0f}  p99 {p99:.0f}  max {lat[-1]:.0f}")
            print(f"  of which POST->bound to the node (median ms): {statistics.median(sched):.1f}")

        names = [f"burst-{i}" for i in range(args.burst)]
        t0 = time.monotonic()
        for n in names:
            api.request("POST", "/api/v1/namespaces/default/pods", pod(n)).read()
        watch.wait(names)
        print(f"{args.burst} pods created at once -> all Running in {time.monotonic() - t0:.2f} s")
        time.sleep(2)
        busy = rss_kib(up.pid)
        shims = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_shim(p, state)]
        shim_rss = [rss_kib(p) for p in shims]
        shim_pss = [smaps_kib(p, "Pss") for p in shims]
        shim_priv = [private_kib(p) for p in shims]
        print(f"peapod up RSS: idle {idle/1024:.1f} MiB (anonymous {idle_anon/1024:.1f}),"
              f" with {args.sequential + args.burst} pods {busy/1024:.1f} MiB")
        if args.settle > 0:
            time.sleep(args.settle)
            store = os.path.join(state, "store.redb")
            size = os.path.getsize(store) if os.path.exists(store) else 0
            print(f"peapod up RSS {args.settle:g} s later: {rss_kib(up.pid)/1024:.1f} MiB"
                  f" (anonymous {smaps_kib(up.pid, 'Anonymous')/1024:.1f}; store file {size/2**20:.1f} MiB)")
        if shim_rss:
            print(f"shim per pod over {len(shim_rss)} shims (median MiB): RSS {statistics.median(shim_rss)/1024:.2f}"
                  f"  PSS {statistics.median(shim_pss)/1024:.2f}  private {statistics.median(shim_priv)/1024:.2f}")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
        subprocess.run([args.peapod, "reset", "--state-dir", state], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


def _is_shim(pid, state):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        return len(cmd) > 1 and cmd[1] == b"shim" and state.encode() in b" ".join(cmd)
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
