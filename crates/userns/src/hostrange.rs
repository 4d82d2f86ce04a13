//! The host IDs this node may give its pods, found as kubelet v1.33's `getKubeletMappings`
//! finds them: when a `kubelet` user exists, its one `/etc/subuid` range (which must equal its
//! `/etc/subgid` range), else the default, every ID from 65536 up to the top of the 32-bit
//! space. The range must start and end on a multiple of 65536 and hold a range for each of
//! the node's pods, or the agent refuses to start, as the kubelet does. Parsing is pure; only
//! [`HostRange::from_system`] reads the files.

use std::io;
use std::path::{Path, PathBuf};

use crate::RANGE;

/// The user whose subordinate IDs the node hands out (the kubelet's).
pub const USER: &str = "kubelet";

/// The node's range of host IDs for pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRange {
    pub first: u32,
    pub length: u32,
}

impl Default for HostRange {
    /// The kubelet's default: 65536 up to the top of the 32-bit ID space.
    fn default() -> Self {
        HostRange {
            first: RANGE,
            length: u32::MAX - RANGE + 1,
        }
    }
}

/// Why the node's range cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostRangeError {
    #[error("reading {path}: {kind}")]
    Read { path: PathBuf, kind: io::ErrorKind },
    #[error("{path}: {count} ranges for user {USER:?}, want exactly one")]
    Entries { path: PathBuf, count: usize },
    #[error("{path}: cannot parse {line:?} (want NAME:FIRST:COUNT)")]
    Parse { path: PathBuf, line: String },
    #[error("{USER:?} has different mappings for UIDs ({uids:?}) than for GIDs ({gids:?})")]
    Different { uids: HostRange, gids: HostRange },
    #[error("the IDs of user {USER:?} ({first}, {length} long) are not multiples of {RANGE}")]
    NotAligned { first: u32, length: u32 },
    #[error("the IDs of user {USER:?} hold {ranges} ranges of {RANGE} IDs, fewer than the node's {max_pods} pods")]
    TooFew { ranges: u32, max_pods: u32 },
}

/// The user's UID in a `/etc/passwd` text, if it is there.
fn passwd_uid(passwd: &str, user: &str) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(user)).then(|| fields.nth(1).unwrap_or("").to_string())
    })
}

/// The one range of the user (by name or UID) in a subuid/subgid text.
fn sub_range(text: &str, path: &Path, user: &str, uid: &str) -> Result<HostRange, HostRangeError> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields
            .first()
            .is_none_or(|owner| *owner != user && *owner != uid)
        {
            continue;
        }
        let parse = || HostRangeError::Parse {
            path: path.to_path_buf(),
            line: line.to_string(),
        };
        let [_, first, length] = fields[..] else {
            return Err(parse());
        };
        let first = first.parse().map_err(|_| parse())?;
        let length = length.parse().map_err(|_| parse())?;
        found.push(HostRange { first, length });
    }
    match found[..] {
        [one] => Ok(one),
        _ => Err(HostRangeError::Entries {
            path: path.to_path_buf(),
            count: found.len(),
        }),
    }
}

impl HostRange {
    /// The range from the texts of `/etc/passwd`, `/etc/subuid` and `/etc/subgid` (a
    /// missing file read as empty), checked for a node of `max_pods` pods.
    pub fn resolve(
        passwd: &str,
        subuid: (&Path, &str),
        subgid: (&Path, &str),
        max_pods: u32,
    ) -> Result<HostRange, HostRangeError> {
        let Some(uid) = passwd_uid(passwd, USER) else {
            return Ok(HostRange::default());
        };
        let uids = sub_range(subuid.1, subuid.0, USER, &uid)?;
        let gids = sub_range(subgid.1, subgid.0, USER, &uid)?;
        if uids != gids {
            return Err(HostRangeError::Different { uids, gids });
        }
        let HostRange { first, length } = uids;
        let end = u64::from(first) + u64::from(length);
        if first % RANGE != 0 || length % RANGE != 0 || end > 1 << 32 {
            return Err(HostRangeError::NotAligned { first, length });
        }
        let ranges = length / RANGE;
        if ranges < max_pods {
            return Err(HostRangeError::TooFew { ranges, max_pods });
        }
        Ok(uids)
    }

    /// The range of this machine, for a node of `max_pods` pods.
    pub fn from_system(max_pods: u32) -> Result<HostRange, HostRangeError> {
        let read = |path: &str| match std::fs::read_to_string(path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(HostRangeError::Read {
                path: PathBuf::from(path),
                kind: e.kind(),
            }),
        };
        let (subuid, subgid) = ("/etc/subuid", "/etc/subgid");
        HostRange::resolve(
            &read("/etc/passwd")?,
            (Path::new(subuid), &read(subuid)?),
            (Path::new(subgid), &read(subgid)?),
            max_pods,
        )
    }

    /// How many pod ranges it holds.
    pub fn blocks(&self) -> u32 {
        self.length / RANGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nkubelet:x:999:999::/nonexistent:/usr/sbin/nologin\n";

    fn resolve(passwd: &str, subuid: &str, subgid: &str) -> Result<HostRange, HostRangeError> {
        HostRange::resolve(
            passwd,
            (Path::new("/etc/subuid"), subuid),
            (Path::new("/etc/subgid"), subgid),
            110,
        )
    }

    #[test]
    fn without_the_user_the_default_range() {
        let range = resolve("root:x:0:0::/root:/bin/sh\n", "", "").expect("default");
        assert_eq!(range, HostRange::default());
        assert_eq!((range.first, range.blocks()), (65536, 65535));
    }

    #[test]
    fn the_users_one_range_by_name_or_uid() {
        let sub = "alice:100000:65536\nkubelet:1048576:16777216\n";
        let range = resolve(PASSWD, sub, sub).expect("range");
        assert_eq!(
            range,
            HostRange {
                first: 1048576,
                length: 16777216
            }
        );
        assert_eq!(range.blocks(), 256);
        let by_uid = "999:131072:7208960\n";
        assert_eq!(
            resolve(PASSWD, by_uid, by_uid),
            Ok(HostRange {
                first: 131072,
                length: 7208960
            })
        );
    }

    #[test]
    fn refuses_what_the_kubelet_refuses() {
        let ok = "kubelet:1048576:16777216\n";
        assert_eq!(
            resolve(PASSWD, "", ok),
            Err(HostRangeError::Entries {
                path: "/etc/subuid".into(),
                count: 0
            })
        );
        let two = "kubelet:1048576:16777216\nkubelet:65536:65536\n";
        assert!(matches!(
            resolve(PASSWD, two, two),
            Err(HostRangeError::Entries { count: 2, .. })
        ));
        assert!(matches!(
            resolve(PASSWD, ok, "kubelet:2097152:16777216\n"),
            Err(HostRangeError::Different { .. })
        ));
        let odd = "kubelet:100000:16777216\n";
        assert!(matches!(
            resolve(PASSWD, odd, odd),
            Err(HostRangeError::NotAligned { .. })
        ));
        let over = "kubelet:4294901760:131072\n";
        assert!(matches!(
            resolve(PASSWD, over, over),
            Err(HostRangeError::NotAligned { .. })
        ));
        let small = "kubelet:65536:655360\n";
        assert_eq!(
            resolve(PASSWD, small, small),
            Err(HostRangeError::TooFew {
                ranges: 10,
                max_pods: 110
            })
        );
        let bad = "kubelet:lots\n";
        assert!(matches!(
            resolve(PASSWD, bad, bad),
            Err(HostRangeError::Parse { .. })
        ));
    }
}
