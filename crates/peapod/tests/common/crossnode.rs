//! What the tests across nodes run in their pods: a client pod pinned to a node that runs a
//! script and stays up, a Service in front of an app's `http` port, and HTTP GETs retried
//! from inside a pod.

/// A pod pinned to `node` running `script`, then staying up (so its IP stays known).
pub fn client(name: &str, node: &str, script: &str) -> String {
    let script = format!("trap 'exit 0' TERM; {script}; echo client-done; sleep 3600 & wait");
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
"#
    )
}

/// A ClusterIP Service `name` on port 80 in front of the `http` port of the pods labelled
/// `app: name`.
pub fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  \
         selector: {{app: {name}}}\n  ports:\n  - {{port: 80, targetPort: http}}\n"
    )
}

/// An HTTP GET of `path` from `host:port` with nc (busybox's static wget segfaults on a
/// connect timeout and cannot resolve names); prints the body's last line.
pub fn http_get(host: &str, port: u16, path: &str) -> String {
    format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port} | tail -1 | grep .")
}

/// Retries `cmd` in the pod for up to 30 attempts, printing `label=` and its output.
pub fn retried(label: &str, cmd: &str) -> String {
    format!(
        "i=0; until out=$({cmd}); do i=$((i+1)); [ $i -ge 30 ] && break; sleep 1; done; echo {label}=$out"
    )
}
