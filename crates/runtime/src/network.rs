//! A sandbox's network through CNI, done by the runtime as containerd's CRI does in
//! `RunPodSandbox`: the new sandbox's network namespace is pinned to a file and attached
//! with CNI `ADD` (port mappings from the config, kubelet's `K8S_POD_*` args), and its
//! addresses come back in the sandbox's status. Stopping or removing a sandbox runs `DEL`
//! while the pinned namespace still exists; attachments whose sandbox is gone (a crash) are
//! released when the runtime starts, and `peapod reset` releases every one from its record.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::{json, Map, Value};

use crate::PodSandboxConfig;

/// The interface name kubelet asks for (`CNI_IFNAME`).
pub const POD_IFNAME: &str = "eth0";

/// The node's pod CIDR as far as it is known: given on the command line, or learnt from the
/// Node's `spec.podCIDR` once the node IPAM controller has set it. Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct PodCidr(Arc<RwLock<Option<String>>>);

impl PodCidr {
    /// A CIDR known from the start.
    pub fn fixed(cidr: impl Into<String>) -> Self {
        Self(Arc::new(RwLock::new(Some(cidr.into()))))
    }

    pub fn get(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, cidr: impl Into<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(cidr.into());
    }
}

/// Where the runtime finds its CNI config and plugins.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The first conflist here is used; the default one is written here when there is none.
    pub conf_dir: PathBuf,
    /// Plugin binaries, searched in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// The node's pod CIDR, used by the default conflist's host-local IPAM; while it is
    /// unknown and no conflist exists, sandboxes cannot be attached (kubelet's "network
    /// not ready").
    pub pod_cidr: PodCidr,
    /// The bridge of the default conflist.
    pub bridge: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            pod_cidr: PodCidr::fixed("10.244.0.0/24"),
            bridge: "peapod0".to_string(),
        }
    }
}

/// Why a sandbox's network could not be set up or released.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("loading the CNI config")]
    Config(#[from] cni::ConfigError),
    #[error(transparent)]
    Cni(#[from] cni::CniError),
    #[error("network not ready: no CNI config in {conf_dir} and the node has no pod CIDR yet")]
    NoPodCidr { conf_dir: PathBuf },
    #[error("pinning network namespace {netns} at {pin}")]
    Pin {
        netns: PathBuf,
        pin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unpinning network namespace {pin}")]
    Unpin {
        pin: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The error and its causes on one line, as CRI runtimes report a failed network setup.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `<state_dir>/cni`: the attachments (results) of this state dir's sandboxes.
fn cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cni")
}

/// `<state_dir>/netns`: one pinned namespace per attached sandbox.
fn pin_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("netns")
}

/// kubelet's `runtimeConfig.portMappings`: one entry per host port.
pub fn port_mappings(config: &PodSandboxConfig) -> Vec<Value> {
    config
        .port_mappings
        .iter()
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.cni_name(),
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = json!(p.host_ip);
            }
            m
        })
        .collect()
}

/// What the CNI plugins are told about the pod (kubelet's `CNI_ARGS`); `IgnoreUnknown`
/// keeps plugins that parse their args strictly (host-local) from rejecting the rest.
pub fn cni_args(config: &PodSandboxConfig, sandbox_id: &str) -> Vec<(String, String)> {
    vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAMESPACE".into(), config.namespace.clone()),
        ("K8S_POD_NAME".into(), config.name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), sandbox_id.to_string()),
        ("K8S_POD_UID".into(), config.uid.clone()),
    ]
}

/// The runtime's CNI client plus where it pins namespaces. Its calls block (they run
/// plugins): callers run them off the async workers.
pub(crate) struct PodNetwork {
    /// `None`: sandboxes get loopback only, but attachments on record are still released.
    config: Option<NetworkConfig>,
    client: cni::Client,
    pin_dir: PathBuf,
}

impl PodNetwork {
    pub fn new(
        config: Option<NetworkConfig>,
        state_dir: &Path,
        exec: Arc<dyn cni::PluginExec>,
    ) -> Self {
        let bin_dirs = config
            .as_ref()
            .map(|c| c.bin_dirs.clone())
            .unwrap_or_default();
        Self {
            config,
            client: cni::Client::new(bin_dirs, cache_dir(state_dir), exec),
            pin_dir: pin_dir(state_dir),
        }
    }

    /// Whether sandboxes get attached at all.
    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    /// The pin of a sandbox's namespace; `id` is a runtime id (checked by the caller).
    fn pin_path(&self, sandbox_id: &str) -> PathBuf {
        self.pin_dir.join(sandbox_id)
    }

    /// Pins the sandbox's namespace `netns` and runs ADD with the conflist in use (the
    /// default one written when the config dir has none, read on every attachment as
    /// runtimes watch their config dir; peapod's own default is done in-process, every
    /// other list by its plugins); returns the pod's addresses. On error the caller
    /// runs `detach` to release whatever was made. Without a network config: no addresses.
    pub fn attach(
        &self,
        sandbox_id: &str,
        config: &PodSandboxConfig,
        netns: &Path,
    ) -> Result<Vec<IpAddr>, NetworkError> {
        let Some(net) = &self.config else {
            return Ok(Vec::new());
        };
        let (path, list) = match net.pod_cidr.get() {
            Some(cidr) => cni::config::ensure_default(&net.conf_dir, &net.bridge, &cidr)?,
            None => match cni::config::load_first(&net.conf_dir)? {
                Some(found) => found,
                None => {
                    return Err(NetworkError::NoPodCidr {
                        conf_dir: net.conf_dir.clone(),
                    })
                }
            },
        };
        let pin = self.pin_path(sandbox_id);
        let mut caps = Map::new();
        let mappings = port_mappings(config);
        if !mappings.is_empty() {
            caps.insert("portMappings".into(), Value::Array(mappings));
        }
        let rt = cni::RuntimeConf {
            container_id: sandbox_id.to_string(),
            netns: pin.clone(),
            if_name: POD_IFNAME.to_string(),
            args: cni_args(config, sandbox_id),
            capability_args: caps,
        };
        cni::netns::pin(netns, &pin).map_err(|source| NetworkError::Pin {
            netns: netns.to_path_buf(),
            pin,
            source,
        })?;
        let added = if cni::config::is_own_default(&path, &list) {
            self.client.add_default(&list, &rt)?
        } else {
            self.client.add(&list, &rt)?
        };
        Ok(added.ips)
    }

    /// Runs DEL for every attachment of the sandbox, then drops the pin. A failed DEL keeps
    /// both (the namespace stays alive), so a later `detach` or `gc` can finish the job.
    /// Releasing a sandbox that has nothing attached is a no-op.
    pub fn detach(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        self.client.del(sandbox_id)?;
        let pin = self.pin_path(sandbox_id);
        cni::netns::unpin(&pin).map_err(|source| NetworkError::Unpin { pin, source })
    }

    /// Releases attachments and pins of sandboxes not in `live` (left by a crash between
    /// a sandbox's removal and its DEL).
    pub fn gc(&self, live: &HashSet<String>) {
        let mut ids: HashSet<String> = self
            .client
            .cached()
            .into_iter()
            .map(|e| e.container_id)
            .collect();
        if let Ok(dir) = std::fs::read_dir(&self.pin_dir) {
            ids.extend(
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        for id in ids.iter().filter(|id| !live.contains(*id)) {
            tracing::info!(sandbox = %id, "releasing the network of a sandbox that is gone");
            if let Err(err) = self.detach(id) {
                tracing::warn!(sandbox = %id, error = %chain(&err), "releasing leftover network failed");
            }
        }
    }

    /// `peapod reset`: DEL every attachment from its record alone (config and bin dirs are
    /// in it) and drop every pin. Returns what failed.
    pub fn reset(&self) -> Vec<NetworkError> {
        let mut errors = Vec::new();
        for entry in self.client.cached() {
            if let Err(err) = self.client.del_entry(&entry) {
                errors.push(err.into());
            }
        }
        if let Ok(dir) = std::fs::read_dir(&self.pin_dir) {
            for e in dir.filter_map(Result::ok) {
                if let Err(source) = cni::netns::unpin(&e.path()) {
                    errors.push(NetworkError::Unpin {
                        pin: e.path(),
                        source,
                    });
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri::{PortMapping, Protocol};

    fn config() -> PodSandboxConfig {
        PodSandboxConfig {
            name: "web".into(),
            namespace: "ns1".into(),
            uid: "u1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let mut c = config();
        c.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: "192.0.2.2".into(),
            },
        ];
        assert_eq!(
            port_mappings(&c),
            vec![
                json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
                json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.2"}),
            ]
        );
    }

    #[test]
    fn cni_args_name_the_pod_like_kubelet() {
        let args = cni_args(&config(), "sb");
        let keys: Vec<_> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            keys,
            [
                "IgnoreUnknown=1",
                "K8S_POD_NAMESPACE=ns1",
                "K8S_POD_NAME=web",
                "K8S_POD_INFRA_CONTAINER_ID=sb",
                "K8S_POD_UID=u1"
            ]
        );
    }

    #[test]
    fn error_chain_joins_causes() {
        let err = NetworkError::Unpin {
            pin: "/p".into(),
            source: std::io::Error::other("busy"),
        };
        assert_eq!(chain(&err), "unpinning network namespace /p: busy");
    }
}
