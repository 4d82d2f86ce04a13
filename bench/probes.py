#!/usr/bin/env python3
"""CPU cost of probes in the node agent.

Starts `peapod up` in a temp state dir, measures its CPU use idle, then with N pods that
run busybox httpd and carry an httpGet readiness probe and a tcpSocket liveness probe at
periodSeconds 1 (2N probes a second; `--exec` adds an exec liveness probe instead of the
tcpSocket one; `--exec-only` gives each pod one exec liveness probe and nothing else;
`--period S` sets every probe's periodSeconds), once all are Ready. CPU is utime+stime of
the `peapod up` process (API server + agent; probes run in the agent) over a window, as a
percentage of one core; also, with the pods' shims and what they reaped (an exec probe's
process is forked by the shim and reaped by it), the whole cost of the pods to the node.
`--no-probes` runs the same pods without probes, for the baseline (pod workers' own resyncs).
`--requests` also counts the API requests made during the window (the server's access log),
by verb and resource, to show what idle pods still ask of the API server.
`--perf FILE` records a CPU profile of `peapod up` over the window (`perf record -g`; read it
with `perf report -i FILE`; a binary built with symbols shows names, e.g.
`CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --target-dir target/prof`).
Usage: python3 bench/probes.py [--pods 100] [--window 30] [--exec | --exec-only] [--period 1]
       [--no-probes] [--requests] [--perf FILE] [--peapod PATH]
"""
import argparse, collections, json, os, re, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apply_latency import wait_for_node, free_port, rss_kib, ROOT  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, reaped=False):
    """utime+stime of `pid`; with `reaped`, also of the children it waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def shims(state):
    """The pids of the shims of pods under the state dir `state`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[1] == b"shim" and argv[2].startswith(state.encode()):
            out.append(int(pid))
    return out


def pods_cpu(pids):
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid, reaped=True)
        except OSError:
            pass
    return total


def measure(pid, window, perf=None, state=None):
    """% of one core used by `pid` over `window` seconds; with `state`, also that of `pid`
    plus the pods' shims and what they reaped."""
    recorder = None
    if perf:
        recorder = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "999", "-p", str(pid), "-o", perf],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = shims(state) if state else []
    c0, s0, t0 = cpu_seconds(pid), pods_cpu(pids), time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    used = 100.0 * (cpu_seconds(pid) - c0) / elapsed
    with_pods = used + 100.0 * (pods_cpu(pids) - s0) / elapsed
    if recorder:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    return (used, with_pods) if state else used


ACCESS = re.compile(r'method=(\S+) uri=(\S+)')


def resource_of(uri):
    """`GET /api/v1/namespaces/default/configmaps/x?y` -> `configmaps`, with its subresource."""
    parts = uri.split("?", 1)[0].strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]
    if len(parts) >= 2 and parts[0] == "namespaces" and len(parts) > 2:
        parts = parts[2:]
    if not parts:
        return uri
    return parts[0] + ("/" + parts[2] if len(parts) > 2 else "")


def count_requests(text, seconds):
    counts = collections.Counter()
    for m in ACCESS.finditer(text):
        counts[f"{m.group(1)} {resource_of(m.group(2))}"] += 1
    total = sum(counts.values())
    print(f"API requests during the window: {total} ({total / seconds:.1f}/s)")
    for what, n in counts.most_common(12):
        print(f"  {n / seconds:6.2f}/s  {what}")


def pod(name, use_exec, probes=True, period=1, exec_only=False):
    liveness = ({"exec": {"command": ["true"]}} if use_exec or exec_only else {"tcpSocket": {"port": 8080}})
    liveness.update({"periodSeconds": period, "timeoutSeconds": 1})
    container = {
        "name": "web", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", "mkdir -p /www; echo ok > /www/healthz; exec httpd -f -p 8080 -h /www"],
        "livenessProbe": liveness}
    if not exec_only:
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": period}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "probes"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}} if probes else {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "probes"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "web", "image": "docker.io/library/busybox:latest",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "mkdir -p /www; echo ok > /www/healthz; exec httpd -f -p 8080 -h /www"]}]}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--exec", action="store_true", dest="use_exec")
    ap.add_argument("--exec-only", action="store_true")
    ap.add_argument("--period", type=int, default=1)
    ap.add_argument("--no-probes", action="store_false", dest="probes")
    ap.add_argument("--requests", action="store_true")
    ap.add_argument("--perf", default=None)
    ap.add_argument("--peapod", default=None)
    args = ap.parse_args()
    peapod = args.peapod
    if peapod is None:
        release = os.path.join(ROOT, "target/release/peapod")
        peapod = release if os.path.exists(release) else os.path.join(ROOT, "target/debug/peapod")
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures], check=True)
    tmp = tempfile.mkdtemp(prefix="peapod-bench-")
    state = os.path.join(tmp, "state")
    subprocess.run([peapod, "image", "import", "--state-dir", state,
                    os.path.join(fixtures, "busybox.oci.tar")], check=True, stdout=subprocess.DEVNULL)
    log_path = os.path.join(tmp, "up.log")
    log = open(log_path, "w")
    env = dict(os.environ, NO_COLOR="1")
    if args.requests:
        env["PEAPOD_LOG"] = "info,peapod::access=debug"
    up = subprocess.Popen([peapod, "up", "--state-dir", state, "--listen", f"127.0.0.1:{free_port()}",
                           "--node-api-listen", f"127.0.0.1:{free_port()}", "--node-name", "bench"],
                          stdout=log, stderr=log, env=env)
    try:
        api = wait_for_node(state)
        time.sleep(2)
        idle = measure(up.pid, min(args.window, 10))
        print(f"binary: {peapod}")
        print(f"peapod up CPU idle: {idle:.1f}% of one core")
        names = [f"probed-{i}" for i in range(args.pods)]
        for n in names:
            api.request("POST", "/api/v1/namespaces/default/pods", pod(n, args.use_exec, args.probes, args.period, args.exec_only)).read()
        deadline = time.monotonic() + 600
        while True:
            items = json.load(api.request("GET", "/api/v1/namespaces/default/pods?labelSelector=bench%3Dprobes"))["items"]
            running = sum(1 for p in items if p.get("status", {}).get("phase") == "Running")
            if running == len(names):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {running}/{len(names)} pods Running")
            time.sleep(1)
        time.sleep(5)
        log.flush()
        start = os.path.getsize(log_path)
        busy, with_pods = measure(up.pid, args.window, args.perf, state)
        if args.requests:
            with open(log_path, errors="replace") as f:
                f.seek(start)
                count_requests(f.read(), args.window)
        kind = "exec" if args.use_exec else "tcpSocket"
        if not args.probes:
            what = "no probes"
        elif args.exec_only:
            what = f"exec liveness at periodSeconds {args.period} ({args.pods / args.period:g} probes/s)"
        else:
            what = (f"httpGet readiness + {kind} liveness at periodSeconds {args.period} "
                    f"({2 * args.pods / args.period:g} probes/s)")
        print(f"peapod up CPU with {args.pods} pods, {what}: {busy:.1f}% of one core over {args.window:.0f} s")
        print(f"  with the pods' shims and what they reaped: {with_pods:.1f}% of one core")
        print(f"peapod up RSS: {rss_kib(up.pid) / 1024:.1f} MiB")
        items = json.load(api.request("GET", "/api/v1/namespaces/default/pods?labelSelector=bench%3Dprobes"))["items"]
        restarts = sum(c.get("restartCount", 0) for p in items for c in p["status"].get("containerStatuses", []))
        ready = sum(1 for p in items for c in p["status"].get("containerStatuses", []) if c.get("ready"))
        print(f"container restarts during the run: {restarts}; ready at the end: {ready}/{len(items)}")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
        subprocess.run([peapod, "reset", "--state-dir", state], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
