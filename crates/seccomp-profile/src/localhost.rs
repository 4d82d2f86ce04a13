//! Localhost profiles: `seccompProfile.localhostProfile` names a file below the node's
//! profile directory (kubelet's `<root>/seccomp`), read, parsed and test-compiled here so a
//! bad profile fails the container's creation with its reason instead of its start.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::arch::Arch;
use crate::bpf::AsmError;
use crate::compile::{compile, Target};
use crate::json::{parse, ProfileError};
use crate::profile::Profile;

/// Profile files larger than this are refused (Docker's default profile is about 20 KiB).
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// Why a Localhost profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalhostError {
    #[error("{name:?} is not a path below the profile directory (no absolute path, no \"..\")")]
    Name { name: String },
    #[error("cannot load seccomp profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path} is larger than 1 MiB")]
    TooLarge { path: PathBuf },
    #[error("seccomp profile {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ProfileError,
    },
    #[error("seccomp profile {path}: {source}")]
    Compile {
        path: PathBuf,
        #[source]
        source: AsmError,
    },
}

/// The file `name` denotes below `dir`: relative, with no `..` component (kubelet's
/// validation of `localhostProfile`), so no name reaches outside `dir` by its spelling.
pub fn profile_path(dir: &Path, name: &str) -> Result<PathBuf, LocalhostError> {
    let bad = || LocalhostError::Name {
        name: name.to_string(),
    };
    let rel = Path::new(name);
    if name.is_empty() || name.contains('\0') {
        return Err(bad());
    }
    let mut normal = false;
    for c in rel.components() {
        match c {
            Component::Normal(_) => normal = true,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    if !normal {
        return Err(bad());
    }
    Ok(dir.join(rel))
}

/// Reads, parses and test-compiles the profile `name` below `dir`.
pub fn load(dir: &Path, name: &str) -> Result<Profile, LocalhostError> {
    let path = profile_path(dir, name)?;
    let read_err = |source| LocalhostError::Read {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(LocalhostError::TooLarge { path });
    }
    let profile = parse(&bytes).map_err(|source| LocalhostError::Parse {
        path: path.clone(),
        source,
    })?;
    // The filter a container gets depends on its capabilities; the largest one (every
    // capability-conditioned rule in) is the one that could fail to fit.
    if let Some(arch) = Arch::native() {
        let all = |_: &str| true;
        let target = Target {
            arch,
            has_cap: &all,
            kernel: None,
        };
        compile(&profile, &target).map_err(|source| LocalhostError::Compile { path, source })?;
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_below_the_directory() {
        let dir = Path::new("/state/seccomp");
        assert_eq!(
            profile_path(dir, "deny-mkdir.json").expect("path"),
            PathBuf::from("/state/seccomp/deny-mkdir.json")
        );
        assert_eq!(
            profile_path(dir, "./team/a.json").expect("path"),
            PathBuf::from("/state/seccomp/./team/a.json")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", ".", "a\0b"] {
            assert!(
                matches!(profile_path(dir, bad), Err(LocalhostError::Name { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn loads_checks_and_refuses() {
        let tmp = tempfile::tempdir().expect("dir");
        let dir = tmp.path();
        let write = |name: &str, body: &[u8]| std::fs::write(dir.join(name), body).expect("write");
        write(
            "ok.json",
            br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        write("bad.json", br#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#);
        write("big.json", &vec![b' '; (MAX_PROFILE_BYTES + 1) as usize]);
        let p = load(dir, "ok.json").expect("profile");
        assert_eq!(p.rules.len(), 1);
        let err = |name| load(dir, name).expect_err(name).to_string();
        assert!(err("missing.json").contains("cannot load seccomp profile"));
        assert!(err("bad.json").contains("unknown action"));
        assert!(err("big.json").contains("larger than 1 MiB"));
        assert!(err("../ok.json").contains("not a path below"));
    }
}
