//! The CRI-shaped configurations of a pod sandbox and a container, shared by the runtime
//! (which takes them from the node agent) and the per-pod shim (which carries them out):
//! defined once here, so the runtime hands them to the shim as they are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// cgroup limits of a container or pod (CRI `LinuxContainerResources`): cpu shares, CFS
/// quota/period, memory limit, pids limit.
pub use cgroups::Resources as LinuxResources;

/// What the agent wants of a pod sandbox (CRI `PodSandboxConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    /// The kernel hostname: the pod's `hostname` (or name), or `hostname.domain` when the pod
    /// sets `setHostnameAsFQDN`.
    pub hostname: String,
    /// The pod's DNS domain (`subdomain.namespace.svc.cluster.local`) when its spec names a
    /// `subdomain`: the managed `/etc/hosts` then lists `hostname.domain` before `hostname`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Directory for this pod's container logs (kubelet: `/var/log/pods/<ns>_<name>_<uid>`).
    pub log_directory: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `shareProcessNamespace`: one PID namespace for the pod, whose PID 1 is the shim.
    #[serde(default)]
    pub share_process_namespace: bool,
    /// Namespaced sysctls set in the pod's network/IPC namespaces (`securityContext.sysctls`).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Limits of the pod's cgroup (kubelet's pod-level cgroup: sum of the containers').
    #[serde(default)]
    pub resources: LinuxResources,
    /// The pod's cgroup relative to the hierarchy roots, as the agent places it (CRI's
    /// `LinuxPodSandboxConfig.cgroup_parent`: `peapod/kubepods/burstable/pod<uid>`); `None`
    /// leaves it to the runtime (`<its cgroup parent>/pod<uid>`).
    #[serde(default)]
    pub cgroup_parent: Option<PathBuf>,
    /// `hostNetwork: true`: the pod shares the node's network (and UTS) namespace, as CRI's
    /// `NamespaceMode::NODE`; no CNI attachment, the node's hosts and hostname.
    #[serde(default)]
    pub host_network: bool,
    /// `hostPID: true`: containers live in the node's PID namespace (CRI `NamespaceMode::NODE`
    /// for pid).
    #[serde(default)]
    pub host_pid: bool,
    /// `hostIPC: true`: the pod shares the node's IPC namespace.
    #[serde(default)]
    pub host_ipc: bool,
    /// The pod's resolver (CRI `DNSConfig`, what kubelet derives from `dnsPolicy` and
    /// `dnsConfig`); `None` copies the node's resolv.conf.
    #[serde(default)]
    pub dns: Option<DnsConfig>,
    /// Host ports forwarded to the pod (CRI `port_mappings`, from the containers' `hostPort`s).
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// `hostAliases`: extra `/etc/hosts` entries, one line per address.
    #[serde(default)]
    pub host_aliases: Vec<HostAlias>,
    /// `hostUsers: false`: the pod's user namespace (CRI `NamespaceOption.userns_options`
    /// with mode `POD`); `None` keeps the node's.
    #[serde(default)]
    pub user_namespace: Option<IdMapping>,
    /// The runtime handler of the pod's RuntimeClass (CRI `RunPodSandboxRequest.runtime_handler`);
    /// empty for the runtime's default.
    #[serde(default)]
    pub runtime_handler: String,
}

/// One contiguous range of a user namespace's IDs (CRI `IDMapping`): IDs `container_id ..
/// container_id + length` inside are `host_id ..` outside. kubelet maps a pod's UIDs and
/// GIDs alike, from 0, so one mapping serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMapping {
    /// The host ID that `id` inside the namespace maps to, if it is in the range.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.length).then(|| self.host_id.checked_add(offset))?
    }

    /// The line of `/proc/<pid>/uid_map` (and `gid_map`) that sets this mapping.
    pub fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }
}

/// One `hostAliases` entry: an address and the names it answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// A host port forwarded to a port of the pod (CRI `PortMapping`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    /// The host address to listen on; empty means all.
    #[serde(default)]
    pub host_ip: String,
}

/// The transport protocol of a port (CRI `Protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The lower-case name CNI's `portMappings` capability uses.
    pub fn cni_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// The pod's `/etc/resolv.conf` (CRI `DNSConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    /// The file as kubelet writes it: `search`, `nameserver` lines, `options`.
    pub fn resolv_conf(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for s in &self.servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// User and groups to run a container's process as; names are resolved in the container's
/// rootfs (`/etc/passwd`, `/etc/group`) by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSpec {
    /// From `securityContext.runAsUser`; wins over the image's `User`.
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// The image's raw `User` string, used when `run_as_user` is `None`.
    pub image_user: Option<String>,
    pub supplemental_groups: Vec<u32>,
    /// Whether the image's `/etc/group` adds the user's groups (pod
    /// `securityContext.supplementalGroupsPolicy`, KEP-3619).
    #[serde(default)]
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
}

/// CRI's `SupplementalGroupsPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplementalGroupsPolicy {
    /// The groups the image's `/etc/group` gives the user are merged with the configured
    /// ones (the default).
    #[default]
    Merge,
    /// Only the primary group, `fsGroup` and `supplementalGroups`.
    Strict,
}

/// The identity a container's first process got (CRI `LinuxContainerUser`): its uid, its
/// primary gid and every group it holds, the primary one included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUser {
    pub uid: u32,
    pub gid: u32,
    pub supplemental_groups: Vec<u32>,
}

/// A bind mount into the container (CRI `Mount`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub readonly: bool,
    /// Read-only down to every mount below it too (KEP-3857); only with `readonly`.
    #[serde(default)]
    pub recursive_read_only: bool,
}

/// What the agent wants of a container (CRI `ContainerConfig`). The agent has already merged
/// `command`/`args`/`env` with the image config per Kubernetes' rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub name: String,
    /// Restart count of this container in the pod (CRI metadata.attempt).
    pub attempt: u32,
    /// The image reference as written in the pod spec (for status).
    pub image: String,
    /// The resolved image id (`sha256:…`), as returned by `pull_image`/`image_status`.
    pub image_id: String,
    /// Full argv; never empty.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: UserSpec,
    /// Log file path relative to the sandbox's `log_directory` (kubelet: `<name>/<attempt>.log`).
    pub log_path: PathBuf,
    /// Signal number sent by `stop_container` before SIGKILL (image STOPSIGNAL, else SIGTERM).
    pub stop_signal: i32,
    pub mounts: Vec<Mount>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// cgroup limits (requests/limits mapped by the agent).
    #[serde(default)]
    pub resources: LinuxResources,
    /// The container's `oom_score_adj` (kubelet's by QoS: Guaranteed -997, BestEffort 1000,
    /// Burstable by its memory request), so the OOM killer takes containers before the shim.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// Capabilities, privileged, no_new_privs, read-only rootfs, seccomp, masked paths.
    #[serde(default)]
    pub security: SecurityConfig,
    /// The main process gets a stdin the runtime holds open for `attach` (pod `stdin`).
    #[serde(default)]
    pub stdin: bool,
    /// Stdin is closed when the first attach session ends (pod `stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// The main process gets a pseudo-terminal as stdin, stdout and stderr (pod `tty`); its
    /// output is logged as stdout.
    #[serde(default)]
    pub tty: bool,
    /// The id of a running container of the same sandbox whose PID namespace this one joins
    /// (CRI `NamespaceMode::TARGET`: an ephemeral container's `targetContainerName`).
    #[serde(default)]
    pub pid_target: Option<String>,
}

/// The seccomp filter of a container (`securityContext.seccompProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompProfile {
    /// No filter.
    Unconfined,
    /// The runtime's default allow-list (`seccomp_profile::default::TABLE`); the secure
    /// default.
    #[default]
    RuntimeDefault,
    /// A profile file (OCI / docker JSON) named relative to the node's profile directory,
    /// `<state dir>/seccomp` (kubelet's `<root dir>/seccomp`); the runtime loads it.
    Localhost { profile: String },
}

/// A container's security settings, as CRI's `LinuxContainerSecurityContext` carries them.
/// The default is the container runtime default: the default capability set, no_new_privs,
/// the default masked and read-only paths, read-only /sys, the default seccomp filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// All capabilities, host devices, no masked or read-only paths, writable /sys, no
    /// seccomp filter.
    pub privileged: bool,
    /// Capability names (`NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`) added to the default set.
    pub capabilities_add: Vec<String>,
    /// Capability names (or `ALL`) removed from it.
    pub capabilities_drop: Vec<String>,
    /// `allowPrivilegeEscalation: true`; otherwise the process gets no_new_privs.
    pub allow_privilege_escalation: bool,
    /// `readOnlyRootFilesystem`.
    pub readonly_rootfs: bool,
    pub seccomp: SeccompProfile,
    /// Paths hidden from the container; `None` means the runtime defaults
    /// (the shim's `security::DEFAULT_MASKED_PATHS`), unless privileged.
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only; `None` means the runtime defaults, unless privileged.
    pub readonly_paths: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_mapping_translates_inside_ids_only() {
        let m = IdMapping {
            container_id: 0,
            host_id: 131072,
            length: 65536,
        };
        assert_eq!(m.to_host(0), Some(131072));
        assert_eq!(m.to_host(65535), Some(196607));
        assert_eq!(m.to_host(65536), None);
        assert_eq!(m.map_line(), "0 131072 65536\n");
        let top = IdMapping {
            container_id: 0,
            host_id: u32::MAX - 1,
            length: 65536,
        };
        assert_eq!(top.to_host(5), None);
    }

    #[test]
    fn resolv_conf_has_search_servers_then_options() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            dns.resolv_conf(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert_eq!(DnsConfig::default().resolv_conf(), "");
    }
}
