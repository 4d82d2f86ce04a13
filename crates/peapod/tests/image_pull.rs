//! Pull policies and registry credentials through kubectl, against Debian's docker-registry
//! on loopback behind HTTP Basic auth: a pod without credentials ends in `ErrImagePull` then
//! `ImagePullBackOff` with a message that says none were sent; with a
//! `kubernetes.io/dockerconfigjson` Secret (named by the pod, or by its ServiceAccount) it
//! runs; `Never` with an absent image waits in `ErrImageNeverPull`; and the kubelet's pull
//! events are recorded.

mod common;

use std::time::Duration;

use common::registry::{Registry, AUTH_PASSWORD, AUTH_USER};
use common::{wait_until, Peapod};

fn pod(name: &str, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
{extra_spec}  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "echo up; sleep 3600"]
"#
    )
}

fn waiting(pp: &Peapod, pod: &str) -> Option<(String, String)> {
    let reason = pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].state.waiting.reason}",
    )?;
    let message = pp
        .jsonpath(
            &format!("pod/{pod}"),
            "{.status.containerStatuses[0].state.waiting.message}",
        )
        .unwrap_or_default();
    Some((reason, message))
}

fn events_of(pp: &Peapod, pod: &str) -> String {
    pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
    ])
}

#[test]
fn pull_secrets_policies_and_events() {
    let registry = Registry::start_with_auth();
    let pp = Peapod::start();
    let host = format!("127.0.0.1:{}", registry.port);
    let image = registry.busybox();

    // No credentials: the registry's 401 becomes ErrImagePull, then ImagePullBackOff.
    pp.apply(&pod("anonymous", &image, ""));
    let (_, message) = wait_until(
        "waiting reason ImagePullBackOff",
        Duration::from_secs(60),
        || waiting(&pp, "anonymous").filter(|(r, _)| r == "ImagePullBackOff"),
    );
    assert!(
        message.starts_with(&format!("Back-off pulling image \"{image}\": "))
            && message.contains(&format!("no credentials for {host} were sent")),
        "{message}"
    );
    let events = events_of(&pp, "anonymous");
    for want in [
        format!("Pulling image \"{image}\""),
        format!("Failed to pull image \"{image}\": {image}: pull access denied"),
        "Error: ErrImagePull".to_string(),
        format!("Back-off pulling image \"{image}\""),
    ] {
        assert!(events.contains(&want), "{want:?} not in\n{events}");
    }

    // A docker-registry Secret named by the pod.
    pp.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={host}"),
        &format!("--docker-username={AUTH_USER}"),
        &format!("--docker-password={AUTH_PASSWORD}"),
    ]);
    pp.apply(&pod(
        "with-secret",
        &image,
        "  imagePullSecrets:\n  - name: regcred\n",
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/with-secret",
        "--timeout=90s",
    ]);
    assert_eq!(pp.kubectl_ok(&["logs", "with-secret"]), "up\n");
    let events = events_of(&pp, "with-secret");
    let pulled = events
        .lines()
        .find(|l| l.contains(&format!("Successfully pulled image \"{image}\" in ")))
        .unwrap_or_else(|| panic!("no Pulled event in\n{events}"));
    assert!(
        pulled.contains("including waiting). Image size: ") && pulled.ends_with(" bytes."),
        "{pulled}"
    );

    // The ServiceAccount's pull secrets, copied into a pod that names none.
    pp.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: puller\nimagePullSecrets:\n- name: regcred\n",
    );
    pp.apply(&pod(
        "via-account",
        &image,
        "  serviceAccountName: puller\n",
    ));
    assert_eq!(
        pp.jsonpath("pod/via-account", "{.spec.imagePullSecrets[*].name}")
            .as_deref(),
        Some("regcred")
    );
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/via-account",
        "--timeout=90s",
    ]);

    // IfNotPresent with the image on the node: no pull.
    pp.apply(&pod("present", &image, "").replace(
        "    command:",
        "    imagePullPolicy: IfNotPresent\n    command:",
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/present",
        "--timeout=60s",
    ]);
    let events = events_of(&pp, "present");
    assert!(
        events.contains(&format!(
            "Container image \"{image}\" already present on machine"
        )) && !events.contains("Pulling image"),
        "{events}"
    );

    // Never, with an image the node does not have.
    let absent = format!("{host}/absent:1.0");
    pp.apply(
        &pod("never", &absent, "")
            .replace("    command:", "    imagePullPolicy: Never\n    command:"),
    );
    let (_, message) = wait_until(
        "waiting reason ErrImageNeverPull",
        Duration::from_secs(60),
        || waiting(&pp, "never").filter(|(r, _)| r == "ErrImageNeverPull"),
    );
    assert_eq!(
        message,
        format!("Container image \"{absent}\" is not present with pull policy of Never")
    );
    assert!(events_of(&pp, "never").contains("ErrImageNeverPull"));

    // The pod without credentials stays refused while the others run.
    assert_eq!(
        waiting(&pp, "anonymous").map(|(r, _)| r).as_deref(),
        Some("ImagePullBackOff")
    );
    pp.kubectl_ok(&["delete", "pod", "--all", "--timeout=60s"]);
}
