//! `/openapi/v2` end to end with an older kubectl (1.28 reads the protobuf form for `explain`
//! and to learn that the server validates fields), and its JSON form.

mod common;

use std::path::Path;

use common::Peapod;

/// kubectl 1.28 where the Google Cloud SDK installs it beside the current one.
const KUBECTL_1_28: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.28";

#[test]
fn kubectl_1_28_explains_and_validates_through_openapi_v2() {
    assert!(
        Path::new(KUBECTL_1_28).exists(),
        "{KUBECTL_1_28} is missing (scripts/install-deps.sh installs it)"
    );
    let pp = Peapod::start();
    let old = |args: &[&str]| {
        std::process::Command::new(KUBECTL_1_28)
            .env("KUBECONFIG", &pp.kubeconfig)
            .env("HOME", pp.home.path())
            .args(args)
            .output()
            .expect("running kubectl 1.28")
    };

    let out = old(&["explain", "pod.spec.ephemeralContainers", "-v=6"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("/openapi/v2"), "{stderr}");
    assert!(
        stdout.contains("FIELD: ephemeralContainers <[]EphemeralContainer>"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ephemeralcontainers subresource"),
        "{stdout}"
    );
    let out = old(&["explain", "deployment.spec.strategy"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("GROUP:      apps"), "{stdout}");
    assert!(
        stdout.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{stdout}"
    );

    // --validate=strict: the server validates (fieldValidation is among the patch
    // parameters), so an unknown field is refused and a good manifest applies.
    let bad = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(
        bad.path(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a: b\nbogus: 1\n",
    )
    .expect("manifest");
    let path = bad.path().to_str().expect("utf-8 path");
    let out = old(&["apply", "--validate=strict", "-f", path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown field \"bogus\""), "{stderr}");
    std::fs::write(
        bad.path(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\ndata:\n  a: b\n",
    )
    .expect("manifest");
    let out = old(&["apply", "--validate=strict", "-f", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The JSON form.
    let doc: serde_json::Value =
        serde_json::from_str(&pp.kubectl_ok(&["get", "--raw", "/openapi/v2"])).expect("json");
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(
        doc["definitions"]["io.k8s.api.core.v1.ConfigMap"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "version": "v1", "kind": "ConfigMap"}])
    );
}
