// Drives peapod with the official JavaScript client (@kubernetes/client-node): ConfigMap and
// Pod create/list/watch/patch/delete (JSON patch and merge patch), logs, exec with stdin and an
// exit code, and port-forward. Prints what it observed as one JSON object; the Rust test
// decides what is right.
//
// Usage: node js_client.mjs KUBECONFIG NAMESPACE IMAGE CLIENT_DIR (the npm prefix it imports from)

import { PassThrough } from 'node:stream';

const [kubeconfig, ns, image, clientDir] = process.argv.slice(2);
// A step that never answers must fail the test, not hang it.
setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 300000).unref();
const k8s = await import(`${clientDir}/node_modules/@kubernetes/client-node/dist/index.js`);

const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(k8s.CoreV1Api);
const seen = {};
const deadline = (seconds) => Date.now() + seconds * 1000;
const tick = () => new Promise((r) => setTimeout(r, 200));

// ConfigMap: create, JSON-patch, read, list by label, delete.
await core.createNamespacedConfigMap({
  namespace: ns,
  body: { metadata: { name: 'js-cm', labels: { from: 'js' } }, data: { a: '1' } },
});
await core.patchNamespacedConfigMap({
  name: 'js-cm',
  namespace: ns,
  body: [{ op: 'add', path: '/data/b', value: '2' }],
});
seen.configmap_data = (await core.readNamespacedConfigMap({ name: 'js-cm', namespace: ns })).data;
const labelled = async () =>
  (await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'from=js' })).items.map(
    (c) => c.metadata.name,
  );
seen.configmaps_labelled = await labelled();
await core.deleteNamespacedConfigMap({ name: 'js-cm', namespace: ns });
seen.configmaps_after_delete = await labelled();

// A pod that logs a line and serves a file on :8080, watched until it runs.
await core.createNamespacedPod({
  namespace: ns,
  body: {
    metadata: { name: 'js-pod' },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'main',
          image,
          imagePullPolicy: 'IfNotPresent',
          command: [
            'sh',
            '-c',
            'echo started-js; mkdir -p /www && echo hello-from-js > /www/index.html && exec httpd -f -p 8080 -h /www',
          ],
        },
      ],
    },
  },
});
const events = [];
seen.watch_phase = await new Promise((resolve, reject) => {
  let req;
  const timer = setTimeout(() => reject(new Error('watch: pod not Running in time')), 120000);
  new k8s.Watch(kc)
    .watch(
      `/api/v1/namespaces/${ns}/pods`,
      { fieldSelector: 'metadata.name=js-pod' },
      (type, obj) => {
        events.push(type);
        if (obj.status?.phase === 'Running') {
          clearTimeout(timer);
          req.abort();
          resolve(obj.status.phase);
        }
      },
      (err) => {
        if (err && err.name !== 'AbortError') reject(err);
      },
    )
    .then((r) => {
      req = r;
    }, reject);
});
seen.watch_events = events;
seen.pods = (await core.listNamespacedPod({ namespace: ns })).items.map((p) => p.metadata.name);
await core.patchNamespacedPod(
  { name: 'js-pod', namespace: ns, body: { metadata: { labels: { patched: 'yes' } } } },
  k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
);
seen.pod_labels = (await core.readNamespacedPod({ name: 'js-pod', namespace: ns })).metadata.labels;

for (const end = deadline(60); ; await tick()) {
  seen.log = await core.readNamespacedPodLog({ name: 'js-pod', namespace: ns });
  if (seen.log.includes('started-js') || Date.now() > end) break;
}

// Exec with stdin: `cat` echoes what it reads, and the end of stdin ends it; then an exit code.
const collect = () => {
  const s = new PassThrough();
  s.text = '';
  s.on('data', (d) => {
    s.text += d.toString();
  });
  return s;
};
const exec = (command, input) =>
  new Promise((resolve, reject) => {
    const stdout = collect();
    const stderr = collect();
    new k8s.Exec(kc)
      .exec(ns, 'js-pod', 'main', command, stdout, stderr, input, false, (status) =>
        resolve({ stdout: stdout.text, stderr: stderr.text, status }),
      )
      .then((ws) => {
        seen.exec_protocol = ws.protocol;
      }, reject);
  });
const stdin = new PassThrough();
stdin.end('line-one\nline-two\n');
seen.exec_stdin = await exec(['sh', '-c', 'cat; echo done-$((6*7))'], stdin);
seen.exec_exit = await exec(['sh', '-c', 'echo bad >&2; exit 5'], null);

// Port-forward: an HTTP request through the pod's :8080 (httpd answers and closes).
const output = collect();
const errors = collect();
const input = new PassThrough();
const ws = await new k8s.PortForward(kc).portForward(ns, 'js-pod', [8080], output, errors, input);
input.write('GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n');
await new Promise((resolve) => {
  if (ws.readyState === ws.CLOSED) resolve();
  ws.on('close', resolve);
});
seen.portforward_reply = output.text;
seen.portforward_error = errors.text;

await core.deleteNamespacedPod({ name: 'js-pod', namespace: ns, gracePeriodSeconds: 0 });
seen.pod_gone = false;
for (const end = deadline(90); Date.now() < end; await tick()) {
  const names = (await core.listNamespacedPod({ namespace: ns })).items.map((p) => p.metadata.name);
  if (!names.includes('js-pod')) {
    seen.pod_gone = true;
    break;
  }
}
console.log(JSON.stringify(seen));
