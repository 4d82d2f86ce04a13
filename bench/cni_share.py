#!/usr/bin/env python3
"""CNI setup's share of pod start latency.

Starts `peapod up` (release binary) in a temp state dir with its own CNI config dir, so peapod
writes and uses its default bridge + host-local + portmap + loopback conflist rather than
whatever /etc/cni/net.d holds, and with the node agent's network module at debug level, which
logs each CNI ADD's duration ("CNI ADD done ... took_ms=N"). Then creates pods one at a time
(POST to the API), each measured from the POST to phase Running seen on a watch, and reports
the median apply->Running, the median CNI ADD duration, and their ratio.
Usage: python3 bench/cni_share.py [--pods 20] [--peapod PATH]
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apply_latency import Api, Watch, free_port, pod  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CNI_CONF_DIR = "/run/peapod-cni-bench/net.d"
ADD_DONE = re.compile(r"CNI ADD done.*?took_ms=(\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def add_durations(log_path):
    with open(log_path, errors="replace") as f:
        text = ANSI.sub("", f.read())
    return [int(m.group(1)) for m in ADD_DONE.finditer(text)]


def summary(values):
    v = sorted(values)
    return f"min {v[0]:.0f}  median {statistics.median(v):.0f}  max {v[-1]:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--peapod", default=os.path.join(ROOT, "target/release/peapod"))
    args = ap.parse_args()
    if not os.path.exists(args.peapod):
        subprocess.run(["cargo", "build", "--release", "-p", "peapod"], cwd=ROOT, check=True)
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures], check=True)
    tmp = tempfile.mkdtemp(prefix="peapod-cni-bench-")
    state = os.path.join(tmp, "state")
    subprocess.run([args.peapod, "image", "import", "--state-dir", state,
                    os.path.join(fixtures, "busybox.oci.tar")], check=True, stdout=subprocess.DEVNULL)
    log_path = os.path.join(tmp, "up.log")
    log = open(log_path, "w")
    env = dict(os.environ, PEAPOD_CNI_CONF_DIR=CNI_CONF_DIR, PEAPOD_LOG="info,runtime::service::network=debug",
               NO_COLOR="1")
    up = subprocess.Popen([args.peapod, "up", "--state-dir", state, "--listen", f"127.0.0.1:{free_port()}",
                           "--node-api-listen", f"127.0.0.1:{free_port()}", "--node-name", "cni-bench"],
                          stdout=log, stderr=log, env=env)
    try:
        kubeconfig = os.path.join(state, "kubeconfig")
        for _ in range(300):
            if os.path.exists(kubeconfig):
                break
            time.sleep(0.1)
        api = Api(kubeconfig)
        for _ in range(600):
            try:
                node = json.load(api.request("GET", "/api/v1/nodes/cni-bench"))
                if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        watch = Watch(api)
        watch.start()
        time.sleep(0.5)

        lat, adds, shares = [], [], []
        for i in range(args.pods):
            name = f"cni-{i}"
            t0 = time.monotonic()
            api.request("POST", "/api/v1/namespaces/default/pods", pod(name)).read()
            watch.wait([name])
            ms = (watch.running[name] - t0) * 1000
            # The ADD line is logged before the containers start, so it is there by Running.
            found = add_durations(log_path)
            if len(found) != i + 1:
                raise RuntimeError(f"expected {i + 1} 'CNI ADD done' lines in {log_path}, found {len(found)}")
            lat.append(ms)
            adds.append(found[-1])
            shares.append(found[-1] / ms)
        print(f"sequential pods: {args.pods} (CNI conf dir {CNI_CONF_DIR})")
        print(f"apply->Running (ms): {summary(lat)}")
        print(f"CNI ADD (ms):        {summary(adds)}")
        print(f"CNI ADD share of apply->Running: median of ratios {100 * statistics.median(shares):.0f}%,"
              f" ratio of medians {100 * statistics.median(adds) / statistics.median(lat):.0f}%")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
        subprocess.run([args.peapod, "reset", "--state-dir", state], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
