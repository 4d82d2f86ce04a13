"""Drives peapod with the official Python client (`kubernetes` on PyPI): ConfigMap and Pod
create/list/watch/patch/delete, logs, exec (plain, with stdin, with stdin closed, exit
codes), and port-forward (a connection to a listening port, and the error of one that is not).
Prints what it observed as one JSON object; the Rust test decides what is right.

Usage: python_client.py KUBECONFIG NAMESPACE IMAGE
"""

import json
import signal
import sys
import time

from kubernetes import client, config, watch
from kubernetes.stream import portforward, stream

kubeconfig, ns, image = sys.argv[1], sys.argv[2], sys.argv[3]
seen = {}


def timed_out(_signum, _frame):
    """A step that never answers fails the test instead of hanging it."""
    print("timed out; observed so far: " + json.dumps(seen, default=str), file=sys.stderr)
    sys.exit(2)


signal.signal(signal.SIGALRM, timed_out)
signal.alarm(300)
config.load_kube_config(config_file=kubeconfig)
core = client.CoreV1Api()

# ConfigMap: create, patch, read, list by label, delete.
core.create_namespaced_config_map(
    ns,
    {"metadata": {"name": "py-cm", "labels": {"from": "python"}}, "data": {"a": "1"}},
)
core.patch_namespaced_config_map("py-cm", ns, {"data": {"b": "2"}})
seen["configmap_data"] = core.read_namespaced_config_map("py-cm", ns).data
seen["configmaps_labelled"] = [
    c.metadata.name
    for c in core.list_namespaced_config_map(ns, label_selector="from=python").items
]
core.delete_namespaced_config_map("py-cm", ns)
seen["configmaps_after_delete"] = [
    c.metadata.name
    for c in core.list_namespaced_config_map(ns, label_selector="from=python").items
]

# A pod that logs a line and serves a file on :8080; watched until it runs.
core.create_namespaced_pod(
    ns,
    {
        "metadata": {"name": "py-pod"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "sh",
                        "-c",
                        "echo started-py; mkdir -p /www && echo hello-from-py > /www/index.html"
                        " && exec httpd -f -p 8080 -h /www",
                    ],
                }
            ],
        },
    },
)
events = []
w = watch.Watch()
for ev in w.stream(
    core.list_namespaced_pod,
    ns,
    field_selector="metadata.name=py-pod",
    timeout_seconds=120,
):
    events.append(ev["type"])
    if ev["object"].status.phase == "Running":
        w.stop()
seen["watch_events"] = events
seen["watch_phase"] = ev["object"].status.phase
seen["pods"] = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
core.patch_namespaced_pod("py-pod", ns, {"metadata": {"labels": {"patched": "yes"}}})
seen["pod_labels"] = core.read_namespaced_pod("py-pod", ns).metadata.labels

deadline = time.time() + 60
while True:
    log = core.read_namespaced_pod_log("py-pod", ns)
    if "started-py" in log or time.time() > deadline:
        break
    time.sleep(0.2)
seen["log"] = log

# Exec without stdin: stdout and stderr together.
seen["exec_output"] = stream(
    core.connect_get_namespaced_pod_exec,
    "py-pod",
    ns,
    command=["sh", "-c", "echo out-$((6*7)); echo err >&2"],
    stdout=True,
    stderr=True,
    stdin=False,
    tty=False,
)

# Exec with stdin: a shell reads commands, answers, and exits with a code.
resp = stream(
    core.connect_get_namespaced_pod_exec,
    "py-pod",
    ns,
    command=["sh"],
    stdin=True,
    stdout=True,
    stderr=True,
    tty=False,
    _preload_content=False,
)
resp.write_stdin("echo hello-$((6*7))\n")
seen["stdin_reply"] = resp.readline_stdout(timeout=30)
resp.write_stdin("echo to-stderr >&2; exit 3\n")
resp.run_forever(timeout=30)
seen["stdin_stderr"] = resp.read_stderr()
seen["stdin_returncode"] = resp.returncode
seen["protocol"] = resp.subprotocol
resp.close()

# Exec with stdin closed (v5): `cat` sees the end of its input and exits 0.
resp = stream(
    core.connect_get_namespaced_pod_exec,
    "py-pod",
    ns,
    command=["sh", "-c", "cat; echo cat-done"],
    stdin=True,
    stdout=True,
    stderr=True,
    tty=False,
    _preload_content=False,
)
resp.write_stdin(b"bytes-in\n")
resp.close_channel(0)
resp.run_forever(timeout=30)
seen["cat_output"] = resp.read_stdout()
seen["cat_returncode"] = resp.returncode
resp.close()

# Port-forward: an HTTP request through the pod's :8080.
pf = portforward(core.connect_get_namespaced_pod_portforward, "py-pod", ns, ports="8080")
s = pf.socket(8080)
s.setblocking(True)
s.sendall(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
reply = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    reply += chunk
s.close()
seen["portforward_reply"] = reply.decode("utf-8", "replace")
seen["portforward_error"] = pf.error(8080)

# Port-forward to a port nothing listens on: the error channel says why.
pf = portforward(core.connect_get_namespaced_pod_portforward, "py-pod", ns, ports="9999")
s = pf.socket(9999)
s.setblocking(True)
try:
    s.sendall(b"x")
    while s.recv(1024):
        pass
except OSError:
    pass
s.close()
deadline = time.time() + 30
while pf.error(9999) is None and time.time() < deadline:
    time.sleep(0.1)
seen["portforward_closed_port_error"] = pf.error(9999)

core.delete_namespaced_pod("py-pod", ns, grace_period_seconds=0)
deadline = time.time() + 90
gone = False
while time.time() < deadline:
    names = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
    if "py-pod" not in names:
        gone = True
        break
    time.sleep(0.2)
seen["pod_gone"] = gone

print(json.dumps(seen))
