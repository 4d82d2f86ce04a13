#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/: a few valid inputs per target.

Run from anywhere; the seeds are committed, so this only needs re-running when a target's
input format changes.
"""
import io, json, os, re, struct, tarfile, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(ROOT, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "labels": {"app": "web"}},
       "spec": {"containers": [{"name": "web", "image": "busybox:1.36",
                                "command": ["sh", "-c", "echo $(GREETING)"],
                                "env": [{"name": "GREETING", "value": "hi"}],
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                              "limits": {"cpu": "1", "memory": "128Mi"}},
                                "ports": [{"containerPort": 80}]}]}}
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment",
          "metadata": {"name": "web"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
             "data": {"a": "b"}}
CRONJOB = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
           "spec": {"schedule": "*/5 * * * *",
                    "jobTemplate": {"spec": {"template": {"spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{"name": "c", "image": "busybox"}]}}}}}}

# label_selector: query syntax and LabelSelector objects.
put("label_selector", "eq", "app=web")
put("label_selector", "set", "app in (web,api),!legacy,tier notin (db)")
put("label_selector", "exists", "env,tier!=back")
put("label_selector", "object", json.dumps({"matchLabels": {"app": "web"},
    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]},
                         {"key": "env", "operator": "Exists"}]}))

# field_selector: kind line, then the selector.
put("field_selector", "pod", "Pod\nmetadata.name=web-0,spec.nodeName!=node-2")
put("field_selector", "pod_phase", "Pod\nstatus.phase==Running,metadata.namespace=default")
put("field_selector", "event", "Event\ninvolvedObject.name=web,reason=Scheduled")
put("field_selector", "secret", "Secret\ntype=kubernetes.io/service-account-token")

# quantity
for i, q in enumerate(["500m", "1Gi", "1e3", "0.5", "-2Ki", "1.5E", "100n", "+12.25M"]):
    put("quantity", f"q{i}", q)

# patch: type line, then [document, patch].
put("patch", "json", "json\n" + json.dumps([{"a": 1, "l": [1, 2]},
    [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/l/0"},
     {"op": "test", "path": "/a", "value": 1}, {"op": "move", "from": "/a", "path": "/c"}]]))
put("patch", "merge", "merge\n" + json.dumps([{"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": [3]}}]))
put("patch", "smp_pod", "Pod\n" + json.dumps([POD, {"spec": {"containers": [
    {"name": "web", "image": "busybox:1.37"}, {"name": "side", "image": "nginx"}]}}]))
put("patch", "smp_delete", "Pod\n" + json.dumps([POD, {"spec": {"containers": [
    {"name": "web", "$patch": "delete"}]}, "metadata": {"$retainKeys": ["name"]}}]))
put("patch", "smp_deploy", "Deployment\n" + json.dumps([DEPLOY, {"spec": {"replicas": 3,
    "template": {"spec": {"$setElementOrder/containers": [{"name": "web"}],
                          "containers": [{"name": "web", "env": [{"name": "A", "value": "1"}]}]}}}}]))


# protobuf: `k8s\0` + runtime.Unknown{typeMeta, raw}.
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ld(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def envelope(api_version, kind, raw):
    return b"k8s\0" + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw)


entry = ld(1, b"a") + ld(2, b"b")
meta = ld(1, b"cfg") + ld(3, b"default") + ld(11, ld(1, b"app") + ld(2, b"x"))
put("protobuf", "configmap", envelope(b"v1", b"ConfigMap", ld(1, meta) + ld(2, entry)))
container = ld(1, b"busybox") + ld(2, b"busybox") + ld(3, b"sleep") + ld(3, b"3600") + ld(8, b"")
pod_spec = ld(2, container) + ld(3, b"")
labels = ld(11, ld(1, b"app") + ld(2, b"web"))
template = ld(1, labels) + ld(2, pod_spec)
dep_spec = varint(1 << 3) + varint(1) + ld(2, ld(1, ld(1, b"app") + ld(2, b"web"))) + ld(3, template)
put("protobuf", "deployment", envelope(b"apps/v1", b"Deployment", ld(1, ld(1, b"web") + labels) + ld(2, dep_spec)))
put("protobuf", "service", b"k8s\0\x0a\x0d\x0a\x02v1\x12\x07Service\x12\x70\x0a\x23\x0a\x05mydb2"
    b"\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x5a\x0c\x0a\x03app\x12\x05mydb2"
    b"\x12\x45\x0a\x1d\x0a\x075432-db\x12\x03TCP\x18\xb8\x2a\x22\x08\x08\x01\x10\x00\x1a\x02db"
    b"\x28\x00\x12\x0c\x0a\x03app\x12\x05mydb2\x1a\x00\x22\x08NodePort\x3a\x00\x42\x00\x52\x00"
    b"\x5a\x00\x60\x00\x68\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00")

# request: path, query, Accept.
put("request", "list", "/api/v1/namespaces/default/pods\nlabelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1&limit=50\napplication/json")
put("request", "watch", "/apis/apps/v1/watch/namespaces/default/deployments\nwatch=true&timeoutSeconds=30&resourceVersion=12&allowWatchBookmarks=true\napplication/json;as=Table;v=v1;g=meta.k8s.io")
put("request", "get_status", "/api/v1/namespaces/kube-system/pods/coredns/status\n\napplication/json")
put("request", "write", "/apis/batch/v1/namespaces/default/jobs\ndryRun=All&fieldValidation=Strict&fieldManager=kubectl\n*/*")
import base64
token = base64.urlsafe_b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": 12, "start": "default/web-1"}).encode()).decode().rstrip("=")
put("request", "continue", f"/api/v1/namespaces/default/pods\nlimit=2&continue={token}\napplication/json")
put("request", "cluster", "/api/v1/nodes/node-1\ngracePeriodSeconds=0&includeObject=Object\n")

# validate: `<Kind> <mode>` line, then the body.
put("validate", "pod_json", "Pod 0\n" + json.dumps(POD))
put("validate", "pod_yaml_warn", "Pod 4\napiVersion: v1\nkind: Pod\nmetadata:\n  name: y\nspec:\n  containers:\n  - name: c\n    image: busybox\n    bogus: 1\n")
put("validate", "deployment", "Deployment 0\n" + json.dumps(DEPLOY))
put("validate", "service", "Service 3\n" + json.dumps(SERVICE))
put("validate", "configmap_pb", "ConfigMap 2\n".encode() + envelope(b"v1", b"ConfigMap", ld(1, meta) + ld(2, entry)))
put("validate", "cronjob", "CronJob 0\n" + json.dumps(CRONJOB))
put("validate", "namespace", "Namespace 6\n" + json.dumps({"metadata": {"name": "dev", "labels": {"a": "b"}}}))


# spdy: SYN_STREAM with a compressed header block, then DATA, PING, SETTINGS, WINDOW_UPDATE.
def spdy_dictionary():
    src = open(os.path.join(ROOT, "..", "crates", "nodeapi", "src", "streaming", "spdy.rs")).read()
    words_src = src[src.index("const DICT_WORDS"):src.index("];", src.index("const DICT_WORDS"))]
    words = re.findall(r'"((?:[^"\\]|\\.)*)"', words_src)
    tail_src = src[src.index("const DICT_TAIL"):src.index(");", src.index("const DICT_TAIL"))]
    tail = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', tail_src))
    d = b""
    for w in words:
        w = w.encode().decode("unicode_escape").encode("latin-1")
        d += struct.pack(">I", len(w)) + w
    return d + tail.encode()


def control(kind, flags, body):
    return struct.pack(">HHB", 0x8003, kind, flags) + len(body).to_bytes(3, "big") + body


def headers(pairs):
    raw = struct.pack(">I", len(pairs))
    for k, v in pairs:
        raw += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return raw


comp = zlib.compressobj(zdict=spdy_dictionary())
block1 = comp.compress(headers([(b"streamtype", b"error"), (b"port", b"8080"), (b"requestid", b"0")])) + comp.flush(zlib.Z_SYNC_FLUSH)
block2 = comp.compress(headers([(b"streamtype", b"data"), (b"port", b"8080"), (b"requestid", b"0")])) + comp.flush(zlib.Z_SYNC_FLUSH)
syn1 = control(1, 0, struct.pack(">IIH", 1, 0, 0) + block1)
syn3 = control(1, 0, struct.pack(">IIH", 3, 0, 0) + block2)
data = struct.pack(">IB", 3, 0) + (5).to_bytes(3, "big") + b"hello"
put("spdy", "syn_streams_data", syn1 + syn3 + data)
put("spdy", "ping_settings", control(6, 0, struct.pack(">I", 1)) + control(4, 0, struct.pack(">III", 1, 7, 65536)))
put("spdy", "window_rst_goaway", control(9, 0, struct.pack(">II", 3, 1024)) + control(3, 0, struct.pack(">II", 3, 5)) + control(7, 0, struct.pack(">II", 3, 0)))

# ws_channel: v5 messages and exec query strings.
put("ws_channel", "stdin", b"\x00echo hi\n")
put("ws_channel", "resize", b'\x04{"Width":80,"Height":24}\n')
put("ws_channel", "close_stdin", b"\xff\x00")
put("ws_channel", "exec_query", "command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&stderr=true&tty=false")


# dns: queries.
def dns_query(name, qtype, qid=0x1234):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)


put("dns", "a_service", dns_query("web.default.svc.cluster.local", 1))
put("dns", "a_headless", dns_query("db.default.svc.cluster.local", 1))
put("dns", "a_endpoint", dns_query("db-0.db.default.svc.cluster.local", 1))
put("dns", "srv", dns_query("_http._tcp.web.default.svc.cluster.local", 33))
put("dns", "ptr", dns_query("10.0.96.10.in-addr.arpa", 12))
put("dns", "cname", dns_query("ext.default.svc.cluster.local", 5))
put("dns", "pod_a", dns_query("10-244-0-5.default.pod.cluster.local", 1))

# image_reference
D = "sha256:" + "a" * 64
for i, r in enumerate(["busybox", "docker.io/library/busybox:1.36", f"localhost:5000/a/b@{D}",
                       f"ghcr.io/org/img:v1.2@{D}", "127.0.0.1:5000/x", "[::1]:5000/y:z"]):
    put("image_reference", f"r{i}", r)

# image_manifest
layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 10}
put("image_manifest", "oci_manifest", json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 5},
    "layers": [layer]}))
put("image_manifest", "docker_manifest", json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": D, "size": 5},
    "layers": [dict(layer, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")]}))
put("image_manifest", "oci_index", json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D, "size": 7,
                   "platform": {"architecture": "amd64", "os": "linux"}},
                  {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D, "size": 7,
                   "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                   "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
put("image_manifest", "config", json.dumps({"architecture": "amd64", "os": "linux",
    "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo"], "Env": ["PATH=/bin", "A=b"],
               "WorkingDir": "/srv", "User": "1000:1000"},
    "rootfs": {"type": "layers", "diff_ids": [D]}}))


# tar_unpack: layers with files, dirs, links and whiteouts.
def tar_bytes(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = e.get("type", tarfile.REGTYPE)
            info.mode = e.get("mode", 0o644)
            info.mtime = 1700000000
            info.linkname = e.get("link", "")
            data = e.get("data", b"")
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


put("tar_unpack", "basic", tar_bytes([
    {"name": "etc", "type": tarfile.DIRTYPE, "mode": 0o755},
    {"name": "etc/hostname", "data": b"box\n"},
    {"name": "bin", "type": tarfile.DIRTYPE, "mode": 0o555},
    {"name": "bin/sh", "data": b"#!\n", "mode": 0o755},
    {"name": "bin/ash", "type": tarfile.SYMTYPE, "link": "sh"},
    {"name": "bin/hard", "type": tarfile.LNKTYPE, "link": "bin/sh"},
]))
put("tar_unpack", "whiteouts", tar_bytes([
    {"name": "var/", "type": tarfile.DIRTYPE, "mode": 0o755},
    {"name": "var/.wh..wh..opq"},
    {"name": "var/.wh.cache"},
    {"name": "./var/log/app.log", "data": b"x" * 100},
    {"name": "tmp", "type": tarfile.DIRTYPE, "mode": 0o1777},
]))
put("tar_unpack", "pax_fifo", tar_bytes([
    {"name": "d/" + "long" * 40, "data": b"pax path"},
    {"name": "d/fifo", "type": tarfile.FIFOTYPE},
    {"name": "d/abs", "type": tarfile.SYMTYPE, "link": "/etc/passwd"},
], fmt=tarfile.PAX_FORMAT))

# static_pod
put("static_pod", "yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  labels:\n    role: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n    ports:\n    - containerPort: 80\n")
put("static_pod", "json", json.dumps(POD))
put("static_pod", "namespaced", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  priorityClassName: system-node-critical\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5\n    command: [etcd, --data-dir=/var/lib/etcd]\n")

# kubelet_config
put("kubelet_config", "yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: manifests\nsyncFrequency: 1m30s\nfileCheckFrequency: 20s\n")
put("kubelet_config", "json", json.dumps({"apiVersion": "kubelet.config.k8s.io/v1beta1",
    "kind": "KubeletConfiguration", "staticPodPath": "/etc/kubernetes/manifests",
    "syncFrequency": "1.5h", "fileCheckFrequency": "500ms", "containerLogMaxSize": "10Mi"}))
put("kubelet_config", "durations", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nsyncFrequency: 1h2m3s4ms5us6ns\nfileCheckFrequency: \"0\"\n")

# cri_log
put("cri_log", "full", "2026-12-03T12:00:00.123456789Z stdout F hello world\n")
put("cri_log", "partial", "2026-12-03T12:00:00.000000001Z stderr P part of a line")
put("cri_log", "empty", "2026-01-01T00:00:00Z stdout F \n")

# expand: NAME=value lines, NUL, the input.
put("expand", "simple", "A=1\nB=two\0echo $(A) $(B)")
put("expand", "escaped", "A=1\0$$(A) $(A $(MISSING) $$$(A)")
put("expand", "nested", "A=$(B)\nB=x\0$(A)$(A)$(B)")
