//! Paged lists through the real API: `limit` and `continue` as kube-apiserver answers them
//! (pages in name order, one resourceVersion for every page, `remainingItemCount` without
//! selectors, selectors applied before the limit), the 400s for bad tokens, and kubectl's own
//! `--chunk-size` paging.

mod common;

use common::Peapod;
use serde_json::Value;

fn raw(pp: &Peapod, path: &str) -> Value {
    let out = pp.kubectl_ok(&["get", "--raw", path]);
    serde_json::from_str(&out).expect("list JSON")
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn lists_page_with_limit_and_continue() {
    let pp = Peapod::start();
    pp.kubectl_ok(&["create", "namespace", "paging"]);
    for (i, tier) in ["a", "b", "a", "b", "a"].iter().enumerate() {
        pp.kubectl_ok(&[
            "create",
            "configmap",
            &format!("cm-{i}"),
            "-n",
            "paging",
            &format!("--from-literal=tier={tier}"),
        ]);
        pp.kubectl_ok(&[
            "label",
            "configmap",
            &format!("cm-{i}"),
            "-n",
            "paging",
            &format!("tier={tier}"),
        ]);
    }
    let base = "/api/v1/namespaces/paging/configmaps";
    common::wait_until(
        "kube-root-ca.crt",
        std::time::Duration::from_secs(30),
        || {
            names(&raw(&pp, base))
                .iter()
                .any(|n| n == "kube-root-ca.crt")
                .then_some(())
        },
    );

    // Pages of two, in name order, each with the first page's resourceVersion.
    let first = raw(&pp, &format!("{base}?limit=2"));
    assert_eq!(names(&first), ["cm-0", "cm-1"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 4);
    let rv = first["metadata"]["resourceVersion"].clone();
    let mut token = first["metadata"]["continue"]
        .as_str()
        .expect("continue token")
        .to_string();
    // Created between pages: a later page reads the current state after its start key.
    pp.kubectl_ok(&["create", "configmap", "cm-9", "-n", "paging"]);
    let mut all = names(&first);
    loop {
        let page = raw(&pp, &format!("{base}?limit=2&continue={token}"));
        assert_eq!(page["metadata"]["resourceVersion"], rv, "{page}");
        all.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => {
                assert!(page["metadata"].get("remainingItemCount").is_none());
                break;
            }
        }
    }
    assert_eq!(
        all,
        [
            "cm-0",
            "cm-1",
            "cm-2",
            "cm-3",
            "cm-4",
            "cm-9",
            "kube-root-ca.crt"
        ]
    );

    // A selector is applied before the limit, and no count is given with one.
    let a = raw(&pp, &format!("{base}?labelSelector=tier%3Da&limit=2"));
    assert_eq!(names(&a), ["cm-0", "cm-2"]);
    assert!(a["metadata"].get("remainingItemCount").is_none(), "{a}");
    let t = a["metadata"]["continue"].as_str().expect("more");
    let rest = raw(
        &pp,
        &format!("{base}?labelSelector=tier%3Da&limit=2&continue={t}"),
    );
    assert_eq!(names(&rest), ["cm-4"]);
    assert!(rest["metadata"].get("continue").is_none(), "{rest}");

    // Tables page too (kubectl get asks for Tables with limit=500).
    let out = pp.kubectl_ok(&[
        "get",
        "configmaps",
        "-n",
        "paging",
        "--chunk-size=2",
        "-o",
        "name",
    ]);
    assert_eq!(out.lines().count(), 7, "{out}");
    let out = pp.kubectl_ok(&["get", "configmaps", "-n", "paging", "--chunk-size=3"]);
    assert!(
        out.contains("cm-4") && out.contains("kube-root-ca.crt"),
        "{out}"
    );

    // Bad requests.
    let bad = pp.kubectl(&["get", "--raw", &format!("{base}?limit=2&continue=bm9wZQ")]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("invalid continue token"), "{err}");
    let both = pp.kubectl(&[
        "get",
        "--raw",
        &format!("{base}?limit=2&resourceVersion=5&continue={token}"),
    ]);
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(
        err.contains("specifying resource version is not allowed when using continue"),
        "{err}"
    );
}
