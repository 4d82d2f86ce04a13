//! Start-up work of the API server for Services (kube-apiserver's bootstrap controller):
//! the ClusterIP and NodePort bitmaps are rebuilt from the stored Services, and the
//! well-known `kubernetes` and `kube-dns` Services are made sure to exist; and for RBAC
//! (its `rbac/bootstrap-roles` post-start hook): the default roles and bindings; and the
//! system PriorityClasses (`scheduling/bootstrap-system-priority-classes`).

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::objects::{Part, Registry, Selectors, WriteOptions};

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

fn lookup(group: &str, plural: &str) -> Result<&'static api::resources::ResourceInfo, ApiError> {
    api::resources::lookup(group, plural).ok_or(ApiError::PathNotFound)
}

/// Start-up work for Services: rebuilds the allocation bitmaps from the stored Services
/// (reclaiming what a crash leaked), then makes sure the `kubernetes` Service (10.96.0.1)
/// and the cluster DNS Service `kube-system/kube-dns` (10.96.0.10) exist, so their
/// addresses are held and visible as in any cluster.
pub async fn services(
    registry: &Registry,
    api_port: u16,
    repair: service_allocators::Repair,
) -> Result<(), ApiError> {
    let svc_info = lookup("", "services")?;
    let (services, _) = registry.list(svc_info, None, &Selectors::default()).await?;
    service_allocators::Ranges::default()
        .repair(registry.store.as_ref(), &services, repair)
        .await
        .map_err(|e| match e {
            service_allocators::AllocError::Store(s) => ApiError::Store(s),
            other => ApiError::bad_request(other.to_string()),
        })?;
    let wanted = [
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": service_allocators::KUBERNETES_SERVICE_IP.to_string(),
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "peapod-dns",
                                    "kubernetes.io/cluster-service": "true"}},
            "spec": {"clusterIP": service_allocators::DNS_SERVICE_IP.to_string(),
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}),
    ];
    for svc in wanted {
        let ns = str_at(&svc, "/metadata/namespace")
            .unwrap_or("default")
            .to_string();
        match registry
            .create(svc_info, Some(&ns), svc, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            // The address is held by a user's Service: keep going without ours.
            Err(ApiError::Invalid { name, .. }) => {
                tracing::warn!(service = %name, "could not reserve the well-known ClusterIP");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates the default ClusterRoles and ClusterRoleBindings that are missing and restores
/// what was taken out of the others (unless they opted out of it).
pub async fn rbac_defaults(registry: &Registry) -> Result<(), ApiError> {
    let kinds = [
        (
            lookup(rbac::GROUP, "clusterroles")?,
            rbac::bootstrap::cluster_roles(),
        ),
        (
            lookup(rbac::GROUP, "clusterrolebindings")?,
            rbac::bootstrap::cluster_role_bindings(),
        ),
        (lookup(rbac::GROUP, "roles")?, rbac::bootstrap::roles()),
        (
            lookup(rbac::GROUP, "rolebindings")?,
            rbac::bootstrap::role_bindings(),
        ),
    ];
    for (info, wanted) in kinds {
        for want in wanted {
            let name = str_at(&want, "/metadata/name")
                .unwrap_or_default()
                .to_string();
            let namespace = str_at(&want, "/metadata/namespace").map(str::to_string);
            let ns = namespace.as_deref();
            let have = match registry.get(info, ns, &name).await {
                Ok(have) => have,
                Err(ApiError::NotFound { .. }) => {
                    match registry
                        .create(info, ns, want, &WriteOptions::default())
                        .await
                    {
                        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(fixed) = rbac::bootstrap::reconcile(&have, &want) {
                tracing::info!(resource = info.plural, %name, "restoring a default RBAC object");
                registry
                    .update(
                        info,
                        ns,
                        &name,
                        fixed,
                        Part::Object,
                        &WriteOptions::default(),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}

/// Creates the built-in `system-node-critical` and `system-cluster-critical` PriorityClasses
/// that are missing.
pub async fn system_priority_classes(registry: &Registry) -> Result<(), ApiError> {
    let info = lookup("scheduling.k8s.io", "priorityclasses")?;
    for class in kinds_workloads::priorityclass::system_classes() {
        match registry
            .create(info, None, class, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
