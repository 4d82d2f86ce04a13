//! A pod's containers as the runtime's `ContainerConfig`, with Kubernetes' rules: command and
//! args over the image's, `$(VAR)` expansion (`expand`), env from values, config maps,
//! secrets and the downward API (`container`), and resources and security contexts
//! (`security`). Pure: config maps and secrets are fetched by the caller.

mod container;
mod expand;
mod security;

pub use container::{
    build_container_config, container_argv, container_env, field_ref_value, log_path, merge_env,
    referenced_sources, resource_field_value, stop_signal, user_spec, BuildInput,
    ContainerSpecError, EnvSources, PodContext, ANNOTATION_RESTART_COUNT, LABEL_CONTAINER_NAME,
    LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
};
pub use expand::{expand, lookup_in};
pub use security::{
    container_resources, container_security, is_safe_sysctl, pod_requests, pod_resources,
    pod_sysctls, share_process_namespace, verify_run_as_non_root, SecurityError,
};
