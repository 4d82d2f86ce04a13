//! What keeps lists bounded, through the real API: paging with `limit` and `continue` as
//! kube-apiserver answers it (pages in name order, one resourceVersion for every page,
//! `remainingItemCount` without selectors, selectors applied before the limit, 400s for bad
//! tokens, kubectl's `--chunk-size`), and Events expiring after `--event-ttl`.

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

    // Cluster-scoped lists page too.
    let want = names(&raw(&pp, "/api/v1/namespaces"));
    let mut got = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            None => "/api/v1/namespaces?limit=1".to_string(),
            Some(t) => format!("/api/v1/namespaces?limit=1&continue={t}"),
        };
        let page = raw(&pp, &path);
        got.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => break,
        }
    }
    assert_eq!(got, want);
    assert!(want.len() >= 4, "{want:?}");

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

#[test]
fn events_expire_after_the_event_ttl() {
    let pp = Peapod::start_with(&["--event-ttl", "3s"]);
    let event = r#"{"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "probe.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "probe", "namespace": "default"},
        "reason": "Testing", "message": "expires soon", "type": "Normal",
        "lastTimestamp": "2026-01-01T00:00:00Z"}"#;
    pp.kubectl_stdin(&["create", "-f", "-"], event);
    // A fresh Event (its newest timestamp is its creation) lives until the TTL passes.
    let fresh = event.replace("probe.1", "probe.2").replace(
        r#""lastTimestamp": "2026-01-01T00:00:00Z""#,
        r#""count": 1"#,
    );
    pp.kubectl_stdin(&["create", "-f", "-"], &fresh);
    let left = || {
        let out = pp.kubectl_ok(&["get", "events", "-o", "name"]);
        out.lines()
            .filter(|l| l.contains("probe."))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    common::wait_until(
        "the old event expires",
        std::time::Duration::from_secs(30),
        || {
            let names = left();
            (!names.iter().any(|n| n.ends_with("probe.1"))).then_some(())
        },
    );
    common::wait_until(
        "the fresh event expires",
        std::time::Duration::from_secs(30),
        || left().is_empty().then_some(()),
    );
}
