//! Linux control groups for pods and containers, on cgroup v1 (including the "hybrid" layout
//! with an empty unified hierarchy) and v2: the runtime needs one place that creates a cgroup,
//! moves processes in, reads memory/OOM/pids figures, kills everything inside and removes it,
//! whatever the host's layout. The root is injected so unit tests run against a fake tree.
//! It also puts a container's device allow-list in force (v1 `devices` controller, v2 eBPF),
//! and reads the CPU and memory figures the node's stats are made of (`usage`).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
use nix::unistd::Pid;

pub mod bpf;
mod bpf_attach;
pub mod devices;
mod usage;
mod version;

pub use bpf_attach::AttachError;
pub use devices::{Access, DeviceKind, DeviceRule};
pub use usage::{parse_usage, Usage, UsageFiles};
pub use version::Version;

/// Where the host mounts its cgroup hierarchies.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// Controllers enabled for children on v2, when the parent offers them (kubelet's set).
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

/// How often teardown loops look again at a cgroup that is not yet empty.
const POLL: Duration = Duration::from_millis(10);

/// Failures of cgroup operations; each carries the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("detecting the cgroup layout at {path}: {source}")]
    Detect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup hierarchy is mounted under {path}")]
    NoHierarchy { path: PathBuf },
    #[error("creating cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("killing processes of cgroup {path}: {remaining} still present after {waited:?}")]
    Kill {
        path: PathBuf,
        remaining: usize,
        waited: Duration,
    },
    #[error("putting the device program in force on {path}: {source}")]
    DeviceProgram {
        path: PathBuf,
        #[source]
        source: AttachError,
    },
    #[error("removing cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One mounted hierarchy: its controller name (the directory name on v1, empty on v2) and
/// its mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub name: String,
    pub path: PathBuf,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    version: Version,
    mounts: Vec<Mounted>,
}

impl Hierarchy {
    /// Detects the layout under `root` (normally [`DEFAULT_ROOT`]): cgroup2fs at the root is
    /// v2; otherwise each v1 controller mounted in a subdirectory is used. An empty cgroup2
    /// at `root/unified` (systemd's hybrid mode) is ignored, as kubelet does, because the
    /// controllers live in v1.
    pub fn detect(root: &Path) -> Result<Self, CgroupError> {
        Self::detect_with(root, |p| {
            statfs(p)
                .map(|s| s.filesystem_type())
                .map_err(io::Error::from)
        })
    }

    /// [`Hierarchy::detect`] with the filesystem-type probe injected (for tests).
    pub fn detect_with(
        root: &Path,
        fs_type: impl Fn(&Path) -> io::Result<FsType>,
    ) -> Result<Self, CgroupError> {
        let detect_err = |source| CgroupError::Detect {
            path: root.to_path_buf(),
            source,
        };
        if fs_type(root).map_err(detect_err)? == CGROUP2_SUPER_MAGIC {
            return Ok(Self::v2(root));
        }
        let entries = fs::read_dir(root).map_err(detect_err)?;
        let mut seen = BTreeSet::new();
        let mut mounts = Vec::new();
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            // A comounted "cpu,cpuacct" appears again through "cpu" and "cpuacct" symlinks:
            // use each real hierarchy once.
            let Ok(real) = fs::canonicalize(&path) else {
                continue;
            };
            if !real.is_dir() || !matches!(fs_type(&real), Ok(t) if t == CGROUP_SUPER_MAGIC) {
                continue;
            }
            if !seen.insert(real.clone()) {
                continue;
            }
            let name = real
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            mounts.push(Mounted { name, path: real });
        }
        if mounts.is_empty() {
            return Err(CgroupError::NoHierarchy {
                path: root.to_path_buf(),
            });
        }
        Ok(Self {
            version: Version::V1,
            mounts,
        })
    }

    /// A v2 layout rooted at `root`.
    pub fn v2(root: &Path) -> Self {
        Self {
            version: Version::V2,
            mounts: vec![Mounted {
                name: String::new(),
                path: root.to_path_buf(),
            }],
        }
    }

    /// A v1 layout with the given hierarchies.
    pub fn v1(mounts: Vec<Mounted>) -> Self {
        Self {
            version: Version::V1,
            mounts,
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn mounts(&self) -> &[Mounted] {
        &self.mounts
    }

    /// The cgroup at `rel` (e.g. `peapod/pod<uid>/<id>`) in every hierarchy; nothing is
    /// created yet. Components that would leave the hierarchy (`..`, absolute) are dropped.
    pub fn cgroup(&self, rel: &Path) -> Cgroup {
        let rel: PathBuf = rel
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        let dirs = self
            .mounts
            .iter()
            .map(|m| Mounted {
                name: m.name.clone(),
                path: m.path.join(&rel),
            })
            .collect();
        Cgroup {
            version: self.version,
            rel,
            mounts: self.mounts.clone(),
            dirs,
        }
    }
}

/// Limits applied to a cgroup; `None` leaves the kernel default. Serializable because the
/// runtime hands it to the shim and records it on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CPU shares in v1 units (kubelet: milliCPU * 1024 / 1000, minimum 2).
    pub cpu_shares: Option<u64>,
    /// CFS quota and period in microseconds.
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// Whether [`Cgroup::apply_devices`] could confine the cgroup's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceConfinement {
    Enforced,
    /// v1 without a `devices` hierarchy (a nested host that hides it): nothing was done.
    NoController,
}

/// Memory and process figures of one cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_usage_bytes: Option<u64>,
    pub oom_kills: u64,
    pub pids_current: Option<u64>,
}

/// The open files through which a process moves itself into a cgroup, one per hierarchy:
/// v1 `tasks`, v2 `cgroup.procs`. The process that decides opens them (the kernel checks the
/// credentials they were opened with); the process that moves writes to them, before it
/// runs anything the cgroup should hold.
///
/// Why not write the pid to `cgroup.procs` from outside: that takes the kernel's global
/// thread-group lock for writing, which waits for an RCU grace period, 5–25 ms per move on a
/// small machine, when it is the first move for a while. A single-threaded process writing `0`
/// (itself) to a v1 `tasks` file moves its one thread without that lock, in tens of
/// microseconds. v2 has no such path (`cgroup.threads` moves a thread only within its domain),
/// so there the move costs what it did.
#[derive(Debug)]
pub struct JoinFiles {
    files: Vec<(PathBuf, fs::File)>,
}

impl JoinFiles {
    /// Moves the calling thread in, in every hierarchy: the whole process when it is
    /// single-threaded, as a freshly forked child is. Nothing but `write(2)` unless it
    /// fails, so a forked child may call it.
    pub fn join(&self) -> Result<(), CgroupError> {
        for (path, file) in &self.files {
            // "0": the caller.
            match nix::unistd::write(file, b"0") {
                Ok(_) => {}
                Err(errno) => {
                    return Err(CgroupError::Write {
                        path: path.clone(),
                        source: io::Error::from(errno),
                    })
                }
            }
        }
        Ok(())
    }
}

/// One cgroup, in every hierarchy of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    version: Version,
    rel: PathBuf,
    mounts: Vec<Mounted>,
    dirs: Vec<Mounted>,
}

impl Cgroup {
    /// The path relative to the hierarchy roots.
    pub fn relative(&self) -> &Path {
        &self.rel
    }

    /// The directory in each hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(|d| d.path.as_path()),
            Version::V1 => self
                .dirs
                .iter()
                .find(|d| d.name.split(',').any(|n| n == controller))
                .map(|d| d.path.as_path()),
        }
    }

    /// Whether the cgroup directory exists in the first hierarchy.
    pub fn exists(&self) -> bool {
        self.dirs.first().is_some_and(|d| d.path.is_dir())
    }

    /// Creates the cgroup and its parents in every hierarchy (existing ones are fine).
    pub fn create(&self) -> Result<(), CgroupError> {
        for (mount, dir) in self.mounts.iter().zip(&self.dirs) {
            let mut path = mount.path.clone();
            for part in self.rel.components() {
                if self.version == Version::V2 {
                    // The controllers must be enabled in each ancestor before a child can use
                    // them; best effort, since a parent with processes refuses (EBUSY).
                    enable_v2_controllers(&path);
                }
                let parent = path.clone();
                path.push(part);
                match fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(CgroupError::Create { path, source }),
                }
                if self.version == Version::V1 && mount.name.split(',').any(|n| n == "cpuset") {
                    // A v1 cpuset starts empty and refuses tasks until cpus and mems are set:
                    // inherit the parent's. Also when the directory was there already: another
                    // process (a second node agent on this machine) may have made it an instant
                    // ago and not yet filled it, and children copied from it would stay empty.
                    fill_cpuset(&parent, &path)?;
                }
            }
            debug_assert_eq!(&path, &dir.path);
        }
        Ok(())
    }

    /// Opens the files through which a process moves itself into the cgroup (see
    /// [`JoinFiles`]), in every hierarchy.
    pub fn join_files(&self) -> Result<JoinFiles, CgroupError> {
        let name = match self.version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.procs",
        };
        let files = self
            .dirs
            .iter()
            .map(|dir| {
                let path = dir.path.join(name);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(|file| (path.clone(), file))
                    .map_err(|source| CgroupError::Write { path, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(JoinFiles { files })
    }

    /// Processes directly in this cgroup (any hierarchy).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = BTreeSet::new();
        for dir in &self.dirs {
            for pid in read_procs(&dir.path)? {
                all.insert(pid);
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Processes in this cgroup and every descendant.
    pub fn pids_recursive(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = BTreeSet::new();
        for dir in &self.dirs {
            for sub in subtree(&dir.path) {
                for pid in read_procs(&sub)? {
                    all.insert(pid);
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    /// How many processes the kernel's OOM killer killed in this cgroup (v1
    /// `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`).
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let (dir, file) = match self.version {
            Version::V1 => (self.dir("memory"), "memory.oom_control"),
            Version::V2 => (self.dir("memory"), "memory.events"),
        };
        let Some(dir) = dir else { return Ok(0) };
        let path = dir.join(file);
        match read_optional(&path)? {
            Some(text) => Ok(parse_keyed(&text, "oom_kill").unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// Memory use, OOM kills and process count.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let memory_file = match self.version {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        };
        let memory_usage_bytes = match self.dir("memory") {
            Some(dir) => read_optional(&dir.join(memory_file))?.and_then(|t| t.trim().parse().ok()),
            None => None,
        };
        let pids_current = match self.dir("pids") {
            Some(dir) => {
                read_optional(&dir.join("pids.current"))?.and_then(|t| t.trim().parse().ok())
            }
            None => None,
        };
        Ok(Stats {
            memory_usage_bytes,
            oom_kills: self.oom_kill_count()?,
            pids_current,
        })
    }

    /// Writes the limits that are set into the controller files that exist.
    pub fn apply(&self, resources: &Resources) -> Result<(), CgroupError> {
        for (controller, file, value) in limit_writes(self.version, resources) {
            if let Some(dir) = self.dir(controller) {
                let path = dir.join(file);
                if path.exists() {
                    write_file(&path, &value)?;
                }
            }
        }
        Ok(())
    }

    /// Restricts device access of the cgroup's processes to `rules`, everything else denied:
    /// on v1 `devices.deny` `a` then each rule in `devices.allow` (the order runc uses, so no
    /// moment allows more than the rules); on v2 the rules as an eBPF device program attached
    /// to the cgroup. Call on a new cgroup before any process is in it.
    pub fn apply_devices(&self, rules: &[DeviceRule]) -> Result<DeviceConfinement, CgroupError> {
        match self.version {
            Version::V1 => {
                let Some(dir) = self.dir("devices") else {
                    return Ok(DeviceConfinement::NoController);
                };
                write_file(&dir.join("devices.deny"), "a")?;
                let allow = dir.join("devices.allow");
                for line in rules.iter().flat_map(DeviceRule::v1_lines) {
                    write_file(&allow, &line)?;
                }
            }
            Version::V2 => {
                let Some(dir) = self.dirs.first() else {
                    return Ok(DeviceConfinement::NoController);
                };
                bpf_attach::attach_device_program(&dir.path, &bpf::device_program(rules)).map_err(
                    |source| CgroupError::DeviceProgram {
                        path: dir.path.clone(),
                        source,
                    },
                )?;
            }
        }
        Ok(DeviceConfinement::Enforced)
    }

    /// SIGKILLs every process in the cgroup and its descendants and waits until they are
    /// gone: v2's `cgroup.kill` when the kernel has it, else each pid in turn, again and
    /// again, so that processes forked meanwhile die too.
    pub fn kill_all(&self, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        let kill_file = self.dirs.first().map(|d| d.path.join("cgroup.kill"));
        let mut used_kill_file = false;
        loop {
            let pids = match self.pids_recursive() {
                Ok(p) => p,
                // The cgroup vanished meanwhile: nothing left to kill.
                Err(CgroupError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e),
            };
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(CgroupError::Kill {
                    path: self
                        .dirs
                        .first()
                        .map(|d| d.path.clone())
                        .unwrap_or_default(),
                    remaining: pids.len(),
                    waited: start.elapsed(),
                });
            }
            match &kill_file {
                Some(f) if self.version == Version::V2 && f.exists() && !used_kill_file => {
                    write_file(f, "1")?;
                    used_kill_file = true;
                }
                _ => {
                    for pid in pids {
                        // ESRCH: it died on its own meanwhile, which is what we want.
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// Removes the cgroup and its descendants, deepest first. Gone already is fine; a cgroup
    /// whose dying processes are still being released (EBUSY) is retried until `timeout`.
    pub fn remove(&self, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        for dir in &self.dirs {
            let mut dirs = subtree(&dir.path);
            // Deepest first.
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                loop {
                    match fs::remove_dir(&d) {
                        Ok(()) => break,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                        Err(e)
                            if e.raw_os_error() == Some(Errno::EBUSY as i32)
                                && start.elapsed() < timeout =>
                        {
                            std::thread::sleep(POLL);
                        }
                        Err(source) => return Err(CgroupError::Remove { path: d, source }),
                    }
                }
            }
        }
        Ok(())
    }
}

impl Cgroup {
    /// The cgroup's CPU and memory figures; a missing cgroup or controller leaves them
    /// `None` rather than failing, since a container may exit between listing and reading.
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        let read = |controller: &str, file: &str| -> Result<Option<String>, CgroupError> {
            match self.dir(controller) {
                Some(dir) => read_optional(&dir.join(file)),
                None => Ok(None),
            }
        };
        let files = match self.version {
            Version::V1 => UsageFiles {
                cpu: read("cpuacct", "cpuacct.usage")?,
                memory_usage: read("memory", "memory.usage_in_bytes")?,
                memory_stat: read("memory", "memory.stat")?,
            },
            Version::V2 => UsageFiles {
                cpu: read("cpu", "cpu.stat")?,
                memory_usage: read("memory", "memory.current")?,
                memory_stat: read("memory", "memory.stat")?,
            },
        };
        Ok(parse_usage(self.version, &files))
    }
}

impl Cgroup {
    /// Removes this cgroup only if nothing is left in it: a parent shared with others (a
    /// pod's cgroup holding another sandbox's containers) stays, without error.
    pub fn remove_if_empty(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            match fs::remove_dir(&dir.path) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                    ) || e.raw_os_error() == Some(Errno::EBUSY as i32) => {}
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: dir.path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// The (controller, file, value) writes a [`Resources`] asks for on each version.
fn limit_writes(version: Version, r: &Resources) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    match version {
        Version::V1 => {
            if let Some(s) = r.cpu_shares {
                out.push(("cpu", "cpu.shares", s.to_string()));
            }
            if let Some(p) = r.cpu_period_us {
                out.push(("cpu", "cpu.cfs_period_us", p.to_string()));
            }
            if let Some(q) = r.cpu_quota_us {
                out.push(("cpu", "cpu.cfs_quota_us", q.to_string()));
            }
            if let Some(m) = r.memory_limit_bytes {
                out.push(("memory", "memory.limit_in_bytes", m.to_string()));
            }
            if let Some(p) = r.pids_limit {
                out.push((
                    "pids",
                    "pids.max",
                    if p > 0 { p.to_string() } else { "max".into() },
                ));
            }
        }
        Version::V2 => {
            if let Some(s) = r.cpu_shares {
                out.push(("cpu", "cpu.weight", shares_to_weight(s).to_string()));
            }
            if r.cpu_quota_us.is_some() || r.cpu_period_us.is_some() {
                let quota = match r.cpu_quota_us {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".into(),
                };
                let period = r.cpu_period_us.unwrap_or(100_000);
                out.push(("cpu", "cpu.max", format!("{quota} {period}")));
            }
            if let Some(m) = r.memory_limit_bytes {
                out.push((
                    "memory",
                    "memory.max",
                    if m > 0 { m.to_string() } else { "max".into() },
                ));
            }
            if let Some(p) = r.pids_limit {
                out.push((
                    "pids",
                    "pids.max",
                    if p > 0 { p.to_string() } else { "max".into() },
                ));
            }
        }
    }
    out
}

/// v1 shares (2..=262144) to v2 weight (1..=10000), the linear map runc and kubelet use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn enable_v2_controllers(dir: &Path) {
    let Ok(available) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in available.split_whitespace() {
        if V2_CONTROLLERS.contains(&c) && !enabled.split_whitespace().any(|e| e == c) {
            let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

/// Gives an empty v1 cpuset `child` the cpus and mems of `parent`; a set one is kept.
fn fill_cpuset(parent: &Path, child: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let target = child.join(file);
        match read_optional(&target)? {
            Some(own) if own.trim().is_empty() => {}
            _ => continue,
        }
        if let Some(value) = read_optional(&parent.join(file))? {
            write_file(&target, value.trim())?;
        }
    }
    Ok(())
}

/// `dir` and every directory below it (cgroup directories nest; files are controls).
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    out.retain(|d| d.is_dir());
    out
}

fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The number after `key` in a "key value" per line file (`memory.events`, `oom_control`).
fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(key))
            .then(|| parts.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

#[cfg(test)]
mod tests;
