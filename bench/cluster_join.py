#!/usr/bin/env python3
"""Time for a node to join and become Ready, and pod-to-pod round trip same-node vs cross-node.

On this one machine, as the multi-node e2e tests do: `peapod up` on the host is the control
plane and a node (API server and node API on a test bridge, so its InternalIP is routable from
the other nodes); each further node is a network namespace with a veth into that bridge, a mount
namespace of its own (held by a sleeping process), its own state dir, CNI config dir and CNI
allocation dir (bind-mounted over /var/lib/cni inside it), running `peapod join` with the
command `peapod up` prints. Every node gets a KubeletConfiguration with image GC and the disk
eviction signals off, so how full this machine's disk is does not matter.

Per joined node (one after the other, each alone on the machine): the time from starting
`peapod join` until its Node is registered, Ready, and until a pod pinned to it by a
nodeSelector on kubernetes.io/hostname, created just before the join, is bound and Running
(all seen on watches of the API). Then pod-to-pod round trip by pod IP: busybox `ping` run
once per pair through `kubectl exec` (the exec is not in the figure), same node (on the host's
node and on a joined one) against cross node (host to joined, joined to joined); min, median
(of the per-packet times), avg and max.

Everything made is removed at the end, also on an error or Ctrl-C: agents stopped and
`peapod reset` in each node's namespaces, namespaces and veths, `peapod up` stopped and reset,
the bridge, the CNI config dir, the temp dir; `scripts/check-leaks.sh` then runs.
Usage: python3 bench/cluster_join.py [--nodes 2] [--count 50] [--interval 0.2] [--peapod PATH]
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, threading
import time, urllib.request

from apply_latency import ROOT, Api

CNI_CONF_DIR = "/run/peapod-join-bench/net.d"
BRIDGE = "ppjbench"
# Of the benchmarking range 198.18.0.0/15, a /24 the e2e tests' bridges (198.18-19.1-250) never use.
PREFIX = "198.18.251"
HOST_IP = PREFIX + ".1"
HOST_NODE = "jb-host"
IMAGE = "docker.io/library/busybox:latest"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PING_TIME = re.compile(r"seq=\d+ ttl=\d+ time=([\d.]+) ms")
PING_SUMMARY = re.compile(r"min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms")


def run(*cmd, **kw):
    """Runs a command to completion, failing with its stderr; returns stdout."""
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def quietly(*cmd):
    """Runs a command, ignoring failure (teardown of what may be gone already)."""
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def write_kubelet_config(path):
    """As the e2e harness's: image GC off and only the memory eviction signal."""
    with open(path, "w") as f:
        f.write("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                "imageGCHighThresholdPercent: 100\n"
                "evictionHard:\n  memory.available: \"<100Mi\"\n")


def stop(proc, grace=15):
    """SIGTERM, then SIGKILL after `grace` seconds; reaps it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def ready(node):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


class Watcher(threading.Thread):
    """The first time each object of a collection is seen meeting each named condition, from
    a list and then a watch from its resourceVersion (listed and watched again on an error)."""

    def __init__(self, api, path, conditions):
        super().__init__(daemon=True)
        self.api, self.path, self.conditions = api, path, conditions
        self.seen, self.cond = {}, threading.Condition()

    def record(self, obj):
        name = obj.get("metadata", {}).get("name")
        now = time.monotonic()
        with self.cond:
            for key, check in self.conditions.items():
                if (name, key) not in self.seen and check(obj):
                    self.seen[(name, key)] = now
            self.cond.notify_all()

    def run(self):
        while True:
            try:
                listed = json.load(self.api.request("GET", self.path))
                for item in listed.get("items", []):
                    self.record(item)
                rv = listed.get("metadata", {}).get("resourceVersion", "")
                req = urllib.request.Request(
                    f"{self.api.server}{self.path}?watch=true&resourceVersion={rv}&timeoutSeconds=600")
                req.add_header("Authorization", "Bearer " + self.api.token)
                for line in urllib.request.urlopen(req, context=self.api.ctx, timeout=900):
                    ev = json.loads(line)
                    if ev.get("type") == "ERROR":
                        break
                    self.record(ev.get("object", {}))
            except Exception:
                time.sleep(0.2)

    def wait(self, name, key, timeout, alive=lambda: None):
        """The time `name` was first seen meeting `key`; `alive` raises when waiting is futile."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while (name, key) not in self.seen:
                alive()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{name} not {key} after {timeout} s")
                self.cond.wait(min(left, 0.5))
            return self.seen[(name, key)]


def pod(name, node):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "join"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "nodeSelector": {"kubernetes.io/hostname": node},
                     "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}


class NetnsNode:
    """One node: a network namespace on the bridge as PREFIX.<10+index>, a mount namespace of
    its own, its dirs, and (once started) its `peapod join`."""

    def __init__(self, tmp, index, name):
        self.name, self.index = name, index
        self.dir = os.path.join(tmp, name)
        self.state = os.path.join(self.dir, "state")
        self.ip = f"{PREFIX}.{10 + index}"
        self.netns = f"{BRIDGE}-n{index}"
        self.holder = self.agent = None
        self.log_path = os.path.join(self.dir, "join.log")

    def create(self, peapod, archive):
        os.makedirs(self.dir)
        veth = f"{BRIDGE}v{self.index}"
        quietly("ip", "netns", "del", self.netns)
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        run("ip", "link", "set", veth, "master", BRIDGE, "up")
        run("ip", "-n", self.netns, "addr", "add", f"{self.ip}/24", "dev", "eth0")
        run("ip", "-n", self.netns, "link", "set", "eth0", "up")
        run("ip", "-n", self.netns, "link", "set", "lo", "up")
        # Mounts from the host still propagate in, none leak out.
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "slave", "--", "nsenter",
             f"--net=/run/netns/{self.netns}", "--", "sleep", "100000"],
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while self._comm() != "sleep":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the namespaces of {self.name}")
            time.sleep(0.02)
        cni_lib = os.path.join(self.dir, "cni-lib")
        os.makedirs(cni_lib)
        run(*self.nsenter(), "mount", "--bind", cni_lib, "/var/lib/cni")
        run(peapod, "image", "import", "--state-dir", self.state, archive)

    def _comm(self):
        try:
            with open(f"/proc/{self.holder.pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return ""

    def nsenter(self):
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "--"]

    def start_join(self, peapod, host_state, join_args):
        cert, key = os.path.join(self.dir, "node.crt"), os.path.join(self.dir, "node.key")
        run(peapod, "node-cert", "--state-dir", host_state, "--san", self.ip, "--san", self.name,
            "--cert", cert, "--key", key)
        config = os.path.join(self.dir, "kubelet-config.yaml")
        write_kubelet_config(config)
        log = open(self.log_path, "w")
        t0 = time.monotonic()
        self.agent = subprocess.Popen(
            self.nsenter() + [peapod, "join", *join_args,
                              "--node-api-token-file", os.path.join(host_state, "node-api-token"),
                              "--tls-cert-file", cert, "--tls-private-key-file", key, "--proxy",
                              "--config", config, "--state-dir", self.state, "--node-name", self.name,
                              "--node-api-listen", f"{self.ip}:10250",
                              "--cni-conf-dir", os.path.join(self.dir, "net.d")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env=dict(os.environ, PEAPOD_LOG="info", NO_COLOR="1"))
        log.close()
        return t0

    def alive(self):
        if self.agent is not None and self.agent.poll() is not None:
            raise RuntimeError(f"peapod join of {self.name} exited ({self.agent.returncode}):\n"
                               + tail(self.log_path))

    def teardown(self, peapod, problems):
        """Stops the agent, resets the node inside its namespaces, checks that nothing of its
        pods is left, removes its namespaces (and with them its veth)."""
        stop(self.agent)
        if self.holder is not None and self.holder.poll() is None:
            if os.path.exists(self.state):
                out = subprocess.run(self.nsenter() + [peapod, "reset", "--state-dir", self.state],
                                     stdin=subprocess.DEVNULL, capture_output=True, text=True)
                if out.returncode != 0:
                    problems.append(f"peapod reset in {self.name} failed: {out.stderr.strip()}")
            try:
                with open(f"/proc/{self.holder.pid}/mountinfo") as f:
                    mounts = [l.strip() for l in f if self.state in l]
            except OSError:
                mounts = []
            if mounts:
                problems.append(f"mounts left in {self.name}: {mounts}")
            nets = os.path.join(self.dir, "cni-lib/networks")
            for net in os.listdir(nets) if os.path.isdir(nets) else []:
                ips = [n for n in os.listdir(os.path.join(nets, net)) if n[:1].isdigit()]
                if ips:
                    problems.append(f"pod addresses left in {self.name}: {ips}")
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
        quietly("ip", "netns", "del", self.netns)


def ping(kubectl, src, dst_ip, count, interval):
    """Per-packet round trips (ms) and busybox ping's min/avg/max, from pod `src` to `dst_ip`."""
    # Until the first answer: routes to a new node's range may follow its Ready by a moment.
    deadline = time.monotonic() + 60
    while subprocess.run(kubectl + ["exec", src, "--", "ping", "-c", "1", "-W", "1", dst_ip],
                         stdin=subprocess.DEVNULL, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{src} never reached {dst_ip}")
    out = run(*kubectl, "exec", src, "--", "ping", "-c", str(count), "-i", str(interval), dst_ip)
    times = [float(t) for t in PING_TIME.findall(out)]
    summary = PING_SUMMARY.search(out)
    if not times or not summary:
        raise RuntimeError(f"no round trips in ping's output:\n{out}")
    mn, avg, mx = (float(v) for v in summary.groups())
    return {"n": len(times), "min": mn, "median": statistics.median(times), "avg": avg, "max": mx}


def nft_tables():
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {l.strip() for l in out.splitlines() if l.startswith("table ")}


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def leftover_processes(needle):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd.strip()}")
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2, help="nodes that join (besides the host's)")
    ap.add_argument("--count", type=int, default=50, help="pings per pair")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between pings")
    ap.add_argument("--peapod", default=os.path.join(ROOT, "target/release/peapod"))
    args = ap.parse_args()
    if not 1 <= args.nodes <= 200:
        ap.error("--nodes is 1..200")
    peapod = os.path.abspath(args.peapod)
    if not os.path.exists(peapod):
        subprocess.run(["cargo", "build", "--release", "-p", "peapod"], cwd=ROOT, check=True)
    fixtures = os.path.join(ROOT, "target/fixtures")
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/build-busybox-image.sh"), fixtures],
                   check=True)
    archive = os.path.join(fixtures, "busybox.oci.tar")
    # A SIGTERM unwinds like Ctrl-C, through the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tables_before, had_peapod0 = nft_tables(), link_exists("peapod0")
    tmp = tempfile.mkdtemp(prefix="peapod-join-bench-")
    host_state = os.path.join(tmp, "state")
    up_log = os.path.join(tmp, "up.log")
    up, nodes, problems = None, [], []
    try:
        quietly("ip", "link", "del", BRIDGE)
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")

        run(peapod, "image", "import", "--state-dir", host_state, archive)
        config = os.path.join(tmp, "kubelet-config.yaml")
        write_kubelet_config(config)
        with open(up_log, "w") as log:
            # The node API on the bridge too: that address is the host node's InternalIP, which
            # the other nodes route its pods' range through.
            up = subprocess.Popen(
                [peapod, "up", "--state-dir", host_state, "--listen", f"{HOST_IP}:0",
                 "--node-api-listen", f"{HOST_IP}:0", "--node-name", HOST_NODE, "--config", config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env=dict(os.environ, PEAPOD_CNI_CONF_DIR=CNI_CONF_DIR, PEAPOD_LOG="info",
                         NO_COLOR="1"))

        def up_alive():
            if up.poll() is not None:
                raise RuntimeError(f"peapod up exited ({up.returncode}):\n" + tail(up_log))

        kubeconfig = os.path.join(host_state, "kubeconfig")
        deadline = time.monotonic() + 60
        while not os.path.exists(kubeconfig):
            up_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("peapod up wrote no kubeconfig")
            time.sleep(0.1)
        api = Api(kubeconfig)
        nodes_w = Watcher(api, "/api/v1/nodes", {
            "registered": lambda n: True,
            "podCIDR": lambda n: bool(n.get("spec", {}).get("podCIDR")),
            "Ready": ready})
        pods_w = Watcher(api, "/api/v1/namespaces/default/pods", {
            "bound": lambda p: bool(p.get("spec", {}).get("nodeName")),
            "Running": lambda p: p.get("status", {}).get("phase") == "Running"})
        nodes_w.start()
        pods_w.start()
        nodes_w.wait(HOST_NODE, "Ready", 120, up_alive)

        join_args = None
        deadline = time.monotonic() + 60
        while join_args is None:
            up_alive()
            for line in ANSI.sub("", tail(up_log, 100000)).splitlines():
                words = line.split()
                if "join" in words and "--server" in words and "--token" in words:
                    at = words.index("join") + 1
                    join_args = words[at:at + 6]
            if join_args is None and time.monotonic() > deadline:
                raise TimeoutError("peapod up printed no join command")
            time.sleep(0.1)

        def create(name, node):
            api.request("POST", "/api/v1/namespaces/default/pods", pod(name, node)).read()

        for name in ("jb-host-a", "jb-host-b"):
            create(name, HOST_NODE)

        # The nodes join one after the other, each timed alone.
        rows = []
        for i in range(1, args.nodes + 1):
            node = NetnsNode(tmp, i, f"jb-{i}")
            nodes.append(node)
            node.create(peapod, archive)
            first = f"jb-{i}-first"
            create(first, node.name)
            t0 = node.start_join(peapod, host_state, join_args)
            row = {"node": node.name}
            for key in ("registered", "podCIDR", "Ready"):
                row[key] = nodes_w.wait(node.name, key, 300, node.alive) - t0
            for key in ("bound", "Running"):
                row["pod " + key] = pods_w.wait(first, key, 300, node.alive) - t0
            rows.append(row)
            print(f"{node.name} joined: Ready after {row['Ready']:.2f} s, "
                  f"its first pod Running after {row['pod Running']:.2f} s", flush=True)
        create("jb-1-b", "jb-1")
        for name in ("jb-host-a", "jb-host-b", "jb-1-b"):
            pods_w.wait(name, "Running", 300, nodes[0].alive)

        def pod_ip(name):
            return json.load(api.request("GET", f"/api/v1/namespaces/default/pods/{name}"))["status"]["podIP"]

        home = os.path.join(tmp, "home")
        os.makedirs(home)
        kubectl = ["env", f"KUBECONFIG={kubeconfig}", f"HOME={home}", "kubectl"]
        pairs = [("same node (host's)", "jb-host-a", "jb-host-b"),
                 ("same node (joined)", "jb-1-first", "jb-1-b"),
                 ("cross node: host -> joined", "jb-host-a", "jb-1-first")]
        if args.nodes >= 2:
            pairs.append(("cross node: joined -> joined", "jb-1-first", "jb-2-first"))
        rtts = [(label, src, dst, ping(kubectl, src, pod_ip(dst), args.count, args.interval))
                for label, src, dst in pairs]

        print(f"\npeapod {peapod}; {args.nodes} node(s) joined one after the other "
              f"(network namespaces on bridge {BRIDGE}, host-gw)")
        print("\ntime from starting `peapod join` (s)")
        keys = ["registered", "podCIDR", "Ready", "pod bound", "pod Running"]
        heads = ["Node registered", "podCIDR set", "Node Ready", "1st pod bound", "1st pod Running"]
        print(f"{'node':<8}" + "".join(f"{h:>17}" for h in heads))
        for row in rows:
            print(f"{row['node']:<8}" + "".join(f"{row[k]:>17.2f}" for k in keys))
        if len(rows) > 1:
            print(f"{'median':<8}" + "".join(f"{statistics.median(r[k] for r in rows):>17.2f}"
                                             for k in keys))
        print(f"\npod-to-pod round trip by pod IP (busybox ping -c {args.count} -i {args.interval}, ms)")
        print(f"{'pair':<30}{'from -> to':<26}{'n':>4}{'min':>9}{'median':>9}{'avg':>9}{'max':>9}")
        for label, src, dst, r in rtts:
            print(f"{label:<30}{src + ' -> ' + dst:<26}{r['n']:>4}{r['min']:>9.3f}"
                  f"{r['median']:>9.3f}{r['avg']:>9.3f}{r['max']:>9.3f}")
    finally:
        for node in reversed(nodes):
            node.teardown(peapod, problems)
        stop(up, 60)
        if os.path.exists(host_state):
            out = subprocess.run([peapod, "reset", "--state-dir", host_state],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if out.returncode != 0:
                problems.append(f"peapod reset of the host's node failed: {out.stderr.strip()}")
        # The host's routes to the nodes' pod ranges go with the bridge.
        quietly("ip", "link", "del", BRIDGE)
        if not had_peapod0 and link_exists("peapod0"):
            quietly("ip", "link", "del", "peapod0")
        for table in sorted(nft_tables() - tables_before):
            problems.append(f"nftables {table} left by peapod reset (removed)")
            quietly("nft", "delete", *table.split()[1:])
        for proc in leftover_processes(tmp):
            problems.append(f"process left: {proc}")
        for line in open("/proc/self/mountinfo"):
            if tmp in line:
                problems.append(f"mount left: {line.strip()}")
        shutil.rmtree(os.path.dirname(CNI_CONF_DIR), ignore_errors=True)
        if problems:
            print(f"\nleft after cleanup (logs kept in {tmp}):\n  " + "\n  ".join(problems),
                  file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        leaks = subprocess.run(["bash", os.path.join(ROOT, "scripts/check-leaks.sh")],
                               capture_output=True, text=True)
        print("scripts/check-leaks.sh: " + (leaks.stdout + leaks.stderr).strip())
    return 1 if problems or leaks.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
