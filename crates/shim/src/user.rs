//! Resolves the user a container runs as from `runAsUser`/`runAsGroup` or the image's `User`
//! and the rootfs's `/etc/passwd` and `/etc/group`, the way runc and containerd do, as a pure
//! function so every rule is unit-tested without a container.

use cri::UserSpec;

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
    /// Supplementary groups (without duplicates).
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
    let mut groups = Vec::new();
    if let Some(e) = &entry {
        for g in group_entries(group) {
            if g.members.contains(&e.name) && !groups.contains(&g.gid) {
                groups.push(g.gid);
            }
        }
    }
    for g in &spec.supplemental_groups {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
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
        assert_eq!(r.groups, vec![10]);
    }

    #[test]
    fn name_with_groups_from_membership() {
        let r = resolve(&spec(Some("app")), PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid, r.home.as_str()), (1000, 1001, "/home/app"));
        assert_eq!(r.groups, vec![10, 50]);
    }

    #[test]
    fn numeric_unknown_uid_gets_gid_zero() {
        let r = resolve(&spec(Some("4242")), PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid, r.home.as_str()), (4242, 0, "/"));
        assert!(r.groups.is_empty());
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
        };
        let r = resolve(&s, PASSWD, GROUP).expect("resolve");
        assert_eq!((r.uid, r.gid), (1000, 3000));
        assert_eq!(r.groups, vec![10, 50, 4000]);
    }
}
