//! `securityContext.supplementalGroupsPolicy` (KEP-3619, beta and on by default in v1.33)
//! end to end through kubectl, as upstream's e2e "SupplementalGroupsPolicy" test checks it:
//! an image whose /etc/group puts its user 1000 in group 50000. Unset or `Merge`, the
//! container's processes hold that group besides `supplementalGroups`; `Strict`, only the
//! primary group and `supplementalGroups`. `status.containerStatuses[].user.linux` shows
//! the identity the process got, the Node says the policy is supported, and the API server
//! refuses other values.

mod common;

use std::fs;
use std::time::Duration;

use common::{images, wait_until, Peapod};

const IMAGE: &str = "docker.io/library/groups-in-image:v1";

/// upstream's agnhost identity: `user-defined-in-image` (1000:1000) belongs to
/// `group-defined-in-image` (50000) in the image's /etc/group.
fn import_image(pp: &Peapod) {
    let tree = tempfile::tempdir().expect("tempdir");
    let etc = tree.path().join("etc");
    fs::create_dir(&etc).expect("etc");
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         user-defined-in-image:x:1000:1000:user-defined-in-image:/home:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(
        etc.join("group"),
        "root:x:0:\n\
         user-defined-in-image:x:1000:\n\
         group-defined-in-image:x:50000:user-defined-in-image\n",
    )
    .expect("group");
    images::import_busybox_plus_layer(pp, IMAGE, tree.path());
}

fn pod(name: &str, policy: Option<&str>) -> String {
    let policy = policy
        .map(|p| format!("\n    supplementalGroupsPolicy: {p}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  securityContext:
    runAsUser: 1000
    supplementalGroups: [60000]{policy}
  containers:
  - name: test-container
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "id -G; while :; do sleep 1; done"]
"#
    )
}

#[test]
fn merge_adds_the_image_groups_and_strict_does_not() {
    let pp = Peapod::start();
    import_image(&pp);

    assert_eq!(
        pp.jsonpath(
            &format!("node/{}", pp.node_name),
            "{.status.features.supplementalGroupsPolicy}"
        )
        .as_deref(),
        Some("true")
    );

    let cases = [
        ("unset", None, "1000 50000 60000"),
        ("merge", Some("Merge"), "1000 50000 60000"),
        ("strict", Some("Strict"), "1000 60000"),
    ];
    for (name, policy, _) in cases {
        pp.apply(&pod(name, policy));
    }
    for (name, _, groups) in cases {
        pp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=60s",
        ]);
        // The first process's view, then an exec's: `id -G` prints the primary group first.
        let logs = wait_until(
            &format!("{name}: the first process's groups"),
            Duration::from_secs(30),
            || {
                let out = pp.kubectl(&["logs", name]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                (!text.is_empty()).then_some(text)
            },
        );
        assert_eq!(logs, format!("{groups}\n"), "{name}");
        assert_eq!(
            pp.kubectl_ok(&["exec", name, "--", "id", "-G"]).trim(),
            groups,
            "{name}: exec"
        );
        // The status: uid, primary gid and every group the process holds, the primary
        // one included (as containerd reports them).
        let user = pp.jsonpath(
            &format!("pod/{name}"),
            "{.status.containerStatuses[0].user.linux.uid}/{.status.containerStatuses[0].user.linux.gid}/{.status.containerStatuses[0].user.linux.supplementalGroups[*]}",
        );
        assert_eq!(user, Some(format!("1000/1000/{groups}")), "{name}: status");
    }

    let err = pp.kubectl_stdin_refused(&["create", "-f", "-"], &pod("bad", Some("Loose")));
    assert!(
        err.contains(
            "The Pod \"bad\" is invalid: spec.securityContext.supplementalGroupsPolicy: Unsupported value: \"Loose\": supported values: \"Merge\", \"Strict\""
        ),
        "{err}"
    );

    pp.kubectl_ok(&[
        "delete",
        "pod",
        "unset",
        "merge",
        "strict",
        "--wait=true",
        "--timeout=60s",
    ]);
}
