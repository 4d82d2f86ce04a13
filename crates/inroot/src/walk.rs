//! The resolution itself, one component at a time over a narrow set of operations on
//! directory handles ([`Ops`]), so the logic is tested on an in-memory tree and runs on
//! real fds in [`crate::fd`]. `..` pops a handle this walk opened earlier instead of asking
//! the file system, so a directory moved away meanwhile cannot take the walk with it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::{Create, ResolveError, Scope};

/// Linux's limit on symlinks followed in one resolution (`MAXSYMLINKS`).
pub const MAX_LINKS: usize = 40;

/// Creations retried in one walk when a racing writer removes what was just made.
const MAX_CREATES: usize = 256;

/// One name looked up in a directory, without following it if it is a symlink.
pub enum Entry<H> {
    Dir(H),
    Link(PathBuf),
    Other(H),
    Missing,
}

/// The file system operations a walk needs, all relative to a directory handle and never
/// following a last symlink.
pub trait Ops {
    type Handle;
    fn lookup(&self, dir: &Self::Handle, name: &OsStr) -> io::Result<Entry<Self::Handle>>;
    /// Creates a directory; an existing entry of that name is not an error.
    fn mkdir(&self, dir: &Self::Handle, name: &OsStr) -> io::Result<()>;
    /// Creates an empty file; an existing entry of that name is not an error.
    fn mkfile(&self, dir: &Self::Handle, name: &OsStr) -> io::Result<()>;
    fn dup(&self, handle: &Self::Handle) -> io::Result<Self::Handle>;
}

enum Step {
    Up,
    Name(OsString),
}

fn steps(path: &Path) -> impl Iterator<Item = Step> + '_ {
    path.components().filter_map(|c| match c {
        Component::ParentDir => Some(Step::Up),
        Component::Normal(n) => Some(Step::Name(n.to_os_string())),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Resolves `path` below `root` (see [`crate::open`]) and returns a handle on what it
/// names.
pub fn resolve<O: Ops>(
    ops: &O,
    root: &O::Handle,
    path: &Path,
    scope: Scope,
    create: Create,
) -> Result<O::Handle, ResolveError> {
    let io = |source| ResolveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let escapes = || ResolveError::Escapes {
        path: path.to_path_buf(),
    };
    let mut remaining: VecDeque<Step> = steps(path).collect();
    // Directories opened so far below the root, innermost last.
    let mut stack: Vec<O::Handle> = Vec::new();
    let mut links = 0usize;
    let mut creates = 0usize;
    while let Some(step) = remaining.pop_front() {
        let name = match step {
            Step::Up => {
                if stack.pop().is_none() && scope == Scope::Beneath {
                    return Err(escapes());
                }
                continue;
            }
            Step::Name(name) => name,
        };
        let dir = stack.last().unwrap_or(root);
        match ops.lookup(dir, &name).map_err(io)? {
            Entry::Dir(h) => stack.push(h),
            Entry::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ResolveError::Loop {
                        path: path.to_path_buf(),
                    });
                }
                if target.as_os_str().is_empty() {
                    return Err(io(io::ErrorKind::NotFound.into()));
                }
                if target.has_root() {
                    if scope == Scope::Beneath {
                        return Err(escapes());
                    }
                    stack.clear();
                }
                let mut rest: VecDeque<Step> = steps(&target).collect();
                rest.append(&mut remaining);
                remaining = rest;
            }
            Entry::Other(h) => {
                if remaining.is_empty() {
                    return Ok(h);
                }
                return Err(ResolveError::NotDir {
                    path: path.to_path_buf(),
                    name: name.to_string_lossy().into_owned(),
                });
            }
            Entry::Missing => {
                creates += 1;
                if create == Create::Nothing || creates > MAX_CREATES {
                    return Err(io(io::ErrorKind::NotFound.into()));
                }
                if remaining.is_empty() && create == Create::File {
                    ops.mkfile(dir, &name).map_err(io)?;
                } else {
                    ops.mkdir(dir, &name).map_err(io)?;
                }
                // Looked up again: whatever is there now (ours, or a racer's) is followed
                // by the same rules.
                remaining.push_front(Step::Name(name));
            }
        }
    }
    match stack.pop() {
        Some(h) => Ok(h),
        None => ops.dup(root).map_err(io),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A tree of paths (relative to the root, "" is the root itself).
    #[derive(Clone)]
    enum Node {
        Dir,
        File,
        Link(&'static str),
    }

    struct Fake {
        nodes: RefCell<BTreeMap<PathBuf, Node>>,
    }

    impl Fake {
        fn new(entries: &[(&str, Node)]) -> Self {
            let mut nodes = BTreeMap::new();
            nodes.insert(PathBuf::new(), Node::Dir);
            for (p, n) in entries {
                nodes.insert(PathBuf::from(p), n.clone());
            }
            Fake {
                nodes: RefCell::new(nodes),
            }
        }
        fn has(&self, p: &str) -> bool {
            self.nodes.borrow().contains_key(Path::new(p))
        }
    }

    impl Ops for Fake {
        type Handle = PathBuf;
        fn lookup(&self, dir: &PathBuf, name: &OsStr) -> io::Result<Entry<PathBuf>> {
            let p = dir.join(name);
            Ok(match self.nodes.borrow().get(&p) {
                None => Entry::Missing,
                Some(Node::Dir) => Entry::Dir(p),
                Some(Node::File) => Entry::Other(p),
                Some(Node::Link(t)) => Entry::Link(PathBuf::from(t)),
            })
        }
        fn mkdir(&self, dir: &PathBuf, name: &OsStr) -> io::Result<()> {
            self.nodes.borrow_mut().insert(dir.join(name), Node::Dir);
            Ok(())
        }
        fn mkfile(&self, dir: &PathBuf, name: &OsStr) -> io::Result<()> {
            self.nodes.borrow_mut().insert(dir.join(name), Node::File);
            Ok(())
        }
        fn dup(&self, h: &PathBuf) -> io::Result<PathBuf> {
            Ok(h.clone())
        }
    }

    fn image() -> Fake {
        Fake::new(&[
            ("etc", Node::Dir),
            ("etc/hosts", Node::File),
            ("tmp", Node::Dir),
            ("oldroot", Node::Link("/.oldroot/tmp/pwned")),
            ("up", Node::Link("../../../../tmp/x")),
            ("magic", Node::Link("/proc/self/fd/7")),
            ("loop", Node::Link("loop")),
            ("hosts", Node::Link("etc/hosts")),
            ("etc/back", Node::Link("../tmp")),
        ])
    }

    fn res(fs: &Fake, p: &str, scope: Scope, create: Create) -> Result<PathBuf, ResolveError> {
        resolve(fs, &PathBuf::new(), Path::new(p), scope, create)
    }

    #[test]
    fn in_root_confines_every_escape() {
        let fs = image();
        let r = |p| res(&fs, p, Scope::InRoot, Create::Dir);
        assert_eq!(
            r("/oldroot").expect("oldroot"),
            Path::new(".oldroot/tmp/pwned")
        );
        assert!(fs.has(".oldroot/tmp/pwned"), "created inside the root");
        assert_eq!(r("up").expect("up"), Path::new("tmp/x"));
        assert_eq!(
            r("/magic/sub").expect("magic"),
            Path::new("proc/self/fd/7/sub")
        );
        assert_eq!(r("/../../etc").expect("dotdot"), Path::new("etc"));
        assert_eq!(r("/etc/back/y").expect("relative link"), Path::new("tmp/y"));
        assert_eq!(r("/").expect("root"), Path::new(""));
        assert!(matches!(r("/loop"), Err(ResolveError::Loop { .. })));
    }

    #[test]
    fn creates_files_and_refuses_paths_through_files() {
        let fs = image();
        assert_eq!(
            res(&fs, "/hosts", Scope::InRoot, Create::File).expect("file through link"),
            Path::new("etc/hosts")
        );
        assert_eq!(
            res(&fs, "/run/secrets/token", Scope::InRoot, Create::File).expect("new file"),
            Path::new("run/secrets/token")
        );
        assert!(matches!(
            fs.nodes.borrow().get(Path::new("run/secrets")),
            Some(Node::Dir)
        ));
        assert!(matches!(
            fs.nodes.borrow().get(Path::new("run/secrets/token")),
            Some(Node::File)
        ));
        assert!(matches!(
            res(&fs, "/etc/hosts/x", Scope::InRoot, Create::Dir),
            Err(ResolveError::NotDir { .. })
        ));
        let missing = res(&fs, "/nope", Scope::InRoot, Create::Nothing).expect_err("missing");
        assert!(
            matches!(missing, ResolveError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(!fs.has("nope"));
    }

    #[test]
    fn beneath_refuses_what_in_root_would_confine() {
        let fs = image();
        for p in ["oldroot", "up", "magic", "../x", "etc/../../x"] {
            assert!(
                matches!(
                    res(&fs, p, Scope::Beneath, Create::Dir),
                    Err(ResolveError::Escapes { .. })
                ),
                "{p}"
            );
        }
        assert!(!fs.has(".oldroot"));
        assert!(!fs.has("tmp/x"));
        assert_eq!(
            res(&fs, "etc/back/new", Scope::Beneath, Create::Dir).expect("inside"),
            Path::new("tmp/new")
        );
    }
}
