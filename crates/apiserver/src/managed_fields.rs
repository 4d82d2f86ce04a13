//! Server-side apply's field management for the registry: which fields of a kind are tracked
//! (kube-apiserver strips identity metadata and leaves `status` to its subresource), how the
//! kind's lists are keyed (the strategic-merge-patch tags), and the two entry points the
//! write paths call: record an update, or apply a configuration. It knows nothing of the
//! registry; the write paths call it.

use api::strategy::ListStrategy;
use field_ownership::managers::{Scope, Writer};
use field_ownership::{KeyField, ListType, ManagedFields, Path, PathElement, Schema};
use serde_json::Value;

use api::resources::ResourceInfo;

use crate::error::ApiError;

/// Lists keyed as strategic merge patch keys them, except where the types' list-map keys
/// say more: ports are told apart by number and protocol (`TCP` when left out), spread
/// constraints by topology key and `whenUnsatisfiable`. Label selectors and node selectors
/// are atomic, as their types say (`structType`/`mapType=atomic`).
struct KindSchema {
    kind: &'static str,
}

impl Schema for KindSchema {
    fn list_type(&self, path: &[String], field: &str) -> ListType {
        const PROTOCOL: KeyField = KeyField::defaulted("protocol", "TCP");
        match api::patch::list_strategy(self.kind, path, field) {
            ListStrategy::Replace => ListType::Atomic,
            ListStrategy::Set => ListType::Set,
            ListStrategy::Key(k @ ("containerPort" | "port")) if field == "ports" => {
                ListType::Map(vec![k.into(), PROTOCOL])
            }
            ListStrategy::Key(k @ "topologyKey") => {
                ListType::Map(vec![k.into(), "whenUnsatisfiable".into()])
            }
            ListStrategy::Key(k) => ListType::Map(vec![k.into()]),
        }
    }

    fn atomic_map(&self, path: &[String], field: &str) -> bool {
        let in_spec = path.last().is_some_and(|p| p == "spec");
        matches!(field, "selector" | "nodeSelector") && in_spec
            || matches!(field, "labelSelector" | "namespaceSelector")
    }
}

/// Fields no manager owns: identity and server-set metadata, and `status` outside the status
/// subresource when the kind has one (only `status` inside it).
fn scope(info: &ResourceInfo, subresource: &str) -> Scope {
    let field = |names: &[&str]| -> Path {
        names
            .iter()
            .map(|n| PathElement::Field((*n).to_string()))
            .collect()
    };
    let mut exclude = vec![field(&["apiVersion"]), field(&["kind"])];
    for m in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    ] {
        exclude.push(field(&["metadata", m]));
    }
    match subresource {
        "status" => Scope {
            include: Some(vec![field(&["status"])]),
            exclude,
        },
        _ => {
            if info.subresource("status").is_some() {
                exclude.push(field(&["status"]));
            }
            Scope {
                include: None,
                exclude,
            }
        }
    }
}

/// Gives `w` the fields it changed from `old` to `new`, in `new`'s managedFields (the
/// stored ones unless the request sent its own). Entries that cannot be read are dropped,
/// as upstream's `UpdateNoErrors` does: they never fail an update.
pub(crate) fn record_update(info: &ResourceInfo, old: &Value, new: &mut Value, w: &Writer) {
    let mf = ManagedFields::of_object(new);
    let mut mf = match mf {
        Ok(mf) => mf,
        Err(e) => {
            tracing::debug!(error = %e, "dropping unreadable managedFields");
            ManagedFields::default()
        }
    };
    let schema = KindSchema { kind: info.kind };
    mf.record_update(old, new, w, &schema, &scope(info, &w.subresource));
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    mf.write_to(new);
}

/// Server-side apply of `config` by `w` to `live` (`{}` for an object still to create):
/// the merged object with its managedFields, or a 409 naming the conflicts.
pub(crate) fn apply(
    info: &ResourceInfo,
    live: &Value,
    config: &Value,
    w: &Writer,
    force: bool,
) -> Result<Value, ApiError> {
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let mut mf = ManagedFields::of_object(live).map_err(ApiError::ManagedFields)?;
    let schema = KindSchema { kind: info.kind };
    let mut merged = mf
        .apply(
            live,
            config,
            w,
            force,
            &schema,
            &scope(info, &w.subresource),
        )
        .map_err(ApiError::ApplyConflict)?;
    mf.write_to(&mut merged);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn writer(manager: &str, subresource: &str) -> Writer {
        Writer {
            manager: manager.into(),
            api_version: "apps/v1".into(),
            subresource: subresource.into(),
            time: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn deployments() -> &'static ResourceInfo {
        api::resources::lookup("apps", "deployments").expect("deployments")
    }

    #[test]
    fn deployments_key_containers_and_keep_status_and_identity_out() {
        let info = deployments();
        let mut new = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "u", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i",
                    "ports": [{"containerPort": 80}]}]}}},
            "status": {"replicas": 1}});
        record_update(info, &json!({}), &mut new, &writer("kubectl-create", ""));
        let mf = &new["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], "kubectl-create");
        assert_eq!(mf["operation"], "Update");
        assert_eq!(mf["apiVersion"], "apps/v1");
        assert_eq!(
            mf["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:image": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}})
        );
    }

    #[test]
    fn status_writers_own_only_status() {
        let info = deployments();
        let old = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2},
            "status": {"readyReplicas": 1}});
        record_update(info, &old, &mut new, &writer("ctrl", "status"));
        let mf = &new["metadata"]["managedFields"][0];
        assert_eq!(mf["subresource"], "status");
        assert_eq!(mf["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
    }

    #[test]
    fn unreadable_entries_are_dropped_not_fatal() {
        let info = deployments();
        let mut new = json!({"metadata": {"name": "web", "managedFields": [{"operation": "?"}]},
            "spec": {"replicas": 1}});
        record_update(info, &json!({}), &mut new, &writer("w", ""));
        let mf = new["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(mf.len(), 1, "{mf:?}");
        assert_eq!(mf[0]["manager"], "w");
    }

    #[test]
    fn applied_managed_fields_are_refused() {
        let info = deployments();
        let config = json!({"metadata": {"managedFields": []}});
        let err = apply(info, &json!({}), &config, &writer("k", ""), false).expect_err("refused");
        assert_eq!(err.to_string(), "metadata.managedFields must be nil");
    }
}
