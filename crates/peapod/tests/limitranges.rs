//! LimitRanges through kubectl, after upstream's conformance test "LimitRange should create a
//! LimitRange with defaults and ensure pod has those defaults applied": `kubectl get limits`
//! and `kubectl describe limitrange`; a pod without resources gets the defaults and the
//! `kubernetes.io/limit-ranger` annotation, a pod with requests only gets the default
//! limits; a pod above the max is refused in the LimitRanger plugin's words until the
//! LimitRange is deleted; a LimitRange out of order is refused by validation; a claim above
//! a PersistentVolumeClaim max is refused, and so is a bound claim grown above it; a
//! LimitRange may be created with only `generateName`. The pods never run: a node selector
//! no node matches keeps them Pending, which is all admission needs.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const LIMITS: &str = r#"apiVersion: v1
kind: LimitRange
metadata:
  name: bounds
spec:
  limits:
  - type: Container
    min: {cpu: 100m, memory: 100Mi}
    max: {cpu: 500m, memory: 500Mi}
    default: {cpu: 500m, memory: 500Mi}
    defaultRequest: {cpu: 100m, memory: 200Mi}
"#;

fn pod(name: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeSelector: {{limitrange-test: nowhere}}
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    command: ["sleep", "3600"]
    resources: {resources}
"#
    )
}

/// Runs `kubectl create -f -` with `manifest`, expecting a refusal; its stderr.
fn refused(pp: &Peapod, manifest: &str) -> String {
    use std::io::Write;
    let mut child = pp
        .kubectl_cmd()
        .args(["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl output");
    assert!(!out.status.success(), "kubectl create succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn resources_of(pp: &Peapod, pod: &str) -> (String, String) {
    let get = |part: &str| {
        pp.jsonpath(
            &format!("pod/{pod}"),
            &format!(
                "{{.spec.containers[0].resources.{part}.cpu}} {{.spec.containers[0].resources.{part}.memory}}"
            ),
        )
        .expect("pod")
    };
    (get("requests"), get("limits"))
}

#[test]
fn limit_range_defaults_and_bounds() {
    let pp = Peapod::start();
    pp.kubectl_stdin(&["create", "-f", "-"], LIMITS);

    let table = pp.kubectl_ok(&["get", "limits"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CREATED", "AT"], "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("bounds ")),
        "{table}"
    );
    let described = pp.kubectl_ok(&["describe", "limitrange", "bounds"]);
    // kubectl prints the resources of an item in Go map order: compare them sorted.
    let mut rows: Vec<Vec<&str>> = described
        .lines()
        .filter(|l| l.starts_with("Container"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ["Container", "cpu", "100m", "500m", "100m", "500m", "-"],
            [
                "Container",
                "memory",
                "100Mi",
                "500Mi",
                "200Mi",
                "500Mi",
                "-"
            ],
        ],
        "{described}"
    );

    // No resources: the default requests and limits, and the annotation saying so.
    pp.kubectl_stdin(&["create", "-f", "-"], &pod("bare", "{}"));
    assert_eq!(
        resources_of(&pp, "bare"),
        ("100m 200Mi".to_string(), "500m 500Mi".to_string())
    );
    assert_eq!(
        pp.jsonpath(
            "pod/bare",
            "{.metadata.annotations.kubernetes\\.io/limit-ranger}"
        )
        .as_deref(),
        Some("LimitRanger plugin set: cpu, memory request for container main; cpu, memory limit for container main")
    );

    // Requests only: they stay, the limits come from the defaults.
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("partial", "{requests: {cpu: 300m, memory: 150Mi}}"),
    );
    assert_eq!(
        resources_of(&pp, "partial"),
        ("300m 150Mi".to_string(), "500m 500Mi".to_string())
    );
    assert_eq!(
        pp.jsonpath(
            "pod/partial",
            "{.metadata.annotations.kubernetes\\.io/limit-ranger}"
        )
        .as_deref(),
        Some("LimitRanger plugin set: cpu, memory limit for container main")
    );

    // Above the max: refused with the plugin's reason (403).
    let too_big = pod("too-big", "{limits: {cpu: \"1\"}}");
    let err = refused(&pp, &too_big);
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating "STDIN": pods "too-big" is forbidden: maximum cpu usage per Container is 500m, but limit is 1"#),
        "{err}"
    );
    let two = pod(
        "two-wrongs",
        "{limits: {cpu: 1000m, memory: 1Gi}, requests: {cpu: 50m}}",
    );
    let err = refused(&pp, &two);
    assert!(
        err.contains(r#"pods "two-wrongs" is forbidden: [minimum cpu usage per Container is 100m, but request is 50m, maximum cpu usage per Container is 500m, but limit is 1, maximum memory usage per Container is 500Mi, but limit is 1Gi]"#),
        "{err}"
    );

    // A LimitRange out of order is invalid (`cpu: 1` is a quantity as `cpu: "1"` is).
    let bad = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: bad}\nspec:\n  limits:\n  - type: Container\n    min: {cpu: 1}\n    max: {cpu: 500m}\n";
    let err = refused(&pp, bad);
    // The item defaults (default from max, defaultRequest from default) are checked too.
    let q = |value: i64, scale: i32, s: &str| {
        format!("resource.Quantity{{i:resource.int64Amount{{value:{value}, scale:{scale}}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:\"{s}\", Format:\"DecimalSI\"}}")
    };
    let expected = format!(
        "The LimitRange \"bad\" is invalid: \n\
         * spec.limits[0].min[cpu]: Invalid value: {}: min value 1 is greater than max value 500m\n\
         * spec.limits[0].defaultRequest[cpu]: Invalid value: {}: min value 1 is greater than default request value 500m\n\
         * spec.limits[0].default[cpu]: Invalid value: {}: min value 1 is greater than default value 500m\n",
        q(1, 0, "1"),
        q(500, -3, "500m"),
        q(1, 0, "1"),
    );
    assert!(err.contains(&expected), "{err}");

    // Without the LimitRange the same pod is admitted as it is.
    pp.kubectl_ok(&["delete", "limitrange", "bounds"]);
    pp.kubectl_stdin(&["create", "-f", "-"], &too_big);
    assert_eq!(
        resources_of(&pp, "too-big"),
        ("1 ".to_string(), "1 ".to_string())
    );
    assert_eq!(
        pp.jsonpath(
            "pod/too-big",
            "{.metadata.annotations.kubernetes\\.io/limit-ranger}"
        )
        .as_deref(),
        Some("")
    );

    // Claims are held to a PersistentVolumeClaim item's storage bounds.
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: storage}\nspec:\n  limits:\n  - type: PersistentVolumeClaim\n    max: {storage: 1Gi}\n",
    );
    let claim = |name: &str, size: &str| {
        format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n")
    };
    let err = refused(&pp, &claim("big", "2Gi"));
    assert!(
        err.contains(r#"persistentvolumeclaims "big" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"#),
        "{err}"
    );
    pp.kubectl_stdin(&["create", "-f", "-"], &claim("small", "512Mi"));

    // A bound claim of an expandable class may grow only within the bounds: upstream's
    // plugin checks claim updates too.
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: grows}\nprovisioner: kubernetes.io/no-provisioner\nallowVolumeExpansion: true\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: limitrange-pv}\nspec:\n  storageClassName: grows\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /nonexistent/limitrange-pv}\n",
    );
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        &claim("growing", "512Mi").replace("spec:\n", "spec:\n  storageClassName: grows\n"),
    );
    wait_until("the claim to bind", Duration::from_secs(60), || {
        (pp.jsonpath("pvc/growing", "{.status.phase}").as_deref() == Some("Bound")).then_some(())
    });
    let grow = |size: &str| {
        pp.kubectl(&[
            "patch",
            "pvc",
            "growing",
            "-p",
            &format!(r#"{{"spec":{{"resources":{{"requests":{{"storage":"{size}"}}}}}}}}"#),
        ])
    };
    let out = grow("2Gi");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(r#"persistentvolumeclaims "growing" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"#),
        "{err}"
    );
    assert!(grow("1Gi").status.success());
    assert_eq!(
        pp.jsonpath("pvc/growing", "{.spec.resources.requests.storage}"),
        Some("1Gi".into())
    );

    // A LimitRange may have its name generated, as any object.
    let generated = pp.kubectl_stdin(
        &["create", "-f", "-", "-o", "name"],
        "apiVersion: v1\nkind: LimitRange\nmetadata: {generateName: bounds-}\nspec:\n  limits:\n  - type: Container\n    max: {cpu: \"2\"}\n",
    );
    assert!(
        generated.trim().starts_with("limitrange/bounds-") && generated.trim().len() == 23,
        "{generated}"
    );

    pp.kubectl_ok(&["delete", "pods", "--all", "--wait=false"]);
}
