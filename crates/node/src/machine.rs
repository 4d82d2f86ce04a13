//! Facts about the machine the Node object reports (capacity, identity, OS), read from
//! `/proc`, `/etc` and statvfs behind a trait so node-registration logic is tested with
//! injected facts.

use std::path::Path;

/// What the Node status says about the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineFacts {
    pub cpus: u32,
    pub memory_ki: u64,
    /// Size of the filesystem holding the state dir.
    pub ephemeral_storage_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub hostname: String,
    /// Go's GOARCH spelling: `amd64`, `arm64`.
    pub arch: String,
}

pub trait Machine: Send + Sync + 'static {
    fn facts(&self, state_dir: &Path) -> MachineFacts;
}

/// The real machine.
pub struct HostMachine;

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `MemTotal` of a `/proc/meminfo` text, in KiB.
pub fn mem_total_ki(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `PRETTY_NAME` of an os-release text, unquoted.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
}

/// Rust's architecture name in Go's spelling (what Kubernetes labels use).
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Machine for HostMachine {
    fn facts(&self, state_dir: &Path) -> MachineFacts {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory_ki = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total_ki(&m))
            .unwrap_or(0);
        let ephemeral_storage_bytes = nix::sys::statvfs::statvfs(state_dir)
            .map(|s| s.blocks().saturating_mul(s.fragment_size()))
            .unwrap_or(0);
        let mut machine_id = read_trim("/etc/machine-id");
        if machine_id.is_empty() {
            machine_id = read_trim("/var/lib/dbus/machine-id");
        }
        let mut system_uuid = read_trim("/sys/class/dmi/id/product_uuid");
        if system_uuid.is_empty() {
            system_uuid = machine_id.clone();
        }
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| pretty_name(&t))
            .unwrap_or_else(|| "Linux".to_string());
        MachineFacts {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            memory_ki,
            ephemeral_storage_bytes,
            machine_id,
            system_uuid,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            os_image,
            hostname: read_trim("/proc/sys/kernel/hostname").to_lowercase(),
            arch: go_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_os_release() {
        assert_eq!(
            mem_total_ki("MemTotal:       16337492 kB\nMemFree: 1 kB\n"),
            Some(16_337_492)
        );
        assert_eq!(mem_total_ki("nothing"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn host_facts_are_plausible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = HostMachine.facts(dir.path());
        assert!(f.cpus >= 1);
        assert!(f.memory_ki > 0);
        assert!(f.ephemeral_storage_bytes > 0);
        assert!(!f.kernel_version.is_empty());
    }
}
