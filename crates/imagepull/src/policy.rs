//! A container's `imagePullPolicy`, with the default kube-apiserver gives one that is unset
//! (`Always` for a `:latest` or untagged image, else `IfNotPresent`; an image by digest is
//! `IfNotPresent`).

use k8s_openapi::api::core::v1::Container;

/// What the kubelet does before starting a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Resolve the reference at the registry every time (layers already present are kept).
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The container's policy; unset (or an unknown word, which validation refuses) takes the
/// API server's default for its image.
pub fn pull_policy(container: &Container) -> PullPolicy {
    match container.image_pull_policy.as_deref() {
        Some("Always") => return PullPolicy::Always,
        Some("IfNotPresent") => return PullPolicy::IfNotPresent,
        Some("Never") => return PullPolicy::Never,
        _ => {}
    }
    let image = container.image.as_deref().unwrap_or_default();
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
        _ => PullPolicy::Always,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(image: &str, policy: Option<&str>) -> Container {
        Container {
            image: Some(image.to_owned()),
            image_pull_policy: policy.map(str::to_owned),
            ..Container::default()
        }
    }

    #[test]
    fn defaults_as_the_api_server() {
        assert_eq!(pull_policy(&c("busybox", None)), PullPolicy::Always);
        assert_eq!(pull_policy(&c("busybox:latest", None)), PullPolicy::Always);
        assert_eq!(
            pull_policy(&c("localhost:5000/busybox", None)),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&c("localhost:5000/busybox:1.0", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("busybox@sha256:abc", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), PullPolicy::Never);
        assert_eq!(
            pull_policy(&c("busybox:1", Some("Always"))).as_str(),
            "Always"
        );
    }
}
