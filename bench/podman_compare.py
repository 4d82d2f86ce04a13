#!/usr/bin/env python3
"""peapod and `podman kube play`, side by side, on the same pod manifests.

For each runtime, N pods of `--containers` containers each (2 by default) are started one
after another from identical manifests (busybox, `sleep 3600`, image already local),
measuring from the start of the client command (`kubectl apply -f FILE` / `podman kube play
FILE`) until the pod is Running (peapod: seen on an API watch; podman: `kube play` returns
after starting the containers). For peapod also without the client process: N more pods,
each POSTed to the API directly, until Running on the watch (what `kubectl apply` adds is
its own start, discovery and request). Then the per-pod memory: peapod's shim RSS vs
podman's conmon + infra (pause) process RSS.

Podman needs two adjustments on this kind of machine, made here and undone at the end:
containers.conf `default_ulimits` within the hard limits (no CAP_SYS_RESOURCE), and the v1
`hugetlb` controller mounted (crun refuses hybrid cgroups without it).
Usage: python3 bench/podman_compare.py [--pods 20] [--containers 2]
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apply_latency import ROOT, Api, Watch, free_port, private_kib, rss_kib, smaps_kib  # noqa: E402

MANIFEST = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
{containers}"""

CONTAINER = """  - name: {name}
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"""


def container_names(n):
    return ["main"] + [f"side{i}" for i in range(1, n)]


def manifest(name, containers):
    return MANIFEST.format(name=name, containers="".join(
        CONTAINER.format(name=c) for c in container_names(containers)))


def pod_object(name, containers):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": c, "image": "docker.io/library/busybox:latest",
                 "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}
                for c in container_names(containers)]}}


def summary(label, ms, what="apply->Running"):
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"{label:8} {what} over {len(ms)} pods (ms): min {ms[0]:.0f}  median "
          f"{statistics.median(ms):.0f}  p99 {p99:.0f}  max {ms[-1]:.0f}")


def mem(pids, pods):
    """Sum over the processes, per pod: RSS, PSS and private memory in MiB."""
    per = lambda f: sum(f(p) for p in pids) / max(1, pods) / 1024
    return (f"RSS {per(rss_kib):.2f} MiB, PSS {per(lambda p: smaps_kib(p, 'Pss')):.2f} MiB, "
            f"private {per(private_kib):.2f} MiB")


def procs_named(pred):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if pred(cmd):
            out.append(int(p))
    return out


def bench_peapod(args, manifests, fixtures, tmp):
    state = os.path.join(tmp, "state")
    subprocess.run([args.peapod, "image", "import", "--state-dir", state,
                    os.path.join(fixtures, "busybox.oci.tar")], check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(tmp, "up.log"), "w")
    up = subprocess.Popen([args.peapod, "up", "--state-dir", state, "--listen", f"127.0.0.1:{free_port()}",
                           "--node-api-listen", f"127.0.0.1:{free_port()}", "--node-name", "bench"],
                          stdout=log, stderr=log)
    env = dict(os.environ, KUBECONFIG=os.path.join(state, "kubeconfig"), HOME=tmp)
    try:
        for _ in range(300):
            if os.path.exists(env["KUBECONFIG"]):
                break
            time.sleep(0.1)
        subprocess.run(["kubectl", "wait", "--for=condition=Ready", "node/bench", "--timeout=60s"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        watch = Watch(Api(env["KUBECONFIG"]))
        watch.start()
        time.sleep(0.5)
        lat = []
        for name, path in manifests:
            t0 = time.monotonic()
            subprocess.run(["kubectl", "apply", "-f", path], env=env, check=True, stdout=subprocess.DEVNULL)
            watch.wait([name])
            lat.append((watch.running[name] - t0) * 1000)
        summary("peapod", lat)
        api = Api(env["KUBECONFIG"])
        lat = []
        for i in range(len(manifests)):
            name = f"api-{i}"
            t0 = time.monotonic()
            api.request("POST", "/api/v1/namespaces/default/pods", pod_object(name, args.containers)).read()
            watch.wait([name])
            lat.append((watch.running[name] - t0) * 1000)
        summary("peapod", lat, "API POST->Running")
        time.sleep(1)
        pods = 2 * len(manifests)
        shims = procs_named(lambda c: len(c) > 1 and c[1] == b"shim" and state.encode() in b" ".join(c))
        print(f"peapod   per-pod overhead (shim): {mem(shims, pods)}; "
              f"peapod up RSS with {pods} pods {rss_kib(up.pid)/1024:.1f} MiB")
    finally:
        up.terminate()
        up.wait(timeout=30)
        subprocess.run([args.peapod, "reset", "--state-dir", state], stdout=subprocess.DEVNULL)


def bench_podman(args, manifests, fixtures, tmp):
    conf = os.path.join(tmp, "containers.conf")
    hard_nofile = int(subprocess.check_output(["bash", "-c", "ulimit -Hn"]).strip())
    with open(conf, "w") as f:
        # nproc equal to the hard limit is still refused by crun here; 4096 is plenty.
        f.write(f'[containers]\ndefault_ulimits = ["nofile={hard_nofile}:{hard_nofile}", "nproc=4096:4096"]\n')
    env = dict(os.environ, CONTAINERS_CONF=conf)
    links_before = set(os.listdir("/sys/class/net"))
    networks_before = subprocess.run(["podman", "network", "ls", "--format", "{{.Name}}"], env=env,
                                     capture_output=True, text=True).stdout.split()
    hugetlb = "/sys/fs/cgroup/hugetlb"
    mounted_here = False
    if os.path.isdir("/sys/fs/cgroup/memory") and subprocess.run(["mountpoint", "-q", hugetlb]).returncode != 0:
        os.makedirs(hugetlb, exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", hugetlb], check=True)
        mounted_here = True
    try:
        subprocess.run(["podman", "load", "-q", "-i", os.path.join(fixtures, "busybox.docker.tar")],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["podman", "tag", "localhost/busybox:latest", "docker.io/library/busybox:latest"],
                       env=env, check=True)
        lat = []
        for name, path in manifests:
            t0 = time.monotonic()
            subprocess.run(["podman", "kube", "play", path], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lat.append((time.monotonic() - t0) * 1000)
            states = [subprocess.check_output(["podman", "inspect", f"{name}-{c}", "--format",
                                               "{{.State.Status}}"], env=env).decode().strip()
                      for c in container_names(args.containers)]
            assert all(s == "running" for s in states), f"{name}: {states}"
        summary("podman", lat)
        conmons = procs_named(lambda c: c[0].endswith(b"conmon"))
        pauses = procs_named(lambda c: c[0].endswith(b"catatonit") or c[0].endswith(b"/pause"))
        print(f"podman   per-pod overhead (conmon per container + infra's conmon and process): "
              f"{mem(conmons + pauses, len(manifests))}")
    finally:
        for name, path in manifests:
            subprocess.run(["podman", "pod", "rm", "-f", "-t", "0", name], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["podman", "rmi", "-f", "docker.io/library/busybox:latest", "localhost/busybox:latest"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # `kube play` makes its own network (and bridge) on first use: remove what it made.
        networks = subprocess.run(["podman", "network", "ls", "--format", "{{.Name}}"], env=env,
                                  capture_output=True, text=True).stdout.split()
        for net in set(networks) - set(networks_before):
            subprocess.run(["podman", "network", "rm", "-f", net], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for link in set(os.listdir("/sys/class/net")) - links_before:
            if link.startswith("cni-podman"):
                subprocess.run(["ip", "link", "del", link], stderr=subprocess.DEVNULL)
        if mounted_here:
            subprocess.run(["umount", hugetlb])
            os.rmdir(hugetlb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--containers", type=int, default=2)
    ap.add_argument("--peapod", default=os.path.join(ROOT, "target/release/peapod"))
    args = ap.parse_args()
    if not os.path.exists(args.peapod):
        subprocess.run(["cargo", "build", "--release", "-p", "peapod"], cwd=ROOT, check=True)
    if shutil.which("podman") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "podman"], check=True)
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures], check=True)
    tmp = tempfile.mkdtemp(prefix="peapod-cmp-")
    manifests = []
    for i in range(args.pods):
        name = f"cmp-{i}"
        path = os.path.join(tmp, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(manifest(name, args.containers))
        manifests.append((name, path))
    try:
        bench_peapod(args, manifests, fixtures, tmp)
        bench_podman(args, manifests, fixtures, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
