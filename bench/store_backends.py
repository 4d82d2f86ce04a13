#!/usr/bin/env python3
"""The store backends side by side: the same API workload on `peapod server` with the
embedded redb store and with a one-member etcd (Debian's etcd-server) on loopback.

Per backend, on a fresh server (controllers off, so only the workload writes):
- create: N ConfigMaps one at a time (POST latency min/median/p99, creates/s), then N more
  from 8 threads at once (creates/s);
- list: the 2N ConfigMaps in one GET, repeated (median latency), and in pages of 100;
- watch: a watch open from the current resourceVersion while M ConfigMaps are created one at
  a time; latency from the POST's start to the ADDED event (median, p99).
Every request goes over one kept-alive HTTPS connection per thread, so TLS handshakes stay out
of the figures.
Usage: python3 bench/store_backends.py [--n 500] [--m 100] [--peapod PATH]
"""
import argparse, base64, http.client, json, os, shutil, ssl, statistics, subprocess, sys
import tempfile, threading, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apply_latency import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = "/api/v1/namespaces/default/configmaps"


class Conn:
    """One kept-alive HTTPS connection to the API, from peapod's kubeconfig."""
    def __init__(self, kubeconfig):
        text = open(kubeconfig).read()
        def field(name):
            for line in text.splitlines():
                line = line.strip()
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip().strip('"')
            raise KeyError(name)
        url = urllib.parse.urlparse(field("server"))
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(field("certificate-authority-data")).decode())
        self.token = field("token")
        self.conn = http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=60)

    def request(self, method, path, body=None):
        headers = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"}
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=headers)
        return self.conn.getresponse()

    def call(self, method, path, body=None):
        resp = self.request(method, path, body)
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
        return json.loads(data)


def cm(name):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"k": "v" * 64}}


def ms(seconds):
    return seconds * 1000


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def wait_kubeconfig(path, proc, log):
    for _ in range(600):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"peapod server exited:\n{open(log).read()[-2000:]}")
        time.sleep(0.1)
    raise TimeoutError("peapod server did not write its kubeconfig")


def workload(kubeconfig, n, m):
    out = {}
    c = Conn(kubeconfig)
    lat = []
    t0 = time.monotonic()
    for i in range(n):
        s = time.monotonic()
        c.call("POST", NS, cm(f"seq-{i}"))
        lat.append(time.monotonic() - s)
    out["create sequential /s"] = n / (time.monotonic() - t0)
    out["create latency ms (min/median/p99)"] = (ms(min(lat)), ms(statistics.median(lat)),
                                                 ms(pct(lat, 0.99)))

    def burst(t, count):
        cc = Conn(kubeconfig)
        for i in range(count):
            cc.call("POST", NS, cm(f"par-{t}-{i}"))
    threads = [threading.Thread(target=burst, args=(t, n // 8)) for t in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["create 8 threads /s"] = (n // 8) * 8 / (time.monotonic() - t0)

    lists = []
    for _ in range(10):
        s = time.monotonic()
        items = c.call("GET", NS)["items"]
        lists.append(time.monotonic() - s)
    out[f"list {len(items)} ms (median)"] = ms(statistics.median(lists))
    s = time.monotonic()
    token, pages = "", 0
    while True:
        page = c.call("GET", NS + "?limit=100" + (f"&continue={token}" if token else ""))
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
    out[f"list in {pages} pages of 100 ms"] = ms(time.monotonic() - s)

    rv = c.call("GET", NS + "?limit=1")["metadata"]["resourceVersion"]
    seen, cond = {}, threading.Condition()
    w = Conn(kubeconfig)
    resp = w.request("GET", NS + f"?watch=1&resourceVersion={rv}&timeoutSeconds=600")

    def follow():
        for line in resp:
            ev = json.loads(line)
            if ev["type"] == "ADDED":
                with cond:
                    seen[ev["object"]["metadata"]["name"]] = time.monotonic()
                    cond.notify_all()
    threading.Thread(target=follow, daemon=True).start()
    delays = []
    for i in range(m):
        name = f"watched-{i}"
        s = time.monotonic()
        c.call("POST", NS, cm(name))
        with cond:
            if not cond.wait_for(lambda: name in seen, timeout=30):
                raise TimeoutError(f"no ADDED event for {name}")
        delays.append(seen[name] - s)
    out["POST->watch event ms (median/p99)"] = (ms(statistics.median(delays)), ms(pct(delays, 0.99)))
    return out


def start_etcd(tmp):
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = open(os.path.join(tmp, "etcd.log"), "w")
    proc = subprocess.Popen(["etcd", "--name=m0", f"--data-dir={tmp}/etcd",
                             f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
                             f"--listen-peer-urls={peer_url}",
                             f"--initial-advertise-peer-urls={peer_url}",
                             f"--initial-cluster=m0={peer_url}"], stdout=log, stderr=log)
    for _ in range(300):
        r = subprocess.run(["curl", "-s", f"{url}/health"], capture_output=True, text=True)
        if '"health":"true"' in r.stdout:
            return proc, url
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("etcd did not become healthy")


def run_backend(peapod, name, n, m):
    tmp = tempfile.mkdtemp(prefix=f"peapod-store-bench-{name}-")
    etcd = server = None
    try:
        store = f"redb:{tmp}/store.redb"
        if name == "etcd":
            etcd, url = start_etcd(tmp)
            store = f"etcd:{url}"
        log = os.path.join(tmp, "server.log")
        server = subprocess.Popen([peapod, "server", "--state-dir", f"{tmp}/state", "--listen",
                                   f"127.0.0.1:{free_port()}", "--store", store,
                                   "--no-controllers"],
                                  stdout=open(log, "w"), stderr=subprocess.STDOUT)
        kubeconfig = f"{tmp}/state/kubeconfig"
        wait_kubeconfig(kubeconfig, server, log)
        return workload(kubeconfig, n, m)
    finally:
        for p in (server, etcd):
            if p is not None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--m", type=int, default=100)
    ap.add_argument("--peapod", default=os.path.join(ROOT, "target/release/peapod"))
    args = ap.parse_args()
    if not os.path.exists(args.peapod):
        subprocess.run(["cargo", "build", "--release", "-p", "peapod"], cwd=ROOT, check=True)
    results = {b: run_backend(args.peapod, b, args.n, args.m) for b in ("redb", "etcd")}
    print(f"{'':40} {'redb':>24} {'etcd':>24}")
    for key in results["redb"]:
        def fmt(v):
            return "/".join(f"{x:.1f}" for x in v) if isinstance(v, tuple) else f"{v:.1f}"
        print(f"{key:40} {fmt(results['redb'][key]):>24} {fmt(results['etcd'][key]):>24}")


if __name__ == "__main__":
    main()
