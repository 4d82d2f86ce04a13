//! Images pulled by OCI distribution from Debian's docker-registry on loopback, and a missing
//! image reported as ErrImagePull then ImagePullBackOff.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{fixtures, wait_until, workspace_root, Peapod};

/// A docker-registry on 127.0.0.1 serving the busybox fixture; stopped on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let r = Registry { dir, port };
        r.script(&["start", &r.dir_str(), &port.to_string()]);
        let layout = fixtures().join("busybox-oci");
        r.script(&[
            "push",
            &r.dir_str(),
            &port.to_string(),
            layout.to_str().expect("path"),
            "busybox:latest",
        ]);
        r
    }

    fn dir_str(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(workspace_root().join("tests/fixtures/registry.sh"))
            .args(args)
            .status()
            .expect("registry.sh");
        assert!(status.success(), "registry.sh {args:?} failed");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("tests/fixtures/registry.sh"))
            .args(["stop", &self.dir_str()])
            .status();
    }
}

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
