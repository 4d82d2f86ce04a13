//! RuntimeClasses and PodTemplates through kubectl. A class with the `runc` handler, an
//! overhead and a node selector for this node runs its pod, which shows the overhead in its
//! spec (and its pod cgroup, sized with it) and the class's node selector; a pod naming a
//! class that does not exist is refused as kube-apiserver refuses it; a class whose handler
//! the node has no runtime for leaves its pod Pending with the `FailedCreatePodSandBox`
//! event in containerd's words; the handler never changes. PodTemplates are created, read,
//! listed, patched (strategic merge by container name), refused when their template is not a
//! valid pod template, and deleted.

mod common;

use std::time::Duration;

use common::{pod_cgroup_dirs, wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";

fn class(name: &str, handler: &str, node: &str) -> String {
    format!(
        r#"apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: {name}
handler: {handler}
overhead:
  podFixed: {{cpu: 10m, memory: 16Mi}}
scheduling:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
"#
    )
}

fn pod(name: &str, class: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: {class}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources:
      limits: {{cpu: 100m, memory: 32Mi}}
"#
    )
}

/// kubectl's stderr for a command that must fail.
fn refusal(pp: &Peapod, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = pp
        .kubectl_cmd()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl output");
    assert!(!out.status.success(), "kubectl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The pod cgroup's memory limit (v1 or v2 file), once it exists.
fn pod_memory_limit(uid: &str) -> Option<String> {
    pod_cgroup_dirs(uid).into_iter().find_map(|dir| {
        ["memory.limit_in_bytes", "memory.max"]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .map(|s| s.trim().to_string())
    })
}

#[test]
fn runtime_classes_admit_and_run_pods() {
    let pp = Peapod::start();
    let node = pp.node_name.clone();
    pp.apply(&class("sandboxed", "runc", &node));
    let table = pp.kubectl_ok(&["get", "runtimeclass"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(words(lines[0]), ["NAME", "HANDLER", "AGE"]);
    assert_eq!(words(lines[1])[..2], ["sandboxed", "runc"]);

    // A pod of the class runs, with the class's overhead and node selector.
    pp.apply(&pod("with-class", "sandboxed"));
    pp.wait_pod_phase("with-class", "Running", T);
    let get = |path: &str| pp.jsonpath("pod/with-class", path).unwrap_or_default();
    assert_eq!(get("{.spec.overhead.cpu}"), "10m");
    assert_eq!(get("{.spec.overhead.memory}"), "16Mi");
    assert_eq!(get("{.spec.nodeSelector.kubernetes\\.io/hostname}"), node);
    // The pod cgroup holds the containers' limit plus the overhead (32Mi + 16Mi).
    let uid = get("{.metadata.uid}");
    let limit = wait_until("the pod cgroup's memory limit", T, || {
        pod_memory_limit(&uid)
    });
    assert_eq!(limit, (48u64 << 20).to_string());

    // A class that does not exist refuses the pod.
    let err = refusal(&pp, &["apply", "-f", "-"], &pod("no-class", "missing"));
    assert!(
        err.contains(
            "pods \"no-class\" is forbidden: pod rejected: RuntimeClass \"missing\" not found"
        ),
        "{err}"
    );
    assert!(pp.jsonpath("pod/no-class", "{.metadata.name}").is_none());

    // A handler the node has no runtime for: the sandbox fails as containerd fails it.
    pp.apply(&class("elsewhere", "kata-fc", &node));
    pp.apply(&pod("unknown-handler", "elsewhere"));
    let message = wait_until("the FailedCreatePodSandBox event", T, || {
        let out = pp.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=unknown-handler,reason=FailedCreatePodSandBox",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        (!out.is_empty()).then_some(out)
    });
    assert!(
        message.contains(
            "Failed to create pod sandbox: failed to get sandbox runtime: no runtime for \"kata-fc\" is configured"
        ),
        "{message}"
    );
    assert_eq!(
        pp.jsonpath("pod/unknown-handler", "{.status.phase}")
            .as_deref(),
        Some("Pending")
    );
    let describe = pp.kubectl_ok(&["get", "pod", "unknown-handler"]);
    assert!(describe.contains("ContainerCreating"), "{describe}");

    // The handler is immutable.
    let out = pp.kubectl(&[
        "patch",
        "runtimeclass",
        "sandboxed",
        "--type=merge",
        "-p",
        r#"{"handler":"kata"}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("handler: Invalid value: \"kata\": field is immutable"),
        "{err}"
    );

    pp.kubectl_ok(&[
        "delete",
        "pod",
        "with-class",
        "unknown-handler",
        "--wait=true",
    ]);
    pp.kubectl_ok(&["delete", "runtimeclass", "sandboxed", "elsewhere"]);
    assert!(pp
        .kubectl_ok(&["get", "runtimeclass", "-o", "name"])
        .is_empty());
}

const TEMPLATE: &str = r#"apiVersion: v1
kind: PodTemplate
metadata:
  name: web
template:
  metadata:
    labels: {app: web, tier: front}
  spec:
    containers:
    - name: app
      image: busybox
    - name: side
      image: nginx:1.27
"#;

#[test]
fn pod_templates_through_kubectl() {
    let pp = Peapod::start();
    pp.apply(TEMPLATE);
    pp.apply(&TEMPLATE.replace("name: web\n", "name: other\n"));

    let table = pp.kubectl_ok(&["get", "podtemplates"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "CONTAINERS", "IMAGES", "POD", "LABELS"]
    );
    assert!(
        lines.iter().any(|l| words(l)
            == [
                "web",
                "app,side",
                "busybox,nginx:1.27",
                "app=web,tier=front"
            ]),
        "{table}"
    );
    let get = |path: &str| pp.jsonpath("podtemplate/web", path).unwrap_or_default();
    // The template got the pod defaults; a new template is generation 1.
    assert_eq!(get("{.template.spec.restartPolicy}"), "Always");
    assert_eq!(
        get("{.template.spec.containers[0].imagePullPolicy}"),
        "Always"
    );
    assert_eq!(get("{.metadata.generation}"), "1");
    assert_eq!(
        pp.kubectl_ok(&["get", "podtemplates", "-o", "name"]),
        "podtemplate/other\npodtemplate/web\n"
    );

    // A strategic merge patch changes one container by name and moves the generation on.
    pp.kubectl_ok(&[
        "patch",
        "podtemplate",
        "web",
        "-p",
        r#"{"template":{"spec":{"containers":[{"name":"app","image":"busybox:1.36"}]}}}"#,
    ]);
    assert_eq!(
        get("{.template.spec.containers[*].image}"),
        "busybox:1.36 nginx:1.27"
    );
    assert_eq!(get("{.metadata.generation}"), "2");

    // The template is checked as a pod template.
    let bad = TEMPLATE
        .replace("name: web\n", "name: bad\n")
        .replace("      image: busybox\n", "");
    let err = refusal(&pp, &["apply", "-f", "-"], &bad);
    assert!(
        err.contains("template.spec.containers[0].image: Required value"),
        "{err}"
    );

    pp.kubectl_ok(&["delete", "podtemplate", "web"]);
    assert!(pp.jsonpath("podtemplate/web", "{.metadata.name}").is_none());
    pp.kubectl_ok(&["delete", "podtemplates", "--all"]);
    assert!(pp
        .kubectl_ok(&["get", "podtemplates", "-o", "name"])
        .is_empty());
}
