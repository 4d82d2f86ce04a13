//! Resolves the user a container runs as from `runAsUser`/`runAsGroup` or the image's `User`
//! and the rootfs's `/etc/passwd` and `/etc/group`, the way runc and containerd do, as a pure
//! function so every rule is unit-tested without a container.

use cri::{ContainerUser, SupplementalGroupsPolicy, UserSpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },
}

/// The ids a container process gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary one included, sorted without duplicates (what
    /// containerd gives a process since CVE-2023-25173).
    pub groups: Vec<u32>,
    /// Home directory from passwd, `/` when the user has none.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3]
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members,
        })
    })
}

/// Resolves `spec` against the passwd and group files' text (empty when missing).
pub fn resolve(spec: &UserSpec, passwd: &str, group: &str) -> Result<Resolved, UserError> {
    let (user_part, group_part) = match (&spec.run_as_user, &spec.image_user) {
        // runAsUser wins over the image's User entirely, group included.
        (Some(uid), _) => (uid.to_string(), None),
        (None, Some(u)) if !u.is_empty() => match u.split_once(':') {
            Some((usr, grp)) => (usr.to_string(), Some(grp.to_string())),
            None => (u.clone(), None),
        },
        (None, _) => ("0".to_string(), None),
    };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::UnknownUser {
                    name: user_part.clone(),
                })?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user_part.parse().unwrap_or(0),
    };
    let mut gid = entry.as_ref().map(|e| e.gid).unwrap_or(0);
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or(UserError::UnknownGroup { name: g })?,
        };
    }
    if let Some(g) = spec.run_as_group {
        gid = g;
    }
    // containerd's: the primary group, the configured ones, and unless the pod's policy is
    // `Strict` the groups the image's /etc/group lists the user in; sorted, once each.
    let mut groups: Vec<u32> = vec![gid];
    groups.extend(&spec.supplemental_groups);
    if let (Some(e), SupplementalGroupsPolicy::Merge) = (&entry, spec.supplemental_groups_policy) {
        groups.extend(
            group_entries(group)
                .filter(|g| g.name != e.name && g.members.contains(&e.name))
                .map(|g| g.gid),
        );
    }
    groups.sort_unstable();
    groups.dedup();
    let home = entry
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_string();
    Ok(Resolved {
        uid,
        gid,
        groups,
        home,
    })
}

/// The identity as the child reports it to the shim just before exec: uid, gid, the number
/// of groups and the groups, each a little-endian u32.
pub fn encode_identity(user: &ContainerUser) -> Vec<u8> {
    let count = u32::try_from(user.supplemental_groups.len()).unwrap_or(u32::MAX);
    [user.uid, user.gid, count]
        .iter()
        .chain(&user.supplemental_groups)
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// Reads back [`encode_identity`]; `None` for a short or malformed report.
pub fn decode_identity(bytes: &[u8]) -> Option<ContainerUser> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let [uid, gid, count, groups @ ..] = words.as_slice() else {
        return None;
    };
    (usize::try_from(*count).ok()? == groups.len()).then(|| ContainerUser {
        uid: *uid,
        gid: *gid,
        supplemental_groups: groups.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1001:app:/home/app:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1001:\nstaff:x:50: app \n";

    fn spec(user: Option<&str>) -> UserSpec {
        UserSpec {
            image_user: user.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn default_is_root() {
        let r = resolve(&spec(None), PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        assert_eq!(r.groups, vec![0, 10]);
    }

    #[test]
    fn name_with_groups_from_membership() {
        let r = resolve(&spec(Some("app")), PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid, r.home.as_str()), (1000, 1001, "/home/app"));
        assert_eq!(r.groups, vec![10, 50, 1001]);
    }

    #[test]
    fn numeric_unknown_uid_gets_gid_zero() {
        let r = resolve(&spec(Some("4242")), PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid, r.home.as_str()), (4242, 0, "/"));
        assert_eq!(r.groups, vec![0]);
    }

    #[test]
    fn user_and_group_names() {
        let r = resolve(&spec(Some("nobody:app")), PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid), (65534, 1001));
        let r = resolve(&spec(Some("1000:7")), PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid), (1000, 7));
    }

    #[test]
    fn unknown_names_fail() {
        assert_eq!(
            resolve(&spec(Some("ghost")), PASSWD, GROUP),
            Err(UserError::UnknownUser {
                name: "ghost".into()
            })
        );
        assert_eq!(
            resolve(&spec(Some("app:ghosts")), PASSWD, GROUP),
            Err(UserError::UnknownGroup {
                name: "ghosts".into()
            })
        );
    }

    #[test]
    fn run_as_overrides_image_user() {
        let s = UserSpec {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            image_user: Some("nobody".into()),
            supplemental_groups: vec![4000, 10],
            ..Default::default()
        };
        let r = resolve(&s, PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid), (1000, 3000));
        assert_eq!(r.groups, vec![10, 50, 3000, 4000]);
    }

    /// KEP-3619's `Strict`: the image's /etc/group adds nothing; the primary group and the
    /// configured ones stay.
    #[test]
    fn strict_policy_ignores_the_image_groups() {
        let mut s = UserSpec {
            image_user: Some("app".into()),
            supplemental_groups: vec![60000],
            ..Default::default()
        };
        let merged = resolve(&s, PASSWD, GROUP).expect("resolve");
        assert_eq!(merged.groups, vec![10, 50, 1001, 60000]);
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict;
        let strict = resolve(&s, PASSWD, GROUP).expect("resolve");
        assert_eq!((strict.uid, strict.gid), (1000, 1001));
        assert_eq!(strict.groups, vec![1001, 60000]);
    }

    #[test]
    fn identity_report_round_trips() {
        let user = ContainerUser {
            uid: 1000,
            gid: 1000,
            supplemental_groups: vec![1000, 50000, 60000],
        };
        let bytes = encode_identity(&user);
        assert_eq!(decode_identity(&bytes), Some(user));
        assert_eq!(decode_identity(&bytes[..bytes.len() - 4]), None);
        assert_eq!(decode_identity(&bytes[..7]), None);
        assert_eq!(decode_identity(&[]), None);
    }

    /// As containerd's `WithAdditionalGIDs`: a group named after the user is its own, not a
    /// supplementary one it is listed in.
    #[test]
    fn group_named_after_the_user_is_skipped() {
        let group = "app:x:4000:app\nwheel:x:10:app\n";
        let r = resolve(&spec(Some("app")), PASSWD, group).expect("resolve");
        assert_eq!(r.groups, vec![10, 1001]);
    }
}
