//! A pod's containers as the runtime's `ContainerConfig`, with Kubernetes' rules: command and
//! args over the image's, `$(VAR)` expansion (`expand`), env from values, config maps,
//! secrets and the downward API (`container`), the Service variables (`services`), and
//! resources and security contexts (`security`). Pure: config maps, secrets and Services are
//! fetched by the caller.

mod allocated;
mod container;
mod expand;
mod security;
mod services;

pub use allocated::{
    changed_resources, recorded_resources, resizable_resources, resources_annotation,
    ANNOTATION_RESOURCES, RESIZABLE,
};
pub use container::{
    build_container_config, container_hash, field_ref_value, full_container_hash,
    referenced_sources, resource_field_value, BuildInput, ContainerSpecError, EnvSources,
    PodContext, ANNOTATION_CONTAINER_HASH, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
};
pub use expand::{expand, lookup_in};
pub use security::{
    container_resources, is_safe_sysctl, milli_cpu_to_shares, normalize_sysctl, pod_requests,
    pod_resources, pod_sysctls, share_process_namespace, SecurityError,
};
pub use services::service_env;
