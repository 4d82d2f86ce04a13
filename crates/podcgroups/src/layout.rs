//! Where the kubelet puts the QoS tiers and pod cgroups below its cgroup root.

use std::path::PathBuf;

use api::qos::QosClass;

/// The node allocatable cgroup (kubelet's `defaultNodeAllocatableCgroupName`).
pub const KUBEPODS: &str = "kubepods";
/// The Burstable tier below `kubepods` (the class name in lower case, as kubelet names it).
pub const BURSTABLE: &str = "burstable";
/// The BestEffort tier below `kubepods`.
pub const BESTEFFORT: &str = "besteffort";

/// The cgroup paths of the tree, relative to the hierarchy roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    parent: PathBuf,
}

impl Layout {
    /// The tree below `parent` (kubelet's `cgroupRoot`; peapod's own cgroup, `peapod`).
    pub fn new(parent: impl Into<PathBuf>) -> Self {
        Self {
            parent: parent.into(),
        }
    }

    /// `<parent>/kubepods`.
    pub fn kubepods(&self) -> PathBuf {
        self.parent.join(KUBEPODS)
    }

    /// The cgroup pods of `class` live in: Guaranteed pods sit directly in `kubepods`.
    pub fn tier(&self, class: QosClass) -> PathBuf {
        match class {
            QosClass::Guaranteed => self.kubepods(),
            QosClass::Burstable => self.kubepods().join(BURSTABLE),
            QosClass::BestEffort => self.kubepods().join(BESTEFFORT),
        }
    }

    /// The pod cgroup of the pod with `uid` and QoS `class`; `None` when the uid holds no
    /// character usable in a cgroup name.
    pub fn pod(&self, class: QosClass, uid: &str) -> Option<PathBuf> {
        pod_cgroup_name(uid).map(|name| self.tier(class).join(name))
    }
}

/// `pod<UID>`, kubelet's pod cgroup name. UIDs are UUIDs; anything that is not a letter,
/// digit, `-` or `_` is dropped so that no uid can name another directory.
pub fn pod_cgroup_name(uid: &str) -> Option<String> {
    let clean: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (!clean.is_empty()).then(|| format!("pod{clean}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn pods_go_to_their_tier() {
        let l = Layout::new("peapod");
        assert_eq!(l.kubepods(), Path::new("peapod/kubepods"));
        assert_eq!(
            l.pod(QosClass::Guaranteed, "a-1"),
            Some(PathBuf::from("peapod/kubepods/poda-1"))
        );
        assert_eq!(
            l.pod(QosClass::Burstable, "b"),
            Some(PathBuf::from("peapod/kubepods/burstable/podb"))
        );
        assert_eq!(
            l.pod(QosClass::BestEffort, "c"),
            Some(PathBuf::from("peapod/kubepods/besteffort/podc"))
        );
        assert_eq!(l.pod(QosClass::BestEffort, "../.."), None);
        assert_eq!(pod_cgroup_name("x/../y").as_deref(), Some("podxy"));
    }
}
