//! The runtime's on-disk records of sandboxes and containers, and the pure function that
//! turns them (plus the shim's state and exit records) into a `ContainerStatus`. Status comes
//! from disk only, so it reads the same after an agent restart or with the shim gone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shim::protocol::{ExitRecord, StateRecord};

use crate::{ContainerConfig, ContainerState, ContainerStatus, HostAlias, PodSandboxConfig};

/// `pods/<id>/sandbox.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub created_at: jiff::Timestamp,
    /// The pod's cgroup relative to the hierarchy roots.
    pub pod_cgroup: PathBuf,
    /// The pod's addresses once its network is set up (empty on the host network or
    /// without a pod network); `None` until then, when the sandbox is not ready.
    #[serde(default)]
    pub ips: Option<Vec<std::net::IpAddr>>,
}

/// `pods/<sandbox>/containers/<id>/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    pub created_at: jiff::Timestamp,
    /// Absolute log path.
    pub log_path: PathBuf,
}

/// `pods/<id>/shim.pid`: the shim's pid and its start time (clock ticks since boot, from
/// /proc/<pid>/stat), so a recycled pid is never mistaken for the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimPid {
    pub pid: u32,
    pub start_time: u64,
}

/// The status the records describe. `shim_alive` says whether someone is still there to
/// record an exit; without it a started container's state is unknown.
pub fn container_status(
    record: &ContainerRecord,
    state: Option<&StateRecord>,
    exit: Option<&ExitRecord>,
    shim_alive: bool,
) -> ContainerStatus {
    let (state_kind, pid) = match (exit, state, shim_alive) {
        (Some(_), _, _) => (ContainerState::Exited, None),
        (None, Some(s), true) => (ContainerState::Running, Some(s.pid)),
        (None, None, true) => (ContainerState::Created, None),
        (None, _, false) => (ContainerState::Unknown, None),
    };
    ContainerStatus {
        id: record.id.clone(),
        sandbox_id: record.sandbox_id.clone(),
        config: record.config.clone(),
        state: state_kind,
        created_at: record.created_at,
        started_at: state.map(|s| s.started_at),
        finished_at: exit.map(|e| e.finished_at),
        exit_code: exit.map(|e| e.exit_code),
        reason: exit.map(|e| e.reason.as_str().to_string()),
        message: exit.and_then(|e| e.message.clone()),
        pid,
        log_path: record.log_path.clone(),
        user: state.and_then(|s| s.user.clone()),
    }
}

/// The `/etc/hosts` kubelet writes for a pod not on the host network (its "managed hosts
/// file"), with the pod's addresses; until the pod has an IP the hostname maps to 127.0.1.1
/// (as Debian does for the machine's own name) so it still resolves inside the pod. The
/// pod's `hostAliases` follow. With a `domain` (the pod's subdomain) each address names
/// `host.domain` first, then `host`: the short name even when the kernel hostname is the FQDN.
pub fn hosts_file(
    hostname: &str,
    domain: Option<&str>,
    ips: &[std::net::IpAddr],
    aliases: &[HostAlias],
) -> String {
    let names = match domain {
        Some(d) => {
            let short = hostname
                .strip_suffix(d)
                .and_then(|h| h.strip_suffix('.'))
                .unwrap_or(hostname);
            format!("{short}.{d}\t{short}")
        }
        None => hostname.to_string(),
    };
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if ips.is_empty() {
        out.push_str(&format!("127.0.1.1\t{names}\n"));
    }
    for ip in ips {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out.push_str(&host_alias_entries(aliases));
    out
}

/// The `/etc/hosts` of a hostNetwork pod: kubelet copies the node's file under its own
/// header, then the pod's `hostAliases`.
pub fn host_network_hosts_file(host: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(host);
    if !host.is_empty() && !host.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&host_alias_entries(aliases));
    out
}

/// kubelet's `hostsEntriesFromHostAliases`: a blank line, its header, then one line per
/// entry with the address and its names, tab-separated.
fn host_alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        out.push_str(&alias.ip);
        for name in &alias.hostnames {
            out.push('\t');
            out.push_str(name);
        }
        out.push('\n');
    }
    out
}

/// Makes the JSON records under `pods` (`<pod>/*.json`, `<pod>/containers/<id>/*.json`)
/// owner-only: they hold containers' configs, Secret-sourced env values included, and an
/// older version wrote them with the umask's mode. Never looks inside a rootfs or volume.
pub fn secure_record_modes(pods: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let json_files = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    for pod in subdirs(pods) {
        let containers = subdirs(&pod.join("containers"));
        let files = json_files(&pod)
            .into_iter()
            .chain(containers.iter().flat_map(|c| json_files(c)));
        for file in files {
            if let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(path = %file.display(), error = %e, "securing a runtime record failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shim::protocol::ExitReason;

    #[test]
    fn records_become_owner_only_and_rootfs_is_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let pods = tmp.path();
        let c = pods.join("p/containers/c");
        std::fs::create_dir_all(c.join("rootfs")).expect("dirs");
        let files = [
            pods.join("p/sandbox.json"),
            c.join("config.json"),
            c.join("rootfs/app.json"),
        ];
        for f in &files {
            std::fs::write(f, "{}").expect("write");
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        secure_record_modes(pods);
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&files[0]), 0o600);
        assert_eq!(mode(&files[1]), 0o600);
        assert_eq!(
            mode(&files[2]),
            0o644,
            "the image's files are not ours to change"
        );
    }

    fn record() -> ContainerRecord {
        ContainerRecord {
            id: "c".into(),
            sandbox_id: "s".into(),
            config: ContainerConfig::default(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            log_path: "/l".into(),
        }
    }

    #[test]
    fn states_from_records() {
        let r = record();
        assert_eq!(
            container_status(&r, None, None, true).state,
            ContainerState::Created
        );
        let user = crate::ContainerUser {
            uid: 1000,
            gid: 1000,
            supplemental_groups: vec![1000, 60000],
        };
        let s = StateRecord {
            pid: 7,
            started_at: jiff::Timestamp::UNIX_EPOCH,
            user: Some(user.clone()),
        };
        let st = container_status(&r, Some(&s), None, true);
        assert_eq!((st.state, st.pid), (ContainerState::Running, Some(7)));
        assert_eq!(st.user, Some(user));
        assert_eq!(container_status(&r, None, None, true).user, None);
        assert_eq!(
            container_status(&r, Some(&s), None, false).state,
            ContainerState::Unknown
        );
        let e = ExitRecord {
            exit_code: 3,
            signal: None,
            reason: ExitReason::Error,
            message: None,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let st = container_status(&r, Some(&s), Some(&e), false);
        assert_eq!(st.state, ContainerState::Exited);
        assert_eq!(st.exit_code, Some(3));
        assert_eq!(st.reason.as_deref(), Some("Error"));
        assert!(st.started_at.is_some());
    }

    #[test]
    fn host_network_hosts_copy_the_node_file() {
        let h = host_network_hosts_file("127.0.0.1\tlocalhost", &[]);
        assert_eq!(
            h,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n"
        );
        let h = host_network_hosts_file("127.0.0.1\tlocalhost\n", &aliases());
        assert_eq!(
            h,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
        );
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let h = hosts_file("web-0", None, &[], &[]);
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("127.0.1.1\tweb-0\n"));
        let h = hosts_file("web-0", None, &["10.244.0.5".parse().expect("ip")], &[]);
        assert!(h.ends_with("10.244.0.5\tweb-0\n"));
        let ip = ["10.244.0.5".parse().expect("ip")];
        let d = "web.ns.svc.cluster.local";
        let fqdn_line = "10.244.0.5\tweb-0.web.ns.svc.cluster.local\tweb-0\n";
        assert!(hosts_file("web-0", Some(d), &ip, &[]).ends_with(fqdn_line));
        let kernel_fqdn = "web-0.web.ns.svc.cluster.local";
        assert!(hosts_file(kernel_fqdn, Some(d), &ip, &[]).ends_with(fqdn_line));
        let h = hosts_file(
            "web-0",
            None,
            &["10.244.0.5".parse().expect("ip")],
            &aliases(),
        );
        assert!(h.ends_with("10.244.0.5\tweb-0\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"));
    }

    fn aliases() -> Vec<HostAlias> {
        vec![
            HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: vec!["foo.local".into(), "bar.local".into()],
            },
            HostAlias {
                ip: "10.1.2.3".into(),
                hostnames: vec!["foo.remote".into()],
            },
        ]
    }
}
