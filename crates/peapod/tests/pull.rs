//! Images pulled by OCI distribution from Debian's docker-registry on loopback, and a missing
//! image reported as ErrImagePull then ImagePullBackOff.

mod common;

use std::time::Duration;

use common::registry::Registry;
use common::{wait_until, Peapod};

#[test]
fn pulls_from_a_registry_and_reports_missing_images() {
    let registry = Registry::start();
    let pp = Peapod::start();
    let image = format!("127.0.0.1:{}/busybox:latest", registry.port);
    let missing = format!("127.0.0.1:{}/nope:1.0", registry.port);
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: pulled
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "echo pulled; sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: missing
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {missing}
"#
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/pulled",
        "--timeout=90s",
    ]);
    let image_id = pp
        .jsonpath("pod/pulled", "{.status.containerStatuses[0].imageID}")
        .unwrap_or_default();
    assert!(image_id.contains("@sha256:"), "{image_id}");
    assert_eq!(pp.kubectl_ok(&["logs", "pulled"]), "pulled\n");
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pulled",
    ]);
    assert!(
        events.contains("Pulling") && events.contains("Pulled"),
        "{events}"
    );

    // ErrImagePull shows only between a failed pull and the next sync, so it is checked in
    // the events; the waiting reason then settles on ImagePullBackOff.
    wait_until(
        "waiting reason ImagePullBackOff",
        Duration::from_secs(60),
        || {
            let r = pp.jsonpath(
                "pod/missing",
                "{.status.containerStatuses[0].state.waiting.reason}",
            )?;
            (r == "ImagePullBackOff").then_some(())
        },
    );
    let describe = pp.kubectl_ok(&["describe", "pod", "missing"]);
    assert!(describe.contains("Failed to pull image"), "{describe}");
    assert!(describe.contains("Error: ErrImagePull"), "{describe}");
    assert!(describe.contains("Back-off pulling image"), "{describe}");
    pp.kubectl_ok(&["delete", "pod", "--all", "--timeout=60s"]);
}
