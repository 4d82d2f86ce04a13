//! Recursive read-only mounts (KEP-3857), kubelet's `resolveRecursiveReadOnly`: whether a
//! `volumeMount` is made read-only down to every mount below it, from its
//! `recursiveReadOnly` and whether the pod's runtime handler can do it. The same answer
//! makes the mount and fills the container status's `volumeMounts[].recursiveReadOnly`.

use k8s_openapi::api::core::v1::VolumeMount;

/// Why a mount's `recursiveReadOnly` cannot be honoured, in the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecursiveReadOnlyError {
    #[error("volume {volume:?} requested recursive read-only mode, but it is not read-only")]
    NotReadOnly { volume: String },
    #[error("volume {volume:?} requested recursive read-only mode, but it is not compatible with propagation {propagation:?}")]
    Propagation { volume: String, propagation: String },
    #[error(
        "volume {volume:?} requested recursive read-only mode, but it is not supported by the runtime"
    )]
    Unsupported { volume: String },
    #[error("unknown recursive read-only mode {mode:?}")]
    UnknownMode { mode: String },
}

/// Whether `mount` is to be recursively read-only when the runtime handler `supported` it:
/// `IfPossible` falls back to a plain read-only mount, `Enabled` fails without support.
pub fn resolve(mount: &VolumeMount, supported: bool) -> Result<bool, RecursiveReadOnlyError> {
    let mode = match mount.recursive_read_only.as_deref() {
        None | Some("Disabled") => return Ok(false),
        Some(mode) => mode,
    };
    if mount.read_only != Some(true) {
        return Err(RecursiveReadOnlyError::NotReadOnly {
            volume: mount.name.clone(),
        });
    }
    if let Some(p) = mount.mount_propagation.as_deref().filter(|p| *p != "None") {
        return Err(RecursiveReadOnlyError::Propagation {
            volume: mount.name.clone(),
            propagation: p.to_string(),
        });
    }
    match mode {
        "IfPossible" => Ok(supported),
        "Enabled" if supported => Ok(true),
        "Enabled" => Err(RecursiveReadOnlyError::Unsupported {
            volume: mount.name.clone(),
        }),
        other => Err(RecursiveReadOnlyError::UnknownMode {
            mode: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(read_only: bool, mode: Option<&str>, propagation: Option<&str>) -> VolumeMount {
        VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            read_only: Some(read_only),
            recursive_read_only: mode.map(str::to_string),
            mount_propagation: propagation.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn modes_with_and_without_runtime_support() {
        for supported in [true, false] {
            assert_eq!(resolve(&mount(true, None, None), supported), Ok(false));
            assert_eq!(resolve(&mount(false, None, None), supported), Ok(false));
            assert_eq!(
                resolve(&mount(true, Some("Disabled"), None), supported),
                Ok(false)
            );
            assert_eq!(
                resolve(&mount(true, Some("IfPossible"), None), supported),
                Ok(supported)
            );
        }
        assert_eq!(resolve(&mount(true, Some("Enabled"), None), true), Ok(true));
        assert_eq!(
            resolve(&mount(true, Some("Enabled"), Some("None")), true),
            Ok(true)
        );
    }

    #[test]
    fn kubelet_messages() {
        let msg =
            |m: VolumeMount, supported| resolve(&m, supported).expect_err("refused").to_string();
        assert_eq!(
            msg(mount(true, Some("Enabled"), None), false),
            "volume \"data\" requested recursive read-only mode, but it is not supported by the runtime"
        );
        assert_eq!(
            msg(mount(false, Some("IfPossible"), None), true),
            "volume \"data\" requested recursive read-only mode, but it is not read-only"
        );
        assert_eq!(
            msg(mount(true, Some("Enabled"), Some("HostToContainer")), true),
            "volume \"data\" requested recursive read-only mode, but it is not compatible with propagation \"HostToContainer\""
        );
        assert_eq!(
            msg(mount(true, Some("Always"), None), true),
            "unknown recursive read-only mode \"Always\""
        );
    }
}
